// Runs in headless Chromium against uvquic-server (tests/browser.sh): every
// check appends "PASS name" or "FAIL name detail" to #result, then "DONE".
(async () => {
  const out = [];
  const check = (name, ok, detail) =>
    out.push((ok ? 'PASS ' : 'FAIL ') + name + (ok ? '' : ' ' + detail));
  const hex = (buf) => Array.from(new Uint8Array(buf))
    .map((x) => x.toString(16).padStart(2, '0')).join('');
  const sha = async (buf) => hex(await crypto.subtle.digest('SHA-256', buf));
  const get = (path, init) => fetch(path, Object.assign({cache: 'no-store'}, init || {}));
  try {
    const nav = performance.getEntriesByType('navigation')[0];
    check('page over h3', nav.nextHopProtocol === 'h3', nav.nextHopProtocol);
    const color = getComputedStyle(document.getElementById('styled')).color;
    check('stylesheet applied', color === 'rgb(1, 2, 3)', color);
    const img = document.getElementById('img');
    await img.decode();
    check('image decoded', img.naturalWidth === 7 && img.naturalHeight === 5,
          img.naturalWidth + 'x' + img.naturalHeight);

    let r = await get('/big.bin');
    const body = await r.arrayBuffer();
    check('big 200', r.status === 200, r.status);
    check('big length', body.byteLength === EXPECT.size, body.byteLength);
    check('big sha256', (await sha(body)) === EXPECT.big, '');
    check('big type', r.headers.get('content-type') === 'application/octet-stream',
          r.headers.get('content-type'));
    check('accept-ranges', r.headers.get('accept-ranges') === 'bytes',
          r.headers.get('accept-ranges'));
    check('nosniff', r.headers.get('x-content-type-options') === 'nosniff',
          r.headers.get('x-content-type-options'));
    const etag = r.headers.get('etag');
    check('etag', /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/.test(etag || ''), etag);
    const lm = r.headers.get('last-modified');
    check('last-modified', lm !== null && !isNaN(Date.parse(lm)), lm);
    check('date', !isNaN(Date.parse(r.headers.get('date'))), r.headers.get('date'));
    check('cache-control', r.headers.get('cache-control') === 'max-age=60',
          r.headers.get('cache-control'));

    r = await get('/big.bin', {headers: {Range: 'bytes=' + EXPECT.from + '-' + EXPECT.to}});
    const part = await r.arrayBuffer();
    check('range 206', r.status === 206, r.status);
    check('content-range', r.headers.get('content-range') ===
          'bytes ' + EXPECT.from + '-' + EXPECT.to + '/' + EXPECT.size,
          r.headers.get('content-range'));
    check('range sha256', (await sha(part)) === EXPECT.range, part.byteLength);

    r = await get('/big.bin', {headers: {Range: 'bytes=-100', 'If-Range': etag}});
    check('if-range match 206', r.status === 206 && (await r.arrayBuffer()).byteLength === 100,
          r.status);
    r = await get('/big.bin', {headers: {Range: 'bytes=-100', 'If-Range': '"stale"'}});
    check('if-range stale 200', r.status === 200 &&
          (await r.arrayBuffer()).byteLength === EXPECT.size, r.status);
    r = await get('/big.bin', {headers: {Range: 'bytes=' + (EXPECT.size + 1) + '-'}});
    check('range 416', r.status === 416 &&
          r.headers.get('content-range') === 'bytes */' + EXPECT.size, r.status);
    r = await get('/big.bin', {headers: {'If-None-Match': etag}});
    check('if-none-match 304', r.status === 304, r.status);
    r = await get('/big.bin', {headers: {'If-Modified-Since': lm}});
    check('if-modified-since 304', r.status === 304, r.status);
    r = await get('/big.bin', {method: 'HEAD'});
    check('head', r.status === 200 && r.headers.get('content-length') === String(EXPECT.size) &&
          (await r.arrayBuffer()).byteLength === 0, r.status);

    r = await get('/sub');
    check('308 to the slash form', r.redirected && r.url.endsWith('/sub/') && r.status === 200 &&
          (await r.text()) === 'sub index\n', r.url + ' ' + r.status);
    r = await get('/sp%20ace.txt?x=1');
    check('percent-decoded, query ignored', r.status === 200 &&
          (await r.text()) === 'space\n', r.status);
    check('text charset', r.headers.get('content-type') === 'text/plain; charset=utf-8',
          r.headers.get('content-type'));
    r = await get('/a%2fb');
    check('encoded slash 400', r.status === 400, r.status);
    r = await get('/missing.txt');
    check('404', r.status === 404, r.status);
    r = await get('/big.bin', {method: 'POST', body: 'x'});
    check('405 with Allow', r.status === 405 && r.headers.get('allow') === 'GET, HEAD',
          r.status + ' ' + r.headers.get('allow'));
    if (EXPECT.custom) {
      // Second run: --mime-types FILE and --autoindex.
      r = await get('/t.uvqt');
      check('--mime-types', r.headers.get('content-type') === 'application/x-uvq-test',
            r.headers.get('content-type'));
      r = await get('/list/');
      const html = await r.text();
      check('autoindex', r.status === 200 &&
            r.headers.get('content-type') === 'text/html; charset=utf-8' &&
            html.includes('<a href="a%26%3Cb%3E.txt">a&amp;&lt;b&gt;.txt</a>'), html);
    } else {
      r = await get('/list/');
      check('directory without index.html 404', r.status === 404, r.status);
      r = await get('/t.uvqt');
      check('unknown extension', r.headers.get('content-type') === 'application/octet-stream',
            r.headers.get('content-type'));
    }
  } catch (e) {
    check('no exception', false, String(e));
  }
  out.push('DONE');
  document.getElementById('result').textContent = out.join('\n');
})();

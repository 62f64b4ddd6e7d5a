/* HTTP/3 server request streams: the frame gate. The core hands h3 a
 * request stream's bytes as they arrive; nghttp3 (1.8) decodes a HEADERS
 * frame as its bytes come and allocates each literal name or value at the
 * length its prefix announces (up to 64 KiB, twice that Huffman-coded), so
 * a client that sends half a field and stops made it hold ~69 KB per
 * stream for as long as it liked, and a section was measured against
 * max_field_section_size only once complete. The gate parses the frame
 * layer ahead of nghttp3: other frames pass straight through, a HEADERS
 * frame is held (only the bytes that arrived) until its last byte is in
 * and then given to nghttp3 whole, and one whose length exceeds
 * max_field_section_size is refused from its frame header. See h3.h and
 * docs/internals/h3.md ("Header sections as they arrive"). */
#include "app/h3.h"

#include <string.h>

#include "core/mem.h"

/* HTTP/3 frame type of HEADERS (RFC 9114 §7.2.2). */
#define H3_FRAME_HEADERS 0x01

/* Length of the QUIC varint that starts with |b| (RFC 9000 §16). */
static size_t varint_len(uint8_t b) { return (size_t)1 << (b >> 6); }

static uint64_t varint_get(const uint8_t *p) {
  size_t n = varint_len(p[0]);
  uint64_t v = p[0] & 0x3f;
  for (size_t i = 1; i < n; i++) {
    v = (v << 8) | p[i];
  }
  return v;
}

/* Nothing more of the peer's message is read: refused, reset, stopped or
 * malformed. */
static int gate_muted(const uvq_h3_stream *st) {
  return st->gate.state == H3_GATE_DROP || st->rejected || st->local_reset ||
         st->read_stopped || st->peer_reset || st->malformed || st->finished;
}

void uvq_h3_gate_drop(uvq_h3_conn *h, uvq_h3_stream *st) {
  st->gate.state = H3_GATE_DROP;
  uvq_conn_recv_release(h->conn, st->gate.holdcap);
  uvq_free(h->mem, st->gate.hold);
  st->gate.hold = NULL;
  st->gate.holdlen = st->gate.holdcap = 0;
  uvq_h3_server_hdr_done(h, st);
}

/* Appends to the held frame, growing the buffer with what arrived (never
 * to the length the frame announces). Returns 0 or UVQ_ERR_NOMEM. */
static int gate_hold(uvq_h3_conn *h, h3_gate *g, const uint8_t *p, size_t n) {
  if (g->holdlen + n > g->holdcap) {
    size_t cap = g->holdcap ? g->holdcap * 2 : 256;
    uint8_t *nb;
    if (cap < g->holdlen + n) {
      cap = g->holdlen + n;
    }
    /* The whole frame never needs more. */
    if (cap > g->holdlen + n + g->left) {
      cap = g->holdlen + n + g->left;
    }
    nb = uvq_realloc(h->mem, g->hold, cap);
    if (nb == NULL) {
      return UVQ_ERR_NOMEM;
    }
    /* A partial header section counts against the receive budgets. */
    uvq_conn_recv_hold(h->conn, cap - g->holdcap);
    g->hold = nb;
    g->holdcap = cap;
  }
  /* hold is NULL only with holdcap 0, and n > 0: grown just above. */
  /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
  memcpy(g->hold + g->holdlen, p, n);
  g->holdlen += n;
  return 0;
}

/* Hands the held frame to nghttp3 and forgets it. The buffer is detached
 * first: a callback nghttp3 makes while reading it may drop the gate. */
static void gate_release(uvq_h3_conn *h, uvq_h3_stream *st, size_t len,
                         int fin) {
  uint8_t *b = st->gate.hold;
  uvq_conn_recv_release(h->conn, st->gate.holdcap);
  st->gate.hold = NULL;
  st->gate.holdlen = st->gate.holdcap = 0;
  uvq_h3_conn_feed(h, st->id, b, len, fin);
  uvq_free(h->mem, b);
}

/* A HEADERS frame longer than max_field_section_size: refused before any
 * of its payload is read. */
static void gate_too_large(uvq_h3_conn *h, uvq_h3_stream *st) {
  h3_gate *g = &st->gate;
  if (g->nheaders == 1) {
    /* The request's section: nghttp3 reads the frame header only, which
     * opens the request (uvq_h3_server_begin_request, which may refuse it
     * first: a limit, GOAWAY) so that it can be answered. */
    uvq_h3_conn_feed(h, st->id, g->hdr, g->hdrlen, 0);
    if (!gate_muted(st) && !h->close_sent && !h->closed) {
      if (st->begun) {
        uvq_h3_server_refuse_section(h, st);
      } else {
        uvq_h3_stream_abort(st, UVQ_H3_REQUEST_REJECTED);
      }
    }
  } else {
    /* A trailer section: the request was handed over already; there is
     * no answer left to give it. */
    h->stats.header_too_large++;
    uvq_h3_stream_abort(st, UVQ_H3_EXCESSIVE_LOAD);
  }
  uvq_h3_gate_drop(h, st);
}

/* Reads a frame header byte by byte into g->hdr. Returns the bytes used;
 * *pdone is set once both varints are in. */
static size_t gate_frame_header(h3_gate *g, const uint8_t *p, size_t n,
                                int *pdone) {
  size_t used = 0;
  *pdone = 0;
  while (used < n) {
    size_t tl;
    g->hdr[g->hdrlen++] = p[used++];
    tl = varint_len(g->hdr[0]);
    if (g->hdrlen > tl && g->hdrlen == tl + varint_len(g->hdr[tl])) {
      *pdone = 1;
      break;
    }
  }
  return used;
}

/* Hands a frame's header and the |n| payload bytes at |p| to nghttp3: in
 * one piece from |fstart| when the header arrived with them, else the
 * header kept in |g| first. */
static void pass_through(uvq_h3_conn *h, uvq_h3_stream *st,
                         const uint8_t *fstart, const uint8_t *p, size_t n,
                         int fin) {
  h3_gate *g = &st->gate;
  if (fstart) {
    uvq_h3_conn_feed(h, st->id, fstart, (size_t)(p - fstart) + n, fin);
  } else {
    uvq_h3_conn_feed(h, st->id, g->hdr, g->hdrlen, 0);
    uvq_h3_conn_feed(h, st->id, p, n, fin);
  }
  g->hdrlen = 0;
}

void uvq_h3_gate_recv(uvq_h3_conn *h, uvq_h3_stream *st, const uint8_t *data,
                      size_t len, int fin) {
  h3_gate *g = &st->gate;
  /* A lone FIN may come with no buffer at all. */
  const uint8_t *p = data, *end = data ? data + len : data;

  while (p < end) {
    if (gate_muted(st) || h->close_sent || h->closed) {
      uvq_h3_gate_drop(h, st);
      return;
    }
    switch (g->state) {
    case H3_GATE_FRAME: {
      /* Where the frame starts, if its header is all in |data|. */
      const uint8_t *fstart = g->hdrlen == 0 ? p : NULL;
      size_t avail, n;
      int done;
      uint64_t type, flen;
      p += gate_frame_header(g, p, (size_t)(end - p), &done);
      if (!done) {
        break;
      }
      type = varint_get(g->hdr);
      flen = varint_get(g->hdr + varint_len(g->hdr[0]));
      avail = (size_t)(end - p);
      n = avail < flen ? avail : (size_t)flen;
      if (type != H3_FRAME_HEADERS) {
        /* DATA, a reserved type, or one nghttp3 refuses: its header and
         * its payload as it comes. */
        g->left = flen - n;
        g->state = g->left ? H3_GATE_PASS : H3_GATE_FRAME;
        pass_through(h, st, fstart, p, n, fin && p + n == end);
        p += n;
        if (p == end && fin) {
          return;
        }
        break;
      }
      g->nheaders++;
      if (flen > st->max_section) {
        gate_too_large(h, st);
        return;
      }
      if (n == flen) {
        /* The rest of the frame is here: nothing to hold. */
        pass_through(h, st, fstart, p, n, fin && p + n == end);
        p += n;
        if (p == end && fin) {
          return;
        }
        break;
      }
      g->state = H3_GATE_HOLD;
      g->left = flen;
      if (gate_hold(h, g, g->hdr, g->hdrlen) != 0) {
        uvq_h3_conn_fail(h, UVQ_H3_INTERNAL_ERROR, "no memory");
        return;
      }
      g->hdrlen = 0;
      break;
    }
    case H3_GATE_PASS: {
      size_t n =
          (size_t)(end - p) < g->left ? (size_t)(end - p) : (size_t)g->left;
      g->left -= n;
      if (g->left == 0) {
        g->state = H3_GATE_FRAME;
      }
      /* The stream's last bytes carry its FIN. */
      uvq_h3_conn_feed(h, st->id, p, n, fin && p + n == end);
      p += n;
      if (p == end && fin) {
        return;
      }
      break;
    }
    case H3_GATE_HOLD: {
      size_t n =
          (size_t)(end - p) < g->left ? (size_t)(end - p) : (size_t)g->left;
      g->left -= n;
      if (gate_hold(h, g, p, n) != 0) {
        uvq_h3_conn_fail(h, UVQ_H3_INTERNAL_ERROR, "no memory");
        return;
      }
      p += n;
      if (g->left == 0) {
        g->state = H3_GATE_FRAME;
        gate_release(h, st, g->holdlen, fin && p == end);
        if (p == end && fin) {
          return;
        }
      }
      break;
    }
    case H3_GATE_DROP:
      return;
    }
  }
  if (!fin || gate_muted(st) || h->close_sent || h->closed) {
    return;
  }
  /* FIN. Between frames it ends the message. Inside one, nghttp3 sees the
   * truncated frame (H3_FRAME_ERROR, RFC 9114 §7.1) — of a held HEADERS
   * frame only its header, so it decodes nothing of a partial section. */
  switch (g->state) {
  case H3_GATE_FRAME:
    uvq_h3_conn_feed(h, st->id, g->hdr, g->hdrlen, 1);
    g->hdrlen = 0;
    break;
  case H3_GATE_PASS:
    uvq_h3_conn_feed(h, st->id, NULL, 0, 1);
    break;
  case H3_GATE_HOLD: {
    /* The held frame starts with its header. */
    size_t hl = varint_len(g->hold[0]);
    hl += varint_len(g->hold[hl]);
    gate_release(h, st, hl, 1);
    break;
  }
  case H3_GATE_DROP:
    break;
  }
}

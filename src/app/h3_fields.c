/* HTTP/3 header sections: received fields gathered for the application,
 * and header lists copied for nghttp3. See h3.h. */
#include "app/h3.h"

#include <string.h>

#include "core/mem.h"

void uvq_h3_hdrs_free(const uvq_mem *mem, h3_hdrs *x) {
  uvq_free(mem, x->buf);
  uvq_free(mem, x->f);
  memset(x, 0, sizeof(*x));
}

void uvq_h3_hdrs_reset(h3_hdrs *x) {
  x->len = 0;
  x->n = 0;
  x->section_size = 0;
  x->too_large = 0;
}

int uvq_h3_hdrs_add(const uvq_mem *mem, h3_hdrs *x, const uint8_t *name,
                    size_t nlen, const uint8_t *value, size_t vlen,
                    uint64_t limit) {
  x->section_size += nlen + vlen + UVQ_H3_FIELD_OVERHEAD;
  if (x->section_size > limit) {
    x->too_large = 1;
  }
  if (x->too_large) {
    return 0;
  }
  /* Each name and value is followed by a NUL the lengths leave out. */
  if (x->len + nlen + vlen + 2 > x->cap) {
    size_t cap = x->cap ? x->cap : 256;
    uint8_t *nb;
    while (cap < x->len + nlen + vlen + 2) {
      cap *= 2;
    }
    nb = uvq_realloc(mem, x->buf, cap);
    if (nb == NULL) {
      return UVQ_ERR_NOMEM;
    }
    x->buf = nb;
    x->cap = cap;
  }
  if (x->n == x->fcap) {
    size_t fcap = x->fcap ? x->fcap * 2 : 16;
    h3_field *nf = uvq_realloc(mem, x->f, fcap * sizeof(*nf));
    if (nf == NULL) {
      return UVQ_ERR_NOMEM;
    }
    x->f = nf;
    x->fcap = fcap;
  }
  x->f[x->n].noff = x->len;
  x->f[x->n].nlen = nlen;
  memcpy(x->buf + x->len, name, nlen);
  x->len += nlen;
  x->buf[x->len++] = '\0';
  x->f[x->n].voff = x->len;
  x->f[x->n].vlen = vlen;
  if (vlen) {
    memcpy(x->buf + x->len, value, vlen);
  }
  x->len += vlen;
  x->buf[x->len++] = '\0';
  x->n++;
  return 0;
}

/* Builds the lent uvq_h3_header view of |x| (caller frees). */
uvq_h3_header *uvq_h3_hdrs_view(const uvq_mem *mem, const h3_hdrs *x) {
  uvq_h3_header *v = uvq_malloc(mem, (x->n ? x->n : 1) * sizeof(*v));
  if (v == NULL) {
    return NULL;
  }
  for (size_t i = 0; i < x->n; i++) {
    v[i].name = (const char *)x->buf + x->f[i].noff;
    v[i].namelen = x->f[i].nlen;
    v[i].value = (const char *)x->buf + x->f[i].voff;
    v[i].valuelen = x->f[i].vlen;
  }
  return v;
}

/* Copies |npre| preset fields then |n| given ones into one allocation that
 * nghttp3 can read later. */
int uvq_h3_nvlist_build(const uvq_mem *mem, h3_nvlist *out,
                        const uvq_h3_header *pre, size_t npre,
                        const uvq_h3_header *hdrs, size_t n) {
  size_t total = (npre + n) * sizeof(nghttp3_nv), i;
  uint8_t *p;
  nghttp3_nv *nv;

  for (i = 0; i < npre; i++) {
    total += pre[i].namelen + pre[i].valuelen + 2;
  }
  for (i = 0; i < n; i++) {
    if ((hdrs[i].name == NULL && hdrs[i].namelen) ||
        (hdrs[i].value == NULL && hdrs[i].valuelen)) {
      return UVQ_ERR_INVALID_ARGUMENT;
    }
    total += hdrs[i].namelen + hdrs[i].valuelen + 2;
  }
  nv = uvq_malloc(mem, total ? total : 1);
  if (nv == NULL) {
    return UVQ_ERR_NOMEM;
  }
  p = (uint8_t *)(nv + npre + n);
  for (i = 0; i < npre + n; i++) {
    const uvq_h3_header *s = i < npre ? &pre[i] : &hdrs[i - npre];
    nv[i].name = p;
    if (s->namelen) {
      memcpy(p, s->name, s->namelen);
    }
    p[s->namelen] = 0;
    p += s->namelen + 1;
    nv[i].value = p;
    if (s->valuelen) {
      memcpy(p, s->value, s->valuelen);
    }
    p[s->valuelen] = 0;
    p += s->valuelen + 1;
    nv[i].namelen = s->namelen;
    nv[i].valuelen = s->valuelen;
    nv[i].flags = NGHTTP3_NV_FLAG_NONE;
  }
  out->nv = nv;
  out->n = npre + n;
  return 0;
}

void uvq_h3_nvlist_free(const uvq_mem *mem, h3_nvlist *l) {
  uvq_free(mem, l->nv);
  l->nv = NULL;
  l->n = 0;
}

uvq_h3_header uvq_h3_mkhdr(const char *name, const char *value) {
  uvq_h3_header h;
  h.name = name;
  h.namelen = strlen(name);
  h.value = value;
  h.valuelen = strlen(value);
  return h;
}

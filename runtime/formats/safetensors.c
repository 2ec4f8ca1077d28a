/* safetensors.c: a model's weights as safetensors, in PyTorch's layouts
 * and in netc's or torchvision's names, and the strict reader of
 * `train --init` (safetensors.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data.h"
#include "formats/safetensors.h"
#include "formats/torch_layout.h"
#include "util/util.h"

/* ---- names ---------------------------------------------------------------- */

/* A block's inner name, torchvision's way: conv2 and bn2, downsample.0
 * and .1 for the shortcut's projection. */
static int torchvision_inner(const char *in, char *out, size_t n) {
  int k, used = 0;
  if (sscanf(in, "shortcut1.conv1.%n", &used) == 0 && used)
    return snprintf(out, n, "downsample.0.%s", in + used) >= (int)n;
  used = 0;
  if (sscanf(in, "shortcut1.batchnorm1.%n", &used) == 0 && used)
    return snprintf(out, n, "downsample.1.%s", in + used) >= (int)n;
  used = 0;
  if (sscanf(in, "conv%d.%n", &k, &used) == 1 && used)
    return snprintf(out, n, "conv%d.%s", k, in + used) >= (int)n;
  used = 0;
  if (sscanf(in, "batchnorm%d.%n", &k, &used) == 1 && used)
    return snprintf(out, n, "bn%d.%s", k, in + used) >= (int)n;
  return -1;
}

/* netc's name of a zoo ResNet's tensor -> torchvision's; -1 if `name` is
 * not of the zoo's form (stem, stages of basic or bottleneck blocks,
 * classifier). */
static int torchvision_name(const char *name, char *out, size_t n) {
  int s, b, used = 0;
  char unit[16];
  if (sscanf(name, "imagenet_stem1.conv1.%n", &used) == 0 && used)
    return snprintf(out, n, "conv1.%s", name + used) >= (int)n ? -1 : 0;
  used = 0;
  if (sscanf(name, "imagenet_stem1.batchnorm1.%n", &used) == 0 && used)
    return snprintf(out, n, "bn1.%s", name + used) >= (int)n ? -1 : 0;
  used = 0;
  if (sscanf(name, "classifier1.dense1.%n", &used) == 0 && used)
    return snprintf(out, n, "fc.%s", name + used) >= (int)n ? -1 : 0;
  used = 0;
  if (sscanf(name, "stage%d.%15[a-z]%d.%n", &s, unit, &b, &used) == 3 &&
      used && b >= 1 &&
      (!strcmp(unit, "basic") || !strcmp(unit, "bottleneck"))) {
    int k = snprintf(out, n, "layer%d.%d.", s, b - 1);
    if (k < 0 || (size_t)k >= n)
      return -1;
    return torchvision_inner(name + used, out + k, n - (size_t)k) ? -1 : 0;
  }
  return -1;
}

enum { MAX_TENSOR_NAME = 256 };

/* The tensors of a model, in the file's order: each parameter, and after
 * a batchnorm's bias its running mean, variance and batch count. */
typedef struct {
  char name[MAX_TENSOR_NAME];   /* netc's */
  char tv[MAX_TENSOR_NAME];     /* torchvision's, or "" */
  int param;                    /* its NetcParam, or the batchnorm weight's */
  int stat;                     /* -1 the parameter, 0 mean, 1 var, 2 count */
  int64_t dims[4];
  int ndims;
} Entry;

static int entries(const NetcModel *m, Entry **out) {
  Entry *e = xcalloc((size_t)m->nparam_tensors * 4, sizeof *e);
  int n = 0;
  for (int i = 0; i < m->nparam_tensors; i++) {
    const NetcParam *q = &m->params[i];
    Entry *x = &e[n++];
    snprintf(x->name, sizeof x->name, "%s", q->name);
    x->param = i, x->stat = -1;
    x->ndims = torch_dims(m, i, x->dims);
    if (q->stats[0] < 0)
      continue;
    /* running statistics are named after the layer: drop ".weight" */
    size_t len = strlen(q->name);
    size_t base = len > 7 && !strcmp(q->name + len - 7, ".weight") ? len - 7
                                                                   : len;
    static const char *const stat[] = {"running_mean", "running_var",
                                       "num_batches_tracked"};
    for (int k = 0; k < 3; k++) {
      Entry *y = &e[n++];
      snprintf(y->name, sizeof y->name, "%.*s.%s", (int)base, q->name, stat[k]);
      y->param = i, y->stat = k;
      y->ndims = k < 2;
      y->dims[0] = k < 2 ? q->count : 0;
    }
  }
  for (int i = 0; i < n; i++)
    if (torchvision_name(e[i].name, e[i].tv, sizeof e[i].tv))
      e[i].tv[0] = 0;
  *out = e;
  return n;
}

/* ---- JSON, as much as a safetensors header needs ------------------------- */

static void json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

/* ---- export --------------------------------------------------------------- */

static const char *entry_name(const Entry *e, int names) {
  return names == NAMES_TORCHVISION ? e->tv : e->name;
}

static int64_t entry_bytes(const Entry *e) {
  if (e->stat == 2)
    return 8; /* an int64 scalar */
  int64_t n = 1;
  for (int k = 0; k < e->ndims; k++)
    n *= e->dims[k];
  return 4 * n;
}

int safetensors_export(const NetcState *s, const ClassList *c, int names,
                       int64_t steps, const char *path) {
  const NetcModel *m = s->model;
  Entry *e;
  int n = entries(m, &e);
  for (int i = 0; i < n; i++)
    if (names == NAMES_TORCHVISION && !e[i].tv[0]) {
      fprintf(stderr, "netc: tensor %s has no torchvision name: --names "
                      "torchvision is for the zoo's ResNets "
                      "(models/resnet*.net); use --names netc\n", e[i].name);
      free(e);
      return -1;
    }
  /* The header, in memory: its size comes first in the file. */
  char *hdr = NULL;
  size_t hlen = 0;
  FILE *h = open_memstream(&hdr, &hlen);
  fputs("{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"netc "
        "export\",\"model\":", h);
  json_string(h, m->name);
  fputs(",\"source\":", h);
  json_string(h, m->source);
  fprintf(h, ",\"names\":\"%s\",\"input\":\"%dx%dx%d RGB, NCHW, (x / 255 - "
             "mean) / std\",\"mean\":\"%g,%g,%g\",\"std\":\"%g,%g,%g\"",
          names == NAMES_TORCHVISION ? "torchvision" : "netc", m->in_c,
          m->in_h, m->in_w, NETC_MEAN_R, NETC_MEAN_G, NETC_MEAN_B, NETC_STD_R,
          NETC_STD_G, NETC_STD_B);
  if (c && c->nclasses) {
    for (int pass = 0; pass < 2; pass++) {
      fputs(pass ? ",\"class_names\":" : ",\"classes\":", h);
      /* a JSON list, as text: metadata values are strings */
      char *list = NULL;
      size_t llen = 0;
      FILE *l = open_memstream(&list, &llen);
      fputc('[', l);
      for (int k = 0; k < c->nclasses; k++) {
        if (k)
          fputc(',', l);
        json_string(l, pass ? c->class_names[k] : c->class_ids[k]);
      }
      fputc(']', l);
      fclose(l);
      json_string(h, list);
      free(list);
    }
  }
  fputc('}', h);
  int64_t off = 0;
  for (int i = 0; i < n; i++) {
    int64_t b = entry_bytes(&e[i]);
    fputc(',', h);
    json_string(h, entry_name(&e[i], names));
    fprintf(h, ":{\"dtype\":\"%s\",\"shape\":[", e[i].stat == 2 ? "I64"
                                                                 : "F32");
    for (int k = 0; k < e[i].ndims; k++)
      fprintf(h, "%s%lld", k ? "," : "", (long long)e[i].dims[k]);
    fprintf(h, "],\"data_offsets\":[%lld,%lld]}", (long long)off,
            (long long)(off + b));
    off += b;
  }
  fputc('}', h);
  while ((ftell(h) + 8) % 8) /* the data 8-byte aligned, as the format asks */
    fputc(' ', h);
  fclose(h);

  char *tmp = xprintf("%s.tmp", path);
  FILE *f = fopen(tmp, "wb");
  int bad = !f;
  if (f) {
    uint64_t len = hlen;
    bad |= fwrite(&len, 8, 1, f) != 1 || fwrite(hdr, 1, hlen, f) != hlen;
    float *buf = xmalloc(sizeof(float) * 4 * 1024 * 1024 + 64);
    for (int i = 0; i < n && !bad; i++) {
      const NetcParam *q = &m->params[e[i].param];
      float *w = buf;
      int64_t cnt = q->count;
      if (e[i].stat == 2) {
        bad |= fwrite(&steps, 8, 1, f) != 1;
        continue;
      }
      if ((size_t)cnt > 4 * 1024 * 1024)
        w = xmalloc(sizeof(float) * (size_t)cnt);
      if (e[i].stat < 0)
        to_torch_layout(m, e[i].param, netc_param(s, e[i].param), w);
      else
        memcpy(w, netc_bn_stat(s, e[i].param, e[i].stat),
               sizeof(float) * (size_t)cnt);
      bad |= fwrite(w, sizeof(float), (size_t)cnt, f) != (size_t)cnt;
      if (w != buf)
        free(w);
    }
    free(buf);
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
  }
  int rc = 0;
  if (bad || rename(tmp, path) != 0) {
    fprintf(stderr, "netc: writing %s failed: %s\n", path, strerror(errno));
    unlink(tmp);
    rc = -1;
  }
  free(tmp);
  free(hdr);
  free(e);
  return rc;
}

/* ---- import: a small JSON reader over the header ------------------------- */

typedef struct {
  const char *p, *end;
  const char *err;
} Json;

static void ws(Json *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' ||
                           *j->p == '\r'))
    j->p++;
}

static int expect(Json *j, char ch) {
  ws(j);
  if (j->p < j->end && *j->p == ch) {
    j->p++;
    return 0;
  }
  j->err = "malformed JSON";
  return -1;
}

/* A string into out (escapes other than \" and \\ kept as written: names
 * and dtypes are plain ASCII). */
static int jstring(Json *j, char *out, size_t n) {
  if (expect(j, '"'))
    return -1;
  size_t k = 0;
  while (j->p < j->end && *j->p != '"') {
    char ch = *j->p++;
    if (ch == '\\' && j->p < j->end)
      ch = *j->p++;
    if (k + 1 < n)
      out[k++] = ch;
  }
  out[k] = 0;
  if (j->p >= j->end) {
    j->err = "unterminated string";
    return -1;
  }
  j->p++;
  return 0;
}

static int jint(Json *j, int64_t *v) {
  ws(j);
  char *end;
  errno = 0;
  long long x = strtoll(j->p, &end, 10);
  if (end == j->p || end > j->end || errno || x < 0) {
    j->err = "a size or offset that is not a whole number";
    return -1;
  }
  j->p = end;
  *v = x;
  return 0;
}

/* Skips any value (the metadata). */
static int jskip(Json *j, int depth) {
  ws(j);
  if (j->p >= j->end || depth > 16)
    return j->err = "malformed JSON", -1;
  char ch = *j->p;
  char tmp[8];
  if (ch == '"')
    return jstring(j, tmp, sizeof tmp);
  if (ch == '{' || ch == '[') {
    char close = ch == '{' ? '}' : ']';
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close)
      return j->p++, 0;
    for (;;) {
      if (ch == '{' && (jstring(j, tmp, sizeof tmp) || expect(j, ':')))
        return -1;
      if (jskip(j, depth + 1))
        return -1;
      ws(j);
      if (j->p < j->end && *j->p == ',') {
        j->p++;
        continue;
      }
      return expect(j, close);
    }
  }
  while (j->p < j->end && *j->p != ',' && *j->p != '}' && *j->p != ']')
    j->p++;
  return 0;
}

typedef struct {
  char name[MAX_TENSOR_NAME];
  char dtype[8];
  int64_t dims[8];
  int ndims;
  int64_t begin, end;
  int used;
} FileTensor;

/* {"dtype": .., "shape": [..], "data_offsets": [b, e]} */
static int jtensor(Json *j, FileTensor *t) {
  if (expect(j, '{'))
    return -1;
  for (;;) {
    char key[32];
    if (jstring(j, key, sizeof key) || expect(j, ':'))
      return -1;
    if (!strcmp(key, "dtype")) {
      if (jstring(j, t->dtype, sizeof t->dtype))
        return -1;
    } else if (!strcmp(key, "shape") || !strcmp(key, "data_offsets")) {
      int shape = key[0] == 's', k = 0;
      int64_t v[8];
      if (expect(j, '['))
        return -1;
      ws(j);
      if (j->p < j->end && *j->p == ']') {
        j->p++;
      } else {
        for (;;) {
          if (k == 8 || jint(j, &v[k++]))
            return j->err = j->err ? j->err : "too many dimensions", -1;
          ws(j);
          if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
          }
          if (expect(j, ']'))
            return -1;
          break;
        }
      }
      if (shape) {
        t->ndims = k;
        memcpy(t->dims, v, sizeof(int64_t) * (size_t)k);
      } else if (k != 2 || v[1] < v[0]) {
        return j->err = "data_offsets is not [begin, end]", -1;
      } else {
        t->begin = v[0], t->end = v[1];
      }
    } else if (jskip(j, 0)) {
      return -1;
    }
    ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    return expect(j, '}');
  }
}

static int parse_header(const char *text, size_t len, FileTensor **out,
                        int *count, const char **err) {
  Json j = {text, text + len, NULL};
  int n = 0, cap = 64;
  FileTensor *t = xcalloc((size_t)cap, sizeof *t);
  if (expect(&j, '{'))
    goto fail;
  ws(&j);
  if (j.p < j.end && *j.p == '}') {
    j.p++;
  } else {
    for (;;) {
      if (n == cap)
        t = xrealloc(t, sizeof *t * (size_t)(cap *= 2));
      memset(&t[n], 0, sizeof t[n]);
      if (jstring(&j, t[n].name, sizeof t[n].name) || expect(&j, ':'))
        goto fail;
      if (!strcmp(t[n].name, "__metadata__")) {
        if (jskip(&j, 0))
          goto fail;
      } else {
        t[n].dtype[0] = 0, t[n].begin = t[n].end = -1;
        if (jtensor(&j, &t[n]))
          goto fail;
        if (!t[n].dtype[0] || t[n].begin < 0) {
          j.err = "a tensor without dtype or data_offsets";
          goto fail;
        }
        n++;
      }
      ws(&j);
      if (j.p < j.end && *j.p == ',') {
        j.p++;
        continue;
      }
      if (expect(&j, '}'))
        goto fail;
      break;
    }
  }
  *out = t, *count = n;
  return 0;
fail:
  *err = j.err ? j.err : "malformed JSON";
  free(t);
  return -1;
}

static FileTensor *find_tensor(FileTensor *t, int n, const char *name) {
  for (int i = 0; i < n && name[0]; i++)
    if (!strcmp(t[i].name, name))
      return &t[i];
  return NULL;
}

static const char *dims_text(const int64_t *d, int n, char *buf, size_t len) {
  int k = snprintf(buf, len, "[");
  for (int i = 0; i < n && k > 0 && (size_t)k < len; i++)
    k += snprintf(buf + k, len - (size_t)k, "%s%lld", i ? ", " : "",
                  (long long)d[i]);
  if (k > 0 && (size_t)k < len)
    snprintf(buf + k, len - (size_t)k, "]");
  return buf;
}

int safetensors_import(NetcState *s, const char *path) {
  const NetcModel *m = s->model;
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "netc: cannot open %s: %s\n", path, strerror(errno));
    return -1;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint64_t hlen = 0;
  if (size < 8 || fread(&hlen, 8, 1, f) != 1 || hlen < 2 ||
      hlen > (uint64_t)size - 8 || hlen > (100u << 20)) {
    fprintf(stderr, "netc: %s is not a safetensors file (its first 8 bytes "
                    "are not the size of a header it holds)\n", path);
    fclose(f);
    return -1;
  }
  char *hdr = xmalloc(hlen + 1);
  FileTensor *t = NULL;
  int nt = 0, rc = -1;
  const char *err = NULL;
  Entry *e = NULL;
  int ne = entries(m, &e);
  unsigned char *params = NULL, *stats = NULL;
  if (fread(hdr, 1, hlen, f) != hlen) {
    fprintf(stderr, "netc: %s: cannot read its header\n", path);
    goto done;
  }
  hdr[hlen] = 0;
  if (hdr[0] != '{' || parse_header(hdr, hlen, &t, &nt, &err)) {
    fprintf(stderr, "netc: %s is not a safetensors file (its header is not "
                    "JSON: %s)\n", path, err ? err : "no '{'");
    goto done;
  }
  int64_t data = 8 + (int64_t)hlen, avail = size - data;
  /* Every tensor checked before anything is read into the model. */
  params = netc_alloc(m->param_bytes);
  stats = m->stats_bytes ? netc_alloc(m->stats_bytes) : NULL;
  if (!params || (m->stats_bytes && !stats)) {
    fprintf(stderr, "netc: out of memory reading %s\n", path);
    goto done;
  }
  memcpy(params, s->params, (size_t)m->param_bytes);
  if (stats)
    memcpy(stats, s->bn_stats, (size_t)m->stats_bytes);
  for (int i = 0; i < ne; i++) {
    FileTensor *x = find_tensor(t, nt, e[i].name);
    if (!x)
      x = find_tensor(t, nt, e[i].tv);
    if (!x) {
      if (e[i].stat == 2)
        continue; /* a batch count: netc keeps none */
      fprintf(stderr, "netc: %s has no tensor %s%s%s%s (model '%s' needs "
                      "it)\n", path, e[i].name, e[i].tv[0] ? " (torchvision: "
                                                           : "",
              e[i].tv, e[i].tv[0] ? ")" : "", m->name);
      goto done;
    }
    x->used = 1;
    if (e[i].stat == 2)
      continue;
    char a[96], b[96];
    if (strcmp(x->dtype, "F32")) {
      fprintf(stderr, "netc: %s: tensor %s is %s; netc reads F32 (float32) "
                      "tensors\n", path, x->name, x->dtype);
      goto done;
    }
    if (x->ndims != e[i].ndims ||
        memcmp(x->dims, e[i].dims, sizeof(int64_t) * (size_t)e[i].ndims)) {
      fprintf(stderr, "netc: %s: tensor %s has shape %s; model '%s' needs "
                      "%s\n", path, x->name, dims_text(x->dims, x->ndims, a,
                                                       sizeof a),
              m->name, dims_text(e[i].dims, e[i].ndims, b, sizeof b));
      goto done;
    }
    int64_t bytes = entry_bytes(&e[i]);
    if (x->end - x->begin != bytes || x->end > avail) {
      fprintf(stderr, "netc: %s: tensor %s's data (bytes %lld..%lld) %s\n",
              path, x->name, (long long)x->begin, (long long)x->end,
              x->end > avail ? "lies past the end of the file (truncated?)"
                             : "does not match its shape");
      goto done;
    }
    float *buf = xmalloc((size_t)bytes);
    if (fseek(f, data + x->begin, SEEK_SET) ||
        fread(buf, 1, (size_t)bytes, f) != (size_t)bytes) {
      fprintf(stderr, "netc: %s: cannot read tensor %s\n", path, x->name);
      free(buf);
      goto done;
    }
    const NetcParam *q = &m->params[e[i].param];
    if (e[i].stat < 0)
      from_torch_layout(m, e[i].param, buf,
                        (float *)(params + q->offset));
    else
      memcpy(stats + q->stats[e[i].stat], buf, (size_t)bytes);
    free(buf);
  }
  for (int i = 0; i < nt; i++)
    if (!t[i].used) {
      fprintf(stderr, "netc: %s: tensor %s is not a parameter or statistic "
                      "of model '%s'\n", path, t[i].name, m->name);
      goto done;
    }
  memcpy(s->params, params, (size_t)m->param_bytes);
  if (stats)
    memcpy(s->bn_stats, stats, (size_t)m->stats_bytes);
  rc = 0;
done:
  free(params);
  free(stats);
  free(e);
  free(t);
  free(hdr);
  fclose(f);
  return rc;
}

/* checkpoint.c: training checkpoints that survive crashes and full disks.
 *
 * Format (version 4, host byte order, x86-64): a fixed header (magic
 * "NETCCKPT", version, the model's name, batch, parameter count and a hash
 * of its parameter table, the optimizer, the run state, a checksum of
 * everything), then the class list, the parameters, the batchnorm running
 * statistics and the optimizer state. The hashes are util.h's hash_bytes;
 * version 3's run state lacked the time budget of version 4, version 2's
 * also the label smoothing and augmentation, and version 1 had version
 * 2's layout with another hash: all are refused by their version. A file is written to a
 * temporary name, synced and renamed, so a reader sees the old file or the
 * new one, never a mix. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/checkpoint.h"
#include "util/util.h"

typedef struct {
  char magic[8];
  uint32_t version, header_bytes;
  char model[64];
  int32_t batch, classes;
  int64_t param_bytes, stats_bytes;
  uint64_t table_hash;
  int32_t optimizer, has_m2;
  uint64_t payload_bytes;
  uint64_t checksum; /* of the header (with this field 0) and the payload */
  RunState run;
  int32_t nclasses;  /* entries in the class list */
  int32_t pad;
} Header;

static uint64_t table_hash(const NetcModel *m) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int i = 0; i < m->nparam_tensors; i++) {
    const NetcParam *p = &m->params[i];
    h = hash_bytes(p->name, strlen(p->name), h);
    h = hash_bytes(&p->count, sizeof p->count, h);
    h = hash_bytes(p->dims, sizeof p->dims, h);
  }
  return h;
}

typedef struct {
  const void *p;
  size_t n;
} Part;

static int parts_of(const NetcState *s, const NetcOptimizer *o,
                    const ClassList *c, Part *parts) {
  const NetcModel *m = s->model;
  size_t names = (size_t)c->nclasses * MAX_CLASS_NAME;
  int k = 0;
  parts[k++] = (Part){c->class_ids, names};
  parts[k++] = (Part){c->class_names, names};
  size_t pb = (size_t)m->param_bytes;
  parts[k++] = (Part){s->params, pb};
  parts[k++] = (Part){s->bn_stats, (size_t)m->stats_bytes};
  parts[k++] = (Part){o->m1, pb};
  if (o->m2)
    parts[k++] = (Part){o->m2, pb};
  return k;
}

uint64_t checkpoint_state_hash(const NetcState *s, const NetcOptimizer *o) {
  const NetcModel *m = s->model;
  size_t pb = (size_t)m->param_bytes;
  uint64_t h = hash_bytes(s->params, pb, 0);
  h = hash_bytes(s->bn_stats, (size_t)m->stats_bytes, h);
  if (o->m1)
    h = hash_bytes(o->m1, pb, h);
  if (o->m2)
    h = hash_bytes(o->m2, pb, h);
  return h;
}

static Header make_header(const NetcState *s, const NetcOptimizer *o,
                          const RunState *r, const ClassList *c,
                          const Part *parts, int nparts) {
  const NetcModel *m = s->model;
  Header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, "NETCCKPT", 8);
  h.version = CKPT_VERSION;
  h.header_bytes = sizeof h;
  snprintf(h.model, sizeof h.model, "%s", m->name);
  h.batch = r->global_batch > 0 ? r->global_batch : m->batch;
  h.classes = m->classes;
  h.param_bytes = m->param_bytes;
  h.stats_bytes = m->stats_bytes;
  h.table_hash = table_hash(m);
  h.optimizer = o->kind;
  h.has_m2 = o->m2 != NULL;
  h.run = *r;
  h.nclasses = c->nclasses;
  for (int i = 0; i < nparts; i++)
    h.payload_bytes += parts[i].n;
  uint64_t sum = hash_bytes(&h, sizeof h, 0x9e3779b97f4a7c15ull);
  for (int i = 0; i < nparts; i++)
    sum = hash_bytes(parts[i].p, parts[i].n, sum);
  h.checksum = sum;
  return h;
}

static void sync_dir(const char *path) {
  char *copy = strdup(path);
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(copy);
}

int checkpoint_save(const char *path, const NetcState *s,
                    const NetcOptimizer *o, const RunState *r,
                    const ClassList *c) {
  Part parts[8];
  int n = parts_of(s, o, c, parts);
  Header h = make_header(s, o, r, c, parts, n);
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    fprintf(stderr, "netc: cannot write checkpoint %s: %s\n", tmp,
            strerror(errno));
    return -1;
  }
  int bad = fwrite(&h, sizeof h, 1, f) != 1;
  for (int i = 0; i < n && !bad; i++)
    bad = parts[i].n && fwrite(parts[i].p, 1, parts[i].n, f) != parts[i].n;
  bad = bad || fflush(f) != 0 || fsync(fileno(f)) != 0;
  int err = errno;
  bad = fclose(f) != 0 || bad;
  if (bad || rename(tmp, path) != 0) {
    fprintf(stderr, "netc: writing checkpoint %s failed: %s; the previous "
                    "checkpoint is intact\n", path, strerror(bad ? err : errno));
    unlink(tmp);
    return -1;
  }
  sync_dir(path);
  return 0;
}

int checkpoint_copy(CheckpointImage *img, const NetcState *s,
                    const NetcOptimizer *o, const RunState *r,
                    const ClassList *c) {
  const NetcModel *m = s->model;
  size_t names = (size_t)c->nclasses * MAX_CLASS_NAME;
  size_t pb = (size_t)m->param_bytes, sb = (size_t)m->stats_bytes;
  size_t need = 2 * names + pb * (o->m2 ? 3 : 2) + sb;
  if (need > img->cap) {
    unsigned char *b = malloc(need);
    if (!b)
      return -1;
    free(img->buf);
    img->buf = b, img->cap = need;
  }
  unsigned char *p = img->buf;
#define TAKE(dst, src, n) (memcpy(p, (src), (n)), (dst) = (void *)p, p += (n))
  img->s = (NetcState){.model = m};
  TAKE(img->s.params, s->params, pb);
  TAKE(img->s.bn_stats, s->bn_stats, sb);
  img->o = (NetcOptimizer){.kind = o->kind};
  TAKE(img->o.m1, o->m1, pb);
  if (o->m2)
    TAKE(img->o.m2, o->m2, pb);
  img->c = (ClassList){.path = c->path, .nclasses = c->nclasses};
  TAKE(img->c.class_ids, c->class_ids, names);
  TAKE(img->c.class_names, c->class_names, names);
#undef TAKE
  img->r = *r;
  return 0;
}

int checkpoint_write(const char *path, const CheckpointImage *img) {
  return checkpoint_save(path, &img->s, &img->o, &img->r, &img->c);
}

void checkpoint_image_free(CheckpointImage *img) {
  free(img->buf);
  *img = (CheckpointImage){0};
}

/* global: the loading run's images per step, or 0 for any (eval). */
static int check_header(const char *path, const Header *h, const NetcModel *m,
                        int global) {
  if (memcmp(h->magic, "NETCCKPT", 8)) {
    fprintf(stderr, "netc: %s is not a netc checkpoint\n", path);
    return -1;
  }
  if (h->version >= 1 && h->version < CKPT_VERSION) {
    fprintf(stderr, "netc: %s is checkpoint format version %u, written by an "
                    "older netc; this trainer reads version %d only (use the "
                    "netc that wrote it, or train again)\n",
            path, h->version, CKPT_VERSION);
    return -1;
  }
  if (h->version != CKPT_VERSION || h->header_bytes != sizeof *h) {
    fprintf(stderr, "netc: %s is checkpoint format version %u; this trainer "
                    "reads version %d (use the netc that wrote it)\n",
            path, h->version, CKPT_VERSION);
    return -1;
  }
  if (strncmp(h->model, m->name, sizeof h->model) ||
      h->param_bytes != m->param_bytes || h->table_hash != table_hash(m) ||
      h->stats_bytes != m->stats_bytes) {
    fprintf(stderr, "netc: %s holds model '%.64s' at batch %d; this trainer "
                    "is '%s' at batch %d: a checkpoint only loads into the "
                    "model that wrote it\n",
            path, h->model, h->batch, m->name, m->batch);
    return -1;
  }
  if (global && h->batch != global) {
    fprintf(stderr, "netc: %s was trained at %d images per step; this run "
                    "has %d (batch %d x processes x --accumulate): a run "
                    "resumes only at the global batch that wrote it\n",
            path, h->batch, global, m->batch);
    return -1;
  }
  return 0;
}

static int read_part(FILE *f, void *p, size_t n) {
  return n == 0 || fread(p, 1, n, f) == n ? 0 : -1;
}

/* Opens a checkpoint and reads its header for model m; NULL after a
 * message naming the file. */
static FILE *open_checkpoint(const char *path, const NetcModel *m, Header *h,
                             int global) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "netc: cannot open checkpoint %s: %s\n", path,
            strerror(errno));
    return NULL;
  }
  if (fread(h, sizeof *h, 1, f) != 1) {
    fprintf(stderr, "netc: %s is truncated (no header)\n", path);
    fclose(f);
    return NULL;
  }
  if (check_header(path, h, m, global) || h->nclasses < 0 ||
      h->nclasses > 100000) {
    fclose(f);
    return NULL;
  }
  return f;
}

/* A verified checkpoint's optimizer state, into o's plan-owned region. */
static int commit_optimizer(const char *path, NetcOptimizer *o,
                            const NetcModel *m, const Header *h,
                            const NetcOptimizer *from) {
  if (o->state && (int32_t)o->kind != h->optimizer)
    optim_free(o);
  o->kind = h->optimizer;
  if (!o->state && optim_init(o, m)) {
    fprintf(stderr, "netc: out of memory loading %s\n", path);
    return -1;
  }
  memcpy(o->m1, from->m1, (size_t)m->param_bytes);
  if (o->m2 && from->m2)
    memcpy(o->m2, from->m2, (size_t)m->param_bytes);
  o->step = h->run.global_step;
  return 0;
}

int checkpoint_load(const char *path, NetcState *s, NetcOptimizer *o,
                    RunState *r, ClassList *c) {
  const NetcModel *m = s->model;
  Header h;
  int global = r && r->global_batch > 0 ? r->global_batch : 0;
  FILE *f = open_checkpoint(path, m, &h, global);
  if (!f)
    return -1;
  /* Read into scratch copies; commit only after the checksum holds. */
  size_t pb = (size_t)m->param_bytes;
  NetcOptimizer tmp = {.kind = h.optimizer, .m1 = xmalloc(pb + 4),
                       .m2 = h.has_m2 ? xmalloc(pb + 4) : NULL};
  NetcState copy = *s;
  copy.params = xmalloc(pb + 4);
  copy.bn_stats = xmalloc((size_t)m->stats_bytes + 4);
  c->nclasses = h.nclasses;
  c->class_ids = xcalloc((size_t)h.nclasses + 1, MAX_CLASS_NAME);
  c->class_names = xcalloc((size_t)h.nclasses + 1, MAX_CLASS_NAME);
  Part parts[8];
  int n = parts_of(&copy, &tmp, c, parts), bad = 0;
  for (int i = 0; i < n && !bad; i++)
    bad = read_part(f, (void *)parts[i].p, parts[i].n);
  fclose(f);
  Header again = make_header(&copy, &tmp, &h.run, c, parts, n);
  int rc = 0;
  if (bad || again.checksum != h.checksum) {
    fprintf(stderr, "netc: %s is %s; not loaded\n", path,
            bad ? "truncated" : "corrupt (checksum mismatch)");
    rc = -1;
  } else if (!o || (rc = commit_optimizer(path, o, m, &h, &tmp)) == 0) {
    memcpy(s->params, copy.params, pb);
    if (m->stats_bytes)
      memcpy(s->bn_stats, copy.bn_stats, (size_t)m->stats_bytes);
    if (r)
      *r = h.run;
  }
  free(copy.params), free(copy.bn_stats), free(tmp.m1), free(tmp.m2);
  return rc;
}

void classes_free(ClassList *c) {
  free(c->class_ids);
  free(c->class_names);
  c->class_ids = c->class_names = NULL;
}

/* data_list.c: lists a data set without decoding anything (source_scan of
 * data_internal.h), with readdir and stat only. Two layouts, told apart by
 * whether wnids.txt exists (see data.h): the TinyImageNet release
 * (wnids.txt, words.txt, train/<wnid>/images/, val/images/ labelled by
 * val/val_annotations.txt) and ImageFolder (train/<class>/, val/<class>/).
 *
 * Guarantees: the order of classes and files depends on the directory's
 * contents only, never on readdir (classes in wnids.txt's order or sorted
 * by folder name, files sorted by name, val in val_annotations.txt's
 * order); hidden entries (".*") are left out; every label is a class. A
 * file that val_annotations.txt lists but that does not exist goes to
 * Source.missing (skipped, with a warning, when decoding); a missing class
 * folder or an unknown class is an error. The fingerprint covers every
 * listed file's relative path, size and mtime, the contents of wnids.txt,
 * words.txt and val_annotations.txt, the split, the layout and the image
 * size: whatever would change a decoded cache. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "util/util.h"

/* ---- text files ---------------------------------------------------------- */

/* Reads a whole file, NUL-terminated; NULL with errno set on failure. */
static char *read_text(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0, got;
  char *buf = xmalloc(cap);
  while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0)
    if ((n += got) + 1 == cap)
      buf = xrealloc(buf, cap *= 2);
  int err = ferror(f) ? EIO : 0;
  fclose(f);
  if (err) {
    free(buf);
    errno = err;
    return NULL;
  }
  buf[n] = 0;
  *len = n;
  return buf;
}

/* The next line of a text being consumed in place (NUL-terminated, without
 * its '\r'), or NULL at the end. */
static char *next_line(char **cursor) {
  char *s = *cursor;
  if (!s || !*s)
    return NULL;
  char *nl = strchr(s, '\n');
  *cursor = nl ? nl + 1 : s + strlen(s);
  if (nl)
    *nl = 0;
  size_t n = strlen(s);
  if (n && s[n - 1] == '\r')
    s[n - 1] = 0;
  return s;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
    s[--n] = 0;
  return s;
}

static void fp_add(Fingerprint *f, const void *p, size_t n) {
  f->h = hash_bytes(p, n, f->h);
}
static void fp_str(Fingerprint *f, const char *s) {
  fp_add(f, s, strlen(s) + 1);
}
static void fp_i64(Fingerprint *f, int64_t v) { fp_add(f, &v, sizeof v); }

/* ---- listing a data set (no decoding) ------------------------------------ */

const char *const layout_names[] = {"tiny-imagenet", "imagefolder"};

void class_lists_free(char **ids, char **names, int n) {
  for (int i = 0; i < n; i++) {
    if (ids)
      free(ids[i]);
    if (names)
      free(names[i]);
  }
  free(ids);
  free(names);
}

void source_free(Source *s) {
  class_lists_free(s->ids, s->names, s->nclasses);
  for (int i = 0; i < s->nfiles; i++)
    free(s->files[i].rel);
  free(s->files);
  for (int i = 0; i < s->nmissing; i++)
    free(s->missing[i]);
  free(s->missing);
}

static void source_add(Source *s, char *rel, int32_t label) {
  if (s->nfiles == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 1024;
    s->files = xrealloc(s->files, sizeof *s->files * (size_t)s->cap);
  }
  s->files[s->nfiles++] = (SrcFile){rel, label};
}

static void source_add_class(Source *s, const char *id) {
  s->ids = xrealloc(s->ids, sizeof(char *) * (size_t)(s->nclasses + 1));
  s->names = xrealloc(s->names, sizeof(char *) * (size_t)(s->nclasses + 1));
  s->ids[s->nclasses] = xstrdup(id);
  s->names[s->nclasses++] = NULL;
}

typedef struct {
  char *name;
  int64_t size, mtime_ns;
  int is_dir, is_file;
} Entry;

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const Entry *)a)->name, ((const Entry *)b)->name);
}

static void entries_free(Entry *v, int n) {
  for (int i = 0; i < n; i++)
    free(v[i].name);
  free(v);
}

/* Lists directory `path` sorted by name, with each entry's size and mtime;
 * hidden entries (".*", e.g. our caches or macOS "._x.jpg" litter) are left
 * out. Returns the count, or -1 with errno set. */
static int list_dir(const char *path, Entry **out) {
  DIR *dp = opendir(path);
  *out = NULL;
  if (!dp)
    return -1;
  Entry *v = NULL;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((errno = 0, e = readdir(dp))) {
    struct stat st;
    if (e->d_name[0] == '.' || fstatat(dirfd(dp), e->d_name, &st, 0))
      continue; /* hidden, or a dangling symlink */
    if (n == cap)
      v = xrealloc(v, sizeof *v * (size_t)(cap = cap ? 2 * cap : 64));
    v[n++] = (Entry){xstrdup(e->d_name), (int64_t)st.st_size,
                     (int64_t)st.st_mtim.tv_sec * 1000000000 +
                         st.st_mtim.tv_nsec,
                     S_ISDIR(st.st_mode), S_ISREG(st.st_mode)};
  }
  int err = errno;
  closedir(dp);
  if (err) {
    entries_free(v, n);
    errno = err;
    return -1;
  }
  qsort(v, (size_t)n, sizeof *v, entry_cmp);
  *out = v;
  return n;
}

static int is_jpeg_name(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Adds the JPEG files of directory `rel` (relative to the data directory),
 * sorted by name, as class `label`. `wnid`: the release class whose folder
 * this is, for a better message when it is missing. Returns 0 or -1 after a
 * message naming the directory. */
static int scan_images(Source *s, const char *rel, int label,
                       const char *wnid) {
  char *path = xprintf("%s/%s", s->dir, rel);
  Entry *v;
  int n = list_dir(path, &v);
  if (n < 0) {
    if (wnid && (errno == ENOENT || errno == ENOTDIR))
      fprintf(stderr, "netc: error: missing class folder %s (%s/wnids.txt "
                      "lists class %s; restore the folder or remove the "
                      "line)\n", path, s->dir, wnid);
    else
      fprintf(stderr, "netc: error: cannot read directory %s: %s\n", path,
              strerror(errno));
    free(path);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    if (!v[i].is_file || !is_jpeg_name(v[i].name))
      continue;
    char *file = xprintf("%s/%s", rel, v[i].name);
    fp_str(&s->fp, file);
    fp_i64(&s->fp, v[i].size);
    fp_i64(&s->fp, v[i].mtime_ns);
    source_add(s, file, label);
  }
  entries_free(v, n);
  free(path);
  return 0;
}

typedef struct {
  const char *id;
  int index;
} IdIndex;

static int id_index_cmp(const void *a, const void *b) {
  return strcmp(((const IdIndex *)a)->id, ((const IdIndex *)b)->id);
}

/* The classes sorted by id, for lookups by name. */
static IdIndex *id_index_new(const Source *s) {
  IdIndex *x = xmalloc(sizeof *x * (size_t)s->nclasses);
  for (int i = 0; i < s->nclasses; i++)
    x[i] = (IdIndex){s->ids[i], i};
  qsort(x, (size_t)s->nclasses, sizeof *x, id_index_cmp);
  return x;
}

static int id_lookup(const IdIndex *x, int n, const char *id) {
  IdIndex key = {id, 0};
  const IdIndex *hit = bsearch(&key, x, (size_t)n, sizeof *x, id_index_cmp);
  return hit ? hit->index : -1;
}

/* Reads DIR/wnids.txt: the classes, in the release's order. */
static int read_wnids(Source *s) {
  char *path = xprintf("%s/wnids.txt", s->dir), *cur, *line;
  size_t len;
  char *text = read_text(path, &len);
  if (!text) {
    fprintf(stderr, "netc: error: cannot read %s: %s\n", path,
            strerror(errno));
    free(path);
    return -1;
  }
  fp_add(&s->fp, text, len);
  int rc = 0, lineno = 0;
  for (cur = text; !rc && (line = next_line(&cur));) {
    char *id = trim(line);
    lineno++;
    if (!*id)
      continue;
    for (int i = 0; i < s->nclasses && !rc; i++)
      if (!strcmp(s->ids[i], id))
        rc = -1;
    if (rc || strchr(id, '/') || strchr(id, ' ') || strchr(id, '\t')) {
      fprintf(stderr, "netc: error: %s:%d: '%s' is %s (one class id per "
                      "line)\n", path, lineno, id,
              rc ? "listed twice" : "not a class id");
      rc = -1;
    } else {
      source_add_class(s, id);
    }
  }
  if (!rc && !s->nclasses) {
    fprintf(stderr, "netc: error: %s lists no classes\n", path);
    rc = -1;
  }
  free(text);
  free(path);
  return rc;
}

/* Names the classes from DIR/words.txt (wnid<TAB>names) when it exists;
 * a class it does not name keeps its id as its name. */
static void read_words(Source *s) {
  char *path = xprintf("%s/words.txt", s->dir), *cur, *line;
  size_t len;
  char *text = read_text(path, &len);
  free(path);
  if (text) {
    fp_add(&s->fp, text, len);
    IdIndex *x = id_index_new(s);
    for (cur = text; (line = next_line(&cur));) {
      char *tab = strchr(line, '\t');
      if (!tab)
        continue;
      *tab = 0;
      int c = id_lookup(x, s->nclasses, trim(line));
      if (c >= 0 && !s->names[c])
        s->names[c] = xstrdup(trim(tab + 1));
    }
    free(x);
    free(text);
  }
  for (int c = 0; c < s->nclasses; c++)
    if (!s->names[c])
      s->names[c] = xstrdup(s->ids[c]);
}

/* One line of val_annotations.txt: file<TAB>wnid<TAB>box. */
static int add_val_line(Source *s, const IdIndex *x, char *line,
                        const char *ann, int lineno) {
  char *save = NULL, *file = strtok_r(line, " \t", &save);
  if (!file)
    return 0;
  char *wnid = strtok_r(NULL, " \t", &save);
  int c = wnid ? id_lookup(x, s->nclasses, wnid) : -1;
  if (c < 0) {
    if (wnid)
      fprintf(stderr, "netc: error: %s:%d: unknown class %s (not in "
                      "%s/wnids.txt)\n", ann, lineno, wnid, s->dir);
    else
      fprintf(stderr, "netc: error: %s:%d: expected <file> <wnid>, got "
                      "'%s'\n", ann, lineno, file);
    return -1;
  }
  char *rel = xprintf("val/images/%s", file), *path = xprintf("%s/%s", s->dir, rel);
  struct stat st;
  fp_str(&s->fp, rel);
  if (!stat(path, &st) && S_ISREG(st.st_mode)) {
    fp_i64(&s->fp, (int64_t)st.st_size);
    fp_i64(&s->fp, (int64_t)st.st_mtim.tv_sec * 1000000000 +
                       st.st_mtim.tv_nsec);
    source_add(s, rel, c);
  } else {
    fp_i64(&s->fp, -1);
    s->missing = xrealloc(s->missing, sizeof(char *) * (size_t)(s->nmissing + 1));
    s->missing[s->nmissing++] =
        xprintf("%s: listed on line %d of %s but %s", path, lineno, ann,
             errno == ENOENT || !errno ? "missing" : strerror(errno));
    free(rel);
  }
  free(path);
  return 0;
}

/* The release's val split: val/images/ labelled by val_annotations.txt, in
 * its order. */
static int scan_release_val(Source *s) {
  char *ann = xprintf("%s/val/val_annotations.txt", s->dir), *cur, *line;
  size_t len;
  char *text = read_text(ann, &len);
  if (!text) {
    fprintf(stderr, "netc: error: cannot read %s: %s (the val split of "
                    "TinyImageNet needs it)\n", ann, strerror(errno));
    free(ann);
    return -1;
  }
  fp_add(&s->fp, text, len);
  IdIndex *x = id_index_new(s);
  int rc = 0, lineno = 0;
  for (cur = text; !rc && (line = next_line(&cur));)
    rc = add_val_line(s, x, line, ann, ++lineno);
  free(x);
  free(text);
  free(ann);
  return rc;
}

static int scan_release(Source *s) {
  if (read_wnids(s))
    return -1;
  read_words(s);
  if (!strcmp(s->split, "val"))
    return scan_release_val(s);
  for (int c = 0; c < s->nclasses; c++) {
    char *rel = xprintf("train/%s/images", s->ids[c]);
    int rc = scan_images(s, rel, c, s->ids[c]);
    free(rel);
    if (rc)
      return -1;
  }
  return 0;
}

/* ImageFolder's classes: train/'s subfolders, sorted by name. */
static int scan_folder_classes(Source *s) {
  char *train = xprintf("%s/train", s->dir);
  Entry *v;
  int n = list_dir(train, &v);
  if (n < 0)
    fprintf(stderr, "netc: error: cannot read directory %s: %s\n", train,
            strerror(errno));
  for (int i = 0; i < n; i++)
    if (v[i].is_dir) {
      source_add_class(s, v[i].name);
      s->names[s->nclasses - 1] = xstrdup(v[i].name);
    }
  if (n >= 0 && !s->nclasses)
    fprintf(stderr, "netc: error: %s has no class folders (expected "
                    "train/<class>/<image>.jpg)\n", train);
  entries_free(v, n > 0 ? n : 0);
  free(train);
  return s->nclasses ? 0 : -1;
}

/* ImageFolder's val split: val/<class>/ folders, each a train class. */
static int scan_folder_val(Source *s) {
  char *val = xprintf("%s/val", s->dir);
  Entry *v;
  int n = list_dir(val, &v), rc = n < 0 ? -1 : 0;
  if (rc)
    fprintf(stderr, "netc: error: cannot read directory %s: %s\n", val,
            strerror(errno));
  IdIndex *x = id_index_new(s);
  for (int i = 0; i < n && !rc; i++) {
    if (!v[i].is_dir)
      continue;
    int c = id_lookup(x, s->nclasses, v[i].name);
    char *rel = xprintf("val/%s", v[i].name);
    if (c < 0)
      fprintf(stderr, "netc: error: %s/%s is a class that %s/train does not "
                      "have (every val class needs a train folder of the "
                      "same name)\n", s->dir, rel, s->dir);
    rc = c < 0 ? -1 : scan_images(s, rel, c, NULL);
    free(rel);
  }
  free(x);
  entries_free(v, n > 0 ? n : 0);
  free(val);
  return rc;
}

static int scan_folder(Source *s) {
  if (scan_folder_classes(s))
    return -1;
  if (!strcmp(s->split, "val"))
    return scan_folder_val(s);
  for (int c = 0; c < s->nclasses; c++) {
    char *rel = xprintf("train/%s", s->ids[c]);
    int rc = scan_images(s, rel, c, NULL);
    free(rel);
    if (rc)
      return -1;
  }
  return 0;
}

/* Lists split `split` of `dir` and fingerprints it. */
int source_scan(Source *s, const char *dir, const char *split,
                const DataOptions *o) {
  memset(s, 0, sizeof *s);
  s->dir = dir;
  s->split = split;
  struct stat st;
  int bad = stat(dir, &st) ? errno : S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
  if (bad) {
    fprintf(stderr, "netc: error: cannot open data directory %s: %s\n", dir,
            strerror(bad));
    return -1;
  }
  char *wnids = xprintf("%s/wnids.txt", dir), *train = xprintf("%s/train", dir);
  s->layout = access(wnids, F_OK) == 0 ? LAYOUT_RELEASE : LAYOUT_FOLDER;
  int has_train = !stat(train, &st) && S_ISDIR(st.st_mode);
  free(wnids);
  free(train);
  if (s->layout == LAYOUT_FOLDER && !has_train) {
    fprintf(stderr, "netc: error: %s is not a data set: it has neither "
                    "wnids.txt (TinyImageNet) nor train/<class>/ folders "
                    "(ImageFolder)\n", dir);
    return -1;
  }
  fp_str(&s->fp, "netc-data-1");
  fp_str(&s->fp, split);
  fp_i64(&s->fp, s->layout);
  fp_i64(&s->fp, (int64_t)o->h << 32 | (uint32_t)o->w);
  if ((s->layout == LAYOUT_RELEASE ? scan_release : scan_folder)(s))
    return -1;
  for (int c = 0; c < s->nclasses; c++)
    fp_str(&s->fp, s->ids[c]);
  if (!s->nfiles && !s->nmissing) {
    fprintf(stderr, "netc: error: no JPEG images for split %s in %s\n",
            split, dir);
    return -1;
  }
  return 0;
}

/* diag.c: source files and diagnostics.
 *
 * Every message has the form `path:line:col: error: message`, followed by the
 * source line and a caret under the column, like a C compiler. After
 * MAX_ERRORS errors the Diag sets `stop` and says so once; passes check it at
 * statement boundaries and return. */
#include <errno.h>
#include <string.h>

#include "netc.h"

enum { MAX_FILE_BYTES = 64 << 20, SHOW_COLS = 100 };

void diag_init(Diag *d, Pool *pool, FILE *out) {
  memset(d, 0, sizeof *d);
  d->pool = pool;
  d->out = out;
}

int diag_add_text(Diag *d, const char *path, const char *text, size_t len) {
  if (d->nfiles >= MAX_IMPORTS)
    return -1;
  SourceFile *f = &d->files[d->nfiles];
  f->path = pool_strdup(d->pool, path);
  f->text = pool_strndup(d->pool, text, len);
  f->len = len;
  return d->nfiles++;
}

int diag_load(Diag *d, const char *path, Loc from) {
  if (d->nfiles >= MAX_IMPORTS) {
    diag_error(d, from, "too many imported files (the limit is %d)",
               MAX_IMPORTS);
    return -1;
  }
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    diag_error(d, from, "cannot open '%s': %s", path, strerror(errno));
    return -1;
  }
  /* Read in chunks: works for pipes and refuses absurd sizes. */
  size_t cap = 4096, len = 0;
  char *buf = pool_alloc(d->pool, cap);
  for (;;) {
    if (len == cap) {
      if (cap >= MAX_FILE_BYTES) {
        fclose(fp);
        diag_error(d, from, "'%s' is larger than %d MiB", path,
                   MAX_FILE_BYTES >> 20);
        return -1;
      }
      char *nb = pool_alloc(d->pool, cap * 2);
      memcpy(nb, buf, len);
      buf = nb;
      cap *= 2;
    }
    size_t n = fread(buf + len, 1, cap - len, fp);
    len += n;
    if (n == 0)
      break;
  }
  bool bad = ferror(fp);
  fclose(fp);
  if (bad) {
    diag_error(d, from, "cannot read '%s'", path);
    return -1;
  }
  return diag_add_text(d, path, buf, len);
}

const char *loc_str(Diag *d, Loc loc) {
  if (loc.file < 0 || loc.file >= d->nfiles)
    return "netc";
  if (loc.line < 1) /* the file as a whole */
    return d->files[loc.file].path;
  return pool_printf(d->pool, "%s:%d:%d", d->files[loc.file].path, loc.line,
                     loc.col);
}

/* Prints the source line of `loc` and a caret under its column. Very long
 * lines are shown as a window around the column; control bytes and
 * non-ASCII bytes as '?', so the caret stays aligned on any terminal. */
static void show_line(Diag *d, Loc loc) {
  if (loc.file < 0 || loc.file >= d->nfiles || loc.line < 1)
    return;
  SourceFile *f = &d->files[loc.file];
  const char *p = f->text, *end = f->text + f->len;
  for (int l = 1; l < loc.line && p < end; p++)
    if (*p == '\n')
      l++;
  const char *eol = p;
  while (eol < end && *eol != '\n')
    eol++;
  long len = eol - p, col = loc.col - 1;
  if (col > len)
    col = len;
  long from = col > SHOW_COLS - 20 ? col - (SHOW_COLS - 20) : 0;
  long to = from + SHOW_COLS < len ? from + SHOW_COLS : len;
  fputs(from > 0 ? " ..." : " ", d->out);
  for (long i = from; i < to; i++) {
    unsigned char c = (unsigned char)p[i];
    fputc(c == '\t' || (c >= 32 && c < 127) ? c : '?', d->out);
  }
  fputs(to < len ? "...\n" : "\n", d->out);
  fputs(from > 0 ? "    " : " ", d->out);
  for (long i = from; i < col; i++)
    fputc(p[i] == '\t' ? '\t' : ' ', d->out);
  fputs("^\n", d->out);
}

static void report(Diag *d, Loc loc, const char *kind, const char *fmt,
                   va_list ap) {
  fprintf(d->out, "%s: %s: ", loc_str(d, loc), kind);
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  show_line(d, loc);
}

struct Seen {
  Loc loc;
  const char *msg;
  struct Seen *next;
};

bool diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap) {
  if (d->stop)
    return false;
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  char *msg = pool_alloc(d->pool, (size_t)n + 1);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  for (struct Seen *s = d->seen; s; s = s->next)
    if (s->loc.file == loc.file && s->loc.line == loc.line &&
        s->loc.col == loc.col && !strcmp(s->msg, msg)) {
      d->muted = true;
      return false;
    }
  struct Seen *s = pool_alloc(d->pool, sizeof *s);
  *s = (struct Seen){loc, msg, d->seen};
  d->seen = s;
  d->muted = false;
  fprintf(d->out, "%s: error: %s\n", loc_str(d, loc), msg);
  show_line(d, loc);
  if (++d->errors >= MAX_ERRORS) {
    fprintf(d->out, "netc: too many errors (%d), stopping\n", d->errors);
    d->stop = true;
  }
  return true;
}

bool diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bool shown = diag_verror(d, loc, fmt, ap);
  va_end(ap);
  return shown;
}

void diag_warning(Diag *d, Loc loc, const char *fmt, ...) {
  if (d->stop)
    return;
  d->muted = false;
  va_list ap;
  va_start(ap, fmt);
  report(d, loc, "warning", fmt, ap);
  va_end(ap);
  d->warnings++;
}

/* A note belongs to the error just reported: suppressed once stopped. Notes
 * are short, so they show no source line unless it adds a place. */
void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  if (d->stop || d->muted)
    return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(d->out, "%s: note: ", loc_str(d, loc));
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  va_end(ap);
}

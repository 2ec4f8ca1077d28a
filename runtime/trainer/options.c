/* options.c: the trainer's command line (options.h). Every value is
 * checked whole: a number must be all of its text (no "5x", no " 5"),
 * within its type (errno), finite and within the option's range; a
 * message names the option and the value, and the status is 2. Also the
 * exit status of a standard output that could not be written. */
#include "trainer/options.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/netc_model.h"

/* "--data DIR --checkpoint FILE [options] IMAGE...": the required options,
 * then the others, then the positional arguments. */
static void print_usage(FILE *f, const CommandSpec *c) {
  fprintf(f, "usage: %s %s", netc_model.name, c->name);
  int optional = 0;
  for (const Option *o = c->options; o->name; o++) {
    if (o->required)
      fprintf(f, " %s %s", o->name, o->value);
    optional |= !o->required;
  }
  fprintf(f, "%s%s%s\n", optional ? " [options]" : "", c->args ? " " : "",
          c->args ? c->args : "");
}

static void print_help(const CommandSpec *c) {
  print_usage(stdout, c);
  printf("%s\n\n", c->about);
  char left[64];
  for (const Option *o = c->options; o->name; o++) {
    snprintf(left, sizeof left, "%s%s%s", o->name, o->value ? " " : "",
             o->value ? o->value : "");
    printf("  %-24s %s\n", left, o->help);
  }
  printf("  %-24s %s\n", "-h, --help", "print this help and exit");
}

int usage_error(const CommandSpec *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: ", netc_model.name);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  print_usage(stderr, c);
  fprintf(stderr, "Try '%s %s --help'.\n", netc_model.name, c->name);
  return 2;
}

/* What the option's value must be: "a whole number >= 1", "a number from
 * 0 to 1", "DIR", "sgd, adam or adamw". */
static const char *wanted(const Option *o, char *buf, size_t n) {
  if (o->text)
    return o->value;
  if (o->choice) {
    size_t at = 0;
    for (int i = 0; o->choices[i] && at < n; i++)
      at += (size_t)snprintf(buf + at, n - at, "%s%s", i == 0 ? ""
                             : o->choices[i + 1] ? ", " : " or ",
                             o->choices[i]);
    return buf;
  }
  /* Whole numbers in full (2147483647, not 2.14748e+09). */
  int digits = o->whole ? 15 : 6;
  const char *kind = o->whole ? "a whole number" : "a number";
  if (o->max == OPTIONS_NO_MAX)
    snprintf(buf, n, "%s >= %.*g", kind, digits, o->min);
  else
    snprintf(buf, n, "%s from %.*g to %.*g", kind, digits, o->min, digits,
             o->max);
  return buf;
}

/* strtol and strtod skip leading space and stop at the first character
 * they cannot use: the end pointer and errno say whether all of s was a
 * number that fits. */
static int parse_whole(const char *s, long *v) {
  char *end;
  errno = 0;
  *v = strtol(s, &end, 10);
  return end == s || *end || errno || isspace((unsigned char)s[0]) ? -1 : 0;
}

static int parse_real(const char *s, double *v) {
  char *end;
  errno = 0;
  *v = strtod(s, &end);
  return end == s || *end || errno || isspace((unsigned char)s[0]) ||
                 !isfinite(*v)
             ? -1
             : 0;
}

static int in_range(const Option *o, double v) {
  return v >= o->min && v <= o->max;
}

/* Stores value v of option o; returns 0, or 2 after a message. */
static int set_value(const CommandSpec *c, const Option *o, const char *v) {
  char want[256];
  long w;
  double r;
  if (o->text) {
    *o->text = v;
    return 0;
  }
  if (o->choice) {
    for (int i = 0; o->choices[i]; i++)
      if (!strcmp(v, o->choices[i])) {
        *o->choice = i;
        return 0;
      }
    return usage_error(c, "%s is %s, not '%s'", o->name, wanted(o, want, sizeof want),
                v);
  }
  if (o->whole && !parse_whole(v, &w) && in_range(o, (double)w)) {
    *o->whole = w;
    return 0;
  }
  if (o->real && !parse_real(v, &r) && in_range(o, r)) {
    *o->real = r;
    return 0;
  }
  return usage_error(c, "%s needs %s, not '%s'", o->name,
              wanted(o, want, sizeof want), v);
}

static const Option *find_option(const CommandSpec *c, const char *word,
                                 size_t len) {
  for (const Option *o = c->options; o->name; o++)
    if (strlen(o->name) == len && !strncmp(o->name, word, len))
      return o;
  return NULL;
}

/* One option at argv[*i] (a word starting with '-'); *i moves past its
 * value. Returns OPTIONS_RUN, or an exit status. */
static int one_option(const CommandSpec *c, int argc, char **argv, int *i) {
  const char *w = argv[*i], *eq = strchr(w, '=');
  if (!strcmp(w, "-h") || !strcmp(w, "--help")) {
    print_help(c);
    return 0;
  }
  size_t len = eq ? (size_t)(eq - w) : strlen(w);
  const Option *o = find_option(c, w, len);
  if (!o)
    return usage_error(c, "unknown option '%.*s'", (int)len, w);
  if (o->flag) {
    if (eq)
      return usage_error(c, "%s takes no value, not '%s'", o->name, eq + 1);
    *o->flag = 1;
    return OPTIONS_RUN;
  }
  const char *v = eq ? eq + 1 : *i + 1 < argc ? argv[++*i] : NULL;
  char want[256];
  if (!v)
    return usage_error(c, "%s needs %s", o->name, wanted(o, want, sizeof want));
  int rc = set_value(c, o, v);
  return rc ? rc : OPTIONS_RUN;
}

int parse_command(const CommandSpec *c, int argc, char **argv, int *nargs) {
  int n = 0, only_args = 0;
  for (int i = 0; i < argc; i++) {
    if (only_args || argv[i][0] != '-' || !argv[i][1]) {
      argv[n++] = argv[i]; /* n <= i: nothing unread is overwritten */
    } else if (!strcmp(argv[i], "--")) {
      only_args = 1;
    } else {
      int rc = one_option(c, argc, argv, &i);
      if (rc != OPTIONS_RUN)
        return rc;
    }
  }
  for (const Option *o = c->options; o->name; o++)
    if (o->required && o->text && !*o->text)
      return usage_error(c, "%s %s is required", o->name, o->value);
  if (n > c->max_args && c->max_args >= 0)
    return usage_error(c, "unexpected argument '%s'", argv[c->max_args]);
  if (n < c->min_args)
    return usage_error(c, "%s needs %s", c->name, c->args);
  if (nargs)
    *nargs = n;
  return OPTIONS_RUN;
}

Option threads_option(long *threads) {
  return (Option){"--threads", "T", "threads for OpenMP and OpenBLAS "
                  "(default 0: all cores)", .whole = threads, .min = 0,
                  .max = 1024};
}

static int stdout_errno; /* of the first failed flush; 0: none */

int flush_stdout(void) {
  errno = 0;
  if (fflush(stdout) == 0 && !ferror(stdout))
    return 0;
  if (!stdout_errno)
    stdout_errno = errno ? errno : EIO;
  errno = stdout_errno;
  return -1;
}

int output_status(int rc) {
  if (flush_stdout() == 0)
    return rc;
  if (errno != EPIPE)
    fprintf(stderr, "%s: writing the output: %s\n", netc_model.name,
            strerror(errno));
  return 1;
}

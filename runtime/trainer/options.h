/* options.h: the trainer's command line: the one parser of every
 * command's options, and the end of its standard output.
 *
 * A command describes its options in a table of Option, each naming one
 * typed destination; parse_command fills them, checking every number in
 * full (the whole text, its range, finite), or prints what is wrong, naming
 * the option and the value, and says to try --help:
 *
 *   resnet18: --steps needs a whole number >= 1, not '5x'
 *
 * Options may come in any order, before or after the positional arguments,
 * as `--name value` or `--name=value`; `--` ends them. -h and --help print
 * the command's usage and options. No abbreviations: `--ep` is not
 * `--epochs` (getopt_long would take it, and a later option could make it
 * ambiguous). */
#ifndef NETC_OPTIONS_H
#define NETC_OPTIONS_H

#include <math.h>

typedef struct {
  const char *name;  /* "--steps" */
  const char *value; /* its value in --help ("N"); NULL for a flag */
  const char *help;  /* one line for --help */
  /* The destination; exactly one is set, and it says the option's kind. */
  int *flag;                  /* no value: set to 1 */
  const char **text;          /* any text */
  long *whole;                /* a whole number in [min, max] */
  double *real;               /* a finite number in [min, max] */
  int *choice;                /* the index of the value in choices */
  const char *const *choices; /* for choice: the names, NULL-terminated */
  double min, max;            /* for whole and real */
  int required;               /* the command cannot run without it */
} Option;

typedef struct {
  const char *name;       /* "step" */
  const char *about;      /* what the command does, for --help */
  const char *args;       /* its positional arguments ("IMAGE..."), or NULL */
  int min_args, max_args; /* how many (max -1: any number) */
  const Option *options;  /* ends with an entry whose name is NULL */
} CommandSpec;

/* parse_command's result when the command should run. */
enum { OPTIONS_RUN = -1 };

/* Parses argv[0..argc) (the words after the command's name) against c.
 * Moves the positional arguments to the front of argv and stores their
 * number in *nargs (may be NULL when the command takes none). Returns
 * OPTIONS_RUN, or the exit status the command should return: 0 after
 * --help, 2 after a message about a bad option. */
int parse_command(const CommandSpec *c, int argc, char **argv, int *nargs);

/* A usage error in command c, found after parse_command: "<model>: <the
 * message>", c's usage and where --help is, on stderr. Returns 2, the exit
 * status of bad usage. */
int usage_error(const CommandSpec *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* --threads T: OpenMP's and OpenBLAS's threads, 0 (the default) all. */
Option threads_option(long *threads);

/* Flushes stdout: 0, or -1 with errno set. The first failure's errno is
 * kept for output_status: glibc drops what it could not write, so a later
 * flush may find nothing to write and succeed. */
int flush_stdout(void);

/* The exit status after a command returned rc: rc, or 1 if stdout could
 * not be written. The reason is printed unless it was EPIPE (the reader
 * has gone, as in `trainer info | head -c 10`), which ends the trainer
 * quietly, as it ends standard tools. */
int output_status(int rc);

/* An Option's max when there is none: any long, any finite double. */
#define OPTIONS_NO_MAX HUGE_VAL

#endif

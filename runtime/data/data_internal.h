/* data_internal.h: what the files of the data pipeline share behind
 * data.h; trainers never include it.
 *
 *   data_list.c   lists a data set's files and classes into a Source
 *   jpeg.c        decodes a Source's JPEGs into pixel slots (and image_load)
 *   data_cache.c  keeps those pixels in a cache file and maps it into a
 *                 Dataset (dataset_open, dataset_close)
 *   loader.c      turns a Dataset into batches; it needs nothing from here
 *
 * A Source is owned by dataset_open: source_scan fills it, decode_all and
 * the cache read it, and the Dataset takes over its class lists. */
#ifndef NETC_DATA_INTERNAL_H
#define NETC_DATA_INTERNAL_H

#include <stdint.h>

#include "data/data.h"

/* A running hash (util.h's hash_bytes, chained) of everything that decides
 * a cache's contents; a cache is current when its fingerprint is equal. */
typedef struct {
  uint64_t h;
} Fingerprint;

enum { LAYOUT_RELEASE, LAYOUT_FOLDER };
/* Dataset.layout's names, indexed by LAYOUT_*. */
extern const char *const layout_names[2];

typedef struct {
  char *rel; /* relative to the data directory */
  int32_t label;
} SrcFile;

typedef struct {
  const char *dir, *split;
  int layout;
  int nclasses;
  char **ids, **names;
  SrcFile *files;
  int nfiles, cap;
  char **missing; /* "path: why" of listed files that do not exist */
  int nmissing;
  Fingerprint fp;
} Source;

/* Lists split `split` of `dir` (readdir and stat only, nothing decoded) and
 * fingerprints it, with o->h and o->w. Returns 0, or -1 after a message
 * naming the file or directory at fault; free `s` with source_free either
 * way. */
int source_scan(Source *s, const char *dir, const char *split,
                const DataOptions *o);
void source_free(Source *s);
/* Frees n class ids and names and their lists (either may be NULL): a
 * Source's, or the Dataset's that took them over. */
void class_lists_free(char **ids, char **names, int n);

/* `opt` with its unset fields (size 0) at their defaults; opt may be NULL. */
DataOptions options_or_defaults(const DataOptions *opt);

typedef struct {
  int n, skipped, resized;
} DecodeStats;

/* Decodes every file of `s` into pixels (room for s->nfiles images of
 * o->h x o->w x 3) and labels, OpenMP over files. The images that could be
 * read come first, in list order, st->n of them; each skipped file is
 * warned about. Returns 0, or -1 after an error (an image of the wrong size
 * without o->resize). */
int decode_all(const Source *s, const DataOptions *o, uint8_t *pixels,
               int32_t *labels, DecodeStats *st);

#endif

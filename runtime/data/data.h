/* data.h: TinyImageNet (and ImageFolder) data sets for netc trainers:
 * reading, decoding, caching, and batches with augmentation. */
#ifndef NETC_DATA_H
#define NETC_DATA_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int resize;            /* 1: resize images that are not HxW; 0: error */
  const char *cache_dir; /* where caches go when the data dir is read-only;
                            $NETC_CACHE_DIR overrides it; NULL: that, else
                            ~/.cache/netc. NETC_CACHE_READONLY_DATA=1
                            treats the data dir as read-only (for tests
                            run as root, whom chmod does not stop) */
  int threads;           /* decoding threads (0: all cores) */
  int quiet;             /* 1: no progress lines while decoding (the final
                            "decoded N images" line is always printed) */
  int h, w;              /* the size images must have (64, 64) */
} DataOptions;

typedef struct {
  int n;                 /* images */
  int h, w;              /* each HxW, 3 channels, uint8 RGB, HWC order */
  int nclasses;
  char **class_ids;      /* wnid (release layout) or folder name */
  char **class_names;    /* from words.txt, or the folder name */
  const uint8_t *pixels; /* n * h * w * 3 */
  const int32_t *labels; /* n, each in 0 .. nclasses-1 */
  int skipped;           /* unreadable files skipped (warned about) */
  const char *cache_path;
  const char *layout;    /* "tiny-imagenet" or "imagefolder" */
  void *map;             /* the mapped cache file */
  size_t map_size;
} Dataset;

/* Opens split `split` ("train" or "val") of the data set in `dir`. Detects
 * the layout: the TinyImageNet release (wnids.txt, train/<wnid>/images/,
 * val/images/ + val/val_annotations.txt, words.txt) or ImageFolder
 * (train/<class>/<file>.jpg, val/<class>/<file>.jpg, classes sorted). The
 * first open decodes every JPEG into a uint8 cache file (beside the data,
 * or in the cache directory when the data directory is read-only); later
 * opens map it, and rebuild it when the files changed. Grayscale images
 * become RGB. A corrupt, truncated or empty file is skipped with a warning
 * naming it; a wrong size is an error naming the file unless opt->resize.
 * Returns 0, or -1 after a message on stderr naming the file or directory
 * at fault. The val split's classes are the train split's. */
int dataset_open(Dataset *d, const char *dir, const char *split,
                 const DataOptions *opt);
void dataset_close(Dataset *d);

/* Decodes one JPEG file into rgb (h * w * 3), resizing if allowed. Returns 0,
 * 1 for an unreadable file (warned), -1 for a wrong size (message). For
 * `predict`. */
int image_load(const char *path, uint8_t *rgb, const DataOptions *opt);

/* The original project's normalization. */
#define NETC_MEAN_R 0.4802f
#define NETC_MEAN_G 0.4481f
#define NETC_MEAN_B 0.3975f
#define NETC_STD_R 0.2302f
#define NETC_STD_G 0.2265f
#define NETC_STD_B 0.2262f

/* Normalizes one HWC uint8 image into floats (NHWC row), no augmentation. */
void image_normalize(float *out, const uint8_t *rgb, int h, int w);

typedef struct Loader Loader;

typedef struct {
  int batch;
  int train;     /* 1: shuffled, random crop (zero padding) and flip */
  int no_flip;   /* train: no random horizontal flip (--no-augment) */
  int pad;       /* crop padding, pixels (default 4; taken as given, so
                    0 means no random crop) */
  uint64_t seed; /* order and augmentation derive from (seed, epoch, index) */
  int prefetch;  /* 1: a thread prepares the next batches */
  /* One process's share of a global batch (data-parallel runs and
   * gradient accumulation; 0: the whole batch is this loader's). A step
   * covers `group` images of the epoch's order; this loader yields
   * `parts` batches of it (0: 1), images [offset, offset + parts x batch)
   * of the group, in order. A val loader (parts 1) gets its slice of each
   * group, which may be short or empty at the end. The images and their
   * augmentation depend on their global position only, so N loaders with
   * offsets 0, B, ..., (N-1)B yield exactly one loader's batches of N B. */
  int group, offset, parts;
} LoaderOptions;

Loader *loader_new(const Dataset *d, const LoaderOptions *o);
void loader_free(Loader *l);
/* Batches in one epoch (steps x parts): train drops the last partial
 * group; eval keeps it. */
int loader_steps(const Loader *l);
/* Positions the loader at batch `step` of epoch `epoch` (0-based): the
 * batches that follow are exactly those of an uninterrupted run. */
void loader_seek(Loader *l, int epoch, int step);
/* Writes the next batch: x (batch, h, w, 3) normalized floats, y labels.
 * Returns how many images are real (the rest, at the end of an eval epoch,
 * are zero images with label 0), or 0 when the epoch is over (x and y
 * untouched); the call after that starts the next epoch. A loader is for
 * one thread, and its Dataset must outlive it. */
int loader_next(Loader *l, float *x, int32_t *y);

#endif

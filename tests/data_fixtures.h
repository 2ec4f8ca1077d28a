/* data_fixtures.h: the helpers of the data suites (check_data.c,
 * check_loader.c), defined in data_fixtures.c. */
#ifndef DATA_FIXTURES_H
#define DATA_FIXTURES_H

#include <stdint.h>
#include <sys/types.h>

#include "check_netc.h"
#include "data/data.h"

/* A formatted, malloc'ed string; fails the test if it cannot. */
char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mkdir_p(const char *path);
void write_text(const char *path, const char *text);

/* The red level of class c's images; green says which image of the class
 * it is, so order and labels can be read back from the pixels. */
int class_red(int c);
int image_green(int k);
/* Writes a w x h JPEG (quality 95) with `comps` components: RGB with red
 * `red`, green `green` and a gentle blue ramp; 1 component: a gray ramp;
 * 4: uniform Adobe CMYK (inverted) ink values red, green, 0, 200. */
void write_jpeg(const char *path, int w, int h, int comps, int red,
                int green);

/* A fresh directory for one test, and a cache directory beside it that
 * NETC_CACHE_DIR points at (so no test writes to ~/.cache). */
char *fresh_dir(const char *name);

/* The release layout's classes, deliberately not in sorted order. */
extern const char *const wnid[3];
extern const char *const word[3];
/* val_k's class */
extern const int val_class[6];
/* TinyImageNet's release layout: 3 classes x 4 train images (class 1's
 * first one grayscale), 6 val images. */
char *make_release(const char *name);

DataOptions quiet_options(void);

/* Sends stderr to a file until capture_end, which returns what was said. */
void capture_begin(void);
char *capture_end(void);
/* Opens a split with stderr captured; returns dataset_open's result. */
int open_captured(Dataset *d, const char *root, const char *split,
                  const DataOptions *o, char **messages);

double channel_mean(const Dataset *d, int i, int c);
ino_t inode_of(const char *path);

#endif

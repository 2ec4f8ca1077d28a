/* check_loader.c: the loader (runtime/data/loader.c): order, augmentation
 * (crops and flips found back in the output), normalization, padding,
 * determinism per seed, ranks' shares, seeking, freeing mid-epoch, and a
 * real decoded data set (data_fixtures.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data_fixtures.h"

/* ---- the loader --------------------------------------------------------- */

/* An in-memory data set: image i has label i and pixels that are never 0,
 * so crop padding stands out. */
static Dataset fake_dataset(int n, int h, int w) {
  Dataset d = {.n = n, .h = h, .w = w, .nclasses = n};
  uint8_t *px = malloc((size_t)n * h * w * 3);
  int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
  for (int i = 0; i < n; i++) {
    labels[i] = i;
    for (int k = 0; k < h * w * 3; k++)
      px[(size_t)i * h * w * 3 + k] = (uint8_t)(1 + (i * 7 + k * 13) % 255);
  }
  d.pixels = px;
  d.labels = labels;
  return d;
}

static void fake_free(Dataset *d) {
  free((void *)d->pixels);
  free((void *)d->labels);
}

static float norm(int v, int c) {
  const float mean[3] = {NETC_MEAN_R, NETC_MEAN_G, NETC_MEAN_B};
  const float std[3] = {NETC_STD_R, NETC_STD_G, NETC_STD_B};
  return ((float)v / 255.0f - mean[c]) / std[c];
}

START_TEST(test_normalize) {
  const uint8_t rgb[6] = {0, 0, 0, 255, 128, 7};
  float out[6];
  image_normalize(out, rgb, 1, 2);
  for (int i = 0; i < 6; i++)
    ck_assert_float_eq(out[i], norm(rgb[i], i % 3)); /* exactly */
  ck_assert_float_eq_tol(out[0], -0.4802f / 0.2302f, 1e-6f);
  ck_assert_float_eq_tol(out[3], (1 - 0.4802f) / 0.2302f, 1e-6f);
  ck_assert_float_eq_tol(out[4], (128 / 255.0f - 0.4481f) / 0.2265f, 1e-6f);
  ck_assert_float_eq_tol(out[5], (7 / 255.0f - 0.3975f) / 0.2262f, 1e-6f);
}
END_TEST

typedef struct {
  float *x;
  int32_t *y;
  int n;
} Got;

static Got next_batch(Loader *l, int batch, size_t img) {
  Got g = {malloc(sizeof(float) * img * (size_t)batch),
           malloc(sizeof(int32_t) * (size_t)batch), 0};
  g.n = loader_next(l, g.x, g.y);
  return g;
}

static int same_batch(Got a, Got b, int batch, size_t img) {
  return a.n == b.n && !memcmp(a.x, b.x, sizeof(float) * img * (size_t)batch) &&
         !memcmp(a.y, b.y, sizeof(int32_t) * (size_t)batch);
}

static void got_free(Got g) {
  free(g.x);
  free(g.y);
}

START_TEST(test_loader_eval) {
  Dataset d = fake_dataset(37, 8, 8);
  size_t img = 8 * 8 * 3;
  for (int prefetch = 0; prefetch < 2; prefetch++) {
    LoaderOptions lo = {.batch = 8, .train = 0, .prefetch = prefetch};
    Loader *l = loader_new(&d, &lo);
    ck_assert_int_eq(loader_steps(l), 5);
    loader_seek(l, 0, 0);
    int total = 0;
    for (int step = 0; step < 5; step++) {
      Got g = next_batch(l, 8, img);
      ck_assert_int_eq(g.n, step < 4 ? 8 : 5);
      for (int j = 0; j < 8; j++) {
        int i = step * 8 + j;
        for (size_t k = 0; k < img; k++) {
          float want = i < 37 ? norm(d.pixels[i * img + k], (int)(k % 3)) : 0;
          ck_assert_float_eq(g.x[j * img + k], want);
        }
        ck_assert_int_eq(g.y[j], i < 37 ? i : 0);
      }
      total += g.n;
      got_free(g);
    }
    ck_assert_int_eq(total, 37); /* every image once */
    Got g = next_batch(l, 8, img);
    ck_assert_int_eq(g.n, 0);
    got_free(g);
    loader_free(l);
  }
  fake_free(&d);
}
END_TEST

/* Finds the crop offsets and flip that turn image `src` into `out`;
 * returns 0 if one of them does, with padding equal to normalized black. */
static int find_augmentation(const float *out, const uint8_t *src, int h,
                             int w, int pad, int *dx, int *dy, int *flip) {
  for (*flip = 0; *flip < 2; ++*flip)
    for (*dy = -pad; *dy <= pad; ++*dy)
      for (*dx = -pad; *dx <= pad; ++*dx) {
        int ok = 1;
        for (int y = 0; y < h && ok; y++)
          for (int x = 0; x < w && ok; x++) {
            int sy = y + *dy, sx = (*flip ? w - 1 - x : x) + *dx;
            int in = sy >= 0 && sy < h && sx >= 0 && sx < w;
            for (int c = 0; c < 3 && ok; c++)
              ok = out[(y * w + x) * 3 + c] ==
                   norm(in ? src[(sy * w + sx) * 3 + c] : 0, c);
          }
        if (ok)
          return 0;
      }
  return -1;
}

START_TEST(test_loader_train_augmentation) {
  Dataset d = fake_dataset(37, 8, 8);
  size_t img = 8 * 8 * 3;
  LoaderOptions lo = {.batch = 8, .train = 1, .pad = 2, .seed = 5};
  Loader *l = loader_new(&d, &lo);
  ck_assert_int_eq(loader_steps(l), 4); /* 37 / 8, the rest dropped */
  int flips = 0, dxs[5] = {0}, dys[5] = {0}, first_order[32] = {0};
  for (int epoch = 0; epoch < 4; epoch++) {
    int seen[37] = {0};
    loader_seek(l, epoch, 0);
    for (int step = 0; step < 4; step++) {
      Got g = next_batch(l, 8, img);
      ck_assert_int_eq(g.n, 8);
      for (int j = 0; j < 8; j++) {
        int i = g.y[j], dx, dy, flip;
        ck_assert_int_eq(seen[i]++, 0);
        if (epoch == 0)
          first_order[step * 8 + j] = i;
        ck_assert_msg(!find_augmentation(g.x + j * img, d.pixels + i * img, 8,
                                         8, 2, &dx, &dy, &flip),
                      "image %d is no crop/flip of its source", i);
        flips += flip, dxs[dx + 2]++, dys[dy + 2]++;
      }
      got_free(g);
    }
    Got g = next_batch(l, 8, img);
    ck_assert_int_eq(g.n, 0);
    got_free(g);
  }
  /* 128 images: about half flipped, every offset used. */
  ck_assert_int_gt(flips, 40);
  ck_assert_int_lt(flips, 88);
  for (int k = 0; k < 5; k++)
    ck_assert(dxs[k] > 5 && dys[k] > 5);
  int shuffled = 0;
  for (int k = 0; k < 32; k++)
    shuffled += first_order[k] != k;
  ck_assert_int_gt(shuffled, 16);
  loader_free(l);
  fake_free(&d);
}
END_TEST

/* Every batch of `epochs` epochs of a loader, in order. */
static Got *record(const Dataset *d, LoaderOptions lo, int epochs) {
  Loader *l = loader_new(d, &lo);
  int steps = loader_steps(l);
  size_t img = (size_t)d->h * d->w * 3;
  Got *all = malloc(sizeof *all * (size_t)(epochs * steps));
  for (int e = 0; e < epochs; e++) {
    for (int s = 0; s < steps; s++)
      all[e * steps + s] = next_batch(l, lo.batch, img);
    Got end = next_batch(l, lo.batch, img); /* then the next epoch begins */
    ck_assert_int_eq(end.n, 0);
    got_free(end);
  }
  loader_free(l);
  return all;
}

START_TEST(test_loader_determinism) {
  Dataset d = fake_dataset(50, 16, 16);
  size_t img = 16 * 16 * 3;
  LoaderOptions lo = {.batch = 6, .train = 1, .pad = 4, .seed = 42};
  int steps = 50 / 6, total = 3 * steps;
  Got *a = record(&d, lo, 3), *b = record(&d, lo, 3);
  lo.prefetch = 1;
  Got *c = record(&d, lo, 3);
  lo.seed = 43;
  Got *other = record(&d, lo, 3);
  int differ = 0;
  for (int k = 0; k < total; k++) {
    ck_assert_msg(same_batch(a[k], b[k], 6, img), "batch %d differs", k);
    ck_assert_msg(same_batch(a[k], c[k], 6, img), "prefetch changed batch %d", k);
    differ += !same_batch(a[k], other[k], 6, img);
    if (k >= steps) /* another epoch, another order */
      ck_assert(!same_batch(a[k], a[k - steps], 6, img));
  }
  ck_assert_int_eq(differ, total);
  for (int k = 0; k < total; k++)
    got_free(a[k]), got_free(b[k]), got_free(c[k]), got_free(other[k]);
  free(a), free(b), free(c), free(other);
  fake_free(&d);
}
END_TEST

/* Data parallelism: P processes x K micro-batches of batch B, each
 * loader taking its share (group P*K*B, offset r*K*B, parts K), see
 * together exactly the batches of one loader of batch P*K*B: the same
 * images in the same order with the same augmentation, over 3 epochs
 * (so every image of each epoch once, in one process's order). Val
 * loaders split every group of P*B images, the last one short. */
START_TEST(test_loader_shares) {
  Dataset d = fake_dataset(53, 8, 8);
  size_t img = 8 * 8 * 3;
  const int B = 3, cases[][2] = {{2, 1}, {1, 2}, {2, 2}, {3, 1}};
  for (int c = 0; c < 4; c++) {
    int P = cases[c][0], K = cases[c][1], G = P * K * B;
    for (int train = 0; train < 2; train++) {
      int parts = train ? K : 1, group = train ? G : P * B;
      LoaderOptions whole = {.batch = group, .train = train, .pad = 2,
                             .seed = 7, .prefetch = train};
      int epochs = train ? 3 : 1;
      Got *one = record(&d, whole, epochs);
      int steps = train ? 53 / G : (53 + group - 1) / group;
      Loader *l[3];
      for (int r = 0; r < P; r++) {
        LoaderOptions o = {.batch = B, .train = train, .pad = 2, .seed = 7,
                           .group = group, .offset = r * parts * B,
                           .parts = parts, .prefetch = r % 2};
        l[r] = loader_new(&d, &o);
        ck_assert_int_eq(loader_steps(l[r]), steps * parts);
      }
      for (int e = 0; e < epochs; e++) {
        for (int r = 0; r < P; r++)
          loader_seek(l[r], e, 0);
        for (int st = 0; st < steps; st++) {
          const Got *w = &one[e * steps + st];
          for (int r = 0; r < P; r++)
            for (int k = 0; k < parts; k++) {
              Got g = next_batch(l[r], B, img);
              int at = (r * parts + k) * B; /* its place in the group */
              int real = w->n - at < 0 ? 0 : w->n - at > B ? B : w->n - at;
              ck_assert_int_eq(g.n, real);
              ck_assert(!memcmp(g.x, w->x + (size_t)at * img,
                                sizeof(float) * img * (size_t)real));
              ck_assert(!memcmp(g.y, w->y + at, sizeof(int32_t) * (size_t)real));
              got_free(g);
            }
        }
      }
      for (int r = 0; r < P; r++)
        loader_free(l[r]);
      for (int k = 0; k < epochs * steps; k++)
        got_free(one[k]);
      free(one);
    }
  }
  /* A share outside its group is refused. */
  LoaderOptions bad = {.batch = 4, .train = 1, .group = 8, .offset = 6};
  ck_assert_ptr_null(loader_new(&d, &bad));
  fake_free(&d);
}
END_TEST

START_TEST(test_loader_seek) {
  Dataset d = fake_dataset(40, 8, 8);
  size_t img = 8 * 8 * 3;
  LoaderOptions lo = {.batch = 4, .train = 1, .pad = 2, .seed = 9};
  Got *run = record(&d, lo, 3); /* 10 steps per epoch */
  for (int prefetch = 0; prefetch < 2; prefetch++) {
    lo.prefetch = prefetch;
    Loader *l = loader_new(&d, &lo);
    const int at[][2] = {{2, 3}, {0, 1}, {1, 9}, {1, 9}, {0, 0}, {2, 0}};
    for (int k = 0; k < 6; k++) {
      loader_seek(l, at[k][0], at[k][1]);
      int i = at[k][0] * 10 + at[k][1];
      Got g = next_batch(l, 4, img), h = next_batch(l, 4, img);
      ck_assert_msg(same_batch(g, run[i], 4, img),
                    "seek(%d, %d) prefetch %d", at[k][0], at[k][1], prefetch);
      if (at[k][1] < 9)
        ck_assert(same_batch(h, run[i + 1], 4, img));
      else
        ck_assert_int_eq(h.n, 0);
      got_free(g), got_free(h);
    }
    loader_seek(l, 1, 10); /* the end of epoch 1 */
    Got g = next_batch(l, 4, img);
    ck_assert_int_eq(g.n, 0);
    got_free(g);
    loader_free(l);
  }
  for (int k = 0; k < 30; k++)
    got_free(run[k]);
  free(run);
  fake_free(&d);
}
END_TEST

/* loader_free joins the prefetch thread wherever it is. */
START_TEST(test_loader_free_mid_epoch) {
  Dataset d = fake_dataset(64, 8, 8);
  LoaderOptions lo = {.batch = 4, .train = 1, .pad = 1, .prefetch = 1};
  for (int k = 0; k < 20; k++) {
    Loader *l = loader_new(&d, &lo);
    if (k % 2) {
      Got g = next_batch(l, 4, 8 * 8 * 3);
      ck_assert_int_eq(g.n, 4);
      got_free(g);
    }
    loader_free(l);
  }
  lo.batch = 0;
  capture_begin();
  ck_assert_ptr_null(loader_new(&d, &lo));
  char *msg = capture_end();
  assert_contains(msg, "batch size");
  free(msg);
  fake_free(&d);
}
END_TEST

/* The loader over a real (decoded) data set: labels and pixels line up. */
START_TEST(test_loader_on_dataset) {
  char *root = make_release("loader-dataset"), *msg;
  DataOptions o = quiet_options();
  Dataset d;
  ck_assert_int_eq(open_captured(&d, root, "val", &o, &msg), 0);
  LoaderOptions lo = {.batch = 4, .train = 0, .prefetch = 1};
  Loader *l = loader_new(&d, &lo);
  size_t img = 64 * 64 * 3;
  Got g = next_batch(l, 4, img);
  ck_assert_int_eq(g.n, 4);
  for (int j = 0; j < 4; j++) {
    ck_assert_int_eq(g.y[j], val_class[j]);
    ck_assert_float_eq(g.x[j * img], norm(d.pixels[j * img], 0));
  }
  got_free(g);
  g = next_batch(l, 4, img);
  ck_assert_int_eq(g.n, 2);
  got_free(g);
  loader_free(l);
  dataset_close(&d);
  free(msg);
  free(root);
}
END_TEST

Suite *suite_loader(void) {
  Suite *s = suite_create("loader");
  TCase *tc = tcase_create("loader");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_normalize);
  tcase_add_test(tc, test_loader_eval);
  tcase_add_test(tc, test_loader_train_augmentation);
  tcase_add_test(tc, test_loader_determinism);
  tcase_add_test(tc, test_loader_seek);
  tcase_add_test(tc, test_loader_shares);
  tcase_add_test(tc, test_loader_free_mid_epoch);
  tcase_add_test(tc, test_loader_on_dataset);
  suite_add_tcase(s, tc);
  return s;
}

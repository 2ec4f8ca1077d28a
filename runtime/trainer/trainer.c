/* trainer.c: the main() of every trainer netc builds. It knows nothing of
 * any one network (it drives `netc_model`, netc_model.h) and does nothing
 * itself: it dispatches a command to its file (commands.h). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "kernels/netc_rt.h"
#include "model/netc_model.h"
#include "trainer/comm.h"
#include "trainer/commands.h"
#include "trainer/options.h"

static const struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *about;
} commands[] = {
    {"train", cmd_train, "train on TinyImageNet-200 (--data DIR)"},
    {"eval", cmd_eval, "top-1, top-5 and loss of a checkpoint on the val "
                       "split"},
    {"predict", cmd_predict, "the 5 most likely classes of each image"},
    {"bench", cmd_bench, "images/s of training on random data, per-op "
                         "profile"},
    {"bench-loader", cmd_bench_loader, "images/s of the data pipeline alone"},
    {"inspect", cmd_inspect, "verify a checkpoint; print where its run is"},
    {"info", cmd_info, "shapes, parameters and memory"},
    {"export", cmd_export, "a checkpoint's weights as safetensors"},
    {"step", cmd_step, "SGD steps on random data, with their losses"},
    {"compare", cmd_compare, "check one step against PyTorch (tests)"},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
  fprintf(f, "usage: %s <command> [options]\n", netc_model.name);
  for (int i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].about);
  fprintf(f, "'%s <command> --help' lists its options.\n", netc_model.name);
}

static int dispatch(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
    usage(stdout);
    return 0;
  }
  /* Several processes (mpirun) train and bench; the other commands are
   * one process's. */
  if (comm_size() > 1 && strcmp(argv[1], "train") && strcmp(argv[1], "bench")) {
    if (comm_rank() == 0)
      fprintf(stderr, "%s: only 'train' and 'bench' run on several "
                      "processes; run '%s' without mpirun\n",
              netc_model.name, argv[1]);
    return 2;
  }
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].run(argc - 2, argv + 2);
  fprintf(stderr, "%s: unknown command '%s'\n", netc_model.name, argv[1]);
  usage(stderr);
  return 2;
}

int main(int argc, char **argv) {
  /* A closed pipe is a write error (EPIPE), not a death by SIGPIPE: a
   * training run gets to write its checkpoint first (train.c), and the
   * trainer ends quietly (output_status). */
  signal(SIGPIPE, SIG_IGN);
  /* Before anything else: a trainer without MPI under mpirun stops here
   * (comm.c), having touched nothing. */
  if (comm_init(&argc, &argv))
    return 1;
  /* netc build compiled this trainer for one instruction set; a CPU that
   * lacks it would die of SIGILL in the first convolution. */
  if (rt_set_isa(netc_model.isa)) {
    fprintf(stderr,
            "%s: this trainer was built for %s, which this CPU lacks; "
            "rebuild it here, or with netc build --portable\n",
            netc_model.name, rt_isa_name(netc_model.isa));
    comm_finalize();
    return 1;
  }
  /* Rank 0 speaks for a run of several processes; the others' standard
   * output (the log) goes nowhere, their errors still to stderr. */
  if (comm_rank() > 0 && !freopen("/dev/null", "w", stdout))
    return 1;
  int rc = output_status(dispatch(argc, argv));
  comm_finalize();
  return rc;
}

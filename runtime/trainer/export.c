/* export.c: the `export` command: a checkpoint's model as ONNX
 * (formats/onnx.c) or its weights as safetensors (formats/safetensors.c). */
#include <stdio.h>
#include <string.h>

#include "formats/checkpoint.h"
#include "formats/onnx.h"
#include "formats/safetensors.h"
#include "trainer/commands.h"
#include "trainer/options.h"
#include "trainer/step.h"

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcmp(s + a - b, suffix);
}

int cmd_export(int argc, char **argv) {
  const char *checkpoint = NULL, *out = NULL;
  int names = NAMES_NETC, fold_bn = 0;
  static const char *const name_kinds[] = {"netc", "torchvision", NULL};
  const Option options[] = {
      {"--checkpoint", "FILE", "the checkpoint to export", .text = &checkpoint,
       .required = 1},
      {"-o", "FILE", "model.onnx: the inference graph with its weights; "
                     "weights.safetensors: the weights and batchnorm "
                     "statistics in PyTorch's layouts", .text = &out,
       .required = 1},
      {"--names", "KIND", "netc (as netc check names them, default) or "
                          "torchvision (the zoo's ResNets)",
       .choice = &names, .choices = name_kinds},
      {"--fold-bn", NULL, "model.onnx: fold each batchnorm into the "
                          "convolution before it", .flag = &fold_bn},
      {NULL}};
  const CommandSpec c = {
      .name = "export", .options = options,
      .about = "Writes a checkpoint's model (ONNX) or weights (safetensors) "
               "for use outside netc."};
  int rc = parse_command(&c, argc, argv, NULL);
  if (rc != OPTIONS_RUN)
    return rc;
  int onnx = ends_with(out, ".onnx");
  if (!onnx && !ends_with(out, ".safetensors")) {
    fprintf(stderr, "netc: export writes FILE.onnx or FILE.safetensors; "
                    "'%s' is neither\n", out);
    return 2;
  }
  if (onnx && names != NAMES_NETC) {
    fprintf(stderr, "netc: --names goes with FILE.safetensors\n");
    return 2;
  }
  if (!onnx && fold_bn) {
    fprintf(stderr, "netc: --fold-bn goes with FILE.onnx (a safetensors "
                    "file keeps the batchnorm tensors PyTorch loads)\n");
    return 2;
  }
  NetcState *s = trainer_state_new(NULL);
  ClassList cl = {0};
  RunState r = {0};
  rc = 1;
  if (s && !checkpoint_load(checkpoint, s, NULL, &r, &cl) &&
      !(onnx ? onnx_export(s, &cl, fold_bn, out)
             : safetensors_export(s, &cl, names, r.global_step, out))) {
    if (onnx)
      printf("exported %s: model '%s', %d layers, as ONNX (opset 17%s) -> "
             "%s\n", checkpoint, netc_model.name, netc_model.nlayers,
             fold_bn ? ", batchnorm folded" : "", out);
    else
      printf("exported %s: %d parameter tensors of model '%s' (%s names) -> "
             "%s\n", checkpoint, netc_model.nparam_tensors, netc_model.name,
             name_kinds[names], out);
    rc = 0;
  }
  netc_state_free(s);
  classes_free(&cl);
  return rc;
}

#!/bin/sh
# tests/bench/run.sh: `make bench`. Builds each model at batch BATCH and
# measures, on this machine and in the same run:
#  1. netc's `bench`: training steps on one random batch (median of timed
#     windows after warm-up); its line "netc model=..." is printed.
#  2. PyTorch (when Debian's python3-torch is installed): the idiomatic loop
#     in both memory formats, contiguous (NCHW) and channels_last, each in
#     its own process (tests/bench/torch_bench.py); the faster counts.
#     Its lines "torch_run ..." and "torch ..." are printed.
#  3. End to end (E2E=0 skips it; skipped with a line when there is no
#     data): the trainer's real `train` command, loader, augmentation,
#     evaluation and checkpoints included, for one epoch of at least
#     E2E_STEPS (200) steps on a TinyImageNet-200 subset; the whole wall
#     time counts (tests/bench/e2e.sh says exactly what is counted). Its
#     line "train model=..." is printed.
# and then one line per model:
#   bench model=... batch=... threads=... netc_img_per_s=...
#         torch_img_per_s=... torch_format=... torch_nchw_img_per_s=...
#         torch_cl_img_per_s=... speedup=... netc_after_img_per_s=...
#         train_img_per_s=...
#         train_vs_bench=...% gflops=... sgemm_peak_gflops=... peak_frac=...
#         mb_per_step=... mem_gb_per_s=... netc_rss_mib=... torch_rss_mib=... blas_kernel=...
# torch_img_per_s, torch_format and torch_rss_mib are the faster format's;
# speedup is netc_img_per_s / torch_img_per_s; netc_after_img_per_s is
# bench again, right after the end-to-end run; train_vs_bench is
# train_img_per_s against the mean of the two bench figures, in percent. docs/benchmarks.md
# describes every field. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset
# for all, so OpenBLAS picks its own kernel for this CPU (blas_kernel).
# Usage: run.sh NETC OUTDIR [models...]; env BATCH, THREADS, STEPS,
# PROFILE=1, E2E=0, E2E_STEPS, DATA. Exits 1 if an end-to-end run failed.
set -e
netc=$1 out=$2
shift 2
models=${*:-models/resnet18.net models/resnet50.net}
batch=${BATCH:-64} threads=${THREADS:-2} steps=${STEPS:-5}
torch=na
if /usr/bin/python3 -c "import torch" 2>/dev/null; then torch=yes; fi
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
status=0
for m in $models; do
  name=$($netc check "$m" | tail -n 1 | sed 's/^network=\([^ ]*\).*/\1/')
  # Tuned as the bench runs: its threads, OpenBLAS's own choice of kernel.
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    $netc build --threads "$threads" -b "$batch" -o "$out/$name" "$m" >/dev/null
  line=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
         "$out/$name/$name" bench --threads "$threads" --steps "$steps" | head -n 1)
  echo "$line"
  if [ "${PROFILE:-0}" = 1 ]; then
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
      "$out/$name/$name" bench --threads "$threads" --steps "$steps" \
      --windows 1 --warmup 1 --profile | tail -n +2
  fi
  ni=$(field "$line" img_per_s)
  ti=na tf=na tn=na tc=na tr=na
  if [ $torch = yes ]; then
    t=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 \
        tests/bench/torch_bench.py "$name" --batch "$batch" \
        --threads "$threads" --steps "$steps" 2>/dev/null) || t=""
    [ -n "$t" ] && echo "$t"
    t=$(echo "$t" | grep '^torch ' | tail -n 1)
    if [ -n "$t" ]; then
      ti=$(field "$t" img_per_s) tf=$(field "$t" format)
      tn=$(field "$t" nchw_img_per_s) tc=$(field "$t" cl_img_per_s)
      tr=$(field "$t" rss_mib)
    fi
  fi
  ei=na ev=na na2=na
  if [ "${E2E:-1}" = 0 ]; then
    echo "train model=$name skipped: E2E=0"
  else
    # This machine's speed drifts over minutes, so bench is measured on
    # both sides of the end-to-end run and the train run compared with the
    # mean of the two (bench_img_per_s of its line).
    e=$(THREADS=$threads sh tests/bench/e2e.sh "$out/$name/$name" "$out" "$ni") ||
      status=1
    after=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
            "$out/$name/$name" bench --threads "$threads" --steps "$steps" | head -n 1)
    na2=$(field "$after" img_per_s)
    echo "netc_after_train model=$name img_per_s=$na2"
    case $e in
      *" img_per_s="*)
        ei=$(field "$e" img_per_s)
        mean=$(awk -v a="$ni" -v b="$na2" 'BEGIN { printf "%.2f", (a + b) / 2 }')
        ev=$(awk -v t="$ei" -v m="$mean" 'BEGIN { printf "%+.1f%%", 100 * (t / m - 1) }')
        e=$(echo "$e" | sed "s/ bench_img_per_s=[^ ]* vs_bench=[^ ]* / bench_img_per_s=$mean vs_bench=$ev /")
        ;;
    esac
    echo "$e"
  fi
  sp=na
  [ "$ti" != na ] && sp=$(awk -v a="$ni" -v b="$ti" 'BEGIN { printf "%.2f", a / b }')
  echo "bench model=$name batch=$batch threads=$threads netc_img_per_s=$ni" \
       "torch_img_per_s=$ti torch_format=$tf torch_nchw_img_per_s=$tn" \
       "torch_cl_img_per_s=$tc speedup=$sp netc_after_img_per_s=$na2" \
       "train_img_per_s=$ei" \
       "train_vs_bench=$ev gflops=$(field "$line" gflops)" \
       "sgemm_peak_gflops=$(field "$line" sgemm_peak_gflops)" \
       "peak_frac=$(field "$line" peak_frac) mb_per_step=$(field "$line" mb_per_step)" \
       "mem_gb_per_s=$(field "$line" mem_gb_per_s) netc_rss_mib=$(field "$line" rss_mib)" \
       "torch_rss_mib=$tr blas_kernel=$(field "$line" blas_kernel)" \
       "conv_kernel=$(field "$line" conv_kernel)" \
       "conv_algos=$(field "$line" conv_algos)"
done
exit $status

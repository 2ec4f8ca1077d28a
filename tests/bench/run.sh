#!/bin/sh
# tests/bench/run.sh: `make bench`. Builds each model at batch BATCH, measures
# netc's training throughput (median of timed windows after warm-up) and,
# when Debian's python3-torch is installed, PyTorch's on the same machine in
# the same run, then prints one line per model:
#   bench model=... batch=... threads=... netc_img_per_s=... torch_img_per_s=...
#         speedup=... gflops=... sgemm_peak_gflops=... peak_frac=...
#         netc_rss_mib=... torch_rss_mib=... blas_kernel=...
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset for both, so OpenBLAS
# picks its own kernel for this CPU (reported as blas_kernel).
# Usage: run.sh NETC OUTDIR [models...]; env BATCH, THREADS, STEPS, PROFILE=1
set -e
netc=$1 out=$2
shift 2
models=${*:-models/resnet18.net models/resnet50.net}
batch=${BATCH:-64} threads=${THREADS:-2} steps=${STEPS:-5}
torch=na
if /usr/bin/python3 -c "import torch" 2>/dev/null; then torch=yes; fi
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
for m in $models; do
  name=$($netc check "$m" | tail -n 1 | sed 's/^network=\([^ ]*\).*/\1/')
  $netc build -b "$batch" -o "$out/$name" "$m" >/dev/null
  line=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
         "$out/$name/$name" bench --threads "$threads" --steps "$steps" | head -n 1)
  echo "$line"
  if [ "${PROFILE:-0}" = 1 ]; then
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
      "$out/$name/$name" bench --threads "$threads" --steps "$steps" \
      --windows 1 --warmup 1 --profile | tail -n +2
  fi
  ti=na tr=na
  if [ $torch = yes ]; then
    t=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 \
        tests/bench/torch_bench.py "$name" --batch "$batch" \
        --threads "$threads" --steps "$steps" 2>/dev/null) || t=""
    [ -n "$t" ] && echo "$t" && ti=$(field "$t" img_per_s) && tr=$(field "$t" rss_mib)
  fi
  ni=$(field "$line" img_per_s)
  sp=na
  [ "$ti" != na ] && sp=$(awk -v a="$ni" -v b="$ti" 'BEGIN { printf "%.2f", a / b }')
  echo "bench model=$name batch=$batch threads=$threads netc_img_per_s=$ni" \
       "torch_img_per_s=$ti speedup=$sp gflops=$(field "$line" gflops)" \
       "sgemm_peak_gflops=$(field "$line" sgemm_peak_gflops)" \
       "peak_frac=$(field "$line" peak_frac) netc_rss_mib=$(field "$line" rss_mib)" \
       "torch_rss_mib=$tr blas_kernel=$(field "$line" blas_kernel)"
done

#!/bin/sh
# tests/bench/mpi.sh: `make bench-mpi`. For each model, at one global
# batch (BATCH, default 64) on this machine's 2 cores:
#  1. one process x 2 threads: the ordinary trainer's `bench`;
#  2. two processes x 1 thread, each at batch BATCH/2: the `--mpi`
#     trainer's `bench` under mpirun, with its buckets' sums overlapped
#     with the backward pass, and again with NETC_MPI_BLOCKING=1 (each sum
#     blocks where it starts); `bench` reports the global images/s and
#     the milliseconds per step spent waiting for the sums;
#  3. MPI_Allreduce of each of the model's bucket sizes (netc dump plan
#     --mpi), over shared memory and over TCP on loopback
#     (tests/bench/allreduce.c).
# Prints the allreduce lines, then one line per model:
#   mpi_bench model=M global_batch=G one_proc_img_per_s=A
#     two_proc_img_per_s=B overhead=X% comm_wait_ms_per_step=W
#     blocking_img_per_s=C blocking_comm_wait_ms_per_step=V buckets=N
#     grad_bytes=S
# overhead is how much slower 2 x 1 is than 1 x 2. Then the model of
# docs/distributed.md, from these figures, per node count N and link:
#   mpi_model model=M nodes=N link_gbit=L allreduce_ms=R step_ms=T
#     step_ms_overlapped=U efficiency=E
# A node is this machine (2 cores, batch BATCH: step time Tc from the one
# process bench); a ring allreduce of the S gradient bytes in nb buckets
# takes R = 2 (N-1)/N S / bandwidth + 2 (N-1) nb alpha, with alpha the
# latency of one message over TCP measured here (half a 4-byte allreduce
# of 2 processes over loopback); T = Tc + R with no overlap; with the
# buckets overlapped, the sums hide behind the backward pass (taken as
# 2/3 of the step, its share of the FLOPs) except the last bucket's:
# U = Tc + max(R / nb, R - 2/3 Tc). E = Tc / U, the weak-scaling
# efficiency (every node keeps its batch). OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE are unset, as in make bench.
# Usage: mpi.sh NETC OUTDIR [models...]; env BATCH, STEPS.
set -e
netc=$1 out=$2
shift 2
models=${*:-models/resnet18.net models/resnet50.net}
batch=${BATCH:-64} steps=${STEPS:-3} half=$((${BATCH:-64} / 2))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
mpi="mpirun -np 2 --bind-to none"
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
mkdir -p "$out"
mpicc -O2 -o "$out/allreduce" tests/bench/allreduce.c
for m in $models; do
  name=$($netc check "$m" | tail -n 1 | sed 's/^network=\([^ ]*\).*/\1/')
  $run $netc build --threads 2 -b "$batch" -o "$out/$name" "$m" >/dev/null
  $run $netc build --threads 1 --mpi -b "$half" -o "$out/$name-mpi" "$m" >/dev/null
  sizes=$($netc dump plan --mpi -b "$half" "$m" | awk '/^b[0-9]+ / { print $3 }')
  nb=$(echo "$sizes" | wc -l)
  total=$(echo "$sizes" | awk '{ s += $1 } END { print s }')
  for tr in shm tcp; do
    btl=""
    [ $tr = tcp ] && btl="--mca btl tcp,self"
    $mpi $btl "$out/allreduce" 4 $sizes | sed "s/^allreduce /allreduce model=$name transport=$tr /"
  done | tee "$out/$name-allreduce.txt"
  alpha_us=$(awk '/transport=tcp/ && / bytes=4 / { for (i = 1; i <= NF; i++)
               if ($i ~ /^median_us=/) { sub("median_us=", "", $i); print $i / 2 } }' \
             "$out/$name-allreduce.txt")
  one=$($run "$out/$name/$name" bench --threads 2 --steps "$steps" | head -n 1)
  two=$($run $mpi "$out/$name-mpi/$name" bench --threads 1 --steps "$steps" | head -n 1)
  blk=$($run NETC_MPI_BLOCKING=1 $mpi "$out/$name-mpi/$name" bench --threads 1 \
        --steps "$steps" | head -n 1)
  a=$(field "$one" img_per_s) b=$(field "$two" img_per_s) c=$(field "$blk" img_per_s)
  echo "mpi_bench model=$name global_batch=$batch one_proc_img_per_s=$a" \
       "two_proc_img_per_s=$b" \
       "overhead=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", 100 * (a / b - 1) }')%" \
       "comm_wait_ms_per_step=$(field "$two" comm_wait_ms_per_step)" \
       "blocking_img_per_s=$c" \
       "blocking_comm_wait_ms_per_step=$(field "$blk" comm_wait_ms_per_step)" \
       "buckets=$nb grad_bytes=$total"
  tc=$(awk -v a="$a" -v b="$batch" 'BEGIN { printf "%.1f", 1000 * b / a }')
  for link in 10 100; do
    for n in 1 2 4 8 16 32 64; do
      awk -v m="$name" -v n=$n -v l=$link -v s="$total" -v nb="$nb" \
          -v al="$alpha_us" -v tc="$tc" 'BEGIN {
        bw = n > 1 ? 2 * (n - 1) / n * s * 8 / (l * 1e9) : 0
        lat = n > 1 ? 2 * (n - 1) * nb * al * 1e-6 : 0
        r = 1000 * (bw + lat)
        hid = r - 2 * tc / 3
        last = r / nb
        u = tc + (hid > last ? hid : last)
        printf "mpi_model model=%s nodes=%d link_gbit=%d allreduce_ms=%.1f ", m, n, l, r
        printf "step_ms=%.1f step_ms_overlapped=%.1f efficiency=%.3f\n", tc + r, u, tc / u
      }'
    done
  done
done

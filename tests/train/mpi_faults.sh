#!/bin/sh
# tests/train/mpi_faults.sh: the faults of a data-parallel run
# (tests/check_train.c runs it). With TRAINER built by `netc build --mpi`:
#  1. a reference: 2 processes, E epochs, a checkpoint after every step;
#  2. the same command, and rank 1 killed with SIGKILL once step KILL_AT
#     is logged: mpirun must end non-zero within 60 s;
#  3. the same command with --resume finishes it: its parameters must be
#     the reference's, bit for bit;
#  4. the killed run's checkpoint resumed on 1 process with --accumulate 2
#     (the same global batch) must give them too.
# Prints one line:
#   mpi_faults: ok killed_after_step=S exit=X seconds=T resumed=identical
#               one_process=identical
# or "mpi_faults: FAIL <why>" and exits 1.
# Usage: mpi_faults.sh TRAINER DATA OUTDIR [EPOCHS [KILL_AT]]
set -u
t=$1 data=$2 out=$3 epochs=${4:-3} kill_at=${5:-40}
# The tests run as root in CI; Open MPI refuses that unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi="mpirun -np 2 --bind-to none"
args="--data $data --epochs $epochs --threads 1 --no-plots --checkpoint-steps 1 --log-every 1"
fail() { echo "mpi_faults: FAIL $*"; exit 1; }
same() { # same CKPT_A CKPT_B: identical parameters
  "$t" inspect "$1" --against "$2" | grep -q ' identical=1$'
}
rm -rf "$out"
mkdir -p "$out"

$mpi "$t" train $args --out "$out/ref" > "$out/ref.log" 2>&1 ||
  fail "the reference run failed (log: $out/ref.log)"

$mpi "$t" train $args --out "$out/run" > "$out/run.log" 2>&1 &
job=$!
i=0
until grep -q "^step $kill_at " "$out/run.log" 2>/dev/null; do
  sleep 0.05
  i=$((i + 1))
  if [ $i -gt 1200 ]; then
    kill "$job" 2>/dev/null
    fail "the run never logged step $kill_at"
  fi
done
# mpirun's children are the ranks; the last started is rank 1.
victim=$(pgrep -P "$job" | tail -n 1)
[ -n "$victim" ] || fail "no rank process under mpirun $job"
t0=$(date +%s.%N)
kill -9 "$victim"
status=0
wait "$job" || status=$?
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
[ "$status" != 0 ] || fail "mpirun exited 0 after a rank was killed"
awk -v s="$secs" 'BEGIN { exit !(s < 60) }' ||
  fail "mpirun took $secs s to end after the kill"
step=$(grep '^step ' "$out/run.log" | tail -n 1 | cut -d' ' -f2)
[ -f "$out/run/last.ckpt" ] || fail "no checkpoint survived the kill"
cp -r "$out/run" "$out/one"

$mpi "$t" train $args --out "$out/run" --resume > "$out/resume.log" 2>&1 ||
  fail "the resumed run failed (log: $out/resume.log)"
grep -q '^netc: resuming ' "$out/resume.log" ||
  fail "the resumed run did not say it resumed"
same "$out/run/last.ckpt" "$out/ref/last.ckpt" ||
  fail "the resumed run's parameters differ from the reference's"

"$t" train $args --out "$out/one" --resume --accumulate 2 > "$out/one.log" 2>&1 ||
  fail "resuming on one process failed (log: $out/one.log)"
same "$out/one/last.ckpt" "$out/ref/last.ckpt" ||
  fail "resumed on one process, the parameters differ from the reference's"

echo "mpi_faults: ok killed_after_step=$step exit=$status seconds=$secs" \
     "resumed=identical one_process=identical"

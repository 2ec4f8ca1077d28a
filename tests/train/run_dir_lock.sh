#!/bin/sh
# run_dir_lock.sh TRAINER DATA DIR: one trainer per run directory.
#
# 1. A trainer holds DIR/run. Stopped (SIGSTOP) so that it changes nothing
#    meanwhile, a second `train` and a `train --resume` on DIR/run must
#    exit 1 at once, name the directory and the holder's PID, and leave
#    every file there as it was (names, sizes, contents, times).
# 2. Killed with SIGKILL, the holder leaves no lock behind: `--resume`
#    starts at once and resumes from its checkpoint.
# 3. While that run trains (a checkpoint every step), eval, export and
#    predict on its last.ckpt each read a complete checkpoint: exit 0.
# Prints one summary line; exits 1 on any failure.
set -u
T=$1 DATA=$2 DIR=$3
run="$DIR/run"
ARGS="--data $DATA --threads 1 --no-plots --out $run"
fail() { echo "run_dir_lock: FAIL: $*"; kill -9 $pid 2>/dev/null; exit 1; }
state() { (cd "$run" && ls -l --time-style=full-iso && md5sum -- *); }
wait_for() { # wait_for FILE: up to 60 s
  n=0
  while [ ! -s "$1" ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n + 1)); done
  [ -s "$1" ] || fail "no $1 after 60 s: $(tail -n 3 "$DIR/first.log")"
}
rm -rf "$DIR" && mkdir -p "$DIR" || exit 1
pid=""

# 1. the second trainer
"$T" train $ARGS --epochs 100 --checkpoint-steps 5 >"$DIR/first.log" 2>&1 &
pid=$!
wait_for "$run/last.ckpt"
kill -STOP $pid
before=$(state)
for resume in "" "--resume"; do
  t0=$(date +%s)
  "$T" train $ARGS --epochs 100 $resume >"$DIR/second.log" 2>&1
  st=$?
  [ $st -eq 1 ] || fail "a second 'train $resume' exited $st: $(cat "$DIR/second.log")"
  [ $(( $(date +%s) - t0 )) -le 10 ] || fail "the second trainer did not stop at once"
  grep -q "$run is in use: process $pid is training there" "$DIR/second.log" ||
    fail "the message names neither $run nor PID $pid: $(cat "$DIR/second.log")"
  [ "$(state)" = "$before" ] || fail "a second 'train $resume' changed $run"
done
msg=$(cat "$DIR/second.log")

# 2. SIGKILL, then --resume
kill -9 $pid
wait $pid 2>/dev/null
"$T" train $ARGS --epochs 3 --checkpoint-steps 1 --resume >"$DIR/resumed.log" 2>&1 &
pid=$!
n=0
until grep -q "resuming" "$DIR/resumed.log" 2>/dev/null; do
  kill -0 $pid 2>/dev/null || fail "--resume after SIGKILL failed: $(cat "$DIR/resumed.log")"
  [ $n -lt 300 ] || fail "--resume after SIGKILL did not start in 30 s"
  sleep 0.1; n=$((n + 1))
done
[ "$(cat "$run/train.lock")" = "$pid" ] || fail "train.lock does not hold the new PID $pid"

# 3. readers during training
reads=0
while kill -0 $pid 2>/dev/null && [ $reads -lt 12 ]; do
  "$T" eval --data "$DATA" --checkpoint "$run/last.ckpt" --threads 1 >"$DIR/eval.log" 2>&1 ||
    fail "eval during training: $(cat "$DIR/eval.log")"
  grep -q " images=500" "$DIR/eval.log" || fail "eval during training: $(cat "$DIR/eval.log")"
  "$T" export --checkpoint "$run/last.ckpt" -o "$DIR/w.safetensors" >"$DIR/export.log" 2>&1 ||
    fail "export during training: $(cat "$DIR/export.log")"
  img=$(ls "$DATA"/val/images | head -n 1)
  "$T" predict --checkpoint "$run/last.ckpt" "$DATA/val/images/$img" >"$DIR/predict.log" 2>&1 ||
    fail "predict during training: $(cat "$DIR/predict.log")"
  reads=$((reads + 1))
done
wait $pid || fail "the resumed run failed: $(tail -n 3 "$DIR/resumed.log")"
[ $reads -ge 2 ] || fail "only $reads reads while the run trained"
echo "run_dir_lock: ok second_trainer_refused=2 resumed_after_sigkill=1 reads_during_training=$reads"
echo "$msg"

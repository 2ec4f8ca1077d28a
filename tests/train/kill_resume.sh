#!/bin/sh
# kill_resume.sh TRAINER DATA DIR [CYCLES]: the fault test of a training run.
#
# Trains once without interruption. Then trains the same run again, killing
# it with SIGKILL CYCLES times at random moments (every third kill waits
# for a checkpoint write to begin, so some land inside one) and resuming
# each time. After every kill, every checkpoint in the run directory must
# verify (`TRAINER inspect`); every resume must start from the newest
# checkpoint and lose at most two checkpoint intervals (2K steps) of work,
# since a checkpoint is written in the background while K more steps run
# and a kill just before the next one starts finds only the one before; the
# finished run's parameters, running statistics and optimizer state must
# equal the uninterrupted run's (state_hash) and so must its metrics.
# Prints one summary line; exits 1 on any failure.
set -u
T=$1 DATA=$2 DIR=$3 CYCLES=${4:-20}
K=2
ARGS="--data $DATA --epochs 3 --threads 2 --no-plots --checkpoint-steps $K --log-every 1"
fail() { echo "kill_resume: FAIL: $*"; exit 1; }
# Whether a checkpoint is being written: its temporary file exists.
writing() {
  for f in "$run"/*.ckpt.tmp*; do [ -e "$f" ] && return 0; done
  return 1
}
rm -rf "$DIR" && mkdir -p "$DIR" || exit 1

"$T" train $ARGS --out "$DIR/straight" >"$DIR/straight.log" 2>&1 ||
  fail "the uninterrupted run failed: $(tail -n 3 "$DIR/straight.log")"
want=$("$T" inspect "$DIR/straight/last.ckpt" | sed 's/.*state_hash=//')

run="$DIR/killed"
kills=0 in_write=0 max_lost=0 last_step=0 i=0
while [ $kills -lt "$CYCLES" ]; do
  i=$((i + 1))
  [ $i -gt $((CYCLES * 3)) ] && fail "only $kills kills in $i attempts"
  resume=""
  [ -e "$run/last.ckpt" ] && resume="--resume"
  "$T" train $ARGS --out "$run" $resume >"$DIR/run$i.log" 2>&1 &
  pid=$!
  if [ $((i % 3)) -eq 0 ]; then
    # Wait for a checkpoint write to begin (a temporary file), then kill.
    # The test is the shell's own (no ls process per look): a write lasts
    # milliseconds, and a fork per look missed most of them and spun for
    # minutes.
    n=0
    while ! writing && kill -0 $pid 2>/dev/null && [ $n -lt 200000 ]; do
      n=$((n + 1))
    done
  else
    # A random moment 0.2-1.2 s after the start.
    ms=$(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 1000 + 200 ))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
  fi
  if ! kill -9 $pid 2>/dev/null; then
    wait $pid
    rc=$?
    [ $rc -eq 0 ] || fail "run $i exited $rc: $(tail -n 3 "$DIR/run$i.log")"
    rm -rf "$run" # it finished before the kill: start over
    last_step=0
    continue
  fi
  wait $pid 2>/dev/null
  kills=$((kills + 1))
  writing && in_write=$((in_write + 1))
  for c in "$run"/*.ckpt; do
    [ -e "$c" ] || continue
    "$T" inspect "$c" >/dev/null 2>"$DIR/inspect.err" ||
      fail "after kill $kills, $c does not verify: $(cat "$DIR/inspect.err")"
  done
  # Work lost: the last step the killed run logged minus where the next
  # run resumes (the newest checkpoint's step).
  done_step=$(grep '^step ' "$DIR/run$i.log" | tail -n 1 | cut -d' ' -f2)
  [ -n "$done_step" ] || done_step=$last_step
  if [ -e "$run/last.ckpt" ]; then
    at=$("$T" inspect "$run/last.ckpt" | sed 's/.*global_step=\([0-9]*\).*/\1/')
  else
    at=0
  fi
  [ "$at" -ge "$last_step" ] || fail "kill $kills: checkpoint went back from step $last_step to $at"
  # The write of checkpoint c goes on while steps c+1..c+K run: a kill
  # after step c+K, before c's rename, finds c-K on disk (saver.h).
  lost=$((done_step - at))
  [ $lost -le $((2 * K)) ] || fail "kill $kills lost $lost steps (more than two checkpoint intervals of $K)"
  [ $lost -gt $max_lost ] && max_lost=$lost
  last_step=$at
done

# The resumes: each must have started from the newest checkpoint.
for f in "$DIR"/run*.log; do
  if grep -q 'netc: resuming' "$f" && ! grep -q 'netc: resuming .* (global step' "$f"; then
    fail "$f: a resume did not say where it starts"
  fi
done
"$T" train $ARGS --out "$run" --resume >"$DIR/final.log" 2>&1 ||
  fail "the final resume failed: $(tail -n 3 "$DIR/final.log")"
got=$("$T" inspect "$run/last.ckpt" | sed 's/.*state_hash=//')
[ "$got" = "$want" ] || fail "final state $got differs from the uninterrupted run's $want"
cut -d, -f1-7 "$DIR/straight/metrics.csv" >"$DIR/a.csv"
cut -d, -f1-7 "$run/metrics.csv" >"$DIR/b.csv"
cmp -s "$DIR/a.csv" "$DIR/b.csv" || fail "metrics differ: $(diff "$DIR/a.csv" "$DIR/b.csv" | head -n 4)"
echo "kill_resume: ok kills=$kills during_checkpoint_write=$in_write max_steps_lost=$max_lost interval=$K final_state=$got"

#!/bin/sh
# full_disk.sh TRAINER DATA DIR: a checkpoint write on a full disk.
#
# Trains 2 steps into a run directory on a small tmpfs (mounted here; as
# root) and checkpoints, fills the disk, then resumes for 2 more steps:
# the checkpoint write at step 4 must fail with a message, the run must
# exit 1, and the step-2 checkpoint must be intact (same state, verified)
# with no temporary file left. Without root (no mount), the same is done
# under a file size limit (ulimit -f), which fails writes the same way
# (FULL_DISK_HOW=ulimit forces it). Then the same with the write in the
# background: a step checkpoint that fails stops the run at the next step.
# Prints one summary line; exits 1 on any failure.
set -u
T=$1 DATA=$2 DIR=$3
fail() { echo "full_disk: FAIL: $*"; [ -n "$mounted" ] && umount "$DIR/disk"; exit 1; }
mounted=""
rm -rf "$DIR" && mkdir -p "$DIR/disk" || exit 1
how="tmpfs"
if [ "${FULL_DISK_HOW:-tmpfs}" = tmpfs ] && [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=4m tmpfs "$DIR/disk" 2>/dev/null; then
  mounted=1
else
  how="ulimit -f"
fi
run="$DIR/disk/run"
ARGS="--data $DATA --epochs 1 --threads 2 --no-plots --checkpoint-steps 2 --out $run"
"$T" train $ARGS --max-steps 2 >"$DIR/first.log" 2>&1 ||
  fail "the first run failed: $(tail -n 3 "$DIR/first.log")"
before=$("$T" inspect "$run/last.ckpt") || fail "the first checkpoint does not verify"
size=$(stat -c %s "$run/last.ckpt")
if [ -n "$mounted" ]; then
  dd if=/dev/zero of="$DIR/disk/fill" bs=4k >/dev/null 2>&1 # until full
  (
    "$T" train $ARGS --max-steps 4 --resume
  ) >"$DIR/full.log" 2>&1
  rc=$?
else
  # Blocks of 512 bytes: the next checkpoint cannot be written whole.
  (
    trap '' XFSZ
    ulimit -f $((size / 512 - 1))
    "$T" train $ARGS --max-steps 4 --resume
  ) >"$DIR/full.log" 2>&1
  rc=$?
fi
[ $rc -eq 1 ] || fail "the run on a full disk exited $rc, not 1: $(tail -n 3 "$DIR/full.log")"
grep -q 'writing checkpoint .* failed: .*; the previous checkpoint is intact' "$DIR/full.log" ||
  fail "no message about the failed write: $(tail -n 3 "$DIR/full.log")"
after=$("$T" inspect "$run/last.ckpt") || fail "the old checkpoint no longer verifies"
[ "$before" = "$after" ] || fail "the old checkpoint changed: $before / $after"
ls "$run"/*.tmp* >/dev/null 2>&1 && fail "a temporary file was left: $(ls "$run")"
# The same write in the background (a step checkpoint, not the last one):
# the run stops at its next step with exit 1, having written nothing more.
if [ -n "$mounted" ]; then
  "$T" train $ARGS --checkpoint-steps 1 --max-steps 8 --resume >"$DIR/bg.log" 2>&1
  rc=$?
else
  (
    trap '' XFSZ
    ulimit -f $((size / 512 - 1))
    "$T" train $ARGS --checkpoint-steps 1 --max-steps 8 --resume
  ) >"$DIR/bg.log" 2>&1
  rc=$?
fi
[ $rc -eq 1 ] || fail "a failed background write: exit $rc, not 1: $(tail -n 3 "$DIR/bg.log")"
grep -q 'writing checkpoint .* failed: .*; the previous checkpoint is intact' "$DIR/bg.log" ||
  fail "no message about the failed background write: $(tail -n 3 "$DIR/bg.log")"
grep -q 'training stopped at epoch 1 step [34]: a checkpoint could not be written' "$DIR/bg.log" ||
  fail "the run did not stop at the step after the failed write: $(tail -n 3 "$DIR/bg.log")"
after=$("$T" inspect "$run/last.ckpt") || fail "the old checkpoint no longer verifies (background)"
[ "$before" = "$after" ] || fail "the old checkpoint changed (background): $before / $after"
ls "$run"/*.tmp* >/dev/null 2>&1 && fail "a temporary file was left (background): $(ls "$run")"
msg=$(grep 'writing checkpoint' "$DIR/full.log")
[ -n "$mounted" ] && umount "$DIR/disk"
echo "full_disk: ok ($how) exit=$rc checkpoint of $size bytes intact; said: $msg"

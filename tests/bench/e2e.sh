#!/bin/sh
# tests/bench/e2e.sh: the end-to-end part of `make bench`. Runs a trainer's
# real `train` command (the data loader with its prefetch thread, the
# random-crop and flip augmentation, the per-epoch evaluation on a val split,
# the epoch's two checkpoints, metrics and plots) for one epoch of at least
# E2E_STEPS (default 200) steps, and prints one line:
#   train model=... batch=... threads=... steps=... images=... val_images=...
#         wall_s=... img_per_s=... loop_img_per_s=... other_s=...
#         bench_img_per_s=... vs_bench=...% data=...
# or, when it cannot run, "train model=... skipped: <why>".
#
# What is counted: img_per_s is the images trained (steps x batch; the
# loader drops an epoch's last partial batch) divided by the whole wall time
# of the train command, from its start to its exit: start-up (listing the
# data, opening and checksumming the decoded-image cache, allocating and
# initializing the model), every step including any wait for the loader,
# the evaluation of the val split, the checkpoints, metrics.csv and the
# plots. loop_img_per_s is the trainer's own figure for the epoch (the steps
# and their loader waits only); other_s is the wall time the steps did not
# take. Not counted: decoding the JPEGs into the cache, which a data set
# needs once (a warm-up `train --max-steps 1` does it when the cache is
# missing), and building the subset below.
#
# The trainer has no option to shorten an epoch other than --max-steps,
# which stops before the epoch's evaluation, so the run is one whole epoch
# of a balanced subset of TinyImageNet-200 in the release layout: K train
# images per class (K = ceil(E2E_STEPS x batch / classes), so the epoch has
# at least E2E_STEPS steps) and ceil(K / 10) val images per class, the
# release's 10:1 ratio. Fixed per-epoch costs (checkpoints, plots, start-up)
# weigh more on 200 steps than on the full data set's 1,562 (batch 64), so
# vs_bench is, if anything, pessimistic for netc.
#
# The subset (symlinks into the data, or the members taken straight out of
# the shared tarballs) is made once in OUTDIR/e2e-data/ and reused. The data
# comes from DATA, else data/tiny-imagenet-200 (release or ImageFolder
# layout), else the tarballs in ${NETC_SHARED_DATA:-../shared/data/
# tiny-imagenet-200} (as .ci/fetch-data would use them); nothing is
# downloaded.
#
# Usage: e2e.sh TRAINER OUTDIR BENCH_IMG_PER_S; env THREADS, E2E_STEPS,
# DATA, NETC_SHARED_DATA. The model's name, batch and classes come from
# TRAINER info.
set -e
trainer=$1 out=$2 bench_ips=${3:-na}
threads=${THREADS:-2} want=${E2E_STEPS:-200}
shared=${NETC_SHARED_DATA:-../shared/data/tiny-imagenet-200}

info=$("$trainer" info | head -n 1) # model=... batch=... classes=...
field() { echo "$info" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
name=$(field model) batch=$(field batch) classes=$(field classes)
skip() { echo "train model=$name skipped: $*"; exit 0; }
abs() { (cd "$1" && pwd); }

# ---- the source --------------------------------------------------------
src="" kind=""
if [ -n "${DATA:-}" ]; then
  [ -d "$DATA/train" ] && [ -d "$DATA/val" ] ||
    skip "DATA=$DATA has no train/ and val/"
  src=$(abs "$DATA") kind=dir
elif [ -f data/tiny-imagenet-200/wnids.txt ] &&
     [ -d data/tiny-imagenet-200/train ] && [ -d data/tiny-imagenet-200/val ]; then
  src=$(abs data/tiny-imagenet-200) kind=dir
elif [ -f "$shared/train.tar.gz" ] && [ -f "$shared/val.tar.gz" ] &&
     [ -f "$shared/wnids.txt" ]; then
  src=$(abs "$shared") kind=tar
else
  skip "no TinyImageNet-200 (set DATA=DIR, or put it in" \
       "data/tiny-imagenet-200, or its tarballs in $shared)"
fi
nclasses=$classes
if [ -f "$src/wnids.txt" ]; then
  nclasses=$(tr -d '\r' < "$src/wnids.txt" | grep -c . || true)
else
  nclasses=0
  for d in "$src/train"/*/; do
    if [ -d "$d" ]; then nclasses=$((nclasses + 1)); fi
  done
fi
[ "$nclasses" = "$classes" ] ||
  skip "the model has $classes classes, $src has $nclasses"

k=$(( (want * batch + nclasses - 1) / nclasses ))
[ $k -le 500 ] || k=500 # the release has 500 a class: then all of them
v=$(( (k + 9) / 10 ))

# ---- the subset ----------------------------------------------------------
stamp="source=$src kind=$kind train_per_class=$k val_per_class=$v"
sub=$out/e2e-data/tiny-imagenet-200-${k}x$v-$(echo "$stamp" | cksum | cut -d' ' -f1)
if [ "$(cat "$sub/.subset" 2>/dev/null)" != "$stamp" ]; then
  echo "e2e: making a subset of $src ($k train and $v val images per" \
       "class) in $sub" >&2
  tmp=$sub.partial
  rm -rf "$tmp" "$sub"
  mkdir -p "$tmp/train" "$tmp/val"
  if [ -f "$src/wnids.txt" ]; then # the release layout
    tr -d '\r' < "$src/wnids.txt" | grep . > "$tmp/wnids.txt"
    [ -f "$src/words.txt" ] && ln -s "$src/words.txt" "$tmp/words.txt"
    mkdir -p "$tmp/val/images"
    if [ $kind = tar ]; then
      ann=$src/val/val_annotations.txt
      [ -f "$ann" ] || {
        tar -xzf "$src/val.tar.gz" -C "$tmp" val/val_annotations.txt
        mv "$tmp/val/val_annotations.txt" "$tmp/all_annotations.txt"
        ann=$tmp/all_annotations.txt
      }
    else
      ann=$src/val/val_annotations.txt
    fi
    tr -d '\r' < "$ann" |
      awk -v n="$v" 'NF >= 2 && c[$2]++ < n' > "$tmp/val/val_annotations.txt"
    rm -f "$tmp/all_annotations.txt"
    if [ $kind = tar ]; then
      awk -v n="$k" '{ for (i = 0; i < n; i++)
                         print "train/" $1 "/images/" $1 "_" i ".JPEG" }' \
        "$tmp/wnids.txt" > "$tmp/.members"
      tar -xzf "$src/train.tar.gz" -C "$tmp" -T "$tmp/.members"
      awk '{ print "val/images/" $1 }' "$tmp/val/val_annotations.txt" \
        > "$tmp/.members"
      tar -xzf "$src/val.tar.gz" -C "$tmp" -T "$tmp/.members"
      rm -f "$tmp/.members"
    else
      while read -r w; do
        mkdir -p "$tmp/train/$w/images"
        ls "$src/train/$w/images" | grep -i '\.jpe\?g$' | sort -t_ -k2n |
          head -n "$k" | sed "s|^|$src/train/$w/images/|" |
          xargs -r ln -s -t "$tmp/train/$w/images"
      done < "$tmp/wnids.txt"
      awk -v d="$src/val/images/" '{ print d $1 }' \
        "$tmp/val/val_annotations.txt" | xargs -r ln -s -t "$tmp/val/images"
    fi
  else # ImageFolder: train/<class>/, val/<class>/
    for split in train val; do
      n=$k
      if [ $split = val ]; then n=$v; fi
      for d in "$src/$split"/*/; do
        [ -d "$d" ] || continue
        c=$(basename "$d")
        mkdir -p "$tmp/$split/$c"
        ls "$src/$split/$c" | grep -i '\.jpe\?g$' | sort | head -n "$n" |
          sed "s|^|$src/$split/$c/|" | xargs -r ln -s -t "$tmp/$split/$c"
      done
    done
  fi
  echo "$stamp" > "$tmp/.subset"
  mv "$tmp" "$sub"
fi

# ---- the decoded-image cache (not timed) -----------------------------------
run=$out/e2e-run/$name
rm -rf "$run" "$run.warm"
mkdir -p "$(dirname "$run")"
if ! ls "$sub"/.netc-cache-train-* >/dev/null 2>&1 ||
   ! ls "$sub"/.netc-cache-val-* >/dev/null 2>&1; then
  echo "e2e: decoding $sub into its cache (not timed)" >&2
  "$trainer" train --data "$sub" --epochs 1 --max-steps 1 --no-plots \
    --threads "$threads" --out "$run.warm" > "$run.warm.log" 2>&1 || {
    echo "train model=$name failed: the warm-up run (log: $run.warm.log)"
    tail -n 5 "$run.warm.log" >&2
    exit 1
  }
  rm -rf "$run.warm"
fi

# ---- the timed run ---------------------------------------------------------
t0=$(date +%s.%N)
status=0
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
  "$trainer" train --data "$sub" --epochs 1 --threads "$threads" \
  --out "$run" > "$run.log" 2> "$run.err" || status=$?
t1=$(date +%s.%N)
if [ $status != 0 ]; then
  echo "train model=$name failed: status $status (log: $run.log, $run.err)"
  tail -n 5 "$run.err" >&2
  exit 1
fi
# "netc: training M (batch B, S steps per epoch, T train and V val images, ..."
head=$(grep '^netc: training' "$run.log" | head -n 1)
steps=$(echo "$head" | sed -n 's/.* \([0-9]*\) steps per epoch.*/\1/p')
vimg=$(echo "$head" | sed -n 's/.* and \([0-9]*\) val images.*/\1/p')
# "epoch 1/1 train_loss ... lr L R img/s S s"
loop=$(grep '^epoch 1/1 ' "$run.log" | sed -n 's/.* \([0-9.]*\) img\/s .*/\1/p')
awk -v name="$name" -v batch="$batch" -v threads="$threads" -v steps="$steps" \
    -v vimg="$vimg" -v t0="$t0" -v t1="$t1" -v loop="${loop:-0}" \
    -v bench="$bench_ips" -v data="$sub" 'BEGIN {
  images = steps * batch; wall = t1 - t0; ips = images / wall
  other = loop > 0 ? wall - images / loop : 0
  vs = bench + 0 > 0 ? sprintf("%+.1f%%", 100 * (ips / bench - 1)) : "na"
  printf "train model=%s batch=%d threads=%d steps=%d images=%d " \
         "val_images=%d wall_s=%.1f img_per_s=%.2f loop_img_per_s=%.2f " \
         "other_s=%.1f bench_img_per_s=%s vs_bench=%s data=%s\n",
         name, batch, threads, steps, images, vimg, wall, ips, loop, other,
         bench, vs, data
}'

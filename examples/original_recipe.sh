#!/bin/sh
# examples/original_recipe.sh [DATA_DIR [RUN_DIR]]: the run of the PyTorch
# project netc grew out of, in netc (docs/training.md, "The original
# recipe"): its network (models/seed_resnet.net), 100 classes of
# TinyImageNet as an ImageFolder set, Adam at a constant lr of 1e-4 without
# weight decay, batch 50, no augmentation, 20 epochs.
#
# The ImageFolder set (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG: the first
# 100 classes of wnids.txt, 500 training and 50 validation images each) is
# made once from the release archives in ../shared/data/tiny-imagenet-200
# (NETC_SHARED_DATA). EPOCHS=N shortens the run; ARGS adds train options.
set -e
data=${1:-data/tiny-imagenet-100-imagefolder}
run=${2:-runs/original}
src=${NETC_SHARED_DATA:-../shared/data/tiny-imagenet-200}
if [ ! -d "$data/val" ]; then
  for f in train.tar.gz val.tar.gz wnids.txt; do
    [ -f "$src/$f" ] || { echo "original_recipe.sh: no $src/$f" >&2; exit 1; }
  done
  tmp=$data.partial
  rm -rf "$tmp" && mkdir -p "$tmp/release" "$tmp/train" "$tmp/val"
  head -n 100 "$src/wnids.txt" > "$tmp/wnids.txt"
  patterns=$(sed 's|^\(.*\)$|train/\1/images/*|' "$tmp/wnids.txt")
  # shellcheck disable=SC2086
  tar -xzf "$src/train.tar.gz" -C "$tmp/release" --wildcards $patterns
  tar -xzf "$src/val.tar.gz" -C "$tmp/release"
  while read -r wnid; do
    mv "$tmp/release/train/$wnid/images" "$tmp/train/$wnid"
    mkdir -p "$tmp/val/$wnid"
  done < "$tmp/wnids.txt"
  # val_annotations.txt: file, wnid, box; keep the images of these classes
  awk -F'\t' 'NR == FNR { keep[$1] = 1; next } ($2 in keep) { print $1, $2 }' \
    "$tmp/wnids.txt" "$tmp/release/val/val_annotations.txt" |
    while read -r file wnid; do
      mv "$tmp/release/val/images/$file" "$tmp/val/$wnid/"
    done
  rm -rf "$tmp/release" "$tmp/wnids.txt"
  mv "$tmp" "$data"
fi
make -s all
build/netc build -b 50 -o build/train/original models/seed_resnet.net
build/train/original/seed_resnet train --data "$data" --out "$run" \
  --epochs "${EPOCHS:-20}" --optimizer adam --lr 1e-4 --weight-decay 0 \
  --schedule constant --warmup-epochs 0 --no-augment $ARGS

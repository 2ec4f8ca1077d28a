#!/bin/sh
# tests/train/subset.sh DEST N: the first N classes of TinyImageNet-200
# (500 training and 50 validation images each) in the release layout, taken
# from the archives in ../shared/data/tiny-imagenet-200 (NETC_SHARED_DATA).
set -e
dest=$1 n=${2:-10}
src=${NETC_SHARED_DATA:-../shared/data/tiny-imagenet-200}
if [ -f "$dest/wnids.txt" ]; then echo "$dest"; exit 0; fi
for f in train.tar.gz val.tar.gz wnids.txt words.txt; do
  [ -f "$src/$f" ] || { echo "subset.sh: no $src/$f" >&2; exit 1; }
done
rm -rf "$dest.partial" && mkdir -p "$dest.partial"
head -n "$n" "$src/wnids.txt" > "$dest.partial/wnids.txt"
cp "$src/words.txt" "$dest.partial/"
patterns=$(sed 's|^\(.*\)$|train/\1/*|' "$dest.partial/wnids.txt")
# shellcheck disable=SC2086
tar -xzf "$src/train.tar.gz" -C "$dest.partial" --wildcards $patterns
tar -xzf "$src/val.tar.gz" -C "$dest.partial"
# Keep the validation images of these classes only.
awk -F'\t' 'NR == FNR { keep[$1] = 1; next } ($2 in keep)' \
  "$dest.partial/wnids.txt" "$dest.partial/val/val_annotations.txt" \
  > "$dest.partial/val/annotations.kept"
mv "$dest.partial/val/annotations.kept" "$dest.partial/val/val_annotations.txt"
cut -f1 "$dest.partial/val/val_annotations.txt" | sed 's|^|images/|' |
  sort > "$dest.partial/keep.txt"
(cd "$dest.partial/val" && ls images | sed 's|^|images/|' | sort |
  comm -23 - ../keep.txt | xargs rm -f)
rm -f "$dest.partial/keep.txt"
mv "$dest.partial" "$dest"
echo "$dest"

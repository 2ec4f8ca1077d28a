#!/bin/bash
# snapshot.sh NETC OUTDIR: every output NETC gives for every .net file of
# the tree (each dump kind, --json, check, the sources of build
# --no-compile at two settings, and the errors of tests/errors/), for
# `diff -r` before and after a change that must not change behaviour:
#   sh tests/snapshot.sh /tmp/old-netc /tmp/before   # netc built before
#   sh tests/snapshot.sh build/netc /tmp/after && diff -r /tmp/before /tmp/after
# Only the output directory's own name is normalized (in build's log).
set -u
netc=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
mkdir -p "$2" && out=$(cd "$2" && pwd) && rm -rf "${out:?}"/* || exit 1
cd "$(dirname "$0")/.."
for f in models/*.net examples/*.net tests/golden/*.net tests/reference/*.net \
         tests/train/*.net tests/errors/*.net; do
  n=$(echo "$f" | tr / _)
  for k in ast shapes graph plan dot memory; do
    "$netc" dump $k "$f" > "$out/$n.$k" 2>&1; echo "rc=$?" >> "$out/$n.$k"
  done
  "$netc" dump plan --json "$f" > "$out/$n.planjson" 2>&1
  "$netc" dump graph --json -b 7 "$f" > "$out/$n.graphjson" 2>&1
  "$netc" check "$f" > "$out/$n.check" 2>&1; echo "rc=$?" >> "$out/$n.check"
  case $f in tests/errors/*) continue;; esac
  "$netc" build --no-tune --no-compile -o "$out/$n.build" "$f" > "$out/$n.buildlog" 2>&1
  sed -i "s|$out|OUT|g" "$out/$n.buildlog"
  "$netc" build --no-compile --conv direct -b 16 -o "$out/$n.build16" "$f" \
    > /dev/null 2>&1
done
"$netc" check -D width=8 models/resnet18.net > "$out/define.check" 2>&1
"$netc" check -D nosuch=8 models/resnet18.net > "$out/define.err" 2>&1
echo "snapshot: $(ls "$out" | wc -l) outputs in $out"

#!/bin/sh
# Regenerates the golden dumps from the current netc. Review `git diff
# tests/golden` before committing: a golden file pins intended output.
# The algorithms are those of a --portable (AVX2) build, the same on every
# machine; a native build on AVX-512 chooses others (compiler/algo.c).
set -e
netc=${1:-build/netc}
cd "$(dirname "$0")/../.."
$netc dump ast tests/golden/small.net > tests/golden/small.ast
$netc dump shapes tests/golden/small.net > tests/golden/small.shapes
$netc check --portable tests/golden/small.net > tests/golden/small.check
$netc dump shapes models/resnet18.net > tests/golden/resnet18.shapes
$netc dump graph --portable tests/golden/small.net > tests/golden/small.graph
$netc dump plan --portable tests/golden/small.net > tests/golden/small.plan
$netc dump graph --portable models/resnet18.net > tests/golden/resnet18.graph
$netc dump plan --portable models/resnet18.net > tests/golden/resnet18.plan
# The generated C of small.net (batch 8), pinned too.
gen=$(mktemp -d)
$netc build --no-tune --portable --no-compile -b 8 -o "$gen" tests/golden/small.net > /dev/null
cp "$gen/small.c" tests/golden/small.c.golden
cp "$gen/small.h" tests/golden/small.h.golden
rm -rf "$gen"
echo "golden files updated; review with: git diff tests/golden"

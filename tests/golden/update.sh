#!/bin/sh
# Regenerates the golden dumps from the current netc. Review `git diff
# tests/golden` before committing: a golden file pins intended output.
set -e
netc=${1:-build/netc}
cd "$(dirname "$0")/../.."
$netc dump ast tests/golden/small.net > tests/golden/small.ast
$netc dump shapes tests/golden/small.net > tests/golden/small.shapes
$netc check tests/golden/small.net > tests/golden/small.check
$netc dump shapes models/resnet18.net > tests/golden/resnet18.shapes
$netc dump graph tests/golden/small.net > tests/golden/small.graph
$netc dump plan tests/golden/small.net > tests/golden/small.plan
$netc dump graph models/resnet18.net > tests/golden/resnet18.graph
$netc dump plan models/resnet18.net > tests/golden/resnet18.plan
# The generated C of small.net (batch 8), pinned too.
gen=$(mktemp -d)
$netc build --no-compile -b 8 -o "$gen" tests/golden/small.net > /dev/null
cp "$gen/small.c" tests/golden/small.c.golden
cp "$gen/small.h" tests/golden/small.h.golden
rm -rf "$gen"
echo "golden files updated; review with: git diff tests/golden"

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
echo "golden files updated; review with: git diff tests/golden"

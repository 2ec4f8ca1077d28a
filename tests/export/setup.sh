#!/bin/sh
# tests/export/setup.sh DIR: ONNX Runtime for Node (the npm package
# onnxruntime-node, CPU) in DIR/node_modules, once. --ignore-scripts: its
# install script only fetches GPU parts, from a host tests cannot reach.
set -e
dir=${1:-build/npm}
[ -f "$dir/node_modules/onnxruntime-node/package.json" ] && exit 0
command -v npm >/dev/null || { echo "setup.sh: npm is missing (.ci/deps test installs it)" >&2; exit 1; }
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name": "netc-tests", "private": true}' > "$dir/package.json"
cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error onnxruntime-node@1.30.0

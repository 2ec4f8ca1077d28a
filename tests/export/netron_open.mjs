// netron_open.mjs NETRON_DIR MODEL.onnx...: opens each model the way
// Netron does, headless: Netron's own test harness (NETRON_DIR/test/
// worker.js, a checkout of github.com/lutzroeder/netron) loads the file,
// validates every node, attribute and initializer, and lays out and renders
// the graph into its mock DOM. One line per model; exit 1 if any fails.
// Not part of `make test`: Netron is not in Debian or on npm, and CI
// cannot reach GitHub. docs/training.md says how to get a checkout.
import * as path from 'path';
import * as url from 'url';

const [dir, ...files] = process.argv.slice(2);
if (!dir || files.length === 0) {
  console.error('usage: node netron_open.mjs NETRON_DIR MODEL.onnx...');
  process.exit(2);
}
const worker = await import(url.pathToFileURL(path.resolve(dir, 'test', 'worker.js')));
let failed = 0;
for (const file of files) {
  const target = new worker.Target({ name: file, targets: [path.resolve(file)] });
  try {
    await target.execute(); // load, validate, render
    const model = target.model;
    const graph = model.modules[0];
    const ops = new Map();
    for (const n of graph.nodes) {
      ops.set(n.type.name, (ops.get(n.type.name) || 0) + 1);
    }
    const list = [...ops].map(([k, v]) => `${k}:${v}`).join(',');
    console.log(`${file}: netron opened format='${model.format}' ` +
      `producer='${model.producer || ''}' nodes=${graph.nodes.length} ` +
      `inputs=${graph.inputs.map((a) => a.name)} ` +
      `outputs=${graph.outputs.map((a) => a.name)} ops=${list} rendered ok`);
  } catch (e) {
    failed++;
    console.log(`${file}: netron FAILED ${e.name}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);

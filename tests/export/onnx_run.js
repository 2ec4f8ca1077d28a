// onnx_run.js: netc's exported ONNX model run by ONNX Runtime.
//
//   node onnx_run.js model.onnx CLASSES inputs.f32 logits.f32 [TOL]
//
// Runs the images netc evaluated (`eval --inputs`, float32 NCHW) through
// the model with onnxruntime-node (CPU) and compares with netc's logits
// (`eval --logits`): the same top-1 for every image, and max |ort - netc|
// / max |netc| at most TOL (1e-4). Prints one line; exit 1 when they are
// not met. NODE_PATH must reach the onnxruntime-node package
// (tests/export/setup.sh installs it).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function floats(path) {
  const b = fs.readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

async function main() {
  const [model, classesArg, inputs, logits, tolArg] = process.argv.slice(2);
  const classes = Number(classesArg), tol = Number(tolArg || 1e-4);
  const z = floats(logits), x = floats(inputs);
  const n = z.length / classes;
  const session = await ort.InferenceSession.create(model);
  const meta = session.inputNames[0];
  const perImage = x.length / n;
  const side = Math.round(Math.sqrt(perImage / 3));
  const feeds = {};
  feeds[meta] = new ort.Tensor('float32', x, [n, 3, side, side]);
  const out = (await session.run(feeds))[session.outputNames[0]].data;
  let diff = 0, scale = 0, agree = 0;
  for (let i = 0; i < n; i++) {
    let a = 0, b = 0;
    for (let c = 0; c < classes; c++) {
      const k = i * classes + c;
      diff = Math.max(diff, Math.abs(out[k] - z[k]));
      scale = Math.max(scale, Math.abs(z[k]));
      if (out[k] > out[i * classes + a]) a = c;
      if (z[k] > z[i * classes + b]) b = c;
    }
    if (a === b) agree++;
  }
  const rel = diff / scale, ok = rel <= tol && agree === n;
  console.log(`onnxruntime ${ort.env.versions ? ort.env.versions.common : ''}` +
              ` ${session.inputNames[0]} -> ${session.outputNames[0]}: ` +
              `images=${n} top1_agree=${agree}/${n} ` +
              `max_rel_diff=${rel.toExponential(3)} (tol ${tol}) ` +
              `${ok ? 'ok' : 'FAIL'}`);
  process.exit(ok ? 0 : 1);
}

main().catch((e) => { console.error(`onnx_run.js: ${e.message}`); process.exit(1); });

#!/usr/bin/env python3
"""onnx_check.py MODEL.onnx CLASSES: onnx.checker with full checking (the
types and shapes of every node inferred), opset and metadata as netc's
export promises: input float32 [N, 3, H, W], output logits [N, CLASSES],
the class list and the normalization. Prints one line; exit 1 if not."""
import json
import sys

import onnx

path, classes = sys.argv[1], int(sys.argv[2])
m = onnx.load(path)
onnx.checker.check_model(m, full_check=True)
meta = {p.key: p.value for p in m.metadata_props}
ins, outs = m.graph.input, m.graph.output
dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
problems = []
if dims(ins[0])[:2] != ["N", 3] or dims(outs[0]) != ["N", classes]:
    problems.append(f"shapes {dims(ins[0])} -> {dims(outs[0])}")
if len(json.loads(meta.get("classes", "[]"))) != classes:
    problems.append("the class list")
for key in ("mean", "std", "input", "class_names"):
    if key not in meta:
        problems.append(f"no metadata {key}")
ops = sorted({n.op_type for n in m.graph.node})
print(f"onnx.checker full_check ok: opset {m.opset_import[0].version} ir "
      f"{m.ir_version}, {len(m.graph.node)} nodes ({', '.join(ops)}), "
      f"{len(m.graph.initializer)} initializers, input {dims(ins[0])}, "
      f"output {dims(outs[0])}" + ("; PROBLEMS: " + "; ".join(problems)
                                     if problems else ""))
sys.exit(1 if problems else 0)

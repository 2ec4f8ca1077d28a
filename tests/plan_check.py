#!/usr/bin/env python3
"""plan_check.py: checks a netc memory plan from its JSON alone, with no
netc code: `netc dump plan --json FILE.net | python3 tests/plan_check.py`.

It verifies what the plan promises: every tensor is 64-byte aligned and
inside the arena; two tensors whose live intervals overlap never share a
byte unless they are one buffer (a view, or an in-place output over its
input); and it recomputes the lower bound. Prints one line and exits 0 when
the plan holds, 1 otherwise."""
import json
import sys


def main():
    plan = json.load(sys.stdin)
    tensors = plan["tensors"]
    align, arena = plan["alignment"], plan["planned_bytes"]
    errors = []
    buffers = {}
    for t in tensors:
        if t["offset"] % align:
            errors.append(f"{t['name']}: offset {t['offset']} not aligned")
        if t["offset"] + t["bytes"] > arena:
            errors.append(f"{t['name']}: ends past the arena")
        b = buffers.setdefault(t["buffer"], {"first": t["first"],
                                             "last": t["last"], "end": 0,
                                             "offset": t["offset"]})
        if b["offset"] != t["offset"]:
            errors.append(f"{t['name']}: not at its buffer's offset")
        b["first"] = min(b["first"], t["first"])
        b["last"] = max(b["last"], t["last"])
        size = (t["bytes"] + align - 1) // align * align
        b["end"] = max(b["end"], t["offset"] + size)
    items = sorted(buffers.items(), key=lambda kv: kv[1]["offset"])
    for i, (ka, a) in enumerate(items):
        for kb, b in items[i + 1:]:
            if b["offset"] >= a["end"]:
                break
            if a["first"] <= b["last"] and b["first"] <= a["last"]:
                errors.append(f"buffers {ka} and {kb} overlap")
    live = [0] * (plan["steps"] + 1)
    for b in buffers.values():
        for s in range(b["first"], b["last"] + 1):
            live[s] += b["end"] - b["offset"]
    if max(live) != plan["lower_bound_bytes"]:
        errors.append(f"lower bound {plan['lower_bound_bytes']} != {max(live)}")
    if arena < max(live):
        errors.append("the arena is smaller than the lower bound")
    for e in errors[:20]:
        print("plan_check:", e)
    print(f"plan_check: {plan['network']}: {len(tensors)} tensors, "
          f"{len(buffers)} buffers, {len(errors)} problems, arena {arena} "
          f"bytes = {arena / max(live):.4f} x lower bound")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

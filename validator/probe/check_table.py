#!/usr/bin/env python3
"""Check a silicon table against the reference format (fixtures/silicon/h200-qwen2.5-7b-forward.json).

    python3 validator/probe/check_table.py TABLE.json [--reference REF.json]

The same keys at every level (objects compared key by key, every row of a list against the reference's
first row), the same JSON types (an integer where the reference has one), min <= median <= max and a
positive median in every timing, `reps` positive, and the model's KV bytes per token consistent with
its shape. Prints one line per table and exits 1 on the first table that differs. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "fixtures" / "silicon" / "h200-qwen2.5-7b-forward.json"


def kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "number"
    return type(v).__name__


def same_shape(ref, got, path: str, errors: list[str]) -> None:
    if isinstance(ref, dict):
        if not isinstance(got, dict):
            errors.append(f"{path}: expected an object, got {kind(got)}")
            return
        missing, extra = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
        if missing:
            errors.append(f"{path}: missing {missing}")
        if extra:
            errors.append(f"{path}: unexpected {extra}")
        for k in set(ref) & set(got):
            same_shape(ref[k], got[k], f"{path}.{k}", errors)
    elif isinstance(ref, list):
        if not isinstance(got, list):
            errors.append(f"{path}: expected a list, got {kind(got)}")
            return
        if ref and isinstance(ref[0], (dict, list)):
            for i, row in enumerate(got):
                same_shape(ref[0], row, f"{path}[{i}]", errors)
        else:
            for i, v in enumerate(got):
                if ref and kind(v) != kind(ref[0]):
                    errors.append(f"{path}[{i}]: expected {kind(ref[0])}, got {kind(v)}")
    else:
        k_ref, k_got = kind(ref), kind(got)
        # A float field may hold an integral value; an integer field must stay an integer.
        if k_ref != k_got and not (k_ref == "number" and k_got == "int"):
            errors.append(f"{path}: expected {k_ref}, got {k_got} ({got!r})")


def timings(obj, path: str, errors: list[str]) -> None:
    if isinstance(obj, dict):
        if "median_s" in obj:
            lo, med, hi = obj.get("min_s"), obj["median_s"], obj.get("max_s")
            if not (isinstance(med, (int, float)) and med > 0 and lo <= med <= hi):
                errors.append(f"{path}: min {lo} <= median {med} <= max {hi} does not hold")
            if not (isinstance(obj.get("reps"), int) and obj["reps"] > 0):
                errors.append(f"{path}: reps {obj.get('reps')!r}")
        for k, v in obj.items():
            timings(v, f"{path}.{k}", errors)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            timings(v, f"{path}[{i}]", errors)


def check(table: dict, ref: dict) -> list[str]:
    errors: list[str] = []
    same_shape(ref, table, "$", errors)
    if errors:
        return errors
    timings(table, "$", errors)
    m = table["model"]
    per_elt, rem = divmod(m["kv_bytes_per_token"], 2 * m["layers"] * m["kv"] * m["hd"])
    if rem or per_elt not in (1, 2, 4):
        errors.append(f"$.model: kv_bytes_per_token {m['kv_bytes_per_token']} is not 2 x layers x kv "
                      "x hd x (1, 2 or 4) bytes")
    if m["heads"] % m["kv"]:
        errors.append(f"$.model: {m['heads']} heads over {m['kv']} KV heads")
    if not (table["decode"] or table["prefill"] or table["mixed"]):
        errors.append("$: no decode, prefill or mixed rows")
    return errors


def compare(table: dict, other: dict) -> list[str]:
    """Rows present in both tables (same kind and grid point), with the ratio of their medians."""
    keys = {"decode": ("batch", "context"), "prefill": ("tokens",), "mixed": ("chunk", "batch", "context")}
    lines = []
    for kind_, ks in keys.items():
        theirs = {tuple(r[k] for k in ks): r["median_s"] for r in other.get(kind_, [])}
        for r in table.get(kind_, []):
            at = tuple(r[k] for k in ks)
            if at in theirs:
                lines.append(f"{kind_:8s} {'x'.join(map(str, at)):>16s}  {r['median_s'] * 1e3:9.3f} ms  "
                             f"vs {theirs[at] * 1e3:9.3f} ms  ratio {r['median_s'] / theirs[at]:.3f}")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tables", nargs="+")
    p.add_argument("--reference", default=str(REFERENCE))
    p.add_argument("--compare", help="also print the medians of rows this table shares with another "
                                     "(e.g. a rerun on the same GPU against the committed table)")
    a = p.parse_args()
    ref = json.loads(Path(a.reference).read_text())
    for t in a.tables:
        try:
            table = json.loads(Path(t).read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"{t}: unreadable: {e}", file=sys.stderr)
            return 1
        errors = check(table, ref)
        if errors:
            print(f"{t}: {len(errors)} differences from {a.reference}:", file=sys.stderr)
            for e in errors[:20]:
                print(f"  {e}", file=sys.stderr)
            return 1
        print(f"{t}: ok ({table['device']}: {len(table['decode'])} decode, {len(table['prefill'])} "
              f"prefill, {len(table['mixed'])} mixed rows)")
        if a.compare:
            for line in compare(table, json.loads(Path(a.compare).read_text())):
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Prefix-caching conformance: the same scripted sequences against two OpenAI servers (the real vLLM
peer and `servesim serve`), recording after each step the prefix-cache counters on /metrics and the
answer's usage.prompt_tokens_details.cached_tokens, and checking that both saw the same hits.

Prompts are sent as token ids on /v1/completions (the two servers' tokenizers differ), one request at
a time, max_tokens 1, temperature 0. Both servers must run with the same block size (--block, default 32:
vLLM's CPU attention takes multiples of 32 only), prefix caching on and --enable-prompt-tokens-details;
the `evict` scenario needs a small KV cache on both (--num-gpu-blocks-override 24 --max-model-len 512:
23 usable blocks of 32 tokens, three 10-block prompts).

  prefix_cache.py URL_A URL_B [--scenarios basic,evict] [--report FILE]
  prefix_cache.py URL --record FILE          # one server only: print and save what it saw
Exit status 0 when every step's hits and cached_tokens agree, 1 otherwise.
"""

import argparse
import json
import re
import sys
import time
import urllib.request

BLOCK = 32


def ids(seed, n):
    """n token ids of family `seed` (within the peer's tiny 2048-id vocabulary): distinct families share no block."""
    return [(seed * 7919 + i * 31) % 1900 + 100 for i in range(n)]


def scenario_basic():
    """(name, prompt ids) steps: repeat, extend, shared prefix, exact multiple of a block."""
    a, s = ids(1, 6 * BLOCK + 4), ids(2, 4 * BLOCK)
    return [
        ("first A (6 blocks + 4)", a),
        ("repeat A: 6 full blocks hit", a),
        ("extend A by 3 blocks", a + ids(3, 3 * BLOCK)),
        ("system S + user 1", s + ids(4, 40)),
        ("system S + user 2: S's 4 blocks hit", s + ids(5, 40)),
        ("first B (6 blocks exactly)", ids(6, 6 * BLOCK)),
        ("repeat B: last block recomputed (5 hit)", ids(6, 6 * BLOCK)),
        ("short prompt < 1 block", ids(7, 10)),
        ("repeat short: nothing to hit", ids(7, 10)),
    ]


def scenario_evict():
    """Three 10-block prompts in 23 blocks: the third evicts the first's tail (LRU, tail first)."""
    p1, p2, p3 = ids(11, 10 * BLOCK), ids(12, 10 * BLOCK), ids(13, 10 * BLOCK)
    return [
        ("P1 (10 blocks)", p1),
        ("P2 (10 blocks)", p2),
        ("P3 evicts P1's tail", p3),
        ("P1 again: its head survived", p1),
        ("P2 again", p2),
        ("P3 again", p3),
    ]


SCENARIOS = {"basic": scenario_basic, "evict": scenario_evict}


def post(url, body):
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def counters(base):
    with urllib.request.urlopen(base + "/metrics", timeout=60) as r:
        text = r.read().decode()
    out = {}
    for name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"):
        total = 0.0
        for m in re.finditer(r"^" + re.escape(name) + r"(\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M):
            total += float(m.group(2))
        out[name.split(":")[1].replace("_total", "")] = int(total)
    return out


def run(base, steps, model):
    rows = []
    before = counters(base)
    for name, prompt in steps:
        ans = post(
            base + "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0},
        )
        details = (ans.get("usage") or {}).get("prompt_tokens_details") or {}
        # The engine's stats reach /metrics with the step's outputs; give them a moment to settle.
        after = counters(base)
        for _ in range(20):
            if after["prefix_cache_queries"] - before["prefix_cache_queries"] >= len(prompt):
                break
            time.sleep(0.1)
            after = counters(base)
        rows.append(
            {
                "step": name,
                "prompt_tokens": len(prompt),
                "queries": after["prefix_cache_queries"] - before["prefix_cache_queries"],
                "hits": after["prefix_cache_hits"] - before["prefix_cache_hits"],
                "cached_tokens": details.get("cached_tokens"),
            }
        )
        before = after
    return rows


def table(label, rows):
    lines = [f"### {label}", "", "| step | prompt | queries | hits | cached_tokens |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['step']} | {r['prompt_tokens']} | {r['queries']} | {r['hits']} | {r['cached_tokens']} |"
        )
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--scenarios", default="basic")
    ap.add_argument("--model", default="local")
    ap.add_argument("--report")
    ap.add_argument("--record")
    ap.add_argument("--block", type=int, default=BLOCK)
    a = ap.parse_args()
    globals()["BLOCK"] = a.block
    steps = [s for name in a.scenarios.split(",") for s in SCENARIOS[name]()]
    results = [run(u.rstrip("/"), steps, a.model) for u in a.urls]
    out = "".join(table(u, r) for u, r in zip(a.urls, results))
    print(out)
    if a.record:
        with open(a.record, "w") as f:
            json.dump(results[0], f, indent=1)
    rc = 0
    if len(results) == 2:
        for x, y in zip(*results):
            same = (x["queries"], x["hits"], x["cached_tokens"]) == (y["queries"], y["hits"], y["cached_tokens"])
            if not same:
                rc = 1
                print(f"DIFFERENT at '{x['step']}': {x} vs {y}", file=sys.stderr)
        verdict = "identical hit counts" if rc == 0 else "hit counts DIFFER"
        out += f"\nVerdict: {verdict} ({len(steps)} steps, scenarios {a.scenarios}).\n"
        print(verdict, file=sys.stderr)
    if a.report:
        with open(a.report, "w") as f:
            f.write(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())

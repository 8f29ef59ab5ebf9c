#!/usr/bin/env python3
"""Checks a `servesim validate --real` run against the vLLM CPU peer (report.json in OUT_DIR):
NVML reported absent, the claims that real data can decide got verdicts from it, the batching drill measured for
real (both phases, no errors, a B/A ratio), the decode sweep measured at two or more levels and claim 5 decided.

usage: check_validate.py OUT_DIR [--min-ratio X]   (--min-ratio: the peer runs serially, e.g. --max-num-seqs 1)
"""
import json
import math
import os
import sys


def main():
    out = sys.argv[1]
    min_ratio = float(sys.argv[sys.argv.index("--min-ratio") + 1]) if "--min-ratio" in sys.argv else None
    d = json.load(open(os.path.join(out, "report.json")))
    fails = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            fails.append(what)

    check(d["environment"]["real_source"].startswith("live server"), f"real side is a live server: {d['environment']['real_source']}")
    real = d["real"]
    check(not real.get("samples") and bool(real.get("telemetry_note")), f"NVML absent: {real.get('telemetry_note')!r}, {len(real.get('samples') or [])} samples")
    check("not observed" in open(os.path.join(out, "report.md")).read(), "report.md says the GPU was not observed")
    drills = {x["drill"]: x for x in real["recording"]["drills"]}
    for name, x in drills.items():
        errs = sum(r["err"] for r in x["rows"])
        check(all(r["reqs"] > 0 for r in x["rows"]), f"{name}: {len(x['rows'])} levels measured, {errs} errors")
    b = drills.get("batching")
    check(b is not None and [r["axis"] for r in b["rows"]] == ["A-alone", "B-loaded"], "batching drill: A-alone and B-loaded measured")
    if b:
        check(all(r["err"] == 0 for r in b["rows"]), "batching drill: no errors")
        ratio = b.get("ratio")
        check(isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio > 0, f"batching ratio B/A measured: {ratio}")
        if min_ratio is not None:
            check(ratio >= min_ratio, f"serial peer: ratio {ratio:.2f} >= {min_ratio}")
            # What a serial server must do to every short request, not just the unlucky one that p95 picks: wait
            # behind the long ones ahead of it (the drill keeps them coming for as long as the short ones run).
            # So the median short request under load must wait min_ratio x the median one alone. (Medians: a p95
            # of 6 samples extrapolates past the largest one and swings with a single slow request.)
            a, b_row = b["rows"]
            waited = b_row["ttft_p50"] / a["ttft_p50"] if a["ttft_p50"] > 0 else float("inf")
            check(waited >= min_ratio and b_row["reqs"] >= 4,
                  f"serial peer: median short request waited: B ttft_p50 {b_row['ttft_p50']} s / A ttft_p50 "
                  f"{a['ttft_p50']} s = {waited:.1f} >= {min_ratio} over {b_row['reqs']} measured (>= 4) requests")
    claims = d["ledger"]["claims"]
    decided = [c for c in claims if c["real"] in ("substantiated", "refuted")]
    for c in claims:
        print(f"     claim {c['id']}: real {c['real']}, sim {c['sim']}, {c['class']}")
    if min_ratio is None:
        check(len(decided) >= 4, f"{len(decided)} claims decided by real data (throughput, knee, batching, ...)")
        # The decode sweep: claim 5 fits e2e on the generated events over its levels, so it needs two or more with
        # distinct counts (the peer's tiny model never stops by itself: max_tokens cuts every answer).
        dec = drills.get("decode")
        levels = [(r["axis"], r["gen"]) for r in dec["rows"]] if dec else []
        check(len(levels) >= 2 and all(r["reqs"] > 0 and r["err"] == 0 for r in dec["rows"]),
              f"decode drill: {len(levels)} levels (out_tok, gen) {levels}, no errors")
        gens = [gen for _, gen in levels]
        check(gens == sorted(set(gens)), f"decode drill: more tokens generated at each higher cap {gens}")
        c5 = next((c for c in claims if c["id"] == 5), None)
        check(c5 is not None and c5["real"] in ("substantiated", "refuted"),
              f"claim 5 (decode) decided by real data: {c5 and c5['real']}: {c5 and c5.get('real_evidence')}")
    tele = [c for c in claims if "NVML" in c["threshold"] or "GPU" in c["title"]]
    check(all(c["real"] == "not_observed" for c in tele), "GPU-telemetry claims: not observed (no NVML)")
    print(f"{len(fails) == 0 and 1 or 0} passed, {len(fails) and 1 or 0} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

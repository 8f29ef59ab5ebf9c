#!/usr/bin/env python3
"""inference-perf's report against `servesim simulate --workload --report-dir`'s, stage by stage.

    compare.py [--tol 0.05] [--profile profile.json --server-before S --server-after S] MEASURED_DIR SIM_DIR

Both directories hold inference-perf's layout (stage_N_lifecycle_metrics.json, summary_lifecycle_metrics.json;
inference_perf/reportgen/base.py in 0.7.0: successes.latency.<metric>.{mean,median,p90,...} in seconds).
Checked, per stage: the request count, the prompt tokens (the server's count, so inference-perf's tokenizer counts
what the server counts), no failures, and TTFT, ITL and request latency (E2E) mean and median within TOL of the
simulator's. p90 is reported, not checked (a stage of 16 requests has its p90 between two requests). Prints one row
per stage and metric with the ratios measured / simulated; exit 1 if any check failed.
"""
import argparse
import json
import os
import re
import sys

METRICS = [("time_to_first_token", "TTFT"), ("inter_token_latency", "ITL"), ("request_latency", "E2E")]
CHECKED = ("mean", "median")
REPORTED = ("p90",)


def stages(d):
    """Stage number -> the stage's lifecycle report, for every stage file in directory d."""
    out = {}
    for name in os.listdir(d):
        m = re.fullmatch(r"stage_(\d+)_lifecycle_metrics\.json", name)
        if m:
            with open(os.path.join(d, name)) as f:
                out[int(m.group(1))] = json.load(f)
    return out


def sums(text):
    """`name=value name=value` (the shell script's /metrics sums) as a dict."""
    return {k: float(v) for k, v in (x.split("=", 1) for x in (text or "").split())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("measured")
    ap.add_argument("sim")
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--config", help="the config both ran (named in the output only)")
    ap.add_argument("--profile", help="`servesim profiles show --json` (API latencies for the server's own TTFT)")
    ap.add_argument("--server-before", default="")
    ap.add_argument("--server-after", default="")
    a = ap.parse_args()

    got, want = stages(a.measured), stages(a.sim)
    problems = []
    if not got or sorted(got) != sorted(want):
        problems.append(f"stages: inference-perf wrote {sorted(got)}, simulate {sorted(want)}")
    print(f"inference-perf vs servesim simulate{' on ' + os.path.basename(a.config) if a.config else ''}: "
          f"ratio measured / simulated, checked {'/'.join(CHECKED)} within {a.tol:.0%}, {'/'.join(REPORTED)} reported")
    header = f"{'stage':>5} {'metric':<5} {'n':>4}" + "".join(
        f" {s + ' ms':>22}" for s in CHECKED + REPORTED)
    print(header)
    print(f"{'':>16}" + "".join(f" {'measured / sim = ratio':>22}" for _ in CHECKED + REPORTED))
    worst = 0.0
    for stage in sorted(set(got) & set(want)):
        g, w = got[stage]["successes"], want[stage]["successes"]
        failed = got[stage].get("failures", {}).get("count", 0)
        if failed:
            problems.append(f"stage {stage}: {failed} failed requests")
        if g["count"] != w["count"]:
            problems.append(f"stage {stage}: {g['count']} requests measured, {w['count']} simulated")
        gp, wp = g["prompt_tokens"]["mean"], w["prompt_tokens"]["mean"]
        if abs(gp - wp) > 0.5:
            problems.append(f"stage {stage}: prompt tokens mean {gp} (server's count) vs {wp} simulated")
        for key, label in METRICS:
            gm, wm = g["latency"][key], w["latency"][key]
            cells = []
            for stat in CHECKED + REPORTED:
                r = gm[stat] / wm[stat]
                bad = stat in CHECKED and abs(r - 1) > a.tol
                if stat in CHECKED:
                    worst = max(worst, abs(r - 1))
                if bad:
                    problems.append(f"stage {stage} {label} {stat}: {gm[stat] * 1e3:.1f} ms vs {wm[stat] * 1e3:.1f} ms "
                                    f"simulated ({r:.3f})")
                cells.append(f"{gm[stat] * 1e3:6.1f} / {wm[stat] * 1e3:6.1f} = {r:5.3f}{'!' if bad else ' '}")
            print(f"{stage:>5} {label:<5} {g['count']:>4} " + " ".join(f"{c:>22}" for c in cells))

    # The server's own figures for inference-perf's requests (engine timeline plus the profile's API latencies):
    # apart from the client's own time, what the server claims to have done.
    before, after = sums(a.server_before), sums(a.server_after)
    if a.profile and after:
        with open(a.profile) as f:
            engine = json.load(f)["profile"]["engine"]
        api = engine["input_latency_s"] + engine["output_latency_s"]
        d = {k: after[k] - before.get(k, 0.0) for k in after}
        n = d.get("vllm:time_to_first_token_seconds_count", 0)
        if n:
            ttft = d["vllm:time_to_first_token_seconds_sum"] / n + api
            e2e = d["vllm:e2e_request_latency_seconds_sum"] / d["vllm:e2e_request_latency_seconds_count"] + api
            lag = d["servesim:emission_lag_seconds_sum"] / max(d["servesim:emission_lag_seconds_count"], 1)
            with open(os.path.join(a.measured, "summary_lifecycle_metrics.json")) as f:
                lat = json.load(f)["successes"]["latency"]
            print(f"server's own, {n:.0f} requests: TTFT mean {ttft * 1e3:.1f} ms, E2E mean {e2e * 1e3:.1f} ms (engine "
                  f"time + {api * 1e3:.0f} ms API latency); inference-perf's client adds "
                  f"{(lat['time_to_first_token']['mean'] - ttft) * 1e3:+.1f} ms to TTFT, "
                  f"{(lat['request_latency']['mean'] - e2e) * 1e3:+.1f} ms to E2E; token emission lag mean "
                  f"{lag * 1e3:.2f} ms")
    print(f"largest checked difference: {worst:.1%}")
    for p in problems:
        print(f"FAIL {p}")
    print("ok" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

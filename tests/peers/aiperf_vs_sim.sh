#!/usr/bin/env bash
# AIPerf (PyPI, unmodified) benchmarks `servesim serve`; what it measures must agree with `servesim simulate` for the
# same load (conc 4, 16 requests, ~16 input and 32 output tokens), as far as the server guarantees it on a loaded
# 2-core machine. Checked:
#   - ITL p50 (AIPerf's per-request (latency - TTFT) / (tokens - 1), median) within 10 % of the simulator's per-token
#     TPOT median. The server emits every token on its simulated timeline: a late token delays only itself, never the
#     ones after it, so per request lateness is divided by 31 gaps, and the median over 16 requests ignores the worst.
#   - request latency mean within 10 % of the simulator's e2e mean: lateness on one request moves it by 1/16 (it would
#     take ~1.5 s of lateness in all); and request latency p99 at least 90 % of the simulator's (no token reaches a
#     client before its modelled time: a lower bound no load can break).
#   - the server's own e2e mean for these requests (vllm:e2e_request_latency_seconds, engine time, plus the profile's
#     API latencies) within 10 % of the simulator's: computed on the simulated timeline, independent of the load.
# Reported, not checked: request latency p99 against the simulator's (it is the one cold-start request, so a single
# stall of the client or the server on it counts in full), TTFT p50 (on 2 cores AIPerf's own processes add tens of ms
# to it), the server's own TTFT and how late it emitted tokens.
#   tests/peers/aiperf_vs_sim.sh SERVESIM_BIN [OUT_DIR]
# Needs the peer's tokenizer (tests/peers/vllm-cpu/setup.sh builds it); AIPerf's venv is cached beside the peer's
# (AIPERF_VENV overrides where).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$1"; OUT="${2:-$ROOT/target/peers/aiperf}"
CACHE="${SERVESIM_PEER_CACHE:-$HOME/.cache/servesim-peer}"
PROFILE=a6000-qwen2.5-7b
mkdir -p "$OUT"
MODEL="$(bash "$ROOT/tests/peers/vllm-cpu/setup.sh" | tail -1)"
VENV="${AIPERF_VENV:-$CACHE/aiperf-venv}"
if [ ! -f "$VENV/.ready-0.13.0" ]; then
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'aiperf==0.13.0'
  touch "$VENV/.ready-0.13.0"
fi
setsid "$BIN" serve --host 127.0.0.1 --port 0 --served-model-name local --profile "$PROFILE" > "$OUT/servesim.log" 2>&1 &
PID=$!
trap 'kill -TERM -- "-$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT
# A bound on a hang: the server prints its address within a second even on a loaded machine.
for _ in $(seq 1 600); do grep -q 'listening on http://' "$OUT/servesim.log" && break; sleep 0.1; done
FAKE=$(grep -o 'listening on http://[0-9.:]*' "$OUT/servesim.log" | head -1 | sed 's/listening on //')
[ -n "$FAKE" ] || { echo "servesim serve did not start:" >&2; cat "$OUT/servesim.log" >&2; exit 2; }
# The server's own view, summed over all requests so far (engine times; the lag is wall clock against them).
server_sums() {
  curl -fsS "$FAKE/metrics" |
    awk '/^(vllm:e2e_request_latency_seconds|vllm:time_to_first_token_seconds|servesim:emission_lag_seconds)_(sum|count)[{ ]/ {
      name = $1; sub(/\{.*/, "", name); printf "%s=%s ", name, $NF }'
}
BEFORE=$(server_sums)
# Without HF_HUB_OFFLINE: AIPerf rejects a local tokenizer path then; with a local path it makes no hub call.
timeout 300 "$VENV/bin/aiperf" profile --model local --url "$FAKE" --endpoint-type chat --streaming \
  --tokenizer "$MODEL" --concurrency 4 --request-count 16 --isl 16 --osl 32 --extra-inputs ignore_eos:true \
  --use-server-token-count --ui none --artifact-dir "$OUT/run" --workers-max 2 > "$OUT/aiperf.log" 2>&1
AFTER=$(server_sums)
# The simulator through `bench --target sim` (rows identical to `simulate`'s; its levels add means and per-token TPOT).
"$BIN" bench --target "sim:$PROFILE" --drill baseline --concurrency 4 --requests-per-level 16 \
  --max-tokens 32 --quiet --format json > "$OUT/sim.json"
"$BIN" profiles show "$PROFILE" --json > "$OUT/profile.json"
python3 - "$OUT/run/profile_export_aiperf.json" "$OUT/sim.json" "$OUT/profile.json" "$BEFORE" "$AFTER" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
s = s[0] if isinstance(s, list) else s
row, level = s["rows"][0], s["levels"][0]
engine = json.load(open(sys.argv[3]))["profile"]["engine"]
api = engine["input_latency_s"] + engine["output_latency_s"]
before, after = ({k: float(v) for k, v in (x.split("=") for x in t.split())} for t in sys.argv[4:6])
delta = {k: after[k] - before.get(k, 0.0) for k in after}
n = delta.get("vllm:e2e_request_latency_seconds_count", 0.0)
if n != 16:
    sys.exit(f"the server finished {n:.0f} requests during the AIPerf run, not 16")
own_e2e = delta["vllm:e2e_request_latency_seconds_sum"] / n + api
own_ttft = delta["vllm:time_to_first_token_seconds_sum"] / n + api
lag = delta["servesim:emission_lag_seconds_sum"] / max(delta["servesim:emission_lag_seconds_count"], 1.0)
ms = lambda metric, stat: a[metric][stat] / 1000
# (name, measured, simulated, lowest ratio, highest ratio); None: reported only.
pairs = [
    ("ITL p50 vs per-token TPOT median", ms("inter_token_latency", "p50"), level["tpot_tokens"]["median"], 0.9, 1.1),
    ("request latency mean vs e2e mean", ms("request_latency", "avg"), level["e2e"]["mean"], 0.9, 1.1),
    ("request latency p99 vs e2e_p99, lower bound", ms("request_latency", "p99"), row["e2e_p99"], 0.9, None),
    ("server's own e2e mean + API latency vs e2e mean", own_e2e, level["e2e"]["mean"], 0.9, 1.1),
    ("TTFT p50 vs ttft_p50", ms("time_to_first_token", "p50"), row["ttft_p50"], None, None),
    ("server's own TTFT mean + API latency vs TTFT mean", own_ttft, level["ttft"]["mean"], None, None),
]
failed = checked = 0
for name, got, want, low, high in pairs:
    r = got / want
    bad = (low is not None and r < low) or (high is not None and r > high)
    checked += low is not None or high is not None
    failed += bad
    bound = "reported" if low is None and high is None else f"checked: {low or 0:g}..{high or 'inf'} x"
    print(f"aiperf {name}: {got:.4f} s vs simulate {want:.4f} s ({(r - 1) * 100:+.1f} %, {bound}){' FAIL' if bad else ''}")
print(f"server: token emission lag mean {lag * 1000:.2f} ms (servesim:emission_lag_seconds); the p99 request "
      f"latency above is the cold-start request's")
print(f"{checked - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY

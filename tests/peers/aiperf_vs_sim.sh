#!/usr/bin/env bash
# AIPerf (PyPI, unmodified) benchmarks `servesim serve`; its measured inter-token latency and e2e p99 must be within
# 10 % of `servesim simulate` for the same load (conc 4, 16 requests, ~16 input and 32 output tokens). TTFT is
# reported, not checked: on 2 cores AIPerf's own processes add tens of ms to it.
#   tests/peers/aiperf_vs_sim.sh SERVESIM_BIN [OUT_DIR]
# Needs the peer's tokenizer (tests/peers/vllm-cpu/setup.sh builds it); AIPerf's venv is cached beside the peer's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="$1"; OUT="${2:-$ROOT/target/peers/aiperf}"
CACHE="${SERVESIM_PEER_CACHE:-$HOME/.cache/servesim-peer}"
mkdir -p "$OUT"
MODEL="$(bash "$ROOT/tests/peers/vllm-cpu/setup.sh" | tail -1)"
VENV="$CACHE/aiperf-venv"
if [ ! -f "$VENV/.ready-0.13.0" ]; then
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'aiperf==0.13.0'
  touch "$VENV/.ready-0.13.0"
fi
setsid "$BIN" serve --host 127.0.0.1 --port 0 --served-model-name local > "$OUT/servesim.log" 2>&1 &
PID=$!
trap 'kill -TERM -- "-$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q 'listening on http://' "$OUT/servesim.log" && break; sleep 0.1; done
FAKE=$(grep -o 'listening on http://[0-9.:]*' "$OUT/servesim.log" | head -1 | sed 's/listening on //')
# Without HF_HUB_OFFLINE: AIPerf rejects a local tokenizer path then; with a local path it makes no hub call.
timeout 300 "$VENV/bin/aiperf" profile --model local --url "$FAKE" --endpoint-type chat --streaming \
  --tokenizer "$MODEL" --concurrency 4 --request-count 16 --isl 16 --osl 32 --extra-inputs ignore_eos:true \
  --use-server-token-count --ui none --artifact-dir "$OUT/run" --workers-max 2 > "$OUT/aiperf.log" 2>&1
"$BIN" simulate --drill baseline --concurrency 4 --requests-per-level 16 --max-tokens 32 --format json > "$OUT/sim.json"
python3 - "$OUT/run/profile_export_aiperf.json" "$OUT/sim.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
s = (s[0] if isinstance(s, list) else s)["rows"][0]
pairs = [("ITL p50 vs tpot_p50", a["inter_token_latency"]["p50"] / 1000, s["tpot_p50"], True),
         ("request latency p99 vs e2e_p99", a["request_latency"]["p99"] / 1000, s["e2e_p99"], True),
         ("TTFT p50 vs ttft_p50", a["time_to_first_token"]["p50"] / 1000, s["ttft_p50"], False)]
failed = 0
for name, got, want, checked in pairs:
    d = (got - want) / want * 100
    bad = checked and abs(d) > 10
    failed += bad
    print(f"aiperf {name}: {got:.4f} s vs simulate {want:.4f} s ({d:+.1f} %){' FAIL' if bad else ''}{'' if checked else ' (reported)'}")
print(f"{2 - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY

#!/usr/bin/env bash
# inference-perf (kubernetes-sigs, PyPI 0.7.0, unmodified) benchmarks `servesim serve` with an inference-perf
# config; `servesim simulate --workload` runs the same config file in virtual time and writes inference-perf's
# report files; per stage, TTFT, ITL and request latency (E2E) must agree within 5 %
# (tests/peers/inference-perf/compare.py says exactly what is checked and why; docs/inference-perf.md has the runs).
#
#   tests/peers/inference_perf_vs_sim.sh SERVESIM_BIN [OUT_DIR]      (OUT_DIR default: target/peers/inference-perf)
#
# The load (tests/peers/inference-perf/shared-prefix.yaml): streamed /v1/completions, one 512-token system prompt
# shared by 64 questions of 64 tokens, 32 output tokens, ignore_eos; constant-rate stages of 1/s for 2 s (warm-up),
# 10/s and 20/s for 16 s each. Both sides run a warm engine: one request pays the profile's one-off cold-start
# warm-up before inference-perf starts, and simulate runs with --start warm. inference-perf's TTFT includes its own
# client time (Python, ~3 ms a request here); the server's own TTFT for the same requests, from its /metrics scraped
# during the run, measures it, so that TTFT is compared less it. Bounded: inference-perf runs under `timeout 300`,
# and the server, the client and the scraper are stopped on any exit.
#
# Offline: inference-perf counts tokens with a Hugging Face tokenizer; `servesim tokenizer` writes the table the
# server counts with (cl100k) as one, so inference-perf's prompts are exactly the configured lengths by the
# server's count (checked: usage.prompt_tokens) and each streamed filler word is one token by its count.
#
# inference-perf's venv (0.8 GB, ~2.5 min to install) is cached beside the other peers' ($SERVESIM_PEER_CACHE,
# default ~/.cache/servesim-peer): the dependencies pinned in tests/peers/inference-perf/requirements.txt, then
# inference-perf with --no-deps --ignore-requires-python (its wheel says Python >= 3.12; CI has 3.11, on which it
# runs). Env: INFERENCE_PERF_VENV overrides where; INFERENCE_PERF_CONFIG another config; INFERENCE_PERF_TOL the
# tolerance (default 0.05); INFERENCE_PERF_PROFILE the served and simulated profile (default a6000-qwen2.5-7b).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
[ $# -ge 1 ] || { echo "usage: $0 SERVESIM_BIN [OUT_DIR]" >&2; exit 2; }
BIN="$1"; OUT="${2:-$ROOT/target/peers/inference-perf}"
[ -x "$BIN" ] || { echo "not an executable: $BIN" >&2; exit 2; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
CACHE="${SERVESIM_PEER_CACHE:-$HOME/.cache/servesim-peer}"
VERSION=0.7.0
VENV="${INFERENCE_PERF_VENV:-$CACHE/inference-perf-venv}"
CONFIG="${INFERENCE_PERF_CONFIG:-$ROOT/tests/peers/inference-perf/shared-prefix.yaml}"
TOL="${INFERENCE_PERF_TOL:-0.05}"
PROFILE="${INFERENCE_PERF_PROFILE:-a6000-qwen2.5-7b}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
T0=$(date +%s)
log() { echo "[inference-perf +$(( $(date +%s) - T0 ))s] $*" >&2; }

REQS="$ROOT/tests/peers/inference-perf/requirements.txt"
STAMP="$VENV/.ready-$VERSION-$(sha256sum "$REQS" | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  log "installing inference-perf==$VERSION into $VENV"
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --ignore-requires-python "inference-perf==$VERSION"
  touch "$STAMP"
  log "installed ($(du -sh "$VENV" | cut -f1))"
fi

rm -rf "$OUT/tokenizer" "$OUT/report" "$OUT/sim"
"$BIN" tokenizer --profile "$PROFILE" --out "$OUT/tokenizer" > /dev/null

SERVER_PID=""; CLIENT_PID=""; SCRAPER_PID=""
stop_group() {  # pid: SIGTERM to its process group (started with setsid), SIGKILL after 10 s
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap '[ -z "$SCRAPER_PID" ] || kill "$SCRAPER_PID" 2>/dev/null; stop_group "$CLIENT_PID"; stop_group "$SERVER_PID"' EXIT
trap 'exit 130' INT TERM

setsid "$BIN" serve --host 127.0.0.1 --port 0 --served-model-name local --profile "$PROFILE" > "$OUT/servesim.log" 2>&1 &
SERVER_PID=$!
# A bound on a hang: the server prints its address within a second even on a loaded machine.
for _ in $(seq 1 600); do grep -q 'listening on http://' "$OUT/servesim.log" && break; sleep 0.1; done
FAKE=$(grep -o 'listening on http://[0-9.:]*' "$OUT/servesim.log" | head -1 | sed 's/listening on //')
[ -n "$FAKE" ] || { log "servesim serve did not start:"; cat "$OUT/servesim.log" >&2; exit 2; }
# One request pays the profile's cold-start warm-up, so that both sides run on a warm engine.
curl -fsS -o /dev/null -H 'Content-Type: application/json' "$FAKE/v1/completions" \
  -d '{"model": "local", "prompt": "warm up", "max_tokens": 1}'
# The server's own view, summed over all requests so far: TTFT and E2E on the engine's timeline, and how late
# tokens left the server against it.
server_sums() {
  curl -fsS "$FAKE/metrics" |
    awk '/^(vllm:time_to_first_token_seconds|vllm:e2e_request_latency_seconds|servesim:emission_lag_seconds)_(sum|count)[{ ]/ {
      name = $1; sub(/\{.*/, "", name); printf "%s=%s ", name, $NF }'
}

BEFORE=$(server_sums)
t=$(date +%s)
# The server's sums every 0.2 s while inference-perf runs: stages are at least 2 s apart (load.interval, then the
# first send one second into the stage), so compare.py cuts them into stages and has the server's own TTFT and the
# client's own time per stage.
( while :; do echo "$(date +%s.%N) $(server_sums)"; sleep 0.2; done > "$OUT/server-sums.txt" ) &
SCRAPER_PID=$!
# Offline: the tokenizer is a local directory; HF_HOME under OUT keeps whatever the libraries cache there.
( cd "$OUT" && HF_HOME="$OUT/hf-home" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    exec setsid timeout 300 "$VENV/bin/inference-perf" --config_file "$CONFIG" \
    --server.base_url "$FAKE" --tokenizer.pretrained_model_name_or_path "$OUT/tokenizer" \
    --storage.local_storage.path "$OUT/report" > "$OUT/inference-perf.log" 2>&1 ) &
CLIENT_PID=$!
set +e; wait "$CLIENT_PID"; RC=$?; set -e
CLIENT_PID=""
kill "$SCRAPER_PID" 2>/dev/null || true; wait "$SCRAPER_PID" 2>/dev/null || true; SCRAPER_PID=""
[ "$RC" = 0 ] || { log "inference-perf failed (exit $RC):"; tail -30 "$OUT/inference-perf.log" >&2; exit 1; }
AFTER=$(server_sums)
log "inference-perf run done in $(( $(date +%s) - t )) s"

"$BIN" simulate --profile "$PROFILE" --start warm --workload "$CONFIG" --report-dir "$OUT/sim" > "$OUT/simulate.txt"
"$BIN" profiles show "$PROFILE" --json > "$OUT/profile.json"
python3 "$ROOT/tests/peers/inference-perf/compare.py" --tol "$TOL" --config "$CONFIG" \
  --profile "$OUT/profile.json" --server-before "$BEFORE" --server-after "$AFTER" \
  --server-sums "$OUT/server-sums.txt" "$OUT/report" "$OUT/sim"
log "done"

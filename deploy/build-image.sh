#!/usr/bin/env bash
# Build the servesim container image's context and, where podman (or docker) is present, the image.
#   bash deploy/build-image.sh [TAG]       (default tag localhost/servesim:dev)
# The binary is static (musl), so the image needs nothing but it: FROM scratch.
# Writes target/image/context/rootfs/ (the root filesystem COPY'd into the image).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-localhost/servesim:dev}"
TARGET=x86_64-unknown-linux-musl
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
# Stripped: the image carries no debugger.
CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_PROFILE_RELEASE_DEBUG=0 \
  cargo build --quiet --release --locked --target "$TARGET" --bin servesim
BIN="${CARGO_TARGET_DIR:-target}/$TARGET/release/servesim"
CTX=target/image/context
rm -rf "$CTX"
mkdir -p "$CTX/rootfs/usr/local/bin" "$CTX/rootfs/bin" "$CTX/rootfs/tmp"
cp "$BIN" "$CTX/rootfs/usr/local/bin/servesim"
ln -s servesim "$CTX/rootfs/usr/local/bin/vllm"
ln -s /usr/local/bin/servesim "$CTX/rootfs/bin/sh"
chmod 1777 "$CTX/rootfs/tmp"
echo "binary: $(stat -c %s "$BIN") bytes, $(file -b "$BIN" 2>/dev/null || echo 'file(1) missing')"
if command -v podman >/dev/null; then
  podman ${PODMAN_FLAGS:-} build --format docker -f deploy/Containerfile -t "$TAG" "$CTX"
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  docker build -f deploy/Containerfile -t "$TAG" "$CTX"
else
  echo "no podman or docker: context ready in $CTX"
fi

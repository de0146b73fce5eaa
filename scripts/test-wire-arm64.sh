#!/usr/bin/env bash
# The Lambdas run on arm64, where the wire splitter classifies bytes with NEON instead of AVX2.
# This builds the splitter's own tests (src/codec/wire/structural.rs needs nothing outside std) for
# aarch64 and runs them under QEMU user emulation, so the NEON code is tested on every CI run.
# Installs the Rust aarch64 target (rustup), QEMU and the aarch64 linker (Debian) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=aarch64-unknown-linux-gnu
# shellcheck source=scripts/lib/install.sh
. scripts/lib/install.sh
ensure_rust_target "$target" test-wire-arm64
packages=(qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
ensure_apt test-wire-arm64 qemu-aarch64 "${packages[@]}"
ensure_apt test-wire-arm64 aarch64-linux-gnu-gcc "${packages[@]}"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
rustc --edition 2021 --test -O --target "$target" -C linker=aarch64-linux-gnu-gcc \
  src/codec/wire/structural.rs -o "$out/structural"
qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/structural"

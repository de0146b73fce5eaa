#!/usr/bin/env bash
# Builds exactly what `scripts/deploy.sh` ships: `sam build` in infra/, which runs
# `cargo lambda build --release --arm64 --bin <binary>` for each function (BuildMethod
# rust-cargolambda) with Cargo.toml's release profile and copies each `bootstrap` into
# infra/.aws-sam/build/<Function>/. Then checks each one (an arm64 ELF without symbols or debug
# info), prints its size and zipped size (what every new Lambda environment downloads and
# unpacks), and fails when one is over PACKAGE_MAX_MIB (24).
# First run: installs the SAM CLI, cargo-lambda and zig into .venv-sam, and the Rust
# aarch64-unknown-linux-gnu target. No AWS account or credentials are needed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/install.sh
. scripts/lib/install.sh
ensure_venv .venv-sam scripts/requirements-sam.txt "the SAM CLI and cargo-lambda"
target=aarch64-unknown-linux-gnu
ensure_rust_target "$target" package
export PATH="$PWD/.venv-sam/bin:$PATH" SAM_CLI_TELEMETRY=0

# `sam build` copies each bootstrap from <source>/target/lambda/<binary>/, while cargo-lambda
# writes it under cargo's target directory: when that is elsewhere (CARGO_TARGET_DIR), link it.
cargo_target="$(cargo metadata --locked --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
if [ "$cargo_target" != "$PWD/target" ]; then
  mkdir -p target "$cargo_target/lambda"
  if [ -d target/lambda ] && [ ! -L target/lambda ]; then rm -rf target/lambda; fi
  ln -sfn "$cargo_target/lambda" target/lambda
fi

echo "package: sam build (cargo lambda build --release --arm64, one binary per function)" >&2
started=$(date +%s)
(cd infra && sam build)
echo "package: built in $(( $(date +%s) - started )) s" >&2

python3 scripts/lib/check_bootstraps.py infra/.aws-sam/build "${PACKAGE_MAX_MIB:-24}"

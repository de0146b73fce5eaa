#!/usr/bin/env bash
# The whole test suite: installs and starts the AWS emulator (moto, in .venv, with cargo-lambda
# for the Lambda runtime tests) if it is not running, installs the independent readers (DuckDB
# and pyarrow, in .venv-readers) and a real browser (Debian's chromium, Playwright in
# .venv-browser), runs every test, and stops the emulator again if this script
# started it; then runs the wire splitter's tests on arm64 under QEMU (scripts/test-wire-arm64.sh)
# and validates infra/ offline (cfn-lint, checkov, invariants).
# Extra arguments go to `cargo test` and skip the last two (e.g. scripts/test.sh --test integration cli::).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=0
if ! scripts/emulator.sh env >/dev/null 2>&1; then
  started=1
fi
eval "$(scripts/emulator.sh start)"
if [ "$started" = 1 ]; then
  trap 'scripts/emulator.sh stop' EXIT
fi

eval "$(scripts/readers.sh)"
eval "$(scripts/browser.sh)"

cargo test --locked "$@"
if [ "$#" = 0 ]; then
  scripts/test-wire-arm64.sh
  scripts/infra-check.sh
fi

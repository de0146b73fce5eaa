#!/usr/bin/env bash
# Builds both Lambdas for arm64 (SAM runs cargo-lambda) and deploys the stack in infra/.
# Needs AWS credentials, `sam` (pip install aws-sam-cli) and cargo-lambda (pip install
# cargo-lambda, or scripts/emulator.sh start, which puts it in .venv).
# Extra arguments go to `sam deploy`; the first deploy wants --guided.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.venv/bin:$PATH"
for tool in sam cargo-lambda; do
  command -v "$tool" >/dev/null || { echo "deploy: $tool is not installed (pip install ${tool/sam/aws-sam-cli})" >&2; exit 1; }
done
cd infra
sam build --beta-features
sam deploy "$@"

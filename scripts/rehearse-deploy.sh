#!/usr/bin/env bash
# The deploy rehearsal: infra/template.yaml translated by the pinned aws-sam-translator (what
# `sam deploy` submits), cfn-lint on the result, then created on LocalStack through
# CloudFormation as a new user's deploys would go: scripts/deploy.sh's preflight, a first
# deploy, an update of retention, a second stack with the other options (KMS, console,
# replication, IAM auth, COMPLIANCE), the preflight against a bucket, role and function that
# exist, the stack deleted and created again on its kept buckets, and a failed first create
# retried. Each is checked through LocalStack's APIs. LocalStack cannot create Lambda
# functions without Docker: scripts/lib/rehearse.py says what stands in for them, and
# infra/README.md what only a real account proves.
# Installs LocalStack into .venv-localstack (Python >= 3.13) and the SAM CLI into .venv-sam.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/install.sh
. scripts/lib/install.sh
ensure_venv .venv-sam scripts/requirements-sam.txt "the SAM CLI and cargo-lambda"

started=0
if ! scripts/localstack.sh env >/dev/null 2>&1; then
  started=1
fi
eval "$(scripts/localstack.sh start)"
if [ "$started" = 1 ]; then
  trap 'scripts/localstack.sh stop' EXIT
fi
rm -rf .rehearsal
.venv-localstack/bin/python scripts/lib/rehearse.py "$@"

#!/usr/bin/env bash
# Validation of infra/ without an AWS account: cfn-lint (with the SAM transform), `sam validate
# --lint`, checkov, our own invariant tests (tests/infra: the template, samconfig.toml and
# scripts/deploy.sh), then the deploy rehearsal on LocalStack (scripts/rehearse-deploy.sh: the
# stack created, updated, created twice, deleted and created again).
# Installs its tools into .venv-infra, .venv-sam and .venv-localstack on first run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/install.sh
. scripts/lib/install.sh
ensure_venv .venv-infra scripts/requirements-infra.txt "cfn-lint and checkov"
ensure_venv .venv-sam scripts/requirements-sam.txt "the SAM CLI and cargo-lambda"
export SAM_CLI_TELEMETRY=0
echo "infra-check: cfn-lint" >&2
.venv-infra/bin/cfn-lint infra/template.yaml
echo "infra-check: sam validate --lint" >&2
(cd infra && ../.venv-sam/bin/sam validate --lint)
echo "infra-check: checkov" >&2
.venv-infra/bin/checkov --quiet --compact --skip-download --framework cloudformation -f infra/template.yaml
echo "infra-check: invariants of the template, samconfig.toml and scripts/deploy.sh" >&2
.venv-infra/bin/python -m unittest discover -s tests/infra -v
echo "infra-check: the deploy rehearsal on LocalStack" >&2
scripts/rehearse-deploy.sh

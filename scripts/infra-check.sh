#!/usr/bin/env bash
# Offline validation of infra/template.yaml: cfn-lint (with the SAM transform), checkov, and our
# own invariant tests (tests/infra). Installs its tools into .venv-infra on first run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.venv-infra
if ! [ -x "$venv/bin/checkov" ] || ! cmp -s scripts/requirements-infra.txt "$venv/.requirements"; then
  echo "infra-check: installing cfn-lint and checkov into $venv (first run only)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-infra.txt >&2
  cp scripts/requirements-infra.txt "$venv/.requirements"
fi
echo "infra-check: cfn-lint" >&2
"$venv/bin/cfn-lint" infra/template.yaml
echo "infra-check: checkov" >&2
"$venv/bin/checkov" --quiet --compact --skip-download --framework cloudformation -f infra/template.yaml
echo "infra-check: template invariants" >&2
"$venv/bin/python" -m unittest discover -s tests/infra -v

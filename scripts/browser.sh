#!/usr/bin/env bash
# A real browser for the tests: Debian's chromium (apt-get, as root or through sudo) and
# Playwright from PyPI (pinned in scripts/requirements-browser.txt) in .venv-browser, each
# installed on first use. Prints the exports tests/integration/browser_download.rs needs:
#   eval "$(scripts/browser.sh)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"
ensure_apt browser chromium chromium
ensure_venv "$root/.venv-browser" "$root/scripts/requirements-browser.txt" "Playwright"
echo "export DDB_BACKUP_BROWSER_PYTHON=$root/.venv-browser/bin/python"
echo "export DDB_BACKUP_CHROMIUM=$(command -v chromium)"

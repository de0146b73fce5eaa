#!/usr/bin/env bash
# Independent readers for the tests: DuckDB and pyarrow (PyPI, pinned in
# scripts/requirements-readers.txt) in .venv-readers, installed on first use. Prints the export
# that tests/integration/independent_readers.rs needs:
#   eval "$(scripts/readers.sh)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-readers"
# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"
ensure_venv "$venv" "$root/scripts/requirements-readers.txt" "duckdb and pyarrow"
echo "export DDB_BACKUP_READERS_PYTHON=$venv/bin/python"

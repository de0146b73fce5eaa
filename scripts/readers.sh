#!/usr/bin/env bash
# Independent readers for the tests: DuckDB and pyarrow (PyPI, pinned in
# scripts/requirements-readers.txt) in .venv-readers, installed on first use. Prints the export
# that tests/independent_readers.rs needs:
#   eval "$(scripts/readers.sh)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-readers"
stamp="$venv/.requirements"
if ! [ -x "$venv/bin/python" ] || ! cmp -s "$root/scripts/requirements-readers.txt" "$stamp"; then
  echo "readers: installing duckdb and pyarrow into $venv (first run only)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/scripts/requirements-readers.txt" >&2
  cp "$root/scripts/requirements-readers.txt" "$stamp"
fi
echo "export DDB_BACKUP_READERS_PYTHON=$venv/bin/python"

# Sourced by the scripts: a Python venv built from a pinned requirements file, rebuilt when the
# file changes. Installs from PyPI only; needs python3 with venv.
#   ensure_venv <venv dir> <requirements file> <what, for the log line>
ensure_venv() {
  local venv="$1" requirements="$2" what="$3"
  local stamp="$venv/.requirements"
  if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp"; then
    return
  fi
  echo "installing $what into $venv (first run only)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$stamp"
}

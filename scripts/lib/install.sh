# Sourced by the scripts: what they install on first run, each only when missing or out of date.
#   ensure_venv <venv dir> <requirements file> <what> [python]
#                                                      a Python venv from pinned requirements
#                                                      (PyPI), rebuilt when the file changes
#   find_python <major.minor>                          prints a Python at least that new: on
#                                                      PATH, or the newest that pyenv installed
#   ensure_rust_target <triple> <who>                  a Rust target, by rustup target add
#   ensure_apt <who> <command> <package...>            Debian packages, when <command> is
#                                                      missing (apt-get, as root or by sudo)
ensure_venv() {
  local venv="$1" requirements="$2" what="$3" python="${4:-python3}"
  local stamp="$venv/.requirements"
  if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp"; then
    return
  fi
  echo "installing $what into $venv (first run only)" >&2
  rm -rf "$venv"
  # Each step checked here too: in a command substitution `set -e` does not hold, and a venv
  # half installed must not be stamped as done.
  "$python" -m venv "$venv" || return 1
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2 || {
    rm -rf "$venv"
    return 1
  }
  cp "$requirements" "$stamp"
}

find_python() {
  local want="$1" candidate
  # The newest first: pyenv's shims answer `command -v` even for versions they will not run.
  for candidate in python3 python3.14 python3.13 \
    $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/bin/python3 2>/dev/null | sort -rV); do
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$want'.split('.'))))" 2>/dev/null; then
      command -v "$candidate"
      return
    fi
  done
  return 1
}

ensure_rust_target() {
  if [ ! -d "$(rustc --print target-libdir --target "$1" 2>/dev/null)" ]; then
    echo "$2: installing the Rust $1 target (rustup target add)" >&2
    rustup target add "$1" >&2
  fi
}

ensure_apt() {
  local who="$1" command="$2"
  shift 2
  if command -v "$command" >/dev/null; then
    return
  fi
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    sudo="sudo"
  fi
  echo "$who: installing $* (apt-get)" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! $sudo apt-get install -y -q "$@" >/dev/null; then
    $sudo apt-get update -q >/dev/null
    $sudo apt-get install -y -q "$@" >/dev/null
  fi
}

#!/usr/bin/env bash
# LocalStack, in host mode (no Docker, no auth token), for the deploy rehearsal: it creates the
# stack's non-Lambda resources through CloudFormation. Started through scripts/lib/localstack_run.py,
# which adds two of CloudFormation's documented behaviours it lacks (that file says which).
#   scripts/localstack.sh start   install into .venv-localstack if needed (Python >= 3.13, found
#                                 on PATH or under pyenv), start on a free loopback port, print
#                                 `export ...` lines for AWS_ENDPOINT_URL and test credentials
#   scripts/localstack.sh env     print the same exports for a LocalStack already running
#   scripts/localstack.sh stop    stop it
# Use: eval "$(scripts/localstack.sh start)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-localstack"
state="$root/.localstack"
mkdir -p "$state"

log() { echo "localstack: $*" >&2; }

# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"
install() {
  local python
  python="$(find_python 3.13)" || {
    log "needs Python 3.13 or newer, on PATH or installed by pyenv (e.g. pyenv install 3.13)"
    exit 1
  }
  ensure_venv "$venv" "$root/scripts/requirements-localstack.txt" "LocalStack (with $python)" "$python"
}

running() {
  [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null
}

print_env() {
  local port
  port="$(cat "$state/port")"
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
  echo "export AWS_ACCESS_KEY_ID=test"
  echo "export AWS_SECRET_ACCESS_KEY=test"
  echo "export AWS_REGION=\${AWS_REGION:-us-east-1}"
  echo "export AWS_DEFAULT_REGION=\${AWS_REGION:-us-east-1}"
}

start() {
  install
  if running; then
    print_env
    return
  fi
  local port
  port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  rm -rf "$state/data"
  mkdir -p "$state/data" "$state/tmp"
  # Everything on loopback and in .localstack/: no DNS server, no telemetry, no update checks,
  # nothing fetched at start (the machine has no internet; LocalStack falls back to a
  # self-signed certificate it makes itself).
  GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" DNS_ADDRESS=0 \
    DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 SKIP_INFRA_DOWNLOADS=1 \
    FILESYSTEM_ROOT="$state/data" TMPDIR="$state/tmp" \
    nohup "$venv/bin/python" "$root/scripts/lib/localstack_run.py" >"$state/localstack.log" 2>&1 &
  echo $! >"$state/pid"
  echo "$port" >"$state/port"
  for _ in $(seq 1 300); do
    if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/_localstack/health', timeout=1)" 2>/dev/null; then
      log "listening on 127.0.0.1:$port (log: $state/localstack.log)"
      print_env
      return
    fi
    if ! running; then
      log "exited; its log:"; tail -40 "$state/localstack.log" >&2; exit 1
    fi
    sleep 0.2
  done
  log "did not answer within 60 s; its log:"; tail -40 "$state/localstack.log" >&2; exit 1
}

stop() {
  if running; then
    kill "$(cat "$state/pid")" 2>/dev/null || true
    log "stopped"
  fi
  rm -f "$state/pid" "$state/port"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) running || { log "not running: scripts/localstack.sh start"; exit 1; }; print_env ;;
  *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac

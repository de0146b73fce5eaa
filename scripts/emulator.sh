#!/usr/bin/env bash
# Local AWS emulator (moto server) for the tests and the demo.
#   scripts/emulator.sh start   install into .venv if needed, start on a free loopback port,
#                               print `export ...` lines for AWS_ENDPOINT_URL and test credentials
#   scripts/emulator.sh env     print the same exports for an emulator already running
#   scripts/emulator.sh stop    stop it
# Use: eval "$(scripts/emulator.sh start)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
state="$root/.emulator"
mkdir -p "$state"

log() { echo "emulator: $*" >&2; }

# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"
install() {
  ensure_venv "$venv" "$root/scripts/requirements-emulator.txt" "moto and cargo-lambda"
}

running() {
  [ -f "$state/moto.pid" ] && kill -0 "$(cat "$state/moto.pid")" 2>/dev/null
}

print_env() {
  local port
  port="$(cat "$state/moto.port")"
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
  echo "export AWS_ACCESS_KEY_ID=testing"
  echo "export AWS_SECRET_ACCESS_KEY=testing"
  echo "export AWS_REGION=\${AWS_REGION:-us-east-1}"
  echo "export DDB_BACKUP_TEST_ENDPOINT=http://127.0.0.1:$port"
}

start() {
  install
  if running; then
    print_env
    return
  fi
  local port
  port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  echo "$port" >"$state/moto.port"
  for _ in $(seq 1 100); do
    if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/data.json', timeout=1)" 2>/dev/null; then
      # /moto-api/data.json (where the tests read sent emails) reads every S3 object's restore
      # status, which moto advances to RESTORED on first read and then looks up the object's
      # bucket: multipart part objects have none, and the whole dump fails with a 500. Objects
      # are never restored from Glacier here, so keep that status from advancing.
      "$venv/bin/python" -c "import json,urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$port/moto-api/state-manager/set-transition', data=json.dumps({'model_name': 's3::keyrestore', 'transition': {'progression': 'manual', 'times': 1000000000}}).encode(), method='POST'), timeout=5)"
      log "moto listening on 127.0.0.1:$port (log: $state/moto.log)"
      print_env
      return
    fi
    if ! running; then
      log "moto exited; its log:"; cat "$state/moto.log" >&2; exit 1
    fi
    sleep 0.2
  done
  log "moto did not answer within 20 s; its log:"; cat "$state/moto.log" >&2; exit 1
}

stop() {
  if running; then
    kill "$(cat "$state/moto.pid")" 2>/dev/null || true
    log "stopped"
  fi
  rm -f "$state/moto.pid" "$state/moto.port"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) running || { log "not running: scripts/emulator.sh start"; exit 1; }; print_env ;;
  *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
esac

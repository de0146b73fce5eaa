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
service=emulator pid_file="$state/moto.pid" port_file="$state/moto.port" log_file="$state/moto.log"
mkdir -p "$state"

# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"
# shellcheck source=scripts/lib/service.sh
. "$root/scripts/lib/service.sh"

print_env() {
  local port
  port="$(cat "$port_file")"
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
  echo "export AWS_ACCESS_KEY_ID=testing"
  echo "export AWS_SECRET_ACCESS_KEY=testing"
  echo "export AWS_REGION=\${AWS_REGION:-us-east-1}"
  echo "export DDB_BACKUP_TEST_ENDPOINT=http://127.0.0.1:$port"
}

start() {
  ensure_venv "$venv" "$root/scripts/requirements-emulator.txt" "moto and cargo-lambda"
  if service_running; then
    print_env
    return
  fi
  local port
  port="$(service_free_port)"
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log_file" 2>&1 &
  echo $! >"$pid_file"
  echo "$port" >"$port_file"
  service_wait "http://127.0.0.1:$port/moto-api/data.json" 20
  # /moto-api/data.json (where the tests read sent emails) reads every S3 object's restore
  # status, which moto advances to RESTORED on first read and then looks up the object's
  # bucket: multipart part objects have none, and the whole dump fails with a 500. Objects
  # are never restored from Glacier here, so keep that status from advancing.
  "$venv/bin/python" -c "import json,urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$port/moto-api/state-manager/set-transition', data=json.dumps({'model_name': 's3::keyrestore', 'transition': {'progression': 'manual', 'times': 1000000000}}).encode(), method='POST'), timeout=5)"
  service_log "moto listening on 127.0.0.1:$port (log: $log_file)"
  print_env
}

service_main "$@"

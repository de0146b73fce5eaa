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
service=localstack pid_file="$state/pid" port_file="$state/port" log_file="$state/localstack.log"
mkdir -p "$state"

# shellcheck source=scripts/lib/install.sh
. "$root/scripts/lib/install.sh"
# shellcheck source=scripts/lib/service.sh
. "$root/scripts/lib/service.sh"

print_env() {
  local port
  port="$(cat "$port_file")"
  echo "export AWS_ENDPOINT_URL=http://127.0.0.1:$port"
  echo "export AWS_ACCESS_KEY_ID=test"
  echo "export AWS_SECRET_ACCESS_KEY=test"
  echo "export AWS_REGION=\${AWS_REGION:-us-east-1}"
  echo "export AWS_DEFAULT_REGION=\${AWS_REGION:-us-east-1}"
}

start() {
  local python port
  python="$(find_python 3.13)" || {
    service_log "needs Python 3.13 or newer, on PATH or installed by pyenv (e.g. pyenv install 3.13)"
    exit 1
  }
  ensure_venv "$venv" "$root/scripts/requirements-localstack.txt" "LocalStack (with $python)" "$python"
  if service_running; then
    print_env
    return
  fi
  port="$(service_free_port)"
  rm -rf "$state/data"
  mkdir -p "$state/data" "$state/tmp"
  # Everything on loopback and in .localstack/: no DNS server, no telemetry, no update checks,
  # nothing fetched at start (the machine has no internet; LocalStack falls back to a
  # self-signed certificate it makes itself).
  GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" DNS_ADDRESS=0 \
    DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
    FILESYSTEM_ROOT="$state/data" TMPDIR="$state/tmp" \
    nohup "$venv/bin/python" "$root/scripts/lib/localstack_run.py" >"$log_file" 2>&1 &
  echo $! >"$pid_file"
  echo "$port" >"$port_file"
  service_wait "http://127.0.0.1:$port/_localstack/health" 60
  service_log "listening on 127.0.0.1:$port (log: $log_file)"
  print_env
}

service_main "$@"

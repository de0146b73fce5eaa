# Sourced by the scripts that run a local service in the background (scripts/emulator.sh,
# scripts/localstack.sh). The script sets `service` (its name in messages), `pid_file`,
# `port_file`, `log_file` and `venv`, and defines `start` and `print_env`; then
#   service_running               whether the recorded process is alive
#   service_free_port             prints a free loopback port
#   service_wait URL SECONDS      until URL answers: 0; the process gone or time up: its log, exit 1
#   service_stop                  stops it and forgets its port
#   service_main start|env|stop   what the script's own arguments ask for
service_log() { echo "$service: $*" >&2; }

service_running() {
  [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

service_free_port() {
  "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

service_wait() {
  local url="$1" seconds="$2"
  for _ in $(seq 1 $((seconds * 5))); do
    if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('$url', timeout=1)" 2>/dev/null; then
      return 0
    fi
    if ! service_running; then
      service_log "exited; its log:"; tail -40 "$log_file" >&2; exit 1
    fi
    sleep 0.2
  done
  service_log "did not answer within $seconds s; its log:"; tail -40 "$log_file" >&2; exit 1
}

service_stop() {
  if service_running; then
    kill "$(cat "$pid_file")" 2>/dev/null || true
    service_log "stopped"
  fi
  rm -f "$pid_file" "$port_file"
}

service_main() {
  case "${1:-}" in
    start) start ;;
    stop) service_stop ;;
    env) service_running || { service_log "not running: $0 start"; exit 1; }; print_env ;;
    *) echo "usage: $0 start|env|stop" >&2; exit 2 ;;
  esac
}

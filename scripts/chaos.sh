#!/usr/bin/env bash
# Fault injection for the binaries as shipped: the release CLI and the worker binary (under the
# local Lambda runtime, cargo lambda) back up one table, once straight to the emulator and once
# through a proxy that injects throttling, 5xx, connection resets in the middle of response and
# upload bodies, and latency into DynamoDB and S3 traffic. Every backup is checked against the
# table; the script prints items lost and duplicated, uploads left open, manifests of failed
# attempts (all must be 0) and the slowdown against the clean run, and exits 1 if a count is not 0.
#   scripts/chaos.sh [--items N] [--rates throttle=0.05,error=0.05,reset=0.08,upload_reset=0.25,lost_reply=0.3,latency=0.1]
# Starts (and stops) the emulator if it is not running. CHAOS_REPORT=file also writes JSON.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ddb-backup/target}"

items=4000
rates="throttle=0.05,error=0.05,reset=0.08,upload_reset=0.25,lost_reply=0.3,latency=0.1"
while [ $# -gt 0 ]; do
  case "$1" in
    --items) items="$2"; shift 2 ;;
    --rates) rates="$2"; shift 2 ;;
    *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
  esac
done

echo "chaos: building the release CLI and worker" >&2
cargo build --locked --release --quiet --bin ddb-backup --bin backup-worker

started=0
if ! scripts/emulator.sh env >/dev/null 2>&1; then
  started=1
fi
eval "$(scripts/emulator.sh start)"
state="$(mktemp -d)"
cleanup() {
  [ -f "$state/proxy.pid" ] && kill "$(cat "$state/proxy.pid")" 2>/dev/null || true
  if [ "$started" = 1 ]; then scripts/emulator.sh stop; fi
  rm -rf "$state"
}
trap cleanup EXIT

"$root/.venv/bin/python" scripts/lib/fault_proxy.py --upstream "$AWS_ENDPOINT_URL" \
  --port-file "$state/proxy.port" --stats-file "$state/faults.json" --rates "$rates" &
echo $! >"$state/proxy.pid"
for _ in $(seq 1 100); do [ -s "$state/proxy.port" ] && break; sleep 0.05; done
proxy="http://127.0.0.1:$(cat "$state/proxy.port")"

status=0
"$root/.venv/bin/python" scripts/lib/chaos.py --endpoint "$AWS_ENDPOINT_URL" --proxy "$proxy" \
  --cli "$CARGO_TARGET_DIR/release/ddb-backup" --worker "$CARGO_TARGET_DIR/release/backup-worker" \
  --cargo-lambda "$root/.venv/bin/cargo-lambda" --items "$items" ${CHAOS_REPORT:+--report "$CHAOS_REPORT"} || status=$?
kill "$(cat "$state/proxy.pid")" && sleep 0.2
echo "faults injected (rates $rates): $(cat "$state/faults.json")"
"$root/.venv/bin/python" - "$state/faults.json" "$rates" <<'PY' || status=1
import json, sys
injected = json.load(open(sys.argv[1]))
wanted = [part.split("=")[0] for part in sys.argv[2].split(",") if float(part.split("=")[1]) > 0]
missing = [kind for kind in wanted if injected.get(kind, 0) == 0]
if missing:
    sys.exit(f"chaos: no {', '.join(missing)} fault was injected: raise --items or the rates")
PY
exit "$status"

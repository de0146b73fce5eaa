#!/usr/bin/env bash
# End-to-end benchmark: the release CLI backs up a dynalite table of N studentData items
# (default 50000) to a local directory, and reports items/s and peak RSS. dynalite (npm) serves
# Scan several times faster than moto, so the emulator hides less of our own speed.
#   scripts/bench-e2e.sh [ITEMS] [SEGMENTS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
items="${1:-50000}"
segments="${2:-4}"
bench=".bench"
mkdir -p "$bench"
if [ ! -x "$bench/node_modules/.bin/dynalite" ]; then
  echo "installing dynalite into $bench (first run only)" >&2
  npm install --prefix "$bench" --no-audit --no-fund --silent dynalite@4.0.0 >&2
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
node "$bench/node_modules/.bin/dynalite" --port "$port" >"$bench/dynalite.log" 2>&1 &
dyn_pid=$!
out="$(mktemp -d)"
trap 'kill $dyn_pid 2>/dev/null || true; rm -rf "$out"' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
cargo build --quiet --locked --release --bin ddb-backup
bin="${CARGO_TARGET_DIR:-target}/release/ddb-backup"
for _ in $(seq 1 50); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
  sleep 0.2
done

echo "seeding $items items into dynalite..." >&2
"$bin" seed --table studentData --items "$items" >&2

for compression in zstd gzip; do
  python3 - "$bin" "$out/$compression" "$compression" "$segments" "$items" <<'PY'
import json, resource, subprocess, sys, time
binary, out, compression, segments, items = sys.argv[1:]
t0 = time.monotonic()
p = subprocess.run([binary, "backup", "--table", "studentData", "--out-dir", out,
                    "--compression", compression, "--segments", segments, "--json"],
                   capture_output=True, text=True)
wall = time.monotonic() - t0
if p.returncode != 0:
    sys.exit(p.stderr)
m = json.loads(p.stdout)
assert m["item_count"] == int(items), (m["item_count"], items)
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"e2e dynalite {compression}: {m['item_count']} items, {segments} segments, {wall:.1f} s, "
      f"{m['item_count'] / wall:,.0f} items/s, {m['uncompressed_bytes'] / 1e6 / wall:.1f} MB/s, "
      f"{m['bytes'] / 1e6:.1f} MB stored, peak RSS {rss:.1f} MiB")
PY
done

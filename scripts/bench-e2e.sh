#!/usr/bin/env bash
# End-to-end benchmark: the release CLI backs up a dynalite table of N studentData items
# (default 50000) to a local directory, then restores that backup into a new table, and reports
# items/s and peak RSS of each. dynalite (npm) serves
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
import json, os, sys, time
binary, out, compression, segments, items = sys.argv[1:]

def run(args):
    """Runs the CLI; returns its JSON output, wall seconds and its own peak RSS (MiB)."""
    read_fd, write_fd = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.dup2(write_fd, 1)
        os.close(read_fd)
        os.execv(binary, [binary] + args)
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        stdout = f.read()
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"{args[0]} failed with status {status}")
    return json.loads(stdout), wall, usage.ru_maxrss / 1024

m, wall, rss = run(["backup", "--table", "studentData", "--out-dir", out, "--compression", compression,
                    "--segments", segments, "--json"])
assert m["item_count"] == int(items), (m["item_count"], items)
print(f"e2e dynalite {compression}: {m['item_count']} items, {segments} segments, {wall:.1f} s, "
      f"{m['item_count'] / wall:,.0f} items/s, {m['uncompressed_bytes'] / 1e6 / wall:.1f} MB/s, "
      f"{m['bytes'] / 1e6:.1f} MB stored, peak RSS {rss:.1f} MiB")
if compression == "zstd":
    r, wall, rss = run(["restore", m["location"], "--table", "studentDataRestored", "--create-table", "--json"])
    assert r["items"] == int(items), (r["items"], items)
    print(f"e2e dynalite restore: {r['items']} items from the zstd backup, {wall:.1f} s, "
          f"{r['items'] / wall:,.0f} items/s, {r['retries']} resubmissions, peak RSS {rss:.1f} MiB")
PY
done

#!/usr/bin/env bash
# Local demo, no AWS account needed: starts the emulator, seeds a `studentData` table, creates the
# tutorial's backup bucket, runs a backup, prints its manifest and verifies it.
#   scripts/demo.sh [ITEMS]      (default 2000; the emulator scans a few hundred items/s)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
items="${1:-2000}"

eval "$(scripts/emulator.sh start)"
cargo build --quiet --locked --bin ddb-backup
bin="${CARGO_TARGET_DIR:-target}/debug/ddb-backup"

"$bin" seed --table studentData --items "$items"
.venv/bin/python - <<'PY'
import boto3, os
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
try:
    s3.create_bucket(Bucket="student-backup-20250706")
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
PY
echo "Backing up studentData to s3://student-backup-20250706/backups/ ..." >&2
manifest="$("$bin" backup --table studentData --bucket student-backup-20250706 --compression zstd --json)"
echo "$manifest"
location="$(printf '%s' "$manifest" | python3 -c 'import json,sys; print(json.load(sys.stdin)["location"])')"
echo "Verifying $location ..." >&2
"$bin" verify "$location" >&2
cat >&2 <<MSG

Done. The emulator is still running at $AWS_ENDPOINT_URL; to use the CLI against it:
  eval "\$(scripts/emulator.sh env)"; $bin backup --table studentData --out-dir ./backup-out
Stop it with: scripts/emulator.sh stop
MSG

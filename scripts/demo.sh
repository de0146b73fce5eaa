#!/usr/bin/env bash
# Local demo, no AWS account needed: starts the emulator, seeds a `studentData` table, creates the
# tutorial's backup bucket, runs a backup, prints its manifest and verifies it; then starts the
# whole system on this machine (`ddb-backup serve`: the API, the web console and a worker on the
# job queue), backs up again through the API and prints the console's URL.
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

# The event-driven system: a job queue with its dead-letter queue, a verified sender, and serve.
queue="$(.venv/bin/python - <<'PY'
import boto3, json, os
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
sqs = boto3.client("sqs", **kw)
dlq = sqs.create_queue(QueueName="ddb-backup-dlq")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
queue = sqs.create_queue(QueueName="ddb-backup-jobs", Attributes={
    "VisibilityTimeout": "960",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})})["QueueUrl"]
boto3.client("ses", **kw).verify_email_identity(EmailAddress="backup@example.com")
print(queue)
PY
)"
dlq="${queue%/*}/ddb-backup-dlq"
[ -f .emulator/serve.pid ] && kill "$(cat .emulator/serve.pid)" 2>/dev/null || true
port="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="demo-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(8))')"
DDB_BACKUP_TABLE=studentData DDB_BACKUP_BUCKET=student-backup-20250706 \
  DDB_BACKUP_QUEUE_URL="$queue" DDB_BACKUP_DLQ_URL="$dlq" \
  DDB_BACKUP_SENDER=backup@example.com DDB_BACKUP_NOTIFY=ops@example.com \
  nohup "$bin" serve --port "$port" --api-key "$key" >.emulator/serve.log 2>&1 &
echo $! >.emulator/serve.pid
api="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$api/" 2>/dev/null && break
  sleep 0.1
done
echo "Backing up studentData through the API (POST $api/backup) ..." >&2
job="$(curl -fsS -X POST "$api/backup" -H "x-api-key: $key" -d '{"compression": "zstd"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')"
state=queued
for _ in $(seq 1 300); do
  state="$(curl -fsS "$api/backup/$job" -H "x-api-key: $key" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')"
  [ "$state" = complete ] || [ "$state" = failed ] && break
  sleep 1
done
echo "Job $job: $state" >&2
cat >&2 <<MSG

Done. Running on this machine:
  the emulator   $AWS_ENDPOINT_URL
  ddb-backup serve (API, worker; log .emulator/serve.log)   $api   x-api-key: $key
  the web console   $api/?api=$api&table=studentData

To use the CLI against the emulator:
  eval "\$(scripts/emulator.sh env)"; $bin list --table studentData --bucket student-backup-20250706
Stop everything with: kill \$(cat .emulator/serve.pid); scripts/emulator.sh stop
MSG

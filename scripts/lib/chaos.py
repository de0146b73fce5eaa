"""Drives scripts/chaos.sh: the release CLI and the worker binary back up one table, once straight
to the emulator and once through the fault-injecting proxy (scripts/lib/fault_proxy.py), and every
backup is checked against the table: items lost, items duplicated, multipart uploads left open,
manifests written by attempts that failed, and for the worker the summary emails (exactly one).
Prints a report and exits 1 if any count is off.

Everything the checks read goes straight to the emulator with boto3 (never through the proxy).
"""

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import boto3

ITEM_BYTES = 4000
RECEIVES_BEFORE_DLQ = 5


def log(message):
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.ddb = client("dynamodb", endpoint)
        self.s3 = client("s3", endpoint)
        self.sqs = client("sqs", endpoint)
        self.ses = client("ses", endpoint)

    def seed(self, table, count):
        self.ddb.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        ids = [f"item-{i:06d}" for i in range(count)]
        filler = "x" * ITEM_BYTES
        for start in range(0, count, 25):
            requests = [
                {"PutRequest": {"Item": {"id": {"S": i}, "n": {"N": str(n)}, "pad": {"S": filler}}}}
                for n, i in enumerate(ids[start : start + 25], start)
            ]
            pending = {table: requests}
            while pending:
                pending = self.ddb.batch_write_item(RequestItems=pending)["UnprocessedItems"]
        return ids

    def manifests(self, bucket, job_id):
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return [k for k in keys if f"/{job_id}/" in k and k.endswith("/manifest.json")]

    def emails(self, job_id):
        """Summary emails the emulator's SES holds that name `job_id`."""
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=10) as answer:
            data = json.load(answer)
        sent = data.get("ses", {}).get("Message", [])
        return sum(1 for m in sent if job_id in (m.get("subject") or "") + (m.get("body") or ""))

    def open_uploads(self, bucket):
        return len(self.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []))

    def check(self, bucket, job_id, expected):
        """(lost, duplicated, manifests, bad files) of job `job_id`'s backup."""
        manifests = self.manifests(bucket, job_id)
        if len(manifests) != 1:
            return len(expected), 0, len(manifests), 0
        manifest = json.loads(self.s3.get_object(Bucket=bucket, Key=manifests[0])["Body"].read())
        seen, bad = [], 0
        for entry in manifest["files"]:
            body = self.s3.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
            if len(body) != entry["bytes"] or hashlib.sha256(body).hexdigest() != entry["sha256"]:
                bad += 1
            for line in body.splitlines():
                record = json.loads(line)
                seen.append(record.get("Item", record)["id"]["S"])
        lost = len(set(expected) - set(seen))
        duplicated = len(seen) - len(set(seen))
        return lost, duplicated, 1, bad


class LocalWorker:
    """The worker binary under `cargo lambda watch`, invoked with SQS events as the event source
    mapping would: messages reported as batch item failures come back after their visibility
    timeout (here at once), the others are deleted."""

    def __init__(self, cargo_lambda, binary, env, workdir):
        self.cargo_lambda, self.workdir = cargo_lambda, workdir
        self.port = free_port()
        self.log = open(os.path.join(workdir, f"worker-{self.port}.log"), "w")
        self.runtime = subprocess.Popen(
            [cargo_lambda, "lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("chaos: cargo lambda watch did not start")
                time.sleep(0.05)
        function_env = dict(os.environ)
        function_env.update(env)
        function_env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{self.port}/.rt",
                "AWS_LAMBDA_FUNCTION_NAME": "_",
                "AWS_LAMBDA_FUNCTION_VERSION": "1",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
            }
        )
        self.function = subprocess.Popen([binary], env=function_env, stdout=self.log, stderr=self.log)

    def invoke(self, event):
        path = os.path.join(self.workdir, f"event-{uuid.uuid4()}.json")
        with open(path, "w") as f:
            json.dump(event, f)
        out = subprocess.run(
            [self.cargo_lambda, "lambda", "invoke", "-A", "127.0.0.1", "-P", str(self.port), "--data-file", path],
            capture_output=True,
        )
        if out.returncode != 0:
            sys.exit(f"chaos: invoke failed: {out.stderr.decode()}\n(function log: {self.log.name})")
        return json.loads(out.stdout)

    def stop(self):
        for process in (self.function, self.runtime):
            process.kill()
            process.wait()
        self.log.close()


def drain(emulator, worker, queue_url, queue_arn, budget_s=600):
    """Delivers the queue's messages to the worker until it is empty; returns the invocations."""
    invocations, idle, started = 0, 0, time.time()
    while idle < 2:
        if time.time() - started > budget_s:
            sys.exit("chaos: the queue did not drain in time")
        messages = emulator.sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=1,
            VisibilityTimeout=300,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            idle += 1
            continue
        idle = 0
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
        response = worker.invoke({"Records": records})
        invocations += 1
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        for m in messages:
            if m["MessageId"] in failed:
                emulator.sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                emulator.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return invocations


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True, help="the emulator")
    parser.add_argument("--proxy", required=True, help="the fault proxy in front of it")
    parser.add_argument("--cli", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--cargo-lambda", required=True)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--report", help="also write the report here as JSON")
    args = parser.parse_args()

    emulator = Emulator(args.endpoint)
    run = uuid.uuid4().hex[:8]
    table, bucket = f"chaos-{run}", f"chaos-{run}"
    log(f"seeding {args.items} items of {ITEM_BYTES} bytes into {table}")
    expected = emulator.seed(table, args.items)
    emulator.s3.create_bucket(Bucket=bucket)
    dlq_url = emulator.sqs.create_queue(QueueName=f"chaos-dlq-{run}")["QueueUrl"]
    dlq_arn = emulator.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    queue_url = emulator.sqs.create_queue(
        QueueName=f"chaos-jobs-{run}",
        Attributes={
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(RECEIVES_BEFORE_DLQ)}
            )
        },
    )["QueueUrl"]
    queue_arn = emulator.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sender = "backup@example.com"
    emulator.ses.verify_email_identity(EmailAddress=sender)

    base_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        # Backoff as in production (the default attempts), short enough for a test run.
        "DDB_BACKUP_PART_SIZE_MIB": "5",
    }
    results = []

    def cli_backup(name, endpoint):
        job_id = f"{name}-{run}"
        env = dict(os.environ, **base_env, AWS_ENDPOINT_URL=endpoint)
        command = [args.cli, "backup", "--table", table, "--bucket", bucket, "--segments", "2",
                   "--compression", "none", "--job-id", job_id, "--json"]
        started, attempts, failed_manifests = time.time(), 0, 0
        while True:
            attempts += 1
            out = subprocess.run(command, env=env, capture_output=True)
            if out.returncode == 0:
                break
            error = out.stderr.decode().strip().splitlines()[-1:]
            log(f"{name}: attempt {attempts} failed ({error}); running it again, as an operator would")
            failed_manifests += len(emulator.manifests(bucket, job_id))
            if attempts == 5:
                break
        return job_id, time.time() - started, attempts, failed_manifests

    def worker_backup(name, endpoint, workdir):
        job_id = f"{name}-{run}"
        env = dict(
            base_env,
            AWS_ENDPOINT_URL=endpoint,
            DDB_BACKUP_BUCKET=bucket,
            DDB_BACKUP_QUEUE_URL=queue_url,
            DDB_BACKUP_DLQ_URL=dlq_url,
            DDB_BACKUP_SENDER=sender,
            DDB_BACKUP_NOTIFY="ops@example.com",
            DDB_BACKUP_MAX_RECEIVES=str(RECEIVES_BEFORE_DLQ),
            DDB_BACKUP_DEADLINE_MARGIN_SECS="2",
        )
        worker = LocalWorker(args.cargo_lambda, args.worker, env, workdir)
        try:
            body = {"table": table, "job_id": job_id, "workers": 2, "segments": 2, "compression": "none"}
            started = time.time()
            emulator.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
            invocations = drain(emulator, worker, queue_url, queue_arn)
            elapsed = time.time() - started
        finally:
            worker.stop()
        dead = emulator.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        if dead:
            log(f"{name}: {len(dead)} message(s) in the dead-letter queue")
        failed_manifests = 0 if not dead else len(emulator.manifests(bucket, job_id))
        return job_id, elapsed, invocations, failed_manifests

    with tempfile.TemporaryDirectory() as workdir:
        for program, backup in (("cli", cli_backup), ("worker", lambda n, e: worker_backup(n, e, workdir))):
            clean = None
            for mode, endpoint in (("clean", args.endpoint), ("faults", args.proxy)):
                log(f"{program}, {mode}")
                job_id, seconds, tries, failed_manifests = backup(f"{program}-{mode}", endpoint)
                lost, duplicated, manifests, bad_files = emulator.check(bucket, job_id, expected)
                clean = seconds if mode == "clean" else clean
                results.append(
                    {
                        "program": program,
                        "run": mode,
                        "seconds": round(seconds, 2),
                        "slowdown": round(seconds / clean, 2),
                        "attempts" if program == "cli" else "invocations": tries,
                        "manifests": manifests,
                        "items_lost": lost,
                        "items_duplicated": duplicated,
                        "files_not_matching_manifest": bad_files,
                        "manifests_of_failed_attempts": failed_manifests,
                        "emails": emulator.emails(job_id) if program == "worker" else None,
                    }
                )
    open_uploads = emulator.open_uploads(bucket)
    report = {"items": args.items, "bytes_per_item": ITEM_BYTES, "runs": results, "uploads_left_open": open_uploads}
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
    print(f"{'program':8} {'run':7} {'seconds':>8} {'slowdown':>8} {'tries':>5} {'manifests':>9} "
          f"{'lost':>5} {'dup':>4} {'bad files':>9} {'failed-attempt manifests':>24} {'emails':>6}")
    ok = open_uploads == 0
    for r in results:
        tries = r.get("attempts", r.get("invocations"))
        print(f"{r['program']:8} {r['run']:7} {r['seconds']:8.2f} {r['slowdown']:7.2f}x {tries:5} "
              f"{r['manifests']:9} {r['items_lost']:5} {r['items_duplicated']:4} "
              f"{r['files_not_matching_manifest']:9} {r['manifests_of_failed_attempts']:24} "
              f"{'-' if r['emails'] is None else r['emails']:>6}")
        ok &= (r["manifests"], r["items_lost"], r["items_duplicated"],
               r["files_not_matching_manifest"], r["manifests_of_failed_attempts"]) == (1, 0, 0, 0, 0)
        ok &= r["emails"] in (None, 1)
    print(f"multipart uploads left open: {open_uploads}")
    if not ok:
        log("FAILED: a backup lost, duplicated or misdescribed items, left something behind, or was "
            "not reported by exactly one email")
        sys.exit(1)


if __name__ == "__main__":
    main()

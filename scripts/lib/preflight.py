"""scripts/deploy.sh's look at the account before it creates anything.

    preflight.py --stack NAME --region REGION [Key=Value ...]

Given the stack's parameters as deploy.sh would pass them, it finds what would make the first
deploy fail halfway (a bucket, role, function or log group of the same name), and what the
account already has that the stack must not take over (an SES identity, API Gateway's
CloudWatch role). It prints the parameters it decides, one `Key=Value` a line, and exits 1 with
one line per collision, each naming the parameter that avoids it. Honours AWS_ENDPOINT_URL.
"""

import argparse
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError


def say(message):
    print(f"deploy: {message}", file=sys.stderr)


def code(err):
    return err.response.get("Error", {}).get("Code", "")


def exists(call, missing_codes, **kwargs):
    try:
        call(**kwargs)
        return True
    except ClientError as err:
        if code(err) in missing_codes:
            return False
        raise


def bucket_state(s3, name):
    """'free', 'ours' (this account, any region) or 'taken' (another account)."""
    try:
        s3.head_bucket(Bucket=name)
        return "ours"
    except ClientError as err:
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404 or code(err) in ("404", "NoSuchBucket", "NotFound"):
            return "free"
        if status == 301:
            # In another region: ours if this account can see it in its own list.
            names = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            return "ours" if name in names else "taken"
        if status == 403:
            return "taken"
        raise


def deployer_arn(session):
    """The IAM principal behind the credentials, as the bucket policy's aws:PrincipalArn sees it."""
    arn = session.client("sts").get_caller_identity()["Arn"]
    parts = arn.split(":")
    if parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        try:
            return session.client("iam").get_role(RoleName=role)["Role"]["Arn"]
        except ClientError as err:
            # The role's ARN carries its path (SSO roles always have one), which the session's
            # ARN does not: a guess would never match.
            say(f"DeployerArn: cannot read the ARN of your role {role} ({code(err)}): pass "
                f"--parameter-overrides DeployerArn=<its ARN, from aws iam get-role --role-name {role}>")
            sys.exit(1)
    return arn


def kept_policy_worker(s3, bucket):
    """The worker role's ARN that a kept backup bucket's policy names, if it has one."""
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError:
        return None
    for statement in policy.get("Statement", []):
        if statement.get("Sid") == "DenyBackupWritesByOthers":
            return statement.get("Condition", {}).get("ArnNotEquals", {}).get("aws:PrincipalArn")
    return None


def table_stream(session, table, given, current, decided):
    """TableStreamArn: the table's stream when it carries new and old images (change capture on),
    else empty, with the one command that enables it."""
    if "TableStreamArn" in given:
        return
    enable = (f"aws dynamodb update-table --table-name {table} --stream-specification "
              f"StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES")
    dynamodb = session.client("dynamodb", config=Config(retries={"max_attempts": 2}))
    try:
        described = dynamodb.describe_table(TableName=table)["Table"]
    except (ClientError, BotoCoreError) as err:
        if isinstance(err, ClientError) and code(err) == "ResourceNotFoundException":
            say(f"note: the table {table} does not exist here yet, so its changes are not captured; once "
                f"it exists, run: {enable}  and deploy again (docs/changes.md)")
        else:
            # Not allowed to read it, say: keep what the stack has, and say how to choose.
            if current.get("TableStreamArn"):
                decided["TableStreamArn"] = current["TableStreamArn"]
            reason = code(err) if isinstance(err, ClientError) else type(err).__name__
            say(f"note: could not read the table {table} ({reason}), so change capture stays "
                f"{'on' if current.get('TableStreamArn') else 'off'}. To capture its changes, give it a "
                f"stream ({enable}) and pass TableStreamArn=<its LatestStreamArn>")
        return
    spec = described.get("StreamSpecification") or {}
    arn = described.get("LatestStreamArn", "")
    if spec.get("StreamEnabled") and spec.get("StreamViewType") == "NEW_AND_OLD_IMAGES":
        decided["TableStreamArn"] = arn
        if current.get("TableStreamArn") != arn:
            say(f"note: the changes of {table} are captured from its stream {arn}: backups are "
                f"consistent to the second, and restore reaches any moment since (docs/changes.md)")
        return
    if current.get("TableStreamArn"):
        decided["TableStreamArn"] = ""
    if spec.get("StreamEnabled"):
        say(f"note: the stream of {table} carries {spec.get('StreamViewType')}, not NEW_AND_OLD_IMAGES, so "
            f"its changes are not captured. A stream's view type cannot change in place: disable it "
            f"(aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=false), "
            f"then run: {enable}")
    else:
        say(f"note: {table} has no stream, so its changes are not captured: backups are fuzzy (each item as "
            f"the scan read it) and restore reaches a backup's time only. To restore to any moment and "
            f"item by item, run: {enable}  and deploy again")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stack", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("params", nargs="*")
    args = parser.parse_args()
    given = dict(p.split("=", 1) for p in args.params)
    session = boto3.session.Session(region_name=args.region)
    cfn = session.client("cloudformation")
    decided = {}
    problems = []

    try:
        stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
        if stack["StackStatus"] in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"):
            say(f"stack {args.stack} is {stack['StackStatus']}: its first deploy failed "
                f"({stack.get('StackStatusReason', 'see its events')}). Delete it with scripts/deploy.sh --delete "
                f"(it made nothing that is kept), then deploy again.")
            sys.exit(1)
        if stack["StackStatus"] == "REVIEW_IN_PROGRESS":
            stack = None  # a change set that was never run: nothing exists yet
    except ClientError as err:
        if "does not exist" not in str(err):
            raise
        stack = None

    me = deployer_arn(session)
    table = given.get("TableName", "studentData")
    if stack is not None:
        current = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
        table_stream(session, table, given, current, decided)
        for key in ("DeployerArn", "SetApiGatewayLoggingRole", "CreateSenderIdentity", "BucketExists"):
            if key not in given and current.get(key):
                decided[key] = current[key]
        if "DeployerArn" not in given and not current.get("DeployerArn"):
            decided["DeployerArn"] = me
        owner = given.get("DeployerArn", current.get("DeployerArn", ""))
        if owner and owner != me:
            say(f"note: the backup bucket's policy lets only {owner} change the bucket's configuration "
                f"(DeployerArn); you are {me}. An update that changes retention, lifecycle, Object Lock or "
                f"replication must be deployed by {owner}, or {owner} deploys once with "
                f"--parameter-overrides DeployerArn={me}.")
        for key, value in sorted(decided.items()):
            print(f"{key}={value}")
        if problems:
            for p in problems:
                say(p)
            sys.exit(1)
        return

    # A first deploy: everything the stack names must be free.
    if "DeployerArn" not in given:
        decided["DeployerArn"] = me
    table_stream(session, table, given, {}, decided)
    s3 = session.client("s3")
    bucket = given.get("BucketName", "student-backup-20250706")
    reuse = given.get("BucketExists", "false") == "true"
    states = {name: bucket_state(s3, name) for name in (bucket, f"{bucket}-access-logs")}
    for name, state in states.items():
        if state == "taken":
            problems.append(f"BucketName: the bucket {name} belongs to another AWS account (bucket names "
                            f"are global): choose another BucketName")
        elif reuse and state == "free":
            problems.append(f"BucketExists=true, but the bucket {name} does not exist: leave BucketExists "
                            f"false to create it")
    if reuse and states[bucket] == "ours":
        role_arn = f"arn:aws:iam::{session.client('sts').get_caller_identity()['Account']}:role/" \
                   f"{given.get('WorkerRoleName', 'DynamoDBBackupRole')}"
        named = kept_policy_worker(s3, bucket)
        if named and named.split(":", 2)[2] != role_arn.split(":", 2)[2]:
            problems.append(f"WorkerRoleName: the kept bucket's policy lets only {named} write backups, and "
                            f"the stack keeps that policy: pass WorkerRoleName={named.split('/')[-1]}")
    ours = [name for name, state in states.items() if state == "ours"]
    if ours and not reuse:
        if len(ours) == 2:
            problems.append(f"BucketName: {bucket} and {bucket}-access-logs already exist in this account "
                            f"(kept from an earlier ddb-backup stack?): pass BucketExists=true to use them "
                            f"with their backups, or choose another BucketName")
        else:
            problems.append(f"BucketName: the bucket {ours[0]} already exists in this account: choose "
                            f"another BucketName")
    if given.get("DeployConsole") == "true" and bucket_state(s3, f"{bucket}-console") != "free":
        problems.append(f"BucketName: the console's bucket {bucket}-console already exists: empty and "
                        f"delete it, or choose another BucketName")

    role = given.get("WorkerRoleName", "DynamoDBBackupRole")
    if exists(session.client("iam").get_role, ("NoSuchEntity",), RoleName=role):
        problems.append(f"WorkerRoleName: an IAM role {role} already exists (role names are one per account, "
                        f"across regions): pass WorkerRoleName=<another name>")

    function = given.get("WorkerFunctionName", "BackupDynamoDBAndSendEmail")
    lam = session.client("lambda")
    logs = session.client("logs")
    if exists(lam.get_function, ("ResourceNotFoundException",), FunctionName=function):
        problems.append(f"WorkerFunctionName: a Lambda function {function} already exists in {args.region}: "
                        f"pass WorkerFunctionName=<another name>")

    def log_group_exists(name):
        groups = logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
        return any(g["logGroupName"] == name for g in groups)

    if log_group_exists(f"/aws/lambda/{function}"):
        problems.append(f"WorkerFunctionName: the log group /aws/lambda/{function} already exists (left by "
                        f"an earlier function of that name): delete it, or pass WorkerFunctionName=<another name>")
    if decided.get("TableStreamArn") or given.get("TableStreamArn"):
        changes = given.get("ChangesFunctionName", "BackupDynamoDBChanges")
        if exists(lam.get_function, ("ResourceNotFoundException",), FunctionName=changes):
            problems.append(f"ChangesFunctionName: a Lambda function {changes} already exists in {args.region}: "
                            f"pass ChangesFunctionName=<another name>")
        if log_group_exists(f"/aws/lambda/{changes}"):
            problems.append(f"ChangesFunctionName: the log group /aws/lambda/{changes} already exists: "
                            f"delete it, or pass ChangesFunctionName=<another name>")
    for name in (f"/aws/lambda/{args.stack}-api", f"/aws/apigateway/{args.stack}-access"):
        if log_group_exists(name):
            problems.append(f"--stack-name: the log group {name} already exists: delete it, or deploy with "
                            f"--stack-name <another name>")
    if exists(lam.get_function, ("ResourceNotFoundException",), FunctionName=f"{args.stack}-api"):
        problems.append(f"--stack-name: a Lambda function {args.stack}-api already exists: deploy with "
                        f"--stack-name <another name>")

    sender = given.get("SenderEmail", "")
    if "CreateSenderIdentity" not in given and sender:
        ses = session.client("ses")
        identities = [sender, sender.split("@")[-1]]
        found = ses.get_identity_verification_attributes(Identities=identities)["VerificationAttributes"]
        if found:
            decided["CreateSenderIdentity"] = "false"
            say(f"note: SES already has the identity {', '.join(sorted(found))}; the stack uses it "
                f"(CreateSenderIdentity=false)")

    if "SetApiGatewayLoggingRole" not in given:
        role_arn = session.client("apigateway").get_account().get("cloudwatchRoleArn", "")
        if role_arn and exists(session.client("iam").get_role, ("NoSuchEntity",), RoleName=role_arn.split("/")[-1]):
            decided["SetApiGatewayLoggingRole"] = "false"
            say(f"note: API Gateway in {args.region} already logs through {role_arn}; the stack keeps it "
                f"(SetApiGatewayLoggingRole=false)")
        elif role_arn:
            say(f"note: API Gateway in {args.region} names the logging role {role_arn}, which no longer "
                f"exists; the stack sets its own")

    for key, value in sorted(decided.items()):
        print(f"{key}={value}")
    if problems:
        say("the stack would fail halfway; nothing was created:")
        for p in problems:
            say(f"  {p}")
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The deploy rehearsal: infra/template.yaml created, updated, created twice and re-created on
LocalStack, through CloudFormation, as a new user's first deploys would go (scripts/rehearse-deploy.sh).

What is replaced, and why: LocalStack in host mode cannot create Lambda functions (it runs them
in Docker, which this machine does not have), and CloudFormation waits for a function to become
Active. The two functions, the SQS event source mapping and the API's invoke permission (which
both need a function) are therefore replaced by stand-ins: SSM parameters named as the function
would be, whose value is the resource's properties as CloudFormation resolved them (the role's
ARN, every environment variable, the queue's ARN, the batch settings). A missing reference or a
name collision fails the stand-in as it would fail the function. The SES email identity is
replaced the same way: LocalStack's CloudFormation has no provider for it. Everything else is
created as written.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import boto3
from botocore.exceptions import ClientError
from cfnlint.decode import cfn_yaml
from samtranslator.translator.transform import transform

ROOT = pathlib.Path(__file__).resolve().parents[2]
REPLACED = {"AWS::Lambda::Function", "AWS::Lambda::EventSourceMapping", "AWS::Lambda::Permission",
            "AWS::SES::EmailIdentity"}
FUNCTION_PROPERTIES = ("FunctionName", "Role", "Environment", "Runtime", "Architectures", "Handler",
                       "MemorySize", "Timeout", "LoggingConfig", "TracingConfig")


def log(message):
    print(f"rehearsal: {message}", file=sys.stderr, flush=True)


class ManagedPolicies:
    """The translator asks IAM for managed policy ARNs only for SAM `Policies`; ours name none."""

    def load(self):
        return {}


def translate(template_path):
    """infra/template.yaml through the pinned aws-sam-translator: what `sam deploy` submits."""
    template = json.loads(json.dumps(cfn_yaml.load(str(template_path))))
    # `sam deploy` uploads each function's package and puts its S3 address here, as this does.
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = f"s3://sam-managed-packages/{name}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, {}, ManagedPolicies())


def to_json_string(value):
    """A property tree as a Fn::Join that CloudFormation resolves into the JSON text of it."""
    parts = []

    def emit(v):
        if isinstance(v, dict) and len(v) == 1 and (next(iter(v)) == "Ref" or next(iter(v)).startswith("Fn::")):
            parts.extend(['"', v, '"'])
        elif isinstance(v, dict):
            parts.append("{")
            for i, (k, item) in enumerate(v.items()):
                parts.append(("," if i else "") + json.dumps(k) + ":")
                emit(item)
            parts.append("}")
        elif isinstance(v, list):
            parts.append("[")
            for i, item in enumerate(v):
                if i:
                    parts.append(",")
                emit(item)
            parts.append("]")
        else:
            parts.append(json.dumps(v))

    emit(value)
    merged = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return {"Fn::Join": ["", merged]}


def function_arn(name_expr):
    return {"Fn::Join": ["", [{"Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:"}, name_expr]]}


def with_stand_ins(template):
    """The translated template with the Lambda resources replaced (see the module's doc)."""
    resources = template["Resources"]
    functions = {name: r for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    names = {name: r["Properties"]["FunctionName"] for name, r in functions.items()}

    def rewrite(node):
        if isinstance(node, dict):
            if set(node) == {"Fn::GetAtt"} and node["Fn::GetAtt"][0] in names:
                target, attribute = node["Fn::GetAtt"]
                if attribute != "Arn":
                    raise SystemExit(f"rehearsal: no stand-in for {target}.{attribute}")
                return function_arn(names[target])
            if set(node) == {"Ref"} and node["Ref"] in names:
                return names[node["Ref"]]
            if set(node) == {"Fn::Sub"}:
                sub = node["Fn::Sub"]
                text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], dict(sub[1]))
                for name in names:
                    if f"${{{name}.Arn}}" in text:
                        variable = f"StandIn{name}Arn"
                        text = text.replace(f"${{{name}.Arn}}", f"${{{variable}}}")
                        variables[variable] = function_arn(names[name])
                return {"Fn::Sub": [text, {k: rewrite(v) for k, v in variables.items()}] if variables else text}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    out = {}
    for name, resource in resources.items():
        if resource["Type"] not in REPLACED:
            out[name] = resource
            continue
        props = resource["Properties"]
        if resource["Type"] == "AWS::Lambda::Function":
            kept = {k: props[k] for k in FUNCTION_PROPERTIES if k in props}
            parameter_name = props["FunctionName"]
        else:
            kept = dict(props)
            parameter_name = {"Fn::Sub": f"${{AWS::StackName}}-{name}"}
        stand_in = {
            "Type": "AWS::SSM::Parameter",
            "Properties": {
                "Name": parameter_name,
                "Type": "String",
                "Value": to_json_string(kept),
                "Description": f"stand-in for {resource['Type']} {name}",
            },
        }
        for key in ("Condition", "DependsOn"):
            if key in resource:
                stand_in[key] = resource[key]
        out[name] = stand_in
    template = dict(template, Resources=rewrite(out))
    template["Outputs"] = rewrite(template.get("Outputs", {}))
    return template


def lint(path):
    """cfn-lint on what CloudFormation receives: it no longer applies the SAM transform itself."""
    result = subprocess.run([str(pathlib.Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"rehearsal: cfn-lint on the translated template:\n{result.stdout}{result.stderr}")


class Rehearsal:
    def __init__(self, template_body):
        self.cfn = boto3.client("cloudformation")
        self.s3 = boto3.client("s3")
        # As `sam deploy` does: the template goes to S3 (a body is limited to 51,200 bytes).
        self.s3.create_bucket(Bucket="sam-managed-packages")
        self.s3.put_object(Bucket="sam-managed-packages", Key="template.json", Body=template_body.encode())
        self.template_url = f"{self.s3.meta.endpoint_url}/sam-managed-packages/template.json"

    def parameters(self, values):
        return [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in values.items()]

    def wait(self, stack):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = self.cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
            if not status.endswith("_IN_PROGRESS"):
                return status
            time.sleep(1)
        raise SystemExit(f"rehearsal: {stack} still in progress after 10 minutes")

    def failures(self, stack):
        events = self.cfn.describe_stack_events(StackName=stack)["StackEvents"]
        return [f"{e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason', '')}"
                for e in events if e["ResourceStatus"].endswith("_FAILED")]

    def create(self, stack, values):
        self.cfn.create_stack(StackName=stack, TemplateURL=self.template_url, Parameters=self.parameters(values),
                              Capabilities=["CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
        return self.wait(stack)

    def update(self, stack, values):
        self.cfn.update_stack(StackName=stack, TemplateURL=self.template_url, Parameters=self.parameters(values),
                              Capabilities=["CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
        return self.wait(stack)

    def expect(self, stack, status, wanted):
        if status != wanted:
            raise SystemExit(f"rehearsal: {stack} ended {status}, not {wanted}:\n  " + "\n  ".join(self.failures(stack)))
        log(f"{stack}: {status}")


def deploy_sh(*args, check=False):
    """scripts/deploy.sh as a user runs it, with no answers kept from earlier deploys."""
    env = dict(os.environ, DDB_BACKUP_DEPLOY_PARAMETERS=str(ROOT / ".rehearsal" / "no-kept-answers"))
    return subprocess.run([str(ROOT / "scripts" / "deploy.sh"), *args], capture_output=not check, text=True,
                          env=env, cwd=ROOT, timeout=600, check=check)


def preflight(stack, params):
    """scripts/deploy.sh --preflight: (exit code, the parameters it printed, stderr)."""
    out = deploy_sh("--preflight", "--stack-name", stack, "--parameter-overrides",
                    *(f"{k}={v}" for k, v in params.items()))
    decided = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return out.returncode, decided, out.stderr


def deploy(r, stack, params, update=False):
    """What `scripts/deploy.sh` does on LocalStack: the preflight, then the stack."""
    code, decided, err = preflight(stack, params)
    if code != 0:
        raise SystemExit(f"rehearsal: deploy.sh --preflight refused {stack}:\n{err}")
    status = r.update(stack, decided) if update else r.create(stack, decided)
    r.expect(stack, status, "UPDATE_COMPLETE" if update else "CREATE_COMPLETE")
    return decided


def check(condition, message):
    if not condition:
        raise SystemExit(f"rehearsal: {message}")


def assert_created(r, stack, params):
    """What a first deploy must leave, read back through LocalStack's APIs."""
    cfn, s3 = r.cfn, r.s3
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    unfinished = [f"{x['LogicalResourceId']}: {x['ResourceStatus']}" for x in resources
                  if x["ResourceStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE")]
    check(not unfinished, f"{stack}: resources not complete: {unfinished}")
    physical = {x["LogicalResourceId"]: x["PhysicalResourceId"] for x in resources}
    out = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]}
    for key, value in out.items():
        check(value and "${" not in value and "None" not in value, f"{stack}: output {key} is {value!r}")

    bucket = params["BucketName"]
    check(out["Bucket"] == bucket, f"{stack}: Bucket output {out['Bucket']} is not {bucket}")
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    check(lock["ObjectLockEnabled"] == "Enabled" and "Rule" not in lock, f"{bucket}: Object Lock is {lock}")
    check(s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled", f"{bucket}: versioning is off")
    blocks = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    check(all(blocks.values()) and len(blocks) == 4, f"{bucket}: public access blocks {blocks}")
    for name in (bucket, f"{bucket}-access-logs"):
        rules = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
        check(rules == [{"ObjectOwnership": "BucketOwnerEnforced"}], f"{name}: ownership {rules}")
    logging = s3.get_bucket_logging(Bucket=bucket).get("LoggingEnabled", {})
    check(logging.get("TargetBucket") == f"{bucket}-access-logs", f"{bucket}: access logs go to {logging}")
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    sids = {st.get("Sid") for st in policy["Statement"]}
    check({"DenyDeletingBackups", "DenyLooseningProtection"} <= sids, f"{bucket}: policy has {sids}")
    expiry = [rule for rule in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
              if rule["ID"] == "AgeOutBackups"][0]
    check(expiry["Expiration"]["Days"] == int(params.get("BackupRetentionDays", 90)), f"{bucket}: lifecycle {expiry}")

    sqs = boto3.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=out["DeadLetterQueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.loads(attrs["RedrivePolicy"])
    check(redrive["deadLetterTargetArn"] == dlq_arn and int(redrive["maxReceiveCount"]) == 5,
          f"{stack}: the job queue's redrive policy is {redrive}")
    check(attrs["VisibilityTimeout"] == "5400", f"{stack}: visibility timeout {attrs['VisibilityTimeout']}")
    # Dead letters are consumed by the worker (Lambda wants a visibility of at least its
    # timeout) and move on to the failed-jobs queue.
    dlq = sqs.get_queue_attributes(QueueUrl=out["DeadLetterQueueUrl"], AttributeNames=["All"])["Attributes"]
    failed_arn = sqs.get_queue_attributes(QueueUrl=out["FailedJobsQueueUrl"],
                                          AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    check(json.loads(dlq["RedrivePolicy"])["deadLetterTargetArn"] == failed_arn
          and int(dlq["VisibilityTimeout"]) >= 900,
          f"{stack}: the dead-letter queue's redrive policy is {dlq.get('RedrivePolicy')}, visibility {dlq['VisibilityTimeout']}")

    scheduler = boto3.client("scheduler")
    group = physical["ScheduleGroup"].split("/")[-1]
    schedule_name = physical["NightlySchedule"].split("|")[-1].split("/")[-1]
    schedule = scheduler.get_schedule(Name=schedule_name, GroupName=group)
    check(schedule["Target"]["Arn"] == attrs["QueueArn"], f"{stack}: the schedule targets {schedule['Target']['Arn']}")
    sweep_name = physical["StuckJobSweepSchedule"].split("|")[-1].split("/")[-1]
    sweep = scheduler.get_schedule(Name=sweep_name, GroupName=group)
    check(sweep["Target"]["Arn"] == attrs["QueueArn"] and json.loads(sweep["Target"]["Input"]) == {"kind": "sweep"}
          and sweep["ScheduleExpression"] == "rate(1 hour)", f"{stack}: the stuck-job sweep is {sweep}")
    check(json.loads(schedule["Target"]["Input"].replace("<aws.scheduler.execution-id>", "x")
                     .replace("<aws.scheduler.scheduled-time>", "t"))["table"] == params.get("TableName", "studentData"),
          f"{stack}: the schedule's job is {schedule['Target']['Input']}")

    topic = out["AlarmTopic"]
    alarms = [x for x in resources if x["ResourceType"] == "AWS::CloudWatch::Alarm"]
    described = boto3.client("cloudwatch").describe_alarms(AlarmNames=[x["PhysicalResourceId"] for x in alarms])
    found = {a["AlarmName"]: a["AlarmActions"] for a in described["MetricAlarms"] + described["CompositeAlarms"]}
    check(len(found) == len(alarms) >= 8, f"{stack}: {len(alarms)} alarms in the stack, {len(found)} found")
    for name, actions in found.items():
        check(topic in actions, f"{stack}: alarm {name} notifies {actions}, not {topic}")

    ssm = boto3.client("ssm")
    worker = json.loads(ssm.get_parameter(Name=physical["WorkerFunction"])["Parameter"]["Value"])
    env = worker["Environment"]["Variables"]
    check(env["DDB_BACKUP_OBJECT_LOCK_MODE"] == params.get("ObjectLockMode", "GOVERNANCE")
          and env["DDB_BACKUP_OBJECT_LOCK_DAYS"] == str(params.get("BackupRetentionDays", 90)),
          f"{stack}: the worker would lock backups with {env}")
    check(worker["Role"] == out["WorkerRoleArn"] and env["DDB_BACKUP_QUEUE_URL"] == out["QueueUrl"]
          and env["DDB_BACKUP_BUCKET"] == bucket and env["DDB_BACKUP_DLQ_URL"] == out["DeadLetterQueueUrl"],
          f"{stack}: the worker would run as {worker['Role']} with {env}")
    jobs = json.loads(ssm.get_parameter(Name=physical["WorkerFunctionJobs"])["Parameter"]["Value"])
    check(jobs["EventSourceArn"] == attrs["QueueArn"] and jobs["FunctionName"] == worker["FunctionName"],
          f"{stack}: the worker's event source is {jobs}")
    boto3.client("iam").get_role(RoleName=out["WorkerRoleArn"].split("/")[-1])

    # Change capture: on when deploy.sh found the table's stream, absent otherwise.
    stream_arn = params.get("TableStreamArn", "")
    if stream_arn:
        changes = json.loads(ssm.get_parameter(Name=physical["ChangesFunction"])["Parameter"]["Value"])
        check(changes["Role"] == out["WorkerRoleArn"] and changes["Environment"]["Variables"]["DDB_BACKUP_BUCKET"] == bucket,
              f"{stack}: the capture would run as {changes['Role']} with {changes['Environment']}")
        mapping = json.loads(ssm.get_parameter(Name=physical["ChangesFunctionChanges"])["Parameter"]["Value"])
        failures_arn = [x["PhysicalResourceId"] for x in resources if x["LogicalResourceId"] == "ChangeFailuresQueue"][0]
        failures_arn = sqs.get_queue_attributes(QueueUrl=failures_arn, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        check(mapping["EventSourceArn"] == stream_arn and mapping["StartingPosition"] == "TRIM_HORIZON"
              and str(mapping["ParallelizationFactor"]) == "1" and str(mapping["BisectBatchOnFunctionError"]).lower() == "true"
              and mapping["DestinationConfig"]["OnFailure"]["Destination"] == failures_arn
              and str(mapping["MaximumBatchingWindowInSeconds"]) == params.get("ChangeBatchingWindowSeconds", "60"),
              f"{stack}: the capture's event source is {mapping}")
        lost = json.loads(ssm.get_parameter(Name=physical["ChangesFunctionLostBatches"])["Parameter"]["Value"])
        check(lost["EventSourceArn"] == failures_arn, f"{stack}: lost batches are read from {lost}")
        check("ChangesFunction" in out, f"{stack}: no ChangesFunction output")
    else:
        check(not {"ChangesFunction", "ChangeFailuresQueue", "ChangesPolicy"} & set(physical),
              f"{stack}: capture resources without a stream: {sorted(physical)}")
    log(f"{stack}: {len(resources)} resources, {len(out)} outputs, bucket, queue, schedule and "
        f"{len(found)} alarms as the template says")
    return out


def run(r):
    iam, s3, lam, logs_client = boto3.client("iam"), r.s3, boto3.client("lambda"), boto3.client("logs")
    first = {
        "SenderEmail": "backup@ops.example.org",
        "AlarmEmail": "alarms@ops.example.org",
        "AllowedOrigin": "https://d111111abcdef8.cloudfront.net",
        "BucketName": "rehearsal-backups",
    }

    # 1. A first deploy with the tutorial's names; the table has no stream yet, so no capture,
    #    and the preflight says the one command that enables it.
    code, _, err = preflight("ddb-backup", first)
    check(code == 0 and "StreamViewType=NEW_AND_OLD_IMAGES" in err, f"deploy.sh --preflight said:\n{err}")
    decided = deploy(r, "ddb-backup", first)
    check(decided.get("DeployerArn", "").startswith("arn:aws:iam::"), f"deploy.sh set DeployerArn to {decided}")
    assert_created(r, "ddb-backup", decided)

    # 2. An update that changes retention, lifecycle and Object Lock.
    longer = dict(first, BackupRetentionDays="120", TransitionDays="45")
    decided = deploy(r, "ddb-backup", longer, update=True)
    assert_created(r, "ddb-backup", decided)

    # 3. A second stack in the same account and region, with the other options.
    west = boto3.client("s3", region_name="us-west-2")
    west.create_bucket(Bucket="rehearsal-replica", ObjectLockEnabledForBucket=True,
                       CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    replica_key = boto3.client("kms", region_name="us-west-2").create_key()["KeyMetadata"]["Arn"]
    second = {
        "SenderEmail": "backup@second.example.org",
        "AlarmEmail": "alarms@second.example.org",
        "AllowedOrigin": "https://d2222222abcdef8.cloudfront.net",
        "BucketName": "rehearsal-second",
        "TableName": "orders",
        "WorkerRoleName": "OrdersBackupRole",
        "WorkerFunctionName": "OrdersBackup",
        "UseKms": "true",
        "DeployConsole": "true",
        "ApiAuth": "BOTH",
        "ObjectLockMode": "COMPLIANCE",
        "BreakGlassRoleArn": "arn:aws:iam::000000000000:role/BreakGlass",
        "ReplicaBucketArn": "arn:aws:s3:::rehearsal-replica",
        "ReplicaKmsKeyArn": replica_key,
        "ScheduleExpression": "rate(12 hours)",
        "ScheduleTimezone": "Europe/Berlin",
    }
    # Change capture on: its table's stream, given as deploy.sh's note says to (LocalStack's
    # DynamoDB needs DynamoDB Local, which is not used here, so deploy.sh cannot look it up).
    stream_arn = "arn:aws:dynamodb:us-east-1:000000000000:table/orders/stream/2026-12-07T10:00:00.000"
    second["TableStreamArn"] = stream_arn
    second["ChangeBatchingWindowSeconds"] = "120"
    decided = deploy(r, "orders-backup", second)
    check(decided.get("TableStreamArn") == stream_arn, f"deploy.sh dropped the orders stream: {decided}")
    check(decided.get("SetApiGatewayLoggingRole") == "false",
          f"deploy.sh kept the first stack's API Gateway logging role: {decided}")
    out = assert_created(r, "orders-backup", decided)
    rule = s3.get_bucket_replication(Bucket="rehearsal-second")["ReplicationConfiguration"]["Rules"][0]
    check(rule["Destination"]["Bucket"] == "arn:aws:s3:::rehearsal-replica"
          and rule["Destination"]["EncryptionConfiguration"]["ReplicaKmsKeyID"] == replica_key,
          f"rehearsal-second: replication {rule}")
    sse = s3.get_bucket_encryption(Bucket="rehearsal-second")["ServerSideEncryptionConfiguration"]["Rules"][0]
    check(sse["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms", f"rehearsal-second: {sse}")
    check(s3.get_bucket_logging(Bucket="rehearsal-second-console").get("LoggingEnabled", {}).get("TargetBucket")
          == "rehearsal-second-access-logs", "the console's bucket does not log")
    check("ConsoleUrl" in out, "no ConsoleUrl with DeployConsole=true")

    # 4. The preflight finds what exists before anything is created.
    s3.create_bucket(Bucket="rehearsal-taken")
    iam.create_role(RoleName="TakenRole", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}')
    lam.create_function(FunctionName="TakenFunction", Runtime="provided.al2023", Handler="bootstrap",
                        Role="arn:aws:iam::000000000000:role/TakenRole", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    code, _, err = preflight("third", dict(first, BucketName="rehearsal-taken", WorkerRoleName="TakenRole",
                                             WorkerFunctionName="TakenFunction"))
    check(code != 0, "deploy.sh --preflight let a stack with taken names through")
    for name in ("BucketName: the bucket rehearsal-taken already exists", "WorkerRoleName: an IAM role TakenRole",
                 "WorkerFunctionName: a Lambda function TakenFunction"):
        check(name in err, f"deploy.sh --preflight did not say '{name}':\n{err}")
    check(not r.cfn.list_stacks(StackStatusFilter=["CREATE_COMPLETE", "CREATE_FAILED", "CREATE_IN_PROGRESS"])
          ["StackSummaries"][0]["StackName"] == "third", "a stack was created")
    log("deploy.sh --preflight named BucketName, WorkerRoleName and WorkerFunctionName for a bucket, "
        "role and function that exist")

    # 5. Delete the first stack: the backups, their buckets and the policy stay.
    deploy_sh("--delete", "--stack-name", "ddb-backup", check=True)
    for name in ("rehearsal-backups", "rehearsal-backups-access-logs"):
        s3.head_bucket(Bucket=name)
    sids = {st.get("Sid") for st in json.loads(s3.get_bucket_policy(Bucket="rehearsal-backups")["Policy"])["Statement"]}
    check("DenyDeletingBackups" in sids, f"the kept bucket lost its policy: {sids}")
    role = boto3.client("apigateway").get_account().get("cloudwatchRoleArn", "")
    iam.get_role(RoleName=role.split("/")[-1])
    log("ddb-backup deleted; the buckets, the bucket policy and API Gateway's logging role stay")

    # 6. The same stack again, with its last parameters: the preflight says how.
    code, _, err = preflight("ddb-backup", longer)
    check(code != 0 and "BucketExists=true" in err, f"deploy.sh --preflight on the kept bucket said:\n{err}")
    code, _, err = preflight("ddb-backup", dict(longer, BucketExists="true", WorkerRoleName="OtherRole"))
    check(code != 0 and "WorkerRoleName=DynamoDBBackupRole" in err,
          f"deploy.sh --preflight let a new worker role meet the kept policy:\n{err}")
    decided = deploy(r, "ddb-backup", dict(longer, BucketExists="true"))
    assert_created(r, "ddb-backup", decided)
    log("ddb-backup created again on its kept buckets (BucketExists=true)")

    # 7. A first create that fails halfway leaves nothing behind, so the retry succeeds.
    doomed = dict(first, BucketName="rehearsal-doomed", WorkerRoleName="DoomedRole", WorkerFunctionName="DoomedWorker")
    code, decided, err = preflight("doomed", doomed)
    check(code == 0, err)
    boto3.client("ssm").put_parameter(Name="DoomedWorker", Value="in the way", Type="String")
    status = r.create("doomed", decided)
    check(status in ("CREATE_FAILED", "ROLLBACK_COMPLETE"), f"doomed: {status}")
    code, _, err = preflight("doomed", doomed)
    check(code != 0 and "deploy.sh --delete" in err, f"deploy.sh --preflight on a failed stack said:\n{err}")
    deploy_sh("--delete", "--stack-name", "doomed", check=True)
    for name in ("rehearsal-doomed", "rehearsal-doomed-access-logs"):
        try:
            s3.head_bucket(Bucket=name)
            raise SystemExit(f"rehearsal: a failed first create kept {name}; the retry would meet 'already exists'")
        except ClientError:
            pass
    boto3.client("ssm").delete_parameter(Name="DoomedWorker")
    deploy(r, "doomed", doomed)
    log("a failed first create left no bucket behind; the same deploy then succeeded")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / ".rehearsal"))
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    translated = translate(ROOT / "infra" / "template.yaml")
    (out / "translated.json").write_text(json.dumps(translated, indent=1))
    log("translated with aws-sam-translator; cfn-lint on the result")
    lint(out / "translated.json")
    standing_in = with_stand_ins(translated)
    (out / "rehearsal.json").write_text(json.dumps(standing_in, indent=1))

    run(Rehearsal(json.dumps(standing_in, separators=(",", ":"))))
    log("passed")


if __name__ == "__main__":
    main()

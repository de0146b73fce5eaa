"""What scripts/deploy.sh does to a deployed stack, besides `sam deploy`.

    stack.py upload-console --stack NAME --region REGION   web/ into the console's bucket
    stack.py delete --stack NAME --region REGION           empty the console's bucket, delete
                                                           the stack, say what stays
Honours AWS_ENDPOINT_URL.
"""

import argparse
import mimetypes
import pathlib
import sys

import boto3
from botocore.exceptions import ClientError, WaiterError

ROOT = pathlib.Path(__file__).resolve().parents[2]


def code(err):
    return err.response.get("Error", {}).get("Code", "")


def say(message):
    print(f"deploy: {message}", file=sys.stderr)


def outputs(cfn, stack):
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def upload_console(session, stack):
    out = outputs(session.client("cloudformation"), stack)
    bucket = out.get("ConsoleBucketName")
    if not bucket:
        return
    s3 = session.client("s3")
    for path in sorted((ROOT / "web").iterdir()):
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.upload_file(str(path), bucket, path.name, ExtraArgs={"ContentType": content_type})
    say(f"web console uploaded; open {out['ConsoleUrl']}")


def delete(session, stack):
    cfn = session.client("cloudformation")
    try:
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as err:
        if "does not exist" in str(err):
            say(f"there is no stack {stack} in {session.region_name}")
            sys.exit(1)
        raise
    status = described["StackStatus"]
    out = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}
    s3 = session.resource("s3")
    first_deploy_failed = status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED")
    # CloudFormation cannot delete a bucket that is not empty. The console's files come from web/
    # and are uploaded again by the next deploy; after a failed first deploy the log bucket holds
    # only the logs of that deploy's own calls, and it is deleted with the stack.
    emptied = [out.get("ConsoleBucketName")]
    if first_deploy_failed and params.get("BucketExists") != "true":
        emptied.append(f"{params.get('BucketName', '')}-access-logs")
    for bucket in filter(None, emptied):
        try:
            s3.Bucket(bucket).objects.all().delete()
            say(f"emptied {bucket}")
        except ClientError as err:
            if code(err) != "NoSuchBucket":
                raise
    cfn.delete_stack(StackName=stack)
    say(f"deleting stack {stack} ...")
    try:
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 5, "MaxAttempts": 360})
    except WaiterError:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
        failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in events
                  if e["ResourceStatus"] == "DELETE_FAILED"][:5]
        say(f"stack {stack} could not be deleted:\n  " + "\n  ".join(failed))
        sys.exit(1)
    if first_deploy_failed:
        say(f"stack {stack} deleted; its first deploy had failed, and what it made is gone")
        return
    bucket = out.get("Bucket") or params.get("BucketName", "")
    say(f"stack {stack} deleted. Kept: the backup bucket {bucket} with its policy, {bucket}-access-logs, "
        f"the KMS key (UseKms=true) and API Gateway's logging role. Deploy again with BucketExists=true "
        f"to use the buckets.")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("action", choices=["upload-console", "delete"])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--region", required=True)
    args = parser.parse_args()
    session = boto3.session.Session(region_name=args.region)
    {"upload-console": upload_console, "delete": delete}[args.action](session, args.stack)


if __name__ == "__main__":
    main()

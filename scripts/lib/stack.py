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

ROOT = pathlib.Path(__file__).resolve().parents[2]


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
    status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    out = outputs(cfn, stack)
    console = out.get("ConsoleBucketName")
    if console:
        # CloudFormation cannot delete a bucket that is not empty; the console's files come
        # from web/ and are uploaded again by the next deploy.
        session.resource("s3").Bucket(console).objects.all().delete()
        say(f"emptied the console's bucket {console}")
    cfn.delete_stack(StackName=stack)
    say(f"deleting stack {stack} ...")
    cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 5, "MaxAttempts": 360})
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED"):
        say(f"stack {stack} deleted; its first deploy had failed, so it kept nothing")
        return
    bucket = out["Bucket"]
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

"""Runs LocalStack (host mode) for the deploy rehearsal, with two of CloudFormation's documented
behaviours that its community edition lacks, so that the rehearsal checks what AWS would do:

1. `AWS::S3::Bucket`: LocalStack's provider creates the bucket with versioning, Object Lock,
   tags and CORS only, and cannot update one. Here every other property of the template's
   buckets (public access block, ownership controls, encryption, access logging, lifecycle,
   replication) is applied through LocalStack's S3 API as CloudFormation applies it, on create
   and on update, so S3's own validation of each value runs.
2. `DeletionPolicy: RetainExceptOnCreate`: LocalStack deletes such a resource with its stack.
   CloudFormation keeps it, unless the stack's first creation failed. Here it is kept once the
   stack has reached CREATE_COMPLETE.
3. A failed first creation: CloudFormation rolls back what it made; LocalStack leaves the stack
   CREATE_FAILED, and deleting it then fails on the resources it never made. Here their
   deletion is skipped, so deleting the stack ends where CloudFormation's rollback does.

Everything else is LocalStack as released (scripts/requirements-localstack.txt pins it).
"""

from localstack.aws.api.cloudformation import ChangeAction
from localstack.runtime import main as runtime_main
from localstack.services.cloudformation.engine.v2 import change_set_model_executor as executor
from localstack.services.cloudformation.resource_provider import OperationStatus, ProgressEvent
from localstack.services.s3.resource_providers import aws_s3_bucket


def lifecycle_rule(rule):
    out = {"ID": rule.get("Id", ""), "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "Transitions" in rule:
        out["Transitions"] = [{"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]}
                              for t in rule["Transitions"]]
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return out


def replication_rule(rule):
    out = {k: v for k, v in rule.items() if k != "Id"}
    out["ID"] = rule.get("Id", "")
    if "Priority" in out:
        out["Priority"] = int(out["Priority"])
    return out


def apply_bucket_properties(s3, model, had_replication=False):
    bucket = model["BucketName"]
    if blocks := model.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=blocks)
    if ownership := model.get("OwnershipControls"):
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=ownership)
    if encryption := model.get("BucketEncryption"):
        rules = []
        for rule in encryption["ServerSideEncryptionConfiguration"]:
            out = {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
            if "BucketKeyEnabled" in rule:
                out["BucketKeyEnabled"] = str(rule["BucketKeyEnabled"]).lower() == "true"
            rules.append(out)
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    if logging := model.get("LoggingConfiguration"):
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": {
            "TargetBucket": logging["DestinationBucketName"], "TargetPrefix": logging.get("LogFilePrefix", "")}})
    if lifecycle := model.get("LifecycleConfiguration"):
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
            "Rules": [lifecycle_rule(r) for r in lifecycle["Rules"]]})
    if replication := model.get("ReplicationConfiguration"):
        s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration={
            "Role": replication["Role"], "Rules": [replication_rule(r) for r in replication["Rules"]]})
    elif had_replication:
        s3.delete_bucket_replication(Bucket=bucket)


released_create = aws_s3_bucket.S3BucketProvider.create


def create(self, request):
    event = released_create(self, request)
    if event.status == OperationStatus.SUCCESS:
        apply_bucket_properties(request.aws_client_factory.s3, request.desired_state)
    return event


def update(self, request):
    model = dict(request.desired_state)
    model["BucketName"] = request.previous_state["BucketName"]
    s3 = request.aws_client_factory.s3
    if versioning := model.get("VersioningConfiguration"):
        s3.put_bucket_versioning(Bucket=model["BucketName"], VersioningConfiguration={"Status": versioning["Status"]})
    if lock := model.get("ObjectLockConfiguration"):
        s3.put_object_lock_configuration(Bucket=model["BucketName"], ObjectLockConfiguration=lock)
    if tags := model.get("Tags"):
        s3.put_bucket_tagging(Bucket=model["BucketName"], Tagging={"TagSet": tags})
    apply_bucket_properties(s3, model, had_replication=bool(request.previous_state.get("ReplicationConfiguration")))
    for key in ("Arn", "DomainName", "RegionalDomainName", "WebsiteURL"):
        if key in request.previous_state:
            model[key] = request.previous_state[key]
    return ProgressEvent(status=OperationStatus.SUCCESS, resource_model=model)


released_execute = executor.ChangeSetModelExecutor._execute_resource_action


def execute_resource_action(self, action, logical_resource_id, resource_type, before_properties,
                            after_properties, part_of_replacement=False):
    stack = self._change_set.stack
    if action == ChangeAction.Remove:
        template = stack.template or {}
        policy = template.get("Resources", {}).get(logical_resource_id, {}).get("DeletionPolicy")
        created = any(e.get("LogicalResourceId") == stack.stack_name and e.get("ResourceStatus") == "CREATE_COMPLETE"
                      for e in stack.events)
        if policy == "RetainExceptOnCreate" and created:
            return ProgressEvent(status=OperationStatus.SUCCESS, resource_model={})
        made = any(e.get("LogicalResourceId") == logical_resource_id and e.get("ResourceStatus") == "CREATE_COMPLETE"
                   for e in stack.events)
        if not created and not made:
            return ProgressEvent(status=OperationStatus.SUCCESS, resource_model={})
    return released_execute(self, action, logical_resource_id, resource_type, before_properties,
                            after_properties, part_of_replacement)


aws_s3_bucket.S3BucketProvider.create = create
aws_s3_bucket.S3BucketProvider.update = update
executor.ChangeSetModelExecutor._execute_resource_action = execute_resource_action

if __name__ == "__main__":
    runtime_main.main()

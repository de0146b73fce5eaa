"""Security invariants of infra/template.yaml, so a later edit cannot quietly loosen them.

Run by scripts/infra-check.sh (after cfn-lint and checkov): python -m unittest discover -s tests/infra
"""

import json
import pathlib
import re
import unittest

from cfnlint.decode import decode

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"


def load():
    template, errors = decode(str(TEMPLATE))
    if errors:
        raise AssertionError(f"template does not parse: {errors}")
    return template


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements(policy_document):
    return as_list(policy_document["Statement"])


BUCKET_AND_OBJECTS = [{"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}"},
                      {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/*"}]

# S3's write and permissions-management actions on a bucket and its objects (the Service
# Authorization Reference's list for Amazon S3, less access points, Outposts, S3 Tables,
# directory buckets, jobs and Storage Lens), each classified once. "delete" ones are denied to
# everyone but the break-glass role; "loosen" ones to everyone but it and the deployer;
# "retention" to everyone but it and the worker, which locks each object of a backup it writes.
S3_REMOVES_OR_LOOSENS = {
    "s3:DeleteObject": "delete",
    "s3:DeleteObjectVersion": "delete",
    "s3:DeleteBucket": "loosen",
    "s3:DeleteBucketPolicy": "loosen",
    "s3:BypassGovernanceRetention": "delete",
    "s3:PutObjectRetention": "retention",
    "s3:PutObjectLegalHold": "delete",
    "s3:ReplicateObject": "delete",
    "s3:ReplicateDelete": "delete",
    "s3:ReplicateTags": "delete",
    "s3:PutBucketPolicy": "loosen",
    "s3:PutLifecycleConfiguration": "loosen",
    "s3:PutBucketVersioning": "loosen",
    "s3:PutBucketObjectLockConfiguration": "loosen",
    "s3:PutBucketOwnershipControls": "loosen",
    "s3:PutBucketAcl": "loosen",
    "s3:PutObjectAcl": "loosen",
    "s3:PutObjectVersionAcl": "loosen",
    "s3:PutBucketPublicAccessBlock": "loosen",
    "s3:PutEncryptionConfiguration": "loosen",
    "s3:PutBucketLogging": "loosen",
    "s3:PutReplicationConfiguration": "loosen",
    "s3:PutIntelligentTieringConfiguration": "loosen",
}
S3_HARMLESS_WRITES = {
    "s3:PutObject": "DenyBackupWritesByOthers; a new version never removes a locked one",
    "s3:AbortMultipartUpload": "an unfinished upload is not a backup",
    "s3:CreateBucket": "another bucket",
    "s3:PutBucketCORS": "browsers only; access is still the policy's",
    "s3:PutBucketWebsite": "Block Public Access keeps a website private",
    "s3:DeleteBucketWebsite": "as above",
    "s3:PutBucketNotification": "tells, changes nothing",
    "s3:PutBucketTagging": "labels; the policy does not read bucket tags",
    "s3:PutObjectTagging": "labels; no lifecycle rule reads tags",
    "s3:PutObjectVersionTagging": "as above",
    "s3:DeleteObjectTagging": "as above",
    "s3:DeleteObjectVersionTagging": "as above",
    "s3:PutBucketRequestPayment": "billing",
    "s3:PutAccelerateConfiguration": "speed",
    "s3:PutAnalyticsConfiguration": "reports",
    "s3:PutInventoryConfiguration": "reports",
    "s3:PutMetricsConfiguration": "metrics",
    "s3:RestoreObject": "a temporary copy of an archived object",
    "s3:CreateAccessPoint": "an access point grants nothing the bucket policy does not delegate",
    "s3:PutAccessPointPolicy": "as above",
}


class TemplateInvariants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = load()
        cls.resources = cls.t["Resources"]

    def resource(self, name):
        self.assertIn(name, self.resources, f"{name} is missing")
        return self.resources[name]

    def statement(self, resource, sid):
        found = [s for s in statements(self.resource(resource)["Properties"]["PolicyDocument"]) if s.get("Sid") == sid]
        self.assertEqual(len(found), 1, f"{resource}: statement {sid}")
        return found[0]

    def test_tutorial_names_are_the_parameter_defaults(self):
        p = self.t["Parameters"]
        expected = {
            "BucketName": "student-backup-20250706",
            "WorkerRoleName": "DynamoDBBackupRole",
            "WorkerFunctionName": "BackupDynamoDBAndSendEmail",
            "TableName": "studentData",
            "ApiName": "student API",
            "StageName": "prod",
            "ApiKeyName": "StudentApiKey",
            "UsagePlanName": "StudentUsagePlan",
        }
        for name, default in expected.items():
            self.assertEqual(p[name]["Default"], default, name)

    def test_buckets_block_all_public_access_disable_acls_and_encrypt(self):
        for name in ("BackupBucket", "AccessLogBucket"):
            props = self.resource(name)["Properties"]
            bpa = props["PublicAccessBlockConfiguration"]
            for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
                self.assertIs(bpa[flag], True, f"{name}.{flag}")
            self.assertEqual(
                props["OwnershipControls"]["Rules"][0]["ObjectOwnership"], "BucketOwnerEnforced", name
            )
            sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            self.assertIn("SSEAlgorithm", sse["ServerSideEncryptionByDefault"], name)

    def test_backup_bucket_logs_access_and_aborts_incomplete_uploads(self):
        props = self.resource("BackupBucket")["Properties"]
        self.assertIn("DestinationBucketName", props["LoggingConfiguration"])
        rules = props["LifecycleConfiguration"]["Rules"]
        self.assertTrue(
            any(r.get("AbortIncompleteMultipartUpload") and "Prefix" not in r for r in rules),
            "incomplete multipart uploads must be aborted bucket-wide",
        )
        # Deleting the stack keeps the backups, their access logs and the key they need.
        for name in ("BackupBucket", "AccessLogBucket", "BackupKey"):
            self.assertEqual(self.resource(name).get("DeletionPolicy"), "RetainExceptOnCreate", name)
            self.assertEqual(self.resource(name).get("UpdateReplacePolicy"), "Retain", name)

    def test_bucket_policy_lets_only_the_worker_role_write_backups_and_denies_plain_http(self):
        doc = self.resource("BackupBucketPolicy")["Properties"]["PolicyDocument"]
        stmts = statements(doc)
        allows = [s for s in stmts if s["Effect"] == "Allow"]
        worker = [s for s in allows if s["Principal"] == {"AWS": {"Fn::GetAtt": ["WorkerRole", "Arn"]}}]
        self.assertEqual(len(worker), 1)
        self.assertEqual(sorted(as_list(worker[0]["Action"])), ["s3:AbortMultipartUpload", "s3:PutObject"])
        for s in allows:
            self.assertNotIn("s3:PutObjectAcl", as_list(s["Action"]), "ACLs are disabled; PutObjectAcl stays out")
            self.assertNotEqual(s["Principal"], "*", "no public allow")
            self.assertNotIn("*", as_list(s["Principal"].get("AWS", [])), "no public allow")
            for action in as_list(s["Action"]):
                self.assertNotIn("*", action, f"wildcard action {action}")
            if s is not worker[0]:
                self.assertNotIn("BackupPrefix", str(s["Resource"]), "only the worker writes backups")
        deny_others = [
            s for s in stmts
            if s["Effect"] == "Deny" and "s3:PutObject" in as_list(s["Action"])
        ]
        self.assertEqual(len(deny_others), 1, "backups must be denied to every other principal")
        self.assertEqual(
            deny_others[0]["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
            {"Fn::GetAtt": ["WorkerRole", "Arn"]},
        )
        tls = [
            s for s in stmts
            if s["Effect"] == "Deny"
            and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        ]
        self.assertEqual(len(tls), 1, "plain-HTTP requests must be denied")
        self.assertEqual(tls[0]["Action"], "s3:*")
        self.assertEqual(tls[0]["Principal"], "*")

    def test_backups_are_object_locked_for_their_retention_and_job_documents_are_not(self):
        props = self.resource("BackupBucket")["Properties"]
        self.assertIs(props["ObjectLockEnabled"], True)
        self.assertEqual(props["VersioningConfiguration"]["Status"], "Enabled", "Object Lock needs it")
        # No default rule: it would lock every rewrite of status, leases and checkpoints too.
        self.assertEqual(props["ObjectLockConfiguration"], {"ObjectLockEnabled": "Enabled"})
        env = self.resource("WorkerFunction")["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["DDB_BACKUP_OBJECT_LOCK_MODE"], {"Ref": "ObjectLockMode"})
        self.assertEqual(
            env["DDB_BACKUP_OBJECT_LOCK_DAYS"],
            {"Fn::If": ["LockDaysFromRetention", {"Ref": "BackupRetentionDays"}, {"Ref": "ObjectLockDays"}]},
        )
        policy = self.resource("WorkerRole")["Properties"]["Policies"][0]["PolicyDocument"]
        lock = [s for s in statements(policy) if "s3:PutObjectRetention" in as_list(s["Action"])]
        self.assertEqual(len(lock), 1)
        self.assertEqual(lock[0]["Resource"], {"Fn::Sub": "arn:${AWS::Partition}:s3:::${BucketName}/${BackupPrefix}*"})
        others = self.statement("BackupBucketPolicy", "DenyRetentionByOthers")
        self.assertEqual(others["Condition"]["ArnNotEquals"]["aws:PrincipalArn"][0], {"Fn::GetAtt": ["WorkerRole", "Arn"]})
        mode = self.t["Parameters"]["ObjectLockMode"]
        self.assertEqual((mode["Default"], mode["AllowedValues"]), ("GOVERNANCE", ["GOVERNANCE", "COMPLIANCE"]))
        self.assertEqual(self.t["Parameters"]["ObjectLockDays"]["Default"], 0)
        self.assertEqual(self.t["Conditions"]["LockDaysFromRetention"],
                         {"Fn::Equals": [{"Ref": "ObjectLockDays"}, 0]})

    def test_nobody_but_the_break_glass_role_may_delete_backups(self):
        deny = self.statement("BackupBucketPolicy", "DenyDeletingBackups")
        self.assertEqual((deny["Effect"], deny["Principal"]), ("Deny", "*"))
        self.assertEqual(deny["Resource"], BUCKET_AND_OBJECTS)
        # Empty BreakGlassRoleArn: the denial has no exception at all; the deployer has none.
        self.assertEqual(
            deny["Condition"],
            {"Fn::If": [
                "HasBreakGlass",
                {"ArnNotEquals": {"aws:PrincipalArn": {"Ref": "BreakGlassRoleArn"}}},
                {"Ref": "AWS::NoValue"},
            ]},
        )
        self.assertEqual(self.t["Parameters"]["BreakGlassRoleArn"]["Default"], "")
        pattern = self.pattern("BreakGlassRoleArn")
        self.assertTrue(pattern.fullmatch("arn:aws:iam::123456789012:role/break-glass"))
        self.assertFalse(pattern.fullmatch("arn:aws:iam::123456789012:user/admin"))
        # Nothing in the stack deletes objects: the worker only writes and aborts uploads.
        for name in ("WorkerRole", "ApiRole"):
            self.assertNotIn("s3:DeleteObject", str(self.resource(name)), name)

    def test_every_s3_action_that_removes_or_loosens_protection_is_denied(self):
        deletes = set(as_list(self.statement("BackupBucketPolicy", "DenyDeletingBackups")["Action"]))
        loosens = set(as_list(self.statement("BackupBucketPolicy", "DenyLooseningProtection")["Action"]))
        retention = set(as_list(self.statement("BackupBucketPolicy", "DenyRetentionByOthers")["Action"]))
        catalogue = set(S3_REMOVES_OR_LOOSENS) | set(S3_HARMLESS_WRITES)
        self.assertEqual(len(catalogue), len(S3_REMOVES_OR_LOOSENS) + len(S3_HARMLESS_WRITES), "classified twice")
        for action in deletes | loosens | retention:
            self.assertIn(action, S3_REMOVES_OR_LOOSENS, f"{action} denied but not in the catalogue")
        denied = {"delete": deletes, "loosen": loosens, "retention": retention}
        for action, kind in S3_REMOVES_OR_LOOSENS.items():
            self.assertIn(action, denied[kind], f"{action} ({kind}) is not denied")
        # The one-call bypass: deleting the policy, then every version with bypass-governance.
        self.assertIn("s3:DeleteBucketPolicy", loosens)
        self.assertIn("s3:BypassGovernanceRetention", deletes)

    def test_stack_updates_may_change_the_buckets_protection_through_the_deployer_only(self):
        loosen = self.statement("BackupBucketPolicy", "DenyLooseningProtection")
        self.assertEqual((loosen["Effect"], loosen["Principal"]), ("Deny", "*"))
        self.assertEqual(loosen["Resource"], BUCKET_AND_OBJECTS)
        self.assertEqual(
            loosen["Condition"],
            {"Fn::If": [
                "HasExemptFromLoosening",
                {"ArnNotEquals": {"aws:PrincipalArn": [
                    {"Fn::If": ["HasBreakGlass", {"Ref": "BreakGlassRoleArn"}, {"Ref": "AWS::NoValue"}]},
                    {"Fn::If": ["HasDeployer", {"Ref": "DeployerArn"}, {"Ref": "AWS::NoValue"}]},
                ]}},
                {"Ref": "AWS::NoValue"},
            ]},
        )
        # Every configuration CloudFormation sets on the bucket is one the deployer may change.
        configured = {
            "LifecycleConfiguration": "s3:PutLifecycleConfiguration",
            "VersioningConfiguration": "s3:PutBucketVersioning",
            "ObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
            "OwnershipControls": "s3:PutBucketOwnershipControls",
            "PublicAccessBlockConfiguration": "s3:PutBucketPublicAccessBlock",
            "BucketEncryption": "s3:PutEncryptionConfiguration",
            "LoggingConfiguration": "s3:PutBucketLogging",
            "ReplicationConfiguration": "s3:PutReplicationConfiguration",
        }
        props = self.resource("BackupBucket")["Properties"]
        for prop, action in configured.items():
            self.assertIn(prop, props)
            self.assertIn(action, loosen["Action"], prop)
        pattern = self.pattern("DeployerArn")
        for good in ("", "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1",
                     "arn:aws:iam::123456789012:user/ops", "arn:aws:iam::123456789012:root"):
            self.assertTrue(pattern.fullmatch(good), good)
        self.assertFalse(pattern.fullmatch("arn:aws:sts::123456789012:assumed-role/Admin/me"))

    def test_jobs_are_held_to_the_stacks_table_its_recipients_and_a_read_budget(self):
        env = self.t["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["DDB_BACKUP_ALLOWED_TABLES"], {"Ref": "TableName"})
        self.assertEqual(
            env["DDB_BACKUP_NOTIFY_ALLOWED"],
            {"Fn::If": ["HasNotifyEmails", {"Ref": "NotifyEmails"}, "none"]},
        )
        self.assertEqual(env["DDB_BACKUP_READ_BUDGET_PERCENT"], {"Ref": "ReadBudgetPercent"})
        self.assertEqual(env["DDB_BACKUP_READ_BUDGET"], {"Ref": "ReadBudget"})
        self.assertEqual(self.t["Parameters"]["ReadBudgetPercent"]["Default"], 50)
        self.assertEqual(self.t["Parameters"]["ReadBudget"]["Default"], 20000)
        # SES sends only from the sender and only to NotifyEmails, whatever a job asks.
        policies = self.resource("WorkerRole")["Properties"]["Policies"]
        ses = [s for p in policies for s in statements(p["PolicyDocument"]) if s.get("Sid") == "SendSummaryEmail"]
        self.assertEqual(len(ses), 1)
        condition = ses[0]["Condition"]
        self.assertEqual(condition["StringEquals"], {"ses:FromAddress": {"Ref": "SenderEmail"}})
        self.assertEqual(
            condition["ForAllValues:StringEquals"]["ses:Recipients"],
            {"Fn::If": ["HasNotifyEmails", {"Fn::Split": [",", {"Ref": "NotifyEmails"}]}, ["nobody.invalid"]]},
        )

    def test_roles_use_no_wildcard_actions_and_resources_only_where_aws_has_no_narrower(self):
        allowed_star_resources = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
        for name, res in self.resources.items():
            if res["Type"] == "AWS::IAM::Role":
                policies = res["Properties"].get("Policies", [])
            elif res["Type"] == "AWS::IAM::Policy":
                policies = [res["Properties"]]
            else:
                continue
            for policy in policies:
                for s in statements(policy["PolicyDocument"]):
                    actions = as_list(s["Action"])
                    for action in actions:
                        self.assertNotIn("*", action, f"{name}: wildcard action {action}")
                    if s["Resource"] == "*":
                        self.assertTrue(
                            set(actions) <= allowed_star_resources,
                            f"{name}: Resource * for {actions}",
                        )

    def test_worker_reads_only_the_configured_table_and_writes_only_restore_tables(self):
        policy = self.resource("WorkerRole")["Properties"]["Policies"][0]["PolicyDocument"]
        dynamo = [s for s in statements(policy) if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
        self.assertEqual(len(dynamo), 3)
        read, restore, deny = dynamo
        self.assertEqual(deny["Effect"], "Deny")
        self.assertEqual(sorted(as_list(deny["Action"])), ["dynamodb:BatchWriteItem", "dynamodb:CreateTable"])
        self.assertIn("table/${TableName}", str(deny["Resource"]))
        self.assertEqual(sorted(as_list(read["Action"])), ["dynamodb:DescribeTable", "dynamodb:Scan"])
        self.assertIn("table/${TableName}", str(read["Resource"]))
        self.assertEqual(sorted(as_list(restore["Action"])),
                         ["dynamodb:BatchWriteItem", "dynamodb:CreateTable", "dynamodb:DescribeTable"])
        self.assertEqual(str(restore["Resource"]).count("table/"), 1)
        self.assertIn("table/${RestoreTablePattern}", str(restore["Resource"]))
        env = self.t["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["DDB_BACKUP_RESTORE_TABLE_PATTERN"], {"Ref": "RestoreTablePattern"})
        pattern = self.pattern("RestoreTablePattern")
        self.assertEqual(self.t["Parameters"]["RestoreTablePattern"]["Default"], "restored-*")
        for good in ("restored-*", "dr-*-restore", "exact-name"):
            self.assertTrue(pattern.fullmatch(good), good)
        for bad in ("*", "a*", "**b*", "*-copy", "*Data", "bad/name-*", ""):
            self.assertFalse(pattern.fullmatch(bad), bad)

    def test_options_needs_nothing_and_every_other_method_what_api_auth_says(self):
        methods = {}
        for name, r in self.resources.items():
            if r["Type"] != "AWS::ApiGateway::Method":
                continue
            props = r["Properties"]
            path = {
                "BackupResource": "/backup",
                "JobResource": "/backup/{job_id}",
                "ListResource": "/backups",
                "FilesResource": "/backup/{job_id}/files",
                "RestoreResource": "/restore",
            }[props["ResourceId"]["Ref"]]
            methods[(path, props["HttpMethod"])] = (props["AuthorizationType"], props["ApiKeyRequired"])
            integration = props["Integration"]
            self.assertEqual((integration["Type"], integration["IntegrationHttpMethod"]), ("AWS_PROXY", "POST"))
            self.assertIn("${ApiFunction.Arn}", integration["Uri"]["Fn::Sub"], name)
        by_parameter = ({"Fn::If": ["IamAuth", "AWS_IAM", "NONE"]}, {"Fn::If": ["KeyAuth", True, False]})
        self.assertEqual(
            methods,
            {
                ("/backup", "POST"): by_parameter,
                ("/backup/{job_id}", "GET"): by_parameter,
                ("/backups", "GET"): by_parameter,
                ("/backup/{job_id}/files", "GET"): by_parameter,
                ("/restore", "POST"): by_parameter,
                ("/backup", "OPTIONS"): ("NONE", False),
                ("/restore", "OPTIONS"): ("NONE", False),
                ("/backup/{job_id}", "OPTIONS"): ("NONE", False),
                ("/backups", "OPTIONS"): ("NONE", False),
                ("/backup/{job_id}/files", "OPTIONS"): ("NONE", False),
            },
        )
        # Every deployment snapshots every method and gateway response.
        method_names = sorted(n for n, r in self.resources.items()
                              if r["Type"] in ("AWS::ApiGateway::Method", "AWS::ApiGateway::GatewayResponse"))
        for name, r in self.resources.items():
            if r["Type"] == "AWS::ApiGateway::Deployment":
                self.assertEqual(sorted(r["DependsOn"]), method_names, name)
        auth = self.t["Parameters"]["ApiAuth"]
        self.assertEqual((auth["Default"], auth["AllowedValues"]), ("API_KEY", ["API_KEY", "AWS_IAM", "BOTH"]))
        conditions = self.t["Conditions"]
        self.assertEqual(conditions["KeyAuth"], {"Fn::Or": [{"Condition": "AuthIsKey"}, {"Condition": "AuthIsBoth"}]})
        self.assertEqual(conditions["IamAuth"], {"Fn::Or": [{"Condition": "AuthIsIam"}, {"Condition": "AuthIsBoth"}]})
        # The key and its plan binding exist exactly when a key is required.
        for name in ("ApiKey", "UsagePlanKey"):
            self.assertEqual(self.resource(name).get("Condition"), "KeyAuth", name)
        # One deployment per ApiAuth value, so changing it redeploys the methods.
        deployments = {n: r.get("Condition") for n, r in self.resources.items() if r["Type"] == "AWS::ApiGateway::Deployment"}
        self.assertEqual(sorted(deployments.values()), ["AuthIsBoth", "AuthIsIam", "AuthIsKey"])
        permission = self.resource("ApiInvokePermission")["Properties"]
        self.assertEqual(permission["Principal"], "apigateway.amazonaws.com")
        stage = self.resource("BackupApiStage")["Properties"]
        self.assertIn("AccessLogSetting", stage)
        self.assertIs(stage["TracingEnabled"], True)
        allowed = re.search(r'const ALLOWED_HEADERS: &str =\s*"([^"]+)"',
                            (ROOT / "src/triggers/api.rs").read_text()).group(1)
        for kind in ("4xx", "5xx"):
            headers = self.resource(f"ApiGatewayResponse{kind}")["Properties"]["ResponseParameters"]
            self.assertIn("gatewayresponse.header.Access-Control-Allow-Origin", headers, kind)
            self.assertEqual(headers["gatewayresponse.header.Access-Control-Allow-Headers"], f"'{allowed}'",
                             "the gateway's errors allow what the function's preflight allows")

    def test_the_optional_console_is_private_behind_cloudfront_and_becomes_the_allowed_origin(self):
        self.assertEqual(self.t["Parameters"]["DeployConsole"]["Default"], "false")
        for name in ("ConsoleBucket", "ConsoleBucketPolicy", "ConsoleOriginAccessControl", "ConsoleDistribution"):
            self.assertEqual(self.resource(name).get("Condition"), "ConsoleEnabled", name)
        bucket = self.resource("ConsoleBucket")["Properties"]
        self.assertTrue(all(bucket["PublicAccessBlockConfiguration"].values()))
        grant = self.resource("ConsoleBucketPolicy")["Properties"]["PolicyDocument"]["Statement"][0]
        self.assertEqual(grant["Principal"], {"Service": "cloudfront.amazonaws.com"})
        self.assertEqual(grant["Action"], "s3:GetObject")
        self.assertIn("${ConsoleDistribution}", grant["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"])
        config = self.resource("ConsoleDistribution")["Properties"]["DistributionConfig"]
        self.assertEqual(config["DefaultCacheBehavior"]["ViewerProtocolPolicy"], "redirect-to-https")
        self.assertIn("OriginAccessControlId", config["Origins"][0])
        origins = self.resource("ApiFunction")["Properties"]["Environment"]["Variables"]["DDB_BACKUP_CORS_ORIGINS"]
        self.assertEqual(origins["Fn::If"][0], "ConsoleEnabled")
        self.assertIn("${ConsoleDistribution.DomainName}", origins["Fn::If"][1]["Fn::Sub"])
        for kind in ("4xx", "5xx"):
            headers = self.resource(f"ApiGatewayResponse{kind}")["Properties"]["ResponseParameters"]
            self.assertEqual(headers["gatewayresponse.header.Access-Control-Allow-Origin"]["Fn::If"][0], "ConsoleEnabled")

    def test_queue_has_a_dlq_and_a_visibility_timeout_of_six_worker_timeouts(self):
        queue = self.resource("JobQueue")["Properties"]
        worker = self.resource("WorkerFunction")["Properties"]
        self.assertGreaterEqual(queue["RedrivePolicy"]["maxReceiveCount"], 5)
        self.assertGreaterEqual(queue["VisibilityTimeout"], 6 * worker["Timeout"])
        self.assertIs(queue["SqsManagedSseEnabled"], True)
        self.assertIs(self.resource("DeadLetterQueue")["Properties"]["SqsManagedSseEnabled"], True)
        jobs = worker["Events"]["Jobs"]["Properties"]
        self.assertEqual(jobs["FunctionResponseTypes"], ["ReportBatchItemFailures"])

    def test_the_schedule_enqueues_the_job_the_worker_accepts(self):
        target = self.resource("NightlySchedule")["Properties"]["Target"]
        self.assertEqual(target["Arn"], {"Fn::GetAtt": ["JobQueue", "Arn"]})
        text = target["Input"]["Fn::Sub"]
        for needle in ('"trigger":"schedule"', '"job_id":"<aws.scheduler.execution-id>"',
                       '"requested_at":"<aws.scheduler.scheduled-time>"'):
            self.assertIn(needle, text)

    def test_dead_letters_are_recorded_by_the_worker_and_kept_for_a_redrive(self):
        events = self.resource("WorkerFunction")["Properties"]["Events"]
        dead = events["DeadLetters"]["Properties"]
        self.assertEqual(dead["Queue"], {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
        self.assertEqual(dead["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        dlq = self.resource("DeadLetterQueue")["Properties"]
        # Lambda refuses an SQS source whose visibility is shorter than the function's timeout.
        timeout = self.resource("WorkerFunction")["Properties"]["Timeout"]
        self.assertGreaterEqual(dlq["VisibilityTimeout"], timeout)
        self.assertEqual(dlq["RedrivePolicy"]["deadLetterTargetArn"], {"Fn::GetAtt": ["FailedJobsQueue", "Arn"]})
        env = self.resource("WorkerFunction")["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["DDB_BACKUP_FAILED_JOBS_QUEUE_URL"], {"Ref": "FailedJobsQueue"})
        self.assertEqual(env["DDB_BACKUP_DLQ_URL"], {"Ref": "DeadLetterQueue"})
        role = self.resource("WorkerRole")["Properties"]["Policies"][0]["PolicyDocument"]
        grants = {s["Sid"]: s for s in statements(role)}
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"):
            self.assertIn(action, grants["DeadLetterHopelessJobs"]["Action"])
            self.assertIn(action, grants["ConsumeAndContinueJobs"]["Action"])
        self.assertEqual(grants["KeepFailedJobs"]["Resource"], {"Fn::GetAtt": ["FailedJobsQueue", "Arn"]})
        alarm = self.alarms()["DeadLetterAlarm"]
        self.assertEqual(alarm["Dimensions"][0]["Value"], {"Fn::GetAtt": ["FailedJobsQueue", "QueueName"]})
        # A dead letter the worker cannot record is not left waiting in silence.
        backlog = self.alarms()["DeadLetterBacklogAlarm"]
        self.assertEqual(backlog["Dimensions"][0]["Value"], {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]})
        self.assertEqual(backlog["MetricName"], "ApproximateAgeOfOldestMessage")

    def test_the_hourly_sweep_sends_what_the_worker_sweeps_on_and_its_alarm_reads_its_metric(self):
        target = self.resource("StuckJobSweepSchedule")["Properties"]["Target"]
        self.assertEqual(target["Arn"], {"Fn::GetAtt": ["JobQueue", "Arn"]})
        self.assertEqual(json.loads(target["Input"]), {"kind": "sweep"})
        sweep = (ROOT / "src" / "triggers" / "worker" / "sweep.rs").read_text()
        self.assertIn('map(|k| k == "sweep")', sweep)
        source = (ROOT / "src" / "triggers" / "metrics.rs").read_text()
        metric = re.search(r'pub const JOB_STUCK: &str = "([^"]+)"', source).group(1)
        alarm = self.alarms()["StuckJobAlarm"]
        self.assertEqual((alarm["Namespace"], alarm["MetricName"]), ("ddb-backup", metric))
        self.assertEqual(alarm["Dimensions"], [{"Name": "Table", "Value": {"Ref": "TableName"}}])
        self.assertEqual((alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]),
                         ("Sum", 0, "GreaterThanThreshold"))

    def test_functions_are_arm64_cargo_lambda_builds(self):
        globals_ = self.t["Globals"]["Function"]
        self.assertEqual(globals_["Architectures"], ["arm64"])
        self.assertEqual(globals_["Runtime"], "provided.al2023")
        for name, binary in (("WorkerFunction", "backup-worker"), ("ApiFunction", "backup-api"),
                             ("ChangesFunction", "backup-changes")):
            meta = self.resource(name)["Metadata"]
            self.assertEqual(meta["BuildMethod"], "rust-cargolambda")
            self.assertEqual(meta["BuildProperties"]["Binary"], binary)


    def test_change_capture_reads_the_tables_stream_in_order_and_records_every_lost_batch(self):
        capture = ("ChangesLogGroup", "ChangeFailuresQueue", "ChangeFailuresQueuePolicy", "ChangesPolicy",
                   "ChangesFunction", "ChangesLostAlarm", "ChangeCaptureLagAlarm")
        for name in capture:
            self.assertEqual(self.resource(name).get("Condition"), "CaptureChanges", name)
        self.assertEqual(self.t["Conditions"]["CaptureChanges"], {"Fn::Not": [{"Fn::Equals": [{"Ref": "TableStreamArn"}, ""]}]})
        self.assertEqual(self.t["Parameters"]["TableStreamArn"]["Default"], "")
        function = self.resource("ChangesFunction")["Properties"]
        # The bucket policy lets only the worker's role write under the backups' prefix.
        self.assertEqual(function["Role"], {"Fn::GetAtt": ["WorkerRole", "Arn"]})
        stream = function["Events"]["Changes"]["Properties"]
        self.assertEqual(function["Events"]["Changes"]["Type"], "DynamoDB")
        self.assertEqual(stream["Stream"], {"Ref": "TableStreamArn"})
        self.assertEqual(stream["StartingPosition"], "TRIM_HORIZON")
        self.assertEqual(stream["ParallelizationFactor"], 1)
        self.assertTrue(stream["BisectBatchOnFunctionError"])
        self.assertEqual(stream["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertEqual(stream["DestinationConfig"]["OnFailure"]["Destination"],
                         {"Fn::GetAtt": ["ChangeFailuresQueue", "Arn"]})
        self.assertEqual(stream["MaximumBatchingWindowInSeconds"], {"Ref": "ChangeBatchingWindowSeconds"})
        window = self.t["Parameters"]["ChangeBatchingWindowSeconds"]
        self.assertEqual((window["Default"], window["MinValue"], window["MaxValue"]), (60, 0, 300))
        lost = function["Events"]["LostBatches"]
        self.assertEqual(lost["Properties"]["Queue"], {"Fn::GetAtt": ["ChangeFailuresQueue", "Arn"]})
        read = self.statement("ChangesPolicy", "ReadTheTableStream")
        self.assertEqual(sorted(as_list(read["Action"])), ["dynamodb:DescribeStream", "dynamodb:GetRecords",
                                                           "dynamodb:GetShardIterator", "dynamodb:ListStreams"])
        self.assertIn({"Ref": "TableStreamArn"}, read["Resource"])
        self.assertTrue(all("table/${TableName}/stream" in str(r) or r == {"Ref": "TableStreamArn"}
                            for r in read["Resource"]), read["Resource"])
        self.assertEqual(self.resource("ChangesPolicy")["Properties"]["Roles"], [{"Ref": "WorkerRole"}])

    # ------------------------------------------------------------ deploys on a new account

    def pattern(self, name):
        return re.compile(self.t["Parameters"][name]["AllowedPattern"])

    def test_parameters_refuse_values_that_would_fail_mid_deploy(self):
        params = self.t["Parameters"]
        # The access-log bucket is "<BucketName>-access-logs"; S3 names are at most 63.
        self.assertLessEqual(params["BucketName"]["MaxLength"] + len("-access-logs"), 63)
        self.assertEqual(self.resource("AccessLogBucket")["Properties"]["BucketName"],
                         {"Fn::Sub": "${BucketName}-access-logs"})
        bucket = self.pattern("BucketName")
        self.assertTrue(bucket.fullmatch("student-backup-20250706"))
        self.assertFalse(bucket.fullmatch("Student_Backup"))
        # The worker's SES permission splits SenderEmail at "@": it must hold exactly one.
        sender = self.pattern("SenderEmail")
        for good in ("backup@example.org", "ops.backup+ddb@mail.example.co.uk"):
            self.assertTrue(sender.fullmatch(good), good)
        for bad in ("backup", "backup@", "a@b", "a@b@c.com", "a@b.com,c@d.com", " a@b.com"):
            self.assertFalse(sender.fullmatch(bad), bad)
        self.assertNotIn("Default", params["SenderEmail"], "no example sender that SES would refuse")
        origin = self.pattern("AllowedOrigin")
        self.assertTrue(origin.fullmatch("https://d111111abcdef8.cloudfront.net"))
        self.assertTrue(origin.fullmatch("http://localhost:8080"))
        for bad in ("https://d1.cloudfront.net/", "d1.cloudfront.net", "http://example.com", "*"):
            self.assertFalse(origin.fullmatch(bad), bad)
        self.assertNotIn("Default", params["AllowedOrigin"], "the web origin has no safe default")
        notify = self.pattern("NotifyEmails")
        self.assertTrue(notify.fullmatch(""))
        self.assertTrue(notify.fullmatch("a@b.com,c@d.org"))
        self.assertFalse(notify.fullmatch("a@b.com, c@d.org"))
        for name in ("AlarmEmail", "AlarmTopicArn"):
            self.assertTrue(self.pattern(name).fullmatch(""), name)
        self.assertTrue(self.pattern("AlarmTopicArn").fullmatch("arn:aws:sns:us-east-1:123456789012:ops"))
        # S3 refuses expiring before transitioning: the defaults keep the order.
        self.assertLess(params["TransitionDays"]["Default"], params["BackupRetentionDays"]["Default"])

    def test_every_kept_resource_is_kept_except_when_its_first_creation_fails(self):
        # Retain alone keeps the buckets of a failed first create, and every retry meets
        # "already exists"; the bucket policies must stay with the buckets they protect.
        kept = {n for n, r in self.resources.items() if "DeletionPolicy" in r}
        self.assertEqual(kept, {"BackupKey", "AccessLogBucket", "AccessLogBucketPolicy", "BackupBucket",
                                "BackupBucketPolicy", "ApiGatewayCloudWatchRole", "ApiGatewayAccount"})
        for name in kept:
            self.assertEqual(self.resources[name]["DeletionPolicy"], "RetainExceptOnCreate", name)
            self.assertEqual(self.resources[name].get("UpdateReplacePolicy"), "Retain", name)

    def test_a_later_stack_can_use_the_kept_buckets(self):
        self.assertEqual(self.t["Parameters"]["BucketExists"]["Default"], "false")
        self.assertEqual(self.t["Conditions"]["CreateBuckets"], {"Fn::Equals": [{"Ref": "BucketExists"}, "false"]})
        for name in ("BackupBucket", "AccessLogBucket"):
            self.assertEqual(self.resource(name).get("Condition"), "CreateBuckets", name)
        # Nothing else names the buckets' resources, only their names, so the stack stands either way.
        text = str({n: r for n, r in self.resources.items() if n not in ("BackupBucket", "AccessLogBucket")})
        for ref in ("'Fn::GetAtt': ['BackupBucket'", "'Fn::GetAtt': ['AccessLogBucket'", "${BackupBucket.",
                    "${AccessLogBucket."):
            self.assertNotIn(ref, text)
        # Kept buckets keep their kept policies: CloudFormation cannot create a bucket policy
        # where one exists.
        for name, logical in (("BackupBucketPolicy", "BackupBucket"), ("AccessLogBucketPolicy", "AccessLogBucket")):
            self.assertEqual(self.resource(name).get("Condition"), "CreateBuckets", name)
            self.assertEqual(self.resource(name)["Properties"]["Bucket"], {"Ref": logical}, name)
        # Nor can it give kept buckets a new key or replication.
        rule = self.t["Rules"]["KeptBucketsKeepTheirKeyAndReplication"]
        self.assertEqual(rule["RuleCondition"], {"Fn::Equals": [{"Ref": "BucketExists"}, "true"]})
        self.assertIn("UseKms", str(rule["Assertions"]))
        self.assertIn("ReplicaBucketArn", str(rule["Assertions"]))

    def test_buckets_that_log_wait_for_the_log_buckets_policy(self):
        # S3 refuses logging into a bucket-owner-enforced bucket that does not let the logging
        # service write yet; the policy must name every bucket that logs there.
        sources = self.statement("AccessLogBucketPolicy", "S3ServerAccessLogs")["Condition"]["ArnLike"]["aws:SourceArn"]
        for name, r in self.resources.items():
            if r["Type"] == "AWS::S3::Bucket" and "LoggingConfiguration" in r["Properties"]:
                after = as_list(r.get("DependsOn", []))
                if "LogBucketReady" in after:  # the policy is conditional: a handle carries it
                    after = [self.resource("LogBucketReady")["Metadata"]["After"]["Fn::If"][1]["Ref"]]
                self.assertIn("AccessLogBucketPolicy", after, name)
                self.assertEqual(r["Properties"]["LoggingConfiguration"]["DestinationBucketName"],
                                 {"Fn::Sub": "${BucketName}-access-logs"}, name)
                arn = {"Fn::Sub": "arn:${AWS::Partition}:s3:::" + r["Properties"]["BucketName"].get("Fn::Sub", "${BucketName}")}
                self.assertIn(arn, sources, f"{name} logs into a bucket whose policy does not name it")

    def test_no_queue_has_a_name_that_a_deleted_one_holds_for_a_minute(self):
        for name, r in self.resources.items():
            if r["Type"] == "AWS::SQS::Queue":
                self.assertNotIn("QueueName", r["Properties"], name)

    def test_the_worker_may_email_in_the_ses_sandbox_from_the_sender_to_the_recipients_only(self):
        policy = self.resource("WorkerRole")["Properties"]["Policies"][0]["PolicyDocument"]
        send = [s for s in statements(policy) if s.get("Sid") == "SendSummaryEmail"][0]
        # In the sandbox SES authorizes against each recipient's identity too.
        self.assertEqual(send["Resource"],
                         {"Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*"})
        self.assertEqual(send["Condition"]["StringEquals"], {"ses:FromAddress": {"Ref": "SenderEmail"}})
        self.assertIn("ses:Recipients", send["Condition"]["ForAllValues:StringEquals"])

    def test_api_gateways_logging_role_is_awss_own_and_outlives_the_stack(self):
        role = self.resource("ApiGatewayCloudWatchRole")["Properties"]
        self.assertEqual(role["ManagedPolicyArns"], [
            {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}])
        self.assertNotIn("Policies", role, "a role scoped to this stack's logs silences the region's other APIs")
        self.assertEqual(self.resource("ApiGatewayAccount")["Condition"], "ApiGatewayLoggingRole")

    def test_gateway_errors_name_an_origin_the_api_allows(self):
        for name in ("ApiGatewayResponse4xx", "ApiGatewayResponse5xx"):
            origin = self.resource(name)["Properties"]["ResponseParameters"][
                "gatewayresponse.header.Access-Control-Allow-Origin"]
            # With the console there are two allowed origins: the error names the caller's.
            self.assertEqual(origin, {"Fn::If": ["ConsoleEnabled", "method.request.header.Origin",
                                                 {"Fn::Sub": "'${AllowedOrigin}'"}]}, name)

    def test_the_api_may_tell_a_missing_job_from_a_forbidden_one(self):
        for name in ("WorkerRole", "ApiRole"):
            policy = self.resource(name)["Properties"]["Policies"][0]["PolicyDocument"]
            for s in statements(policy):
                if "s3:ListBucket" in as_list(s["Action"]):
                    self.assertNotIn("Condition", s, f"{name}: S3 checks ListBucket without a prefix for 404s")

    def test_names_and_schedule_are_checked_before_anything_is_created(self):
        cases = {
            "ScheduleExpression": (["cron(0 2 * * ? *)", "cron(15 3 ? * MON-FRI *)", "rate(12 hours)", "rate(1 day)"],
                                   ["cron(0 2 * * *)", "daily", "rate(0 hours)", "rate(5 weeks)", "cron()"]),
            "ScheduleTimezone": (["UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5"],
                                 ["", "Europe/ Berlin", "UTC;"]),
            "BucketName": (["student-backup-20250706"], ["student.backup", "Student_Backup", "-x-"]),
            "WorkerRoleName": (["DynamoDBBackupRole", "ops+backup@x"], ["", "a/b", "x" * 65]),
            "WorkerFunctionName": (["BackupDynamoDBAndSendEmail"], ["", "a.b", "x" * 65]),
            "ApiName": (["student API"], ["", "x" * 129]),
            "ApiKeyName": (["StudentApiKey"], [""]),
            "UsagePlanName": (["StudentUsagePlan"], [""]),
        }
        for name, (good, bad) in cases.items():
            pattern = self.pattern(name)
            for value in good:
                self.assertTrue(pattern.fullmatch(value), f"{name} refuses {value}")
            for value in bad:
                self.assertFalse(pattern.fullmatch(value), f"{name} accepts {value}")

    def test_backups_can_be_copied_to_another_region_or_account_under_object_lock(self):
        replication = self.resource("BackupBucket")["Properties"]["ReplicationConfiguration"]
        self.assertEqual(replication["Fn::If"][0], "HasReplica")
        self.assertEqual(replication["Fn::If"][2], {"Ref": "AWS::NoValue"})
        rule = replication["Fn::If"][1]["Rules"][0]
        self.assertEqual(rule["Filter"], {"Prefix": {"Ref": "BackupPrefix"}})
        self.assertEqual(rule["DeleteMarkerReplication"], {"Status": "Disabled"}, "a delete here is not one there")
        self.assertEqual(rule["Destination"]["Bucket"], {"Ref": "ReplicaBucketArn"})
        role = self.resource("ReplicationRole")
        self.assertEqual(role["Condition"], "HasReplica")
        actions = {a for s in statements(role["Properties"]["Policies"][0]["PolicyDocument"]) for a in as_list(s["Action"])}
        self.assertIn("s3:GetObjectRetention", actions, "copies keep their Object Lock retention")
        self.assertFalse({a for a in actions if "Delete" in a}, "the copy is never deleted through replication")
        self.assertTrue(self.pattern("ReplicaBucketArn").fullmatch("arn:aws:s3:::backups-copy-eu"))
        self.assertFalse(self.pattern("ReplicaBucketArn").fullmatch("backups-copy-eu"))

    def test_rules_refuse_a_stack_whose_bucket_nobody_may_ever_change(self):
        rule = self.t["Rules"]["SomeoneMayUpdateTheBucket"]["Assertions"][0]["Assert"]
        self.assertEqual(rule, {"Fn::Not": [{"Fn::And": [{"Fn::Equals": [{"Ref": "DeployerArn"}, ""]},
                                                        {"Fn::Equals": [{"Ref": "BreakGlassRoleArn"}, ""]}]}]})

    def test_rules_refuse_a_stack_whose_alarms_reach_nobody(self):
        rule = self.t["Rules"]["AlarmsReachSomeone"]["Assertions"][0]["Assert"]
        text = str(rule)
        self.assertIn("AlarmEmail", text)
        self.assertIn("AlarmTopicArn", text)
        self.assertIn("Fn::Not", rule)

    def test_no_reserved_concurrency_the_event_source_caps_jobs_at_once(self):
        for name in ("WorkerFunction", "ApiFunction"):
            self.assertNotIn("ReservedConcurrentExecutions", self.resource(name)["Properties"], name)
        self.assertNotIn("ReservedConcurrentExecutions", self.t["Globals"]["Function"])
        jobs = self.resource("WorkerFunction")["Properties"]["Events"]["Jobs"]["Properties"]
        self.assertEqual(jobs["ScalingConfig"]["MaximumConcurrency"], {"Ref": "WorkerConcurrency"})
        concurrency = self.t["Parameters"]["WorkerConcurrency"]
        self.assertEqual(concurrency["Default"], 2)
        # SQS event sources accept MaximumConcurrency from 2 to 1000.
        self.assertEqual((concurrency["MinValue"], concurrency["MaxValue"]), (2, 1000))

    def test_both_functions_cap_a_jobs_workers_at_the_max_workers_parameter(self):
        env = self.t["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(env["DDB_BACKUP_MAX_WORKERS"], {"Ref": "MaxWorkers"})
        for name in ("WorkerFunction", "ApiFunction"):
            own = self.resource(name)["Properties"].get("Environment", {}).get("Variables", {})
            self.assertNotIn("DDB_BACKUP_MAX_WORKERS", own, name)
        workers = self.t["Parameters"]["MaxWorkers"]
        # The job schema's `workers` goes from 1 to 1000 (src/model/job/mod.rs MAX_WORKERS).
        self.assertEqual((workers["MinValue"], workers["MaxValue"], workers["Default"]), (1, 1000, 100))
        limit = re.search(r"pub const MAX_WORKERS: u32 = (\d+);",
                          (ROOT / "src/model/job/mod.rs").read_text())
        self.assertEqual(int(limit.group(1)), workers["MaxValue"])

    def alarms(self):
        return {n: r["Properties"] for n, r in self.resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}

    def test_every_alarm_notifies_the_stacks_topic_and_the_optional_existing_one(self):
        self.assertEqual(self.resource("AlarmTopic")["Type"], "AWS::SNS::Topic")
        subscription = self.resource("AlarmEmailSubscription")
        self.assertEqual(subscription["Condition"], "HasAlarmEmail")
        self.assertEqual(subscription["Properties"]["Protocol"], "email")
        self.assertEqual(subscription["Properties"]["Endpoint"], {"Ref": "AlarmEmail"})
        alarms = self.alarms()
        self.assertGreaterEqual(len(alarms), 7)
        for name, alarm in alarms.items():
            with_existing, without = alarm["AlarmActions"]["Fn::If"][1:]
            self.assertEqual(alarm["AlarmActions"]["Fn::If"][0], "HasAlarmTopic", name)
            self.assertIn({"Ref": "AlarmTopic"}, with_existing, name)
            self.assertIn({"Ref": "AlarmTopicArn"}, with_existing, name)
            self.assertEqual(without, [{"Ref": "AlarmTopic"}], name)

    def watched(self):
        """(namespace, metric name) of every alarm, metric math included."""
        pairs = {}
        for name, alarm in self.alarms().items():
            if "MetricName" in alarm:
                pairs.setdefault((alarm["Namespace"], alarm["MetricName"]), []).append(name)
            for query in alarm.get("Metrics", []):
                if "MetricStat" in query:
                    metric = query["MetricStat"]["Metric"]
                    pairs.setdefault((metric["Namespace"], metric["MetricName"]), []).append(name)
        return pairs

    def test_alarms_watch_every_way_a_nightly_backup_can_silently_stop(self):
        watched = self.watched()
        for pair in [
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),  # the dead-letter queue
            ("AWS/SQS", "ApproximateAgeOfOldestMessage"),  # jobs waiting
            ("AWS/Lambda", "Errors"),
            ("AWS/Lambda", "Throttles"),
            ("AWS/ApiGateway", "5XXError"),
            ("AWS/Scheduler", "InvocationDroppedCount"),
            ("AWS/Scheduler", "InvocationsSentToDeadLetterCount"),
            ("AWS/Scheduler", "InvocationsFailedToBeSentToDeadLetterCount"),
            ("ddb-backup", "BackupSucceeded"),
        ]:
            self.assertIn(pair, watched, pair)
        age = self.alarms()["QueueAgeAlarm"]
        self.assertEqual(age["Dimensions"][0]["Value"], {"Fn::GetAtt": ["JobQueue", "QueueName"]})
        for query in self.alarms()["ScheduleDeliveryAlarm"]["Metrics"]:
            if "MetricStat" in query:
                self.assertEqual(query["MetricStat"]["Metric"]["Dimensions"],
                                 [{"Name": "ScheduleGroup", "Value": {"Ref": "ScheduleGroup"}}])
        self.assertEqual(self.resource("NightlySchedule")["Properties"]["GroupName"], {"Ref": "ScheduleGroup"})

    def test_the_missed_backup_alarm_reads_the_metric_the_worker_emits(self):
        alarm = self.alarms()["MissedBackupAlarm"]
        source = (ROOT / "src" / "triggers" / "metrics.rs").read_text()
        namespace = re.search(r'pub const NAMESPACE: &str = "([^"]+)"', source).group(1)
        metric = re.search(r'pub const BACKUP_SUCCEEDED: &str = "([^"]+)"', source).group(1)
        self.assertEqual((alarm["Namespace"], alarm["MetricName"]), (namespace, metric))
        self.assertIn('"Dimensions": [["Table"]]', source)
        self.assertEqual(alarm["Dimensions"], [{"Name": "Table", "Value": {"Ref": "TableName"}}])
        # Every hour without a success breaches; all of the last N hours must, for the alarm.
        self.assertEqual(alarm["TreatMissingData"], "breaching")
        self.assertEqual(alarm["ComparisonOperator"], "LessThanThreshold")
        self.assertEqual((alarm["Statistic"], alarm["Threshold"], alarm["Period"]), ("Sum", 1, 3600))
        self.assertEqual(alarm["EvaluationPeriods"], {"Ref": "MissedBackupAlarmHours"})
        self.assertEqual(alarm["DatapointsToAlarm"], {"Ref": "MissedBackupAlarmHours"})
        hours = self.t["Parameters"]["MissedBackupAlarmHours"]
        self.assertEqual(hours["Default"], 26)
        # CloudWatch evaluates at most 7 days for hourly periods.
        self.assertLessEqual(hours["MaxValue"] * 3600, 7 * 86400)

    def test_the_shrink_alarm_reads_the_metric_the_worker_emits_at_the_stacks_threshold(self):
        alarm = self.alarms()["TableShrankAlarm"]
        source = (ROOT / "src" / "triggers" / "metrics.rs").read_text()
        metric = re.search(r'pub const TABLE_SHRANK: &str = "([^"]+)"', source).group(1)
        self.assertEqual((alarm["Namespace"], alarm["MetricName"]), ("ddb-backup", metric))
        self.assertEqual(alarm["Dimensions"], [{"Name": "Table", "Value": {"Ref": "TableName"}}])
        self.assertEqual((alarm["Statistic"], alarm["Threshold"]), ("Maximum", 1))
        self.assertEqual(alarm["ComparisonOperator"], "GreaterThanOrEqualToThreshold")
        # No backup, no data: that is the missed-backup alarm's business, not this one's.
        self.assertEqual(alarm["TreatMissingData"], "notBreaching")
        env = self.resource("WorkerFunction")["Properties"]["Environment"]["Variables"]
        self.assertEqual(env["DDB_BACKUP_SHRINK_ALERT_PERCENT"], {"Ref": "ShrinkAlertPercent"})
        self.assertEqual(self.t["Parameters"]["ShrinkAlertPercent"]["Default"], 20)

    def test_the_kms_key_outlives_the_stack_and_is_used_only_through_s3(self):
        key = self.resource("BackupKey")
        self.assertEqual(key.get("DeletionPolicy"), "RetainExceptOnCreate")
        self.assertEqual(key.get("UpdateReplacePolicy"), "Retain")
        via_s3 = {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
        for name in ("WorkerKmsPolicy", "ApiKmsPolicy"):
            for s in statements(self.resource(name)["Properties"]["PolicyDocument"]):
                self.assertEqual(s.get("Condition", {}).get("StringEquals"), via_s3, name)
        for s in statements(key["Properties"]["KeyPolicy"]):
            if s["Effect"] == "Allow" and s["Sid"] != "AccountAdministers":
                self.assertEqual(s.get("Condition", {}).get("StringEquals"), via_s3, s["Sid"])
        # An administrator's kms:* must not make the backups unreadable in one call.
        deny = [s for s in statements(key["Properties"]["KeyPolicy"]) if s["Effect"] == "Deny"]
        self.assertEqual(len(deny), 1)
        self.assertEqual(sorted(as_list(deny[0]["Action"])), ["kms:DisableKey", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"])
        self.assertEqual(deny[0]["Condition"], self.statement("BackupBucketPolicy", "DenyLooseningProtection")["Condition"])


if __name__ == "__main__":
    unittest.main()

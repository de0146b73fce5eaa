"""Security invariants of infra/template.yaml, so a later edit cannot quietly loosen them.

Run by scripts/infra-check.sh (after cfn-lint and checkov): python -m unittest discover -s tests/infra
"""

import pathlib
import unittest

from cfnlint.decode import decode

TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "infra" / "template.yaml"


def load():
    template, errors = decode(str(TEMPLATE))
    if errors:
        raise AssertionError(f"template does not parse: {errors}")
    return template


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements(policy_document):
    return as_list(policy_document["Statement"])


class TemplateInvariants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.t = load()
        cls.resources = cls.t["Resources"]

    def resource(self, name):
        self.assertIn(name, self.resources, f"{name} is missing")
        return self.resources[name]

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
        self.assertEqual(self.resource("BackupBucket").get("DeletionPolicy"), "Retain")

    def test_bucket_policy_lets_only_the_worker_role_write_backups_and_denies_plain_http(self):
        doc = self.resource("BackupBucketPolicy")["Properties"]["PolicyDocument"]
        stmts = statements(doc)
        allows = [s for s in stmts if s["Effect"] == "Allow"]
        worker = [s for s in allows if s["Principal"] == {"AWS": {"Fn::GetAtt": ["WorkerRole", "Arn"]}}]
        self.assertEqual(len(worker), 1)
        self.assertEqual(sorted(as_list(worker[0]["Action"])), ["s3:AbortMultipartUpload", "s3:PutObject"])
        self.assertNotIn("s3:PutObjectAcl", str(doc), "ACLs are disabled; PutObjectAcl stays out")
        for s in allows:
            self.assertNotEqual(s["Principal"], "*", "no public allow")
            self.assertNotIn("*", as_list(s["Principal"].get("AWS", [])), "no public allow")
            for action in as_list(s["Action"]):
                self.assertNotIn("*", action, f"wildcard action {action}")
            if s is not worker[0]:
                self.assertNotIn("BackupPrefix", str(s["Resource"]), "only the worker writes backups")
        deny_others = [
            s for s in stmts
            if s["Effect"] == "Deny" and "ArnNotEquals" in s.get("Condition", {})
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

    def test_worker_reads_only_the_configured_table(self):
        policy = self.resource("WorkerRole")["Properties"]["Policies"][0]["PolicyDocument"]
        dynamo = [s for s in statements(policy) if any(a.startswith("dynamodb:") for a in as_list(s["Action"]))]
        self.assertEqual(len(dynamo), 1)
        self.assertEqual(sorted(as_list(dynamo[0]["Action"])), ["dynamodb:DescribeTable", "dynamodb:Scan"])
        self.assertIn("table/${TableName}", str(dynamo[0]["Resource"]))

    def test_options_needs_no_api_key_and_every_other_method_does(self):
        api = self.resource("BackupApi")["Properties"]
        self.assertIs(api["Auth"]["ApiKeyRequired"], True)
        events = self.resource("ApiFunction")["Properties"]["Events"]
        methods = {}
        for event in events.values():
            props = event["Properties"]
            key_required = props.get("Auth", {}).get("ApiKeyRequired", True)
            methods[(props["Path"], props["Method"])] = key_required
        self.assertEqual(
            methods,
            {
                ("/backup", "POST"): True,
                ("/backup/{job_id}", "GET"): True,
                ("/backup", "OPTIONS"): False,
                ("/backup/{job_id}", "OPTIONS"): False,
            },
        )
        for response in ("DEFAULT_4XX", "DEFAULT_5XX"):
            headers = api["GatewayResponses"][response]["ResponseParameters"]["Headers"]
            self.assertIn("Access-Control-Allow-Origin", headers, response)
        self.assertIn("AccessLogSetting", api)

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

    def test_functions_are_arm64_cargo_lambda_builds(self):
        globals_ = self.t["Globals"]["Function"]
        self.assertEqual(globals_["Architectures"], ["arm64"])
        self.assertEqual(globals_["Runtime"], "provided.al2023")
        for name, binary in (("WorkerFunction", "backup-worker"), ("ApiFunction", "backup-api")):
            meta = self.resource(name)["Metadata"]
            self.assertEqual(meta["BuildMethod"], "rust-cargolambda")
            self.assertEqual(meta["BuildProperties"]["Binary"], binary)


if __name__ == "__main__":
    unittest.main()

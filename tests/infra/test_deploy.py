"""The deploy path as a new user takes it: infra/samconfig.toml and scripts/deploy.sh.

scripts/deploy.sh runs here with --dry-run (no AWS account): it still asks its questions, checks
the answers and prints the exact `sam deploy` command it would run.
"""

import os
import pathlib
import subprocess
import tempfile
import tomllib
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]


class SamConfig(unittest.TestCase):
    def test_one_command_deploys_a_named_role_in_the_tutorials_region(self):
        config = tomllib.loads((ROOT / "infra" / "samconfig.toml").read_text())["default"]
        deploy = config["deploy"]["parameters"]
        # The template names its IAM role, which CloudFormation accepts only with NAMED_IAM.
        self.assertIn("CAPABILITY_NAMED_IAM", deploy["capabilities"].split())
        self.assertIs(deploy["resolve_s3"], True)
        self.assertEqual(config["global"]["parameters"]["region"], "us-east-1")
        self.assertTrue(config["global"]["parameters"]["stack_name"])
        self.assertIs(config["build"]["parameters"]["beta_features"], True)
        # Parameters (emails, origin) are the user's, never committed.
        self.assertNotIn("parameter_overrides", deploy)


class DeployScript(unittest.TestCase):
    def run_deploy(self, *args, answers="", params_file=None):
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, DDB_BACKUP_DEPLOY_PARAMETERS=params_file or f"{tmp}/params")
            return subprocess.run(
                [str(ROOT / "scripts" / "deploy.sh"), "--dry-run", *args],
                input=answers, capture_output=True, text=True, env=env, timeout=60,
            )

    def test_guided_asks_only_what_has_no_safe_default_and_deploys_with_it(self):
        out = self.run_deploy(
            "--guided",
            answers="backup@ops.example.org\nalarms@ops.example.org\nhttps://d111111abcdef8.cloudfront.net\n\n",
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        for question in ("Sender", "alarms", "Origin", "bucket"):
            self.assertIn(question, out.stderr)
        lines = out.stdout.strip().splitlines()
        self.assertEqual(lines[0], "scripts/package.sh", "deploy ships what package.sh built and checked")
        self.assertEqual(
            lines[1],
            "(cd infra && sam deploy --parameter-overrides SenderEmail=backup@ops.example.org "
            "AlarmEmail=alarms@ops.example.org AllowedOrigin=https://d111111abcdef8.cloudfront.net "
            "BucketName=student-backup-20250706)",
        )

    def test_later_deploys_reuse_the_kept_answers_and_take_overrides(self):
        with tempfile.TemporaryDirectory() as tmp:
            params = pathlib.Path(tmp) / "params"
            params.write_text("SenderEmail=backup@ops.example.org\nAllowedOrigin=https://d1.cloudfront.net\n")
            out = self.run_deploy("--parameter-overrides", "UseKms=true", "SenderEmail=new@ops.example.org",
                                  "--region", "eu-west-1", params_file=str(params))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn(
            "sam deploy --parameter-overrides SenderEmail=new@ops.example.org "
            "AllowedOrigin=https://d1.cloudfront.net UseKms=true --region eu-west-1",
            out.stdout,
        )

    def test_bad_answers_fail_at_once_naming_the_parameter(self):
        cases = {
            "backup\n": "SenderEmail",
            "backup@ops.example.org\nalarms@ops\n": "AlarmEmail",
            "backup@ops.example.org\nalarms@ops.example.org\nhttps://d1.cloudfront.net/\n": "AllowedOrigin",
            "backup@ops.example.org\nalarms@ops.example.org\nhttps://d1.cloudfront.net\nMy_Bucket\n": "BucketName",
            "backup@ops.example.org\nalarms@ops.example.org\nhttps://d1.cloudfront.net\nmy.backups\n": "BucketName",
            "backup@ops.example.org\n\nhttps://d1.cloudfront.net\n\n": "AlarmEmail",
        }
        for answers, parameter in cases.items():
            out = self.run_deploy("--guided", answers=answers)
            self.assertNotEqual(out.returncode, 0, answers)
            self.assertIn(parameter, out.stderr.splitlines()[-1], answers)
            self.assertNotIn("sam deploy", out.stdout, answers)

    def test_expiring_backups_before_they_transition_is_refused_before_deploying(self):
        out = self.run_deploy("--parameter-overrides", "SenderEmail=a@ops.example.org",
                              "TransitionDays=90", "BackupRetentionDays=60")
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("TransitionDays (90) must be less than BackupRetentionDays (60)", out.stderr)

    def test_a_schedule_that_eventbridge_would_refuse_is_refused_before_deploying(self):
        for schedule in ("cron(0 2 * * *)", "daily"):
            out = self.run_deploy("--parameter-overrides", "SenderEmail=a@ops.example.org",
                                  f"ScheduleExpression={schedule}")
            self.assertNotEqual(out.returncode, 0, schedule)
            self.assertIn("ScheduleExpression", out.stderr.splitlines()[-1], schedule)
        out = self.run_deploy("--parameter-overrides", "SenderEmail=a@ops.example.org",
                              "ScheduleExpression=cron(30 1 ? * MON-FRI *)", 'ApiName=the "ops" API')
        self.assertEqual(out.returncode, 0, out.stderr)
        # sam reads an unquoted value up to its first space.
        self.assertIn('ScheduleExpression="cron(30 1 ? * MON-FRI *)" ApiName="the \\"ops\\" API"', out.stdout)

    def test_delete_asks_nothing_of_a_dry_run_and_deletes_nothing(self):
        out = self.run_deploy("--delete")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("delete stack ddb-backup in us-east-1", out.stdout)

    def test_a_first_deploy_without_answers_says_to_run_guided(self):
        out = self.run_deploy()
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("--guided", out.stderr)


if __name__ == "__main__":
    unittest.main()

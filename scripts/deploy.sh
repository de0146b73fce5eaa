#!/usr/bin/env bash
# Deploys the stack in infra/ to the AWS account of your credentials (region us-east-1 unless
# --region is given): builds both Lambdas (scripts/package.sh), then `sam deploy` with
# infra/samconfig.toml (stack ddb-backup, CAPABILITY_NAMED_IAM, SAM's managed bucket for packages).
#
#   scripts/deploy.sh --guided     first deploy: asks for the values that have no safe default
#                                  (sender email, alarm email, web origin, bucket name), checks
#                                  them, keeps them in infra/.deploy-parameters, deploys
#   scripts/deploy.sh              later deploys, with the kept answers
#   scripts/deploy.sh --dry-run    prints the commands instead of running them
# Other arguments go to `sam deploy` (e.g. --region eu-west-1, --parameter-overrides UseKms=true).
# Needs AWS credentials for `sam deploy` only; installs its tools like scripts/package.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

params_file="${DDB_BACKUP_DEPLOY_PARAMETERS:-infra/.deploy-parameters}"
fail() { echo "deploy: $*" >&2; exit 1; }

# Parameters: the kept answers, then --guided's, then --parameter-overrides Key=Value ... (last wins).
declare -A value=()
order=()
set_param() {
  [ -n "${value[$1]+set}" ] || order+=("$1")
  value["$1"]="$2"
}
if [ -f "$params_file" ]; then
  while IFS='=' read -r key rest; do
    [ -n "$key" ] && set_param "$key" "$rest"
  done <"$params_file"
fi

guided=0 dry_run=0 sam_args=() cli_params=() in_overrides=0
for arg in "$@"; do
  if [ "$in_overrides" = 1 ] && [[ "$arg" != --* ]]; then
    [[ "$arg" == *=* ]] || fail "--parameter-overrides takes Key=Value pairs, not '$arg'"
    cli_params+=("$arg")
    continue
  fi
  in_overrides=0
  case "$arg" in
    --guided) guided=1 ;;
    --dry-run) dry_run=1 ;;
    --parameter-overrides) in_overrides=1 ;;
    *) sam_args+=("$arg") ;;
  esac
done

# The template's own patterns (infra/template.yaml), checked here so a typo fails in a second,
# not halfway through a deployment.
email_re='^[^@[:space:],]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$'
origin_re='^https://[A-Za-z0-9.-]+(:[0-9]+)?$|^http://(localhost|127\.0\.0\.1)(:[0-9]+)?$'
bucket_re='^[a-z0-9][a-z0-9.-]{1,49}[a-z0-9]$'

check() {
  local name="$1" value="$2"
  case "$name" in
    SenderEmail)
      [[ "$value" =~ $email_re ]] || fail "SenderEmail '$value' is not one email address (e.g. backup@yourdomain.example)" ;;
    AlarmEmail)
      [ -z "$value" ] || [[ "$value" =~ $email_re ]] || fail "AlarmEmail '$value' is not one email address (or leave it empty and pass AlarmTopicArn)" ;;
    AllowedOrigin)
      [[ "$value" =~ $origin_re ]] || fail "AllowedOrigin '$value' is not an origin such as https://d111111abcdef8.cloudfront.net (scheme and host only, no trailing slash)" ;;
    BucketName)
      [[ "$value" =~ $bucket_re ]] || fail "BucketName '$value' must be 3 to 51 lowercase letters, digits, dots and hyphens (its log bucket appends -access-logs)" ;;
  esac
}

ask() {
  local name="$1" prompt="$2" default="${value[$1]:-${3:-}}" answer
  if [ -n "$default" ]; then prompt="$prompt [$default]"; fi
  printf '%s: ' "$prompt" >&2
  IFS= read -r answer || true
  answer="${answer:-$default}"
  check "$name" "$answer"
  set_param "$name" "$answer"
}

if [ "$guided" = 1 ]; then
  echo "deploy: a few values have no safe default; the rest are the template's (infra/README.md)." >&2
  ask SenderEmail "Sender of the summary emails (an SES identity you can verify)"
  ask AlarmEmail "Email for alarms (SNS mails a confirmation link)"
  ask AllowedOrigin "Origin of the web front end, e.g. https://d111111abcdef8.cloudfront.net"
  ask BucketName "Backup bucket name (globally unique)" "student-backup-20250706"
  if [ "$dry_run" = 0 ]; then
    mkdir -p "$(dirname "$params_file")"
    : >"$params_file"
    for key in "${order[@]}"; do
      printf '%s=%s\n' "$key" "${value[$key]}" >>"$params_file"
    done
    echo "deploy: answers kept in $params_file" >&2
  fi
elif [ "${#value[@]}" = 0 ] && [ "${#cli_params[@]}" = 0 ]; then
  fail "no deploy parameters yet: run scripts/deploy.sh --guided once (or pass --parameter-overrides)"
fi
for pair in "${cli_params[@]}"; do
  set_param "${pair%%=*}" "${pair#*=}"
done
if [ "$guided" = 1 ] && [ -z "${value[AlarmEmail]:-}" ] && [ -z "${value[AlarmTopicArn]:-}" ]; then
  fail "AlarmEmail: give an address (or pass AlarmTopicArn); alarms about missed backups must reach someone"
fi

overrides=()
for key in "${order[@]}"; do
  [ -n "$key" ] || continue
  check "$key" "${value[$key]}"
  overrides+=("$key=${value[$key]}")
done

# S3 refuses a lifecycle rule that expires backups before they transition; a CloudFormation rule
# cannot compare numbers, so check the pair here (template defaults 30 and 90).
transition="${value[TransitionDays]:-30}" retention="${value[BackupRetentionDays]:-90}"
[[ "$transition" =~ ^[0-9]+$ && "$retention" =~ ^[0-9]+$ ]] ||
  fail "TransitionDays and BackupRetentionDays must be whole numbers of days"
[ "$transition" -lt "$retention" ] ||
  fail "TransitionDays ($transition) must be less than BackupRetentionDays ($retention): S3 refuses to expire backups before they transition"

deploy=(sam deploy)
if [ "${#overrides[@]}" -gt 0 ]; then deploy+=(--parameter-overrides "${overrides[@]}"); fi
if [ "${#sam_args[@]}" -gt 0 ]; then deploy+=("${sam_args[@]}"); fi

if [ "$dry_run" = 1 ]; then
  echo "scripts/package.sh"
  printf '(cd infra && %s)\n' "${deploy[*]}"
  echo "upload web/ to the console bucket (DeployConsole=true)"
  exit 0
fi
scripts/package.sh
export PATH="$PWD/.venv-sam/bin:$PATH" SAM_CLI_TELEMETRY=0
(cd infra && "${deploy[@]}")

# The web console (DeployConsole=true): CloudFormation made its bucket and distribution; its
# files come from web/ in this checkout.
.venv-sam/bin/python - <<'PY'
import mimetypes, pathlib, tomllib
import boto3

config = tomllib.loads(pathlib.Path("infra/samconfig.toml").read_text())["default"]["global"]["parameters"]
cfn = boto3.client("cloudformation", region_name=config["region"])
stack = cfn.describe_stacks(StackName=config["stack_name"])["Stacks"][0]
outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
bucket = outputs.get("ConsoleBucketName")
if bucket:
    s3 = boto3.client("s3", region_name=config["region"])
    for path in sorted(pathlib.Path("web").iterdir()):
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.upload_file(str(path), bucket, path.name, ExtraArgs={"ContentType": content_type})
    print(f"deploy: web console uploaded; open {outputs['ConsoleUrl']}")
PY

#!/usr/bin/env bash
# Deploys the stack in infra/ to the AWS account of your credentials (region us-east-1 unless
# --region is given): builds both Lambdas (scripts/package.sh), then `sam deploy` with
# infra/samconfig.toml (stack ddb-backup, CAPABILITY_NAMED_IAM, SAM's managed bucket for packages).
#
#   scripts/deploy.sh --guided     first deploy: asks for the values that have no safe default
#                                  (sender email, alarm email, web origin, bucket name), checks
#                                  them, keeps them in infra/.deploy-parameters, deploys
#   scripts/deploy.sh              later deploys, with the kept answers
#   scripts/deploy.sh --preflight  only the checks: the answers, then the account (below);
#                                  prints the parameters it would deploy with, one a line
#   scripts/deploy.sh --dry-run    prints the commands instead of running them (no AWS calls)
#   scripts/deploy.sh --delete     deletes the stack (emptying the console's bucket first); the
#                                  backups, their buckets, policy and key stay
# Other arguments go to `sam deploy` (e.g. --region eu-west-1, --parameter-overrides UseKms=true).
#
# Before it builds or creates anything, it looks at the account (scripts/lib/preflight.py): on a
# first deploy, a bucket, role, function or log group that already has a name the stack would
# give fails it at once, naming the parameter that avoids it; an SES identity or an API Gateway
# logging role the account already has is used, not taken over; DeployerArn is set to you.
# Needs AWS credentials for all but --dry-run; installs its tools like scripts/package.sh.
set -euo pipefail
shopt -s inherit_errexit
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

guided=0 dry_run=0 preflight_only=0 delete=0 sam_args=() cli_params=() in_overrides=0
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
    --preflight) preflight_only=1 ;;
    --delete) delete=1 ;;
    --parameter-overrides) in_overrides=1 ;;
    *) sam_args+=("$arg") ;;
  esac
done

# The stack and region sam deploy will use: --stack-name and --region, or infra/samconfig.toml's.
stack="$(sed -n 's/^stack_name = "\(.*\)"$/\1/p' infra/samconfig.toml)"
region="$(sed -n 's/^region = "\(.*\)"$/\1/p' infra/samconfig.toml)"
for ((i = 0; i < ${#sam_args[@]}; i++)); do
  case "${sam_args[i]}" in
    --stack-name) stack="${sam_args[i + 1]:-}" ;;
    --stack-name=*) stack="${sam_args[i]#*=}" ;;
    --region) region="${sam_args[i + 1]:-}" ;;
    --region=*) region="${sam_args[i]#*=}" ;;
    # The account sam deploys to is the one the checks look at.
    --profile) export AWS_PROFILE="${sam_args[i + 1]:-}" ;;
    --profile=*) export AWS_PROFILE="${sam_args[i]#*=}" ;;
  esac
done
# The account's checks and the stack's upkeep (scripts/lib/preflight.py, stack.py) use boto3 from
# the SAM CLI's venv.
stack_tool() {
  .venv-sam/bin/python "scripts/lib/$1" "${@:2}"
}
need_stack_tool() {
  # shellcheck source=scripts/lib/install.sh
  . scripts/lib/install.sh
  ensure_venv .venv-sam scripts/requirements-sam.txt "the SAM CLI and cargo-lambda"
}

if [ "$delete" = 1 ]; then
  if [ "$dry_run" = 1 ]; then
    echo "delete stack $stack in $region (emptying its console bucket first); its backups stay"
    exit 0
  fi
  if [ -t 0 ]; then
    printf 'Delete stack %s in %s? Its backups, their buckets and key stay. [y/N] ' "$stack" "$region" >&2
    IFS= read -r answer || true
    [[ "$answer" =~ ^[yY] ]] || fail "not deleted"
  fi
  need_stack_tool
  stack_tool stack.py delete --stack "$stack" --region "$region"
  exit 0
fi

# The template's own patterns (infra/template.yaml), checked here so a typo fails in a second,
# not halfway through a deployment.
email_re='^[^@[:space:],]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$'
origin_re='^https://[A-Za-z0-9.-]+(:[0-9]+)?$|^http://(localhost|127\.0\.0\.1)(:[0-9]+)?$'
bucket_re='^[a-z0-9][a-z0-9-]{1,49}[a-z0-9]$'
schedule_re='^cron\([^ ()]+( [^ ()]+){5}\)$|^rate\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\)$'

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
      [[ "$value" =~ $bucket_re ]] || fail "BucketName '$value' must be 3 to 51 lowercase letters, digits and hyphens (no dots: they break TLS; its log bucket appends -access-logs)" ;;
    ScheduleExpression)
      [[ "$value" =~ $schedule_re ]] || fail "ScheduleExpression '$value' is not cron() with six fields (minutes hours day-of-month month day-of-week year, e.g. cron(0 2 * * ? *)) or rate(N unit)" ;;
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

# sam reads a value up to its first space unless it is quoted (a cron expression, an API name).
for_sam() {
  local key="${1%%=*}" val="${1#*=}"
  if [[ "$val" == *[[:space:]\"\\\']* ]]; then
    val="${val//\\/\\\\}"
    val="${val//\"/\\\"}"
    printf '%s="%s"' "$key" "$val"
  else
    printf '%s' "$1"
  fi
}

if [ "$dry_run" = 1 ]; then
  deploy=(sam deploy)
  if [ "${#overrides[@]}" -gt 0 ]; then
    deploy+=(--parameter-overrides)
    for pair in "${overrides[@]}"; do deploy+=("$(for_sam "$pair")"); done
  fi
  if [ "${#sam_args[@]}" -gt 0 ]; then deploy+=("${sam_args[@]}"); fi
  echo "scripts/package.sh"
  printf '(cd infra && %s)\n' "${deploy[*]}"
  echo "upload web/ to the console bucket (DeployConsole=true)"
  exit 0
fi

# The account, before anything is built or created (see the top of this file).
need_stack_tool
decided="$(stack_tool preflight.py --stack "$stack" --region "$region" "${overrides[@]}")"
while IFS= read -r pair; do
  [ -n "$pair" ] && overrides+=("$pair")
done <<<"$decided"
if [ "$preflight_only" = 1 ]; then
  printf '%s\n' "${overrides[@]}"
  exit 0
fi

deploy=(sam deploy --parameter-overrides)
for pair in "${overrides[@]}"; do deploy+=("$(for_sam "$pair")"); done
if [ "${#sam_args[@]}" -gt 0 ]; then deploy+=("${sam_args[@]}"); fi
scripts/package.sh
export PATH="$PWD/.venv-sam/bin:$PATH" SAM_CLI_TELEMETRY=0
(cd infra && "${deploy[@]}")

# The web console (DeployConsole=true): CloudFormation made its bucket and distribution; its
# files come from web/ in this checkout.
stack_tool stack.py upload-console --stack "$stack" --region "$region"

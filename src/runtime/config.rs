//! Configuration from the environment, read once at start-up by the CLI and the Lambdas alike.
//! Every variable is optional; a bad value is an error naming the variable, never a silent
//! default.

use std::num::NonZeroU32;

use crate::aws::AwsOptions;
use crate::backup::pipeline::Tuning;
use crate::model::format::{Compression, Format};
use crate::model::job::{
    BucketName, EmailAddress, JobDefaults, JobPolicy, Prefix, Recipients, TableName, Trigger,
    MAX_SEGMENTS,
};
use crate::model::manifest::LockMode;
use crate::store::{DefaultRetention, ServerSideEncryption};
use crate::triggers::status::DEFAULT_STATUS_PREFIX;

/// A configuration variable with a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {message}")]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

/// Everything configurable, with the tutorial's names where a default makes sense.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Defaults for job fields.
    pub defaults: JobDefaults,
    /// Pipeline tuning.
    pub tuning: Tuning,
    /// Server-side encryption of stored objects.
    pub sse: ServerSideEncryption,
    /// `ExpectedBucketOwner` on every S3 request, to refuse writing into someone else's bucket.
    pub expected_bucket_owner: Option<String>,
    /// Region, endpoint, retries.
    pub aws: AwsOptions,
    /// The job queue: the API sends jobs there, the worker its continuations.
    pub queue_url: Option<String>,
    /// The dead-letter queue: the worker moves messages that can never succeed there at once.
    pub dead_letter_queue_url: Option<String>,
    /// `DDB_BACKUP_FAILED_JOBS_QUEUE_URL`: where dead letters are kept once their job's
    /// failure is recorded, for an operator to read or redrive.
    pub failed_jobs_queue_url: Option<String>,
    /// `DDB_BACKUP_STUCK_AFTER_HOURS`: the longest a job may go without ending before the
    /// stuck-job sweep fails it.
    pub stuck_after: std::time::Duration,
    /// Sender of summary emails (a verified SES identity); no email without it.
    pub sender: Option<EmailAddress>,
    /// Where job status documents live in the default bucket.
    pub status_prefix: Prefix,
    /// Browser origins allowed to call the API (CORS), e.g. the web front end's CloudFront URL.
    pub cors_origins: Vec<String>,
    /// Time a worker keeps in hand before its invocation deadline to close files and hand over.
    pub deadline_margin: std::time::Duration,
    /// Deliveries after which SQS moves a message to the dead-letter queue (the queue's
    /// `maxReceiveCount`); the last one sends the failure email.
    pub max_receives: u32,
    /// What jobs may ask for: tables, recipients, and through the API how hard they may read.
    pub policy: JobPolicy,
    /// The drop in items against the table's previous backup, in percent, that flags the
    /// backup: a marked email subject and the `TableShrank` metric.
    pub shrink_alert_percent: f64,
    /// The web console, which summary emails link to, if one is deployed.
    pub console_url: Option<String>,
    /// The Object Lock retention the worker gives each object of a backup written to the
    /// deployment's bucket (`DDB_BACKUP_OBJECT_LOCK_MODE` and `_DAYS`); `None`: the bucket's
    /// own default rule, if any, applies.
    pub object_lock: Option<DefaultRetention>,
}

pub use crate::triggers::worker::{DEFAULT_DEADLINE_MARGIN_SECS, DEFAULT_MAX_RECEIVES};

/// The tutorial's defaults, used for the CLI demo and documented in the README.
pub mod tutorial {
    /// Table.
    pub const TABLE: &str = "studentData";
}

const MIB: u64 = 1024 * 1024;
pub use crate::store::MAX_FILE_SIZE_MIB;

impl Settings {
    /// Reads `DDB_BACKUP_*` variables from the process environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |var: &'static str| {
            lookup(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let parse = |var: &'static str,
                     check: &dyn Fn(&str) -> Result<(), String>|
         -> Result<Option<String>, ConfigError> {
            match get(var) {
                Some(v) => check(&v)
                    .map(|()| Some(v))
                    .map_err(|message| ConfigError { var, message }),
                None => Ok(None),
            }
        };
        let number = |var: &'static str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                    _ => Err(ConfigError {
                        var,
                        message: format!("`{v}` is not a whole number from {min} to {max}"),
                    }),
                },
            }
        };
        fn err<E: Into<String>>(var: &'static str) -> impl Fn(E) -> ConfigError {
            move |e| ConfigError {
                var,
                message: e.into(),
            }
        }

        let mut defaults = JobDefaults::default();
        if let Some(t) = get("DDB_BACKUP_TABLE") {
            defaults.table = Some(TableName::new(&t).map_err(err("DDB_BACKUP_TABLE"))?);
        }
        if let Some(b) = get("DDB_BACKUP_BUCKET") {
            defaults.bucket = Some(BucketName::new(&b).map_err(err("DDB_BACKUP_BUCKET"))?);
        }
        if let Some(p) = lookup("DDB_BACKUP_PREFIX") {
            defaults.prefix = Prefix::new(p.trim()).map_err(err("DDB_BACKUP_PREFIX"))?;
        }
        if let Some(f) = get("DDB_BACKUP_FORMAT") {
            defaults.format = f
                .parse::<Format>()
                .map_err(|e| err("DDB_BACKUP_FORMAT")(e.to_string()))?;
        }
        if let Some(c) = get("DDB_BACKUP_COMPRESSION") {
            defaults.compression = c
                .parse::<Compression>()
                .map_err(|e| err("DDB_BACKUP_COMPRESSION")(e.to_string()))?;
        }
        defaults.segments = number("DDB_BACKUP_SEGMENTS", 1, MAX_SEGMENTS as u64)?
            .and_then(|n| NonZeroU32::new(n as u32));
        if let Some(n) = number(
            "DDB_BACKUP_MAX_WORKERS",
            1,
            u64::from(crate::model::job::MAX_WORKERS),
        )? {
            defaults.max_workers = n as u32;
        }
        if let Some(v) = parse("DDB_BACKUP_CONSISTENT_READ", &|v| match v {
            "true" | "false" => Ok(()),
            _ => Err(format!("`{v}` is not true or false")),
        })? {
            defaults.consistent_read = v == "true";
        }
        let float = |var: &'static str, max: f64| -> Result<Option<f64>, ConfigError> {
            match get(var) {
                None => Ok(None),
                Some(v) => match v.parse::<f64>() {
                    Ok(n) if n.is_finite() && n > 0.0 && n <= max => Ok(Some(n)),
                    _ => Err(ConfigError {
                        var,
                        message: format!("`{v}` is not a number above 0 and at most {max}"),
                    }),
                },
            }
        };
        defaults.read_budget = float("DDB_BACKUP_READ_BUDGET", crate::model::job::MAX_READ_BUDGET)?;
        defaults.read_budget_percent = float("DDB_BACKUP_READ_BUDGET_PERCENT", 100.0)?;
        if let Some(list) = get("DDB_BACKUP_NOTIFY") {
            defaults.notify = list
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| EmailAddress::new(a).map_err(err("DDB_BACKUP_NOTIFY")))
                .collect::<Result<_, _>>()?;
        }
        defaults.trigger = Trigger::Manual;

        let mut tuning = Tuning::default();
        if let Some(n) = number("DDB_BACKUP_PART_SIZE_MIB", 5, 5 * 1024)? {
            tuning.part_size = (n * MIB) as usize;
        }
        if let Some(n) = number("DDB_BACKUP_FILE_SIZE_MIB", 1, MAX_FILE_SIZE_MIB)? {
            tuning.file_size_target = n * MIB;
        }
        if let Some(n) = number("DDB_BACKUP_PARTS_IN_FLIGHT", 1, 64)? {
            tuning.parts_in_flight = n as usize;
        }
        if let Some(n) = number("DDB_BACKUP_CONCURRENCY", 1, 256)? {
            tuning.max_concurrent_segments = n as usize;
        }
        if let Some(n) = number("DDB_BACKUP_MAX_SEGMENTS", 1, MAX_SEGMENTS as u64)? {
            tuning.max_auto_segments = n as u32;
        }

        let kms_key = get("DDB_BACKUP_KMS_KEY_ID");
        let sse = match get("DDB_BACKUP_SSE").as_deref() {
            None | Some("AES256") if kms_key.is_none() => ServerSideEncryption::Aes256,
            None | Some("aws:kms") => ServerSideEncryption::Kms { key_id: kms_key },
            Some("AES256") => {
                return Err(ConfigError {
                    var: "DDB_BACKUP_KMS_KEY_ID",
                    message: "a KMS key is set but DDB_BACKUP_SSE is AES256; set DDB_BACKUP_SSE=aws:kms or unset the key".to_string(),
                })
            }
            Some(other) => {
                return Err(ConfigError {
                    var: "DDB_BACKUP_SSE",
                    message: format!("`{other}` is not AES256 or aws:kms"),
                })
            }
        };
        let expected_bucket_owner = parse("DDB_BACKUP_EXPECTED_BUCKET_OWNER", &|v| {
            if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
                Ok(())
            } else {
                Err(format!("`{v}` is not a 12-digit AWS account id"))
            }
        })?;
        let aws = AwsOptions {
            max_attempts: number("DDB_BACKUP_MAX_ATTEMPTS", 1, 50)?.unwrap_or(0) as u32,
            ..AwsOptions::default()
        };
        let url = |var: &'static str| {
            parse(var, &|v| {
                if v.starts_with("https://") || v.starts_with("http://") {
                    Ok(())
                } else {
                    Err(format!("`{v}` is not a queue URL; expected https://sqs.<region>.amazonaws.com/<account>/<queue>"))
                }
            })
        };
        let queue_url = url("DDB_BACKUP_QUEUE_URL")?;
        let dead_letter_queue_url = url("DDB_BACKUP_DLQ_URL")?;
        let failed_jobs_queue_url = url("DDB_BACKUP_FAILED_JOBS_QUEUE_URL")?;
        let sender = match get("DDB_BACKUP_SENDER") {
            Some(a) => Some(EmailAddress::new(&a).map_err(err("DDB_BACKUP_SENDER"))?),
            None => None,
        };
        let status_prefix = match lookup("DDB_BACKUP_STATUS_PREFIX") {
            Some(p) => Prefix::new(p.trim()).map_err(err("DDB_BACKUP_STATUS_PREFIX"))?,
            None => Prefix::new(DEFAULT_STATUS_PREFIX).map_err(err("DDB_BACKUP_STATUS_PREFIX"))?,
        };
        let cors_origins = match get("DDB_BACKUP_CORS_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| {
                    validate_origin(o)
                        .map(|()| o.to_string())
                        .map_err(err("DDB_BACKUP_CORS_ORIGINS"))
                })
                .collect::<Result<_, _>>()?,
        };
        let deadline_margin = std::time::Duration::from_secs(
            number("DDB_BACKUP_DEADLINE_MARGIN_SECS", 1, 600)?
                .unwrap_or(DEFAULT_DEADLINE_MARGIN_SECS),
        );
        let max_receives =
            number("DDB_BACKUP_MAX_RECEIVES", 1, 1000)?.map_or(DEFAULT_MAX_RECEIVES, |n| n as u32);
        let stuck_after = number("DDB_BACKUP_STUCK_AFTER_HOURS", 1, 168)?
            .map_or(crate::triggers::worker::DEFAULT_STUCK_AFTER, |hours| {
                std::time::Duration::from_secs(hours * 3600)
            });
        let list = |var: &'static str| -> Option<Vec<String>> {
            get(var).map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect()
            })
        };
        let policy = JobPolicy {
            allowed_tables: list("DDB_BACKUP_ALLOWED_TABLES")
                .map(|names| {
                    names
                        .iter()
                        .map(|n| TableName::new(n).map_err(err("DDB_BACKUP_ALLOWED_TABLES")))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            // `none`: summary emails may go to no one (a stack without NotifyEmails).
            notify_allowed: list("DDB_BACKUP_NOTIFY_ALLOWED")
                .map(|entries| {
                    entries
                        .into_iter()
                        .filter(|e| e != "none")
                        .collect::<Vec<_>>()
                })
                .map(|entries| {
                    entries
                        .iter()
                        .map(|e| Recipients::parse(e).map_err(err("DDB_BACKUP_NOTIFY_ALLOWED")))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            api_max_segments: Some(tuning.max_auto_segments),
            api_max_read_budget: defaults.read_budget,
            api_max_read_budget_percent: defaults.read_budget_percent,
            api_allow_consistent_read: parse(
                "DDB_BACKUP_API_ALLOW_CONSISTENT_READ",
                &|v| match v {
                    "true" | "false" => Ok(()),
                    _ => Err(format!("`{v}` is not true or false")),
                },
            )?
            .is_some_and(|v| v == "true"),
            restore_tables: get("DDB_BACKUP_RESTORE_TABLE_PATTERN")
                .map(|p| {
                    crate::model::restore_job::TablePattern::new(&p)
                        .map_err(err("DDB_BACKUP_RESTORE_TABLE_PATTERN"))
                })
                .transpose()?
                .unwrap_or_default(),
        };
        let shrink_alert_percent = float("DDB_BACKUP_SHRINK_ALERT_PERCENT", 100.0)?
            .unwrap_or(crate::triggers::worker::DEFAULT_SHRINK_ALERT_PERCENT);
        let console_url = parse("DDB_BACKUP_CONSOLE_URL", &|v| {
            if v.starts_with("https://") || v.starts_with("http://") {
                Ok(())
            } else {
                Err(format!(
                    "`{v}` is not a URL; expected e.g. https://d111111abcdef8.cloudfront.net/"
                ))
            }
        })?;
        let object_lock = match (
            get("DDB_BACKUP_OBJECT_LOCK_MODE").as_deref(),
            number("DDB_BACKUP_OBJECT_LOCK_DAYS", 1, 36_500)?,
        ) {
            (None, None) => None,
            (Some(mode), Some(days)) => Some(DefaultRetention {
                mode: match mode {
                    "GOVERNANCE" => LockMode::Governance,
                    "COMPLIANCE" => LockMode::Compliance,
                    other => {
                        return Err(ConfigError {
                            var: "DDB_BACKUP_OBJECT_LOCK_MODE",
                            message: format!("`{other}` is not GOVERNANCE or COMPLIANCE"),
                        })
                    }
                },
                days: days as u32,
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError {
                    var: "DDB_BACKUP_OBJECT_LOCK_DAYS",
                    message: "DDB_BACKUP_OBJECT_LOCK_MODE and DDB_BACKUP_OBJECT_LOCK_DAYS go together: set both, or neither".to_string(),
                })
            }
        };
        Ok(Settings {
            defaults,
            tuning,
            sse,
            expected_bucket_owner,
            aws,
            queue_url,
            dead_letter_queue_url,
            failed_jobs_queue_url,
            stuck_after,
            sender,
            status_prefix,
            cors_origins,
            deadline_margin,
            max_receives,
            policy,
            shrink_alert_percent,
            console_url,
            object_lock,
        })
    }
}

/// An origin is scheme, host and optional port, exactly as a browser sends it: no path, no
/// trailing slash, no wildcard (a wildcard would let any site spend the API key's quota).
fn validate_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let ok = rest.is_some_and(|host| {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!("`{origin}` is not an origin; expected e.g. https://d111111abcdef8.cloudfront.net (scheme and host, no path, no trailing slash, no wildcard)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn empty_environment_gives_safe_defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.defaults.format, Format::DynamodbJson);
        assert_eq!(s.defaults.compression, Compression::Gzip);
        assert_eq!(s.defaults.bucket, None);
        assert_eq!(s.sse, ServerSideEncryption::Aes256);
        assert_eq!(s.tuning.part_size, 5 << 20);
    }

    #[test]
    fn variables_override_defaults() {
        let s = settings(&[
            ("DDB_BACKUP_BUCKET", "student-backup-20250706"),
            ("DDB_BACKUP_TABLE", "studentData"),
            ("DDB_BACKUP_PREFIX", "nightly"),
            ("DDB_BACKUP_FORMAT", "json"),
            ("DDB_BACKUP_COMPRESSION", "zstd"),
            ("DDB_BACKUP_SEGMENTS", "4"),
            ("DDB_BACKUP_NOTIFY", "a@example.com, b@example.com"),
            ("DDB_BACKUP_KMS_KEY_ID", "alias/backup"),
            ("DDB_BACKUP_PART_SIZE_MIB", "16"),
            ("DDB_BACKUP_EXPECTED_BUCKET_OWNER", "123456789012"),
        ])
        .unwrap();
        assert_eq!(
            s.defaults.bucket.unwrap().as_str(),
            "student-backup-20250706"
        );
        assert_eq!(s.defaults.prefix.as_str(), "nightly/");
        assert_eq!(s.defaults.format, Format::Json);
        assert_eq!(s.defaults.segments.unwrap().get(), 4);
        assert_eq!(s.defaults.notify.len(), 2);
        assert_eq!(
            s.sse,
            ServerSideEncryption::Kms {
                key_id: Some("alias/backup".into())
            }
        );
        assert_eq!(s.tuning.part_size, 16 << 20);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("DDB_BACKUP_BUCKET", "Not_A_Bucket"),
            ("DDB_BACKUP_FORMAT", "xml"),
            ("DDB_BACKUP_SEGMENTS", "0"),
            ("DDB_BACKUP_PART_SIZE_MIB", "4"),
            ("DDB_BACKUP_SSE", "rot13"),
            ("DDB_BACKUP_NOTIFY", "ops"),
            ("DDB_BACKUP_CONSISTENT_READ", "yes"),
            ("DDB_BACKUP_EXPECTED_BUCKET_OWNER", "me"),
        ] {
            let e = settings(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{e}");
        }
    }

    #[test]
    fn the_object_lock_of_backups_takes_a_mode_and_days_together() {
        let s = settings(&[
            ("DDB_BACKUP_OBJECT_LOCK_MODE", "COMPLIANCE"),
            ("DDB_BACKUP_OBJECT_LOCK_DAYS", "90"),
        ])
        .unwrap();
        assert_eq!(
            s.object_lock,
            Some(DefaultRetention {
                mode: LockMode::Compliance,
                days: 90
            })
        );
        assert_eq!(settings(&[]).unwrap().object_lock, None);
        for (vars, var) in [
            (
                &[("DDB_BACKUP_OBJECT_LOCK_MODE", "GOVERNANCE")][..],
                "DDB_BACKUP_OBJECT_LOCK_DAYS",
            ),
            (
                &[
                    ("DDB_BACKUP_OBJECT_LOCK_MODE", "LEGAL"),
                    ("DDB_BACKUP_OBJECT_LOCK_DAYS", "3"),
                ][..],
                "DDB_BACKUP_OBJECT_LOCK_MODE",
            ),
            (
                &[
                    ("DDB_BACKUP_OBJECT_LOCK_MODE", "GOVERNANCE"),
                    ("DDB_BACKUP_OBJECT_LOCK_DAYS", "0"),
                ][..],
                "DDB_BACKUP_OBJECT_LOCK_DAYS",
            ),
        ] {
            assert_eq!(settings(vars).unwrap_err().var, var);
        }
    }

    #[test]
    fn trigger_settings_are_validated_with_the_variable_named() {
        let s = settings(&[
            (
                "DDB_BACKUP_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
            ),
            ("DDB_BACKUP_SENDER", "backup@example.com"),
            (
                "DDB_BACKUP_CORS_ORIGINS",
                "https://d111111abcdef8.cloudfront.net, http://localhost:5173",
            ),
            ("DDB_BACKUP_DEADLINE_MARGIN_SECS", "90"),
        ])
        .unwrap();
        assert_eq!(s.cors_origins.len(), 2);
        assert_eq!(s.deadline_margin.as_secs(), 90);
        assert_eq!(s.max_receives, DEFAULT_MAX_RECEIVES);
        assert_eq!(s.status_prefix.as_str(), "backup-status/");
        for (var, value) in [
            ("DDB_BACKUP_QUEUE_URL", "jobs"),
            ("DDB_BACKUP_SENDER", "backup"),
            ("DDB_BACKUP_CORS_ORIGINS", "https://example.com/"),
            ("DDB_BACKUP_CORS_ORIGINS", "*"),
            ("DDB_BACKUP_DEADLINE_MARGIN_SECS", "0"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
    }

    #[test]
    fn the_policy_comes_from_its_variables_and_bad_entries_name_them() {
        let open = settings(&[]).unwrap().policy;
        assert_eq!((open.allowed_tables, open.notify_allowed), (None, None));
        assert_eq!(open.api_max_segments, Some(32));
        assert!(!open.api_allow_consistent_read);
        let s = settings(&[
            ("DDB_BACKUP_ALLOWED_TABLES", "studentData, orders"),
            (
                "DDB_BACKUP_NOTIFY_ALLOWED",
                "ops@example.com,@school.example.org",
            ),
            ("DDB_BACKUP_MAX_SEGMENTS", "64"),
            ("DDB_BACKUP_API_ALLOW_CONSISTENT_READ", "true"),
            ("DDB_BACKUP_MAX_WORKERS", "40"),
        ])
        .unwrap();
        assert_eq!(s.policy.allowed_tables.map(|t| t.len()), Some(2));
        assert_eq!(s.policy.notify_allowed.map(|r| r.len()), Some(2));
        assert_eq!(s.policy.api_max_segments, Some(64));
        assert!(s.policy.api_allow_consistent_read);
        assert_eq!(s.defaults.max_workers, 40);
        let alert = settings(&[("DDB_BACKUP_SHRINK_ALERT_PERCENT", "35")]).unwrap();
        assert_eq!(alert.shrink_alert_percent, 35.0);
        assert_eq!(settings(&[]).unwrap().shrink_alert_percent, 20.0);
        let nobody = settings(&[("DDB_BACKUP_NOTIFY_ALLOWED", "none")]).unwrap();
        assert_eq!(nobody.policy.notify_allowed, Some(vec![]));
        for (var, value) in [
            ("DDB_BACKUP_ALLOWED_TABLES", "studentData,x"),
            ("DDB_BACKUP_NOTIFY_ALLOWED", "@"),
            ("DDB_BACKUP_API_ALLOW_CONSISTENT_READ", "yes"),
            ("DDB_BACKUP_MAX_WORKERS", "1001"),
            ("DDB_BACKUP_SHRINK_ALERT_PERCENT", "0"),
            ("DDB_BACKUP_CONSOLE_URL", "console"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{value}");
        }
    }
}

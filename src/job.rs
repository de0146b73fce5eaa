//! The backup job: the one JSON document that the CLI, SQS messages, the API body and the schedule
//! all carry. It is parsed and validated once, at the edge, into a [`BackupJob`] whose fields can
//! only hold valid values; nothing downstream re-checks a string.

use std::fmt;
use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::format::{Compression, Format, ParquetCompression};

/// Largest `segments` a job may ask for. DynamoDB accepts up to 1,000,000, but every segment costs
/// at least one request and its own buffers; past a thousand nothing gets faster.
pub const MAX_SEGMENTS: u32 = 1000;
/// Largest read budget a job may ask for, in RCU/s (far above any table's need; a typo guard).
pub const MAX_READ_BUDGET: f64 = 1_000_000.0;

/// A positive, finite read budget figure (RCU/s or a percentage).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadBudgetLimit(f64);

impl Eq for ReadBudgetLimit {}

impl ReadBudgetLimit {
    /// Accepts `value` in (0, `max`].
    pub fn new(value: f64, max: f64) -> Result<ReadBudgetLimit, String> {
        if value.is_finite() && value > 0.0 && value <= max {
            Ok(ReadBudgetLimit(value))
        } else {
            Err(format!(
                "must be a number above 0 and at most {max}, got {value}; leave it out for no limit"
            ))
        }
    }

    /// The figure.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// SES accepts at most 50 recipients per message.
pub const MAX_RECIPIENTS: usize = 50;

/// The job exactly as it arrives on the wire. Every field is optional here so that defaults can be
/// filled from configuration; unknown fields are rejected so that a typo never silently falls back
/// to a default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// DynamoDB table to back up (required unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Output format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Stream compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Column compression of Parquet files (only with `"format": "parquet"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_compression: Option<ParquetCompression>,
    /// Parallel scan segments; chosen from the table's size when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<i64>,
    /// Destination bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Strongly consistent scan (twice the read capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_read: Option<bool>,
    /// Ceiling on read capacity units per second for the whole job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_budget: Option<f64>,
    /// Ceiling as a percentage of the table's provisioned read capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_budget_percent: Option<f64>,
    /// Who gets the summary email.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<String>>,
    /// Idempotency key: the same id is the same backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// What started the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// When the job was requested (RFC 3339). It picks the date partition of the object keys, so a
    /// redelivered job writes to the same place; set to now when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
}

/// What started a job; recorded in the manifest and the email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The nightly EventBridge schedule.
    Schedule,
    /// `POST /backup` on API Gateway.
    Api,
    /// A message put on the queue by an operator.
    Manual,
    /// The `ddb-backup` command line.
    Cli,
}

impl Trigger {
    /// The name used in job JSON and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Api => "api",
            Trigger::Manual => "manual",
            Trigger::Cli => "cli",
        }
    }
}

/// Values used for every field a job leaves out. Loaded from configuration
/// ([`crate::config::Settings`]); the CLI overlays its flags on top.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefaults {
    /// Table used when the job names none.
    pub table: Option<TableName>,
    /// Bucket used when the job names none.
    pub bucket: Option<BucketName>,
    /// Prefix used when the job gives none.
    pub prefix: Prefix,
    /// Format used when the job gives none.
    pub format: Format,
    /// Compression used when the job gives none.
    pub compression: Compression,
    /// Segments when the job gives none (`None`: chosen from the table's size).
    pub segments: Option<NonZeroU32>,
    /// Consistent read when the job does not say.
    pub consistent_read: bool,
    /// Read budget (RCU/s) when the job gives none.
    pub read_budget: Option<f64>,
    /// Read budget (% of provisioned) when the job gives none.
    pub read_budget_percent: Option<f64>,
    /// Recipients when the job names none.
    pub notify: Vec<EmailAddress>,
    /// Trigger recorded when the job does not say.
    pub trigger: Trigger,
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            table: None,
            bucket: None,
            prefix: Prefix::default(),
            format: Format::DynamodbJson,
            compression: Compression::Gzip,
            segments: None,
            consistent_read: false,
            read_budget: None,
            read_budget_percent: None,
            notify: Vec::new(),
            trigger: Trigger::Manual,
        }
    }
}

/// Where the files of a backup go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An S3 bucket (the production path).
    S3 {
        /// The bucket.
        bucket: BucketName,
        /// Key prefix inside it.
        prefix: Prefix,
    },
    /// A local directory, for backups to a laptop; the same key layout below it.
    Directory {
        /// Root directory.
        root: PathBuf,
        /// Sub-path inside it.
        prefix: Prefix,
    },
}

impl Destination {
    /// The key prefix every object of every backup starts with.
    pub fn prefix(&self) -> &Prefix {
        match self {
            Destination::S3 { prefix, .. } | Destination::Directory { prefix, .. } => prefix,
        }
    }
}

/// A validated backup job. Construct it with [`BackupJob::parse`] or [`JobRequest::into_job`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJob {
    /// Unique id, also the idempotency key and part of every object key.
    pub job_id: JobId,
    /// Table to back up.
    pub table: TableName,
    /// Output format.
    pub format: Format,
    /// Stream compression (always `none` for Parquet, which compresses its columns itself).
    pub compression: Compression,
    /// Column compression of Parquet files.
    pub parquet_compression: ParquetCompression,
    /// Explicit segment count, or `None` to choose from the table's size.
    pub segments: Option<NonZeroU32>,
    /// Where files go.
    pub destination: Destination,
    /// Strongly consistent scan.
    pub consistent_read: bool,
    /// Ceiling on read capacity units per second.
    pub read_budget: Option<ReadBudgetLimit>,
    /// Ceiling as a percentage (0–100] of the table's provisioned read capacity.
    pub read_budget_percent: Option<ReadBudgetLimit>,
    /// Summary email recipients.
    pub notify: Vec<EmailAddress>,
    /// What started the job.
    pub trigger: Trigger,
    /// When the job was requested; its UTC date partitions the object keys.
    pub requested_at: chrono::DateTime<chrono::Utc>,
}

/// Why a job was refused. Always names the field, what was expected and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The body is not JSON at all.
    #[error("job is not valid JSON (line {line}, column {column}): {message}; send a JSON object such as {{\"table\": \"studentData\"}}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// Parser message.
        message: String,
    },
    /// A field has the wrong type, an unknown name or an unknown value.
    #[error("field `{field}`: {message}")]
    Field {
        /// JSON path of the field (`.` for the document itself).
        field: String,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl JobError {
    /// The offending field, for API error bodies (`None` for a syntax error).
    pub fn field(&self) -> Option<&str> {
        match self {
            JobError::Syntax { .. } => None,
            JobError::Field { field, .. } => Some(field),
        }
    }

    fn field_error(field: &str, message: impl Into<String>) -> Self {
        JobError::Field {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl JobRequest {
    /// Parses the wire JSON, naming the field on any error.
    pub fn from_json(json: &str) -> Result<JobRequest, JobError> {
        // serde would accept an array as a struct's fields in order; a job is an object only.
        let first = json.trim_start().chars().next();
        if first.is_some_and(|c| c != '{')
            && serde_json::from_str::<serde_json::Value>(json).is_ok()
        {
            return Err(JobError::field_error(
                ".",
                "a job must be a JSON object such as {\"table\": \"studentData\"}",
            ));
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let request: JobRequest = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if (inner.is_syntax() && path != ".") && !inner.is_eof() {
                // serde_json reports a number where a name is expected as "syntax"; the path knows better.
                JobError::field_error(
                    &path,
                    format!(
                        "wrong type or value ({}); see the job schema in docs/job.md",
                        strip_position(&inner.to_string())
                    ),
                )
            } else if inner.is_syntax() || inner.is_eof() {
                JobError::Syntax {
                    line: inner.line(),
                    column: inner.column(),
                    message: strip_position(&inner.to_string()),
                }
            } else {
                let message = strip_position(&inner.to_string());
                // serde reports a repeated key at the object's path; name the key itself.
                let field = message
                    .strip_prefix("duplicate field `")
                    .and_then(|rest| rest.split('`').next())
                    .filter(|_| path == ".")
                    .unwrap_or(&path)
                    .to_string();
                JobError::field_error(&field, message)
            }
        })?;
        de.end().map_err(|inner| JobError::Syntax {
            line: inner.line(),
            column: inner.column(),
            message: strip_position(&inner.to_string()),
        })?;
        Ok(request)
    }

    /// Validates the request and fills the gaps from `defaults`. `destination`, when given,
    /// replaces the bucket (the CLI's `--out-dir`).
    pub fn into_job(
        self,
        defaults: &JobDefaults,
        destination: Option<Destination>,
    ) -> Result<BackupJob, JobError> {
        let table = match self.table {
            Some(name) => TableName::new(&name).map_err(|m| JobError::field_error("table", m))?,
            None => defaults.table.clone().ok_or_else(|| {
                JobError::field_error(
                    "table",
                    "required: name the DynamoDB table to back up, e.g. \"table\": \"studentData\"",
                )
            })?,
        };
        let segments = match self.segments {
            None => defaults.segments,
            Some(n) => Some(validate_segments(n)?),
        };
        let prefix = match self.prefix {
            Some(p) => Prefix::new(&p).map_err(|m| JobError::field_error("prefix", m))?,
            None => defaults.prefix.clone(),
        };
        let destination = match destination {
            Some(Destination::Directory { root, .. }) => Destination::Directory { root, prefix },
            Some(Destination::S3 { bucket, .. }) => Destination::S3 { bucket, prefix },
            None => {
                let bucket = match self.bucket {
                    Some(b) => {
                        BucketName::new(&b).map_err(|m| JobError::field_error("bucket", m))?
                    }
                    None => defaults.bucket.clone().ok_or_else(|| {
                        JobError::field_error(
                            "bucket",
                            "required: name the S3 bucket for the backup, or configure DDB_BACKUP_BUCKET",
                        )
                    })?,
                };
                Destination::S3 { bucket, prefix }
            }
        };
        let notify = match self.notify {
            None => defaults.notify.clone(),
            Some(list) => {
                if list.len() > MAX_RECIPIENTS {
                    return Err(JobError::field_error(
                        "notify",
                        format!("at most {MAX_RECIPIENTS} recipients, got {}", list.len()),
                    ));
                }
                list.iter()
                    .enumerate()
                    .map(|(i, a)| {
                        EmailAddress::new(a)
                            .map_err(|m| JobError::field_error(&format!("notify[{i}]"), m))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let requested_at = match self.requested_at {
            None => chrono::Utc::now(),
            Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    JobError::field_error(
                        "requested_at",
                        format!("`{text}` is not an RFC 3339 timestamp ({e}); expected e.g. \"2025-07-06T02:00:00Z\""),
                    )
                })?,
        };
        let job_id = match self.job_id {
            Some(id) => JobId::new(&id).map_err(|m| JobError::field_error("job_id", m))?,
            None => JobId::generate(),
        };
        let format = self.format.unwrap_or(defaults.format);
        let (compression, parquet_compression) = if format == Format::Parquet {
            match self.compression {
                Some(c) if c != Compression::None => {
                    return Err(JobError::field_error(
                        "compression",
                        format!(
                            "a Parquet file compresses its own columns (`parquet_compression`, \
                             default zstd); compressing the whole file with {c} as well would make it \
                             unreadable to Athena, DuckDB and Spark. Leave `compression` out or set \
                             it to \"none\", and choose the codec with `parquet_compression` \
                             (zstd, snappy, gzip or none)"
                        ),
                    ))
                }
                _ => (
                    Compression::None,
                    self.parquet_compression.unwrap_or_default(),
                ),
            }
        } else {
            if let Some(p) = self.parquet_compression {
                return Err(JobError::field_error(
                    "parquet_compression",
                    format!(
                        "`{p}` only applies to \"format\": \"parquet\", and this job writes {format}; \
                         use `compression` (gzip, zstd or none) for {format}, or set the format to parquet"
                    ),
                ));
            }
            (
                self.compression.unwrap_or(defaults.compression),
                ParquetCompression::default(),
            )
        };
        Ok(BackupJob {
            job_id,
            table,
            format,
            compression,
            parquet_compression,
            segments,
            destination,
            consistent_read: self.consistent_read.unwrap_or(defaults.consistent_read),
            read_budget: match self.read_budget.or(defaults.read_budget) {
                None => None,
                Some(v) => Some(
                    ReadBudgetLimit::new(v, MAX_READ_BUDGET)
                        .map_err(|m| JobError::field_error("read_budget", m))?,
                ),
            },
            read_budget_percent: match self.read_budget_percent.or(defaults.read_budget_percent) {
                None => None,
                Some(v) => Some(
                    ReadBudgetLimit::new(v, 100.0)
                        .map_err(|m| JobError::field_error("read_budget_percent", m))?,
                ),
            },
            notify,
            trigger: self.trigger.unwrap_or(defaults.trigger),
            requested_at,
        })
    }
}

impl BackupJob {
    /// Parses and validates a job document in one step.
    pub fn parse(json: &str, defaults: &JobDefaults) -> Result<BackupJob, JobError> {
        JobRequest::from_json(json)?.into_job(defaults, None)
    }

    /// The wire form of this job, e.g. to enqueue it. Every field is explicit so a worker with other
    /// defaults runs exactly this job.
    pub fn to_request(&self) -> JobRequest {
        let (bucket, prefix) = match &self.destination {
            Destination::S3 { bucket, prefix } => (Some(bucket.to_string()), prefix),
            Destination::Directory { prefix, .. } => (None, prefix),
        };
        JobRequest {
            table: Some(self.table.to_string()),
            format: Some(self.format),
            compression: Some(self.compression),
            parquet_compression: (self.format == Format::Parquet)
                .then_some(self.parquet_compression),
            segments: self.segments.map(|n| i64::from(n.get())),
            bucket,
            prefix: Some(prefix.to_string()),
            consistent_read: Some(self.consistent_read),
            read_budget: self.read_budget.map(ReadBudgetLimit::get),
            read_budget_percent: self.read_budget_percent.map(ReadBudgetLimit::get),
            notify: Some(self.notify.iter().map(|e| e.to_string()).collect()),
            job_id: Some(self.job_id.to_string()),
            trigger: Some(self.trigger),
            requested_at: Some(
                self.requested_at
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
        }
    }
}

fn validate_segments(n: i64) -> Result<NonZeroU32, JobError> {
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SEGMENTS)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            JobError::field_error(
                "segments",
                format!("must be a whole number from 1 to {MAX_SEGMENTS}, got {n}; leave it out to size it from the table"),
            )
        })
}

/// serde_json appends " at line L column C" to its messages; the path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

validated_string!(
    /// A DynamoDB table name: 3 to 255 of `A-Z a-z 0-9 _ - .`.
    TableName
);
validated_string!(
    /// An S3 bucket name following the general purpose bucket naming rules.
    BucketName
);
validated_string!(
    /// A key prefix: empty, or relative path segments ending in `/`.
    Prefix
);
validated_string!(
    /// A job id safe to use in object keys: 1 to 128 of `A-Z a-z 0-9 . _ -`.
    JobId
);
validated_string!(
    /// An email address, checked for shape only (SES has the last word).
    EmailAddress
);

impl TableName {
    /// Validates a table name.
    pub fn new(name: &str) -> Result<TableName, String> {
        let ok_chars = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !(3..=255).contains(&name.len()) || !ok_chars {
            return Err(format!(
                "`{name}` is not a DynamoDB table name: use 3 to 255 characters of A-Z, a-z, 0-9, '_', '-', '.'"
            ));
        }
        Ok(TableName(name.to_string()))
    }
}

impl BucketName {
    /// Validates a bucket name.
    pub fn new(name: &str) -> Result<BucketName, String> {
        let bad = |why: &str| {
            Err(format!(
                "`{name}` is not a valid S3 bucket name: {why} (e.g. student-backup-20250706)"
            ))
        };
        if !(3..=63).contains(&name.len()) {
            return bad("use 3 to 63 characters");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return bad("use only lowercase letters, digits, '-' and '.'");
        }
        let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
            return bad("begin and end with a letter or digit");
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return bad("no '..', '.-' or '-.'");
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return bad("it must not look like an IP address");
        }
        if name.starts_with("xn--") || name.starts_with("sthree-") || name.ends_with("-s3alias") {
            return bad("the prefixes xn-- and sthree- and the suffix -s3alias are reserved");
        }
        Ok(BucketName(name.to_string()))
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix("backups/".to_string())
    }
}

impl Prefix {
    /// Validates a prefix and makes it end in `/` (an empty prefix stays empty).
    pub fn new(prefix: &str) -> Result<Prefix, String> {
        if prefix.len() > 256 {
            return Err(format!(
                "at most 256 characters, got {}; use a shorter prefix",
                prefix.len()
            ));
        }
        if prefix.starts_with('/') {
            return Err(format!(
                "`{prefix}` must not start with '/': S3 keys are relative, e.g. \"backups/\""
            ));
        }
        if prefix.chars().any(|c| c.is_control() || c == '\\') {
            return Err("control characters and '\\' are not allowed in a prefix".to_string());
        }
        let trimmed = prefix.trim_end_matches('/');
        if !trimmed.is_empty()
            && trimmed
                .split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(format!(
                "`{prefix}` has an empty, '.' or '..' path segment; use plain names such as \"backups/nightly/\""
            ));
        }
        Ok(if trimmed.is_empty() {
            Prefix(String::new())
        } else {
            Prefix(format!("{trimmed}/"))
        })
    }
}

impl JobId {
    /// Validates a caller-chosen job id.
    pub fn new(id: &str) -> Result<JobId, String> {
        let first_ok = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
        let ok = id.len() <= 128
            && first_ok
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(JobId(id.to_string()))
        } else {
            Err(format!("`{id}` is not a valid job id: use 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit, or leave it out to have one generated"))
        }
    }

    /// A new id that sorts by time: `20261128T021500Z-1a2b3c4d`.
    pub fn generate() -> JobId {
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let rand = uuid::Uuid::new_v4().simple().to_string();
        JobId(format!("{now}-{}", &rand[..8]))
    }
}

impl EmailAddress {
    /// Checks an address for shape: `local@domain.tld`, no spaces.
    pub fn new(address: &str) -> Result<EmailAddress, String> {
        let valid = match address.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && address.len() <= 254
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !address.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if valid {
            Ok(EmailAddress(address.to_string()))
        } else {
            Err(format!(
                "`{address}` is not an email address; expected e.g. \"ops@example.com\""
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> JobDefaults {
        JobDefaults {
            bucket: Some(BucketName::new("student-backup-20250706").unwrap()),
            ..JobDefaults::default()
        }
    }

    fn field_of(json: &str) -> String {
        match BackupJob::parse(json, &defaults()) {
            Err(e) => e.field().unwrap_or("<syntax>").to_string(),
            Ok(job) => panic!("expected an error for {json}, got {job:?}"),
        }
    }

    #[test]
    fn parquet_compresses_its_columns_and_refuses_a_stream_compression_too() {
        let job =
            BackupJob::parse(r#"{"table":"studentData","format":"parquet"}"#, &defaults()).unwrap();
        assert_eq!(
            job.compression,
            Compression::None,
            "the configured gzip does not apply"
        );
        assert_eq!(job.parquet_compression, ParquetCompression::Zstd);
        let job = BackupJob::parse(
            r#"{"table":"studentData","format":"parquet","compression":"none","parquet_compression":"snappy"}"#,
            &defaults(),
        )
        .unwrap();
        assert_eq!(job.parquet_compression, ParquetCompression::Snappy);
        let again = job.to_request().into_job(&defaults(), None).unwrap();
        assert_eq!(again.parquet_compression, ParquetCompression::Snappy);

        let err = BackupJob::parse(
            r#"{"table":"studentData","format":"parquet","compression":"zstd"}"#,
            &defaults(),
        )
        .unwrap_err();
        assert_eq!(err.field(), Some("compression"));
        let message = err.to_string();
        assert!(
            message.contains("parquet_compression") && message.contains("Athena"),
            "{message}"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","format":"csv","parquet_compression":"zstd"}"#),
            "parquet_compression"
        );
    }

    #[test]
    fn full_job_parses_with_every_field() {
        let job = BackupJob::parse(
            r#"{"table": "studentData", "format": "json", "compression": "zstd", "segments": 8,
                "bucket": "other-bucket", "prefix": "nightly", "consistent_read": true,
                "notify": ["ops@example.com"], "job_id": "job-1", "trigger": "schedule",
                "requested_at": "2025-07-06T02:00:00+07:00"}"#,
            &defaults(),
        )
        .unwrap();
        assert_eq!(job.table.as_str(), "studentData");
        assert_eq!(job.format, Format::Json);
        assert_eq!(job.compression, Compression::Zstd);
        assert_eq!(job.segments.map(|n| n.get()), Some(8));
        assert_eq!(
            job.destination,
            Destination::S3 {
                bucket: BucketName::new("other-bucket").unwrap(),
                prefix: Prefix::new("nightly/").unwrap()
            }
        );
        assert!(job.consistent_read);
        assert_eq!(job.notify[0].as_str(), "ops@example.com");
        assert_eq!(job.job_id.as_str(), "job-1");
        assert_eq!(job.trigger, Trigger::Schedule);
        assert_eq!(job.requested_at.to_rfc3339(), "2025-07-05T19:00:00+00:00");
    }

    #[test]
    fn minimal_job_takes_defaults_and_generates_an_id() {
        let job = BackupJob::parse(r#"{"table":"studentData"}"#, &defaults()).unwrap();
        assert_eq!(job.format, Format::DynamodbJson);
        assert_eq!(job.compression, Compression::Gzip);
        assert_eq!(job.segments, None);
        assert_eq!(job.destination.prefix().as_str(), "backups/");
        assert_eq!(job.trigger, Trigger::Manual);
        assert!(JobId::new(job.job_id.as_str()).is_ok());
        let other = BackupJob::parse(r#"{"table":"studentData"}"#, &defaults()).unwrap();
        assert_ne!(job.job_id, other.job_id);
    }

    #[test]
    fn to_request_round_trips_through_json() {
        let job = BackupJob::parse(
            r#"{"table":"studentData","segments":3,"notify":["a@b.co"],"job_id":"x1"}"#,
            &defaults(),
        )
        .unwrap();
        let json = serde_json::to_string(&job.to_request()).unwrap();
        let again = BackupJob::parse(&json, &JobDefaults::default()).unwrap();
        assert_eq!(job, again);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"table":"studentData","colour":"red"}"#),
            "colour"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","format":"xml"}"#),
            "format"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","compression":7}"#),
            "compression"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","segments":0}"#),
            "segments"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","segments":-3}"#),
            "segments"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","segments":1001}"#),
            "segments"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","segments":2.5}"#),
            "segments"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","segments":"8"}"#),
            "segments"
        );
        assert_eq!(field_of(r#"{"table":"x"}"#), "table");
        assert_eq!(field_of(r#"{"table":"student data"}"#), "table");
        assert_eq!(field_of(r#"{}"#), "table");
        assert_eq!(
            field_of(r#"{"table":"studentData","bucket":"Bad_Bucket"}"#),
            "bucket"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","bucket":"192.168.1.1"}"#),
            "bucket"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","prefix":"/abs"}"#),
            "prefix"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","prefix":"a/../b"}"#),
            "prefix"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","notify":["nope"]}"#),
            "notify[0]"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","notify":"a@b.co"}"#),
            "notify"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","job_id":"../x"}"#),
            "job_id"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","trigger":"cron"}"#),
            "trigger"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","consistent_read":"yes"}"#),
            "consistent_read"
        );
        assert_eq!(
            field_of(r#"{"table":"studentData","requested_at":"yesterday"}"#),
            "requested_at"
        );
        assert_eq!(field_of(r#"[1,2]"#), ".");
        assert_eq!(field_of(r#"{"table":"studentData""#), "<syntax>");
        assert_eq!(field_of(r#"{"table":"studentData"} trailing"#), "<syntax>");
        assert_eq!(field_of(""), "<syntax>");
    }

    #[test]
    fn messages_say_what_was_expected() {
        let err = BackupJob::parse(r#"{"table":"studentData","format":"xml"}"#, &defaults())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`format`") && err.contains("dynamodb-json"),
            "{err}"
        );
        let err = BackupJob::parse(r#"{"table":"studentData","colour":"red"}"#, &defaults())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("colour") && err.contains("expected one of"),
            "{err}"
        );
        let err = BackupJob::parse(r#"{"table":"studentData"}"#, &JobDefaults::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("DDB_BACKUP_BUCKET"), "{err}");
    }

    #[test]
    fn out_dir_destination_needs_no_bucket() {
        let job = JobRequest::from_json(r#"{"table":"studentData"}"#)
            .unwrap()
            .into_job(
                &JobDefaults::default(),
                Some(Destination::Directory {
                    root: "/tmp/x".into(),
                    prefix: Prefix::default(),
                }),
            )
            .unwrap();
        assert!(matches!(job.destination, Destination::Directory { .. }));
    }

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(Prefix::new("").unwrap().as_str(), "");
        assert_eq!(Prefix::new("/").map(|p| p.0).ok(), None);
        assert_eq!(Prefix::new("a").unwrap().as_str(), "a/");
        assert_eq!(Prefix::new("a/b/").unwrap().as_str(), "a/b/");
        assert!(Prefix::new("a//b").is_err());
    }

    /// The documented JSON Schema (docs/job.md) must describe the job the code accepts: the same
    /// fields, the same enum values, the same limits.
    #[test]
    fn the_documented_schema_matches_the_job_the_code_accepts() {
        let readme = include_str!("../docs/job.md");
        let start = readme
            .find("\"title\": \"ddb-backup job\"")
            .expect("schema in docs/job.md");
        let open = readme[..start].rfind("```json").expect("schema block") + "```json".len();
        let close = open + readme[open..].find("```").expect("end of schema block");
        let schema: serde_json::Value = serde_json::from_str(&readme[open..close]).unwrap();
        let properties = schema["properties"].as_object().unwrap();

        let full = JobRequest {
            table: Some("t".repeat(3)),
            format: Some(Format::Json),
            compression: Some(Compression::Zstd),
            parquet_compression: Some(ParquetCompression::Snappy),
            segments: Some(1),
            bucket: Some("b".repeat(3)),
            prefix: Some("p/".into()),
            consistent_read: Some(true),
            read_budget: Some(10.0),
            read_budget_percent: Some(50.0),
            notify: Some(vec![]),
            job_id: Some("j".into()),
            trigger: Some(Trigger::Api),
            requested_at: Some("2025-07-06T02:00:00Z".into()),
        };
        let wire = serde_json::to_value(&full).unwrap();
        let mut code_fields: Vec<_> = wire.as_object().unwrap().keys().cloned().collect();
        let mut doc_fields: Vec<_> = properties.keys().cloned().collect();
        code_fields.sort();
        doc_fields.sort();
        assert_eq!(doc_fields, code_fields);

        let names = |v: &serde_json::Value| -> Vec<String> {
            v["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            names(&properties["format"]),
            Format::ALL.map(|f| f.name().to_string())
        );
        assert_eq!(
            names(&properties["compression"]),
            Compression::ALL.map(|c| c.name().to_string())
        );
        assert_eq!(
            names(&properties["parquet_compression"]),
            ParquetCompression::ALL.map(|c| c.name().to_string())
        );
        for trigger in names(&properties["trigger"]) {
            let json = format!(r#"{{"table":"tbl","bucket":"b-1","trigger":"{trigger}"}}"#);
            assert!(
                BackupJob::parse(&json, &JobDefaults::default()).is_ok(),
                "{trigger}"
            );
        }
        assert_eq!(properties["segments"]["maximum"], MAX_SEGMENTS);
        assert_eq!(properties["notify"]["maxItems"], MAX_RECIPIENTS);
    }
}

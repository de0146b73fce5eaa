//! The backup job: the one JSON document that the CLI, SQS messages, the API body and the schedule
//! all carry. It is parsed and validated once, at the edge, into a [`BackupJob`] whose fields can
//! only hold valid values; nothing downstream re-checks a string.

use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::format::{Compression, Format, ParquetCompression};

mod policy;
mod values;

pub use policy::{JobPolicy, NotAllowed, Recipients};
pub use values::{
    BucketName, EmailAddress, InvalidValue, JobId, Prefix, ReadBudgetLimit, TableName,
};

/// Largest `segments` one worker may be given. DynamoDB accepts up to 1,000,000 per scan, but
/// every segment costs at least one request and its own buffers; past a thousand in one worker
/// nothing gets faster. A job fanned out over `workers` may ask for this many per worker.
pub const MAX_SEGMENTS: u32 = 1000;
/// Largest `workers` a job may ask for: one backup spread over this many Lambda invocations.
pub const MAX_WORKERS: u32 = 1000;
/// Default ceiling on the workers of one job (`DDB_BACKUP_MAX_WORKERS`): enough for 1 TB at the
/// size rule of [`crate::model::fan_out::workers_for`].
pub const DEFAULT_MAX_WORKERS: u32 = 100;
/// Largest read budget a job may ask for, in RCU/s (far above any table's need; a typo guard).
pub const MAX_READ_BUDGET: f64 = 1_000_000.0;

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
    /// Workers (Lambda invocations) sharing the scan; chosen from the table's size when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<i64>,
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
/// ([`crate::runtime::config::Settings`]); the CLI overlays its flags on top.
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
    /// Ceiling on `workers`, given or chosen (`DDB_BACKUP_MAX_WORKERS`).
    pub max_workers: u32,
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
            max_workers: DEFAULT_MAX_WORKERS,
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
    /// Explicit worker count, or `None` to choose from the table's size.
    pub workers: Option<NonZeroU32>,
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

    pub(crate) fn field_error(field: &str, message: impl Into<String>) -> Self {
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
        let workers = match self.workers {
            None => None,
            Some(n) => Some(validate_workers(n, defaults.max_workers)?),
        };
        let segments = match self.segments {
            None => defaults.segments,
            Some(n) => Some(validate_segments(n, workers)?),
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
            workers,
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
            workers: self.workers.map(|n| i64::from(n.get())),
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

fn validate_segments(n: i64, workers: Option<NonZeroU32>) -> Result<NonZeroU32, JobError> {
    let workers = workers.map_or(1, NonZeroU32::get);
    let most = MAX_SEGMENTS * workers;
    let segments = u32::try_from(n)
        .ok()
        .filter(|n| *n <= most)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            let per_worker = if workers > 1 {
                format!(" ({MAX_SEGMENTS} for each of {workers} workers)")
            } else {
                String::new()
            };
            JobError::field_error(
                "segments",
                format!("must be a whole number from 1 to {most}{per_worker}, got {n}; leave it out to size it from the table"),
            )
        })?;
    if segments.get() < workers {
        return Err(JobError::field_error(
            "segments",
            format!("{segments} segments cannot be shared by {workers} workers: give at least one segment per worker, or leave `segments` out"),
        ));
    }
    Ok(segments)
}

fn validate_workers(n: i64, max_workers: u32) -> Result<NonZeroU32, JobError> {
    let most = max_workers.clamp(1, MAX_WORKERS);
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= most)
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            JobError::field_error(
                "workers",
                format!("must be a whole number from 1 to {most} (DDB_BACKUP_MAX_WORKERS), got {n}; leave it out to size it from the table"),
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

#[cfg(test)]
mod tests;

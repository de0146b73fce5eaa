//! What became of each message: its disposition, the numbers the logs and metrics carry, and the
//! advice the failure email gives.

use std::time::Duration;

use serde::Serialize;

use crate::backup::pipeline::BackupError;
use crate::error::Retryable;
use crate::model::job::BackupJob;
use crate::source::ScanError;
use crate::store::StoreError;
use crate::triggers::metrics::{JobMetrics, Outcome};

use super::QueueMessage;

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The backup completed.
    Done,
    /// Already complete, or stopped because another worker failed the job; acknowledged.
    Skipped,
    /// A job for several workers: one shard message per worker is queued.
    FannedOut,
    /// This worker's share is read and recorded; another worker completes the job.
    ShardDone,
    /// Suspended at the deadline; a continuation is on the queue.
    Continued,
    /// Can never succeed; moved to the dead-letter queue (or left to SQS's redrive to move it).
    Rejected,
    /// Transient failure; SQS delivers it again.
    Retry,
    /// Another invocation is working on the same job (a concurrent duplicate delivery): the
    /// message stays on the queue, and its next delivery finds the job further on or complete.
    Deferred,
    /// A message from the dead-letter queue: its job's failure is recorded and reported (once),
    /// and the message is kept on the failed-jobs queue for a redrive.
    Recorded,
    /// The stuck-job sweep ran; `stuck_jobs` says how many jobs it failed.
    Swept,
}

/// The result of one message, for the batch response and the logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageReport {
    /// SQS message id.
    pub message_id: String,
    /// The job, when the message could be parsed.
    pub job_id: Option<String>,
    /// What happened.
    pub disposition: Disposition,
    /// Why, in a sentence.
    pub detail: String,
    /// Whether SQS must keep the message (it is reported as a batch item failure).
    pub keep_on_queue: bool,
    /// For a kept message: when it should come back, in seconds (its visibility is set to this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// The job's table, when the message could be parsed.
    pub table: Option<String>,
    /// Items backed up so far (complete or suspended jobs).
    pub items: Option<u64>,
    /// Bytes stored so far (complete or suspended jobs).
    pub bytes: Option<u64>,
    /// Time spent on this message.
    pub duration_ms: u64,
    /// Working time of the whole job, every leg (complete jobs).
    pub job_duration_ms: Option<u64>,
    /// Read capacity the whole job consumed (complete jobs).
    pub consumed_rcu: Option<f64>,
    /// Items against the table's previous backup, in percent (complete jobs).
    pub items_change_percent: Option<f64>,
    /// Whether the table shrank past the alert threshold (complete jobs).
    pub shrank: bool,
    /// Jobs the stuck-job sweep failed (a sweep).
    #[serde(skip_serializing_if = "is_zero")]
    pub stuck_jobs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl MessageReport {
    /// A report of `message` (and its job, when it could be parsed). A retry or a deferral keeps the
    /// message on the queue; the numbers are filled in by whoever has them.
    pub fn new(
        message: &QueueMessage,
        job: Option<&BackupJob>,
        disposition: Disposition,
        detail: String,
    ) -> MessageReport {
        MessageReport {
            message_id: message.id.clone(),
            job_id: job.map(|j| j.job_id.to_string()),
            disposition,
            detail,
            keep_on_queue: matches!(disposition, Disposition::Retry | Disposition::Deferred),
            retry_after_secs: (disposition == Disposition::Retry)
                .then(|| retry_backoff(message.receive_count).as_secs()),
            table: job.map(|j| j.table.to_string()),
            items: None,
            bytes: None,
            duration_ms: 0,
            job_duration_ms: None,
            consumed_rcu: None,
            items_change_percent: None,
            shrank: false,
            stuck_jobs: 0,
        }
    }

    /// The metrics of a handled message: complete backups and failed attempts. Nothing for a
    /// message that was skipped, continued, or could not even be parsed into a job (the
    /// dead-letter alarm covers that one).
    pub fn metrics(&self) -> Option<JobMetrics> {
        let outcome = match self.disposition {
            Disposition::Done => Outcome::Succeeded,
            Disposition::Rejected | Disposition::Retry | Disposition::Recorded => Outcome::Failed,
            Disposition::Skipped
            | Disposition::Continued
            | Disposition::FannedOut
            | Disposition::ShardDone
            | Disposition::Deferred
            | Disposition::Swept => return None,
        };
        // A failed attempt's report carries no items or bytes.
        Some(JobMetrics {
            table: self.table.clone()?,
            job_id: self.job_id.clone()?,
            outcome,
            items: self.items.unwrap_or(0),
            stored_bytes: self.bytes.unwrap_or(0),
            duration_ms: self.job_duration_ms.unwrap_or(self.duration_ms),
            consumed_rcu: self.consumed_rcu.unwrap_or(0.0),
            items_change_percent: self.items_change_percent,
            shrank: self.shrank,
            stuck: false,
        })
    }
}

/// Shortest wait before a transient failure is tried again.
pub const RETRY_BACKOFF_BASE: Duration = Duration::from_secs(30);
/// Longest wait before a transient failure is tried again.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(60 * 60);

/// How long a message that failed for a transient reason waits before its next delivery: 30 s
/// after the first, four times longer with each delivery (2, 8, 32 minutes) up to an hour, give
/// or take a fifth so that the shards of one job failing together do not all come back
/// together. The queue's 5 deliveries so span about 42 minutes: a blip costs a job seconds, an
/// outage of half an hour does not fail it. (Without this, each retry would wait out the
/// queue's visibility timeout, which must outlast a whole invocation.)
pub fn retry_backoff(receive_count: u32) -> Duration {
    let steps = receive_count.saturating_sub(1).min(10);
    let wait = RETRY_BACKOFF_BASE
        .saturating_mul(4u32.saturating_pow(steps))
        .min(RETRY_BACKOFF_MAX);
    let per_mille = 800 + (uuid::Uuid::new_v4().as_u128() % 401) as u32;
    wait * per_mille / 1000
}

/// What an operator should check first, for the failure email.
pub fn advice(err: &BackupError, job: &BackupJob) -> String {
    match err {
        BackupError::Scan(ScanError::TableNotFound { .. }) => format!(
            "Check the table name `{}` in the job and that the worker runs in the table's region.",
            job.table
        ),
        BackupError::Scan(ScanError::AccessDenied { .. }) => "Grant dynamodb:Scan and dynamodb:DescribeTable on the table to the worker's role (see infra/template.yaml).".to_string(),
        BackupError::Scan(_) => "DynamoDB kept failing after retries: check the table's throttling metrics and the AWS Health Dashboard.".to_string(),
        BackupError::Encode { source, .. } if source.is_retryable() => "The worker could not write its output (most often memory ran out): raise WorkerMemoryMiB or lower the job's segments, then send the job again.".to_string(),
        BackupError::Encode { .. } => "An item holds a value that could not be encoded; the error names the attribute. Upgrade ddb-backup or fix the item, then send the job again.".to_string(),
        BackupError::Store(StoreError::DestinationMissing { .. }) => "Create the bucket (infra/) or fix the bucket name in the job.".to_string(),
        BackupError::Store(StoreError::AccessDenied { .. }) => "Check the worker role's S3 permissions and the bucket policy, which lets only the worker's role write.".to_string(),
        BackupError::Store(_) => "S3 kept failing after retries: check the bucket's region, KMS key permissions and the AWS Health Dashboard.".to_string(),
        _ => format!("Search the worker's logs for job_id {}.", job.job_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_come_back_in_seconds_growing_per_delivery_never_past_an_hour() {
        for _ in 0..200 {
            let first = retry_backoff(1).as_secs_f64();
            assert!((24.0..=36.0).contains(&first), "{first}");
            let third = retry_backoff(3).as_secs_f64();
            assert!((384.0..=576.0).contains(&third), "{third}");
            assert!(retry_backoff(40) <= RETRY_BACKOFF_MAX * 6 / 5);
            assert!(retry_backoff(40) >= RETRY_BACKOFF_MAX * 4 / 5);
        }
    }
}

//! What arrives on the queue: SQS records, parsed into a job or a continuation of one, and the
//! invocation's deadline as the runtime gives it.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::warn;

use crate::model::fan_out::Shard;
use crate::model::job::{BackupJob, JobDefaults, JobError, JobId, JobRequest};

/// One queue message, as much as the worker needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// SQS message id; the job id of a job that names none.
    pub id: String,
    /// The body: a job, or a continuation.
    pub body: String,
    /// When the message was first sent; the `requested_at` of a job that gives none.
    pub sent_at: Option<DateTime<Utc>>,
    /// How many times SQS has delivered it, this time included.
    pub receive_count: u32,
    /// What `ChangeMessageVisibility` needs to bring a retry back early (none for a message
    /// handed over without one, as in tests).
    pub receipt_handle: Option<String>,
    /// The name of the queue it came from: the job queue, or the dead-letter queue whose
    /// messages the worker records as failed jobs.
    pub queue: Option<String>,
    /// Why it was dead-lettered, when the worker moved it itself (the `ddb-backup-reason`
    /// attribute).
    pub reason: Option<String>,
}

impl QueueMessage {
    /// Reads a record of the Lambda SQS event.
    pub fn from_sqs(record: &SqsMessage) -> QueueMessage {
        let attribute = |name: &str| record.attributes.get(name).map(String::as_str);
        let mut message = QueueMessage::from_parts(
            record.message_id.clone().unwrap_or_default(),
            record.body.clone().unwrap_or_default(),
            attribute("SentTimestamp"),
            attribute("ApproximateReceiveCount"),
        );
        message.receipt_handle = record.receipt_handle.clone();
        message.queue = record
            .event_source_arn
            .as_deref()
            .map(|arn| crate::triggers::queue::queue_name(arn).to_string());
        message.reason = record
            .message_attributes
            .get(crate::triggers::queue::REASON_ATTRIBUTE)
            .and_then(|a| a.string_value.clone());
        message
    }

    /// A message from its id, body and SQS's `SentTimestamp` (epoch milliseconds) and
    /// `ApproximateReceiveCount` attributes, as an event or `ReceiveMessage` gives them.
    pub fn from_parts(
        id: String,
        body: String,
        sent_timestamp: Option<&str>,
        receive_count: Option<&str>,
    ) -> QueueMessage {
        QueueMessage {
            id,
            body,
            sent_at: sent_timestamp
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            receive_count: receive_count
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1),
            receipt_handle: None,
            queue: None,
            reason: None,
        }
    }
}

/// What a message asks for: a job, or one worker's share of it, possibly continuing from a
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOrder {
    /// The validated job.
    pub job: BackupJob,
    /// The checkpoint this message continues from (`None` for a new job or share).
    pub continuation: Option<u32>,
    /// The worker's share of a fanned-out job (`None` for the whole job).
    pub shard: Option<Shard>,
}

/// The wire form of the messages the worker writes: a shard `{"worker": 2, "job": {…}}`, a
/// continuation `{"continuation": 3, "job": {…}}`, or a shard's continuation with both. The job
/// carries every field explicitly (including `job_id`, `requested_at` and, for a shard,
/// `workers` and `segments`), so the next leg writes to the same place whatever that worker's
/// defaults are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The worker (from 0) whose share this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// Sequence number of the checkpoint to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<u32>,
    /// The job.
    pub job: JobRequest,
}

impl WorkOrder {
    /// Parses a message body. A job message is the job JSON of docs/job.md; a shard or a
    /// continuation is recognized by its `worker` or `continuation` field. Fields the job leaves
    /// out come from `defaults`, except `job_id` and `requested_at`, which come from the message
    /// so that a redelivered message is the same job.
    pub fn parse(message: &QueueMessage, defaults: &JobDefaults) -> Result<WorkOrder, JobError> {
        let (mut request, continuation, worker) = match envelope_parts(&message.body)? {
            Some(Parts {
                continuation,
                worker,
                job,
            }) => (
                JobRequest::from_json(&job).map_err(|e| match e {
                    JobError::Field { field, message } => JobError::Field {
                        field: if field == "." {
                            "job".to_string()
                        } else {
                            format!("job.{field}")
                        },
                        message,
                    },
                    other => other,
                })?,
                continuation,
                worker,
            ),
            None => (JobRequest::from_json(&message.body)?, None, None),
        };
        let written_by_worker = continuation.is_some() || worker.is_some();
        if written_by_worker && (request.job_id.is_none() || request.requested_at.is_none()) {
            return Err(JobError::Field {
                field: "job".to_string(),
                message: "a continuation or shard must carry the job's job_id and requested_at; it is written by the worker, not by hand".to_string(),
            });
        }
        let shard = match worker {
            None => None,
            Some(worker) => {
                let (Some(workers), Some(_)) = (request.workers, request.segments) else {
                    return Err(JobError::Field {
                        field: "job".to_string(),
                        message: "a shard must carry the job's workers and segments; it is written by the worker, not by hand".to_string(),
                    });
                };
                let workers = u32::try_from(workers).unwrap_or(0);
                Some(
                    Shard::new(worker, workers).map_err(|message| JobError::Field {
                        field: "worker".to_string(),
                        message,
                    })?,
                )
            }
        };
        if request.job_id.is_none() && JobId::new(&message.id).is_ok() {
            request.job_id = Some(message.id.clone());
        }
        if request.requested_at.is_none() {
            request.requested_at = message
                .sent_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        // A shard or continuation was checked when its job was accepted; its workers are the
        // stored plan's (checked against it before reading), whatever this worker's
        // `DDB_BACKUP_MAX_WORKERS` is now.
        let mut limits = defaults.clone();
        if written_by_worker {
            limits.max_workers = crate::model::job::MAX_WORKERS;
        }
        Ok(WorkOrder {
            job: request.into_job(&limits, None)?,
            continuation,
            shard,
        })
    }
}

/// A message the worker wrote, taken apart.
struct Parts {
    continuation: Option<u32>,
    worker: Option<u32>,
    job: String,
}

/// Splits a shard or continuation into its numbers and job JSON; `None` for a plain job.
fn envelope_parts(body: &str) -> Result<Option<Parts>, JobError> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(body) else {
        return Ok(None);
    };
    let (sequence, worker) = (fields.remove("continuation"), fields.remove("worker"));
    if sequence.is_none() && worker.is_none() {
        return Ok(None);
    }
    let field = |field: &str, message: String| JobError::Field {
        field: field.to_string(),
        message,
    };
    if let Some(other) = fields.keys().find(|k| k.as_str() != "job") {
        return Err(field(
            other,
            "unknown field in a shard or continuation; expected only `worker`, `continuation` and `job`".to_string(),
        ));
    }
    let continuation = sequence
        .map(|sequence| {
            sequence
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    field(
                        "continuation",
                        format!("expected a checkpoint number from 1, got {sequence}"),
                    )
                })
        })
        .transpose()?;
    let worker = worker
        .map(|worker| {
            worker
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    field(
                        "worker",
                        format!("expected a worker number from 0, got {worker}"),
                    )
                })
        })
        .transpose()?;
    let job = fields
        .remove("job")
        .ok_or_else(|| field("job", "required in a shard or continuation".to_string()))?;
    Ok(Some(Parts {
        continuation,
        worker,
        job: job.to_string(),
    }))
}

/// Lambda's longest invocation.
pub const MAX_INVOCATION: Duration = Duration::from_secs(15 * 60);

/// The instant of a Lambda deadline (`Lambda-Runtime-Deadline-Ms`, milliseconds since the epoch).
/// Some local runtime emulators send the timeout itself instead (cargo lambda sends 600000): a
/// value before 2001 cannot be a wall-clock deadline, so it is read as milliseconds from now,
/// at most Lambda's 15 minutes.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    const YEAR_2001_MS: u64 = 1_000_000_000_000;
    if deadline_ms < YEAR_2001_MS {
        warn!(
            deadline_ms,
            "the runtime's deadline is not a wall-clock time; reading it as a timeout"
        );
        return Instant::now() + Duration::from_millis(deadline_ms).min(MAX_INVOCATION);
    }
    let now_ms = Utc::now().timestamp_millis().max(0) as u64;
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

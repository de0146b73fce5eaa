//! The SQS worker: one message, one job. It parses the message into a [`BackupJob`], runs the
//! pipeline until done or until the invocation's deadline nears, then reports. Every message gets
//! exactly one of five dispositions, and the Lambda handler turns them into a partial batch
//! response, so one bad or failing message never fails the others:
//!
//! - `done`: the backup is complete (manifest written, email sent);
//! - `skipped`: the job was already complete (a redelivery): acknowledged, no second email;
//! - `continued`: the deadline came first; a checkpoint is stored and a continuation message
//!   carries the job to the next invocation;
//! - `rejected`: the message can never succeed (bad JSON, unknown field, a table that does not
//!   exist…): logged with its reason and moved to the dead-letter queue;
//! - `retry`: a transient failure; SQS delivers the message again after its visibility timeout.
//!
//! Idempotency: SQS delivers at least once. A job's object keys follow from its `job_id` and
//! `requested_at` (for a message without them: the SQS message id and its sent time, both stable
//! across redeliveries); a job whose manifest exists is skipped, and any delivery resumes from
//! the newest checkpoint.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::checkpoint::Checkpoint;
use crate::job::{BackupJob, Destination, EmailAddress, JobDefaults, JobError, JobId, JobRequest};
use crate::manifest::{Layout, Manifest};
use crate::metrics::{JobMetrics, MetricsSink, Outcome};
use crate::notify::{Email, JobSummary, Notifier};
use crate::pipeline::{Backup, BackupError, LegOutcome, Tuning};
use crate::queue::JobQueue;
use crate::scan::{ScanError, TableSource};
use crate::status::{JobState, JobStatus, StatusBoard};
use crate::store::{ObjectStore, StoreError};

/// Builds the store for a job's destination (jobs may name their own bucket).
pub type StoreFactory = Arc<dyn Fn(&Destination) -> Arc<dyn ObjectStore> + Send + Sync>;

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
}

impl QueueMessage {
    /// Reads a record of the Lambda SQS event.
    pub fn from_sqs(record: &SqsMessage) -> QueueMessage {
        let attribute = |name: &str| record.attributes.get(name).map(String::as_str);
        QueueMessage {
            id: record.message_id.clone().unwrap_or_default(),
            body: record.body.clone().unwrap_or_default(),
            sent_at: attribute("SentTimestamp")
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
            receive_count: attribute("ApproximateReceiveCount")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1),
        }
    }
}

/// What a message asks for: a job, possibly continuing from a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkOrder {
    /// The validated job.
    pub job: BackupJob,
    /// The checkpoint this message continues from (`None` for a new job).
    pub continuation: Option<u32>,
}

/// The wire form of a continuation message: `{"continuation": 3, "job": {…}}`. The job carries
/// every field explicitly (including `job_id` and `requested_at`), so the next leg writes to the
/// same place whatever that worker's defaults are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinuationMessage {
    /// Sequence number of the checkpoint to resume from.
    pub continuation: u32,
    /// The job.
    pub job: JobRequest,
}

impl WorkOrder {
    /// Parses a message body. A job message is the job JSON of docs/job.md; a continuation is
    /// recognized by its `continuation` field. Fields the job leaves out come from `defaults`,
    /// except `job_id` and `requested_at`, which come from the message so that a redelivered
    /// message is the same job.
    pub fn parse(message: &QueueMessage, defaults: &JobDefaults) -> Result<WorkOrder, JobError> {
        let (mut request, continuation) = match continuation_parts(&message.body)? {
            Some((sequence, job)) => (
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
                Some(sequence),
            ),
            None => (JobRequest::from_json(&message.body)?, None),
        };
        if continuation.is_some() && (request.job_id.is_none() || request.requested_at.is_none()) {
            return Err(JobError::Field {
                field: "job".to_string(),
                message: "a continuation must carry the job's job_id and requested_at; it is written by the worker, not by hand".to_string(),
            });
        }
        if request.job_id.is_none() && JobId::new(&message.id).is_ok() {
            request.job_id = Some(message.id.clone());
        }
        if request.requested_at.is_none() {
            request.requested_at = message
                .sent_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        Ok(WorkOrder {
            job: request.into_job(defaults, None)?,
            continuation,
        })
    }
}

/// Splits a continuation into its sequence number and job JSON; `None` for a plain job.
fn continuation_parts(body: &str) -> Result<Option<(u32, String)>, JobError> {
    let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(body) else {
        return Ok(None);
    };
    let Some(sequence) = fields.remove("continuation") else {
        return Ok(None);
    };
    let field = |field: &str, message: String| JobError::Field {
        field: field.to_string(),
        message,
    };
    if let Some(other) = fields.keys().find(|k| k.as_str() != "job") {
        return Err(field(
            other,
            "unknown field in a continuation; expected only `continuation` and `job`".to_string(),
        ));
    }
    let sequence = sequence
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| {
            field(
                "continuation",
                format!("expected a checkpoint number from 1, got {sequence}"),
            )
        })?;
    let job = fields
        .remove("job")
        .ok_or_else(|| field("job", "required in a continuation".to_string()))?;
    Ok(Some((sequence, job.to_string())))
}

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// The backup completed.
    Done,
    /// Already complete; acknowledged without work.
    Skipped,
    /// Suspended at the deadline; a continuation is on the queue.
    Continued,
    /// Can never succeed; moved to the dead-letter queue (or left to SQS's redrive to move it).
    Rejected,
    /// Transient failure; SQS delivers it again.
    Retry,
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
}

impl MessageReport {
    /// The metrics of a handled message: complete backups and failed attempts. Nothing for a
    /// message that was skipped, continued, or could not even be parsed into a job (the
    /// dead-letter alarm covers that one).
    pub fn metrics(&self) -> Option<JobMetrics> {
        let outcome = match self.disposition {
            Disposition::Done => Outcome::Succeeded,
            Disposition::Rejected | Disposition::Retry => Outcome::Failed,
            Disposition::Skipped | Disposition::Continued => return None,
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
        })
    }
}

/// The worker and its ports.
pub struct Worker {
    source: Arc<dyn TableSource>,
    stores: StoreFactory,
    defaults: JobDefaults,
    tuning: Tuning,
    queue: Option<Arc<dyn JobQueue>>,
    dead_letters: Option<Arc<dyn JobQueue>>,
    notifier: Option<(Arc<dyn Notifier>, EmailAddress)>,
    status: Option<StatusBoard>,
    metrics: Option<Arc<dyn MetricsSink>>,
    deadline_margin: Duration,
    max_receives: u32,
}

impl Worker {
    /// A worker reading tables from `source` and writing where `stores` says, with no queue,
    /// dead-letter queue, email or status (add them with the `with_*` methods).
    pub fn new(
        source: Arc<dyn TableSource>,
        stores: StoreFactory,
        defaults: JobDefaults,
        tuning: Tuning,
    ) -> Self {
        Worker {
            source,
            stores,
            defaults,
            tuning,
            queue: None,
            dead_letters: None,
            notifier: None,
            status: None,
            metrics: None,
            deadline_margin: Duration::from_secs(crate::config::DEFAULT_DEADLINE_MARGIN_SECS),
            max_receives: crate::config::DEFAULT_MAX_RECEIVES,
        }
    }

    /// The job queue, for continuations. Without it a job must finish in one invocation.
    pub fn with_queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The dead-letter queue, for messages that can never succeed.
    pub fn with_dead_letters(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.dead_letters = Some(queue);
        self
    }

    /// Summary emails from `sender`.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>, sender: EmailAddress) -> Self {
        self.notifier = Some((notifier, sender));
        self
    }

    /// Job status documents.
    pub fn with_status(mut self, status: StatusBoard) -> Self {
        self.status = Some(status);
        self
    }

    /// Per-job metrics (success, failure, items, bytes, duration, read capacity).
    pub fn with_metrics(mut self, metrics: Arc<dyn MetricsSink>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Time kept in hand before the deadline, and the deliveries after which SQS gives up.
    pub fn with_limits(mut self, deadline_margin: Duration, max_receives: u32) -> Self {
        self.deadline_margin = deadline_margin;
        self.max_receives = max_receives.max(1);
        self
    }

    /// Handles a Lambda SQS event: every message in turn, failures reported per message.
    pub async fn handle_sqs_event(&self, event: SqsEvent, deadline: Instant) -> SqsBatchResponse {
        let messages: Vec<QueueMessage> =
            event.records.iter().map(QueueMessage::from_sqs).collect();
        let reports = self.handle_batch(&messages, deadline).await;
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = reports
            .into_iter()
            .filter(|r| r.keep_on_queue)
            .map(|r| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = r.message_id;
                failure
            })
            .collect();
        response
    }

    /// Handles messages one after the other until the deadline nears; the rest are left on the
    /// queue for the next invocation.
    pub async fn handle_batch(
        &self,
        messages: &[QueueMessage],
        deadline: Instant,
    ) -> Vec<MessageReport> {
        let mut reports = Vec::with_capacity(messages.len());
        for message in messages {
            let started = Instant::now();
            let mut report = self.handle_message(message, deadline).await;
            report.duration_ms = started.elapsed().as_millis() as u64;
            info!(message_id = %report.message_id, job_id = report.job_id.as_deref().unwrap_or("-"),
                  table = report.table.as_deref().unwrap_or("-"),
                  disposition = ?report.disposition, keep_on_queue = report.keep_on_queue,
                  items = report.items, bytes = report.bytes, duration_ms = report.duration_ms,
                  detail = %report.detail, "message handled");
            if let (Some(sink), Some(metrics)) = (&self.metrics, report.metrics()) {
                sink.record(&metrics);
            }
            reports.push(report);
        }
        reports
    }

    /// Handles one message.
    pub async fn handle_message(&self, message: &QueueMessage, deadline: Instant) -> MessageReport {
        let order = match WorkOrder::parse(message, &self.defaults) {
            Ok(order) => order,
            Err(err) => {
                return self
                    .reject(message, None, format!("invalid job message: {err}"))
                    .await
            }
        };
        let job = &order.job;
        let report = |disposition, detail: String, keep_on_queue| MessageReport {
            message_id: message.id.clone(),
            job_id: Some(job.job_id.to_string()),
            disposition,
            detail,
            keep_on_queue,
            table: Some(job.table.to_string()),
            items: None,
            bytes: None,
            duration_ms: 0,
            job_duration_ms: None,
            consumed_rcu: None,
        };
        let time_left = deadline.saturating_duration_since(Instant::now());
        if time_left <= self.deadline_margin {
            return report(
                Disposition::Retry,
                format!(
                    "not started: {} ms left before the invocation's deadline, {} ms needed in hand",
                    time_left.as_millis(),
                    self.deadline_margin.as_millis()
                ),
                true,
            );
        }
        let store = (self.stores)(&job.destination);
        let layout = Layout::new(job);
        match store.exists(&layout.manifest_key()).await {
            Ok(true) => {
                let manifest_uri = store.uri(&layout.manifest_key());
                self.notify_once_after_crash(job, store.as_ref(), &layout, &manifest_uri)
                    .await;
                return report(
                    Disposition::Skipped,
                    format!("already complete: {manifest_uri}"),
                    false,
                );
            }
            Ok(false) => {}
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "checking for the manifest failed; will retry");
                return report(Disposition::Retry, err.to_string(), true);
            }
        }
        let resume = match self
            .latest_checkpoint(store.as_ref(), &layout, &order)
            .await
        {
            Ok(resume) => resume,
            Err(CheckpointLookup::Unknown(reason)) => {
                return self.reject(message, Some(job), reason).await
            }
            Err(CheckpointLookup::Store(err)) => {
                warn!(job_id = %job.job_id, error = %err, "reading checkpoints failed; will retry");
                return report(Disposition::Retry, err.to_string(), true);
            }
        };
        let legs = resume.as_ref().map_or(0, |c| c.sequence) + 1;
        let mut status = JobStatus::new(job, JobState::Running);
        status.legs = legs;
        self.put_status(&status).await;

        let backup = Backup::new(self.source.clone(), store.clone(), self.tuning.clone());
        let stop_at = deadline
            .checked_sub(self.deadline_margin)
            .unwrap_or_else(Instant::now);
        match backup.run_leg(job, resume, Some(stop_at)).await {
            Ok(LegOutcome::Complete(manifest)) => {
                let (items, bytes) = (manifest.item_count, manifest.bytes);
                let (job_duration_ms, consumed_rcu) =
                    (manifest.duration_ms, manifest.consumed_read_capacity);
                let manifest_uri = store.uri(&layout.manifest_key());
                status = complete_status(status, &manifest, &manifest_uri);
                status.notified = self
                    .notify(
                        job,
                        &JobSummary::Complete {
                            manifest,
                            manifest_uri: manifest_uri.clone(),
                        },
                    )
                    .await;
                self.put_status(&status).await;
                let mut done = report(
                    Disposition::Done,
                    format!("backup complete: {manifest_uri}"),
                    false,
                );
                (done.items, done.bytes) = (Some(items), Some(bytes));
                (done.job_duration_ms, done.consumed_rcu) =
                    (Some(job_duration_ms), Some(consumed_rcu));
                done
            }
            Ok(LegOutcome::Suspended(checkpoint)) => {
                let items = checkpoint.segments.iter().map(|s| s.items).sum();
                let bytes = checkpoint
                    .segments
                    .iter()
                    .flat_map(|s| &s.files)
                    .map(|f| f.bytes)
                    .sum();
                match self.continue_later(job, checkpoint.sequence).await {
                    Ok(detail) => {
                        let mut continued = report(Disposition::Continued, detail, false);
                        (continued.items, continued.bytes) = (Some(items), Some(bytes));
                        continued
                    }
                    // Keeping the message makes SQS redeliver it; that delivery resumes from the
                    // checkpoint just written, so no work is lost.
                    Err(detail) => {
                        error!(job_id = %job.job_id, error = %detail, "continuation not sent; the message stays on the queue");
                        report(Disposition::Retry, detail, true)
                    }
                }
            }
            Err(BackupError::AlreadyComplete { manifest, .. }) => {
                self.notify_once_after_crash(job, store.as_ref(), &layout, &manifest)
                    .await;
                report(
                    Disposition::Skipped,
                    format!("already complete: {manifest}"),
                    false,
                )
            }
            Err(err) => {
                let permanent = is_permanent(&err);
                let will_retry = !permanent && message.receive_count < self.max_receives;
                error!(job_id = %job.job_id, table = %job.table, stage = err.stage().name(),
                       error = %err, permanent, will_retry, receive_count = message.receive_count,
                       "backup failed");
                status.state = JobState::Failed;
                status.stage = Some(err.stage().name().to_string());
                status.error = Some(err.to_string());
                status.will_retry = Some(will_retry);
                if !will_retry {
                    status.notified = self
                        .notify(
                            job,
                            &JobSummary::Failed {
                                job: Box::new(job.clone()),
                                stage: err.stage().name().to_string(),
                                error: err.to_string(),
                                advice: advice(&err, job),
                                will_retry,
                            },
                        )
                        .await;
                }
                self.put_status(&status).await;
                if permanent {
                    self.reject(message, Some(job), err.to_string()).await
                } else {
                    report(Disposition::Retry, err.to_string(), true)
                }
            }
        }
    }

    /// Finds the newest checkpoint of the job. A continuation must find the checkpoint it names;
    /// any delivery then resumes from the newest one, so a stale redelivery never redoes work.
    async fn latest_checkpoint(
        &self,
        store: &dyn ObjectStore,
        layout: &Layout,
        order: &WorkOrder,
    ) -> Result<Option<Checkpoint>, CheckpointLookup> {
        let mut sequence = order.continuation.unwrap_or(1);
        let exists = store.exists(&layout.checkpoint_key(sequence)).await?;
        if !exists {
            return match order.continuation {
                Some(n) => Err(CheckpointLookup::Unknown(format!(
                    "continuation of an unknown job: checkpoint {n} of job {} does not exist at {}",
                    order.job.job_id,
                    store.uri(&layout.checkpoint_key(n))
                ))),
                None => Ok(None),
            };
        }
        while store.exists(&layout.checkpoint_key(sequence + 1)).await? {
            sequence += 1;
        }
        let bytes = store.get(&layout.checkpoint_key(sequence)).await?;
        Checkpoint::from_json(&bytes, order.job.job_id.as_str())
            .map(Some)
            .map_err(|e| CheckpointLookup::Unknown(e.to_string()))
    }

    async fn continue_later(&self, job: &BackupJob, sequence: u32) -> Result<String, String> {
        let Some(queue) = &self.queue else {
            return Err("the job needs another invocation but no queue is configured (DDB_BACKUP_QUEUE_URL)".to_string());
        };
        let body = serde_json::to_string(&ContinuationMessage {
            continuation: sequence,
            job: job.to_request(),
        })
        .map_err(|e| e.to_string())?;
        let id = queue.send(&body, None).await.map_err(|e| e.to_string())?;
        Ok(format!(
            "suspended at checkpoint {sequence}; continuation {id} queued"
        ))
    }

    /// Moves a message that can never succeed to the dead-letter queue, with its reason. Without
    /// a dead-letter queue (or if sending fails) the message stays, and SQS's redrive policy
    /// moves it after `maxReceiveCount` deliveries.
    async fn reject(
        &self,
        message: &QueueMessage,
        job: Option<&BackupJob>,
        reason: String,
    ) -> MessageReport {
        let job_id = job.map(|j| j.job_id.to_string());
        error!(message_id = %message.id, job_id = job_id.as_deref().unwrap_or("-"),
               reason = %reason, "message rejected: it can never succeed");
        let moved = match &self.dead_letters {
            Some(dlq) => match dlq.send(&message.body, Some(&reason)).await {
                Ok(_) => true,
                Err(err) => {
                    error!(message_id = %message.id, error = %err, "moving the message to the dead-letter queue failed; SQS's redrive will move it");
                    false
                }
            },
            None => false,
        };
        MessageReport {
            message_id: message.id.clone(),
            job_id,
            disposition: Disposition::Rejected,
            detail: reason,
            keep_on_queue: !moved,
            table: job.map(|j| j.table.to_string()),
            items: None,
            bytes: None,
            duration_ms: 0,
            job_duration_ms: None,
            consumed_rcu: None,
        }
    }

    /// Sends the summary email; returns whether it went out. A failed email is logged, never
    /// turned into a failed job.
    async fn notify(&self, job: &BackupJob, summary: &JobSummary) -> bool {
        let Some((notifier, sender)) = &self.notifier else {
            return false;
        };
        if job.notify.is_empty() {
            return false;
        }
        let email = Email::summary(summary, sender.clone(), job.notify.clone());
        match notifier.send(&email).await {
            Ok(id) => {
                info!(job_id = %job.job_id, message_id = %id, recipients = job.notify.len(), "summary email sent");
                true
            }
            Err(err) => {
                error!(job_id = %job.job_id, error = %err, "summary email failed; the backup itself is unaffected");
                false
            }
        }
    }

    /// A redelivered job is complete. If the worker that completed it stopped before the email
    /// went out (its status says so), send it now: one email per job, not zero.
    async fn notify_once_after_crash(
        &self,
        job: &BackupJob,
        store: &dyn ObjectStore,
        layout: &Layout,
        manifest_uri: &str,
    ) {
        let Some(board) = &self.status else { return };
        let status = match board.get(&job.job_id).await {
            Ok(Some(status)) if status.state == JobState::Complete && status.notified => return,
            Ok(Some(status)) if status.state == JobState::Complete && job.notify.is_empty() => {
                return
            }
            Ok(status) => status,
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "reading the job status failed");
                return;
            }
        };
        let manifest = match store
            .get(&layout.manifest_key())
            .await
            .map(|b| Manifest::from_json(&b))
        {
            Ok(Ok(manifest)) => manifest,
            Ok(Err(err)) => {
                warn!(job_id = %job.job_id, error = %err, "the manifest does not parse");
                return;
            }
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "reading the manifest failed");
                return;
            }
        };
        let mut status = complete_status(
            status.unwrap_or_else(|| JobStatus::new(job, JobState::Complete)),
            &manifest,
            manifest_uri,
        );
        status.notified = self
            .notify(
                job,
                &JobSummary::Complete {
                    manifest: Box::new(manifest),
                    manifest_uri: manifest_uri.to_string(),
                },
            )
            .await;
        self.put_status(&status).await;
    }

    async fn put_status(&self, status: &JobStatus) {
        if let Some(board) = &self.status {
            if let Err(err) = board.put(status).await {
                warn!(job_id = %status.job_id, error = %err, "writing the job status failed; the backup goes on");
            }
        }
    }
}

enum CheckpointLookup {
    Unknown(String),
    Store(StoreError),
}

impl From<StoreError> for CheckpointLookup {
    fn from(err: StoreError) -> Self {
        CheckpointLookup::Store(err)
    }
}

fn complete_status(mut status: JobStatus, manifest: &Manifest, uri: &str) -> JobStatus {
    status.state = JobState::Complete;
    status.items = Some(manifest.item_count);
    status.bytes = Some(manifest.bytes);
    status.files = Some(manifest.files.len());
    status.manifest = Some(uri.to_string());
    status.stage = None;
    status.error = None;
    status.will_retry = None;
    status
}

/// Whether retrying cannot help: the job, the data or the permissions must change first.
pub fn is_permanent(err: &BackupError) -> bool {
    match err {
        BackupError::Scan(ScanError::TableNotFound { .. } | ScanError::AccessDenied { .. })
        | BackupError::Store(
            StoreError::DestinationMissing { .. } | StoreError::AccessDenied { .. },
        )
        | BackupError::Encode { .. }
        | BackupError::Budget(_)
        | BackupError::Checkpoint(_) => true,
        BackupError::Scan(ScanError::Request { .. })
        | BackupError::Store(_)
        | BackupError::Manifest(_)
        | BackupError::Internal(_)
        | BackupError::Cancelled
        | BackupError::AlreadyComplete { .. } => false,
    }
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
        BackupError::Encode { .. } => "An item holds a value that could not be encoded; the error names the attribute. Upgrade ddb-backup or fix the item, then send the job again.".to_string(),
        BackupError::Store(StoreError::DestinationMissing { .. }) => "Create the bucket (infra/) or fix the bucket name in the job.".to_string(),
        BackupError::Store(StoreError::AccessDenied { .. }) => "Check the worker role's S3 permissions and the bucket policy, which lets only the worker's role write.".to_string(),
        BackupError::Store(_) => "S3 kept failing after retries: check the bucket's region, KMS key permissions and the AWS Health Dashboard.".to_string(),
        _ => format!("Search the worker's logs for job_id {}.", job.job_id),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{BucketName, Prefix};
    use crate::metrics::RecordedMetrics;
    use crate::notify::MemoryNotifier;
    use crate::queue::MemoryQueue;
    use crate::scan::MemorySource;
    use crate::store::MemoryStore;
    use crate::test_support::numbered_items;

    struct Harness {
        store: MemoryStore,
        queue: MemoryQueue,
        dead_letters: MemoryQueue,
        outbox: MemoryNotifier,
        metrics: Arc<RecordedMetrics>,
        worker: Worker,
    }

    fn harness(source: MemorySource) -> Harness {
        let store = MemoryStore::new();
        let queue = MemoryQueue::new();
        let dead_letters = MemoryQueue::new();
        let outbox = MemoryNotifier::new();
        let metrics = Arc::new(RecordedMetrics::default());
        let defaults = JobDefaults {
            bucket: Some(BucketName::new("student-backup-20250706").unwrap()),
            notify: vec![EmailAddress::new("ops@example.com").unwrap()],
            ..JobDefaults::default()
        };
        let stores_store = store.clone();
        let worker = Worker::new(
            Arc::new(source),
            Arc::new(move |_: &Destination| Arc::new(stores_store.clone()) as Arc<dyn ObjectStore>),
            defaults,
            Tuning::default(),
        )
        .with_queue(Arc::new(queue.clone()))
        .with_dead_letters(Arc::new(dead_letters.clone()))
        .with_notifier(
            Arc::new(outbox.clone()),
            EmailAddress::new("backup@example.com").unwrap(),
        )
        .with_status(StatusBoard::new(
            Arc::new(store.clone()),
            Prefix::new("backup-status/").unwrap(),
        ))
        .with_metrics(metrics.clone())
        .with_limits(Duration::from_millis(50), 5);
        Harness {
            store,
            queue,
            dead_letters,
            outbox,
            metrics,
            worker,
        }
    }

    fn message(id: &str, body: &str) -> QueueMessage {
        QueueMessage {
            id: id.to_string(),
            body: body.to_string(),
            sent_at: Some(Utc.with_ymd_and_hms(2026, 11, 28, 2, 0, 0).unwrap()),
            receive_count: 1,
        }
    }

    async fn status_of(store: &MemoryStore, job_id: &str) -> JobStatus {
        StatusBoard::new(
            Arc::new(store.clone()),
            Prefix::new("backup-status/").unwrap(),
        )
        .get(&JobId::new(job_id).unwrap())
        .await
        .unwrap()
        .expect("a status document")
    }

    fn far_deadline() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    fn manifests(store: &MemoryStore) -> Vec<String> {
        store
            .keys()
            .into_iter()
            .filter(|k| k.ends_with("/manifest.json"))
            .collect()
    }

    #[tokio::test]
    async fn a_batch_records_one_success_with_its_numbers_and_one_failure_and_nothing_else() {
        let h = harness(MemorySource::new(
            "studentData",
            "id",
            numbered_items(30),
            20,
        ));
        let good = message(
            "5f8e6c2a-0000-4000-8000-0000000000a1",
            r#"{"table":"studentData","job_id":"metrics-good"}"#,
        );
        let missing_table = message(
            "5f8e6c2a-0000-4000-8000-0000000000a2",
            r#"{"table":"noSuchTable","job_id":"metrics-bad"}"#,
        );
        let unparsable = message("5f8e6c2a-0000-4000-8000-0000000000a3", "not json");
        let batch = [good.clone(), missing_table, unparsable, good];
        let reports = h.worker.handle_batch(&batch, far_deadline()).await;
        let dispositions: Vec<_> = reports.iter().map(|r| r.disposition).collect();
        assert_eq!(
            dispositions,
            [
                Disposition::Done,
                Disposition::Rejected,
                Disposition::Rejected,
                Disposition::Skipped
            ]
        );
        let recorded = h.metrics.all();
        assert_eq!(recorded.len(), 2, "{recorded:?}");
        let success = &recorded[0];
        assert_eq!(
            (
                success.outcome,
                success.table.as_str(),
                success.job_id.as_str()
            ),
            (Outcome::Succeeded, "studentData", "metrics-good")
        );
        assert_eq!(success.items, 30);
        assert_eq!(Some(success.stored_bytes), reports[0].bytes);
        assert!(success.stored_bytes > 0);
        assert!(success.consumed_rcu > 0.0, "{success:?}");
        let failure = &recorded[1];
        assert_eq!(
            (failure.outcome, failure.table.as_str(), failure.items),
            (Outcome::Failed, "noSuchTable", 0)
        );
    }

    #[tokio::test]
    async fn the_same_message_delivered_three_times_gives_one_backup_and_one_email() {
        let h = harness(MemorySource::new(
            "studentData",
            "id",
            numbered_items(50),
            20,
        ));
        let msg = message(
            "5f8e6c2a-0000-4000-8000-000000000001",
            r#"{"table":"studentData"}"#,
        );
        let mut dispositions = Vec::new();
        for delivery in 1..=3 {
            let mut msg = msg.clone();
            msg.receive_count = delivery;
            dispositions.push(
                h.worker
                    .handle_message(&msg, far_deadline())
                    .await
                    .disposition,
            );
        }
        assert_eq!(
            dispositions,
            [
                Disposition::Done,
                Disposition::Skipped,
                Disposition::Skipped
            ]
        );
        let manifests = manifests(&h.store);
        assert_eq!(manifests.len(), 1, "{manifests:?}");
        assert!(
            manifests[0].starts_with(
                "backups/studentData/dt=2026-11-28/5f8e6c2a-0000-4000-8000-000000000001/"
            ),
            "job id and date come from the message: {}",
            manifests[0]
        );
        let sent = h.outbox.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(
            sent[0].subject.contains("complete: 50 items"),
            "{}",
            sent[0].subject
        );
        let status = status_of(&h.store, "5f8e6c2a-0000-4000-8000-000000000001").await;
        assert_eq!(status.state, JobState::Complete);
        assert_eq!(status.items, Some(50));
        assert!(status.notified);
    }

    #[tokio::test]
    async fn a_job_longer_than_one_invocation_continues_through_the_queue_until_complete() {
        let source = MemorySource::new("studentData", "id", numbered_items(1200), 25)
            .with_page_delay(Duration::from_millis(15));
        let h = harness(source);
        let mut msg = message(
            "m-1",
            r#"{"table":"studentData","segments":2,"job_id":"long-job"}"#,
        );
        let mut continuations = 0;
        loop {
            // Each invocation gets 50 ms of margin plus 100 ms of work: a few pages per segment.
            let deadline = Instant::now() + Duration::from_millis(150);
            let report = h.worker.handle_message(&msg, deadline).await;
            match report.disposition {
                Disposition::Continued => {
                    continuations += 1;
                    assert!(!report.keep_on_queue);
                    let mut sent = h.queue.drain();
                    assert_eq!(sent.len(), 1);
                    let body = sent.remove(0).body;
                    let parsed: ContinuationMessage = serde_json::from_str(&body).unwrap();
                    assert_eq!(parsed.continuation, continuations);
                    msg = message(&format!("m-{}", continuations + 1), &body);
                }
                Disposition::Done => break,
                other => panic!("unexpected {other:?}: {}", report.detail),
            }
            assert!(continuations < 100, "no progress");
        }
        assert!(continuations >= 2, "only {continuations} continuations");
        let keys = manifests(&h.store);
        assert_eq!(keys.len(), 1);
        let manifest = Manifest::from_json(&h.store.get(&keys[0]).await.unwrap()).unwrap();
        assert_eq!(manifest.item_count, 1200);
        let mut file_keys: Vec<_> = manifest.files.iter().map(|f| &f.key).collect();
        file_keys.dedup();
        assert_eq!(file_keys.len(), manifest.files.len());
        assert_eq!(h.outbox.sent().len(), 1, "one email for the whole job");
        // A stale redelivery of an earlier continuation changes nothing.
        let stale = message(
            "m-old",
            &serde_json::to_string(&ContinuationMessage {
                continuation: 1,
                job: WorkOrder::parse(&msg, &JobDefaults::default())
                    .unwrap()
                    .job
                    .to_request(),
            })
            .unwrap(),
        );
        let report = h.worker.handle_message(&stale, far_deadline()).await;
        assert_eq!(
            report.disposition,
            Disposition::Skipped,
            "{}",
            report.detail
        );
        assert_eq!(h.outbox.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_poison_message_goes_to_the_dead_letter_queue_and_the_rest_of_the_batch_succeeds() {
        let h = harness(MemorySource::new(
            "studentData",
            "id",
            numbered_items(10),
            20,
        ));
        let batch = [
            message("bad-json", r#"{"table": "studentData""#),
            message(
                "unknown-field",
                r#"{"table": "studentData", "formt": "json"}"#,
            ),
            message("good", r#"{"table": "studentData"}"#),
            message("no-table", r#"{"table": "missingTable"}"#),
            message(
                "unknown-continuation",
                r#"{"continuation": 4, "job": {"table": "studentData", "job_id": "ghost", "requested_at": "2026-11-28T02:00:00Z"}}"#,
            ),
        ];
        let reports = h.worker.handle_batch(&batch, far_deadline()).await;
        let by_id = |id: &str| reports.iter().find(|r| r.message_id == id).unwrap();
        assert_eq!(by_id("good").disposition, Disposition::Done);
        for id in [
            "bad-json",
            "unknown-field",
            "no-table",
            "unknown-continuation",
        ] {
            let r = by_id(id);
            assert_eq!(r.disposition, Disposition::Rejected, "{id}: {}", r.detail);
            assert!(
                !r.keep_on_queue,
                "{id} was moved to the DLQ, so SQS may delete it"
            );
        }
        assert!(
            by_id("unknown-field").detail.contains("formt"),
            "{}",
            by_id("unknown-field").detail
        );
        assert!(by_id("no-table").detail.contains("missingTable"));
        assert!(by_id("unknown-continuation").detail.contains("unknown job"));
        let dead = h.dead_letters.messages();
        assert_eq!(dead.len(), 4);
        assert!(dead
            .iter()
            .all(|m| m.reason.as_deref().is_some_and(|r| !r.is_empty())));
        // The valid job's success email, and a failure email for the missing table.
        let subjects: Vec<_> = h.outbox.sent().into_iter().map(|e| e.subject).collect();
        assert_eq!(subjects.len(), 2, "{subjects:?}");
        assert!(
            subjects
                .iter()
                .any(|s| s.contains("missingTable backup FAILED at scan")),
            "{subjects:?}"
        );
    }

    #[tokio::test]
    async fn without_a_dead_letter_queue_a_poison_message_stays_for_the_redrive_policy() {
        let mut h = harness(MemorySource::new(
            "studentData",
            "id",
            numbered_items(1),
            20,
        ));
        h.worker.dead_letters = None;
        let report = h
            .worker
            .handle_message(&message("m", "not json"), far_deadline())
            .await;
        assert_eq!(report.disposition, Disposition::Rejected);
        assert!(report.keep_on_queue);
    }

    #[tokio::test]
    async fn the_schedulers_payload_is_accepted_as_is() {
        let h = harness(MemorySource::new(
            "studentData",
            "id",
            numbered_items(5),
            20,
        ));
        // What EventBridge Scheduler delivers after substituting <aws.scheduler.execution-id>
        // and <aws.scheduler.scheduled-time> in the input of infra/template.yaml.
        let body = r#"{"table":"studentData","trigger":"schedule","job_id":"d6f1c3a0-5b8e-4c1f-9a2b-7e4d3c2b1a09","requested_at":"2026-11-28T02:00:00Z"}"#;
        let report = h
            .worker
            .handle_message(&message("m", body), far_deadline())
            .await;
        assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
        assert_eq!(
            report.job_id.as_deref(),
            Some("d6f1c3a0-5b8e-4c1f-9a2b-7e4d3c2b1a09")
        );
        let keys = manifests(&h.store);
        let manifest = Manifest::from_json(&h.store.get(&keys[0]).await.unwrap()).unwrap();
        assert_eq!(manifest.trigger, "schedule");
    }

    #[tokio::test]
    async fn an_invocation_too_close_to_its_deadline_leaves_the_message_for_later() {
        let h = harness(MemorySource::new(
            "studentData",
            "id",
            numbered_items(5),
            20,
        ));
        let report = h
            .worker
            .handle_message(&message("m", r#"{"table":"studentData"}"#), Instant::now())
            .await;
        assert_eq!(report.disposition, Disposition::Retry);
        assert!(report.keep_on_queue);
        assert!(h.store.keys().is_empty());
    }

    #[test]
    fn deadlines_are_wall_clock_epoch_milliseconds_or_a_local_emulators_timeout() {
        let now_ms = Utc::now().timestamp_millis() as u64;
        let left = deadline_from_epoch_ms(now_ms + 90_000) - Instant::now();
        assert!(
            left > Duration::from_secs(85) && left <= Duration::from_secs(90),
            "{left:?}"
        );
        assert!(deadline_from_epoch_ms(now_ms - 1000) <= Instant::now());
        let left = deadline_from_epoch_ms(600_000) - Instant::now();
        assert!(
            left > Duration::from_secs(595) && left <= Duration::from_secs(600),
            "{left:?}"
        );
        assert!(deadline_from_epoch_ms(999_999_999) - Instant::now() <= MAX_INVOCATION);
    }

    #[test]
    fn sqs_records_give_id_body_sent_time_and_receive_count() {
        let event: SqsEvent =
            serde_json::from_str(include_str!("../tests/fixtures/sqs-event.json")).unwrap();
        let msg = QueueMessage::from_sqs(&event.records[0]);
        assert_eq!(msg.id, "059f36b4-87a3-44ab-83d2-661975830a7d");
        assert_eq!(msg.receive_count, 2);
        assert_eq!(msg.sent_at.unwrap().timestamp_millis(), 1_764_295_200_000);
        assert!(msg.body.contains("studentData"));
    }

    /// A table whose every Scan fails as if DynamoDB kept returning 500 past the SDK's retries.
    struct BrokenTable(MemorySource);

    #[async_trait::async_trait]
    impl TableSource for BrokenTable {
        async fn describe(&self, table: &str) -> Result<crate::scan::TableInfo, ScanError> {
            self.0.describe(table).await
        }
        async fn scan_page(
            &self,
            request: &crate::scan::PageRequest,
        ) -> Result<crate::scan::Page, ScanError> {
            Err(ScanError::Request {
                operation: "Scan",
                table: request.table.clone(),
                message: "InternalServerError: service unavailable".to_string(),
            })
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_and_only_the_last_delivery_emails() {
        let mut h = harness(MemorySource::new("studentData", "id", vec![], 20));
        h.worker.source = Arc::new(BrokenTable(MemorySource::new(
            "studentData",
            "id",
            numbered_items(5),
            20,
        )));
        let mut msg = message("m", r#"{"table":"studentData","job_id":"flaky"}"#);
        for delivery in 1..=5 {
            msg.receive_count = delivery;
            let report = h.worker.handle_message(&msg, far_deadline()).await;
            assert_eq!(report.disposition, Disposition::Retry, "{}", report.detail);
            assert!(report.keep_on_queue);
            assert_eq!(
                h.outbox.sent().len(),
                usize::from(delivery == 5),
                "delivery {delivery}"
            );
        }
        let email = &h.outbox.sent()[0];
        assert!(
            email.subject.contains("FAILED at scan"),
            "{}",
            email.subject
        );
        assert!(email.text.contains("service unavailable"), "{}", email.text);
        assert!(manifests(&h.store).is_empty());
        assert_eq!(h.store.open_uploads(), 0);
        let status = status_of(&h.store, "flaky").await;
        assert_eq!(status.state, JobState::Failed);
        assert_eq!(status.stage.as_deref(), Some("scan"));
        assert_eq!(status.will_retry, Some(false));
    }

    struct BrokenMail;

    #[async_trait::async_trait]
    impl Notifier for BrokenMail {
        async fn send(&self, _email: &Email) -> Result<String, crate::notify::NotifyError> {
            Err(crate::notify::NotifyError {
                message: "MessageRejected: Email address is not verified.".to_string(),
                hint: "",
            })
        }
    }

    #[tokio::test]
    async fn a_failed_email_never_turns_a_good_backup_into_a_failed_one() {
        let mut h = harness(MemorySource::new(
            "studentData",
            "id",
            numbered_items(5),
            20,
        ));
        h.worker.notifier = Some((
            Arc::new(BrokenMail),
            EmailAddress::new("backup@example.com").unwrap(),
        ));
        let report = h
            .worker
            .handle_message(
                &message("m", r#"{"table":"studentData","job_id":"mail"}"#),
                far_deadline(),
            )
            .await;
        assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
        assert!(!report.keep_on_queue);
        assert_eq!(manifests(&h.store).len(), 1);
        let status = status_of(&h.store, "mail").await;
        assert_eq!(status.state, JobState::Complete);
        assert!(!status.notified, "the status says the email did not go out");
    }
}

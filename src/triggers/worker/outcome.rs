//! What the worker does with each way a leg can end: a complete backup, a suspension at the
//! deadline, a failure (retried or not, by its cause), a message that can never succeed; and the
//! status, email and continuation each of them calls for.

use tracing::{error, info, warn};

use super::report::{advice, Disposition, MessageReport};
use super::{complete_status, ContinuationMessage, QueueMessage, Start, Worker};
use crate::backup::checkpoint::Checkpoint;
use crate::backup::pipeline::BackupError;
use crate::error::Retryable;
use crate::model::job::BackupJob;
use crate::model::manifest::{Layout, Manifest};
use crate::store::ObjectStore;
use crate::triggers::notify::{Email, JobSummary};
use crate::triggers::queue::QueueError;
use crate::triggers::status::{JobState, JobStatus};

impl Worker {
    /// The backup is complete: status, email, and the numbers for the report.
    pub(super) async fn completed(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        start: &Start,
        status: JobStatus,
        manifest: Box<Manifest>,
    ) -> MessageReport {
        let manifest_uri = start.store.uri(&start.layout.manifest_key());
        let mut status = complete_status(status, &manifest, &manifest_uri);
        let mut done = MessageReport::new(
            message,
            Some(job),
            Disposition::Done,
            format!("backup complete: {manifest_uri}"),
        );
        (done.items, done.bytes) = (Some(manifest.item_count), Some(manifest.bytes));
        (done.job_duration_ms, done.consumed_rcu) = (
            Some(manifest.duration_ms),
            Some(manifest.consumed_read_capacity),
        );
        status.notified = self
            .notify(
                job,
                &JobSummary::Complete {
                    manifest,
                    manifest_uri,
                },
            )
            .await;
        self.put_status(&status).await;
        done
    }

    /// The deadline came first: the checkpoint is stored; a continuation carries the job on.
    pub(super) async fn suspended(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        checkpoint: &Checkpoint,
    ) -> MessageReport {
        match self.continue_later(job, checkpoint.sequence).await {
            Ok(detail) => {
                let mut continued =
                    MessageReport::new(message, Some(job), Disposition::Continued, detail);
                continued.items = Some(checkpoint.segments.iter().map(|s| s.items).sum());
                continued.bytes = Some(
                    checkpoint
                        .segments
                        .iter()
                        .flat_map(|s| &s.files)
                        .map(|f| f.bytes)
                        .sum(),
                );
                continued
            }
            // Keeping the message makes SQS redeliver it; that delivery resumes from the
            // checkpoint just written, so no work is lost.
            Err(err) => {
                error!(job_id = %job.job_id, error = %err, "continuation not sent; the message stays on the queue");
                MessageReport::new(message, Some(job), Disposition::Retry, err.to_string())
            }
        }
    }

    /// The backup failed: retried while the cause is transient and deliveries remain, otherwise
    /// reported by email and rejected.
    pub(super) async fn failed(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        mut status: JobStatus,
        err: BackupError,
    ) -> MessageReport {
        let permanent = !err.is_retryable();
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
            MessageReport::new(message, Some(job), Disposition::Retry, err.to_string())
        }
    }

    pub(super) async fn continue_later(
        &self,
        job: &BackupJob,
        sequence: u32,
    ) -> Result<String, ContinueError> {
        let queue = self.queue.as_ref().ok_or(ContinueError::NoQueue)?;
        let body = serde_json::to_string(&ContinuationMessage {
            continuation: sequence,
            job: job.to_request(),
        })
        .map_err(ContinueError::Serialize)?;
        let id = queue.send(&body, None).await?;
        Ok(format!(
            "suspended at checkpoint {sequence}; continuation {id} queued"
        ))
    }

    /// Moves a message that can never succeed to the dead-letter queue, with its reason. Without
    /// a dead-letter queue (or if sending fails) the message stays, and SQS's redrive policy
    /// moves it after `maxReceiveCount` deliveries.
    pub(super) async fn reject(
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
        let mut rejected = MessageReport::new(message, job, Disposition::Rejected, reason);
        rejected.keep_on_queue = !moved;
        rejected
    }

    /// Sends the summary email; returns whether it went out. A failed email is logged, never
    /// turned into a failed job.
    pub(super) async fn notify(&self, job: &BackupJob, summary: &JobSummary) -> bool {
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
    pub(super) async fn notify_once_after_crash(
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

    pub(super) async fn put_status(&self, status: &JobStatus) {
        if let Some(board) = &self.status {
            if let Err(err) = board.put(status).await {
                warn!(job_id = %status.job_id, error = %err, "writing the job status failed; the backup goes on");
            }
        }
    }
}

/// Why a suspended job's continuation could not be queued; the message then stays on the queue.
#[derive(Debug, thiserror::Error)]
pub(super) enum ContinueError {
    #[error("the job needs another invocation but no queue is configured (DDB_BACKUP_QUEUE_URL)")]
    NoQueue,
    #[error("the continuation message could not be written: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("sending the continuation failed: {0}")]
    Queue(#[from] QueueError),
}

//! What the worker does with each way a leg can end: a complete backup, a suspension at the
//! deadline, a failure (retried or not, by its cause), a message that can never succeed; and the
//! status, email and continuation each of them calls for.

use bytes::Bytes;
use tracing::{error, info, warn};

use super::report::{advice, Disposition, MessageReport};
use super::{complete_status, Envelope, QueueMessage, Start, Worker};
use crate::backup::checkpoint::Checkpoint;
use crate::backup::fan_out::record_failure;
use crate::backup::pipeline::{BackupError, JSON_META};
use crate::error::Retryable;
use crate::model::fan_out::{Shard, WorkerResult};
use crate::model::job::{BackupJob, Trigger};
use crate::model::manifest::{Layout, Manifest};
use crate::store::{ObjectStore, Precondition};
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
        let mut status =
            complete_status(status, &manifest, &manifest_uri, self.shrink_alert_percent);
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
        (done.items_change_percent, done.shrank) = (
            manifest.items_change_percent(),
            manifest.shrank(self.shrink_alert_percent),
        );
        if job.trigger == Trigger::Schedule {
            compact_previous_day(start.store.clone(), job, &manifest).await;
        }
        status.notified = self
            .notify(
                job,
                &JobSummary::Complete {
                    manifest,
                    manifest_uri,
                    shrink_alert_percent: self.shrink_alert_percent,
                    console_url: self.console_url.clone(),
                },
            )
            .await;
        self.put_status(&status).await;
        done
    }

    /// This worker's share is recorded and another worker will complete the job: the status
    /// counts it, and nothing is emailed or measured (the job's own report does that).
    pub(super) async fn shard_done(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        done: u32,
        workers: u32,
        result: &WorkerResult,
    ) -> MessageReport {
        let fresh = JobStatus::new(job, JobState::Running);
        self.update_status(&job.job_id, |current| {
            let mut status = match current {
                Some(current) if current.is_final() => return None,
                Some(current) => current,
                None => fresh.clone(),
            };
            status.state = JobState::Running;
            status.workers = Some(workers);
            status.workers_done = Some(status.workers_done.unwrap_or(0).max(done));
            Some(status)
        })
        .await;
        let mut report = MessageReport::new(
            message,
            Some(job),
            Disposition::ShardDone,
            format!(
                "worker {} of {workers} read its share; {done} of {workers} done",
                result.worker
            ),
        );
        (report.items, report.bytes) = (
            Some(result.items),
            Some(result.files.iter().map(|f| f.bytes).sum()),
        );
        report
    }

    /// The deadline came first: the checkpoint is stored; a continuation carries the job on.
    pub(super) async fn suspended(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        shard: Option<Shard>,
        checkpoint: &Checkpoint,
    ) -> MessageReport {
        match self.continue_later(job, shard, checkpoint.sequence).await {
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
    /// reported by email and rejected. A worker of a fanned-out job that fails for good fails
    /// the whole job, once: the first to record the failure reports it, the others stop.
    pub(super) async fn failed(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        shard: Option<Shard>,
        mut status: JobStatus,
        err: BackupError,
    ) -> MessageReport {
        let permanent = !err.is_retryable();
        let will_retry = !permanent && message.receive_count < self.max_receives;
        error!(job_id = %job.job_id, table = %job.table, stage = err.stage().name(),
               worker = shard.map(|s| s.worker), error = %err, permanent, will_retry,
               receive_count = message.receive_count, "backup failed");
        status.state = JobState::Failed;
        status.stage = Some(err.stage().name().to_string());
        status.error = Some(err.to_string());
        status.will_retry = Some(will_retry);
        let mut reports_failure = !will_retry;
        let store = (self.stores)(&job.destination);
        if let (Some(shard), false) = (shard, will_retry) {
            reports_failure = match record_failure(
                store.as_ref(),
                job,
                Some(shard.worker),
                err.stage().name(),
                &err.to_string(),
            )
            .await
            {
                Ok(first) => first,
                // Reported anyway: a second email is better than a failure nobody hears of.
                Err(record_err) => {
                    error!(job_id = %job.job_id, error = %record_err, "recording the failure for the other workers failed");
                    true
                }
            };
            status.workers = Some(shard.workers);
        }
        // A manifest wins over any failure recorded after it: the backup is complete.
        if !will_retry && self.manifest_written(store.as_ref(), job).await {
            info!(job_id = %job.job_id, error = %err, "the job is complete; this later failure is not reported");
            return if permanent {
                self.reject(message, Some(job), err.to_string()).await
            } else {
                MessageReport::new(message, Some(job), Disposition::Retry, err.to_string())
            };
        }
        if shard.is_some() && !reports_failure {
            info!(job_id = %job.job_id, "another worker already failed the job and reported it");
        } else if !will_retry {
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
        if shard.is_none() || reports_failure || will_retry {
            self.put_status(&status).await;
        }
        if permanent {
            self.reject(message, Some(job), err.to_string()).await
        } else {
            MessageReport::new(message, Some(job), Disposition::Retry, err.to_string())
        }
    }

    /// Whether the job's manifest exists; a store that cannot say counts as no.
    pub(super) async fn manifest_written(&self, store: &dyn ObjectStore, job: &BackupJob) -> bool {
        store
            .exists(&Layout::new(job).manifest_key())
            .await
            .unwrap_or(false)
    }

    pub(super) async fn continue_later(
        &self,
        job: &BackupJob,
        shard: Option<Shard>,
        sequence: u32,
    ) -> Result<String, ContinueError> {
        let queue = self.queue.as_ref().ok_or(ContinueError::NoQueue)?;
        let body = serde_json::to_string(&Envelope {
            worker: shard.map(|s| s.worker),
            continuation: Some(sequence),
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

    /// Sends the summary email, once per job and outcome: the sender first writes the
    /// outcome's marker under the backup's prefix with `If-None-Match: *`, and an invocation that
    /// finds it already written (a concurrent or later duplicate) stays silent. Returns whether
    /// the email went out, from here or from the invocation that wrote the marker. A failed
    /// email is logged, never turned into a failed job.
    pub(super) async fn notify(&self, job: &BackupJob, summary: &JobSummary) -> bool {
        let Some((notifier, sender)) = &self.notifier else {
            return false;
        };
        if job.notify.is_empty() {
            return false;
        }
        let outcome = match summary {
            JobSummary::Complete { .. } => "complete",
            JobSummary::Failed { .. } => "failed",
        };
        let store = (self.stores)(&job.destination);
        let marker = Layout::new(job).notified_key(outcome);
        // The writer id makes the marker this invocation's own: a write whose reply was lost is
        // recognised as ours (store::put_if), and another invocation's never is.
        let record = serde_json::json!({
            "job_id": job.job_id.to_string(),
            "writer": uuid::Uuid::new_v4().to_string(),
            "outcome": outcome,
            "recipients": job.notify.len(),
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        match crate::store::put_if(
            store.as_ref(),
            &marker,
            Bytes::from(record.to_string()),
            &JSON_META,
            Precondition::Absent,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                info!(job_id = %job.job_id, outcome, "the summary email was already sent for this job");
                return true;
            }
            // Sent anyway: a second email is better than a backup nobody hears of.
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "writing the email marker failed; sending anyway")
            }
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
            self.shrink_alert_percent,
        );
        status.notified = self
            .notify(
                job,
                &JobSummary::Complete {
                    manifest: Box::new(manifest),
                    manifest_uri: manifest_uri.to_string(),
                    shrink_alert_percent: self.shrink_alert_percent,
                    console_url: self.console_url.clone(),
                },
            )
            .await;
        self.put_status(&status).await;
    }

    /// Writes `status`, unless the job is already complete and this is not: a late or
    /// duplicate delivery never hides a complete backup.
    pub(super) async fn put_status(&self, status: &JobStatus) {
        self.update_status(&status.job_id, |current| match current {
            Some(current)
                if current.state == JobState::Complete && status.state != JobState::Complete =>
            {
                None
            }
            // What the workers of a fanned-out job counted stays.
            Some(current) => Some(JobStatus {
                workers: status.workers.or(current.workers),
                workers_done: status.workers_done.or(current.workers_done),
                resumed_at: status.resumed_at.clone().or(current.resumed_at),
                ..status.clone()
            }),
            None => Some(status.clone()),
        })
        .await;
    }

    /// Changes the job's status document by compare-and-swap (see
    /// [`crate::triggers::status::StatusBoard::update`]); a
    /// failure is logged, never turned into a failed job.
    pub(super) async fn update_status(
        &self,
        job_id: &impl std::fmt::Display,
        change: impl Fn(Option<JobStatus>) -> Option<JobStatus>,
    ) {
        if let Some(board) = &self.status {
            let job_id = job_id.to_string();
            if let Err(err) = board.update(&job_id, change).await {
                warn!(job_id = %job_id, error = %err, "writing the job status failed; the backup goes on");
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

/// The nightly backup also folds the previous day's captured changes (if the table's are
/// captured into this bucket) into one file set, so a restore reads one set per day. A failure
/// is logged and changes nothing else: the day's batches stay readable one by one.
async fn compact_previous_day(
    store: std::sync::Arc<dyn ObjectStore>,
    job: &BackupJob,
    manifest: &Manifest,
) {
    use crate::changes::compact::compact_day;
    use crate::changes::coverage::lineage;
    use crate::model::changes::ChangeLayout;
    let layout = ChangeLayout::new(job.destination.prefix().as_str(), job.table.as_str());
    let lineage = match lineage(store.as_ref(), &layout).await {
        Ok(lineage) if lineage.is_empty() => return,
        Ok(lineage) => lineage,
        Err(err) => {
            return warn!(job_id = %job.job_id, error = %err, "captured changes not compacted: their records could not be read")
        }
    };
    let day = (chrono::Utc::now() - chrono::TimeDelta::days(1)).date_naive();
    let names = crate::readback::point_in_time::key_names(manifest);
    match compact_day(store, &layout, &names, day, &lineage, job.compression).await {
        Ok(Some(set)) => info!(job_id = %job.job_id, date = %set.date, keys = set.keys,
                               changes = set.changes_read, "captured changes compacted"),
        Ok(None) => {}
        Err(err) => warn!(job_id = %job.job_id, error = %err, "captured changes not compacted"),
    }
}

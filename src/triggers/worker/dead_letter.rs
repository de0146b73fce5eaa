//! The dead-letter consumer: no job ends without a word. SQS moves a message to the dead-letter
//! queue when no delivery reached an outcome (the function died, timed out or was throttled on
//! every delivery), and the worker moves one there itself when it can never succeed. The worker
//! is subscribed to the dead-letter queue too; for each message from it, it
//!
//! 1. drops it if it is moot: the job is complete, or the share it carries has its result;
//! 2. otherwise fails the job: `failed.json` (so the job's other workers stop), the status
//!    `failed`, and the one FAILED email (the email's marker makes it one, whoever sends it);
//! 3. keeps it on the failed-jobs queue, with its reason, for an operator to read or to
//!    redrive to the job queue: a redriven message resumes from the newest checkpoint, and a
//!    job that then completes gets its COMPLETE email (a manifest wins over a failure).
//!
//! Each step is safe to repeat, so a consumer that fails is simply retried.

use tracing::{error, info, warn};

use super::report::{Disposition, MessageReport};
use super::{QueueMessage, WorkOrder, Worker};
use crate::backup::fan_out::{record_failure, resolve_failure};
use crate::model::job::BackupJob;
use crate::model::manifest::Layout;
use crate::triggers::notify::JobSummary;
use crate::triggers::status::{JobState, JobStatus};

/// The stage a job failed in when none of its deliveries reached an outcome.
pub(super) const DELIVERY_STAGE: &str = "delivery";
/// What the FAILED email of a dead-lettered job advises.
const DELIVERY_ADVICE: &str = "Search the worker's log group for the job's id: each delivery that died left its last lines there. Then redrive the message from the failed-jobs queue to the job queue: the job resumes from its newest checkpoint";

impl Worker {
    /// Whether `message` was delivered from the dead-letter queue.
    pub(super) fn is_dead_letter(&self, message: &QueueMessage) -> bool {
        match (&self.dead_letters, &message.queue) {
            (Some(dlq), Some(queue)) => dlq.name() == *queue,
            _ => false,
        }
    }

    /// Records a dead-lettered message's job as failed (once) and keeps the message on the
    /// failed-jobs queue.
    pub(super) async fn dead_letter(&self, message: &QueueMessage) -> MessageReport {
        let reason = message.reason.clone().unwrap_or_else(|| {
            format!(
                "no delivery of the message reached an outcome in {} tries: the worker died each time (out of memory, a crash, Lambda's 15-minute limit) or its deliveries were throttled",
                self.max_receives
            )
        });
        if super::sweep::is_sweep(&message.body) {
            // The next hour's sweep does the same work.
            return MessageReport::new(
                message,
                None,
                Disposition::Skipped,
                "a dead-lettered sweep; the next one covers it".to_string(),
            );
        }
        if crate::model::restore_job::RestoreRequest::is_restore(&message.body) {
            let report = self.dead_restore(message, reason.clone()).await;
            if report.disposition == Disposition::Recorded {
                return self.keep_failed(message, None, reason).await;
            }
            return report;
        }
        let order = match WorkOrder::parse(message, &self.defaults) {
            Ok(order) => order,
            Err(err) => {
                // Not a job: nothing to fail, but an operator must still see it.
                return self
                    .keep_failed(message, None, format!("not a job ({err}): {reason}"))
                    .await;
            }
        };
        // A job the deployment no longer allows is still failed, but its email goes to the
        // deployment's own recipients, whom the worker may write to.
        let mut order = order;
        if self.policy.check(&order.job).is_err() {
            order.job.notify = self.defaults.notify.clone();
        }
        let job = &order.job;
        let store = (self.stores)(&job.destination);
        let layout = Layout::new(job);
        let moot = match order.shard {
            None => store.exists(&layout.manifest_key()).await,
            Some(shard) => match store.exists(&layout.manifest_key()).await {
                Ok(false) => store.exists(&layout.result_key(shard.worker)).await,
                other => other,
            },
        };
        match moot {
            Ok(true) => {
                info!(job_id = %job.job_id, worker = order.shard.map(|s| s.worker),
                      "a dead letter of a job (or share) that is complete; dropped");
                return MessageReport::new(
                    message,
                    Some(job),
                    Disposition::Skipped,
                    "dead letter of a job or share that is complete; dropped".to_string(),
                );
            }
            Ok(false) => {}
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "checking a dead letter's job failed; will retry");
                return MessageReport::new(message, Some(job), Disposition::Retry, err.to_string());
            }
        }
        // A duplicate that kept finding the job's lease held is no sign of a failure: the
        // holder carries the job on.
        match super::lease::live(store.as_ref(), &layout, order.shard.map(|s| s.worker)).await {
            Ok(true) => {
                info!(job_id = %job.job_id, "a dead letter of a job that is running; dropped");
                return MessageReport::new(
                    message,
                    Some(job),
                    Disposition::Skipped,
                    "dead letter of a job that another invocation is running; dropped".to_string(),
                );
            }
            Ok(false) => {}
            Err(err) => {
                return MessageReport::new(message, Some(job), Disposition::Retry, err.to_string())
            }
        }
        let first = match self
            .fail_for_good(job, order.shard, &reason, DELIVERY_ADVICE)
            .await
        {
            Ok(first) => first,
            Err(err) => {
                error!(job_id = %job.job_id, error = %err, "recording a dead-lettered job's failure failed; will retry");
                return MessageReport::new(message, Some(job), Disposition::Retry, err);
            }
        };
        let mut report = self.keep_failed(message, Some(job), reason).await;
        if report.disposition == Disposition::Recorded && !first {
            // Reported before (by the worker that rejected it, or an earlier dead letter): no
            // second failure in the metrics either.
            report.disposition = Disposition::Skipped;
        }
        report
    }

    /// Fails `job` for good: the failure record, the status and the one FAILED email. Returns
    /// whether this call is the first to report the job's failure.
    pub(super) async fn fail_for_good(
        &self,
        job: &BackupJob,
        shard: Option<crate::model::fan_out::Shard>,
        reason: &str,
        advice: &str,
    ) -> Result<bool, String> {
        let store = (self.stores)(&job.destination);
        // Recorded for every job, shared or not: any of its legs or shares still queued stops
        // at its next start instead of completing a job already reported failed.
        let mut first = record_failure(
            store.as_ref(),
            job,
            shard.map(|s| s.worker),
            DELIVERY_STAGE,
            reason,
        )
        .await
        .map_err(|e| e.to_string())?;
        if let Some(board) = &self.status {
            if let Ok(Some(status)) = board.get(&job.job_id).await {
                if status.state == JobState::Failed && status.is_final() {
                    first = false;
                }
            }
        }
        // The manifest may have been written meanwhile (a sibling merged): it wins.
        if self.manifest_written(store.as_ref(), job).await {
            return Ok(false);
        }
        let mut status = JobStatus::new(job, JobState::Failed);
        status.stage = Some(DELIVERY_STAGE.to_string());
        status.error = Some(reason.to_string());
        status.will_retry = Some(false);
        status.workers = shard.map(|s| s.workers);
        status.notified = self
            .notify(
                job,
                &JobSummary::Failed {
                    job: Box::new(job.clone()),
                    stage: DELIVERY_STAGE.to_string(),
                    error: reason.to_string(),
                    advice: format!("{advice} (job_id {}).", job.job_id),
                    will_retry: false,
                },
            )
            .await;
        self.put_status(&status).await;
        Ok(first)
    }

    /// Keeps a dead letter on the failed-jobs queue (with its reason) and acknowledges it; with
    /// no failed-jobs queue configured it is acknowledged after the log line, which holds it.
    async fn keep_failed(
        &self,
        message: &QueueMessage,
        job: Option<&BackupJob>,
        reason: String,
    ) -> MessageReport {
        error!(message_id = %message.id, job_id = job.map(|j| j.job_id.to_string()).as_deref().unwrap_or("-"),
               reason = %reason, body = %message.body, "dead letter recorded");
        if let Some(failed_jobs) = &self.failed_jobs {
            if let Err(err) = failed_jobs.send(&message.body, Some(&reason)).await {
                error!(message_id = %message.id, error = %err, "keeping the dead letter on the failed-jobs queue failed; will retry");
                return MessageReport::new(message, job, Disposition::Retry, err.to_string());
            }
        }
        MessageReport::new(message, job, Disposition::Recorded, reason)
    }

    /// A message back on the job queue with a dead letter's reason was redriven by an operator:
    /// the job's failure is resolved, so its workers read on, and the shares a failure stopped
    /// (no result, no live lease) are queued again; each resumes from its newest checkpoint.
    /// The status, stamped last with the resolution's time, says the shares were queued: a
    /// delivery that stopped before that queues them again (a share queued twice is read
    /// once), and later ones queue nothing.
    pub(super) async fn reopen(
        &self,
        message: &QueueMessage,
        order: &WorkOrder,
    ) -> Result<(), MessageReport> {
        let job = &order.job;
        let store = (self.stores)(&job.destination);
        let layout = Layout::new(job);
        let retry = |detail: String| {
            warn!(job_id = %job.job_id, error = %detail, "resuming a redriven job failed; will retry");
            MessageReport::new(message, Some(job), Disposition::Retry, detail)
        };
        let Some(resolved_at) = resolve_failure(store.as_ref(), job)
            .await
            .map_err(|e| retry(e.to_string()))?
        else {
            return Ok(());
        };
        let status = match &self.status {
            Some(board) => board
                .get(&job.job_id)
                .await
                .map_err(|e| retry(e.to_string()))?,
            None => None,
        };
        if status.is_some_and(|s| s.resumed_at.as_deref() == Some(resolved_at.as_str())) {
            // Resumed already (by another redriven message of the job): one more delivery.
            return Ok(());
        }
        let mut status = JobStatus::new(job, JobState::Running);
        status.resumed_at = Some(resolved_at);
        let plan = store
            .get_tagged(&layout.plan_key())
            .await
            .map_err(|e| retry(e.to_string()))?
            .and_then(|(plan, _)| {
                serde_json::from_slice::<crate::model::fan_out::Plan>(&plan).ok()
            });
        let (Some(plan), Some(queue)) = (plan, &self.queue) else {
            self.put_status(&status).await;
            info!(job_id = %job.job_id, "a redriven job resumes");
            return Ok(());
        };
        let own = order.shard.map(|s| s.worker);
        let stopped = super::shares::pending(
            store.as_ref(),
            &layout,
            (0..plan.workers).filter(|w| Some(*w) != own),
            super::shares::Started::Requeue,
        )
        .await
        .map_err(|e| retry(e.to_string()))?;
        super::shares::send(queue.as_ref(), job, &plan, &stopped)
            .await
            .map_err(retry)?;
        status.workers = Some(plan.workers);
        self.put_status(&status).await;
        info!(job_id = %job.job_id, queued = stopped.len(), "a redriven job resumes; its unfinished shares are queued again");
        Ok(())
    }
}

//! The SQS worker: one message, one job or one worker's share of it. It parses the message into a
//! [`WorkOrder`], runs the pipeline until done or until the invocation's deadline nears, then
//! reports. Every message gets exactly one of eight dispositions, and the Lambda handler turns
//! them into a partial batch response, so one bad or failing message never fails the others:
//!
//! - `done`: the backup is complete (manifest written, email sent);
//! - `fanned_out`: a job for several workers; one shard message per worker is on the queue;
//! - `shard_done`: this worker's share is recorded; another worker completes the job;
//! - `skipped`: the job was already complete (a redelivery): acknowledged, no second email;
//! - `continued`: the deadline came first; a checkpoint is stored and a continuation message
//!   carries the job to the next invocation;
//! - `rejected`: the message can never succeed (bad JSON, unknown field, a table that does not
//!   exist…): logged with its reason and moved to the dead-letter queue;
//! - `retry`: a transient failure; SQS delivers the message again after its visibility timeout;
//! - `deferred`: another invocation holds the job's lease (a concurrent duplicate delivery): the
//!   message stays on the queue until the lease ends;
//! - `recorded`: a message from the dead-letter queue (no delivery reached an outcome): the job
//!   is failed and reported once, and the message is kept on the failed-jobs queue.
//!
//! A kept message comes back in seconds, not after the queue's visibility timeout (which must
//! outlast a whole invocation): a retry after a backoff from 30 s that grows with each
//! delivery, a deferral when the lease it waits for ends.
//!
//! Idempotency: SQS delivers at least once. A job's object keys follow from its `job_id` and
//! `requested_at` (for a message without them: the SQS message id and its sent time, both stable
//! across redeliveries); a job whose manifest exists is skipped, and any delivery resumes from
//! the newest checkpoint. Only one invocation works on a job at a time (a lease, see `lease.rs`),
//! and each summary email goes out once (a marker written with `If-None-Match: *`). A fanned-out
//! job keeps these guarantees per share (see [`crate::backup::fan_out`]).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::backup::checkpoint::Checkpoint;
use crate::backup::fan_out::FailureWatch;
use crate::backup::pipeline::{Backup, BackupError, Leg, LegOutcome, Tuning};
use crate::model::job::{BackupJob, Destination, EmailAddress, JobDefaults, JobPolicy};
use crate::model::manifest::{Layout, Manifest};
use crate::readback::table_writer::TableWriter;
use crate::source::TableSource;
use crate::store::{ObjectStore, StoreError};
use crate::triggers::metrics::MetricsSink;
use crate::triggers::notify::Notifier;
use crate::triggers::queue::JobQueue;
use crate::triggers::status::{Change, JobState, JobStatus, StatusBoard};

mod dead_letter;
mod lease;
mod message;
mod outcome;
mod report;
mod restore;
mod shares;
mod sweep;

use lease::{Claim, Lease};
use message::Envelope;
pub use message::{deadline_from_epoch_ms, QueueMessage, WorkOrder, MAX_INVOCATION};
pub use report::{advice, retry_backoff, Disposition, MessageReport};
pub use sweep::{stuck_limit, DEFAULT_STUCK_AFTER};

/// Builds the store for a job's destination (jobs may name their own bucket).
pub type StoreFactory = Arc<dyn Fn(&Destination) -> Arc<dyn ObjectStore> + Send + Sync>;

/// Default time before the invocation's deadline at which a leg stops: closing the open files of
/// every segment and writing a checkpoint takes seconds; a minute covers slow part uploads too.
pub const DEFAULT_DEADLINE_MARGIN_SECS: u64 = 60;
/// Default deliveries of one message before its job counts as failed, matching the queue's
/// redrive policy in `infra/`.
pub const DEFAULT_MAX_RECEIVES: u32 = 5;
/// Default interval at which a worker of a fanned-out job checks whether another worker failed
/// the job: one HEAD request per interval, and the longest a doomed worker reads on.
pub const DEFAULT_FAILURE_POLL: Duration = Duration::from_secs(5);
/// Default drop in items, against the table's previous backup, that marks the summary email and
/// sets the `TableShrank` metric (`DDB_BACKUP_SHRINK_ALERT_PERCENT`).
pub const DEFAULT_SHRINK_ALERT_PERCENT: f64 = 20.0;
/// Default interval at which a running job's status document gets its progress.
pub const DEFAULT_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The worker and its ports.
pub struct Worker {
    source: Arc<dyn TableSource>,
    stores: StoreFactory,
    defaults: JobDefaults,
    tuning: Tuning,
    queue: Option<Arc<dyn JobQueue>>,
    dead_letters: Option<Arc<dyn JobQueue>>,
    failed_jobs: Option<Arc<dyn JobQueue>>,
    notifier: Option<(Arc<dyn Notifier>, EmailAddress)>,
    status: Option<StatusBoard>,
    metrics: Option<Arc<dyn MetricsSink>>,
    deadline_margin: Duration,
    max_receives: u32,
    failure_poll: Duration,
    policy: JobPolicy,
    shrink_alert_percent: f64,
    console_url: Option<String>,
    progress_every: Duration,
    stuck_after: Duration,
    writer: Option<Arc<dyn TableWriter>>,
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
            failed_jobs: None,
            notifier: None,
            status: None,
            metrics: None,
            deadline_margin: Duration::from_secs(DEFAULT_DEADLINE_MARGIN_SECS),
            max_receives: DEFAULT_MAX_RECEIVES,
            failure_poll: DEFAULT_FAILURE_POLL,
            policy: JobPolicy::default(),
            shrink_alert_percent: DEFAULT_SHRINK_ALERT_PERCENT,
            console_url: None,
            progress_every: DEFAULT_PROGRESS_EVERY,
            stuck_after: DEFAULT_STUCK_AFTER,
            writer: None,
        }
    }

    /// The write side of tables, for restore jobs (`{"kind": "restore"}`); without it they are
    /// failed with that reason.
    pub fn with_writer(mut self, writer: Arc<dyn TableWriter>) -> Self {
        self.writer = Some(writer);
        self
    }

    /// How often a running job's status document gets its progress (items read, estimated
    /// fraction and time left).
    pub fn with_progress_every(mut self, every: Duration) -> Self {
        self.progress_every = every.max(Duration::from_millis(10));
        self
    }

    /// The longest a job may go without ending before the stuck-job sweep fails it (less
    /// when its estimate is shorter: twice the estimate, at least an hour).
    pub fn with_stuck_after(mut self, limit: Duration) -> Self {
        self.stuck_after = limit;
        self
    }

    /// The job queue, for continuations. Without it a job must finish in one invocation.
    pub fn with_queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// The dead-letter queue: where messages that can never succeed are moved, and where SQS
    /// moves those no delivery finished. Messages delivered from it are recorded as failed jobs.
    pub fn with_dead_letters(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.dead_letters = Some(queue);
        self
    }

    /// The failed-jobs queue: dead letters are kept there once their job's failure is recorded,
    /// for an operator to read or to redrive to the job queue.
    pub fn with_failed_jobs(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.failed_jobs = Some(queue);
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

    /// The drop in items (percent) that flags a backup as a shrunken table, and the web
    /// console the summary email links to, if there is one.
    pub fn with_shrink_alert(mut self, percent: f64, console_url: Option<String>) -> Self {
        self.shrink_alert_percent = percent;
        self.console_url = console_url;
        self
    }

    /// The tables and recipients jobs may name; a message asking for others is rejected to the
    /// dead-letter queue with the reason.
    pub fn with_policy(mut self, policy: JobPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How often a worker of a fanned-out job checks whether another worker failed the job.
    pub fn with_failure_poll(mut self, every: Duration) -> Self {
        self.failure_poll = every.max(Duration::from_millis(10));
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
            let mut report = if self.is_dead_letter(message) {
                self.dead_letter(message).await
            } else {
                self.handle_message(message, deadline).await
            };
            report.duration_ms = started.elapsed().as_millis() as u64;
            self.bring_back(message, &report).await;
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

    /// Sets when a kept message comes back (its visibility), so that a retry or a deferral
    /// waits seconds, not the queue's visibility timeout. A failure is logged: the message then
    /// comes back after that timeout, later but not lost.
    async fn bring_back(&self, message: &QueueMessage, report: &MessageReport) {
        let (true, Some(after), Some(receipt)) = (
            report.keep_on_queue,
            report.retry_after_secs,
            message.receipt_handle.as_deref(),
        ) else {
            return;
        };
        let queue = if self.is_dead_letter(message) {
            self.dead_letters.as_ref()
        } else {
            self.queue.as_ref()
        };
        let Some(queue) = queue else { return };
        if let Err(err) = queue.delay(receipt, Duration::from_secs(after)).await {
            warn!(message_id = %message.id, error = %err, "setting when the message comes back failed; it comes back after the queue's visibility timeout");
        }
    }

    /// Handles one message: parse it, check that it is worth starting, fan it out over several
    /// workers or run one leg of it (or of this worker's share), report.
    pub async fn handle_message(&self, message: &QueueMessage, deadline: Instant) -> MessageReport {
        if sweep::is_sweep(&message.body) {
            return self.sweep(message).await;
        }
        if crate::model::restore_job::RestoreRequest::is_restore(&message.body) {
            return self.restore_message(message, deadline).await;
        }
        let order = match WorkOrder::parse(message, &self.defaults) {
            Ok(order) => order,
            Err(err) => {
                return self
                    .reject(message, None, format!("invalid job message: {err}"))
                    .await
            }
        };
        let job = &order.job;
        if let Err(refused) = self.policy.check(job) {
            return self
                .reject(message, Some(job), format!("job not allowed: {refused}"))
                .await;
        }
        if message.reason.is_some() {
            if let Err(report) = self.reopen(message, &order).await {
                return report;
            }
        }
        let mut start = match self.start(message, &order, deadline).await {
            Ok(start) => start,
            Err(report) => return report,
        };
        let backup = Backup::new(
            self.source.clone(),
            start.store.clone(),
            self.tuning.clone(),
        );
        if order.shard.is_none() && start.resume.is_none() {
            if let Some(report) = self.fan_out(message, job, &start, &backup).await {
                self.release(job, &mut start).await;
                return report;
            }
        }
        let mut status = JobStatus::new(job, JobState::Running);
        status.legs = start.resume.as_ref().map_or(0, |c| c.sequence) + 1;
        if order.shard.is_none() {
            self.put_status(&status).await;
        }

        let stop_at = deadline
            .checked_sub(self.deadline_margin)
            .unwrap_or_else(Instant::now);
        let watch = order
            .shard
            .map(|_| FailureWatch::start(start.store.clone(), job, self.failure_poll));
        let leg = Leg {
            resume: start.resume.take(),
            deadline: Some(stop_at),
            shard: order.shard,
            halt: watch.as_ref().map(FailureWatch::signal),
        };
        let read_before: u64 = leg
            .resume
            .as_ref()
            .map_or(0, |c| c.segments.iter().map(|s| s.items).sum());
        let reporter = order
            .shard
            .is_none()
            .then(|| self.report_progress(job, &backup, read_before));
        let outcome = match reporter {
            Some(reporter) => {
                tokio::pin!(reporter);
                let run = backup.run_leg(job, leg);
                tokio::pin!(run);
                tokio::select! {
                    outcome = &mut run => outcome,
                    never = &mut reporter => match never {},
                }
            }
            None => backup.run_leg(job, leg).await,
        };
        drop(watch);
        // Released before the outcome is handled, so a continuation starts at once.
        self.release(job, &mut start).await;
        match outcome {
            Ok(LegOutcome::Complete(manifest)) => {
                self.completed(message, job, &start, status, manifest).await
            }
            Ok(LegOutcome::Suspended(checkpoint)) => {
                self.suspended(message, job, order.shard, &checkpoint).await
            }
            Ok(LegOutcome::ShardDone {
                done,
                workers,
                result,
            }) => self.shard_done(message, job, done, workers, &result).await,
            Err(BackupError::AlreadyComplete { manifest, .. }) => {
                self.notify_once_after_crash(job, start.store.as_ref(), &start.layout, &manifest)
                    .await;
                MessageReport::new(
                    message,
                    Some(job),
                    Disposition::Skipped,
                    format!("already complete: {manifest}"),
                )
            }
            Err(err @ BackupError::Halted { .. }) => {
                info!(job_id = %job.job_id, worker = order.shard.map(|s| s.worker), error = %err,
                      "stopped: another worker failed the job");
                MessageReport::new(message, Some(job), Disposition::Skipped, err.to_string())
            }
            Err(err) => self.failed(message, job, order.shard, status, err).await,
        }
    }

    /// A new job planned for more than one worker: queues one shard message per worker and
    /// reports. `None` when the job runs as one worker (a small table, `workers: 1`, no queue).
    async fn fan_out(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        start: &Start,
        backup: &Backup,
    ) -> Option<MessageReport> {
        let queue = self.queue.as_ref()?;
        if job.workers.is_some_and(|w| w.get() == 1) {
            return None;
        }
        let plan = match backup.plan_fan_out(job, self.defaults.max_workers).await {
            Ok(plan) if plan.workers == 1 => return None,
            Ok(plan) => plan,
            Err(err) => {
                let status = JobStatus::new(job, JobState::Running);
                return Some(self.failed(message, job, None, status, err).await);
            }
        };
        let mut status = JobStatus::new(job, JobState::Running);
        (status.workers, status.workers_done) = (Some(plan.workers), Some(0));
        self.update_status(&job.job_id, |current| match current {
            Some(current) if current.is_final() || current.workers.is_some() => None,
            _ => Some(status.clone()),
        })
        .await;
        // A redelivered plan re-queues only the shares that have not started: no result, no
        // checkpoint, no live lease. A started share's own message (or continuation) is on the
        // queue, or in the dead-letter queue, whose consumer fails the job.
        let pending = match shares::pending(
            start.store.as_ref(),
            &start.layout,
            0..plan.workers,
            shares::Started::Skip,
        )
        .await
        {
            Ok(pending) => pending,
            Err(err) => {
                return Some(self.dispatch_failed(message, job, err.to_string()).await);
            }
        };
        if let Err(err) = shares::send(queue.as_ref(), job, &plan, &pending).await {
            // Kept on the queue: the redelivery sends the shares again, and a share delivered
            // twice is recorded once.
            error!(job_id = %job.job_id, error = %err, "queueing the shards failed");
            return Some(self.dispatch_failed(message, job, err).await);
        }
        info!(job_id = %job.job_id, table = %job.table, workers = plan.workers,
              segments = plan.segments, queued = pending.len(), "job fanned out");
        Some(MessageReport::new(
            message,
            Some(job),
            Disposition::FannedOut,
            format!(
                "fanned out over {} workers ({} segments); {} shard messages queued",
                plan.workers,
                plan.segments,
                pending.len()
            ),
        ))
    }

    /// Writes the running job's progress into its status document every `progress_every`,
    /// until dropped (it never ends by itself).
    async fn report_progress(
        &self,
        job: &BackupJob,
        backup: &Backup,
        before: u64,
    ) -> std::convert::Infallible {
        let progress = backup.progress();
        let started = Instant::now();
        loop {
            tokio::time::sleep(self.progress_every).await;
            let items = before + progress.items.load(std::sync::atomic::Ordering::Relaxed);
            let estimated = progress
                .estimated_items
                .load(std::sync::atomic::Ordering::Relaxed);
            let Some(estimate) =
                crate::backup::pipeline::Estimate::new(items, estimated, started.elapsed())
            else {
                continue;
            };
            self.update_status(&job.job_id, |current| match current {
                Some(mut status) if status.state == JobState::Running => {
                    status.progress = Some(estimate);
                    Some(status)
                }
                _ => None,
            })
            .await;
        }
    }

    /// Sharing a job out failed: retried while deliveries remain (a shard queued twice is
    /// read once); at the last delivery the job fails, for every shard already queued too,
    /// and is reported once, instead of going silently to the dead-letter queue.
    async fn dispatch_failed(
        &self,
        message: &QueueMessage,
        job: &BackupJob,
        detail: String,
    ) -> MessageReport {
        let status = JobStatus::new(job, JobState::Running);
        if message.receive_count >= self.max_receives {
            let store = (self.stores)(&job.destination);
            if let Err(err) = crate::backup::fan_out::record_failure(
                store.as_ref(),
                job,
                None,
                crate::backup::error::Stage::Dispatch.name(),
                &detail,
            )
            .await
            {
                error!(job_id = %job.job_id, error = %err, "recording the failure for the queued shards failed");
            }
        }
        self.failed(message, job, None, status, BackupError::Dispatch(detail))
            .await
    }

    /// Whether the job should run now, and from where: a report instead when there is too little
    /// time left, the job is already complete, or its checkpoints cannot be read.
    async fn start(
        &self,
        message: &QueueMessage,
        order: &WorkOrder,
        deadline: Instant,
    ) -> Result<Start, MessageReport> {
        let job = &order.job;
        let retry =
            |detail: String| MessageReport::new(message, Some(job), Disposition::Retry, detail);
        let time_left = deadline.saturating_duration_since(Instant::now());
        if time_left <= self.deadline_margin {
            return Err(retry(format!(
                "not started: {} ms left before the invocation's deadline, {} ms needed in hand",
                time_left.as_millis(),
                self.deadline_margin.as_millis()
            )));
        }
        let store = (self.stores)(&job.destination);
        let layout = Layout::new(job);
        match store.exists(&layout.manifest_key()).await {
            Ok(true) => {
                let manifest_uri = store.uri(&layout.manifest_key());
                self.notify_once_after_crash(job, store.as_ref(), &layout, &manifest_uri)
                    .await;
                return Err(MessageReport::new(
                    message,
                    Some(job),
                    Disposition::Skipped,
                    format!("already complete: {manifest_uri}"),
                ));
            }
            Ok(false) => {}
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "checking for the manifest failed; will retry");
                return Err(retry(err.to_string()));
            }
        }
        let worker = order.shard.map(|s| s.worker);
        let lease = match lease::take(store.as_ref(), &layout, worker, &message.id, deadline).await
        {
            Ok(Claim::Taken(lease)) => lease,
            Ok(Claim::Held { message_id, .. })
                if message.receive_count >= self.max_receives && message_id != message.id =>
            {
                // Deferred once more, SQS would dead-letter it, and the dead letter would fail
                // a job that is running. The holder's own message carries the job on.
                info!(job_id = %job.job_id, worker, holder_message_id = %message_id,
                      "another message's invocation is on this job; this duplicate is acknowledged");
                return Err(MessageReport::new(
                    message,
                    Some(job),
                    Disposition::Skipped,
                    format!("a duplicate of the job that message {message_id} is running"),
                ));
            }
            Ok(Claim::Held { message_id, until }) => {
                info!(job_id = %job.job_id, worker, holder_message_id = %message_id,
                      until = %until, "another invocation is on this job; the message stays for later");
                let mut deferred = MessageReport::new(
                    message,
                    Some(job),
                    Disposition::Deferred,
                    format!(
                        "another invocation (message {message_id}) holds the job's lease until {until}; left on the queue"
                    ),
                );
                // Back when the lease ends (it is released earlier when the holder finishes,
                // and the holder's own continuation carries the job on meanwhile).
                let left = (until - chrono::Utc::now()).num_seconds().max(0) as u64;
                deferred.retry_after_secs = Some(left + lease::CLOCK_SKEW_SECS + 1);
                return Err(deferred);
            }
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "taking the job's lease failed; will retry");
                return Err(retry(err.to_string()));
            }
        };
        // Read after the lease is ours: a duplicate that waited resumes from where the
        // holder stopped.
        let resume = match self.latest_checkpoint(store.as_ref(), &layout, order).await {
            Ok(resume) => resume,
            Err(lookup) => {
                let mut start = Start {
                    store,
                    layout,
                    resume: None,
                    lease: Some(lease),
                };
                self.release(job, &mut start).await;
                return Err(match lookup {
                    CheckpointLookup::Unknown(reason) => {
                        self.reject(message, Some(job), reason).await
                    }
                    CheckpointLookup::Store(err) => {
                        warn!(job_id = %job.job_id, error = %err, "reading checkpoints failed; will retry");
                        retry(err.to_string())
                    }
                });
            }
        };
        Ok(Start {
            store,
            layout,
            resume,
            lease: Some(lease),
        })
    }

    /// Gives the job's lease back; a failure is logged (the lease then ends at the deadline).
    async fn release(&self, job: &BackupJob, start: &mut Start) {
        if let Some(lease) = start.lease.take() {
            if let Err(err) = lease.release(start.store.as_ref()).await {
                warn!(job_id = %job.job_id, error = %err, "releasing the job's lease failed; it ends at the invocation's deadline");
            }
        }
    }

    /// Finds the newest checkpoint of the job (or of this worker's share). A continuation must
    /// find the checkpoint it names; any delivery then resumes from the newest one, so a stale
    /// redelivery never redoes work.
    async fn latest_checkpoint(
        &self,
        store: &dyn ObjectStore,
        layout: &Layout,
        order: &WorkOrder,
    ) -> Result<Option<Checkpoint>, CheckpointLookup> {
        let worker = order.shard.map(|s| s.worker);
        let key = |sequence| layout.checkpoint_key(worker, sequence);
        let mut sequence = order.continuation.unwrap_or(1);
        let exists = store.exists(&key(sequence)).await?;
        if !exists {
            return match order.continuation {
                Some(n) => Err(CheckpointLookup::Unknown(format!(
                    "continuation of an unknown job: checkpoint {n} of job {} does not exist at {}",
                    order.job.job_id,
                    store.uri(&key(n))
                ))),
                None => Ok(None),
            };
        }
        while store.exists(&key(sequence + 1)).await? {
            sequence += 1;
        }
        let bytes = store.get(&key(sequence)).await?;
        Checkpoint::from_json(&bytes, order.job.job_id.as_str(), order.shard)
            .map(Some)
            .map_err(|e| CheckpointLookup::Unknown(e.to_string()))
    }
}

/// Where a leg starts: the job's store and layout, and the checkpoint to resume from.
struct Start {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    resume: Option<Checkpoint>,
    /// Held from before the checkpoint is read until the leg ends.
    lease: Option<Lease>,
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

fn complete_status(
    mut status: JobStatus,
    manifest: &Manifest,
    uri: &str,
    shrink_alert_percent: f64,
) -> JobStatus {
    status.state = JobState::Complete;
    status.change = manifest.previous.as_ref().map(|previous| Change {
        since: previous.finished_at.clone(),
        previous_job_id: previous.job_id.clone(),
        items_percent: manifest.items_change_percent(),
        bytes_percent: manifest.bytes_change_percent(),
        shrank: manifest.shrank(shrink_alert_percent),
    });
    if manifest.workers > 1 {
        (status.workers, status.workers_done) = (Some(manifest.workers), Some(manifest.workers));
    }
    status.items = Some(manifest.item_count);
    status.bytes = Some(manifest.bytes);
    status.files = Some(manifest.files.len());
    status.manifest = Some(uri.to_string());
    status.stage = None;
    status.error = None;
    status.will_retry = None;
    status.progress = None;
    status
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fan_out_tests;

#[cfg(test)]
mod ending_tests;

#[cfg(test)]
mod restore_tests;

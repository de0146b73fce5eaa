//! Restore jobs on the queue (`{"kind": "restore", …}`): a backup written into a new table by
//! many workers, each writing a share of its files at its part of the write budget.
//!
//! 1. The job's message plans: it reads the manifest, refuses a table outside the deployment's
//!    restore pattern or one that exists, writes the plan (`If-None-Match`, so a redelivery
//!    reads the same plan), creates the table with the backup's keys and indexes, and queues one
//!    message per worker.
//! 2. A worker's message writes its files from its saved position, saving the position every few
//!    seconds and at the invocation's deadline, when it queues its own continuation. Killed or
//!    retried, the next delivery resumes there: the records of a batch in flight are written
//!    again (a put is idempotent), and none is skipped.
//! 3. A worker whose share is written records its result once; the one whose listing shows every
//!    result completes the job: the status, and one email.
//!
//! A worker that cannot go on (a record that does not decode, the table deleted, the retries
//! spent) records the job's failure once: the status says why, one email goes out, and the
//! other workers stop at their next delivery.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::report::{Disposition, MessageReport};
use super::{QueueMessage, Worker};
use crate::error::Retryable;
use crate::model::job::{Destination, JobError};
use crate::model::manifest::Manifest;
use crate::model::restore_job::{
    share_files, RestoreJob, RestoreLayout, RestorePlan, RestoreRequest, SharePosition, ShareResult,
};
use crate::readback::restore::{restore, RestoreOptions, RestoreProgress};
use crate::readback::table_writer::{TableSpec, TableWriter};
use crate::store::{put_if, ObjectMeta, ObjectStore, Precondition, StoreError};
use crate::triggers::notify::Email;
use crate::triggers::status::{JobState, JobStatus};

const JSON: ObjectMeta = ObjectMeta {
    content_type: "application/json",
    content_encoding: None,
    records: None,
    retained: false,
};

/// Batches each restore worker keeps in flight.
const CONCURRENCY: usize = 8;

/// Why a restore job cannot go on.
enum Stop {
    /// Never: the job fails, with its reason.
    Fail(String),
    /// Maybe later: the message comes back.
    Retry(String),
    /// Never, and not this job's to fail (a job id another restore holds): the message is
    /// dropped with the reason.
    Refuse(String),
}

impl From<StoreError> for Stop {
    fn from(err: StoreError) -> Self {
        if err.is_retryable() {
            Stop::Retry(err.to_string())
        } else {
            Stop::Fail(err.to_string())
        }
    }
}

impl Worker {
    /// Handles a restore job's message: plans it, or writes one worker's share.
    pub(super) async fn restore_message(
        &self,
        message: &QueueMessage,
        deadline: Instant,
    ) -> MessageReport {
        let parsed = RestoreRequest::from_json(&message.body).and_then(|request| {
            let worker = request.worker;
            request
                .into_job(&self.defaults, &message.id)
                .map(|job| (job, worker))
        });
        let (job, worker) = match parsed {
            Ok(parsed) => parsed,
            Err(err) => {
                return self
                    .reject(message, None, format!("invalid restore job: {err}"))
                    .await
            }
        };
        let mut report = match self.restore_step(message, &job, worker, deadline).await {
            Ok(report) => report,
            Err(Stop::Retry(detail)) => {
                warn!(job_id = %job.job_id, worker, error = %detail, "restore: will retry");
                MessageReport::new(message, None, Disposition::Retry, detail)
            }
            Err(Stop::Fail(detail)) => self.fail_restore(message, &job, None, detail).await,
            Err(Stop::Refuse(detail)) => {
                error!(job_id = %job.job_id, error = %detail, "restore message refused");
                MessageReport::new(message, None, Disposition::Rejected, detail)
            }
        };
        report.job_id = Some(job.job_id.to_string());
        report.table = Some(job.table.to_string());
        report
    }

    async fn restore_step(
        &self,
        message: &QueueMessage,
        job: &RestoreJob,
        worker: Option<u32>,
        deadline: Instant,
    ) -> Result<MessageReport, Stop> {
        if !self.policy.restore_tables.matches(job.table.as_str()) {
            return Err(Stop::Fail(format!(
                "table `{}` does not match the restore pattern `{}` (DDB_BACKUP_RESTORE_TABLE_PATTERN): restore jobs create only such tables",
                job.table,
                self.policy.restore_tables.as_str()
            )));
        }
        if let Err(refused) = self.policy.check_recipients(&job.notify) {
            return Err(Stop::Fail(format!("job not allowed: {refused}")));
        }
        let Some(writer) = self.writer.clone() else {
            return Err(Stop::Fail(
                "this worker writes no tables: restore jobs need its table writer".into(),
            ));
        };
        let store = self.restore_store(job);
        let layout = RestoreLayout::new(job);
        if let Some(failure) = read_text(store.as_ref(), &layout.failure_key()).await? {
            return Ok(MessageReport::new(
                message,
                None,
                Disposition::Skipped,
                format!("the restore failed already: {failure}"),
            ));
        }
        let manifest = match store.get(&job.manifest_key).await {
            Ok(bytes) => Manifest::from_json(&bytes)
                .map_err(|e| Stop::Fail(format!("{} is not a manifest: {e}", job.backup_uri())))?,
            Err(err) if err.is_not_found() => {
                return Err(Stop::Fail(format!(
                    "no backup at {}: name a complete backup's manifest or folder",
                    job.backup_uri()
                )))
            }
            Err(err) => return Err(err.into()),
        };
        let source = crate::model::job::TableName::new(&manifest.table)
            .map_err(|e| Stop::Fail(e.to_string()))?;
        if let Err(refused) = self.policy.check_table(&source) {
            return Err(Stop::Fail(format!("job not allowed: {refused}")));
        }
        if !manifest.format.is_lossless() {
            return Err(Stop::Fail(format!(
                "backup {} is in the `{}` format, which cannot rebuild items exactly: restore jobs take dynamodb-json, csv and parquet backups",
                manifest.job_id, manifest.format
            )));
        }
        match worker {
            None => {
                self.plan_restore(message, job, &manifest, store, &layout, writer.as_ref())
                    .await
            }
            Some(worker) => {
                self.restore_share(
                    message, job, &manifest, store, &layout, writer, worker, deadline,
                )
                .await
            }
        }
    }

    fn restore_store(&self, job: &RestoreJob) -> Arc<dyn ObjectStore> {
        (self.stores)(&Destination::S3 {
            bucket: job.bucket.clone(),
            prefix: self.defaults.prefix.clone(),
        })
    }

    /// Records how the job ended, once: `None` when this call ended it, else the outcome
    /// already recorded.
    async fn end_once(
        &self,
        store: &dyn ObjectStore,
        layout: &RestoreLayout,
        outcome: &str,
    ) -> Result<Option<String>, Stop> {
        let body = Bytes::from(
            serde_json::json!({"outcome": outcome, "writer": uuid::Uuid::new_v4().to_string()})
                .to_string(),
        );
        if put_if(
            store,
            &layout.ended_key(),
            body,
            &JSON,
            Precondition::Absent,
        )
        .await?
        {
            return Ok(None);
        }
        let recorded = store.get(&layout.ended_key()).await?;
        Ok(Some(
            serde_json::from_slice::<serde_json::Value>(&recorded)
                .ok()
                .and_then(|v| v["outcome"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into()),
        ))
    }

    /// Claims the name of the table for `job`, so that two restore jobs never write one table: a
    /// claim of another job whose table no longer exists is taken over by compare-and-swap.
    async fn claim_table(
        &self,
        store: &dyn ObjectStore,
        key: &str,
        job: &RestoreJob,
    ) -> Result<(), Stop> {
        let body = Bytes::from(
            serde_json::json!({"job_id": job.job_id.to_string(), "backup": job.backup_uri()})
                .to_string(),
        );
        let current = store.get_tagged(key).await?;
        let condition = match &current {
            None => Precondition::Absent,
            Some((existing, _)) if *existing == body => return Ok(()),
            Some((_, tag)) => Precondition::Unchanged(tag),
        };
        if put_if(store, key, body, &JSON, condition).await? {
            return Ok(());
        }
        self.check_claim(store, key, job).await
    }

    /// Checks that `job` holds the claim on its table's name.
    async fn check_claim(
        &self,
        store: &dyn ObjectStore,
        key: &str,
        job: &RestoreJob,
    ) -> Result<(), Stop> {
        let holder = match store.get_tagged(key).await? {
            Some((body, _)) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["job_id"].as_str().map(str::to_string)),
            None => None,
        };
        match holder {
            Some(holder) if holder == job.job_id.as_str() => Ok(()),
            Some(holder) => Err(Stop::Fail(format!(
                "restore job {holder} is writing table `{}`: two restores never write one table; choose another name",
                job.table
            ))),
            None => Err(Stop::Fail(format!(
                "no restore job holds table `{}`: it was not created by this job",
                job.table
            ))),
        }
    }

    /// The job's first step: the plan, the table, one message per worker.
    async fn plan_restore(
        &self,
        message: &QueueMessage,
        job: &RestoreJob,
        manifest: &Manifest,
        store: Arc<dyn ObjectStore>,
        layout: &RestoreLayout,
        writer: &dyn TableWriter,
    ) -> Result<MessageReport, Stop> {
        let Some(queue) = &self.queue else {
            return Err(Stop::Fail(
                "restore jobs need the job queue (DDB_BACKUP_QUEUE_URL)".into(),
            ));
        };
        let table = job.table.as_str();
        let exists = writer
            .describe(table)
            .await
            .map_err(|e| classify(&e, e.to_string()))?
            .is_some();
        let claim_key = format!("{}restores/tables/{table}.json", self.defaults.prefix);
        let plan = match read_plan(store.as_ref(), layout).await? {
            Some(plan) => {
                if plan.table != table || plan.backup != job.manifest_key {
                    return Err(Stop::Refuse(format!(
                        "job id {} is a restore of {} into `{}` already; give this one another job id",
                        job.job_id, plan.backup, plan.table
                    )));
                }
                self.check_claim(store.as_ref(), &claim_key, job).await?;
                plan
            }
            None => {
                // Never over an existing table: only a table this job's plan created is
                // written into.
                if exists {
                    return Err(Stop::Fail(format!(
                        "table `{table}` already exists: a restore job writes only into a new table; choose another name, or delete it first"
                    )));
                }
                self.claim_table(store.as_ref(), &claim_key, job).await?;
                let workers = job.workers_for(manifest.files.len());
                let plan = RestorePlan {
                    job_id: job.job_id.to_string(),
                    backup_job_id: manifest.job_id.clone(),
                    backup: job.manifest_key.clone(),
                    source_table: manifest.table.clone(),
                    table: table.to_string(),
                    shares: share_files(&manifest.files, workers),
                    items: manifest.item_count,
                    write_budget_per_worker: job.write_budget.map(|b| b / f64::from(workers)),
                    planned_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                };
                let body = serde_json::to_vec(&plan).map_err(|e| Stop::Fail(e.to_string()))?;
                let mine = put_if(
                    store.as_ref(),
                    &layout.plan_key(),
                    Bytes::from(body),
                    &JSON,
                    Precondition::Absent,
                )
                .await?;
                if mine {
                    plan
                } else {
                    read_plan(store.as_ref(), layout)
                        .await?
                        .ok_or_else(|| Stop::Retry("the plan vanished".into()))?
                }
            }
        };
        if !exists {
            let spec = TableSpec {
                key_schema: manifest.key_schema.clone(),
                attribute_definitions: manifest.attribute_definitions.clone(),
                global_secondary_indexes: manifest.global_secondary_indexes.clone(),
                local_secondary_indexes: manifest.local_secondary_indexes.clone(),
            };
            if let Err(err) = writer.create_table(table, &spec).await {
                // A duplicate delivery may have created it meanwhile.
                let now = writer.describe(table).await.ok().flatten();
                if now.is_none() {
                    return Err(classify(
                        &err,
                        format!("creating table `{table}` failed: {err}"),
                    ));
                }
            }
        }
        // Another job may have taken the name over while this one created the table (it took
        // the claim of a table that did not exist yet): then that job writes it, not this one.
        self.check_claim(store.as_ref(), &claim_key, job).await?;
        let workers = plan.shares.len() as u32;
        let mut status = JobStatus::for_restore(job, &manifest.table, JobState::Running);
        (status.workers, status.workers_done) = (Some(workers), Some(0));
        self.update_status(&job.job_id, |current| match current {
            Some(current) if current.is_final() || current.workers.is_some() => None,
            _ => Some(status.clone()),
        })
        .await;
        let mut queued = 0;
        for worker in 0..workers {
            if store.exists(&layout.result_key(worker)).await? {
                continue;
            }
            let body = serde_json::to_string(&job.to_request(Some(worker)))
                .map_err(|e| Stop::Fail(e.to_string()))?;
            queue.send(&body, None).await.map_err(|e| {
                Stop::Retry(format!("queueing worker {worker}'s share failed: {e}"))
            })?;
            queued += 1;
        }
        if queued == 0 {
            // Every share has its result: a delivery that died before completing the job.
            let done = store.list(&layout.results_prefix()).await?;
            if done.len() >= plan.shares.len() {
                return self
                    .complete_restore(message, job, &plan, store.as_ref(), layout, &done)
                    .await;
            }
        }
        info!(job_id = %job.job_id, table = %job.table, workers, queued, "restore fanned out");
        Ok(MessageReport::new(
            message,
            None,
            Disposition::FannedOut,
            format!(
                "restore of backup {} into {table}: {workers} workers, {queued} share messages queued",
                manifest.job_id
            ),
        ))
    }

    /// One worker's share, from its saved position until done or the deadline.
    #[allow(clippy::too_many_arguments)]
    async fn restore_share(
        &self,
        message: &QueueMessage,
        job: &RestoreJob,
        manifest: &Manifest,
        store: Arc<dyn ObjectStore>,
        layout: &RestoreLayout,
        writer: Arc<dyn TableWriter>,
        worker: u32,
        deadline: Instant,
    ) -> Result<MessageReport, Stop> {
        let plan = read_plan(store.as_ref(), layout)
            .await?
            .ok_or_else(|| Stop::Fail("a restore share without its job's plan".into()))?;
        let Some(keys) = plan.shares.get(worker as usize) else {
            return Err(Stop::Fail(format!(
                "worker {worker} is not in the plan of {} workers",
                plan.shares.len()
            )));
        };
        if store.exists(&layout.result_key(worker)).await? {
            // A delivery may have died after the result, before completing the job.
            let done = store.list(&layout.results_prefix()).await?;
            if done.len() >= plan.shares.len() && !store.exists(&layout.ended_key()).await? {
                return self
                    .complete_restore(message, job, &plan, store.as_ref(), layout, &done)
                    .await;
            }
            return Ok(MessageReport::new(
                message,
                None,
                Disposition::Skipped,
                format!("worker {worker}'s share is written already"),
            ));
        }
        let mut share = manifest.clone();
        share.files = keys
            .iter()
            .map(|key| {
                manifest
                    .files
                    .iter()
                    .find(|f| &f.key == key)
                    .cloned()
                    .ok_or_else(|| Stop::Fail(format!("{key} is in the plan, not the manifest")))
            })
            .collect::<Result<_, _>>()?;
        share.item_count = share.files.iter().map(|f| f.item_count).sum();
        let saved: SharePosition = match store.get(&layout.position_key(worker)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Stop::Fail(format!("worker {worker}'s position: {e}")))?,
            Err(err) if err.is_not_found() => SharePosition::default(),
            Err(err) => return Err(err.into()),
        };
        let legs = saved.legs + 1;
        let stop_at = deadline
            .checked_sub(self.deadline_margin)
            .unwrap_or_else(Instant::now);
        if stop_at <= Instant::now() {
            return Err(Stop::Retry(
                "not started: too little time left before the invocation's deadline".into(),
            ));
        }
        let options = RestoreOptions {
            table: job.table.clone(),
            create_table: false,
            write_budget: plan.write_budget_per_worker,
            concurrency: CONCURRENCY,
            allow_lossy: false,
            overlay: None,
            resume: Some(saved.position),
            stop_at: Some(stop_at),
        };
        let progress = Arc::new(RestoreProgress::default());
        // A failure before the restore starts saves where it was, not the beginning.
        *progress
            .written_to
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = saved.position;
        let save = |items: u64, position| SharePosition {
            position,
            legs,
            items: saved.items + items,
        };
        // The position is saved every few seconds, so a worker killed mid-file loses only
        // that much.
        let saver = async {
            loop {
                tokio::time::sleep(self.progress_every).await;
                let at = save(progress.items.load(Ordering::Relaxed), progress.position());
                if let Err(err) = put_json(store.as_ref(), &layout.position_key(worker), &at).await
                {
                    warn!(job_id = %job.job_id, worker, error = %err, "saving the restore position failed");
                }
            }
        };
        let run = restore(
            store.clone(),
            &share,
            str::to_string,
            writer,
            &options,
            progress.clone(),
        );
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = saver => unreachable!("the saver loops until the restore ends"),
        };
        let at = save(progress.items.load(Ordering::Relaxed), progress.position());
        put_json(store.as_ref(), &layout.position_key(worker), &at).await?;
        let report = match outcome {
            Ok(report) => report,
            Err(err) => {
                let detail = format!("worker {worker}: {err}");
                if err.is_retryable() && message.receive_count < self.max_receives {
                    return Err(Stop::Retry(detail));
                }
                return Err(Stop::Fail(detail));
            }
        };
        if report.paused_at.is_some() {
            let queue = self.queue.as_ref().ok_or_else(|| {
                Stop::Fail("the restore needs another invocation but no queue is configured".into())
            })?;
            queue
                .send(&message.body, None)
                .await
                .map_err(|e| Stop::Retry(format!("queueing the continuation failed: {e}")))?;
            return Ok(MessageReport::new(
                message,
                None,
                Disposition::Continued,
                format!(
                    "worker {worker} stopped at file {} record {} of its share; its continuation is queued",
                    at.position.file, at.position.records
                ),
            ));
        }
        let result = ShareResult {
            worker,
            items: at.items,
            consumed_write_capacity: report.consumed_write_capacity,
            retries: report.retries,
            legs,
        };
        let body = serde_json::to_vec(&result).map_err(|e| Stop::Fail(e.to_string()))?;
        put_if(
            store.as_ref(),
            &layout.result_key(worker),
            Bytes::from(body),
            &JSON,
            Precondition::Absent,
        )
        .await?;
        let done = store.list(&layout.results_prefix()).await?;
        let workers = plan.shares.len();
        self.update_status(&job.job_id, |current| match current {
            Some(mut status) if !status.is_final() => {
                status.workers_done = Some(done.len() as u32);
                Some(status)
            }
            _ => None,
        })
        .await;
        if done.len() < workers {
            return Ok(MessageReport::new(
                message,
                None,
                Disposition::ShardDone,
                format!(
                    "worker {worker}'s share is written; {} of {workers} done",
                    done.len()
                ),
            ));
        }
        self.complete_restore(message, job, &plan, store.as_ref(), layout, &done)
            .await
    }

    /// Every share is written: the status, and the one email.
    async fn complete_restore(
        &self,
        message: &QueueMessage,
        job: &RestoreJob,
        plan: &RestorePlan,
        store: &dyn ObjectStore,
        layout: &RestoreLayout,
        results: &[String],
    ) -> Result<MessageReport, Stop> {
        let mut written = 0;
        let mut retries = 0;
        for key in results {
            let bytes = store.get(key).await?;
            let result: ShareResult =
                serde_json::from_slice(&bytes).map_err(|e| Stop::Fail(e.to_string()))?;
            written += result.items;
            retries += result.retries;
        }
        // Workers finishing together may both see every result: one ends the job. A later
        // delivery sends the email if the one that ended it died first (the email's own marker
        // keeps it to one).
        let first = match self.end_once(store, layout, "complete").await? {
            None => true,
            Some(outcome)
                if outcome == "complete" && !store.exists(&layout.notified_key()).await? =>
            {
                false
            }
            Some(outcome) => {
                return Ok(MessageReport::new(
                    message,
                    None,
                    Disposition::Skipped,
                    format!("the restore has ended already: {outcome}"),
                ))
            }
        };
        let mut status = JobStatus::for_restore(job, &plan.source_table, JobState::Complete);
        (status.workers, status.workers_done) = (
            Some(plan.shares.len() as u32),
            Some(plan.shares.len() as u32),
        );
        status.items = Some(plan.items);
        status.files = Some(plan.shares.iter().map(Vec::len).sum());
        status.manifest = Some(job.backup_uri());
        let sent = self
            .email_restore(
                job,
                store,
                layout,
                "complete",
                format!("Restore COMPLETE: {} into {}", plan.source_table, plan.table),
                format!(
                    "The backup {} of table {} is restored into table {}: {} items from {} files, by {} workers ({} writes with the rewrites of resumed legs, {} throttled resubmissions).\n\nBackup: {}\nRestore job: {}\n",
                    plan.backup_job_id,
                    plan.source_table,
                    plan.table,
                    plan.items,
                    status.files.unwrap_or(0),
                    plan.shares.len(),
                    written,
                    retries,
                    job.backup_uri(),
                    job.job_id
                ),
            )
            .await;
        status.notified = sent;
        self.update_status(&job.job_id, |_| Some(status.clone()))
            .await;
        if first {
            info!(job_id = %job.job_id, table = %job.table, items = plan.items, "restore job complete");
        } else {
            info!(job_id = %job.job_id, "the complete restore's email, after the delivery that completed it stopped");
        }
        let mut report = MessageReport::new(
            message,
            None,
            Disposition::Done,
            format!("restore into {} complete: {} items", plan.table, plan.items),
        );
        report.items = Some(plan.items);
        Ok(report)
    }

    /// Fails the restore job once: its failure record (so its other workers stop), the status,
    /// and one email.
    pub(super) async fn fail_restore(
        &self,
        message: &QueueMessage,
        job: &RestoreJob,
        source_table: Option<&str>,
        detail: String,
    ) -> MessageReport {
        error!(job_id = %job.job_id, table = %job.table, error = %detail, "restore failed");
        // Recipients the deployment does not allow hear nothing; its own do.
        let mut job = job.clone();
        if self.policy.check_recipients(&job.notify).is_err() {
            job.notify = self.defaults.notify.clone();
        }
        let job = &job;
        let store = self.restore_store(job);
        let layout = RestoreLayout::new(job);
        if let Err(err) = put_if(
            store.as_ref(),
            &layout.failure_key(),
            Bytes::from(detail.clone()),
            &JSON,
            Precondition::Absent,
        )
        .await
        {
            warn!(job_id = %job.job_id, error = %err, "recording the restore's failure failed");
        }
        match self.end_once(store.as_ref(), &layout, "failed").await {
            Ok(Some(outcome)) if outcome == "complete" => {
                // A late failure of a job that is complete changes nothing.
                return MessageReport::new(
                    message,
                    None,
                    Disposition::Skipped,
                    format!("the restore is complete already; {detail}"),
                );
            }
            Ok(_) => {}
            Err(_) => {
                warn!(job_id = %job.job_id, "recording how the restore ended failed; failing it anyway")
            }
        }
        let source = match source_table {
            Some(s) => s.to_string(),
            None => read_plan(store.as_ref(), &layout)
                .await
                .ok()
                .flatten()
                .map_or_else(|| "?".to_string(), |p| p.source_table),
        };
        let mut status = JobStatus::for_restore(job, &source, JobState::Failed);
        status.error = Some(detail.clone());
        status.will_retry = Some(false);
        status.notified = self
            .email_restore(
                job,
                store.as_ref(),
                &layout,
                "failed",
                format!("Restore FAILED: into {}", job.table),
                format!(
                    "The restore of {} into table {} failed and will not be retried:\n\n{detail}\n\nThe table may hold part of the backup: delete it, fix the cause, and start the restore again.\nRestore job: {}\n",
                    job.backup_uri(),
                    job.table,
                    job.job_id
                ),
            )
            .await;
        self.update_status(&job.job_id, |_| Some(status.clone()))
            .await;
        let mut report = MessageReport::new(message, None, Disposition::Rejected, detail);
        report.keep_on_queue = false;
        report
    }

    /// Sends the job's one email for `outcome`: a marker written with `If-None-Match` first, so
    /// duplicates stay silent.
    async fn email_restore(
        &self,
        job: &RestoreJob,
        store: &dyn ObjectStore,
        layout: &RestoreLayout,
        outcome: &str,
        subject: String,
        text: String,
    ) -> bool {
        let Some((notifier, sender)) = &self.notifier else {
            return false;
        };
        if job.notify.is_empty() {
            return false;
        }
        let marker = serde_json::json!({
            "job_id": job.job_id.to_string(),
            "writer": uuid::Uuid::new_v4().to_string(),
            "outcome": outcome,
        });
        match put_if(
            store,
            &layout.notified_key(),
            Bytes::from(marker.to_string()),
            &JSON,
            Precondition::Absent,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => return true,
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "writing the email marker failed; sending anyway")
            }
        }
        let html = format!(
            "<html><body><h2>{}</h2><pre>{}</pre></body></html>",
            html_escape(&subject),
            html_escape(&text)
        );
        let email = Email {
            from: sender.clone(),
            to: job.notify.clone(),
            subject,
            text,
            html,
        };
        match notifier.send(&email).await {
            Ok(_) => true,
            Err(err) => {
                error!(job_id = %job.job_id, error = %err, "the restore's email failed");
                false
            }
        }
    }

    /// A restore message no delivery finished: the job fails, once.
    pub(super) async fn dead_restore(
        &self,
        message: &QueueMessage,
        reason: String,
    ) -> MessageReport {
        match RestoreRequest::from_json(&message.body)
            .and_then(|r| r.into_job(&self.defaults, &message.id))
        {
            Ok(job) => {
                let store = self.restore_store(&job);
                let layout = RestoreLayout::new(&job);
                if matches!(store.exists(&layout.ended_key()).await, Ok(true)) {
                    return MessageReport::new(
                        message,
                        None,
                        Disposition::Skipped,
                        "the restore has ended already".into(),
                    );
                }
                let mut report = self.fail_restore(message, &job, None, reason).await;
                report.disposition = Disposition::Recorded;
                report
            }
            Err(err) => MessageReport::new(
                message,
                None,
                Disposition::Recorded,
                format!("an unreadable restore job ({err}): {reason}"),
            ),
        }
    }
}

fn classify(err: &dyn Retryable, detail: String) -> Stop {
    if err.is_retryable() {
        Stop::Retry(detail)
    } else {
        Stop::Fail(detail)
    }
}

async fn read_plan(
    store: &dyn ObjectStore,
    layout: &RestoreLayout,
) -> Result<Option<RestorePlan>, Stop> {
    match store.get(&layout.plan_key()).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Stop::Fail(format!("the restore's plan: {e}"))),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err.into()),
    }
}

async fn read_text(store: &dyn ObjectStore, key: &str) -> Result<Option<String>, Stop> {
    match store.get(key).await {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err.into()),
    }
}

async fn put_json<T: serde::Serialize>(
    store: &dyn ObjectStore,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let body = serde_json::to_vec(value).expect("plain data serializes");
    store.put_object(key, Bytes::from(body), &JSON).await
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl From<JobError> for Stop {
    fn from(err: JobError) -> Self {
        Stop::Fail(err.to_string())
    }
}

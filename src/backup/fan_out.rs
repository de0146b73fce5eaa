//! One backup shared by several workers, coordinated through the store alone: no table, no lock
//! service. Every decision that two workers could race on is a conditional write that only one of
//! them can win (`If-None-Match: *`):
//!
//! - the first delivery fixes the [`Plan`] at `plan.json`; a redelivery reads the same plan back;
//! - each worker records its [`WorkerResult`] once at `results/worker-{w:04}.json`;
//! - the worker whose result completes the set (S3 lists are strongly consistent, so the last
//!   writer sees every result) merges them and writes `manifest.json`; if two finish at once,
//!   one write fails its condition and that worker stands down;
//! - a worker that fails for good records `failed.json`; the others see it within a poll
//!   interval, stop at their next page and abort their uploads, and the manifest is never written.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::error::BackupError;
use super::pipeline::{read_budget, Backup, Completed, LegOutcome, JSON_META, MANIFEST_META};
use crate::model::fan_out::{
    workers_for, FailureRecord, Plan, Shard, WorkerResult, FAN_OUT_VERSION, ON_DEMAND_READ_UNITS,
};
use crate::model::job::{BackupJob, MAX_SEGMENTS};
#[cfg(test)]
use crate::model::manifest::Manifest;
use crate::model::manifest::{FileEntry, Layout};
use crate::model::table::TableInfo;
use crate::source::auto_segments;
use crate::store::{ObjectStore, Precondition, StoreError};

/// Results read at once when the last worker merges them.
const CONCURRENT_RESULT_READS: usize = 16;

impl Backup {
    /// How `job` is shared: its workers (the job's `workers`, or one per 10 GiB of table, no more
    /// than the table's reads feed, up to `max_workers`) and its segments (the job's, or enough to keep every worker's segments
    /// busy). A plan of more than one worker is stored once; a redelivery gets the stored plan
    /// back, so every shard message of one job agrees. A plan of one worker is not stored: the
    /// job runs as it always has.
    pub async fn plan_fan_out(
        &self,
        job: &BackupJob,
        max_workers: u32,
    ) -> Result<Plan, BackupError> {
        let layout = Layout::new(job);
        if let Some(plan) = self.stored_plan(&layout, job).await? {
            return Ok(plan);
        }
        let info = self.source.describe(job.table.as_str()).await?;
        let mut workers = match job.workers {
            Some(w) => w.get(),
            None => workers_for(info.size_bytes, read_units(job, &info)?, max_workers),
        };
        let segments = match job.segments {
            Some(n) => n.get(),
            None => planned_segments(
                auto_segments(&info, self.tuning.max_auto_segments),
                workers,
                self.tuning.max_concurrent_segments as u32,
            ),
        };
        // Every worker needs a segment of its own.
        workers = workers.min(segments).max(1);
        let plan = Plan {
            version: FAN_OUT_VERSION,
            job_id: job.job_id.to_string(),
            workers,
            segments,
            planned_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        if workers == 1 {
            return Ok(plan);
        }
        self.store.preflight().await?;
        let body = serde_json::to_vec_pretty(&plan).map_err(BackupError::Serialize)?;
        let key = layout.plan_key();
        if crate::store::put_if(
            self.store.as_ref(),
            &key,
            Bytes::from(body),
            &JSON_META,
            Precondition::Absent,
        )
        .await?
        {
            return Ok(plan);
        }
        // Another delivery of the job planned first: its plan stands.
        self.stored_plan(&layout, job)
            .await?
            .ok_or_else(|| BackupError::FanOut {
                uri: self.store.uri(&key),
                message: "the plan was written by another delivery but cannot be read back"
                    .to_string(),
            })
    }

    async fn stored_plan(
        &self,
        layout: &Layout,
        job: &BackupJob,
    ) -> Result<Option<Plan>, BackupError> {
        let key = layout.plan_key();
        let Some((body, _)) = self.store.get_tagged(&key).await? else {
            return Ok(None);
        };
        let plan: Plan = self.document(&key, &body)?;
        if plan.job_id != job.job_id.as_str() || plan.workers == 0 || plan.segments < plan.workers {
            return Err(BackupError::FanOut {
                uri: self.store.uri(&key),
                message: format!(
                    "a plan of job {} for {} workers over {} segments cannot be used for job {}",
                    plan.job_id, plan.workers, plan.segments, job.job_id
                ),
            });
        }
        Ok(Some(plan))
    }

    /// Refuses a share that does not fit the job's stored plan: the plan, written once when
    /// the job fanned out, decides the workers and segments, never the settings of the worker
    /// that reads the share later (its `DDB_BACKUP_MAX_WORKERS` may have been lowered since).
    pub(super) async fn check_shard_against_plan(
        &self,
        job: &BackupJob,
        layout: &Layout,
        shard: Shard,
    ) -> Result<(), BackupError> {
        let key = layout.plan_key();
        let plan = self
            .stored_plan(layout, job)
            .await?
            .ok_or_else(|| BackupError::FanOut {
                uri: self.store.uri(&key),
                message: format!(
                    "worker {} of job {} has no plan: a shard is written by the worker that planned the job, not by hand",
                    shard.worker, job.job_id
                ),
            })?;
        let segments = job.segments.map_or(0, |n| n.get());
        if plan.workers != shard.workers || plan.segments != segments {
            return Err(BackupError::FanOut {
                uri: self.store.uri(&key),
                message: format!(
                    "the plan shares job {} over {} workers and {} segments, but this shard says {} workers and {} segments",
                    job.job_id, plan.workers, plan.segments, shard.workers, segments
                ),
            });
        }
        Ok(())
    }

    /// Records this worker's result once. A duplicate delivery of the same share finds it
    /// recorded already and keeps the first.
    pub(super) async fn record_result(
        &self,
        layout: &Layout,
        result: &WorkerResult,
    ) -> Result<(), BackupError> {
        let key = layout.result_key(result.worker);
        let body = serde_json::to_vec_pretty(result).map_err(BackupError::Serialize)?;
        let first = crate::store::put_if(
            self.store.as_ref(),
            &key,
            Bytes::from(body),
            &JSON_META,
            Precondition::Absent,
        )
        .await?;
        if !first {
            warn!(job_id = %result.job_id, worker = result.worker, result = %self.store.uri(&key),
                  "this share's result was already recorded by another delivery; keeping that one");
        }
        Ok(())
    }

    pub(super) async fn read_result(
        &self,
        layout: &Layout,
        worker: u32,
    ) -> Result<WorkerResult, BackupError> {
        let key = layout.result_key(worker);
        let body = self.store.get(&key).await?;
        let result: WorkerResult = self.document(&key, &body)?;
        if result.worker != worker {
            return Err(BackupError::FanOut {
                uri: self.store.uri(&key),
                message: format!("holds the result of worker {}", result.worker),
            });
        }
        Ok(result)
    }

    /// After this worker's result is recorded: merges every result into the manifest if they are
    /// all there, unless another worker already did or the job failed.
    pub(super) async fn finish_fan_out(
        &self,
        job: &BackupJob,
        info: Option<TableInfo>,
        shard: Shard,
        segments: u32,
        mine: WorkerResult,
    ) -> Result<LegOutcome, BackupError> {
        let layout = Layout::new(job);
        let recorded = self.store.list(&layout.results_prefix()).await?;
        let done = recorded.iter().filter(|k| k.ends_with(".json")).count() as u32;
        let waiting = |done| LegOutcome::ShardDone {
            done,
            workers: shard.workers,
            result: Box::new(mine.clone()),
        };
        if done < shard.workers {
            info!(job_id = %job.job_id, worker = shard.worker, done, workers = shard.workers,
                  "share recorded; other workers are still reading");
            return Ok(waiting(done));
        }
        if failure_stands(self.store.as_ref(), &layout).await? {
            return Err(BackupError::Halted {
                failure: self.store.uri(&layout.failure_key()),
            });
        }
        let results: Vec<WorkerResult> = futures::stream::iter(0..shard.workers)
            .map(|w| self.read_result(&layout, w))
            .buffer_unordered(CONCURRENT_RESULT_READS)
            .try_collect()
            .await?;
        if let Some(other) = results.iter().find(|r| r.job_id != job.job_id.as_str()) {
            return Err(BackupError::FanOut {
                uri: self.store.uri(&layout.result_key(other.worker)),
                message: format!("belongs to job {}, not {}", other.job_id, job.job_id),
            });
        }
        let mut files: Vec<FileEntry> = results.iter().flat_map(|r| r.files.clone()).collect();
        files.sort_by(|a, b| a.key.cmp(&b.key));
        let started_at = match self.stored_plan(&layout, job).await? {
            Some(plan) => plan.planned_at,
            None => results
                .iter()
                .map(|r| r.started_at.clone())
                .min()
                .unwrap_or_default(),
        };
        let duration_ms = DateTime::parse_from_rfc3339(&started_at)
            .map(|t| {
                (Utc::now() - t.with_timezone(&Utc))
                    .num_milliseconds()
                    .max(0) as u64
            })
            .unwrap_or_else(|_| results.iter().map(|r| r.elapsed_ms).max().unwrap_or(0));
        let info = match info {
            Some(info) => info,
            None => self.source.describe(job.table.as_str()).await?,
        };
        let manifest = self
            .manifest(
                job,
                info,
                &layout,
                Completed {
                    started_at,
                    duration_ms,
                    consumed_read_capacity: results.iter().map(|r| r.consumed_read_capacity).sum(),
                    segments,
                    workers: shard.workers,
                    files,
                },
            )
            .await;
        let key = layout.manifest_key();
        let body = serde_json::to_vec_pretty(&manifest).map_err(BackupError::Serialize)?;
        let written = crate::store::put_if(
            self.store.as_ref(),
            &key,
            Bytes::from(body),
            &MANIFEST_META,
            Precondition::Absent,
        )
        .await?;
        if !written {
            info!(job_id = %job.job_id, worker = shard.worker,
                  "another worker wrote the manifest first; standing down");
            return Ok(waiting(shard.workers));
        }
        self.record_latest(&layout, &manifest).await;
        info!(job_id = %manifest.job_id, table = %manifest.table, items = manifest.item_count,
              bytes = manifest.bytes, files = manifest.files.len(), segments,
              workers = shard.workers, merged_by = shard.worker,
              consumed_rcu = manifest.consumed_read_capacity, duration_ms = manifest.duration_ms,
              manifest = %self.store.uri(&key), "backup complete");
        Ok(LegOutcome::Complete(Box::new(manifest)))
    }

    fn document<T: DeserializeOwned>(&self, key: &str, body: &[u8]) -> Result<T, BackupError> {
        serde_json::from_slice(body).map_err(|e| BackupError::FanOut {
            uri: self.store.uri(key),
            message: format!("not a ddb-backup fan-out document: {e}"),
        })
    }
}

/// The read units per second `job` may use on this table: its read budget, else the table's
/// provisioned read capacity, else an on-demand table's default ceiling.
fn read_units(job: &BackupJob, info: &TableInfo) -> Result<f64, BackupError> {
    if let Some(budget) = read_budget(job, info)? {
        return Ok(budget);
    }
    let provisioned = info
        .provisioned_read_capacity
        .filter(|rcu| *rcu > 0 && info.billing_mode.as_deref() != Some("PAY_PER_REQUEST"));
    Ok(provisioned.map_or(ON_DEMAND_READ_UNITS, |rcu| rcu as f64))
}

/// Segments of a fanned-out job that gives none: enough for every worker to run
/// `per_worker` at once, never fewer than the table's own rule, at most [`MAX_SEGMENTS`] each.
pub fn planned_segments(auto: u32, workers: u32, per_worker: u32) -> u32 {
    let workers = workers.max(1);
    auto.max(workers.saturating_mul(per_worker.max(1)))
        .min(workers.saturating_mul(MAX_SEGMENTS))
}

/// Records that `job` failed for good in `worker` (none: before or while it was shared out),
/// unless another worker did first. Returns whether this failure is the job's: only its
/// recorder reports it.
pub async fn record_failure(
    store: &dyn ObjectStore,
    job: &BackupJob,
    worker: Option<u32>,
    stage: &str,
    error: &str,
) -> Result<bool, StoreError> {
    let layout = Layout::new(job);
    let record = FailureRecord {
        version: FAN_OUT_VERSION,
        job_id: job.job_id.to_string(),
        worker,
        stage: stage.to_string(),
        error: error.to_string(),
        failed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        writer: uuid::Uuid::new_v4().to_string(),
        resolved_at: None,
    };
    let body = Bytes::from(serde_json::to_vec_pretty(&record).unwrap_or_default());
    let key = layout.failure_key();
    if crate::store::put_if(store, &key, body.clone(), &JSON_META, Precondition::Absent).await? {
        return Ok(true);
    }
    // A failure resolved by a redrive is replaced; one that stands is the job's.
    match store.get_tagged(&key).await? {
        Some((current, tag)) if !FailureRecord::stands(&current) => {
            crate::store::put_if(store, &key, body, &JSON_META, Precondition::Unchanged(&tag)).await
        }
        _ => Ok(false),
    }
}

/// Whether `job`'s failure record exists and stands (not resolved by a redrive).
pub async fn failure_stands(store: &dyn ObjectStore, layout: &Layout) -> Result<bool, StoreError> {
    Ok(store
        .get_tagged(&layout.failure_key())
        .await?
        .is_some_and(|(body, _)| FailureRecord::stands(&body)))
}

/// Resolves `job`'s failure, when an operator redrives one of its messages: its workers read
/// on, and the next failure is recorded anew. Returns when the failure was resolved (now or
/// before), or `None` when there is no failure record to resolve.
pub async fn resolve_failure(
    store: &dyn ObjectStore,
    job: &BackupJob,
) -> Result<Option<String>, StoreError> {
    let key = Layout::new(job).failure_key();
    for _ in 0..3 {
        let Some((current, tag)) = store.get_tagged(&key).await? else {
            return Ok(None);
        };
        let Ok(mut record) = serde_json::from_slice::<FailureRecord>(&current) else {
            return Ok(None);
        };
        if record.resolved_at.is_some() {
            return Ok(record.resolved_at);
        }
        let at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        record.resolved_at = Some(at.clone());
        let body = Bytes::from(serde_json::to_vec_pretty(&record).unwrap_or_default());
        if crate::store::put_if(store, &key, body, &JSON_META, Precondition::Unchanged(&tag))
            .await?
        {
            return Ok(Some(at));
        }
        // Changed in between (another redriven message resolved it): read it again.
    }
    Err(StoreError::request(
        "PutObject",
        store.uri(&key),
        crate::aws::FailureKind::Throttled,
        "the failure record changed under 3 attempts in a row",
    ))
}

/// Watches a fanned-out job for another worker's failure record while this worker reads.
/// Dropping it stops the watching.
pub struct FailureWatch {
    halt: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl FailureWatch {
    /// Polls for `job`'s failure record every `every`.
    pub fn start(store: Arc<dyn ObjectStore>, job: &BackupJob, every: Duration) -> FailureWatch {
        let layout = Layout::new(job);
        let (tx, halt) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match failure_stands(store.as_ref(), &layout).await {
                    Ok(true) => {
                        let _ = tx.send(true);
                        return;
                    }
                    Ok(false) => {}
                    // A failed poll is tried again at the next tick; the leg goes on meanwhile.
                    Err(err) => warn!(error = %err, "checking for a failed sibling failed"),
                }
            }
        });
        FailureWatch { halt, task }
    }

    /// The signal for [`super::pipeline::Leg::halt`].
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.halt.clone()
    }
}

impl Drop for FailureWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;

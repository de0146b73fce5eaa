//! The backup, top to bottom: describe the table, then for every segment scan → encode → compress
//! → upload, rolling files at a size target; finally the manifest, written last. Everything is
//! bounded: a segment holds at most `page_queue` pages and one part, and parts in flight are
//! limited across the job, so memory does not grow with the table.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DurationRound, SecondsFormat, Utc};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tracing::{info, warn};

use super::checkpoint::{
    key_from_json, key_to_json, Checkpoint, Position, SegmentCheckpoint, CHECKPOINT_VERSION,
};
pub use super::error::{BackupError, BudgetError, Internal, Stage};
use super::segment::{key_attributes, run_segments, SegmentContext, SegmentStart};
use crate::codec::encode::EncodeOptions;
use crate::model::changes::{ChangeLayout, ShardCoverage};
use crate::model::fan_out::{Shard, WorkerResult, FAN_OUT_VERSION};
use crate::model::format::{stored_content_type, Format};
use crate::model::job::BackupJob;
use crate::model::manifest::{
    Consistency, ConsistencyKind, FileEntry, LatestBackup, Layout, Manifest, Retention, ToolInfo,
    MANIFEST_VERSION,
};
use crate::model::table::TableInfo;
use crate::source::budget::ReadBudget;
use crate::source::segment::spread_order;
use crate::source::{auto_segments, SegmentEnd, TableSource};
use crate::store::{ObjectMeta, ObjectStore, OpenUploads, StoreError, UploadLimits};

/// Knobs that trade memory and parallelism; defaults suit a 1–2 GiB Lambda.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Base multipart part size. S3's minimum, 5 MiB, is the default: each segment fills one
    /// part while others upload, so the part size is most of a segment's memory.
    pub part_size: usize,
    /// A file is closed and a new one started once it has stored this many bytes.
    pub file_size_target: u64,
    /// Parts uploading at once, across all segments.
    pub parts_in_flight: usize,
    /// Segments worked on at once.
    pub max_concurrent_segments: usize,
    /// Upper bound of the automatically chosen segment count.
    pub max_auto_segments: u32,
    /// Pages buffered between a segment's scan and its encoder.
    pub page_queue: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            part_size: 5 * 1024 * 1024,
            file_size_target: 512 * 1024 * 1024,
            parts_in_flight: 8,
            max_concurrent_segments: 16,
            max_auto_segments: 32,
            page_queue: 1,
        }
    }
}

/// Live counters for progress bars and status.
#[derive(Debug, Default)]
pub struct Progress {
    /// Items encoded.
    pub items: AtomicU64,
    /// Stored bytes produced.
    pub bytes: AtomicU64,
    /// Segments finished.
    pub segments_done: AtomicU32,
    /// Segments in the job (known after describe).
    pub segments_total: AtomicU32,
    /// The table's approximate item count (0 if unknown).
    pub estimated_items: AtomicU64,
    /// Segments that DynamoDB throttled (the read budget slowed down).
    pub throttled_segments: AtomicU32,
}

impl Progress {
    /// How far along the leg is and how long it may take yet, estimated from the table's item
    /// count (which DynamoDB refreshes about every six hours, so only an estimate): `None`
    /// without an item count, or before the first item. `elapsed` is the leg's time so far.
    pub fn estimate(&self, elapsed: std::time::Duration) -> Option<Estimate> {
        Estimate::new(
            self.items.load(Ordering::Relaxed),
            self.estimated_items.load(Ordering::Relaxed),
            elapsed,
        )
    }
}

/// An estimate of a running backup's progress (see [`Progress::estimate`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// Items read so far.
    pub items: u64,
    /// Items the table held at its last refresh (this worker's share of them).
    pub estimated_items: u64,
    /// Fraction done, 0 to 0.99: never 1 before the end, since the count is only an estimate.
    pub fraction: f64,
    /// Seconds left at the rate so far.
    pub seconds_left: Option<u64>,
}

impl Estimate {
    /// The estimate after `items` of about `estimated_items` in `elapsed`.
    pub fn new(items: u64, estimated_items: u64, elapsed: std::time::Duration) -> Option<Self> {
        if estimated_items == 0 || items == 0 {
            return None;
        }
        let fraction = (items as f64 / estimated_items as f64).min(0.99);
        let secs = elapsed.as_secs_f64();
        let seconds_left =
            (secs > 0.0).then(|| (secs * (1.0 - fraction) / fraction).round() as u64);
        Some(Estimate {
            items,
            estimated_items,
            fraction,
            seconds_left,
        })
    }
}

/// Where a leg starts, when it must stop, and which part of the job it covers.
#[derive(Debug, Default)]
pub struct Leg {
    /// The checkpoint to resume from; `None` starts from the beginning.
    pub resume: Option<Checkpoint>,
    /// When to stop at a page boundary and leave the rest to the next leg.
    pub deadline: Option<Instant>,
    /// The worker's share, for a job fanned out over several workers; `None` for the whole job.
    pub shard: Option<Shard>,
    /// Turns true when the job failed in another worker: the leg stops at the next page and
    /// aborts its uploads.
    pub halt: Option<watch::Receiver<bool>>,
}

/// How a leg of a backup ended.
#[derive(Debug)]
pub enum LegOutcome {
    /// The backup is complete; this leg stored its manifest.
    Complete(Box<Manifest>),
    /// The deadline came first; the checkpoint is stored and the job continues from it.
    Suspended(Checkpoint),
    /// This worker's share is read and its result recorded; the job is not complete yet, or
    /// another worker wrote the manifest.
    ShardDone {
        /// Workers whose results are recorded.
        done: u32,
        /// All workers of the job.
        workers: u32,
        /// What this worker read.
        result: Box<WorkerResult>,
    },
}

/// A backup run: a table source, an object store and the tuning to use.
pub struct Backup {
    pub(super) source: Arc<dyn TableSource>,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) tuning: Tuning,
    progress: Arc<Progress>,
}

impl Backup {
    /// A backup reading from `source` and writing to `store`.
    pub fn new(source: Arc<dyn TableSource>, store: Arc<dyn ObjectStore>, tuning: Tuning) -> Self {
        Backup {
            source,
            store,
            tuning,
            progress: Arc::new(Progress::default()),
        }
    }

    /// Counters that move while [`run`](Self::run) works.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Runs `job` to completion and returns its manifest, or fails leaving no manifest and no
    /// open multipart upload.
    pub async fn run(&self, job: &BackupJob) -> Result<Manifest, BackupError> {
        match self.run_leg(job, Leg::default()).await? {
            LegOutcome::Complete(manifest) => Ok(*manifest),
            LegOutcome::Suspended(_) => Err(Internal::SuspendedWithoutDeadline.into()),
            LegOutcome::ShardDone { .. } => Err(Internal::ShardWithoutShare.into()),
        }
    }

    /// Aborts the multipart uploads of this worker's files (`share`'s segments) that no file
    /// of the job will complete: those left by an attempt that was killed before it could abort
    /// them, and those a retried CreateMultipartUpload opened while the first reply was lost.
    /// Only one attempt of a job (or share) runs at a time, so any such upload is a leftover.
    async fn sweep_uploads(
        &self,
        job: &BackupJob,
        layout: &Layout,
        share: &std::ops::Range<u32>,
    ) -> Result<(), BackupError> {
        // Only this worker's files: its siblings' uploads under the same prefix are theirs.
        let owned = |key: &str| layout.is_data_of(key, share);
        match self.store.abort_uploads_under(layout.base(), &owned).await {
            Ok(0) => Ok(()),
            Ok(stale) => {
                warn!(job_id = %job.job_id, uploads = stale, "aborted multipart uploads no file of this job will complete");
                Ok(())
            }
            // Not worth failing a backup over: the bucket's lifecycle rule aborts them later.
            Err(err @ StoreError::AccessDenied { .. }) => {
                warn!(job_id = %job.job_id, error = %err, "cannot list leftover multipart uploads (s3:ListBucketMultipartUploads); the lifecycle rule will abort them");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Runs one leg of `job`: from `leg.resume` (or the start) until the table (or the worker's
    /// share of it) is read, or until `leg.deadline` passes. At the deadline every segment stops
    /// at a page boundary, closes its file, and the leg stores the next checkpoint and returns
    /// it; the caller continues the job later from there. A worker of a fanned-out job records
    /// its result instead of a manifest, and writes the manifest if it is the last to finish.
    /// On failure nothing is left that looks complete: no manifest, no open upload.
    pub async fn run_leg(&self, job: &BackupJob, leg: Leg) -> Result<LegOutcome, BackupError> {
        let Leg {
            resume,
            deadline,
            shard,
            halt,
        } = leg;
        let started_at = Utc::now();
        let clock = Instant::now();
        let layout = Layout::new(job);
        self.store.preflight().await?;
        let manifest_key = layout.manifest_key();
        if self.store.exists(&manifest_key).await? {
            return Err(BackupError::AlreadyComplete {
                job_id: job.job_id.to_string(),
                manifest: self.store.uri(&manifest_key),
            });
        }
        // A job failed for good (by a sibling, its dead letter or the stuck-job sweep) is not
        // read further by any leg or share still queued.
        if super::fan_out::failure_stands(self.store.as_ref(), &layout).await? {
            return Err(BackupError::Halted {
                failure: self.store.uri(&layout.failure_key()),
            });
        }
        if let Some(shard) = shard {
            // A worker that recorded its result but stopped before the merge only merges.
            if self.store.exists(&layout.result_key(shard.worker)).await? {
                let result = self.read_result(&layout, shard.worker).await?;
                let segments = job
                    .segments
                    .map(|n| n.get())
                    .ok_or(Internal::ShardWithoutShare)?;
                return self
                    .finish_fan_out(job, None, shard, segments, result)
                    .await;
            }
            // The share is the plan's, whatever the settings of the worker reading it now.
            self.check_shard_against_plan(job, &layout, shard).await?;
        }
        let info = self.source.describe(job.table.as_str()).await?;
        let segments = match (&resume, shard) {
            (Some(checkpoint), _) => checkpoint.total_segments,
            (None, Some(_)) => job
                .segments
                .map(|n| n.get())
                .ok_or(Internal::ShardWithoutShare)?,
            (None, None) => job
                .segments
                .map(|n| n.get())
                .unwrap_or_else(|| auto_segments(&info, self.tuning.max_auto_segments)),
        };
        let share = match shard {
            Some(shard) => shard.segments(segments),
            None => 0..segments,
        };
        self.progress
            .segments_total
            .store(segments, Ordering::Relaxed);
        // A worker of a shared job reads its share of the segments, so about that share of the
        // items.
        let table_items = info.item_count.unwrap_or(0).max(0) as u64;
        self.progress.estimated_items.store(
            table_items * u64::from(share.end - share.start) / u64::from(segments.max(1)),
            Ordering::Relaxed,
        );
        // An earlier attempt of this job that was killed (a Lambda timeout, a crash) could not
        // abort its uploads; only one attempt of a job runs at a time, so they are leftovers.
        self.sweep_uploads(job, &layout, &share).await?;
        let prior = match resume {
            Some(checkpoint) => checkpoint,
            None => Checkpoint {
                version: CHECKPOINT_VERSION,
                job_id: job.job_id.to_string(),
                sequence: 0,
                total_segments: segments,
                shard,
                started_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                elapsed_ms: 0,
                segments: share
                    .clone()
                    .map(|segment| SegmentCheckpoint {
                        segment,
                        position: Position::Start,
                        next_file: 0,
                        pages: 0,
                        items: 0,
                        consumed_capacity: 0.0,
                        files: Vec::new(),
                    })
                    .collect(),
            },
        };
        let mut starts = Vec::new();
        for state in prior.segments.iter().filter(|s| !s.is_done()) {
            let start_key = match &state.position {
                Position::After(key) => Some(key_from_json(state.segment, key)?),
                Position::Start | Position::Done => None,
            };
            starts.push(SegmentStart {
                segment: state.segment,
                start_key,
                next_file: state.next_file,
            });
        }
        // Segments start in an order spread over the key space, so the ones read at once
        // cover every partition.
        let order: std::collections::HashMap<u32, usize> =
            spread_order(starts.iter().map(|s| s.segment))
                .into_iter()
                .enumerate()
                .map(|(rank, segment)| (segment, rank))
                .collect();
        starts.sort_by_key(|s| order.get(&s.segment).copied());
        let segments_at_once = starts.len().min(self.tuning.max_concurrent_segments.max(1)) as u32;
        // A job's read budget is shared evenly by its workers.
        let budget =
            read_budget(job, &info)?.map(|rcu| rcu / f64::from(shard.map_or(1, |s| s.workers)));
        info!(job_id = %job.job_id, table = %job.table, segments, format = %job.format,
              worker = shard.map(|s| s.worker), workers = shard.map_or(1, |s| s.workers),
              compression = %job.compression, destination = %self.store.uri(layout.base()),
              leg = prior.sequence + 1, segments_left = starts.len(),
              read_budget_rcu = budget.unwrap_or(0.0), "backup started");

        let ctx = Arc::new(SegmentContext {
            source: self.source.clone(),
            store: self.store.clone(),
            table: job.table.to_string(),
            job_id: job.job_id.to_string(),
            total_segments: segments,
            worker: shard.map_or(0, |s| s.worker),
            consistent_read: job.consistent_read,
            format: job.format,
            compression: job.compression,
            encode: EncodeOptions {
                key_attributes: key_attributes(&info.key_schema),
                parquet_compression: job.parquet_compression,
            },
            meta: ObjectMeta {
                content_type: stored_content_type(job.format, job.compression),
                content_encoding: None,
                records: job
                    .compression
                    .media_type()
                    .map(|_| job.format.content_type()),
                retained: true,
            },
            layout: layout.clone(),
            limits: UploadLimits {
                parts_in_flight: Arc::new(Semaphore::new(self.tuning.parts_in_flight.max(1))),
                base_part_size: self.tuning.part_size.max(self.store.min_part_size()),
            },
            open_uploads: OpenUploads::default(),
            tuning: self.tuning.clone(),
            progress: self.progress.clone(),
            deadline,
            budget: Arc::new(
                budget
                    .map_or_else(ReadBudget::unlimited, ReadBudget::new)
                    .shared_by(segments_at_once),
            ),
            halt,
        });
        let results = match run_segments(&ctx, starts).await {
            Ok(results) => results,
            Err(err) => {
                ctx.open_uploads.abort_all(self.store.as_ref()).await;
                return Err(err);
            }
        };

        let mut state = prior;
        for result in results {
            let segment = state
                .segment_mut(result.segment)
                .ok_or(Internal::SegmentOutsideShare(result.segment))?;
            segment.position = match &result.scan.end {
                SegmentEnd::Paused { resume_key } => Position::After(key_to_json(resume_key)?),
                SegmentEnd::Done => Position::Done,
                SegmentEnd::ConsumerGone => return Err(Internal::ConsumerGone.into()),
            };
            segment.next_file = result.next_file;
            segment.pages += result.scan.pages;
            segment.items += result.scan.items;
            segment.consumed_capacity += result.scan.consumed_capacity;
            segment.files.extend(result.files);
        }
        state.elapsed_ms += clock.elapsed().as_millis() as u64;
        if !state.is_complete() {
            state.sequence += 1;
            let body = serde_json::to_vec(&state).map_err(BackupError::Serialize)?;
            let key = layout.checkpoint_key(shard.map(|s| s.worker), state.sequence);
            self.store
                .put_object(&key, Bytes::from(body), &JSON_META)
                .await?;
            let items: u64 = state.segments.iter().map(|s| s.items).sum();
            info!(job_id = %job.job_id, table = %job.table, checkpoint = state.sequence, items,
                  segments_left = state.segments.iter().filter(|s| !s.is_done()).count(),
                  checkpoint_uri = %self.store.uri(&key), "backup suspended at the deadline");
            return Ok(LegOutcome::Suspended(state));
        }

        let mut files: Vec<FileEntry> = state
            .segments
            .iter()
            .flat_map(|s| s.files.iter().cloned())
            .collect();
        files.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(shard) = shard {
            let result = WorkerResult {
                version: FAN_OUT_VERSION,
                job_id: job.job_id.to_string(),
                worker: shard.worker,
                started_at: state.started_at.clone(),
                finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
                elapsed_ms: state.elapsed_ms,
                legs: state.sequence + 1,
                pages: state.segments.iter().map(|s| s.pages).sum(),
                items: state.segments.iter().map(|s| s.items).sum(),
                consumed_read_capacity: state.segments.iter().map(|s| s.consumed_capacity).sum(),
                files,
            };
            // A retried CreateMultipartUpload can leave an upload no file knows of.
            self.sweep_uploads(job, &layout, &share).await?;
            self.record_result(&layout, &result).await?;
            return self
                .finish_fan_out(job, Some(info), shard, segments, result)
                .await;
        }
        self.sweep_uploads(job, &layout, &share).await?;
        let manifest = self
            .manifest(
                job,
                info,
                &layout,
                Completed {
                    started_at: state.started_at.clone(),
                    duration_ms: state.elapsed_ms,
                    consumed_read_capacity: state
                        .segments
                        .iter()
                        .map(|s| s.consumed_capacity)
                        .sum(),
                    segments,
                    workers: 1,
                    files,
                },
            )
            .await;
        let body = serde_json::to_vec_pretty(&manifest).map_err(BackupError::Serialize)?;
        self.store
            .put_object(&manifest_key, Bytes::from(body), &MANIFEST_META)
            .await?;
        self.record_latest(&layout, &manifest).await;
        info!(job_id = %manifest.job_id, table = %manifest.table, items = manifest.item_count,
              bytes = manifest.bytes, files = manifest.files.len(), segments,
              legs = state.sequence + 1, consumed_rcu = manifest.consumed_read_capacity,
              duration_ms = manifest.duration_ms,
              manifest = %self.store.uri(&manifest_key), "backup complete");
        Ok(LegOutcome::Complete(Box::new(manifest)))
    }

    /// The Object Lock retention every object of a backup started at `started_at` has, from the
    /// bucket's default. Not knowing it never fails a backup: the manifest then says nothing.
    pub(super) async fn retention(&self, job: &BackupJob, started_at: &str) -> Option<Retention> {
        let lock = match self.store.default_retention().await {
            Ok(lock) => lock?,
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "reading the bucket's Object Lock retention failed; the manifest will not record it (s3:GetBucketObjectLockConfiguration)");
                return None;
            }
        };
        let start = chrono::DateTime::parse_from_rfc3339(started_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now());
        Some(Retention {
            mode: lock.mode,
            days: lock.days,
            retain_until: (start + chrono::Duration::days(i64::from(lock.days)))
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        })
    }

    /// The table's previous complete backup here, if one recorded itself. Not knowing it never
    /// fails a backup: the manifest then has nothing to compare with.
    async fn latest(&self, job: &BackupJob, layout: &Layout) -> Option<LatestBackup> {
        match self.store.get(&layout.latest_key()).await {
            Ok(body) => serde_json::from_slice(&body)
                .map_err(|e| warn!(job_id = %job.job_id, error = %e, "the table's latest.json does not parse; nothing to compare with"))
                .ok(),
            Err(StoreError::NotFound { .. }) => None,
            Err(err) => {
                warn!(job_id = %job.job_id, error = %err, "reading the table's latest backup failed; nothing to compare with");
                None
            }
        }
    }

    /// Records `manifest` as the table's latest complete backup, for the next one to compare
    /// with. A failure is logged: the backup itself is complete.
    pub(super) async fn record_latest(&self, layout: &Layout, manifest: &Manifest) {
        let latest = LatestBackup {
            job_id: manifest.job_id.clone(),
            finished_at: manifest.finished_at.clone(),
            item_count: manifest.item_count,
            bytes: manifest.bytes,
            manifest: self.store.uri(&layout.manifest_key()),
        };
        let body = match serde_json::to_vec_pretty(&latest) {
            Ok(body) => body,
            Err(err) => return warn!(error = %err, "latest.json could not be written"),
        };
        if let Err(err) = self
            .store
            .put_object(&layout.latest_key(), Bytes::from(body), &JSON_META)
            .await
        {
            warn!(job_id = %manifest.job_id, error = %err, "recording the table's latest backup failed; the next backup will not compare itself with this one");
        }
    }

    /// The manifest of a complete backup of `job`, with the retention its bucket gives it.
    pub(super) async fn manifest(
        &self,
        job: &BackupJob,
        info: TableInfo,
        layout: &Layout,
        done: Completed,
    ) -> Manifest {
        let retention = self.retention(job, &done.started_at).await;
        let previous = self.latest(job, layout).await;
        let Completed {
            started_at,
            duration_ms,
            consumed_read_capacity,
            segments,
            workers,
            files,
        } = done;
        let finished_at = Utc::now();
        let consistency = self.consistency(job, &info, &started_at, finished_at).await;
        Manifest {
            version: MANIFEST_VERSION,
            job_id: job.job_id.to_string(),
            trigger: job.trigger.name().to_string(),
            table: info.table_name.clone(),
            table_arn: info.table_arn.clone(),
            format: job.format,
            compression: job.compression,
            parquet_compression: (job.format == Format::Parquet).then_some(job.parquet_compression),
            content_type: stored_content_type(job.format, job.compression).to_string(),
            content_encoding: None,
            requested_at: job
                .requested_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            started_at,
            finished_at: finished_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            duration_ms,
            item_count: files.iter().map(|f| f.item_count).sum(),
            consumed_read_capacity,
            segments,
            workers,
            consistent_read: job.consistent_read,
            location: self.store.uri(layout.base()),
            bytes: files.iter().map(|f| f.bytes).sum(),
            uncompressed_bytes: files.iter().map(|f| f.uncompressed_bytes).sum(),
            key_schema: info.key_schema,
            attribute_definitions: info.attribute_definitions,
            provisioned_throughput: match (
                info.billing_mode.as_deref(),
                info.provisioned_read_capacity,
                info.provisioned_write_capacity,
            ) {
                (Some("PROVISIONED"), Some(read), Some(write)) => {
                    Some(crate::model::manifest::Throughput { read, write })
                }
                _ => None,
            },
            billing_mode: info.billing_mode,
            global_secondary_indexes: info.global_secondary_indexes,
            local_secondary_indexes: info.local_secondary_indexes,
            previous,
            retention,
            consistency: Some(consistency),
            files,
            tool: ToolInfo::default(),
        }
    }

    /// Whether the backup will be the table as of one moment: it is when the table's stream
    /// carries new images and this destination holds that stream's captured changes (which a
    /// restore then checks are complete).
    async fn consistency(
        &self,
        job: &BackupJob,
        info: &TableInfo,
        scan_from: &str,
        scan_to: chrono::DateTime<Utc>,
    ) -> Consistency {
        let stream = match &info.stream {
            Some(stream) if stream.has_new_images() => {
                let layout =
                    ChangeLayout::new(job.destination.prefix().as_str(), job.table.as_str());
                let since = chrono::DateTime::parse_from_rfc3339(scan_from)
                    .map(|t| t.timestamp_micros())
                    .unwrap_or(i64::MIN);
                self.captures(&layout, &stream.arn, since)
                    .await
                    .then_some(stream)
            }
            _ => None,
        };
        let whole_second = scan_to
            .duration_trunc(chrono::TimeDelta::seconds(1))
            .unwrap_or(scan_to);
        let as_of = if whole_second < scan_to {
            whole_second + chrono::TimeDelta::seconds(1)
        } else {
            whole_second
        };
        Consistency {
            kind: if stream.is_some() {
                ConsistencyKind::PointInTime
            } else {
                ConsistencyKind::Fuzzy
            },
            scan_from: scan_from.to_string(),
            scan_to: scan_to.to_rfc3339_opts(SecondsFormat::Millis, true),
            consistent_as_of: stream.map(|_| as_of.to_rfc3339_opts(SecondsFormat::Secs, true)),
            stream_arn: stream.map(|s| s.arn.clone()),
        }
    }

    /// Whether `layout` holds a coverage record of `stream_arn` whose first change is before
    /// the scan began: its changes were captured here all through the scan.
    async fn captures(&self, layout: &ChangeLayout, stream_arn: &str, since: i64) -> bool {
        let keys = match self.store.list(&layout.shards_prefix()).await {
            Ok(keys) => keys,
            Err(err) => {
                warn!(error = %err, "the change capture's records could not be listed; the backup is recorded as fuzzy");
                return false;
            }
        };
        for key in keys {
            if let Ok(body) = self.store.get(&key).await {
                if serde_json::from_slice::<ShardCoverage>(&body).is_ok_and(|record| {
                    record.stream_arn == stream_arn && record.first_change_micros <= since
                }) {
                    return true;
                }
            }
        }
        false
    }
}

/// What a complete backup adds to the job and the table: the numbers of its manifest.
pub(super) struct Completed {
    pub(super) started_at: String,
    pub(super) duration_ms: u64,
    pub(super) consumed_read_capacity: f64,
    pub(super) segments: u32,
    pub(super) workers: u32,
    pub(super) files: Vec<FileEntry>,
}

/// The job's read budget in RCU/s: the absolute figure, a percentage of the table's provisioned
/// read capacity, or the smaller of both. A percentage of an on-demand table (which reports no
/// read capacity) is an error unless an absolute figure is given too.
pub(super) fn read_budget(job: &BackupJob, info: &TableInfo) -> Result<Option<f64>, BudgetError> {
    let provisioned = info
        .provisioned_read_capacity
        .filter(|rcu| *rcu > 0 && info.billing_mode.as_deref() != Some("PAY_PER_REQUEST"));
    let from_percent = match (job.read_budget_percent, provisioned) {
        (None, _) => None,
        (Some(pct), Some(rcu)) => Some(rcu as f64 * pct.get() / 100.0),
        (Some(_), None) if job.read_budget.is_some() => None,
        (Some(pct), None) => {
            return Err(BudgetError::PercentOfOnDemand {
                table: job.table.to_string(),
                percent: pct.get(),
            })
        }
    };
    Ok(match (job.read_budget.map(|b| b.get()), from_percent) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Metadata of the JSON documents jobs coordinate with (checkpoints, fan-out plans and results,
/// `latest.json`): not part of the backup, so never locked.
pub(crate) const JSON_META: ObjectMeta = ObjectMeta {
    content_type: "application/json",
    content_encoding: None,
    records: None,
    retained: false,
};

/// Metadata of a backup's manifest: part of the backup, locked with its data files.
pub(crate) const MANIFEST_META: ObjectMeta = ObjectMeta {
    retained: true,
    ..JSON_META
};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod estimate_tests {
    use super::Estimate;
    use std::time::Duration;

    #[test]
    fn an_estimate_needs_a_count_and_a_start_and_never_says_done_before_the_end() {
        assert_eq!(Estimate::new(0, 1000, Duration::from_secs(5)), None);
        assert_eq!(Estimate::new(10, 0, Duration::from_secs(5)), None);
        let quarter = Estimate::new(250, 1000, Duration::from_secs(10)).unwrap();
        assert_eq!(quarter.fraction, 0.25);
        assert_eq!(quarter.seconds_left, Some(30));
        // More items than the stale count: almost done, not done.
        let over = Estimate::new(1200, 1000, Duration::from_secs(10)).unwrap();
        assert_eq!(over.fraction, 0.99);
        assert_eq!(over.seconds_left, Some(0));
    }
}

//! The backup, top to bottom: describe the table, then for every segment scan → encode → compress
//! → upload, rolling files at a size target; finally the manifest, written last. Everything is
//! bounded: a segment holds at most `page_queue` pages and one part, and parts in flight are
//! limited across the job, so memory does not grow with the table.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::budget::ReadBudget;
use crate::checkpoint::{
    key_from_json, key_to_json, Checkpoint, SegmentCheckpoint, CHECKPOINT_VERSION,
};
use crate::encode::{EncodeError, EncodeOptions, Item};
use crate::file::EncodingFile;
use crate::format::{Compression, Format};
use crate::job::BackupJob;
use crate::manifest::{FileEntry, Layout, Manifest, ToolInfo, MANIFEST_VERSION};
use crate::scan::{
    auto_segments, scan_segment, PageItems, PageRequest, ScanError, SegmentScan, TableSource,
};
use crate::store::{
    ObjectMeta, ObjectStore, ObjectUploader, OpenUploads, StoreError, UploadLimits,
};

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

/// The step of the pipeline where a job failed, for logs and the failure email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the table.
    Scan,
    /// Encoding or compressing items.
    Encode,
    /// Writing files to the destination.
    Upload,
    /// Writing the manifest.
    Manifest,
}

impl Stage {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Scan => "scan",
            Stage::Encode => "encode",
            Stage::Upload => "upload",
            Stage::Manifest => "manifest",
        }
    }
}

/// Why a backup failed. No manifest was written and no multipart upload was left open.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading the table failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// An item could not be encoded.
    #[error("segment {segment}: {source}")]
    Encode {
        /// The segment.
        segment: u32,
        /// What failed.
        source: EncodeError,
    },
    /// Writing to the destination failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read budget cannot apply to this table.
    #[error("read budget: {0}")]
    Budget(String),
    /// A checkpoint could not be written or read back.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The job already completed: its manifest exists and is never overwritten.
    #[error("backup {job_id} is already complete: {manifest}")]
    AlreadyComplete {
        /// The job.
        job_id: String,
        /// Where its manifest is.
        manifest: String,
    },
    /// The manifest could not be written.
    #[error("writing the manifest failed: {0}")]
    Manifest(String),
    /// A task panicked or was cancelled (a bug, reported instead of hanging).
    #[error("internal error: {0}")]
    Internal(String),
    /// This segment stopped because another one failed (never the job's reported cause).
    #[error("stopped because another segment failed")]
    Cancelled,
}

impl BackupError {
    /// The pipeline step that failed.
    pub fn stage(&self) -> Stage {
        match self {
            BackupError::Scan(_) | BackupError::Budget(_) => Stage::Scan,
            BackupError::Encode { .. } | BackupError::Internal(_) | BackupError::Cancelled => {
                Stage::Encode
            }
            BackupError::Store(_) => Stage::Upload,
            BackupError::AlreadyComplete { .. }
            | BackupError::Manifest(_)
            | BackupError::Checkpoint(_) => Stage::Manifest,
        }
    }
}

/// How a leg of a backup ended.
#[derive(Debug)]
pub enum LegOutcome {
    /// The backup is complete; its manifest is stored.
    Complete(Box<Manifest>),
    /// The deadline came first; the checkpoint is stored and the job continues from it.
    Suspended(Checkpoint),
}

/// A backup run: a table source, an object store and the tuning to use.
pub struct Backup {
    source: Arc<dyn TableSource>,
    store: Arc<dyn ObjectStore>,
    tuning: Tuning,
    progress: Arc<Progress>,
}

/// What every segment task shares.
struct SegmentContext {
    source: Arc<dyn TableSource>,
    store: Arc<dyn ObjectStore>,
    table: String,
    job_id: String,
    total_segments: u32,
    consistent_read: bool,
    format: Format,
    compression: Compression,
    encode: EncodeOptions,
    meta: ObjectMeta,
    layout: Layout,
    limits: UploadLimits,
    open_uploads: OpenUploads,
    tuning: Tuning,
    progress: Arc<Progress>,
    /// When the scan should stop and leave the rest to the next leg.
    deadline: Option<Instant>,
    /// The job's read budget, shared by every segment.
    budget: Option<Arc<ReadBudget>>,
}

/// The key attributes, partition key first: the first columns of CSV and Parquet files.
fn key_attributes(key_schema: &[crate::scan::KeyElement]) -> Vec<String> {
    let mut keys: Vec<_> = key_schema.iter().collect();
    keys.sort_by_key(|k| k.key_type != "HASH");
    keys.into_iter().map(|k| k.attribute_name.clone()).collect()
}

/// What one segment produced in this leg.
struct SegmentResult {
    segment: u32,
    scan: SegmentScan,
    files: Vec<FileEntry>,
    next_file: u32,
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
        match self.run_leg(job, None, None).await? {
            LegOutcome::Complete(manifest) => Ok(*manifest),
            LegOutcome::Suspended(_) => Err(BackupError::Internal(
                "a backup without a deadline was suspended".to_string(),
            )),
        }
    }

    /// Runs one leg of `job`: from `resume` (or the start) until the table is read, or until
    /// `deadline` passes. At the deadline every segment stops at a page boundary, closes its file,
    /// and the leg stores the next checkpoint and returns it; the caller continues the job later
    /// from there. On failure nothing is left that looks complete: no manifest, no open upload.
    pub async fn run_leg(
        &self,
        job: &BackupJob,
        resume: Option<Checkpoint>,
        deadline: Option<Instant>,
    ) -> Result<LegOutcome, BackupError> {
        let started_at = Utc::now();
        let clock = Instant::now();
        let layout = Layout::new(job);
        let info = self.source.describe(job.table.as_str()).await?;
        let segments = match &resume {
            Some(checkpoint) => checkpoint.total_segments,
            None => job
                .segments
                .map(|n| n.get())
                .unwrap_or_else(|| auto_segments(&info, self.tuning.max_auto_segments)),
        };
        self.progress
            .segments_total
            .store(segments, Ordering::Relaxed);
        self.progress.estimated_items.store(
            info.item_count.unwrap_or(0).max(0) as u64,
            Ordering::Relaxed,
        );
        self.store.preflight().await?;
        let manifest_key = layout.manifest_key();
        if self.store.exists(&manifest_key).await? {
            return Err(BackupError::AlreadyComplete {
                job_id: job.job_id.to_string(),
                manifest: self.store.uri(&manifest_key),
            });
        }
        // An earlier attempt of this job that was killed (a Lambda timeout, a crash) could not
        // abort its uploads; only one attempt of a job runs at a time, so they are leftovers.
        match self.store.abort_uploads_under(layout.base()).await {
            Ok(0) => {}
            Ok(stale) => {
                warn!(job_id = %job.job_id, uploads = stale, "aborted multipart uploads left by an earlier attempt")
            }
            // Not worth failing a backup over: the bucket's lifecycle rule aborts them later.
            Err(err @ StoreError::AccessDenied { .. }) => {
                warn!(job_id = %job.job_id, error = %err, "cannot list leftover multipart uploads (s3:ListBucketMultipartUploads); the lifecycle rule will abort them")
            }
            Err(err) => return Err(err.into()),
        }
        let prior = match resume {
            Some(checkpoint) => checkpoint,
            None => Checkpoint {
                version: CHECKPOINT_VERSION,
                job_id: job.job_id.to_string(),
                sequence: 0,
                total_segments: segments,
                started_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
                elapsed_ms: 0,
                segments: (0..segments)
                    .map(|segment| SegmentCheckpoint {
                        segment,
                        // Not done, and no key yet: start at the segment's beginning. Every
                        // segment of a leg runs, so a stored checkpoint never holds this.
                        resume_key: Some(serde_json::Value::Null),
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
            let start_key = match &state.resume_key {
                Some(serde_json::Value::Null) | None => None,
                Some(key) => Some(key_from_json(key).map_err(|e| {
                    BackupError::Checkpoint(format!("segment {}: {e}", state.segment))
                })?),
            };
            starts.push(SegmentStart {
                segment: state.segment,
                start_key,
                next_file: state.next_file,
            });
        }
        let budget = read_budget(job, &info)?;
        info!(job_id = %job.job_id, table = %job.table, segments, format = %job.format,
              compression = %job.compression, destination = %self.store.uri(layout.base()),
              leg = prior.sequence + 1, segments_left = starts.len(),
              read_budget_rcu = budget.unwrap_or(0.0), "backup started");

        let ctx = Arc::new(SegmentContext {
            source: self.source.clone(),
            store: self.store.clone(),
            table: job.table.to_string(),
            job_id: job.job_id.to_string(),
            total_segments: segments,
            consistent_read: job.consistent_read,
            format: job.format,
            compression: job.compression,
            encode: EncodeOptions {
                key_attributes: key_attributes(&info.key_schema),
                parquet_compression: job.parquet_compression,
            },
            meta: ObjectMeta {
                content_type: job.format.content_type(),
                content_encoding: job.compression.content_encoding(),
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
            budget: budget.map(|rcu| Arc::new(ReadBudget::new(rcu))),
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
            let segment = &mut state.segments[result.segment as usize];
            segment.resume_key = match &result.scan.resume_key {
                Some(key) => {
                    Some(key_to_json(key).map_err(|e| BackupError::Checkpoint(e.to_string()))?)
                }
                None => None,
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
            let body =
                serde_json::to_vec(&state).map_err(|e| BackupError::Checkpoint(e.to_string()))?;
            let key = layout.checkpoint_key(state.sequence);
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
        let finished_at = Utc::now();
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            job_id: job.job_id.to_string(),
            trigger: job.trigger.name().to_string(),
            table: info.table_name.clone(),
            table_arn: info.table_arn.clone(),
            format: job.format,
            compression: job.compression,
            parquet_compression: (job.format == Format::Parquet).then_some(job.parquet_compression),
            content_type: job.format.content_type().to_string(),
            content_encoding: job.compression.content_encoding().map(str::to_string),
            requested_at: job
                .requested_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            started_at: state.started_at.clone(),
            finished_at: finished_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            duration_ms: state.elapsed_ms,
            item_count: files.iter().map(|f| f.item_count).sum(),
            consumed_read_capacity: state.segments.iter().map(|s| s.consumed_capacity).sum(),
            segments,
            consistent_read: job.consistent_read,
            location: self.store.uri(layout.base()),
            bytes: files.iter().map(|f| f.bytes).sum(),
            uncompressed_bytes: files.iter().map(|f| f.uncompressed_bytes).sum(),
            key_schema: info.key_schema,
            attribute_definitions: info.attribute_definitions,
            billing_mode: info.billing_mode,
            global_secondary_indexes: info.global_secondary_indexes,
            local_secondary_indexes: info.local_secondary_indexes,
            files,
            tool: ToolInfo::default(),
        };
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| BackupError::Manifest(e.to_string()))?;
        self.store
            .put_object(&manifest_key, Bytes::from(body), &JSON_META)
            .await?;
        info!(job_id = %manifest.job_id, table = %manifest.table, items = manifest.item_count,
              bytes = manifest.bytes, files = manifest.files.len(), segments,
              legs = state.sequence + 1, consumed_rcu = manifest.consumed_read_capacity,
              duration_ms = manifest.duration_ms,
              manifest = %self.store.uri(&manifest_key), "backup complete");
        Ok(LegOutcome::Complete(Box::new(manifest)))
    }
}

/// The job's read budget in RCU/s: the absolute figure, a percentage of the table's provisioned
/// read capacity, or the smaller of both. A percentage of an on-demand table (which reports no
/// read capacity) is an error unless an absolute figure is given too.
fn read_budget(job: &BackupJob, info: &crate::scan::TableInfo) -> Result<Option<f64>, BackupError> {
    let provisioned = info
        .provisioned_read_capacity
        .filter(|rcu| *rcu > 0 && info.billing_mode.as_deref() != Some("PAY_PER_REQUEST"));
    let from_percent = match (job.read_budget_percent, provisioned) {
        (None, _) => None,
        (Some(pct), Some(rcu)) => Some(rcu as f64 * pct.get() / 100.0),
        (Some(_), None) if job.read_budget.is_some() => None,
        (Some(pct), None) => {
            return Err(BackupError::Budget(format!(
                "table `{}` is on-demand (no provisioned read capacity), so {}% of it is no limit; give read_budget in RCU/s instead",
                job.table,
                pct.get()
            )))
        }
    };
    Ok(match (job.read_budget.map(|b| b.get()), from_percent) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

/// Metadata of the JSON documents the pipeline writes (manifest, checkpoints).
const JSON_META: ObjectMeta = ObjectMeta {
    content_type: "application/json",
    content_encoding: None,
};

/// Where a segment starts in this leg.
struct SegmentStart {
    segment: u32,
    start_key: Option<Item>,
    next_file: u32,
}

/// Runs every segment, at most `max_concurrent_segments` at once. The first failure asks the
/// others to stop; they finish the request in flight (so every multipart upload S3 created is
/// known) and abort their own uploads before this returns.
async fn run_segments(
    ctx: &Arc<SegmentContext>,
    starts: Vec<SegmentStart>,
) -> Result<Vec<SegmentResult>, BackupError> {
    let permits = Arc::new(Semaphore::new(ctx.tuning.max_concurrent_segments.max(1)));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let count = starts.len();
    for start in starts {
        let ctx = ctx.clone();
        let permits = permits.clone();
        let stopped = stopped.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| BackupError::Internal(e.to_string()))?;
            run_segment(ctx, start, stopped).await
        });
    }
    let mut results = Vec::with_capacity(count);
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined
            .map_err(|e| BackupError::Internal(format!("segment task: {e}")))
            .and_then(|r| r);
        match result {
            Ok(r) => results.push(r),
            Err(err) => {
                let _ = stop.send(true);
                if first_error.is_none() && !matches!(err, BackupError::Cancelled) {
                    first_error = Some(err);
                }
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(results),
    }
}

async fn run_segment(
    ctx: Arc<SegmentContext>,
    start: SegmentStart,
    mut stopped: watch::Receiver<bool>,
) -> Result<SegmentResult, BackupError> {
    let segment = start.segment;
    let (pages_tx, mut pages) = mpsc::channel::<PageItems>(ctx.tuning.page_queue.max(1));
    let mut scan = JoinSet::new();
    let source = ctx.source.clone();
    let request = PageRequest {
        table: ctx.table.clone(),
        segment,
        total_segments: ctx.total_segments,
        exclusive_start_key: start.start_key,
        consistent_read: ctx.consistent_read,
        limit: None,
        wire_items: ctx.format.takes_wire_items(),
    };
    let deadline = ctx.deadline;
    let budget = ctx.budget.clone();
    scan.spawn(async move {
        scan_segment(
            source.as_ref(),
            request,
            pages_tx,
            deadline,
            budget.as_deref(),
        )
        .await
    });

    let mut output = SegmentOutput::new(ctx.clone(), segment, start.next_file)?;
    let result: Result<SegmentResult, BackupError> = async {
        loop {
            let items = tokio::select! {
                items = pages.recv() => items,
                _ = stopped.wait_for(|stop| *stop) => return Err(BackupError::Cancelled),
            };
            match items {
                Some(items) => output.write_page(items).await?,
                None => break,
            }
        }
        let scan_stats = scan
            .join_next()
            .await
            .ok_or_else(|| BackupError::Internal("scan task vanished".to_string()))?
            .map_err(|e| BackupError::Internal(format!("scan task: {e}")))??;
        let files = output.finish().await?;
        Ok(SegmentResult {
            segment,
            scan: scan_stats,
            files,
            next_file: output.next_file,
        })
    }
    .await;
    if result.as_ref().is_ok_and(|r| r.scan.throttled) {
        ctx.progress
            .throttled_segments
            .fetch_add(1, Ordering::Relaxed);
    }
    match &result {
        Ok(r) if r.scan.resume_key.is_some() => {
            info!(job_id = %ctx.job_id, segment, items = r.scan.items, pages = r.scan.pages,
                  files = r.files.len(), bytes = r.files.iter().map(|f| f.bytes).sum::<u64>(),
                  consumed_rcu = r.scan.consumed_capacity, "segment paused at the deadline");
        }
        Ok(r) => {
            ctx.progress.segments_done.fetch_add(1, Ordering::Relaxed);
            info!(job_id = %ctx.job_id, segment, items = r.scan.items, pages = r.scan.pages,
                  files = r.files.len(), bytes = r.files.iter().map(|f| f.bytes).sum::<u64>(),
                  consumed_rcu = r.scan.consumed_capacity, "segment done");
        }
        Err(_) => output.abort().await,
    }
    result
}

/// A segment's output: the open file (encoding on a blocking thread, uploading as parts fill)
/// and the files already completed.
struct SegmentOutput {
    ctx: Arc<SegmentContext>,
    segment: u32,
    next_file: u32,
    open: Option<OpenFile>,
    files: Vec<FileEntry>,
    encoder: EncoderThread,
}

/// The segment's own thread for the CPU work of encoding and compressing. Keeping a file's
/// encoder on one thread keeps its allocations there: `spawn_blocking` would hand each page to
/// whichever pool thread is free, and the allocator would then hold a copy of the encoder's
/// working set (Parquet's column buffers, compressor windows) for every thread it visited.
/// Dropping it closes the queue, which ends the thread once its current job is done.
struct EncoderThread {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl EncoderThread {
    fn new(segment: u32) -> Result<Self, BackupError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name(format!("encode-{segment}"))
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .map_err(|e| BackupError::Internal(format!("cannot start an encoder thread: {e}")))?;
        Ok(EncoderThread { jobs })
    }

    /// Runs `work` on the thread and waits for it without blocking the runtime.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BackupError> {
        let gone = || BackupError::Internal("encoder thread stopped".to_string());
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())
    }
}

struct OpenFile {
    key: String,
    /// `None` only while the file is on the blocking thread.
    encoding: Option<Box<EncodingFile>>,
    upload: ObjectUploader,
}

impl SegmentOutput {
    fn new(ctx: Arc<SegmentContext>, segment: u32, next_file: u32) -> Result<Self, BackupError> {
        Ok(SegmentOutput {
            ctx,
            segment,
            next_file,
            open: None,
            files: Vec::new(),
            encoder: EncoderThread::new(segment)?,
        })
    }

    fn encode_error(&self, source: EncodeError) -> BackupError {
        BackupError::Encode {
            segment: self.segment,
            source,
        }
    }

    async fn write_page(&mut self, items: PageItems) -> Result<(), BackupError> {
        if self.open.is_none() {
            let key = self.ctx.layout.data_key(self.segment, self.next_file);
            self.next_file += 1;
            let upload = ObjectUploader::new(
                self.ctx.store.clone(),
                key.clone(),
                self.ctx.meta.clone(),
                self.ctx.limits.clone(),
                self.ctx.open_uploads.clone(),
            );
            let encoding = EncodingFile::new(
                self.ctx.format,
                self.ctx.compression,
                &self.ctx.encode,
                upload.next_part_size(),
            )
            .map_err(|e| self.encode_error(e.into()))?;
            self.open = Some(OpenFile {
                key,
                encoding: Some(Box::new(encoding)),
                upload,
            });
        }
        let Some(file) = self.open.as_mut() else {
            return Err(BackupError::Internal("no open file".to_string()));
        };
        let Some(mut encoding) = file.encoding.take() else {
            return Err(BackupError::Internal("file is still encoding".to_string()));
        };
        let count = items.len() as u64;
        let before = encoding.stored_bytes();
        let mut encoding = self
            .encoder
            .run(move || encoding.encode(&items).map(|()| encoding))
            .await?
            .map_err(|e| BackupError::Encode {
                segment: self.segment,
                source: e,
            })?;
        let stored = encoding.stored_bytes();
        self.ctx.progress.items.fetch_add(count, Ordering::Relaxed);
        self.ctx
            .progress
            .bytes
            .fetch_add(stored - before, Ordering::Relaxed);
        let segment = self.segment;
        while let Some(part) = encoding
            .take_part(
                file.upload.next_part_size(),
                file.upload.part_size_after_next(),
            )
            .map_err(|e| BackupError::Encode {
                segment,
                source: e.into(),
            })?
        {
            file.upload.send_part(part).await?;
        }
        file.encoding = Some(encoding);
        if stored >= self.ctx.tuning.file_size_target {
            self.close_file().await?;
        }
        Ok(())
    }

    async fn close_file(&mut self) -> Result<(), BackupError> {
        let Some(mut file) = self.open.take() else {
            return Ok(());
        };
        let Some(encoding) = file.encoding.take() else {
            file.upload.abort().await;
            return Err(BackupError::Internal("file is still encoding".to_string()));
        };
        let finished = match self.encoder.run(move || encoding.finish()).await {
            Ok(Ok(finished)) => finished,
            Ok(Err(e)) => {
                file.upload.abort().await;
                return Err(self.encode_error(e));
            }
            Err(e) => {
                file.upload.abort().await;
                return Err(e);
            }
        };
        file.upload.finish(finished.rest).await?;
        self.files.push(FileEntry {
            key: file.key,
            segment: self.segment,
            item_count: finished.items,
            bytes: finished.bytes,
            uncompressed_bytes: finished.uncompressed_bytes,
            sha256: finished.sha256,
            columns: finished.columns,
        });
        Ok(())
    }

    async fn finish(&mut self) -> Result<Vec<FileEntry>, BackupError> {
        self.close_file().await?;
        Ok(std::mem::take(&mut self.files))
    }

    async fn abort(&mut self) {
        if let Some(mut file) = self.open.take() {
            file.upload.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::decompressing_reader;
    use crate::decode::decode_dynamodb_json_line;
    use crate::encode::test_items::every_type;
    use crate::manifest::MANIFEST_FILE;
    use crate::scan::MemorySource;
    use crate::store::{LocalStore, MemoryStore};
    use crate::test_support::{directory_job, numbered_items, sorted_by_id};
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::io::BufRead;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn local_directory_backup_uses_multipart_and_leaves_only_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let source = Arc::new(MemorySource::new("tbl", "id", numbered_items(8000), 500));
        let store = Arc::new(LocalStore::new(dir.path()));
        let tuning = Tuning {
            part_size: 1024 * 1024,
            ..Tuning::default()
        };
        let backup = Backup::new(source, store, tuning);
        let manifest = backup
            .run(&directory_job(r#","compression":"none","segments":2"#))
            .await
            .unwrap();
        assert_eq!(manifest.item_count, 8000);
        assert_eq!(manifest.files.len(), 2);
        // Each segment's file is over the local store's 1 MiB part size: several parts each.
        assert!(
            manifest.files.iter().all(|f| f.bytes > 2 * 1024 * 1024),
            "{:?}",
            manifest.files
        );
        let mut seen = 0;
        for file in &manifest.files {
            let bytes = std::fs::read(dir.path().join(&file.key)).unwrap();
            assert_eq!(bytes.len() as u64, file.bytes);
            let reader = decompressing_reader(manifest.compression, &bytes[..]).unwrap();
            for line in std::io::BufReader::new(reader).lines() {
                let item = decode_dynamodb_json_line(&line.unwrap()).unwrap();
                assert_eq!(item["bin"], every_type()["bin"]);
                seen += 1;
            }
        }
        assert_eq!(seen, 8000);
        assert!(
            !dir.path().join(".uploads").exists(),
            "part files left behind"
        );
        let progress = backup.progress();
        assert_eq!(progress.items.load(Ordering::Relaxed), 8000);
        assert_eq!(progress.segments_done.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_item_that_cannot_be_encoded_fails_the_job_without_manifest_or_open_upload() {
        let mut all = numbered_items(3000);
        all[2500].insert("broken".into(), AttributeValue::N("not-a-number".into()));
        // CSV encodes from SDK items, so the encoder checks every number.
        let store = MemoryStore::new();
        let backup = Backup::new(
            Arc::new(MemorySource::new("tbl", "id", all, 500)),
            Arc::new(store.clone()),
            Tuning::default(),
        );
        let err = backup
            .run(&directory_job(
                r#","format":"csv","compression":"none","segments":1"#,
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::Encode { .. }), "{err}");
        assert_eq!(err.stage(), Stage::Encode);
        assert!(err.to_string().contains("broken"), "{err}");
        assert_eq!(store.open_uploads(), 0, "multipart upload left open");
        assert!(store.keys().is_empty(), "files stored: {:?}", store.keys());
    }

    #[tokio::test]
    async fn objects_carry_the_content_metadata_of_format_and_compression() {
        let store = MemoryStore::new();
        let backup = Backup::new(
            Arc::new(MemorySource::new("tbl", "id", numbered_items(10), 500)),
            Arc::new(store.clone()),
            Tuning::default(),
        );
        let manifest = backup
            .run(&directory_job(
                r#","format":"json","compression":"zstd","segments":1"#,
            ))
            .await
            .unwrap();
        let meta = store.meta(&manifest.files[0].key).unwrap();
        assert_eq!(meta.content_type, "application/x-ndjson");
        assert_eq!(meta.content_encoding, Some("zstd"));
        assert!(manifest.files[0].key.ends_with(".jsonl.zst"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_split_into_legs_at_deadlines_covers_every_item_exactly_once() {
        let items = numbered_items(1000);
        let store = MemoryStore::new();
        let backup = Backup::new(
            Arc::new(MemorySource::new("tbl", "id", items.clone(), 100)),
            Arc::new(store.clone()),
            Tuning::default(),
        );
        let job = directory_job(r#","compression":"zstd","segments":3"#);
        let layout = Layout::new(&job);
        let mut resume = None;
        let mut legs = 0;
        let manifest = loop {
            legs += 1;
            // A deadline already past: each leg reads one page per segment, then stops.
            match backup
                .run_leg(&job, resume.take(), Some(Instant::now()))
                .await
                .unwrap()
            {
                LegOutcome::Complete(manifest) => break manifest,
                LegOutcome::Suspended(checkpoint) => {
                    assert_eq!(checkpoint.sequence, legs);
                    let stored = store.get(&layout.checkpoint_key(legs)).await.unwrap();
                    let reread = Checkpoint::from_json(&stored, job.job_id.as_str()).unwrap();
                    assert_eq!(reread, checkpoint);
                    assert!(
                        !store.keys().iter().any(|k| k.ends_with(MANIFEST_FILE)),
                        "manifest before the last leg"
                    );
                    resume = Some(reread);
                }
            }
        };
        // 333 or 334 items per segment at 100 per page: 4 pages, so 4 legs of one file each.
        assert_eq!(legs, 4);
        assert_eq!(manifest.item_count, 1000);
        assert_eq!(manifest.segments, 3);
        let keys: std::collections::BTreeSet<_> =
            manifest.files.iter().map(|f| f.key.clone()).collect();
        assert_eq!(keys.len(), manifest.files.len(), "a file listed twice");
        assert_eq!(manifest.files.len(), 12, "{keys:?}");
        let mut seen = Vec::new();
        for file in &manifest.files {
            let bytes = store.get(&file.key).await.unwrap();
            let reader = decompressing_reader(manifest.compression, &bytes[..]).unwrap();
            for line in std::io::BufReader::new(reader).lines() {
                seen.push(decode_dynamodb_json_line(&line.unwrap()).unwrap());
            }
        }
        assert_eq!(sorted_by_id(seen), sorted_by_id(items));
        assert_eq!(store.open_uploads(), 0);
        let err = backup.run_leg(&job, None, None).await.unwrap_err();
        assert!(matches!(err, BackupError::AlreadyComplete { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_percentage_budget_on_an_on_demand_table_is_refused_unless_an_absolute_one_is_given()
    {
        let store = MemoryStore::new();
        let backup = Backup::new(
            Arc::new(MemorySource::new("tbl", "id", numbered_items(10), 5)),
            Arc::new(store.clone()),
            Tuning::default(),
        );
        let err = backup
            .run(&directory_job(r#","read_budget_percent":25"#))
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::Budget(_)), "{err}");
        assert!(err.to_string().contains("on-demand"), "{err}");
        assert!(store.keys().is_empty());
        let manifest = backup
            .run(&directory_job(
                r#","read_budget_percent":25,"read_budget":1000"#,
            ))
            .await
            .unwrap();
        assert_eq!(manifest.item_count, 10);
    }
}

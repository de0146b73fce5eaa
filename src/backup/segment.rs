//! One segment of a leg: its scan feeds an encoder thread, which fills upload parts, which go to
//! the store while encoding goes on; files roll at the size target. The first segment to fail
//! stops the others, and every upload a failed segment opened is aborted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::info;

use super::error::{BackupError, Internal};
use super::file::EncodingFile;
use super::pipeline::{Progress, Tuning};
use crate::codec::encode::{EncodeError, EncodeOptions};
use crate::model::format::{Compression, Format};
use crate::model::manifest::{FileEntry, Layout};
use crate::model::Item;
use crate::source::budget::ReadBudget;
use crate::source::{scan_segment, PageItems, PageRequest, SegmentEnd, SegmentScan, TableSource};
use crate::store::{ObjectMeta, ObjectStore, ObjectUploader, OpenUploads, UploadLimits};

/// What every segment task shares.
pub(super) struct SegmentContext {
    pub(super) source: Arc<dyn TableSource>,
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) table: String,
    pub(super) job_id: String,
    pub(super) total_segments: u32,
    /// The worker writing these segments (0 unless the job fanned out).
    pub(super) worker: u32,
    pub(super) consistent_read: bool,
    pub(super) format: Format,
    pub(super) compression: Compression,
    pub(super) encode: EncodeOptions,
    pub(super) meta: ObjectMeta,
    pub(super) layout: Layout,
    pub(super) limits: UploadLimits,
    pub(super) open_uploads: OpenUploads,
    pub(super) tuning: Tuning,
    pub(super) progress: Arc<Progress>,
    /// When the scan should stop and leave the rest to the next leg.
    pub(super) deadline: Option<Instant>,
    /// The worker's read budget, shared by every segment: a ceiling, or none until the table
    /// throttles.
    pub(super) budget: Arc<ReadBudget>,
    /// Turns true when the job failed in another worker: every segment stops.
    pub(super) halt: Option<watch::Receiver<bool>>,
}

/// The key attributes, partition key first: the first columns of CSV and Parquet files.
pub(super) fn key_attributes(key_schema: &[crate::source::KeyElement]) -> Vec<String> {
    let mut keys: Vec<_> = key_schema.iter().collect();
    keys.sort_by_key(|k| k.key_type != "HASH");
    keys.into_iter().map(|k| k.attribute_name.clone()).collect()
}

/// What one segment produced in this leg.
pub(super) struct SegmentResult {
    pub(super) segment: u32,
    pub(super) scan: SegmentScan,
    pub(super) files: Vec<FileEntry>,
    pub(super) next_file: u32,
}

/// Where a segment starts in this leg.
pub(super) struct SegmentStart {
    pub(super) segment: u32,
    pub(super) start_key: Option<Item>,
    pub(super) next_file: u32,
}

/// Runs every segment, at most `max_concurrent_segments` at once. The first failure asks the
/// others to stop; they finish the request in flight (so every multipart upload S3 created is
/// known) and abort their own uploads before this returns.
pub(super) async fn run_segments(
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
                .map_err(|_| Internal::Vanished("segment permit"))?;
            run_segment(ctx, start, stopped).await
        });
    }
    let mut results = Vec::with_capacity(count);
    let mut first_error = None;
    let mut halt = ctx.halt.clone();
    let mut halted = false;
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(joined) => joined,
                None => break,
            },
            () = halted_elsewhere(&mut halt), if !halted => {
                halted = true;
                let _ = stop.send(true);
                continue;
            }
        };
        let result = joined
            .map_err(|source| {
                BackupError::from(Internal::Task {
                    task: "segment",
                    source,
                })
            })
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
        None if halted => Err(BackupError::Halted {
            failure: ctx.store.uri(&ctx.layout.failure_key()),
        }),
        None => Ok(results),
    }
}

/// Resolves once the job's halt signal turns true; never, without one (or once its sender is
/// gone: nobody can halt the job any more).
async fn halted_elsewhere(halt: &mut Option<watch::Receiver<bool>>) {
    if let Some(halt) = halt {
        if halt.wait_for(|h| *h).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
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
            budget.as_ref(),
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
            .ok_or(Internal::Vanished("scan"))?
            .map_err(|source| Internal::Task {
                task: "scan",
                source,
            })??;
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
        Ok(r) if matches!(r.scan.end, SegmentEnd::Paused { .. }) => {
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
            .map_err(Internal::EncoderThread)?;
        Ok(EncoderThread { jobs })
    }

    /// Runs `work` on the thread and waits for it without blocking the runtime.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, BackupError> {
        let gone = || BackupError::from(Internal::EncoderStopped);
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
            return Err(Internal::NoOpenFile.into());
        };
        let Some(mut encoding) = file.encoding.take() else {
            return Err(Internal::FileBusy.into());
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
            return Err(Internal::FileBusy.into());
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
            worker: self.ctx.worker,
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

//! Restore: the files of a backup, streamed and decoded, written back into a table in parallel
//! `BatchWriteItem` calls. Unprocessed items are resubmitted with exponential backoff and full
//! jitter; an optional write budget (WCU per second) keeps a restore into a live table from
//! starving it, and once the table throttles, writes are paced at what it accepts. Writing the same backup twice gives the same table: every write is a full put.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tracing::info;

use crate::model::format::Format;
use crate::model::job::TableName;
use crate::model::manifest::Manifest;
use crate::model::Item;
use crate::readback::point_in_time::Overlay;
use crate::readback::records::read_items;
use crate::readback::table_writer::{TableSpec, TableWriter, WriteError};
use crate::store::{ObjectStore, StoreError};

/// DynamoDB's largest batch.
const BATCH_ITEMS: usize = 25;
/// Attempts for one batch's unprocessed items before the restore gives up.
const MAX_ATTEMPTS: u32 = 12;
/// First and largest backoff between attempts.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Table to write into.
    pub table: TableName,
    /// Create it (on-demand, with the backup's keys and indexes) instead of requiring it.
    pub create_table: bool,
    /// Write capacity units per second at most, across all writers.
    pub write_budget: Option<f64>,
    /// Batches in flight.
    pub concurrency: usize,
    /// Accept a lossy source (plain JSON) with the documented conversion rules.
    pub allow_lossy: bool,
    /// Captured changes to apply over the backup: the table as of a later moment.
    pub overlay: Option<Arc<Overlay>>,
    /// Where an earlier run of the same restore stopped: its files and records before this
    /// point are written already and are skipped.
    pub resume: Option<Position>,
    /// Stop reading at this instant and report where to resume (a Lambda's deadline).
    pub stop_at: Option<tokio::time::Instant>,
}

pub use crate::model::restore_job::Position;

/// Live counters.
#[derive(Debug, Default)]
pub struct RestoreProgress {
    /// Items written.
    pub items: AtomicU64,
    /// Items the backup holds.
    pub total: AtomicU64,
    /// Where every earlier record is written: what to save, to resume from after a crash.
    pub written_to: std::sync::Mutex<Position>,
}

impl RestoreProgress {
    /// Where every earlier record is written.
    pub fn position(&self) -> Position {
        *self.written_to.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The batches sent and not yet written, in the order they were read: the position moves past
/// a batch only when it and every batch before it are written.
struct Watermark {
    pending: std::collections::VecDeque<(u64, Position, bool)>,
    next: u64,
    progress: Arc<RestoreProgress>,
}

impl Watermark {
    /// Registers the next batch, which ends at `end`; returns its number.
    fn sent(&mut self, end: Position) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.pending.push_back((seq, end, false));
        seq
    }

    /// Marks batch `seq` written and moves the position past every written batch in front.
    fn written(&mut self, seq: u64) {
        if let Some(front) = self.pending.front().map(|p| p.0) {
            if let Some(entry) = self.pending.get_mut((seq - front) as usize) {
                entry.2 = true;
            }
        }
        while let Some(&(_, end, true)) = self.pending.front() {
            self.pending.pop_front();
            *self
                .progress
                .written_to
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = end;
        }
    }
}

type SharedWatermark = Arc<std::sync::Mutex<Watermark>>;

fn mark_written(watermark: &SharedWatermark, seq: u64) {
    watermark
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .written(seq);
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// Table written.
    pub table: String,
    /// Items written.
    pub items: u64,
    /// Write capacity reported consumed.
    pub consumed_write_capacity: f64,
    /// Resubmissions of unprocessed items.
    pub retries: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// Captured changes applied over the backup (keys whose last change was taken instead of
    /// the backup's item), and the moment the table was restored to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<OverlayReport>,
    /// Where it stopped at `stop_at`, to resume from; `None` when every file is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Position>,
}

/// What the captured changes did to a restore.
#[derive(Debug, Clone, Serialize)]
pub struct OverlayReport {
    /// The moment the table was restored to (RFC 3339).
    pub as_of: String,
    /// Keys written from their last change instead of the backup.
    pub changed_keys: u64,
    /// Keys deleted because they did not exist at the moment (only into an existing table).
    pub deleted: u64,
}

/// Why a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The backup's format cannot rebuild items exactly.
    #[error("backup {job_id} is in the `{format}` format, which cannot rebuild items exactly (sets come back as lists, binary as base64 strings); restore from a dynamodb-json backup, or pass --allow-lossy to accept those rules")]
    Lossy {
        /// The job.
        job_id: String,
        /// Its format.
        format: Format,
    },
    /// `--create-table` but the table is there.
    #[error(
        "table `{0}` already exists: restore into it without --create-table, or choose a new name"
    )]
    TableExists(String),
    /// The target table is not there.
    #[error("table `{0}` does not exist: pass --create-table to create it from the backup's key schema and indexes")]
    TableMissing(String),
    /// The target's key does not match the backup's.
    #[error("table `{table}` has key {actual}, but the backup's key is {expected}: restore into a table with the same key, or use --create-table with a new name")]
    KeyMismatch {
        /// Target table.
        table: String,
        /// Backup's key.
        expected: String,
        /// Target's key.
        actual: String,
    },
    /// A file could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record does not decode; restore never writes a guess.
    #[error("{key}: record {record}: {message}")]
    Decode {
        /// File.
        key: String,
        /// 1-based record number.
        record: u64,
        /// What is wrong.
        message: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Items stayed unprocessed through every retry.
    #[error("{count} items stayed unprocessed after {MAX_ATTEMPTS} attempts: the table is throttled; lower --write-budget or raise its capacity, then run restore again (it is idempotent)")]
    Unprocessed {
        /// How many.
        count: usize,
    },
    /// A task died (a bug, reported instead of hanging).
    #[error("internal error: the {task} task failed: {source}")]
    Task {
        /// Which task.
        task: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
}

impl crate::error::Retryable for RestoreError {
    fn is_retryable(&self) -> bool {
        match self {
            RestoreError::Store(e) => e.is_retryable(),
            RestoreError::Write(e) => e.is_retryable(),
            // Throttled through every attempt: later, or at a lower rate, it goes through.
            RestoreError::Unprocessed { .. } => true,
            _ => false,
        }
    }
}

/// Restores `manifest`'s backup from `store` into a table through `writer`.
pub async fn restore(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    locate: impl Fn(&str) -> String,
    writer: Arc<dyn TableWriter>,
    options: &RestoreOptions,
    progress: Arc<RestoreProgress>,
) -> Result<RestoreReport, RestoreError> {
    let clock = Instant::now();
    if !manifest.format.is_lossless() && !options.allow_lossy {
        return Err(RestoreError::Lossy {
            job_id: manifest.job_id.clone(),
            format: manifest.format,
        });
    }
    let table = options.table.to_string();
    prepare_table(writer.as_ref(), manifest, &table, options.create_table).await?;
    progress.total.store(manifest.item_count, Ordering::Relaxed);
    let budget = Arc::new(
        options
            .write_budget
            .map_or_else(WriteBudget::unlimited, WriteBudget::new),
    );
    let consumed = Arc::new(Mutex::new(0.0f64));
    let retries = Arc::new(AtomicU64::new(0));

    // Into an existing table, first delete every key the changes say did not exist at the
    // moment (deleted by then, or created after it): the backup's items and the changes' last
    // images then put back exactly what existed. A new table holds none of them.
    let mut deleted = 0;
    if let Some(overlay) = options.overlay.as_ref().filter(|_| !options.create_table) {
        for keys in overlay.deletes.chunks(BATCH_ITEMS) {
            let (used, resent) =
                delete_batch(writer.as_ref(), &table, keys.to_vec(), &budget).await?;
            *consumed.lock().await += used;
            retries.fetch_add(resent, Ordering::Relaxed);
            deleted += keys.len() as u64;
        }
    }

    let (batches_tx, batches_rx) =
        mpsc::channel::<(u64, Vec<Item>)>(options.concurrency.max(1) * 2);
    let start = options.resume.unwrap_or_default();
    *progress
        .written_to
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = start;
    let watermark: SharedWatermark = Arc::new(std::sync::Mutex::new(Watermark {
        pending: Default::default(),
        next: 0,
        progress: progress.clone(),
    }));
    let batches_rx = Arc::new(Mutex::new(batches_rx));
    let mut writers = JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let rx = batches_rx.clone();
        let writer = writer.clone();
        let table = table.clone();
        let budget = budget.clone();
        let consumed = consumed.clone();
        let retries = retries.clone();
        let progress = progress.clone();
        let watermark = watermark.clone();
        let stop_at = options.stop_at;
        writers.spawn(async move {
            loop {
                // At the stop instant the writers stop too: what they leave is after the
                // position, written by the next run.
                if stop_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                    return Ok(());
                }
                let batch = rx.lock().await.recv().await;
                let Some((seq, batch)) = batch else {
                    return Ok(());
                };
                let n = batch.len() as u64;
                let (used, resent) = write_batch(writer.as_ref(), &table, batch, &budget).await?;
                *consumed.lock().await += used;
                retries.fetch_add(resent, Ordering::Relaxed);
                progress.items.fetch_add(n, Ordering::Relaxed);
                mark_written(&watermark, seq);
            }
        });
    }
    // Only the writers hold the receiving end: once they are all gone (the last one failed),
    // the reader's next send fails and it stops, instead of waiting on a full channel forever.
    drop(batches_rx);

    let overlay = options.overlay.clone();
    let reading = Reading {
        batches: batches_tx.clone(),
        overlay: overlay.clone(),
        watermark: watermark.clone(),
        start,
        stop_at: options.stop_at,
    };
    let read = match read_files(store, manifest, &locate, &reading).await {
        Ok(Read::Finished) => match &overlay {
            Some(overlay) => send_puts(overlay, &batches_tx, &watermark, manifest.files.len())
                .await
                .map(|()| Read::Finished),
            None => Ok(Read::Finished),
        },
        other => other,
    };
    drop(reading);
    drop(batches_tx);
    let mut write: Result<(), RestoreError> = Ok(());
    while let Some(joined) = writers.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            // Cancelled by the abort below, after the first failure: never the cause.
            Err(e) if e.is_cancelled() => continue,
            Err(source) => RestoreError::Task {
                task: "writer",
                source,
            },
        };
        writers.abort_all();
        if write.is_ok() {
            write = Err(failed);
        }
    }
    // A writer failing closes the channel and stops the reader: report the writer's cause.
    write?;
    let unwritten = !watermark
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pending
        .is_empty();
    let paused_at = match read? {
        Read::Finished if !unwritten => None,
        // Stopped, by the reader or the writers: every record before the position is written.
        _ => Some(progress.position()),
    };
    let changes = overlay.as_ref().map(|overlay| OverlayReport {
        as_of: overlay.as_of.clone(),
        changed_keys: overlay.changed.len() as u64,
        deleted,
    });
    let report = RestoreReport {
        table,
        items: progress.items.load(Ordering::Relaxed),
        consumed_write_capacity: *consumed.lock().await,
        retries: retries.load(Ordering::Relaxed),
        duration_ms: clock.elapsed().as_millis() as u64,
        changes,
        paused_at,
    };
    info!(job_id = %manifest.job_id, table = %report.table, items = report.items,
          retries = report.retries, duration_ms = report.duration_ms, "restore complete");
    Ok(report)
}

async fn prepare_table(
    writer: &dyn TableWriter,
    manifest: &Manifest,
    table: &str,
    create: bool,
) -> Result<(), RestoreError> {
    match (writer.describe(table).await?, create) {
        (Some(_), true) => Err(RestoreError::TableExists(table.to_string())),
        (None, false) => Err(RestoreError::TableMissing(table.to_string())),
        (None, true) => {
            let spec = TableSpec {
                key_schema: manifest.key_schema.clone(),
                attribute_definitions: manifest.attribute_definitions.clone(),
                global_secondary_indexes: manifest.global_secondary_indexes.clone(),
                local_secondary_indexes: manifest.local_secondary_indexes.clone(),
            };
            writer.create_table(table, &spec).await?;
            Ok(())
        }
        (Some(info), false) => {
            let describe =
                |keys: &[crate::source::KeyElement],
                 defs: &[crate::source::AttributeDefinition]| {
                    keys.iter()
                        .map(|k| {
                            let ty = defs
                                .iter()
                                .find(|d| d.attribute_name == k.attribute_name)
                                .map_or("?", |d| d.attribute_type.as_str());
                            format!("{} {} ({ty})", k.key_type, k.attribute_name)
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
            let expected = describe(&manifest.key_schema, &manifest.attribute_definitions);
            let actual = describe(&info.key_schema, &info.attribute_definitions);
            if expected == actual {
                Ok(())
            } else {
                Err(RestoreError::KeyMismatch {
                    table: table.to_string(),
                    expected,
                    actual,
                })
            }
        }
    }
}

/// What the reader needs besides the files.
struct Reading {
    batches: mpsc::Sender<(u64, Vec<Item>)>,
    overlay: Option<Arc<Overlay>>,
    watermark: SharedWatermark,
    start: Position,
    stop_at: Option<tokio::time::Instant>,
}

/// How reading ended.
enum Read {
    /// Every file was read.
    Finished,
    /// The stop instant came first.
    Paused,
    /// The writers are gone (one failed, and says why).
    WritersGone,
}

/// Streams every file from `reading.start`, decodes each record and sends numbered batches of
/// 25; stops early when the writers are gone or the stop instant has come.
async fn read_files(
    store: Arc<dyn ObjectStore>,
    manifest: &Manifest,
    locate: &impl Fn(&str) -> String,
    reading: &Reading,
) -> Result<Read, RestoreError> {
    for (index, file) in manifest.files.iter().enumerate() {
        if index < reading.start.file {
            continue;
        }
        let skip = if index == reading.start.file {
            reading.start.records
        } else {
            0
        };
        let reader = store.open(&locate(&file.key)).await?;
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        let (format, compression, key) = (manifest.format, manifest.compression, file.key.clone());
        let columns = file.columns.clone();
        let tx = reading.batches.clone();
        let overlay = reading.overlay.clone();
        let watermark = reading.watermark.clone();
        let stop_at = reading.stop_at;
        let ended = tokio::task::spawn_blocking(move || -> Result<Read, RestoreError> {
            let mut batch = Vec::with_capacity(BATCH_ITEMS);
            let mut records = 0u64;
            let mut ended = Read::Finished;
            let send = |batch: Vec<Item>, end: Position, ended: &mut Read| {
                if stop_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
                    *ended = Read::Paused;
                    return false;
                }
                let seq = watermark
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .sent(end);
                if batch.is_empty() {
                    mark_written(&watermark, seq);
                    return true;
                }
                if tx.blocking_send((seq, batch)).is_err() {
                    *ended = Read::WritersGone;
                    return false;
                }
                true
            };
            read_items(bridge, format, compression, columns.as_deref(), |item| {
                records += 1;
                if records <= skip {
                    return true;
                }
                // A key the captured changes touched is written from its last change instead.
                if !overlay.as_ref().is_some_and(|o| o.replaces(&item)) {
                    batch.push(item);
                }
                if batch.len() == BATCH_ITEMS {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ITEMS));
                    let end = Position {
                        file: index,
                        records,
                    };
                    return send(full, end, &mut ended);
                }
                true
            })
            .map_err(|e| RestoreError::Decode {
                key: key.clone(),
                record: e.read.items + 1,
                message: e.message,
            })?;
            if matches!(ended, Read::Finished) {
                // The rest of the file, and the file itself: the position moves to the next
                // file once all of it is written.
                let end = Position {
                    file: index,
                    records,
                };
                if send(batch, end, &mut ended) {
                    let next = Position {
                        file: index + 1,
                        records: 0,
                    };
                    send(Vec::new(), next, &mut ended);
                }
            }
            Ok(ended)
        })
        .await
        .map_err(|source| RestoreError::Task {
            task: "reader",
            source,
        })??;
        if !matches!(ended, Read::Finished) {
            return Ok(ended);
        }
    }
    Ok(Read::Finished)
}

/// Sends the overlay's items to the writers.
async fn send_puts(
    overlay: &Overlay,
    batches: &mpsc::Sender<(u64, Vec<Item>)>,
    watermark: &SharedWatermark,
    files: usize,
) -> Result<(), RestoreError> {
    for chunk in overlay.puts.chunks(BATCH_ITEMS) {
        let end = Position {
            file: files,
            records: 0,
        };
        let seq = watermark
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .sent(end);
        if batches.send((seq, chunk.to_vec())).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Deletes one batch of keys, resubmitting unprocessed ones as [`write_batch`] does.
async fn delete_batch(
    writer: &dyn TableWriter,
    table: &str,
    mut keys: Vec<Item>,
    budget: &WriteBudget,
) -> Result<(f64, u64), RestoreError> {
    let mut consumed = 0.0;
    for attempt in 0..MAX_ATTEMPTS {
        budget.acquire(keys.len() as f64).await;
        let sent = keys.len();
        let (unprocessed, used) = match writer.batch_delete(table, keys.clone()).await {
            Err(e) if is_throttled(&e) => (keys, 0.0),
            other => other?,
        };
        consumed += used;
        budget.accepted((sent - unprocessed.len()) as f64);
        if !unprocessed.is_empty() {
            budget.throttled();
        }
        if unprocessed.is_empty() {
            return Ok((consumed, u64::from(attempt)));
        }
        keys = unprocessed;
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(RestoreError::Unprocessed { count: keys.len() })
}

/// Writes one batch, resubmitting unprocessed items with exponential backoff and full jitter.
/// Returns the capacity consumed and the number of resubmissions.
async fn write_batch(
    writer: &dyn TableWriter,
    table: &str,
    mut items: Vec<Item>,
    budget: &WriteBudget,
) -> Result<(f64, u64), RestoreError> {
    let mut consumed = 0.0;
    for attempt in 0..MAX_ATTEMPTS {
        budget
            .acquire(items.iter().map(write_units).sum::<u64>() as f64)
            .await;
        let units: u64 = items.iter().map(write_units).sum();
        let (unprocessed, used) = match writer.batch_write(table, items.clone()).await {
            // Nothing of the batch fitted (past the SDK's own retries): as if all of it came
            // back unprocessed, with the same backoff.
            Err(e) if is_throttled(&e) => (items, 0.0),
            other => other?,
        };
        consumed += used;
        let left: u64 = unprocessed.iter().map(write_units).sum();
        budget.accepted((units - left) as f64);
        if !unprocessed.is_empty() {
            budget.throttled();
        }
        if unprocessed.is_empty() {
            return Ok((consumed, u64::from(attempt)));
        }
        items = unprocessed;
        tokio::time::sleep(backoff(attempt)).await;
    }
    Err(RestoreError::Unprocessed { count: items.len() })
}

fn is_throttled(error: &WriteError) -> bool {
    matches!(
        error,
        WriteError::Request {
            kind: crate::aws::FailureKind::Throttled,
            ..
        }
    )
}

/// Full jitter: a random wait between zero and the exponential bound, so that parallel writers
/// throttled together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let bound = BACKOFF_BASE
        .saturating_mul(1u32 << attempt.min(16))
        .min(BACKOFF_CAP);
    let random = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
    bound.mul_f64(random)
}

/// Write capacity units an item costs: one per started KiB of its DynamoDB size.
pub fn write_units(item: &Item) -> u64 {
    item_size(item).div_ceil(1024).max(1) as u64
}

/// DynamoDB's item size: attribute names plus values, as its documentation counts them.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn number_size(n: &str) -> usize {
    let digits = n.bytes().filter(u8::is_ascii_digit).count();
    digits.div_ceil(2) + 1
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        _ => 0,
    }
}

/// The pace of a restore's writes, shared by all its writers: at most the budget, when there
/// is one, and after the table first throttles, what it accepted in the last second, growing back
/// slowly until it throttles again (about 70 % of the limit is written without it; see
/// docs/scaling.md).
pub type WriteBudget = crate::source::pace::Pace;

#[cfg(test)]
mod tests;

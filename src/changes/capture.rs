//! Capture: one batch of stream records, as Lambda's event source mapping delivers it, into one
//! change object, then the shard's coverage record moved forward.
//!
//! A batch delivered again (a retry, a lost reply) has the same shard, first and last sequence
//! numbers, so it names the same key, and the write is conditional on the key being free: the
//! second delivery finds its own object and stores nothing. A batch split in two by Lambda's
//! bisection on error may store a change twice under two keys; [`super::replay`] keeps each
//! (shard, sequence number) once, so that costs bytes, never correctness. The coverage record
//! is written after the object, so it never claims a change that is not stored.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backup::compress::Compressor;
use crate::changes::record::{table_of_stream, ChangeLine, StreamBatch, StreamRecord};
use crate::changes::stream::{ChangeStream, ShardInfo, StreamError};
use crate::error::Retryable;
use crate::model::changes::{compare_sequence, ChangeLayout, FailedBatch, ShardCoverage};
use crate::model::format::Compression;
use crate::store::{put_if, ObjectMeta, ObjectStore, Precondition, StoreError};

/// Attempts at moving a coverage record forward against a concurrent writer.
const COVERAGE_ATTEMPTS: usize = 5;

/// Why a batch was not stored. Lambda retries the batch, and after its retries splits it and
/// finally hands it to the on-failure destination, which [`Capture::record_failure`] records.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// A record is not what a DynamoDB stream sends, or the stream's view type lacks new images.
    #[error("stream record {sequence}: {message}")]
    Record {
        /// Its sequence number.
        sequence: String,
        /// What is wrong.
        message: String,
    },
    /// The record's source is not a DynamoDB table stream.
    #[error("`{0}` is not a DynamoDB table stream ARN")]
    NotATableStream(String),
    /// No shard of the stream holds the batch.
    #[error("no shard of {stream} holds sequence number {sequence}")]
    ShardUnknown {
        /// The stream ARN.
        stream: String,
        /// The batch's first sequence number.
        sequence: String,
    },
    /// Writing the object or coverage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Asking the stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The coverage record kept changing under this writer.
    #[error("the coverage record {0} changed under every attempt to update it")]
    Contended(String),
}

impl Retryable for CaptureError {
    fn is_retryable(&self) -> bool {
        match self {
            CaptureError::Record { .. } | CaptureError::NotATableStream(_) => false,
            CaptureError::ShardUnknown { .. } | CaptureError::Contended(_) => true,
            CaptureError::Store(e) => e.is_retryable(),
            CaptureError::Stream(e) => e.is_retryable(),
        }
    }
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum CaptureOutcome {
    /// Stored now.
    Stored {
        /// Its objects (one per hour its changes were written in).
        keys: Vec<String>,
        /// Changes in it.
        changes: usize,
    },
    /// An earlier delivery of the same batch stored it.
    AlreadyStored {
        /// Its objects.
        keys: Vec<String>,
        /// Changes in it.
        changes: usize,
    },
    /// The batch held no records.
    Empty,
}

/// Stores the changes of tables' streams beside their backups.
pub struct Capture {
    store: Arc<dyn ObjectStore>,
    stream: Arc<dyn ChangeStream>,
    prefix: String,
    compression: Compression,
    shards: Mutex<HashMap<String, Vec<ShardInfo>>>,
    /// Shards this process stored batches of, most recent first: asked first when several
    /// could hold a batch, as Lambda tends to hand a shard's batches to the same process.
    recent: Mutex<Vec<String>>,
}

impl Capture {
    /// Capture into `store` under `prefix` (the backups' prefix), compressed as `compression`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        stream: Arc<dyn ChangeStream>,
        prefix: &str,
        compression: Compression,
    ) -> Self {
        Capture {
            store,
            stream,
            prefix: prefix.to_string(),
            compression,
            shards: Mutex::new(HashMap::new()),
            recent: Mutex::new(Vec::new()),
        }
    }

    /// Stores one delivered batch (all from one shard of one stream), once: one object per
    /// hour its changes were written in, so that an object's date says where all its changes
    /// are (a batch after a backlog can span many hours).
    pub async fn store_batch(&self, batch: StreamBatch) -> Result<CaptureOutcome, CaptureError> {
        let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) else {
            return Ok(CaptureOutcome::Empty);
        };
        let stream_arn = first.event_source_arn.clone();
        let table = table_of_stream(&stream_arn)
            .ok_or_else(|| CaptureError::NotATableStream(stream_arn.clone()))?
            .to_string();
        let first_sequence = first.dynamodb.sequence_number.clone();
        let last_sequence = last.dynamodb.sequence_number.clone();
        let first_micros = first.write_micros();
        let last_micros = batch
            .records
            .iter()
            .map(|r| r.write_micros())
            .max()
            .unwrap_or(first_micros);
        let shard = self.shard_of(&stream_arn, &first_sequence).await?;
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            recent.retain(|s| *s != shard.shard_id);
            recent.insert(0, shard.shard_id.clone());
            recent.truncate(64);
        }
        let changes = batch.records.len();
        let layout = ChangeLayout::new(&self.prefix, &table);
        // Read once: to check the batch follows it, then to move it forward.
        let coverage = self
            .store
            .get_tagged(&layout.shard_key(&shard.shard_id))
            .await?;
        let stored = coverage
            .as_ref()
            .and_then(|(bytes, _)| serde_json::from_slice::<ShardCoverage>(bytes).ok());
        self.check_continuity(
            stored.as_ref(),
            &stream_arn,
            &shard.shard_id,
            &first_sequence,
            first_micros,
        )
        .await?;

        let mut keys = Vec::new();
        let mut fresh = false;
        for piece in by_hour(batch.records) {
            let (key, stored) = self.store_piece(&layout, &shard.shard_id, piece).await?;
            fresh |= stored;
            keys.push(key);
        }
        self.advance(
            &layout,
            coverage,
            ShardCoverage {
                stream_arn,
                shard_id: shard.shard_id.clone(),
                parent_shard_id: shard.parent_shard_id.clone(),
                first_sequence,
                first_change_micros: first_micros,
                last_sequence,
                last_change_micros: last_micros,
                changes: if fresh { changes as u64 } else { 0 },
                batches: u64::from(fresh),
                updated_at: Utc::now().to_rfc3339(),
            },
        )
        .await?;
        tracing::info!(objects = keys.len(), first = %keys[0], changes, fresh, "change batch stored");
        Ok(if fresh {
            CaptureOutcome::Stored { keys, changes }
        } else {
            CaptureOutcome::AlreadyStored { keys, changes }
        })
    }

    /// Writes one hour's records of a batch as one object, unless a delivery before stored it.
    async fn store_piece(
        &self,
        layout: &ChangeLayout,
        shard: &str,
        records: Vec<StreamRecord>,
    ) -> Result<(String, bool), CaptureError> {
        let first = &records[0];
        let key = layout.batch_key(
            micros_to_time(first.write_micros()),
            shard,
            &first.dynamodb.sequence_number,
            &records[records.len() - 1].dynamodb.sequence_number,
            self.compression,
        );
        let mut body = Compressor::new(self.compression, Vec::new()).map_err(io_error)?;
        for record in records {
            let sequence = record.dynamodb.sequence_number.clone();
            let line = ChangeLine::from_record(record, shard)
                .map_err(|message| CaptureError::Record { sequence, message })?;
            serde_json::to_writer(&mut body, &line).map_err(|e| io_error(e.into()))?;
            body.write_all(b"\n").map_err(io_error)?;
        }
        let body = Bytes::from(body.finish().map_err(io_error)?);
        let meta = change_meta(self.compression, true);
        // Refused: an earlier delivery stored it. Failed: the write may still have been
        // applied with its reply lost, which the object's bytes tell.
        let fresh = match self
            .store
            .put_object_if(&key, body.clone(), &meta, Precondition::Absent)
            .await
        {
            Ok(fresh) => fresh,
            Err(err) => match self.store.get_tagged(&key).await {
                Ok(Some((stored, _))) if stored == body => true,
                _ => return Err(err.into()),
            },
        };
        Ok((key, fresh))
    }

    /// Lambda hands a shard's batches over in order, and moves on past a batch it gives up on;
    /// the on-failure message about it may come much later. So before coverage moves past a
    /// gap between the stored changes and this batch, the gap is recorded as a lost batch.
    async fn check_continuity(
        &self,
        stored: Option<&ShardCoverage>,
        stream_arn: &str,
        shard: &str,
        first_sequence: &str,
        first_micros: i64,
    ) -> Result<(), CaptureError> {
        let after = match stored {
            // A batch delivered again.
            Some(stored) if compare_sequence(first_sequence, &stored.last_sequence).is_le() => {
                return Ok(())
            }
            Some(stored) => Some(stored.last_sequence.as_str()),
            // The shard's first batch: it should begin with the oldest record the stream holds.
            None => None,
        };
        let next = match self.stream.first_after(stream_arn, shard, after).await {
            Ok(next) => next,
            // The newest stored change is older than the stream keeps: every record after it
            // was stored or recorded as lost, so what follows is the oldest one still held.
            Err(StreamError::Trimmed { .. }) => {
                self.stream.first_after(stream_arn, shard, None).await?
            }
            Err(e) => return Err(e.into()),
        };
        let missing_from = match next {
            Some(next) if next.sequence == first_sequence => return Ok(()),
            Some(next) if compare_sequence(&next.sequence, first_sequence).is_lt() => {
                (next.sequence, next.write_micros)
            }
            // The stream does not show the records yet, or shows only later ones (this batch's
            // first already trimmed): nothing says one is missing.
            _ => return Ok(()),
        };
        let gap = FailedBatch {
            stream_arn: stream_arn.to_string(),
            shard_id: shard.to_string(),
            first_sequence: missing_from.0,
            last_sequence: first_sequence.to_string(),
            first_arrival: micros_to_time(missing_from.1).to_rfc3339(),
            last_arrival: micros_to_time(first_micros).to_rfc3339(),
            batch_size: None,
            condition: Some("Gap".to_string()),
        };
        self.record_failure(&gap).await?;
        Ok(())
    }

    /// Records a batch Lambda gave up on (its on-failure destination's message), so a restore
    /// to a time it covers refuses instead of silently missing its changes.
    pub async fn record_failure(&self, failed: &FailedBatch) -> Result<String, CaptureError> {
        let table = table_of_stream(&failed.stream_arn)
            .ok_or_else(|| CaptureError::NotATableStream(failed.stream_arn.clone()))?;
        let layout = ChangeLayout::new(&self.prefix, table);
        let key = layout.failed_key(
            &failed.shard_id,
            &failed.first_sequence,
            &failed.last_sequence,
        );
        let body = Bytes::from(serde_json::to_vec_pretty(failed).map_err(|e| io_error(e.into()))?);
        put_if(
            self.store.as_ref(),
            &key,
            body,
            &change_meta(Compression::None, true),
            Precondition::Absent,
        )
        .await?;
        tracing::error!(%key, shard = %failed.shard_id, first = %failed.first_sequence,
                        last = %failed.last_sequence, "change batch lost: recorded");
        Ok(key)
    }

    /// The shard that holds `sequence`: by range from DescribeStream (fetched again when no
    /// known shard can hold it), and by asking the candidates when several open ranges overlap.
    async fn shard_of(&self, stream_arn: &str, sequence: &str) -> Result<ShardInfo, CaptureError> {
        for refresh in [false, true] {
            let known = self
                .shards
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(stream_arn)
                .cloned();
            let (shards, cached) = match known {
                Some(shards) if !refresh => (shards, true),
                _ => {
                    let shards = self.stream.shards(stream_arn).await?;
                    self.shards
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(stream_arn.to_string(), shards.clone());
                    (shards, false)
                }
            };
            let mut candidates: Vec<&ShardInfo> =
                shards.iter().filter(|s| s.may_hold(sequence)).collect();
            let recent = self
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            candidates.sort_by_key(|s| {
                recent
                    .iter()
                    .position(|r| *r == s.shard_id)
                    .unwrap_or(usize::MAX)
            });
            // A fresh listing's only candidate holds it. A remembered one may be a shard that
            // has since split (it still looks open here): asked, like overlapping ones.
            if let [only] = candidates[..] {
                if !cached || only.ending_sequence.is_some() {
                    return Ok(only.clone());
                }
            }
            for candidate in candidates {
                if self
                    .stream
                    .holds(stream_arn, &candidate.shard_id, sequence)
                    .await?
                {
                    return Ok(candidate.clone());
                }
            }
        }
        Err(CaptureError::ShardUnknown {
            stream: stream_arn.to_string(),
            sequence: sequence.to_string(),
        })
    }

    /// Merges `batch` into its shard's coverage record, compare-and-swap, starting from
    /// `current` (the record as read before the batch was stored) and reading it again after a
    /// refusal.
    async fn advance(
        &self,
        layout: &ChangeLayout,
        mut current: Option<(Bytes, String)>,
        batch: ShardCoverage,
    ) -> Result<(), CaptureError> {
        let key = layout.shard_key(&batch.shard_id);
        let meta = change_meta(Compression::None, false);
        for attempt in 0..COVERAGE_ATTEMPTS {
            if attempt > 0 {
                current = self.store.get_tagged(&key).await?;
            }
            let (merged, condition) = match &current {
                Some((bytes, tag)) => {
                    let known: ShardCoverage = serde_json::from_slice(bytes).map_err(|e| {
                        StoreError::request(
                            "GetObject",
                            key.clone(),
                            crate::aws::FailureKind::Rejected,
                            format!("not a shard coverage record: {e}"),
                        )
                    })?;
                    (known.merge(&batch), Precondition::Unchanged(tag))
                }
                None => (batch.clone(), Precondition::Absent),
            };
            let body =
                Bytes::from(serde_json::to_vec_pretty(&merged).map_err(|e| io_error(e.into()))?);
            if put_if(self.store.as_ref(), &key, body, &meta, condition).await? {
                return Ok(());
            }
        }
        Err(CaptureError::Contended(key))
    }
}

/// A batch's records cut where the hour of their write time changes.
fn by_hour(records: Vec<StreamRecord>) -> Vec<Vec<StreamRecord>> {
    const HOUR: i64 = 3_600_000_000;
    let mut pieces: Vec<Vec<StreamRecord>> = Vec::new();
    for record in records {
        let hour = record.write_micros().div_euclid(HOUR);
        match pieces.last_mut() {
            Some(piece) if piece[0].write_micros().div_euclid(HOUR) == hour => piece.push(record),
            _ => pieces.push(vec![record]),
        }
    }
    pieces
}

/// Metadata of change objects (`retained`: locked like a backup's files) and of coverage records.
pub(crate) fn change_meta(compression: Compression, retained: bool) -> ObjectMeta {
    ObjectMeta {
        content_type: compression.media_type().unwrap_or("application/x-ndjson"),
        content_encoding: None,
        records: compression.media_type().map(|_| "application/x-ndjson"),
        retained,
    }
}

/// A time in microseconds since the epoch.
pub fn micros_to_time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}

fn io_error(source: std::io::Error) -> CaptureError {
    CaptureError::Store(StoreError::Io {
        operation: "encode",
        path: "change batch".to_string(),
        source,
    })
}

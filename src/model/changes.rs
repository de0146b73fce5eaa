//! A table's captured changes as data: where they are kept, and the records that say how far
//! they reach. No I/O: the capture and replay in `crate::changes` read and write them.
//!
//! Where a table's changes are kept: beside its backups, under `{prefix}{table}/changes/`.
//!
//! - `batches/dt={YYYY-MM-DD}/hh={HH}/{shard}-{first}-{last}.jsonl[.gz|.zst]`: one object per
//!   delivered batch, dated by its first change, named by its shard and its first and last
//!   sequence numbers, so a batch delivered again lands on the same key;
//! - `shards/{shard}.json`: per shard, the newest change stored ([`ShardCoverage`]);
//! - `failed/{shard}-{first}-{last}.json`: a batch Lambda gave up on, from its on-failure
//!   destination;
//! - `daily/dt={YYYY-MM-DD}/`: a day's changes compacted (`crate::changes::compact`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::format::Compression;

/// Object keys of one table's changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLayout {
    base: String,
}

impl ChangeLayout {
    /// The changes of `table` under `prefix` (which ends in `/`, or is empty).
    pub fn new(prefix: &str, table: &str) -> Self {
        ChangeLayout {
            base: format!("{prefix}{table}/changes/"),
        }
    }

    /// The changes beside the backup whose manifest is at `manifest_key`
    /// (`{prefix}{table}/dt=…/{job}/manifest.json`); `None` for a key of another shape.
    pub fn beside_backup(manifest_key: &str) -> Option<Self> {
        let at = manifest_key.rfind("dt=")?;
        Some(ChangeLayout {
            base: format!("{}changes/", &manifest_key[..at]),
        })
    }

    /// Everything of the table's changes.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Prefix of every batch object.
    pub fn batches_prefix(&self) -> String {
        format!("{}batches/", self.base)
    }

    /// Prefix of the batches whose first change falls in the hour starting at `hour`.
    pub fn batches_hour_prefix(&self, hour: DateTime<Utc>) -> String {
        format!(
            "{}dt={}/hh={}/",
            self.batches_prefix(),
            hour.format("%Y-%m-%d"),
            hour.format("%H")
        )
    }

    /// Key of a batch of `shard` from `first` to `last`, whose first change was written at
    /// `first_at`.
    pub fn batch_key(
        &self,
        first_at: DateTime<Utc>,
        shard: &str,
        first: &str,
        last: &str,
        compression: Compression,
    ) -> String {
        format!(
            "{}{shard}-{first}-{last}.jsonl{}",
            self.batches_hour_prefix(first_at),
            compression.extension_suffix()
        )
    }

    /// Prefix of the shard coverage records.
    pub fn shards_prefix(&self) -> String {
        format!("{}shards/", self.base)
    }

    /// Key of `shard`'s coverage record.
    pub fn shard_key(&self, shard: &str) -> String {
        format!("{}{shard}.json", self.shards_prefix())
    }

    /// Prefix of the failed-batch records.
    pub fn failed_prefix(&self) -> String {
        format!("{}failed/", self.base)
    }

    /// Key of the record of a failed batch.
    pub fn failed_key(&self, shard: &str, first: &str, last: &str) -> String {
        format!("{}{shard}-{first}-{last}.json", self.failed_prefix())
    }

    /// Prefix of the compacted set of the day `date` (`YYYY-MM-DD`).
    pub fn daily_prefix(&self, date: &str) -> String {
        format!("{}daily/dt={date}/", self.base)
    }
}

/// The compression a change object's key says it has.
pub fn compression_of(key: &str) -> Compression {
    if key.ends_with(".zst") {
        Compression::Zstd
    } else if key.ends_with(".gz") {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// What the capture has stored of one shard: written after each batch, moved only forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCoverage {
    /// The stream.
    pub stream_arn: String,
    /// The shard.
    pub shard_id: String,
    /// The shard it split from: how replay orders one key's changes across a split.
    #[serde(default)]
    pub parent_shard_id: Option<String>,
    /// The oldest change stored.
    pub first_sequence: String,
    /// When it was written (µs since the epoch).
    pub first_change_micros: i64,
    /// The newest change stored.
    pub last_sequence: String,
    /// When the newest change stored was written (µs since the epoch).
    pub last_change_micros: i64,
    /// Changes stored.
    pub changes: u64,
    /// Batch objects stored.
    pub batches: u64,
    /// When the record was last written (RFC 3339).
    pub updated_at: String,
}

impl ShardCoverage {
    /// This record moved forward by `batch`: the oldest start and the newest end of both.
    pub fn merge(&self, batch: &ShardCoverage) -> ShardCoverage {
        let mut merged = self.clone();
        if compare_sequence(&batch.first_sequence, &self.first_sequence).is_lt() {
            merged.first_sequence = batch.first_sequence.clone();
            merged.first_change_micros = batch.first_change_micros;
        }
        if compare_sequence(&batch.last_sequence, &self.last_sequence).is_gt() {
            merged.last_sequence = batch.last_sequence.clone();
            merged.last_change_micros = batch.last_change_micros;
        }
        merged.parent_shard_id = self
            .parent_shard_id
            .clone()
            .or_else(|| batch.parent_shard_id.clone());
        merged.changes += batch.changes;
        merged.batches += batch.batches;
        merged.updated_at = batch.updated_at.clone();
        merged
    }
}

/// A batch Lambda gave up on after its retries: its changes are not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedBatch {
    /// The stream.
    pub stream_arn: String,
    /// The shard.
    pub shard_id: String,
    /// Its first sequence number.
    pub first_sequence: String,
    /// Its last sequence number.
    pub last_sequence: String,
    /// When its first record reached the stream (RFC 3339).
    pub first_arrival: String,
    /// When its last record reached the stream (RFC 3339).
    pub last_arrival: String,
    /// Records in it.
    #[serde(default)]
    pub batch_size: Option<u64>,
    /// Why Lambda gave up (`RetryAttemptsExhausted`, `RecordAgeExceeded`…).
    #[serde(default)]
    pub condition: Option<String>,
}

impl FailedBatch {
    /// Reads the message Lambda sends an on-failure destination for a stream batch.
    pub fn from_destination_message(body: &str) -> Result<FailedBatch, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Info {
            shard_id: String,
            start_sequence_number: String,
            end_sequence_number: String,
            approximate_arrival_of_first_record: String,
            approximate_arrival_of_last_record: String,
            #[serde(default)]
            batch_size: Option<u64>,
            stream_arn: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Context {
            #[serde(default)]
            condition: Option<String>,
        }
        #[derive(Deserialize)]
        struct Message {
            #[serde(rename = "DDBStreamBatchInfo")]
            info: Info,
            #[serde(rename = "requestContext", default)]
            context: Option<Context>,
        }
        let message: Message = serde_json::from_str(body)
            .map_err(|e| format!("not a DynamoDB stream on-failure record: {e}"))?;
        Ok(FailedBatch {
            stream_arn: message.info.stream_arn,
            shard_id: message.info.shard_id,
            first_sequence: message.info.start_sequence_number,
            last_sequence: message.info.end_sequence_number,
            first_arrival: message.info.approximate_arrival_of_first_record,
            last_arrival: message.info.approximate_arrival_of_last_record,
            batch_size: message.info.batch_size,
            condition: message.context.and_then(|c| c.condition),
        })
    }

    /// When its first and last records reached the stream (µs since the epoch).
    pub fn arrivals(&self) -> Option<(i64, i64)> {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc).timestamp_micros())
        };
        Some((at(&self.first_arrival)?, at(&self.last_arrival)?))
    }
}

/// Orders two sequence numbers of one shard: they are decimal numbers of any length.
pub fn compare_sequence(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn changes_sit_beside_the_backups() {
        let layout = ChangeLayout::new("backups/", "studentData");
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 10, 42, 5).unwrap();
        assert_eq!(
            layout.batch_key(at, "shardId-1", "100", "120", Compression::Zstd),
            "backups/studentData/changes/batches/dt=2026-12-07/hh=10/shardId-1-100-120.jsonl.zst"
        );
        assert_eq!(
            ChangeLayout::beside_backup("backups/studentData/dt=2026-12-07/j1/manifest.json"),
            Some(layout.clone())
        );
        assert_eq!(
            layout.shard_key("shardId-1"),
            "backups/studentData/changes/shards/shardId-1.json"
        );
        assert_eq!(compression_of("x.jsonl.gz"), Compression::Gzip);
        assert_eq!(compression_of("x.jsonl"), Compression::None);
    }
}

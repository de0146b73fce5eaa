//! Coverage: whether every change of a window is stored, known rather than assumed.
//!
//! Capture keeps, per shard, the newest change it has stored ([`ShardCoverage`]), and Lambda's
//! on-failure destination names every batch it gave up on ([`FailedBatch`]). Lambda hands a
//! shard's batches over in order, each either stored or given up on, so for a window of time
//! the changes are all stored when no failed batch falls in it and, for every shard the stream
//! lists, the capture has stored past the window's end or the stream holds nothing newer than
//! what is stored. The stream itself is asked, so a quiet table counts as covered up to now and
//! a lagging capture does not.

use std::collections::HashMap;

use crate::changes::capture::micros_to_time;
use crate::changes::stream::{ChangeStream, StreamError};
use crate::model::changes::{compare_sequence, ChangeLayout, FailedBatch, ShardCoverage};
use crate::store::{ObjectStore, StoreError};

/// When a stream was enabled, from its ARN's label (`…/stream/2026-12-07T10:04:11.799`).
pub fn stream_created_micros(stream_arn: &str) -> Option<i64> {
    let label = stream_arn.rsplit_once("/stream/")?.1;
    chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_micros())
}

/// One second, in microseconds.
const SECOND: i64 = 1_000_000;
/// How long a DynamoDB stream keeps a record: 24 hours, in microseconds.
const STREAM_RETENTION: i64 = 24 * 3600 * SECOND;

/// How far the stored changes of a stream reach from a moment on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// Every change from the window's start up to this moment (µs) is stored; `None`: up to now.
    pub complete_until: Option<i64>,
    /// What holds the stored changes back at `complete_until`, in words.
    pub limited_by: Option<String>,
    /// The stream's shards, with what capture knows of each: the lineage replay orders by.
    pub shards: HashMap<String, ShardCoverage>,
}

impl Coverage {
    /// Whether every change up to `to` (µs) is stored.
    pub fn covers(&self, to: i64) -> bool {
        self.complete_until.is_none_or(|until| to <= until)
    }
}

/// Why the stored changes do not cover a window.
#[derive(Debug, thiserror::Error)]
pub enum CoverageGap {
    /// A batch of changes was lost.
    #[error("the changes of shard {shard} written from {from} to {to} were not stored (a batch Lambda gave up on, recorded in {key}); restore to a time before {from}, or from a backup that started after {to}")]
    Failed {
        /// The shard.
        shard: String,
        /// The lost batch's first arrival.
        from: String,
        /// Its last arrival.
        to: String,
        /// Its record.
        key: String,
    },
    /// The capture of a shard began after the window did, or its older changes were trimmed
    /// before it stored them.
    #[error("the capture of shard {shard} begins with a change written at {first}, after the window's start {start}: the changes before it were never stored; restore from a backup that started after {first}")]
    StartedLate {
        /// The shard.
        shard: String,
        /// The oldest stored change.
        first: String,
        /// The window's start.
        start: String,
    },
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stream could not be asked.
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Every shard coverage record under `layout`, of any stream.
pub async fn shard_records(
    store: &dyn ObjectStore,
    layout: &ChangeLayout,
) -> Result<Vec<ShardCoverage>, StoreError> {
    let mut records = Vec::new();
    for key in store.list(&layout.shards_prefix()).await? {
        let record = serde_json::from_slice(&store.get(&key).await?).map_err(|e| {
            StoreError::request(
                "GetObject",
                key.clone(),
                crate::aws::FailureKind::Rejected,
                format!("not a shard coverage record: {e}"),
            )
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Each captured shard and the shard it split from, from the coverage records alone: the
/// lineage replay orders a key's changes by, when the stream need not be asked.
pub async fn lineage(
    store: &dyn ObjectStore,
    layout: &ChangeLayout,
) -> Result<HashMap<String, Option<String>>, StoreError> {
    Ok(shard_records(store, layout)
        .await?
        .into_iter()
        .map(|record| (record.shard_id, record.parent_shard_id))
        .collect())
}

/// What the capture has stored of `stream_arn` (from `layout`), checked against the stream
/// from `from` (µs) on: how far the stored changes are complete, or why they never are.
pub async fn reach(
    store: &dyn ObjectStore,
    stream: &dyn ChangeStream,
    layout: &ChangeLayout,
    stream_arn: &str,
    from: i64,
) -> Result<Coverage, CoverageGap> {
    let known: HashMap<String, ShardCoverage> = shard_records(store, layout)
        .await?
        .into_iter()
        .filter(|record| record.stream_arn == stream_arn)
        .map(|record| (record.shard_id.clone(), record))
        .collect();
    let mut until: Option<(i64, String)> = None;
    let mut limit = |bound: i64, why: String| {
        if until.as_ref().is_none_or(|(u, _)| bound < *u) {
            until = Some((bound, why));
        }
    };

    for key in store.list(&layout.failed_prefix()).await? {
        let failed = match serde_json::from_slice::<FailedBatch>(&store.get(&key).await?) {
            Ok(failed) if failed.stream_arn == stream_arn => failed,
            _ => continue,
        };
        let (first, last) = failed.arrivals().unwrap_or((i64::MIN + SECOND, i64::MAX));
        // A change reaches the stream a moment after it is written, and is stamped with the
        // second it was written in: its stamp may be up to a second before its arrival.
        let first = first.div_euclid(SECOND) * SECOND - SECOND;
        if last < from {
            continue;
        }
        if first <= from {
            return Err(CoverageGap::Failed {
                shard: failed.shard_id,
                from: failed.first_arrival,
                to: failed.last_arrival,
                key,
            });
        }
        limit(
            first - 1,
            format!(
                "the changes of shard {} written from {} to {} were not stored (a batch Lambda gave up on, recorded in {key})",
                failed.shard_id, failed.first_arrival, failed.last_arrival
            ),
        );
    }

    let shards = stream.shards(stream_arn).await?;
    let children: std::collections::HashSet<String> = known
        .values()
        .filter_map(|s| s.parent_shard_id.clone())
        .collect();
    if !shards.is_empty() && shards.iter().all(|s| s.ending_sequence.is_some()) {
        // Every shard is closed: the stream was disabled, and nothing after its end is captured.
        let newest = known.values().map(|s| s.last_change_micros).max();
        limit(
            newest.unwrap_or(from),
            format!("the stream {stream_arn} is closed (disabled or replaced): changes after its end were not captured"),
        );
    }
    let retained_from = chrono::Utc::now().timestamp_micros() - STREAM_RETENTION + SECOND * 3600;
    for shard in shards {
        let id = &shard.shard_id;
        match known.get(id) {
            Some(stored) => {
                let began_late = compare_sequence(&shard.starting_sequence, &stored.first_sequence)
                    .is_lt()
                    && stored.first_change_micros > from;
                // Lambda starts a child shard only after its parent, from the child's start:
                // a child of a captured parent was captured from its first change.
                let followed = shard
                    .parent_shard_id
                    .as_ref()
                    .is_some_and(|parent| known.contains_key(parent));
                if began_late && !followed {
                    // The stream's oldest record of the shard: if it is the first stored, the
                    // capture has all the stream keeps, which is all there is for a window within
                    // the stream's retention. An older one is a change never stored.
                    let oldest = stream.first_after(stream_arn, id, None).await?;
                    match oldest {
                        Some(m) if m.sequence == stored.first_sequence && from >= retained_from => {
                        }
                        Some(m)
                            if compare_sequence(&m.sequence, &stored.first_sequence).is_lt()
                                && m.write_micros > from =>
                        {
                            limit(
                                m.write_micros - 1,
                                format!("shard {id} holds changes older than the capture's first"),
                            )
                        }
                        _ => {
                            return Err(CoverageGap::StartedLate {
                                shard: id.clone(),
                                first: micros_to_time(stored.first_change_micros).to_rfc3339(),
                                start: micros_to_time(from).to_rfc3339(),
                            })
                        }
                    }
                }
                // A closed shard stored to its end, or one whose child the capture has reached
                // (Lambda starts a child once its parent is done), holds nothing unstored.
                let finished = shard
                    .ending_sequence
                    .as_deref()
                    .is_some_and(|end| compare_sequence(&stored.last_sequence, end).is_ge())
                    || children.contains(id);
                if finished {
                    continue;
                }
                let next = match stream
                    .first_after(stream_arn, id, Some(&stored.last_sequence))
                    .await
                {
                    Ok(next) => next,
                    // The newest stored change is older than the stream keeps: the oldest record
                    // it still holds is what follows, since every record after the stored one
                    // was either stored or recorded as lost.
                    Err(StreamError::Trimmed { .. }) => stream
                        .first_after(stream_arn, id, None)
                        .await?
                        .filter(|m| compare_sequence(&m.sequence, &stored.last_sequence).is_gt()),
                    Err(e) => return Err(e.into()),
                };
                if let Some(next) = next {
                    limit(
                        next.write_micros - 1,
                        format!("shard {id} holds changes the capture has not stored yet"),
                    );
                }
            }
            None => {
                if let Some(first) = stream.first_after(stream_arn, id, None).await? {
                    limit(
                        first.write_micros - 1,
                        format!("shard {id} holds changes the capture has not stored yet"),
                    );
                }
            }
        }
    }
    // What was written in the last second may not be in the stream yet.
    limit(
        chrono::Utc::now().timestamp_micros() - SECOND,
        "changes written in the last second may not have reached the stream yet".to_string(),
    );
    let (complete_until, limited_by) = until.map_or((None, None), |(u, why)| (Some(u), Some(why)));
    Ok(Coverage {
        complete_until,
        limited_by,
        shards: known,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destination_message_names_the_lost_batch() {
        let body = r#"{"requestContext":{"requestId":"r","functionArn":"f","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},
          "responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},
          "version":"1.0","timestamp":"2026-12-07T10:00:06.021Z",
          "DDBStreamBatchInfo":{"shardId":"shardId-1","startSequenceNumber":"800","endSequenceNumber":"900",
          "approximateArrivalOfFirstRecord":"2026-12-07T10:00:04Z","approximateArrivalOfLastRecord":"2026-12-07T10:00:05Z",
          "batchSize":2,"streamArn":"arn:aws:dynamodb:us-east-1:1:table/t/stream/x"}}"#;
        let failed = FailedBatch::from_destination_message(body).unwrap();
        assert_eq!(failed.shard_id, "shardId-1");
        assert_eq!(failed.condition.as_deref(), Some("RetryAttemptsExhausted"));
        assert!(failed.arrivals().is_some());
        assert!(FailedBatch::from_destination_message("{}").is_err());
    }
}

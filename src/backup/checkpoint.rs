//! Checkpoints let one backup span several Lambda invocations (each at most 15 minutes). When a
//! leg nears its deadline every segment stops at a page boundary, closes its open file, and the
//! leg stores a checkpoint: per segment, the `LastEvaluatedKey` to resume from (a resumed scan
//! must use the same segment of the same segment count) and the files already complete. The next
//! leg starts from the newest checkpoint, and the final manifest lists every file exactly once.
//!
//! Checkpoints live beside the data: `{backup}/checkpoints/{sequence:05}.json`, sequence from 1.

use serde::{Deserialize, Serialize};

use crate::codec::decode::{decode_dynamodb_json_line, DecodeError};
use crate::codec::encode::EncodeError;
use crate::codec::encode::{DynamoDbJsonEncoder, RecordEncoder};
use crate::model::fan_out::Shard;
use crate::model::manifest::FileEntry;
use crate::model::Item;

/// Checkpoint schema version. Version 1 stored `resume_key` (`null` when done); version 2 stores
/// each segment's [`Position`] explicitly. Both are read.
pub const CHECKPOINT_VERSION: u32 = 2;

/// The state of an unfinished backup between two legs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Schema version ([`CHECKPOINT_VERSION`]).
    pub version: u32,
    /// The job this belongs to; a checkpoint is never applied to another job.
    pub job_id: String,
    /// 1 for the first checkpoint, then 2, 3, …
    pub sequence: u32,
    /// The segment count of the scan, fixed for the whole job.
    pub total_segments: u32,
    /// The worker whose share this is, for a job fanned out over several; its checkpoints list
    /// only the segments of its share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// When the first leg started (RFC 3339).
    pub started_at: String,
    /// Working time of all legs so far, excluding the gaps between them.
    pub elapsed_ms: u64,
    /// One entry per segment of the job (or of the worker's share), in segment order.
    pub segments: Vec<SegmentCheckpoint>,
}

/// Where one segment stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentCheckpoint {
    /// The segment.
    pub segment: u32,
    /// Where the segment's scan stands.
    pub position: Position,
    /// Index of the segment's next data file, so a resumed leg never reuses a key.
    pub next_file: u32,
    /// Pages read so far.
    pub pages: u64,
    /// Items read so far.
    pub items: u64,
    /// Read capacity consumed so far.
    pub consumed_capacity: f64,
    /// Files completed so far.
    pub files: Vec<FileEntry>,
}

/// Where one segment's scan stands. Three states, three variants: "not started" and "done" are
/// never the same value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// Nothing read yet: scan from the segment's beginning.
    Start,
    /// Resume after this key (a DynamoDB JSON map, see [`key_to_json`]).
    After(serde_json::Value),
    /// Read to its end.
    Done,
}

impl SegmentCheckpoint {
    /// Whether the segment has been read to its end.
    pub fn is_done(&self) -> bool {
        self.position == Position::Done
    }
}

/// A checkpoint that cannot be used, or a resume key that cannot be stored. None of these heal by
/// trying again: the checkpoint or the key is what it is.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The bytes are not a checkpoint.
    #[error("checkpoint of job {job_id} is not a ddb-backup checkpoint: {source}")]
    NotACheckpoint {
        /// The job being resumed.
        job_id: String,
        /// What the parser found.
        source: serde_json::Error,
    },
    /// Written by a newer ddb-backup.
    #[error("checkpoint of job {job_id} has version {version}, newer than this ddb-backup understands ({CHECKPOINT_VERSION}): upgrade the worker")]
    NewerVersion {
        /// The job being resumed.
        job_id: String,
        /// The checkpoint's version.
        version: u32,
    },
    /// Belongs to another job.
    #[error("checkpoint of job {job_id} belongs to job {other}")]
    OtherJob {
        /// The job being resumed.
        job_id: String,
        /// The job it names.
        other: String,
    },
    /// Belongs to another worker of the job.
    #[error("checkpoint of job {job_id} belongs to {found}, not to {expected}")]
    OtherShard {
        /// The job being resumed.
        job_id: String,
        /// The share being resumed.
        expected: String,
        /// The share it names.
        found: String,
    },
    /// Its segment list does not match its segment count.
    #[error("checkpoint of job {job_id} lists {listed} segments for a scan of {total}")]
    Segments {
        /// The job being resumed.
        job_id: String,
        /// Segments listed.
        listed: usize,
        /// The scan's segment count.
        total: u32,
    },
    /// A resume key that cannot be written as DynamoDB JSON.
    #[error("resume key cannot be stored: {0}")]
    EncodeKey(#[source] EncodeError),
    /// A stored resume key that is not a DynamoDB JSON map.
    #[error("resume key of segment {segment} cannot be read: {source}")]
    DecodeKey {
        /// The segment.
        segment: u32,
        /// What is wrong with it.
        source: DecodeError,
    },
}

impl Checkpoint {
    /// Parses and checks a stored checkpoint against the job (and worker) it is meant to resume.
    pub fn from_json(
        bytes: &[u8],
        job_id: &str,
        shard: Option<Shard>,
    ) -> Result<Checkpoint, CheckpointError> {
        let not_a_checkpoint = |source| CheckpointError::NotACheckpoint {
            job_id: job_id.to_string(),
            source,
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(not_a_checkpoint)?;
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version.is_some_and(|v| v > u64::from(CHECKPOINT_VERSION)) {
            return Err(CheckpointError::NewerVersion {
                job_id: job_id.to_string(),
                version: version.unwrap_or_default() as u32,
            });
        }
        if version == Some(1) {
            upgrade_v1(&mut value);
            // Whatever is written from it is written in today's schema.
            value["version"] = serde_json::json!(CHECKPOINT_VERSION);
        }
        let checkpoint: Checkpoint = serde_json::from_value(value).map_err(not_a_checkpoint)?;
        if checkpoint.job_id != job_id {
            return Err(CheckpointError::OtherJob {
                job_id: job_id.to_string(),
                other: checkpoint.job_id,
            });
        }
        if checkpoint.shard != shard {
            let name = |s: Option<Shard>| {
                s.map_or("the whole job".to_string(), |s| {
                    format!("worker {} of {}", s.worker, s.workers)
                })
            };
            return Err(CheckpointError::OtherShard {
                job_id: job_id.to_string(),
                expected: name(shard),
                found: name(checkpoint.shard),
            });
        }
        let expected = checkpoint.segment_range();
        let segments_in_order = checkpoint
            .segments
            .iter()
            .map(|s| s.segment)
            .eq(expected.clone());
        if !segments_in_order {
            return Err(CheckpointError::Segments {
                job_id: job_id.to_string(),
                listed: checkpoint.segments.len(),
                total: checkpoint.total_segments,
            });
        }
        Ok(checkpoint)
    }

    /// The segments this checkpoint covers: all of the job's, or the worker's share.
    pub fn segment_range(&self) -> std::ops::Range<u32> {
        match self.shard {
            Some(shard) => shard.segments(self.total_segments),
            None => 0..self.total_segments,
        }
    }

    /// The state of `segment`, when this checkpoint covers it.
    pub fn segment_mut(&mut self, segment: u32) -> Option<&mut SegmentCheckpoint> {
        let first = self.segment_range().start;
        segment
            .checked_sub(first)
            .and_then(|i| self.segments.get_mut(i as usize))
    }

    /// Whether every segment has been read to its end.
    pub fn is_complete(&self) -> bool {
        self.segments.iter().all(SegmentCheckpoint::is_done)
    }
}

/// Version 1 stored `resume_key`: a DynamoDB JSON map to resume from, or `null` once the segment
/// was done (a version-1 leg never stored a segment that had not started).
fn upgrade_v1(value: &mut serde_json::Value) {
    let Some(segments) = value
        .get_mut("segments")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for segment in segments {
        let Some(fields) = segment.as_object_mut() else {
            continue;
        };
        if fields.contains_key("position") {
            continue;
        }
        let position = match fields.remove("resume_key") {
            Some(serde_json::Value::Null) | None => serde_json::json!("done"),
            Some(key) => serde_json::json!({ "after": key }),
        };
        fields.insert("position".to_string(), position);
    }
}

/// A scan key as DynamoDB JSON, exact for every key type (S, N, B).
pub fn key_to_json(key: &Item) -> Result<serde_json::Value, CheckpointError> {
    let mut line = Vec::new();
    DynamoDbJsonEncoder::default()
        .encode_batch(std::slice::from_ref(key), &mut line)
        .map_err(CheckpointError::EncodeKey)?;
    // The encoder wrote `{"Item":{…}}`: valid JSON by construction.
    let mut value: serde_json::Value = serde_json::from_slice(&line)
        .map_err(|e| CheckpointError::EncodeKey(EncodeError::Io(e.into())))?;
    Ok(value
        .get_mut("Item")
        .map(serde_json::Value::take)
        .unwrap_or_default())
}

/// The scan key stored by [`key_to_json`], for `segment`.
pub fn key_from_json(segment: u32, value: &serde_json::Value) -> Result<Item, CheckpointError> {
    let line = serde_json::json!({ "Item": value }).to_string();
    decode_dynamodb_json_line(&line)
        .map_err(|source| CheckpointError::DecodeKey { segment, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn resume_keys_survive_the_checkpoint_exactly() {
        let key: Item = [
            ("pk".to_string(), AttributeValue::S("a\"b\n".to_string())),
            (
                "n".to_string(),
                AttributeValue::N("12345678901234567890123456789012345678".to_string()),
            ),
            (
                "b".to_string(),
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(vec![0, 255, 7])),
            ),
        ]
        .into_iter()
        .collect();
        let json = key_to_json(&key).unwrap();
        assert_eq!(json["n"]["N"], "12345678901234567890123456789012345678");
        assert_eq!(key_from_json(0, &json).unwrap(), key);
    }

    #[test]
    fn a_checkpoint_of_another_job_or_with_missing_segments_is_refused() {
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            job_id: "j1".into(),
            sequence: 1,
            total_segments: 2,
            shard: None,
            started_at: "2025-07-06T02:00:00Z".into(),
            elapsed_ms: 10,
            segments: vec![SegmentCheckpoint {
                segment: 0,
                position: Position::Done,
                next_file: 1,
                pages: 1,
                items: 1,
                consumed_capacity: 0.5,
                files: vec![],
            }],
        };
        let bytes = serde_json::to_vec(&checkpoint).unwrap();
        let err = Checkpoint::from_json(&bytes, "j2", None).unwrap_err();
        assert!(err.to_string().contains("belongs to job j1"), "{err}");
        let err = Checkpoint::from_json(&bytes, "j1", None).unwrap_err();
        assert!(
            err.to_string().contains("1 segments for a scan of 2"),
            "{err}"
        );
    }

    #[test]
    fn a_worker_resumes_only_its_own_share() {
        let shard = Shard::new(1, 2).unwrap();
        let mut checkpoint = one_segment(Position::Done);
        checkpoint.total_segments = 4;
        checkpoint.shard = Some(shard);
        checkpoint.segments = (2..4)
            .map(|segment| SegmentCheckpoint {
                segment,
                ..one_segment(Position::Start).segments[0].clone()
            })
            .collect();
        let bytes = serde_json::to_vec(&checkpoint).unwrap();
        let back = Checkpoint::from_json(&bytes, "j1", Some(shard)).unwrap();
        assert_eq!(back, checkpoint);
        assert_eq!(back.clone().segment_mut(3).unwrap().segment, 3);
        assert!(back.clone().segment_mut(1).is_none());
        let other = Checkpoint::from_json(&bytes, "j1", Some(Shard::new(0, 2).unwrap()));
        assert!(
            other
                .unwrap_err()
                .to_string()
                .contains("belongs to worker 1 of 2"),
            "a checkpoint is never applied to another worker's share"
        );
        assert!(Checkpoint::from_json(&bytes, "j1", None).is_err());
        // A share whose segment list does not match the share is refused.
        checkpoint.segments.pop();
        let bytes = serde_json::to_vec(&checkpoint).unwrap();
        assert!(Checkpoint::from_json(&bytes, "j1", Some(shard)).is_err());
    }

    fn one_segment(position: Position) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            job_id: "j1".into(),
            sequence: 1,
            total_segments: 1,
            shard: None,
            started_at: "2025-07-06T02:00:00Z".into(),
            elapsed_ms: 10,
            segments: vec![SegmentCheckpoint {
                segment: 0,
                position,
                next_file: 0,
                pages: 0,
                items: 0,
                consumed_capacity: 0.0,
                files: vec![],
            }],
        }
    }

    #[test]
    fn a_segment_that_has_not_started_never_reads_back_as_done() {
        for position in [
            Position::Start,
            Position::After(serde_json::json!({"pk": {"S": "a"}})),
            Position::Done,
        ] {
            let bytes = serde_json::to_vec(&one_segment(position.clone())).unwrap();
            let back = Checkpoint::from_json(&bytes, "j1", None).unwrap();
            assert_eq!(back.segments[0].position, position);
        }
        assert!(!one_segment(Position::Start).is_complete());
    }

    #[test]
    fn version_1_checkpoints_still_resume() {
        let v1 = serde_json::json!({
            "version": 1, "job_id": "j1", "sequence": 1, "total_segments": 2,
            "started_at": "2025-07-06T02:00:00Z", "elapsed_ms": 10,
            "segments": [
                {"segment": 0, "resume_key": {"pk": {"S": "a"}}, "next_file": 1, "pages": 1,
                 "items": 1, "consumed_capacity": 0.5, "files": []},
                {"segment": 1, "resume_key": null, "next_file": 1, "pages": 1,
                 "items": 1, "consumed_capacity": 0.5, "files": []}
            ]
        });
        let back = Checkpoint::from_json(v1.to_string().as_bytes(), "j1", None).unwrap();
        assert_eq!(
            back.segments[0].position,
            Position::After(serde_json::json!({"pk": {"S": "a"}}))
        );
        assert_eq!(back.segments[1].position, Position::Done);
        // The next leg's checkpoint, written from it, reads back the same.
        let next = serde_json::to_vec(&back).unwrap();
        assert_eq!(Checkpoint::from_json(&next, "j1", None).unwrap(), back);
    }
}

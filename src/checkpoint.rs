//! Checkpoints let one backup span several Lambda invocations (each at most 15 minutes). When a
//! leg nears its deadline every segment stops at a page boundary, closes its open file, and the
//! leg stores a checkpoint: per segment, the `LastEvaluatedKey` to resume from (a resumed scan
//! must use the same segment of the same segment count) and the files already complete. The next
//! leg starts from the newest checkpoint, and the final manifest lists every file exactly once.
//!
//! Checkpoints live beside the data: `{backup}/checkpoints/{sequence:05}.json`, sequence from 1.

use serde::{Deserialize, Serialize};

use crate::decode::decode_dynamodb_json_line;
use crate::encode::{DynamoDbJsonEncoder, Item, RecordEncoder};
use crate::manifest::FileEntry;

/// Checkpoint schema version.
pub const CHECKPOINT_VERSION: u32 = 1;

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
    /// When the first leg started (RFC 3339).
    pub started_at: String,
    /// Working time of all legs so far, excluding the gaps between them.
    pub elapsed_ms: u64,
    /// One entry per segment, in segment order.
    pub segments: Vec<SegmentCheckpoint>,
}

/// Where one segment stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentCheckpoint {
    /// The segment.
    pub segment: u32,
    /// The key to resume from, as a DynamoDB JSON map; `None` once the segment is done.
    pub resume_key: Option<serde_json::Value>,
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

impl SegmentCheckpoint {
    /// Whether the segment has been read to its end.
    pub fn is_done(&self) -> bool {
        self.resume_key.is_none()
    }
}

/// A checkpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {what}: {message}")]
pub struct CheckpointError {
    /// Which checkpoint or field.
    pub what: String,
    /// What is wrong.
    pub message: String,
}

impl Checkpoint {
    /// Parses and checks a stored checkpoint against the job it is meant to resume.
    pub fn from_json(bytes: &[u8], job_id: &str) -> Result<Checkpoint, CheckpointError> {
        let fail = |message: String| CheckpointError {
            what: format!("of job {job_id}"),
            message,
        };
        let checkpoint: Checkpoint = serde_json::from_slice(bytes)
            .map_err(|e| fail(format!("not a ddb-backup checkpoint: {e}")))?;
        if checkpoint.version > CHECKPOINT_VERSION {
            return Err(fail(format!(
                "version {} is newer than this ddb-backup understands ({CHECKPOINT_VERSION})",
                checkpoint.version
            )));
        }
        if checkpoint.job_id != job_id {
            return Err(fail(format!("belongs to job {}", checkpoint.job_id)));
        }
        let segments_in_order = checkpoint
            .segments
            .iter()
            .enumerate()
            .all(|(i, s)| s.segment as usize == i);
        if checkpoint.segments.len() != checkpoint.total_segments as usize || !segments_in_order {
            return Err(fail(format!(
                "lists {} segments for a scan of {}",
                checkpoint.segments.len(),
                checkpoint.total_segments
            )));
        }
        Ok(checkpoint)
    }

    /// Whether every segment has been read to its end.
    pub fn is_complete(&self) -> bool {
        self.segments.iter().all(SegmentCheckpoint::is_done)
    }
}

/// A scan key as DynamoDB JSON, exact for every key type (S, N, B).
pub fn key_to_json(key: &Item) -> Result<serde_json::Value, CheckpointError> {
    let fail = |message: String| CheckpointError {
        what: "resume key".to_string(),
        message,
    };
    let mut line = Vec::new();
    DynamoDbJsonEncoder::default()
        .encode_batch(std::slice::from_ref(key), &mut line)
        .map_err(|e| fail(e.to_string()))?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&line).map_err(|e| fail(e.to_string()))?;
    Ok(value
        .get_mut("Item")
        .map(serde_json::Value::take)
        .unwrap_or_default())
}

/// The scan key stored by [`key_to_json`].
pub fn key_from_json(value: &serde_json::Value) -> Result<Item, CheckpointError> {
    let line = serde_json::json!({ "Item": value }).to_string();
    decode_dynamodb_json_line(&line).map_err(|e| CheckpointError {
        what: "resume key".to_string(),
        message: e.to_string(),
    })
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
        assert_eq!(key_from_json(&json).unwrap(), key);
    }

    #[test]
    fn a_checkpoint_of_another_job_or_with_missing_segments_is_refused() {
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            job_id: "j1".into(),
            sequence: 1,
            total_segments: 2,
            started_at: "2025-07-06T02:00:00Z".into(),
            elapsed_ms: 10,
            segments: vec![SegmentCheckpoint {
                segment: 0,
                resume_key: None,
                next_file: 1,
                pages: 1,
                items: 1,
                consumed_capacity: 0.5,
                files: vec![],
            }],
        };
        let bytes = serde_json::to_vec(&checkpoint).unwrap();
        let err = Checkpoint::from_json(&bytes, "j2").unwrap_err();
        assert!(err.to_string().contains("belongs to job j1"), "{err}");
        let err = Checkpoint::from_json(&bytes, "j1").unwrap_err();
        assert!(
            err.to_string().contains("1 segments for a scan of 2"),
            "{err}"
        );
    }
}

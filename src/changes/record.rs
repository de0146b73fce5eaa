//! The two shapes a change takes: a stream record as Lambda delivers it, and the line stored for
//! it. Item images are never decoded on the way through: they stay the bytes DynamoDB sent
//! (numbers with all their digits, base64 binary, sets), carried as raw JSON.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What a change did to its item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventName {
    /// A new item.
    Insert,
    /// An item replaced or updated.
    Modify,
    /// An item deleted (by a caller, or by TTL).
    Remove,
}

/// A batch of stream records, as Lambda's event source mapping delivers it (`{"Records":[…]}`).
#[derive(Debug, Deserialize)]
pub struct StreamBatch {
    /// The records, in stream order, all from one shard.
    #[serde(rename = "Records")]
    pub records: Vec<StreamRecord>,
}

/// One record of a DynamoDB stream in Lambda's event shape.
#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    /// What happened.
    #[serde(rename = "eventName")]
    pub event_name: EventName,
    /// `arn:aws:dynamodb:{region}:{account}:table/{table}/stream/{label}`.
    #[serde(rename = "eventSourceARN")]
    pub event_source_arn: String,
    /// The change itself.
    pub dynamodb: StreamChange,
}

/// The `dynamodb` part of a stream record.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamChange {
    /// When the change was written, in seconds since the epoch (DynamoDB rounds it down to the
    /// second).
    pub approximate_creation_date_time: f64,
    /// The item's key attributes.
    pub keys: Box<RawValue>,
    /// The item after the change (absent for a delete).
    #[serde(default)]
    pub new_image: Option<Box<RawValue>>,
    /// The item before the change (absent for an insert).
    #[serde(default)]
    pub old_image: Option<Box<RawValue>>,
    /// Position in its shard.
    pub sequence_number: String,
    /// `NEW_AND_OLD_IMAGES`, `NEW_IMAGE`, `OLD_IMAGE` or `KEYS_ONLY`.
    #[serde(default)]
    pub stream_view_type: Option<String>,
}

impl StreamRecord {
    /// When the change was written, in microseconds since the epoch.
    pub fn write_micros(&self) -> i64 {
        (self.dynamodb.approximate_creation_date_time * 1_000_000.0).round() as i64
    }
}

/// A number in DynamoDB JSON (`{"N":"…"}`), as native exports write their metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedNumber {
    /// The digits.
    #[serde(rename = "N")]
    pub n: String,
}

/// The metadata of a stored change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineMetadata {
    /// When the change was written, in microseconds since the epoch.
    #[serde(rename = "WriteTimestampMicros")]
    pub write_timestamp_micros: TypedNumber,
}

/// One stored change: a line of a change object. `Metadata`, `Keys`, `NewImage` and `OldImage`
/// are the lines of DynamoDB's native incremental export; `EventName`, `Shard` and
/// `SequenceNumber` place the change in its stream, which is what orders one item's changes
/// across shard splits.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeLine {
    /// When it was written.
    #[serde(rename = "Metadata")]
    pub metadata: LineMetadata,
    /// The item's key attributes.
    #[serde(rename = "Keys")]
    pub keys: Box<RawValue>,
    /// The item after the change; absent when the change deleted it.
    #[serde(rename = "NewImage", default, skip_serializing_if = "Option::is_none")]
    pub new_image: Option<Box<RawValue>>,
    /// The item before the change; absent when the change created it.
    #[serde(rename = "OldImage", default, skip_serializing_if = "Option::is_none")]
    pub old_image: Option<Box<RawValue>>,
    /// What the change did.
    #[serde(rename = "EventName")]
    pub event_name: EventName,
    /// The stream shard it was read from.
    #[serde(rename = "Shard")]
    pub shard: String,
    /// Its sequence number in that shard.
    #[serde(rename = "SequenceNumber")]
    pub sequence: String,
}

impl ChangeLine {
    /// The stored line for `record`, read from `shard`.
    pub fn from_record(record: StreamRecord, shard: &str) -> Result<ChangeLine, String> {
        let micros = record.write_micros();
        let change = record.dynamodb;
        if record.event_name != EventName::Remove && change.new_image.is_none() {
            return Err(format!(
                "stream record {} has no NewImage: the stream's view type is {}, and capture \
                 needs NEW_AND_OLD_IMAGES (or NEW_IMAGE)",
                change.sequence_number,
                change.stream_view_type.as_deref().unwrap_or("unknown")
            ));
        }
        Ok(ChangeLine {
            metadata: LineMetadata {
                write_timestamp_micros: TypedNumber {
                    n: micros.to_string(),
                },
            },
            keys: one_line(change.keys)?,
            new_image: change.new_image.map(one_line).transpose()?,
            old_image: change.old_image.map(one_line).transpose()?,
            event_name: record.event_name,
            shard: shard.to_string(),
            sequence: change.sequence_number,
        })
    }

    /// When the change was written, in microseconds since the epoch.
    pub fn write_micros(&self) -> Result<i64, String> {
        self.metadata.write_timestamp_micros.n.parse().map_err(|_| {
            format!(
                "WriteTimestampMicros `{}` is not a whole number",
                self.metadata.write_timestamp_micros.n
            )
        })
    }
}

/// The JSON as sent, unless it spans lines (whitespace DynamoDB does not send but JSON allows):
/// then the same value written compactly, numbers and strings untouched.
fn one_line(raw: Box<RawValue>) -> Result<Box<RawValue>, String> {
    if !raw.get().contains(['\n', '\r']) {
        return Ok(raw);
    }
    let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    serde_json::value::to_raw_value(&value).map_err(|e| e.to_string())
}

pub use crate::model::changes::compare_sequence;

/// The table a stream belongs to, from its ARN (`…:table/{table}/stream/{label}`).
pub fn table_of_stream(stream_arn: &str) -> Option<&str> {
    let rest = stream_arn.split_once(":table/")?.1;
    let (table, tail) = rest.split_once('/')?;
    tail.starts_with("stream/").then_some(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"Records":[{"eventID":"1","eventName":"MODIFY","eventVersion":"1.1",
      "eventSource":"aws:dynamodb","awsRegion":"us-east-1",
      "dynamodb":{"ApproximateCreationDateTime":1796637851.809,"Keys":{"pk":{"S":"a"}},
        "NewImage":{"pk":{"S":"a"},"n":{"N":"12345678901234567890123456789012345678"},"b":{"B":"AAE="},"e":{"S":""}},
        "OldImage":{"pk":{"S":"a"},
           "m":{"M":{"x":{"NS":["1","0.0000000000000000000000000000000000001"]}}}},
        "SequenceNumber":"1100000000017454423010","SizeBytes":333,"StreamViewType":"NEW_AND_OLD_IMAGES"},
      "eventSourceARN":"arn:aws:dynamodb:us-east-1:123456789012:table/studentData/stream/2026-12-07T10:04:11.799"}]}"#;

    /// The old image spans two lines, as JSON allows: it is written on one, values untouched.
    #[test]
    fn a_record_becomes_a_line_with_its_bytes_untouched() {
        let batch: StreamBatch = serde_json::from_str(EVENT).unwrap();
        let record = batch.records.into_iter().next().unwrap();
        assert_eq!(
            table_of_stream(&record.event_source_arn),
            Some("studentData")
        );
        let line = ChangeLine::from_record(record, "shardId-1").unwrap();
        let text = serde_json::to_string(&line).unwrap();
        assert_eq!(
            text,
            r#"{"Metadata":{"WriteTimestampMicros":{"N":"1796637851809000"}},"Keys":{"pk":{"S":"a"}},"NewImage":{"pk":{"S":"a"},"n":{"N":"12345678901234567890123456789012345678"},"b":{"B":"AAE="},"e":{"S":""}},"OldImage":{"m":{"M":{"x":{"NS":["1","0.0000000000000000000000000000000000001"]}}},"pk":{"S":"a"}},"EventName":"MODIFY","Shard":"shardId-1","SequenceNumber":"1100000000017454423010"}"#
        );
        let back: ChangeLine = serde_json::from_str(&text).unwrap();
        assert_eq!(back.write_micros().unwrap(), 1_796_637_851_809_000);
        assert!(!text.contains('\n'));
    }

    #[test]
    fn a_stream_without_new_images_is_refused_with_the_fix() {
        let keys_only = EVENT.replace("\"NewImage\"", "\"Ignored\"");
        let batch: StreamBatch = serde_json::from_str(&keys_only).unwrap();
        let record = batch.records.into_iter().next().unwrap();
        let err = ChangeLine::from_record(record, "s").unwrap_err();
        assert!(err.contains("NEW_AND_OLD_IMAGES"), "{err}");
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_sequence("99", "100"), Less);
        assert_eq!(compare_sequence("200", "100"), Greater);
        assert_eq!(compare_sequence("7", "7"), Equal);
        assert_eq!(table_of_stream("arn:aws:dynamodb:r:1:table/t"), None);
    }
}

//! The stream port: what capture and restore ask of a table's DynamoDB stream. Capture asks which
//! shard a delivered batch came from (Lambda's event does not say); restore asks whether a shard
//! holds changes the capture has not stored yet. The DynamoDB Streams adapter answers through
//! the SDK; [`MemoryStream`] is a twin that splits shards, which the emulator's stream never does.

use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;

use crate::aws::{error_facts, BoxError, FailureKind};
use crate::error::Retryable;
use crate::model::changes::compare_sequence;

/// A shard of a stream, as DescribeStream lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its id.
    pub shard_id: String,
    /// The shard it split from, if any: all of a key's changes in the parent come before its
    /// changes in the child.
    pub parent_shard_id: Option<String>,
    /// Its first sequence number.
    pub starting_sequence: String,
    /// Its last sequence number, once it is closed.
    pub ending_sequence: Option<String>,
}

impl ShardInfo {
    /// Whether `sequence` lies in the shard's range (an open shard's range has no end).
    pub fn may_hold(&self, sequence: &str) -> bool {
        compare_sequence(&self.starting_sequence, sequence).is_le()
            && self
                .ending_sequence
                .as_deref()
                .is_none_or(|end| compare_sequence(sequence, end).is_le())
    }
}

/// A record's place and time in its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMark {
    /// Its sequence number.
    pub sequence: String,
    /// When it was written, in microseconds since the epoch.
    pub write_micros: i64,
}

/// Why a stream call failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The stream is gone (disabled, or replaced by a new one).
    #[error(
        "stream {stream} does not exist any more: its table's stream was disabled or replaced"
    )]
    Gone {
        /// The stream ARN.
        stream: String,
    },
    /// The position asked for is older than the stream keeps (24 hours).
    #[error("shard {shard} no longer holds the records after {after}: they are older than the stream keeps (24 hours)")]
    Trimmed {
        /// The shard.
        shard: String,
        /// The sequence number asked after.
        after: String,
    },
    /// Any other failure, after the SDK's retries.
    #[error("{operation} on {stream} failed: {message}")]
    Request {
        /// The API call.
        operation: &'static str,
        /// The stream ARN.
        stream: String,
        /// What kind of failure, which decides whether to try again.
        kind: FailureKind,
        /// One line saying what happened.
        message: String,
        /// The SDK's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl Retryable for StreamError {
    fn is_retryable(&self) -> bool {
        match self {
            StreamError::Gone { .. } | StreamError::Trimmed { .. } => false,
            StreamError::Request { kind, .. } => kind.is_retryable(),
        }
    }
}

/// The stream port.
#[async_trait]
pub trait ChangeStream: Send + Sync {
    /// Every shard the stream still lists (open ones, and closed ones for 24 hours).
    async fn shards(&self, stream_arn: &str) -> Result<Vec<ShardInfo>, StreamError>;

    /// The first record of `shard` after `after` (from its oldest record when `None`); `None`
    /// when the shard holds no such record now.
    async fn first_after(
        &self,
        stream_arn: &str,
        shard: &str,
        after: Option<&str>,
    ) -> Result<Option<RecordMark>, StreamError>;

    /// Whether the record `sequence` is in `shard`: how capture tells apart shards whose ranges
    /// overlap.
    async fn holds(
        &self,
        stream_arn: &str,
        shard: &str,
        sequence: &str,
    ) -> Result<bool, StreamError>;
}

/// Pages read past empty ones before a shard counts as holding nothing newer: DynamoDB
/// Streams may answer an iterator with empty pages before the records it holds.
const EMPTY_PAGES: usize = 20;

/// The DynamoDB Streams adapter.
#[derive(Clone)]
pub struct DynamoDbStreams {
    client: aws_sdk_dynamodbstreams::Client,
}

impl DynamoDbStreams {
    /// An adapter over `client`.
    pub fn new(client: aws_sdk_dynamodbstreams::Client) -> Self {
        DynamoDbStreams { client }
    }
}

fn stream_error<E>(
    operation: &'static str,
    stream: &str,
    shard: &str,
    after: Option<&str>,
    err: aws_sdk_dynamodbstreams::error::SdkError<
        E,
        aws_sdk_dynamodbstreams::config::http::HttpResponse,
    >,
) -> StreamError
where
    E: aws_sdk_dynamodbstreams::error::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    let facts = error_facts(&err);
    match facts.code.as_deref() {
        Some("ResourceNotFoundException") => StreamError::Gone {
            stream: stream.to_string(),
        },
        Some("TrimmedDataAccessException") => StreamError::Trimmed {
            shard: shard.to_string(),
            after: after.unwrap_or("its start").to_string(),
        },
        _ => StreamError::Request {
            operation,
            stream: stream.to_string(),
            kind: facts.kind,
            message: facts.message,
            source: Some(err.into()),
        },
    }
}

fn micros(record: &aws_sdk_dynamodbstreams::types::Record) -> Option<RecordMark> {
    let change = record.dynamodb()?;
    let at = change.approximate_creation_date_time()?;
    Some(RecordMark {
        sequence: change.sequence_number()?.to_string(),
        write_micros: at.secs() * 1_000_000 + i64::from(at.subsec_nanos() / 1000),
    })
}

#[async_trait]
impl ChangeStream for DynamoDbStreams {
    async fn shards(&self, stream_arn: &str) -> Result<Vec<ShardInfo>, StreamError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(|e| stream_error("DescribeStream", stream_arn, "", None, e))?;
            let Some(description) = out.stream_description else {
                break;
            };
            for shard in description.shards() {
                let range = shard.sequence_number_range();
                shards.push(ShardInfo {
                    shard_id: shard.shard_id().unwrap_or_default().to_string(),
                    parent_shard_id: shard.parent_shard_id().map(str::to_string),
                    starting_sequence: range
                        .and_then(|r| r.starting_sequence_number())
                        .unwrap_or_default()
                        .to_string(),
                    ending_sequence: range
                        .and_then(|r| r.ending_sequence_number())
                        .map(str::to_string),
                });
            }
            match description.last_evaluated_shard_id() {
                Some(last) => start = Some(last.to_string()),
                None => break,
            }
        }
        Ok(shards)
    }

    async fn first_after(
        &self,
        stream_arn: &str,
        shard: &str,
        after: Option<&str>,
    ) -> Result<Option<RecordMark>, StreamError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard);
        let request = match after {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator = request
            .send()
            .await
            .map_err(|e| stream_error("GetShardIterator", stream_arn, shard, after, e))?
            .shard_iterator;
        for _ in 0..EMPTY_PAGES {
            let Some(current) = iterator.take() else {
                break;
            };
            let out = self
                .client
                .get_records()
                .shard_iterator(current)
                .limit(1)
                .send()
                .await
                .map_err(|e| stream_error("GetRecords", stream_arn, shard, after, e))?;
            if let Some(mark) = out.records().first().and_then(micros) {
                return Ok(Some(mark));
            }
            iterator = out.next_shard_iterator;
        }
        Ok(None)
    }

    async fn holds(
        &self,
        stream_arn: &str,
        shard: &str,
        sequence: &str,
    ) -> Result<bool, StreamError> {
        let iterator = match self
            .client
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(sequence)
            .send()
            .await
        {
            Ok(out) => out.shard_iterator,
            // A sequence number from another shard is refused as invalid.
            Err(e) if error_facts(&e).kind == FailureKind::Rejected => return Ok(false),
            Err(e) => return Err(stream_error("GetShardIterator", stream_arn, shard, None, e)),
        };
        let Some(iterator) = iterator else {
            return Ok(false);
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(1)
            .send()
            .await
            .map_err(|e| stream_error("GetRecords", stream_arn, shard, None, e))?;
        Ok(out
            .records()
            .first()
            .and_then(micros)
            .is_some_and(|mark| mark.sequence == sequence))
    }
}

/// One shard of the twin.
#[derive(Debug, Clone)]
struct TwinShard {
    info: ShardInfo,
    records: Vec<RecordMark>,
}

/// An in-memory stream whose shards split, with sequence numbers chosen by the test: the twin
/// for what the emulator's single-shard stream cannot show.
#[derive(Debug, Default)]
pub struct MemoryStream {
    shards: Mutex<Vec<TwinShard>>,
}

impl MemoryStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a shard starting at `start`, split from `parent`.
    pub fn open_shard(&self, shard: &str, parent: Option<&str>, start: &str) {
        self.lock().push(TwinShard {
            info: ShardInfo {
                shard_id: shard.to_string(),
                parent_shard_id: parent.map(str::to_string),
                starting_sequence: start.to_string(),
                ending_sequence: None,
            },
            records: Vec::new(),
        });
    }

    /// Appends a record to `shard`.
    pub fn push(&self, shard: &str, sequence: &str, write_micros: i64) {
        if let Some(s) = self.lock().iter_mut().find(|s| s.info.shard_id == shard) {
            s.records.push(RecordMark {
                sequence: sequence.to_string(),
                write_micros,
            });
        }
    }

    /// Closes `shard` at its last record.
    pub fn close(&self, shard: &str) {
        if let Some(s) = self.lock().iter_mut().find(|s| s.info.shard_id == shard) {
            s.info.ending_sequence = s.records.last().map(|r| r.sequence.clone());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TwinShard>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ChangeStream for MemoryStream {
    async fn shards(&self, _stream_arn: &str) -> Result<Vec<ShardInfo>, StreamError> {
        Ok(self.lock().iter().map(|s| s.info.clone()).collect())
    }

    async fn first_after(
        &self,
        _stream_arn: &str,
        shard: &str,
        after: Option<&str>,
    ) -> Result<Option<RecordMark>, StreamError> {
        Ok(self
            .lock()
            .iter()
            .find(|s| s.info.shard_id == shard)
            .and_then(|s| {
                s.records
                    .iter()
                    .find(|r| after.is_none_or(|a| compare_sequence(&r.sequence, a).is_gt()))
                    .cloned()
            }))
    }

    async fn holds(
        &self,
        _stream_arn: &str,
        shard: &str,
        sequence: &str,
    ) -> Result<bool, StreamError> {
        Ok(self
            .lock()
            .iter()
            .find(|s| s.info.shard_id == shard)
            .is_some_and(|s| s.records.iter().any(|r| r.sequence == sequence)))
    }
}

//! The change-capture Lambda's events: a batch from the table's stream (event source mapping),
//! or a message on the capture's failure queue, which Lambda's on-failure destination fills with
//! the batches it gave up on. The handler parses which it is and hands it to [`Capture`].

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::changes::{Capture, CaptureError, FailedBatch, StreamBatch};

/// Why an event could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum StreamEventError {
    /// The event is neither a stream batch nor a failure-queue batch.
    #[error("not a DynamoDB stream or SQS event: {0}")]
    Unknown(String),
    /// The batch was not stored; Lambda retries it, splits it, and finally gives up on it.
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "Records", default)]
    records: Vec<ProbeRecord>,
}

#[derive(Deserialize)]
struct ProbeRecord {
    #[serde(rename = "eventSource", default)]
    event_source: Option<String>,
}

#[derive(Deserialize)]
struct QueueBatch {
    #[serde(rename = "Records")]
    records: Vec<QueueRecord>,
}

#[derive(Deserialize)]
struct QueueRecord {
    #[serde(rename = "messageId")]
    message_id: String,
    body: String,
}

/// Handles one invocation; the answer is a partial batch response.
///
/// A stream batch is stored whole or not at all, so a failure fails the invocation: Lambda
/// retries it and, with `BisectBatchOnFunctionError`, splits it until the record at fault is
/// alone, then hands it to the on-failure destination. A failure-queue message that cannot be
/// recorded is reported by its id and comes back.
pub async fn handle(capture: &Capture, event: &RawValue) -> Result<Value, StreamEventError> {
    let probe: Probe =
        serde_json::from_str(event.get()).map_err(|e| StreamEventError::Unknown(e.to_string()))?;
    let source = probe
        .records
        .first()
        .and_then(|r| r.event_source.clone())
        .unwrap_or_default();
    match source.as_str() {
        "aws:dynamodb" => {
            let batch: StreamBatch = serde_json::from_str(event.get())
                .map_err(|e| StreamEventError::Unknown(e.to_string()))?;
            let outcome = capture.store_batch(batch).await?;
            tracing::info!(?outcome, "stream batch");
            Ok(json!({ "batchItemFailures": [] }))
        }
        "aws:sqs" => {
            let batch: QueueBatch = serde_json::from_str(event.get())
                .map_err(|e| StreamEventError::Unknown(e.to_string()))?;
            let mut failures = Vec::new();
            for record in batch.records {
                let recorded = match FailedBatch::from_destination_message(&record.body) {
                    Ok(failed) => capture.record_failure(&failed).await.map(|_| ()),
                    Err(message) => {
                        // Not a stream failure record: keeping it would only bring it back.
                        tracing::error!(message_id = %record.message_id, %message, "dropped");
                        Ok(())
                    }
                };
                if let Err(err) = recorded {
                    tracing::error!(message_id = %record.message_id, error = %err, "failed batch not recorded");
                    failures.push(json!({ "itemIdentifier": record.message_id }));
                }
            }
            Ok(json!({ "batchItemFailures": failures }))
        }
        "" if probe.records.is_empty() => Ok(json!({ "batchItemFailures": [] })),
        other => Err(StreamEventError::Unknown(format!("event source `{other}`"))),
    }
}

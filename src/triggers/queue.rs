//! The job queue port. Every trigger (API, schedule, operator) ends as a message on one SQS queue,
//! and the worker puts a continuation there when a job outlives one invocation. The SQS adapter is
//! production; the in-memory one serves fast tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::aws::error_facts;

/// A message attribute carrying why a message was moved to the dead-letter queue.
pub const REASON_ATTRIBUTE: &str = "ddb-backup-reason";

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The caller may not send to the queue.
    #[error("access denied: SendMessage to {queue}: {message}; grant sqs:SendMessage on the queue to the role")]
    AccessDenied {
        /// Queue URL.
        queue: String,
        /// Service message.
        message: String,
    },
    /// The queue does not exist.
    #[error("queue {queue} does not exist: check the queue URL (DDB_BACKUP_QUEUE_URL) and region")]
    QueueMissing {
        /// Queue URL.
        queue: String,
    },
    /// Any other failure, after the SDK's retries.
    #[error("SendMessage to {queue} failed: {message}")]
    Request {
        /// Queue URL.
        queue: String,
        /// Error with causes.
        message: String,
    },
    /// A received message's visibility could not be changed (its receipt handle expired, or the
    /// role lacks `sqs:ChangeMessageVisibility`): it comes back after the queue's own timeout.
    #[error("ChangeMessageVisibility on {queue} failed: {message}")]
    Visibility {
        /// Queue URL.
        queue: String,
        /// Error with causes.
        message: String,
    },
}

/// The queue port: send one message body, get its message id back.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends `body`, with an optional `reason` attribute (for dead letters).
    async fn send(&self, body: &str, reason: Option<&str>) -> Result<String, QueueError>;

    /// Makes a received message (by its receipt handle) visible again after `delay` instead of
    /// after the queue's visibility timeout: how a retry comes back in seconds, not in the
    /// 90 minutes the queue keeps for a running job.
    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError>;

    /// Where messages go, for logs.
    fn describe(&self) -> String;

    /// The queue's name: the last part of its URL, and of the `eventSourceARN` of the messages
    /// Lambda delivers from it.
    fn name(&self) -> String {
        queue_name(&self.describe()).to_string()
    }
}

/// The queue name in a queue URL (`https://sqs.…/123456789012/name`) or ARN
/// (`arn:aws:sqs:region:account:name`).
pub fn queue_name(url_or_arn: &str) -> &str {
    url_or_arn.rsplit(['/', ':']).next().unwrap_or(url_or_arn)
}

/// SQS adapter.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// A queue at `url` reached through `client`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

#[async_trait]
impl JobQueue for SqsQueue {
    async fn send(&self, body: &str, reason: Option<&str>) -> Result<String, QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        if let Some(reason) = reason {
            // SQS attribute values are limited to the message size; a reason is a line of text.
            let reason: String = reason.chars().take(2000).collect();
            request = request.message_attributes(
                REASON_ATTRIBUTE,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(reason)
                    .build()
                    .map_err(|e| QueueError::Request {
                        queue: self.url.clone(),
                        message: e.to_string(),
                    })?,
            );
        }
        let out = request.send().await.map_err(|err| {
            let facts = error_facts(&err);
            if facts.is_access_denied() {
                QueueError::AccessDenied {
                    queue: self.url.clone(),
                    message: facts.message,
                }
            } else if matches!(
                facts.code.as_deref(),
                Some("AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist")
            ) {
                QueueError::QueueMissing {
                    queue: self.url.clone(),
                }
            } else {
                QueueError::Request {
                    queue: self.url.clone(),
                    message: facts.message,
                }
            }
        })?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        // SQS's longest visibility timeout is 12 hours.
        let seconds = delay.as_secs().min(12 * 3600) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|err| QueueError::Visibility {
                queue: self.url.clone(),
                message: error_facts(&err).message,
            })?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// A message kept by [`MemoryQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// Generated id.
    pub id: String,
    /// Body.
    pub body: String,
    /// The reason attribute, if any.
    pub reason: Option<String>,
}

/// A queue in memory, for tests of the API and the worker without an emulator.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    name: String,
    messages: Arc<Mutex<Vec<SentMessage>>>,
    delays: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        MemoryQueue::named("memory-queue")
    }
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty queue called `name` (the dead-letter queue and the job queue of one test).
    pub fn named(name: &str) -> Self {
        MemoryQueue {
            name: name.to_string(),
            messages: Arc::default(),
            delays: Arc::default(),
        }
    }

    /// Every `delay` asked for so far: (receipt handle, delay).
    pub fn delays(&self) -> Vec<(String, Duration)> {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes every message sent so far.
    pub fn drain(&self) -> Vec<SentMessage> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Messages sent so far, left in place.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(&self, body: &str, reason: Option<&str>) -> Result<String, QueueError> {
        let id = uuid::Uuid::new_v4().to_string();
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(SentMessage {
                id: id.clone(),
                body: body.to_string(),
                reason: reason.map(str::to_string),
            });
        Ok(id)
    }

    async fn delay(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((receipt_handle.to_string(), delay));
        Ok(())
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_named_alike_by_its_url_and_by_its_arn() {
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/ddb-backup-dead-letters";
        let arn = "arn:aws:sqs:us-east-1:123456789012:ddb-backup-dead-letters";
        assert_eq!(queue_name(url), "ddb-backup-dead-letters");
        assert_eq!(queue_name(url), queue_name(arn));
        assert_eq!(
            queue_name("http://localhost:5000/000000000000/jobs"),
            "jobs"
        );
        assert_eq!(MemoryQueue::named("dlq").name(), "dlq");
    }
}

//! The job queue port. Every trigger (API, schedule, operator) ends as a message on one SQS queue,
//! and the worker puts a continuation there when a job outlives one invocation. The SQS adapter is
//! production; the in-memory one serves fast tests.

use std::sync::{Arc, Mutex};

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
}

/// The queue port: send one message body, get its message id back.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Sends `body`, with an optional `reason` attribute (for dead letters).
    async fn send(&self, body: &str, reason: Option<&str>) -> Result<String, QueueError>;

    /// Where messages go, for logs.
    fn describe(&self) -> String;
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
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    messages: Arc<Mutex<Vec<SentMessage>>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
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

    fn describe(&self) -> String {
        "memory queue".to_string()
    }
}

//! SQS queues and SES's outbox in the emulator: queues with a dead-letter queue, Lambda SQS events, and the emails moto recorded.

use super::*;
use ddb_backup::aws::AwsContext;

/// What moto holds, from `GET /moto-api/data.json` (sent emails are under `.ses.Message[]`).
/// moto serializes its whole state for this request; while other tests change that state it
/// sometimes answers 500 instead, so the request is repeated a few times.
pub fn moto_data() -> serde_json::Value {
    let mut last = String::new();
    for attempt in 0..10 {
        let (status, body) = get_moto_data();
        if status.contains(" 200 ") {
            if let Ok(data) = serde_json::from_slice(&body) {
                return data;
            }
        }
        last = format!("{status}: {}", String::from_utf8_lossy(&body));
        std::thread::sleep(std::time::Duration::from_millis(50 * (attempt + 1)));
    }
    panic!("moto's data.json never came back as JSON; last answer {last}");
}

/// One `GET /moto-api/data.json`: the status line and the body.
fn get_moto_data() -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let endpoint = endpoint();
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the emulator");
    write!(
        stream,
        "GET /moto-api/data.json HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let status = String::from_utf8_lossy(&response[..split])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    (status, response[split + 4..].to_vec())
}

/// Emails moto accepted through SES, as (subject, html body, recipients).
pub fn sent_emails() -> Vec<(String, String, Vec<String>)> {
    let data = moto_data();
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["subject"].as_str().unwrap_or_default().to_string(),
                m["body"].as_str().unwrap_or_default().to_string(),
                m["destinations"]["ToAddresses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect(),
            )
        })
        .collect()
}

/// A job queue with its dead-letter queue (redrive after `max_receives`), as infra/ makes them.
pub async fn create_queues(aws: &AwsContext, name: &str, max_receives: u32) -> (String, String) {
    let sqs = aws.sqs();
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the dead-letter queue")
        .queue_url
        .expect("dlq url");
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("dlq arn");
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
                .to_string(),
        )
        .send()
        .await
        .expect("create the job queue")
        .queue_url
        .expect("queue url");
    (queue, dlq)
}

/// The ARN of `queue`, as the Lambda event's `eventSourceARN` carries it.
pub async fn queue_arn(aws: &AwsContext, queue: &str) -> String {
    aws.sqs()
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn")
}

/// Makes `sender` an SES identity the emulator accepts as a sender.
pub async fn verify_sender(aws: &AwsContext, sender: &str) {
    aws.sesv2()
        .create_email_identity()
        .email_identity(sender)
        .send()
        .await
        .expect("create the sender identity");
}

/// Receives what is on `queue` (up to 10), with the attributes Lambda's event carries.
pub async fn receive(aws: &AwsContext, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    receive_hidden_for(aws, queue, 60).await
}

/// Receives up to 10 messages of `queue`, hidden from other receivers for `seconds`: what an
/// event source mapping hands to one invocation.
pub async fn receive_hidden_for(
    aws: &AwsContext,
    queue: &str,
    seconds: i32,
) -> Vec<aws_sdk_sqs::types::Message> {
    aws.sqs()
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(seconds)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive messages")
        .messages
        .unwrap_or_default()
}

/// The Lambda SQS event for `messages`, exactly as the event source mapping delivers it.
pub fn sqs_event_json(
    messages: &[aws_sdk_sqs::types::Message],
    queue_arn: &str,
) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), serde_json::json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    serde_json::json!({
                                        "stringValue": v.string_value(),
                                        "stringListValues": [],
                                        "binaryListValues": [],
                                        "dataType": v.data_type(),
                                    }),
                                )
                            })
                            .collect::<serde_json::Map<String, serde_json::Value>>()
                    })
                    .unwrap_or_default(),
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// Does what Lambda's event source mapping does after an invocation: deletes every message not
/// reported as a batch item failure.
pub async fn acknowledge(
    aws: &AwsContext,
    queue: &str,
    messages: &[aws_sdk_sqs::types::Message],
    failures: &[String],
) {
    for m in messages {
        if !failures.iter().any(|f| Some(f.as_str()) == m.message_id()) {
            aws.sqs()
                .delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete message");
        }
    }
}

//! Every job ends once, on the emulator's real queues: a share killed at every delivery is
//! moved to the dead-letter queue by SQS's own redrive policy, and the worker subscribed to that
//! queue fails the job with one email and keeps the message for a redrive. Also: a retry's
//! early return goes through the real ChangeMessageVisibility.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use tokio::time::Instant;

use crate::common::*;
use ddb_backup::aws::AwsContext;
use ddb_backup::runtime::config::Settings;
use ddb_backup::runtime::service;
use ddb_backup::triggers::queue::{JobQueue, SqsQueue};
use ddb_backup::triggers::worker::Worker;

const SENDER: &str = "backup@example.com";

/// Hands `messages` from `queue` to `worker` as one Lambda invocation and acknowledges them as
/// the event source mapping would.
async fn invoke(
    aws: &AwsContext,
    worker: &Worker,
    queue: &str,
    messages: &[aws_sdk_sqs::types::Message],
) {
    if messages.is_empty() {
        return;
    }
    let event: SqsEvent =
        serde_json::from_value(sqs_event_json(messages, &queue_arn(aws, queue).await)).unwrap();
    let response = worker
        .handle_sqs_event(event, Instant::now() + Duration::from_secs(300))
        .await;
    let failures: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    acknowledge(aws, queue, messages, &failures).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_killed_at_every_delivery_fails_its_job_once_through_the_dead_letter_queue() {
    let aws = aws().await;
    let table = unique("endings");
    create_table(&aws, &table).await;
    put_items(&aws, &table, &every_type_items(60)).await;
    let bucket = unique("endings");
    create_bucket(&aws, &bucket).await;
    // As infra/ has it, with SQS giving up after 2 deliveries instead of 5.
    let (queue, dlq) = create_queues(&aws, &unique("endings-jobs"), 2).await;
    let failed_jobs = aws
        .sqs()
        .create_queue()
        .queue_name(unique("endings-failed"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    verify_sender(&aws, SENDER).await;
    let recipient = format!("{}@example.com", unique("endings-ops"));
    let vars = [
        ("DDB_BACKUP_BUCKET", bucket.clone()),
        ("DDB_BACKUP_QUEUE_URL", queue.clone()),
        ("DDB_BACKUP_DLQ_URL", dlq.clone()),
        ("DDB_BACKUP_FAILED_JOBS_QUEUE_URL", failed_jobs.clone()),
        ("DDB_BACKUP_SENDER", SENDER.to_string()),
        ("DDB_BACKUP_NOTIFY", recipient.clone()),
        ("DDB_BACKUP_MAX_RECEIVES", "2".to_string()),
        ("DDB_BACKUP_DEADLINE_MARGIN_SECS", "1".to_string()),
        ("DDB_BACKUP_COMPRESSION", "none".to_string()),
    ];
    let settings = Settings::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let worker = Arc::new(service::worker(&aws, &settings));
    aws.sqs()
        .send_message()
        .queue_url(&queue)
        .message_body(format!(
            r#"{{"table":"{table}","job_id":"killed","workers":2,"segments":4}}"#
        ))
        .send()
        .await
        .unwrap();

    // The event source mappings of the job queue and the dead-letter queue, until both stay
    // empty. Worker 1's function dies at every delivery: its message is never answered.
    let mut killed = 0;
    let mut idle = 0;
    for _ in 0..60 {
        let jobs = receive_hidden_for(&aws, &queue, 1).await;
        let (doomed, served): (Vec<_>, Vec<_>) = jobs
            .into_iter()
            .partition(|m| m.body().unwrap().contains(r#""worker":1"#));
        killed += doomed.len();
        invoke(&aws, &worker, &queue, &served).await;
        let dead = receive_hidden_for(&aws, &dlq, 1).await;
        invoke(&aws, &worker, &dlq, &dead).await;
        idle = if doomed.is_empty() && served.is_empty() && dead.is_empty() {
            idle + 1
        } else {
            0
        };
        if idle == 3 {
            break;
        }
    }
    assert_eq!(idle, 3, "the queues never emptied");
    assert_eq!(killed, 2, "SQS gave up after maxReceiveCount deliveries");

    let (status, _, _) = get_object(&aws, &bucket, "backup-status/killed.json").await;
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["state"], "failed", "{status}");
    assert_eq!(status["will_retry"], false, "{status}");
    assert_eq!(status["stage"], "delivery", "{status}");
    let emails: Vec<String> = sent_emails()
        .into_iter()
        .filter(|(_, _, to)| to.contains(&recipient))
        .map(|(subject, _, _)| subject)
        .collect();
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].contains("FAILED"), "{emails:?}");
    let keys = list_keys(&aws, &bucket).await;
    assert!(
        !keys.iter().any(|k| k.ends_with("/manifest.json")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.ends_with("/failed.json")), "{keys:?}");
    let kept = receive(&aws, &failed_jobs).await;
    assert_eq!(kept.len(), 1, "the dead letter is kept for a redrive");
    assert!(kept[0].body().unwrap().contains(r#""worker":1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_message_comes_back_when_the_worker_says_not_after_the_visibility_timeout() {
    let aws = aws().await;
    let (queue, _dlq) = create_queues(&aws, &unique("endings-delay"), 5).await;
    let port = SqsQueue::new(aws.sqs(), &queue);
    port.send("{}", None).await.unwrap();
    let first = receive(&aws, &queue).await; // hidden for 60 s
    assert_eq!(first.len(), 1);
    port.delay(first[0].receipt_handle().unwrap(), Duration::from_secs(1))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut again = Vec::new();
    while again.is_empty() && started.elapsed() < Duration::from_secs(10) {
        again = receive(&aws, &queue).await;
    }
    assert_eq!(again.len(), 1, "the message came back early");
    assert_eq!(again[0].message_id(), first[0].message_id());
}

/// CompleteMultipartUpload applied, its reply lost: S3 answers the SDK's retry NoSuchUpload,
/// and the store then asks whether the object at the key is the one its parts make. Against the
/// emulator's objects: its own parts say yes, another upload's parts say no.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_is_recognised_by_the_parts_it_was_assembled_from_and_only_those() {
    use ddb_backup::store::{ObjectMeta, ObjectStore};
    let aws = aws().await;
    let bucket = unique("endings-complete");
    create_bucket(&aws, &bucket).await;
    let store = s3_store(&aws, &bucket);
    let meta = ObjectMeta {
        content_type: "application/octet-stream",
        content_encoding: None,
        records: None,
        retained: false,
    };
    let key = "backups/t/data/part-0.bin";
    let upload = |body: Vec<u8>, last: &'static [u8]| {
        let (store, meta) = (store.clone(), meta.clone());
        async move {
            let id = store.create_multipart(key, &meta).await.unwrap();
            let first = store
                .upload_part(key, &id, 1, bytes::Bytes::from(body))
                .await
                .unwrap();
            let last = store
                .upload_part(key, &id, 2, bytes::Bytes::from_static(last))
                .await
                .unwrap();
            (id, vec![first, last])
        }
    };
    let (id, parts) = upload(vec![7u8; 5 * 1024 * 1024], b"the last part").await;
    let (other_id, other_parts) = upload(vec![8u8; 5 * 1024 * 1024], b"the last part").await;
    store.abort_multipart(key, &other_id).await.unwrap();
    assert!(!store.holds_parts(key, &parts).await, "no object yet");
    store
        .complete_multipart(key, &id, parts.clone())
        .await
        .unwrap();
    assert!(store.holds_parts(key, &parts).await);
    assert!(!store.holds_parts(key, &other_parts).await);
    let reversed: Vec<_> = parts.iter().rev().cloned().collect();
    assert!(!store.holds_parts(key, &reversed).await);
}

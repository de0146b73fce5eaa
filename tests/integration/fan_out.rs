//! One job, many workers, with the real worker binary under the local Lambda runtime: the job's
//! first delivery queues one shard message per worker on the real queue, two function processes
//! take them as Lambda's event source mapping would, and the last worker to finish writes the one
//! manifest. Also: a shard message delivered twice, and a worker killed mid-upload whose message
//! SQS delivers again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use ddb_backup::aws::AwsContext;
use ddb_backup::model::manifest::Manifest;

const SENDER: &str = "backup@example.com";

/// A table, a bucket, the job queue with its DLQ and a verified sender.
struct Stack {
    aws: AwsContext,
    table: String,
    bucket: String,
    queue: String,
    queue_arn: String,
    recipient: String,
}

impl Stack {
    async fn new(items: &[ddb_backup::Item]) -> Stack {
        let aws = aws().await;
        let table = unique("fan-out");
        create_table(&aws, &table).await;
        put_items(&aws, &table, items).await;
        let bucket = unique("fan-out");
        create_bucket(&aws, &bucket).await;
        let (queue, _dlq) = create_queues(&aws, &unique("fan-out-jobs"), 5).await;
        let queue_arn = queue_arn(&aws, &queue).await;
        verify_sender(&aws, SENDER).await;
        let recipient = format!("{}@example.com", unique("fan-out-ops"));
        Stack {
            aws,
            table,
            bucket,
            queue,
            queue_arn,
            recipient,
        }
    }

    /// The worker function's environment, as infra/ sets it.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", endpoint()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("DDB_BACKUP_BUCKET", self.bucket.clone()),
            ("DDB_BACKUP_QUEUE_URL", self.queue.clone()),
            ("DDB_BACKUP_SENDER", SENDER.to_string()),
            ("DDB_BACKUP_NOTIFY", self.recipient.clone()),
            ("DDB_BACKUP_COMPRESSION", "none".to_string()),
            // cargo lambda's invocations get a short deadline; a real worker keeps 60 s in hand.
            ("DDB_BACKUP_DEADLINE_MARGIN_SECS", "2".to_string()),
        ]
    }

    fn workers(&self, n: usize) -> Vec<Arc<LocalLambda>> {
        (0..n)
            .map(|_| {
                Arc::new(LocalLambda::start(
                    env!("CARGO_BIN_EXE_backup-worker"),
                    &self.env(),
                ))
            })
            .collect()
    }

    async fn send(&self, body: &str) {
        self.aws
            .sqs()
            .send_message()
            .queue_url(&self.queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Lambda's event source mapping with batch size 1 (as infra/ sets it): every function takes
    /// the next message, and what it does not report as failed is deleted. Runs until the queue
    /// stays empty; returns the dispositions the functions logged.
    async fn drain(&self, functions: &[Arc<LocalLambda>]) {
        let mut kept = std::collections::HashMap::<String, u32>::new();
        let mut idle_rounds = 0;
        while idle_rounds < 2 {
            let mut batch = Vec::new();
            for function in functions {
                let Some(message) = receive_one(&self.aws, &self.queue).await else {
                    break;
                };
                let event = sqs_event_json(std::slice::from_ref(&message), &self.queue_arn);
                let function = function.clone();
                batch.push((
                    message,
                    tokio::task::spawn_blocking(move || function.invoke(&event)),
                ));
            }
            idle_rounds = if batch.is_empty() { idle_rounds + 1 } else { 0 };
            for (message, invocation) in batch {
                let response = invocation.await.expect("the invocation");
                let failures: Vec<String> = response["batchItemFailures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
                    .collect();
                // A message kept on the queue (a duplicate deferred while its twin holds the
                // lease) comes back a second later, as SQS would bring it back.
                for id in &failures {
                    let times = kept.entry(id.clone()).or_default();
                    *times += 1;
                    assert!(*times < 30, "a message keeps failing: {response}");
                    self.aws
                        .sqs()
                        .change_message_visibility()
                        .queue_url(&self.queue)
                        .receipt_handle(message.receipt_handle().unwrap())
                        .visibility_timeout(1)
                        .send()
                        .await
                        .unwrap();
                }
                if !failures.is_empty() {
                    idle_rounds = 0;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                acknowledge(&self.aws, &self.queue, &[message], &failures).await;
            }
        }
    }

    /// The one manifest of the job, after checking every file holds what it lists.
    async fn manifest(&self, job_id: &str) -> Manifest {
        let keys = list_keys(&self.aws, &self.bucket).await;
        let manifests: Vec<_> = keys
            .iter()
            .filter(|k| k.contains(job_id) && k.ends_with("/manifest.json"))
            .collect();
        assert_eq!(manifests.len(), 1, "{keys:?}");
        let (body, _, _) = get_object(&self.aws, &self.bucket, manifests[0]).await;
        Manifest::from_json(&body).unwrap()
    }

    /// Every item id in the manifest's files, as often as it occurs.
    async fn backed_up_ids(&self, manifest: &Manifest) -> Vec<String> {
        let mut ids = Vec::new();
        for file in &manifest.files {
            let (body, _, _) = get_object(&self.aws, &self.bucket, &file.key).await;
            assert_eq!(body.len() as u64, file.bytes, "{}", file.key);
            for line in String::from_utf8(body.to_vec()).unwrap().lines() {
                let item = ddb_backup::codec::decode::decode_dynamodb_json_line(line).unwrap();
                ids.push(item["id"].as_s().unwrap().clone());
            }
        }
        ids.sort();
        ids
    }

    fn emails_to_recipient(&self) -> Vec<String> {
        sent_emails()
            .into_iter()
            .filter(|(_, _, to)| to.contains(&self.recipient))
            .map(|(subject, _, _)| subject)
            .collect()
    }
}

async fn receive_one(aws: &AwsContext, queue: &str) -> Option<aws_sdk_sqs::types::Message> {
    aws.sqs()
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(1)
        .wait_time_seconds(1)
        .visibility_timeout(120)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
        .pop()
}

/// Marks every lease in `bucket` as ended, as the deadline of the invocation holding it would.
async fn end_leases(aws: &AwsContext, bucket: &str) {
    for key in list_keys(aws, bucket).await {
        if key.contains("/leases/") {
            let (body, _, _) = get_object(aws, bucket, &key).await;
            let mut lease: serde_json::Value = serde_json::from_slice(&body).unwrap();
            lease["expires_at"] = serde_json::json!("2000-01-01T00:00:00Z");
            aws.s3()
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(lease.to_string().into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    }
}

/// The worker a shard message is for.
fn worker_of(message: &aws_sdk_sqs::types::Message) -> u64 {
    let body: serde_json::Value = serde_json::from_str(message.body().unwrap()).unwrap();
    body["worker"].as_u64().expect("a shard message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_over_eight_segments_make_one_manifest_and_one_email_even_with_a_duplicate() {
    let items = every_type_items(160);
    let stack = Stack::new(&items).await;
    let functions = stack.workers(2);
    let job_id = unique("fan-out-job");
    stack
        .send(&format!(
            r#"{{"table": "{}", "job_id": "{job_id}", "workers": 4, "segments": 8}}"#,
            stack.table
        ))
        .await;
    // The first delivery plans and queues the four shards.
    let job = receive_one(&stack.aws, &stack.queue).await.unwrap();
    let response = functions[0].invoke(&sqs_event_json(
        std::slice::from_ref(&job),
        &stack.queue_arn,
    ));
    assert_eq!(response["batchItemFailures"], serde_json::json!([]));
    acknowledge(&stack.aws, &stack.queue, &[job], &[]).await;
    assert!(
        functions[0].function_log().contains("job fanned out"),
        "{}",
        functions[0].function_log()
    );
    // SQS delivers worker 2's message twice (at-least-once delivery).
    let mut shards = Vec::new();
    while shards.len() < 4 {
        let message = receive_one(&stack.aws, &stack.queue)
            .await
            .expect("4 shards");
        shards.push((worker_of(&message), message.body().unwrap().to_string()));
        acknowledge(&stack.aws, &stack.queue, &[message], &[]).await;
    }
    shards.sort();
    assert_eq!(
        shards.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    for (_, body) in shards.iter().chain(std::iter::once(&shards[2])) {
        stack.send(body).await;
    }
    stack.drain(&functions).await;

    let manifest = stack.manifest(&job_id).await;
    assert_eq!((manifest.workers, manifest.segments), (4, 8));
    assert_eq!(manifest.item_count, 160);
    let writers: BTreeSet<u32> = manifest.files.iter().map(|f| f.worker).collect();
    assert_eq!(writers, (0..4).collect(), "files from all four workers");
    assert_eq!(
        stack.backed_up_ids(&manifest).await,
        ids(&items),
        "every item exactly once"
    );
    let emails = stack.emails_to_recipient();
    assert_eq!(emails.len(), 1, "{emails:?}");
    let logs: String = functions.iter().map(|f| f.function_log()).collect();
    assert_eq!(logs.matches("\"backup complete\"").count(), 1, "{logs}");
    assert!(
        logs.contains("already recorded by another delivery") || logs.contains("already complete"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upload_is_redelivered_and_the_job_completes_with_no_upload_left_open()
{
    // About 11 MiB per segment: each worker's file is a multipart upload of three parts, so it
    // is still open when the test sees it and kills the worker, even on a loaded machine.
    let items = large_items(160, 300_000);
    let stack = Stack::new(&items).await;
    let job_id = unique("fan-out-kill");
    stack
        .send(&format!(
            r#"{{"table": "{}", "job_id": "{job_id}", "workers": 4, "segments": 4}}"#,
            stack.table
        ))
        .await;
    let doomed = stack.workers(1).pop().unwrap();
    let job = receive_one(&stack.aws, &stack.queue).await.unwrap();
    doomed.invoke(&sqs_event_json(
        std::slice::from_ref(&job),
        &stack.queue_arn,
    ));
    acknowledge(&stack.aws, &stack.queue, &[job], &[]).await;

    // The first shard message goes to a function that is killed once its upload is open.
    let shard = receive_one(&stack.aws, &stack.queue).await.unwrap();
    let event = sqs_event_json(std::slice::from_ref(&shard), &stack.queue_arn);
    let invocation = {
        let function = doomed.clone();
        std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(|| function.invoke(&event));
        })
    };
    let started = Instant::now();
    while open_multipart_uploads(&stack.aws, &stack.bucket).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no multipart upload opened:\n{}",
            doomed.function_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill_function();
    // Without its function the runtime emulator never answers; stopping it ends the invoke.
    doomed.kill_all();
    let _ = invocation.join();
    drop(doomed);
    assert!(open_multipart_uploads(&stack.aws, &stack.bucket).await > 0);
    // Until the killed invocation's deadline its lease stands: its message handed to another
    // invocation now (as SQS may do) is left on the queue.
    let twin = stack.workers(1).pop().unwrap();
    let response = twin.invoke(&sqs_event_json(
        std::slice::from_ref(&shard),
        &stack.queue_arn,
    ));
    assert_eq!(
        response["batchItemFailures"][0]["itemIdentifier"],
        shard.message_id().unwrap(),
        "{response}"
    );
    assert!(
        twin.function_log().contains("\"Deferred\""),
        "{}",
        twin.function_log()
    );
    drop(twin);
    // SQS's visibility timeout (90 min in infra/) outlasts the function's 15: by the time the
    // message comes back the deadline has passed. The test ends the lease instead of waiting.
    end_leases(&stack.aws, &stack.bucket).await;
    // The invocation never answered: SQS delivers the message again once it is visible.
    stack
        .aws
        .sqs()
        .change_message_visibility()
        .queue_url(&stack.queue)
        .receipt_handle(shard.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();

    let functions = stack.workers(2);
    stack.drain(&functions).await;
    let manifest = stack.manifest(&job_id).await;
    assert_eq!(manifest.workers, 4);
    let writers: BTreeSet<u32> = manifest.files.iter().map(|f| f.worker).collect();
    assert_eq!(writers, (0..4).collect());
    assert_eq!(stack.backed_up_ids(&manifest).await, ids(&items));
    assert_eq!(
        open_multipart_uploads(&stack.aws, &stack.bucket).await,
        0,
        "the redelivered worker aborts what the killed one left open"
    );
    assert_eq!(stack.emails_to_recipient().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_one_conditional_writer_wins_and_concurrent_status_updates_are_never_lost() {
    use ddb_backup::store::{ObjectMeta, ObjectStore, Precondition};
    use ddb_backup::triggers::status::{JobState, JobStatus, StatusBoard};
    let aws = aws().await;
    let bucket = unique("conditional");
    create_bucket(&aws, &bucket).await;
    let store = s3_store(&aws, &bucket);
    let meta = ObjectMeta {
        content_type: "application/json",
        content_encoding: None,
        records: None,
        retained: false,
    };
    // Eight workers race to write the manifest: exactly one succeeds, and its body stays.
    let racers: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            let meta = meta.clone();
            tokio::spawn(async move {
                let body = bytes::Bytes::from(format!("writer {n}"));
                let won = store
                    .put_object_if("job/manifest.json", body, &meta, Precondition::Absent)
                    .await
                    .unwrap();
                (n, won)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for racer in racers {
        let (n, won) = racer.await.unwrap();
        if won {
            winners.push(n);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let (body, tag) = store
        .get_tagged("job/manifest.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body, format!("writer {}", winners[0]).as_bytes());
    // Compare-and-swap: the current tag wins once, a stale one never.
    let next = bytes::Bytes::from_static(b"next");
    assert!(store
        .put_object_if(
            "job/manifest.json",
            next.clone(),
            &meta,
            Precondition::Unchanged(&tag)
        )
        .await
        .unwrap());
    assert!(!store
        .put_object_if(
            "job/manifest.json",
            next,
            &meta,
            Precondition::Unchanged(&tag)
        )
        .await
        .unwrap());
    assert_eq!(store.get_tagged("job/missing.json").await.unwrap(), None);

    // Eight workers count themselves into one status document at once: none is lost.
    let board = StatusBoard::new(
        store.clone(),
        ddb_backup::model::job::Prefix::new("backup-status/").unwrap(),
    );
    let job = ddb_backup::BackupJob::parse(
        r#"{"table": "studentData", "bucket": "b-1", "job_id": "counted"}"#,
        &ddb_backup::JobDefaults::default(),
    )
    .unwrap();
    board
        .put(&JobStatus::new(&job, JobState::Running))
        .await
        .unwrap();
    let counters: Vec<_> = (0..8)
        .map(|_| {
            let board = board.clone();
            tokio::spawn(async move {
                board
                    .update("counted", |status| {
                        let mut status = status.expect("the status exists");
                        status.workers_done = Some(status.workers_done.unwrap_or(0) + 1);
                        Some(status)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for counter in counters {
        counter.await.unwrap();
    }
    let status = board
        .get(&ddb_backup::model::job::JobId::new("counted").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.workers_done, Some(8));

    // Listing pages past S3's 1,000 keys per response.
    use futures::StreamExt;
    futures::stream::iter(0..1005)
        .for_each_concurrent(16, |n| {
            let (store, meta) = (store.clone(), meta.clone());
            async move {
                store
                    .put_object(&format!("many/{n:05}.json"), bytes::Bytes::new(), &meta)
                    .await
                    .unwrap();
            }
        })
        .await;
    let listed = store.list("many/").await.unwrap();
    assert_eq!(listed.len(), 1005);
    assert_eq!(listed[1004], "many/01004.json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_delivered_to_two_functions_at_once_is_read_once_and_emailed_once() {
    // About 7 MiB in one segment: long enough for the two deliveries to overlap.
    let items = large_items(24, 300_000);
    let stack = Stack::new(&items).await;
    let functions = stack.workers(2);
    let job_id = unique("duplicate");
    stack
        .send(&format!(
            r#"{{"table": "{}", "job_id": "{job_id}", "workers": 1, "segments": 1}}"#,
            stack.table
        ))
        .await;
    let message = receive_one(&stack.aws, &stack.queue).await.unwrap();
    let event = sqs_event_json(std::slice::from_ref(&message), &stack.queue_arn);
    // SQS hands the same message to two invocations (or the schedule and an operator sent the
    // same job): both functions get it at the same moment.
    let invocations: Vec<_> = functions
        .iter()
        .map(|function| {
            let (function, event) = (function.clone(), event.clone());
            tokio::task::spawn_blocking(move || function.invoke(&event))
        })
        .collect();
    let mut kept = 0;
    for invocation in invocations {
        let response = invocation.await.unwrap();
        kept += response["batchItemFailures"].as_array().unwrap().len();
    }
    let logs: Vec<String> = functions.iter().map(|f| f.function_log()).collect();
    let handled = |disposition: &str| {
        logs.iter()
            .filter(|log| log.contains(&format!("\"disposition\":\"{disposition}\"")))
            .count()
    };
    assert_eq!(handled("Done"), 1, "{logs:?}");
    assert_eq!(handled("Deferred"), 1, "the duplicate waits: {logs:?}");
    assert_eq!(kept, 1, "the duplicate's message stays on the queue");
    // SQS delivers the duplicate again later: the job is complete, nothing more happens.
    stack
        .aws
        .sqs()
        .change_message_visibility()
        .queue_url(&stack.queue)
        .receipt_handle(message.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    stack.drain(&functions).await;
    let manifest = stack.manifest(&job_id).await;
    assert_eq!(stack.backed_up_ids(&manifest).await, ids(&items));
    assert_eq!(stack.emails_to_recipient().len(), 1);
    let logs: String = functions.iter().map(|f| f.function_log()).collect();
    assert_eq!(logs.matches("\"backup complete\"").count(), 1, "{logs}");
}

/// A restore job on the real queue: the worker binary plans it, creates the table and queues
/// four shares; the first share's function is killed once it has saved a position inside a
/// file, its message comes back, and the new table equals the backed-up one, with one email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_on_four_workers_with_one_killed_mid_file_equals_the_source() {
    let items = every_type_items(160);
    let stack = Stack::new(&items).await;
    let functions = stack.workers(2);
    let backup_id = unique("restore-source");
    stack
        .send(&format!(
            r#"{{"table": "{}", "job_id": "{backup_id}", "workers": 1, "segments": 4}}"#,
            stack.table
        ))
        .await;
    stack.drain(&functions).await;
    let manifest = stack.manifest(&backup_id).await;
    assert!(manifest.files.len() >= 4, "{} files", manifest.files.len());
    let emails_before = stack.emails_to_recipient().len();

    // 8 WCU/s shared by four workers: each share is one file of about 40 items, two batches
    // about twelve seconds apart, so the worker's position (saved every five seconds) is
    // inside the file in between.
    let target = unique("restored");
    let restore_id = unique("restore-job");
    stack
        .send(&format!(
            r#"{{"kind": "restore", "backup": "{}", "table": "{target}", "job_id": "{restore_id}", "workers": 4, "write_budget": 8}}"#,
            manifest.location
        ))
        .await;
    let plan = receive_one(&stack.aws, &stack.queue).await.unwrap();
    let response = functions[0].invoke(&sqs_event_json(
        std::slice::from_ref(&plan),
        &stack.queue_arn,
    ));
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{}",
        functions[0].function_log()
    );
    acknowledge(&stack.aws, &stack.queue, &[plan], &[]).await;
    assert!(functions[0].function_log().contains("restore fanned out"));

    let doomed = stack.workers(1).pop().unwrap();
    let share = receive_one(&stack.aws, &stack.queue).await.unwrap();
    let worker = worker_of(&share);
    let event = sqs_event_json(std::slice::from_ref(&share), &stack.queue_arn);
    let invocation = {
        let function = doomed.clone();
        std::thread::spawn(move || {
            let _ = std::panic::catch_unwind(|| function.invoke(&event));
        })
    };
    let position_key = format!(
        "{}restores/{restore_id}/worker-{worker:04}/position.json",
        manifest
            .location
            .split_once(&format!("{}/", stack.bucket))
            .unwrap()
            .1
    );
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no position saved:\n{}",
            doomed.function_log()
        );
        if list_keys(&stack.aws, &stack.bucket)
            .await
            .contains(&position_key)
        {
            let (body, _, _) = get_object(&stack.aws, &stack.bucket, &position_key).await;
            let saved: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if saved["position"]["records"].as_u64() > Some(0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    doomed.kill_function();
    doomed.kill_all();
    let _ = invocation.join();
    drop(doomed);
    // SQS delivers the killed invocation's message again once it is visible.
    stack
        .aws
        .sqs()
        .change_message_visibility()
        .queue_url(&stack.queue)
        .receipt_handle(share.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    stack.drain(&functions).await;

    assert_eq!(
        sorted(scan_all(&stack.aws, &target).await),
        sorted(scan_all(&stack.aws, &stack.table).await),
        "the restored table equals the source"
    );
    let emails = stack.emails_to_recipient();
    assert_eq!(emails.len() - emails_before, 1, "{emails:?}");
    assert!(
        emails.last().unwrap().starts_with("Restore COMPLETE"),
        "{emails:?}"
    );
    let logs: String = functions.iter().map(|f| f.function_log()).collect();
    assert_eq!(
        logs.matches("\"restore job complete\"").count(),
        1,
        "{logs}"
    );
}

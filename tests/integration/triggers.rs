//! The event-driven path end to end on the emulator, through the real SDK clients:
//! API handler → SQS → worker (messages received from the real queue and handed over as the
//! Lambda SQS event) → objects and manifest in S3 → the summary email read back from SES.
//!
//! One file of about 550 lines: every case drives the same emulated stack (`Stack` below) through
//! a different path of the same flow.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::sqs::SqsEvent;
use ddb_backup::aws::AwsContext;
use ddb_backup::backup::pipeline::Tuning;
use ddb_backup::model::job::{BucketName, EmailAddress, JobDefaults};
use ddb_backup::model::manifest::Manifest;
use ddb_backup::runtime::config::Settings;
use ddb_backup::runtime::service;
use ddb_backup::source::DynamoDbSource;
use ddb_backup::triggers::notify::SesNotifier;
use ddb_backup::triggers::queue::{SqsQueue, REASON_ATTRIBUTE};
use ddb_backup::triggers::worker::{Disposition, QueueMessage, StoreFactory, Worker};
use tokio::time::Instant;

const FRONT_END: &str = "https://d111111abcdef8.cloudfront.net";
const SENDER: &str = "backup@example.com";

/// A table with items, a bucket, a job queue with its DLQ and a verified sender: the stack of
/// infra/, on the emulator.
struct Stack {
    aws: AwsContext,
    table: String,
    bucket: String,
    queue: String,
    dlq: String,
    recipient: String,
}

impl Stack {
    async fn new(items: &[ddb_backup::Item]) -> Stack {
        let aws = aws().await;
        let table = unique("triggers");
        create_table(&aws, &table).await;
        put_items(&aws, &table, items).await;
        let bucket = unique("backup");
        create_bucket(&aws, &bucket).await;
        let (queue, dlq) = create_queues(&aws, &unique("jobs"), 5).await;
        verify_sender(&aws, SENDER).await;
        let recipient = format!("{}@example.com", unique("ops"));
        Stack {
            aws,
            table,
            bucket,
            queue,
            dlq,
            recipient,
        }
    }

    fn settings(&self) -> Settings {
        let vars = [
            ("DDB_BACKUP_BUCKET", self.bucket.clone()),
            ("DDB_BACKUP_QUEUE_URL", self.queue.clone()),
            ("DDB_BACKUP_DLQ_URL", self.dlq.clone()),
            ("DDB_BACKUP_SENDER", SENDER.to_string()),
            ("DDB_BACKUP_NOTIFY", self.recipient.clone()),
            ("DDB_BACKUP_CORS_ORIGINS", FRONT_END.to_string()),
            ("DDB_BACKUP_DEADLINE_MARGIN_SECS", "1".to_string()),
        ];
        Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("valid settings")
    }

    /// Stores for job destinations, as the worker Lambda builds them.
    fn stores(&self, settings: &Settings) -> StoreFactory {
        let aws = self.aws.clone();
        let settings = settings.clone();
        Arc::new(move |d| service::store_for(d, &aws, &settings))
    }

    async fn queue_arn(&self) -> String {
        queue_arn(&self.aws, &self.queue).await
    }

    /// One invocation of the worker Lambda: receive, hand over as the SQS event, acknowledge
    /// like the event source mapping. Returns the ids of messages left on the queue.
    async fn invoke_worker(
        &self,
        worker: &Worker,
        time_left: Duration,
    ) -> (Vec<aws_sdk_sqs::types::Message>, Vec<String>) {
        let messages = receive(&self.aws, &self.queue).await;
        if messages.is_empty() {
            return (messages, Vec::new());
        }
        let event: SqsEvent =
            serde_json::from_value(sqs_event_json(&messages, &self.queue_arn().await))
                .expect("an SQS event");
        let deadline = Instant::now() + time_left;
        let response = worker.handle_sqs_event(event, deadline).await;
        let failures: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        acknowledge(&self.aws, &self.queue, &messages, &failures).await;
        (messages, failures)
    }

    async fn manifests(&self) -> Vec<String> {
        list_keys(&self.aws, &self.bucket)
            .await
            .into_iter()
            .filter(|k| k.ends_with("/manifest.json"))
            .collect()
    }

    async fn manifest(&self, key: &str) -> Manifest {
        Manifest::from_json(&get_object(&self.aws, &self.bucket, key).await.0).expect("a manifest")
    }

    fn emails(&self) -> Vec<(String, String, Vec<String>)> {
        sent_emails()
            .into_iter()
            .filter(|(_, _, to)| to.contains(&self.recipient))
            .collect()
    }
}

fn api_request(method: &str, body: Option<String>, job_id: Option<&str>) -> ApiGatewayProxyRequest {
    let fixture = match method {
        "GET" => include_str!("../fixtures/apigw-get-status.json"),
        _ => include_str!("../fixtures/apigw-post-backup.json"),
    };
    let mut request: ApiGatewayProxyRequest = serde_json::from_str(fixture).expect("fixture");
    request.body = body;
    if let Some(id) = job_id {
        request.path = Some(format!("/backup/{id}"));
        request.path_parameters.insert("job_id".into(), id.into());
    }
    request
}

fn json_body(response: &ApiGatewayProxyResponse) -> serde_json::Value {
    match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).expect("JSON body"),
        other => panic!("no body: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_backup_runs_through_the_queue_to_a_verified_backup_and_one_email() {
    let items = every_type_items(40);
    let stack = Stack::new(&items).await;
    let settings = stack.settings();
    let api = service::api(&stack.aws, &settings).expect("api");
    let worker = service::worker(&stack.aws, &settings);

    // A typo in the table name is refused by the API, not discovered by the worker.
    let response = api
        .handle(api_request(
            "POST",
            Some(r#"{"table": "no-such-table"}"#.into()),
            None,
        ))
        .await;
    assert_eq!(response.status_code, 400, "{:?}", response.body);
    assert_eq!(json_body(&response)["field"], "table");

    let body = format!(r#"{{"table": "{}", "compression": "zstd"}}"#, stack.table);
    let response = api.handle(api_request("POST", Some(body), None)).await;
    assert_eq!(response.status_code, 202, "{:?}", response.body);
    assert_eq!(
        response
            .headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some(FRONT_END)
    );
    let job_id = json_body(&response)["job_id"]
        .as_str()
        .expect("job id")
        .to_string();
    let status = json_body(&api.handle(api_request("GET", None, Some(&job_id))).await);
    assert_eq!(status["state"], "queued");

    // SQS delivers at least once: the same message three times.
    let far = Instant::now() + Duration::from_secs(600);
    let messages = receive(&stack.aws, &stack.queue).await;
    assert_eq!(messages.len(), 1);
    let event: SqsEvent =
        serde_json::from_value(sqs_event_json(&messages, &stack.queue_arn().await)).unwrap();
    for delivery in 1..=3 {
        let response = worker.handle_sqs_event(event.clone(), far).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "delivery {delivery}: {:?}",
            response.batch_item_failures
        );
    }
    acknowledge(&stack.aws, &stack.queue, &messages, &[]).await;

    let manifests = stack.manifests().await;
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let manifest = stack.manifest(&manifests[0]).await;
    assert_eq!(manifest.job_id, job_id);
    assert_eq!(manifest.trigger, "api");
    assert_eq!(manifest.item_count, 40);
    let opened = service::open_backup(
        &format!("s3://{}/{}", stack.bucket, manifests[0]),
        &stack.aws,
        &settings,
    )
    .await
    .expect("open the backup");
    let report =
        ddb_backup::readback::verify::verify_backup(opened.store.clone(), &opened.manifest, |k| {
            opened.locate(k)
        })
        .await
        .expect("verify");
    assert!(report.is_ok(), "{report:?}");

    let status = json_body(&api.handle(api_request("GET", None, Some(&job_id))).await);
    assert_eq!(status["state"], "complete", "{status}");
    assert_eq!(status["items"], 40);
    assert!(status["manifest"]
        .as_str()
        .unwrap()
        .ends_with("manifest.json"));

    let emails = stack.emails();
    assert_eq!(
        emails.len(),
        1,
        "one email for three deliveries: {emails:?}"
    );
    let (subject, html, _) = &emails[0];
    assert!(
        subject.contains(&stack.table) && subject.contains("complete: 40 items"),
        "{subject}"
    );
    assert!(
        html.contains(&format!("s3://{}/{}", stack.bucket, manifests[0])),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_the_deadline_continues_through_the_real_queue_and_covers_every_item_once() {
    let items = every_type_items(150);
    let stack = Stack::new(&items).await;
    let settings = stack.settings();
    let stores = stack.stores(&settings);
    let defaults = JobDefaults {
        bucket: Some(BucketName::new(&stack.bucket).unwrap()),
        notify: vec![EmailAddress::new(&stack.recipient).unwrap()],
        ..JobDefaults::default()
    };
    let margin = Duration::from_millis(300);
    // Small pages so that each short invocation reads only part of the table.
    let worker = Worker::new(
        Arc::new(DynamoDbSource::new(stack.aws.dynamodb()).with_page_limit(5)),
        stores,
        defaults,
        Tuning::default(),
    )
    .with_queue(Arc::new(SqsQueue::new(stack.aws.sqs(), &stack.queue)))
    .with_notifier(
        Arc::new(SesNotifier::new(stack.aws.sesv2())),
        EmailAddress::new(SENDER).unwrap(),
    )
    .with_limits(margin, 5);

    let job = format!(
        r#"{{"table": "{}", "segments": 2, "trigger": "manual"}}"#,
        stack.table
    );
    stack
        .aws
        .sqs()
        .send_message()
        .queue_url(&stack.queue)
        .message_body(job)
        .send()
        .await
        .unwrap();
    let mut invocations = 0;
    let mut continuations = 0;
    while stack.manifests().await.is_empty() {
        invocations += 1;
        assert!(
            invocations < 60,
            "no progress after {invocations} invocations"
        );
        // An artificially short invocation: 300 ms of margin, 50 ms of work (a few pages).
        let time_left = margin + Duration::from_millis(50);
        let (messages, failures) = stack.invoke_worker(&worker, time_left).await;
        assert!(failures.is_empty(), "{failures:?}");
        continuations += messages
            .iter()
            .filter(|m| m.body().unwrap_or_default().contains("\"continuation\""))
            .count();
    }
    assert!(continuations >= 2, "only {continuations} continuations");
    let manifests = stack.manifests().await;
    let manifest = stack.manifest(&manifests[0]).await;
    assert_eq!(manifest.item_count, 150);
    assert_eq!(manifest.segments, 2);
    let restored = ddb_backup::codec::decode::decode_line;
    let mut decoded = Vec::new();
    for file in &manifest.files {
        let (bytes, _, _) = get_object(&stack.aws, &stack.bucket, &file.key).await;
        let reader =
            ddb_backup::backup::compress::decompressing_reader(manifest.compression, &bytes[..])
                .unwrap();
        for line in std::io::BufRead::lines(std::io::BufReader::new(reader)) {
            decoded.push(restored(manifest.format, &line.unwrap()).unwrap());
        }
    }
    assert_eq!(ids(&decoded).len(), 150);
    assert_eq!(
        sorted(decoded),
        sorted(items),
        "every item exactly once, unchanged"
    );
    assert_eq!(open_multipart_uploads(&stack.aws, &stack.bucket).await, 0);
    assert_eq!(stack.emails().len(), 1, "one email for the whole job");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dlq_while_the_schedule_and_valid_jobs_in_the_batch_succeed() {
    let stack = Stack::new(&every_type_items(5)).await;
    let worker = service::worker(&stack.aws, &stack.settings());
    let execution_id = uuid::Uuid::new_v4().to_string();
    let bodies = [
        "this is not JSON".to_string(),
        format!(r#"{{"table": "{}", "segments": -3}}"#, stack.table),
        r#"{"table": "missingTable", "job_id": "missing-table-job"}"#.to_string(),
        // The scheduler's input from infra/template.yaml after substitution.
        format!(
            r#"{{"table":"{}","trigger":"schedule","job_id":"{execution_id}","requested_at":"2026-11-28T02:00:00Z"}}"#,
            stack.table
        ),
    ];
    for body in &bodies {
        stack
            .aws
            .sqs()
            .send_message()
            .queue_url(&stack.queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let mut handled = 0;
    for _ in 0..5 {
        let (messages, failures) = stack.invoke_worker(&worker, Duration::from_secs(600)).await;
        assert!(
            failures.is_empty(),
            "poison moved to the DLQ, not failed: {failures:?}"
        );
        handled += messages.len();
        if handled == bodies.len() {
            break;
        }
    }
    assert_eq!(handled, bodies.len());

    let manifests = stack.manifests().await;
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    assert!(
        manifests[0].contains(&format!("/dt=2026-11-28/{execution_id}/")),
        "{}",
        manifests[0]
    );
    assert_eq!(stack.manifest(&manifests[0]).await.trigger, "schedule");

    let dead = stack
        .aws
        .sqs()
        .receive_message()
        .queue_url(&stack.dlq)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 3, "{dead:?}");
    for m in &dead {
        let reason = m
            .message_attributes()
            .and_then(|a| a.get(REASON_ATTRIBUTE))
            .and_then(|v| v.string_value())
            .unwrap_or_default();
        assert!(!reason.is_empty(), "no reason on {:?}", m.body());
        if m.body() == Some("this is not JSON") {
            assert!(reason.contains("not valid JSON"), "{reason}");
        }
        if m.body().unwrap_or_default().contains("-3") {
            assert!(reason.contains("segments"), "{reason}");
        }
    }
    let emails = stack.emails();
    let subjects: Vec<&String> = emails.iter().map(|(s, _, _)| s).collect();
    assert_eq!(emails.len(), 2, "{subjects:?}");
    let failure = emails
        .iter()
        .find(|(s, _, _)| s.contains("missingTable backup FAILED at scan"))
        .expect("a failure email");
    assert!(
        failure.1.contains("missing-table-job") && failure.1.contains("region"),
        "{}",
        failure.1
    );
    // The worker's S3 store is what the stores factory builds: nothing for the failed job.
    let store = service::store_for(
        &ddb_backup::model::job::Destination::S3 {
            bucket: BucketName::new(&stack.bucket).unwrap(),
            prefix: ddb_backup::model::job::Prefix::default(),
        },
        &stack.aws,
        &stack.settings(),
    );
    assert!(!store
        .exists("backups/missingTable/dt=2026-11-28/missing-table-job/manifest.json")
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_abandoned_mid_upload_is_completed_by_the_redelivery_with_no_upload_left_open(
) {
    let items = large_items(36, 300_000);
    let stack = Stack::new(&items).await;
    let settings = stack.settings();
    let stores = stack.stores(&settings);
    let defaults = JobDefaults {
        bucket: Some(BucketName::new(&stack.bucket).unwrap()),
        ..JobDefaults::default()
    };
    let worker = Arc::new(
        Worker::new(
            Arc::new(DynamoDbSource::new(stack.aws.dynamodb()).with_page_limit(2)),
            stores,
            defaults,
            Tuning {
                part_size: 5 * 1024 * 1024,
                ..Tuning::default()
            },
        )
        .with_limits(Duration::from_secs(1), 5),
    );
    let message = ddb_backup::triggers::worker::QueueMessage {
        id: "c0ffee00-0000-4000-8000-00000000abcd".to_string(),
        body: format!(
            r#"{{"table": "{}", "segments": 2, "compression": "none"}}"#,
            stack.table
        ),
        sent_at: Some(chrono::Utc::now()),
        receive_count: 1,
        receipt_handle: None,
        queue: None,
        reason: None,
    };
    // The first invocation is abandoned (as when Lambda kills a timed-out worker) as soon as a
    // multipart upload is open. Its lease on the job lasts until its deadline.
    let first_deadline = Instant::now() + Duration::from_secs(6);
    let first = {
        let worker = worker.clone();
        let message = message.clone();
        tokio::spawn(async move { worker.handle_message(&message, first_deadline).await })
    };
    let started = Instant::now();
    while open_multipart_uploads(&stack.aws, &stack.bucket).await == 0 {
        assert!(
            !first.is_finished(),
            "the job finished before it could be abandoned"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no multipart upload opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    let _ = first.await;
    assert!(
        stack.manifests().await.is_empty(),
        "an abandoned job looks complete"
    );
    assert!(open_multipart_uploads(&stack.aws, &stack.bucket).await > 0);

    let mut redelivered = message.clone();
    redelivered.receive_count = 2;
    // Delivered again before the abandoned invocation's deadline (as a concurrent duplicate
    // would be), it leaves the job alone; SQS's visibility timeout is longer than the function's,
    // so a real redelivery comes after that deadline, when the lease has ended.
    let early = worker
        .handle_message(&redelivered, Instant::now() + Duration::from_secs(600))
        .await;
    assert_eq!(early.disposition, Disposition::Deferred, "{}", early.detail);
    tokio::time::sleep_until(first_deadline + Duration::from_secs(3)).await;
    let report = worker
        .handle_message(&redelivered, Instant::now() + Duration::from_secs(600))
        .await;
    assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
    assert_eq!(
        open_multipart_uploads(&stack.aws, &stack.bucket).await,
        0,
        "the redelivery aborts what the abandoned attempt left open"
    );
    let manifests = stack.manifests().await;
    assert_eq!(manifests.len(), 1);
    let manifest = stack.manifest(&manifests[0]).await;
    assert_eq!(manifest.item_count, 36);
    let listed: std::collections::BTreeSet<_> =
        manifest.files.iter().map(|f| f.key.clone()).collect();
    for file in &manifest.files {
        let (bytes, _, _) = get_object(&stack.aws, &stack.bucket, &file.key).await;
        assert_eq!(bytes.len() as u64, file.bytes, "{}", file.key);
    }
    assert_eq!(listed.len(), manifest.files.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_503_when_the_queue_or_the_status_store_cannot_be_reached() {
    let stack = Stack::new(&every_type_items(1)).await;
    let settings = stack.settings();
    // The same API over clients whose endpoint refuses every connection: SQS and S3 are gone.
    let gone = format!("http://127.0.0.1:{}", free_port());
    let unreachable = AwsContext {
        sdk: stack.aws.sdk.to_builder().endpoint_url(&gone).build(),
        custom_endpoint: true,
    };
    let api = service::api(&unreachable, &settings).expect("api");
    let mut post = api_request(
        "POST",
        Some(format!(r#"{{"table": "{}"}}"#, stack.table)),
        None,
    );
    post.headers
        .insert("origin", FRONT_END.parse().expect("a header value"));
    let response = api.handle(post).await;
    assert_eq!(response.status_code, 503, "{:?}", response.body);
    let error = json_body(&response)["error"].as_str().unwrap().to_string();
    assert!(error.contains("could not be queued"), "{error}");
    assert!(error.contains("try again"), "{error}");
    let header = |response: &ApiGatewayProxyResponse, name: &str| {
        response
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // A browser may read the error, and no cache serves it to another origin.
    assert_eq!(
        header(&response, "access-control-allow-origin").as_deref(),
        Some(FRONT_END)
    );
    assert_eq!(header(&response, "vary").as_deref(), Some("Origin"));
    assert!(receive(&stack.aws, &stack.queue).await.is_empty());

    let response = api.handle(api_request("GET", None, Some("some-job"))).await;
    assert_eq!(response.status_code, 503, "{:?}", response.body);
    let error = json_body(&response)["error"].as_str().unwrap().to_string();
    assert!(error.contains("could not be read"), "{error}");
    assert_eq!(header(&response, "vary").as_deref(), Some("Origin"));

    // A preflight is answered without AWS, and the browser may cache it.
    let mut preflight = api_request("POST", None, None);
    preflight.http_method = aws_lambda_events::http::Method::OPTIONS;
    preflight
        .headers
        .insert("origin", FRONT_END.parse().expect("a header value"));
    let response = api.handle(preflight).await;
    assert_eq!(response.status_code, 204);
    assert_eq!(
        header(&response, "access-control-max-age").as_deref(),
        Some("600")
    );
    assert_eq!(header(&response, "vary").as_deref(), Some("Origin"));
}

/// The worker as the Lambda builds it, except that its table's Scans go through `faults`.
fn worker_with_failing_scans(stack: &Stack, faults: &FailingScans, max_receives: u32) -> Worker {
    let settings = stack.settings();
    Worker::new(
        Arc::new(DynamoDbSource::new(faults.client(&stack.aws))),
        stack.stores(&settings),
        settings.defaults.clone(),
        Tuning::default(),
    )
    .with_limits(Duration::from_secs(1), max_receives)
    .with_queue(Arc::new(SqsQueue::new(stack.aws.sqs(), &stack.queue)))
    .with_dead_letters(Arc::new(SqsQueue::new(stack.aws.sqs(), &stack.dlq)))
    .with_notifier(
        Arc::new(SesNotifier::new(stack.aws.sesv2())),
        EmailAddress::new(SENDER).unwrap(),
    )
    .with_status(service::status_board(&stack.aws, &settings).expect("a status board"))
}

fn job_message(id: &str, body: String, receive_count: u32) -> QueueMessage {
    QueueMessage {
        id: id.to_string(),
        body,
        sent_at: Some(chrono::Utc::now()),
        receive_count,
        receipt_handle: None,
        queue: None,
        reason: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_or_5xx_past_the_sdks_retries_stays_for_sqs_and_only_the_last_delivery_emails() {
    let stack = Stack::new(&every_type_items(10)).await;
    let board = service::status_board(&stack.aws, &stack.settings()).unwrap();
    for (faults, cause) in [
        (FailingScans::throttling(), "ProvisionedThroughputExceeded"),
        (FailingScans::server_error(), "Internal server error"),
    ] {
        let worker = worker_with_failing_scans(&stack, &faults, 3);
        let job_id = unique("keeps-failing");
        let body = format!(r#"{{"table": "{}", "job_id": "{job_id}"}}"#, stack.table);
        for delivery in 1..=3 {
            let message = job_message(
                "c0ffee00-0000-4000-8000-00000000f001",
                body.clone(),
                delivery,
            );
            let report = worker
                .handle_message(&message, Instant::now() + Duration::from_secs(600))
                .await;
            assert_eq!(report.disposition, Disposition::Retry, "{}", report.detail);
            assert!(report.keep_on_queue, "SQS keeps it: {}", report.detail);
            assert!(report.detail.contains(cause), "{}", report.detail);
            let status = board
                .get(&ddb_backup::model::job::JobId::new(&job_id).unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(status.state, ddb_backup::triggers::status::JobState::Failed);
            assert_eq!(status.will_retry, Some(delivery < 3), "delivery {delivery}");
            let emails = stack.emails();
            let about_job: Vec<_> = emails
                .iter()
                .filter(|(_, text, _)| text.contains(&job_id))
                .collect();
            assert_eq!(
                about_job.len(),
                usize::from(delivery == 3),
                "delivery {delivery}: {about_job:?}"
            );
        }
        // Every delivery's Scan went through the SDK's three attempts; a throttled page is then
        // read five times more (after 1, 2, 4, 8 and 8 s) before the leg gives up.
        let reads = if cause == "ProvisionedThroughputExceeded" {
            6
        } else {
            1
        };
        assert_eq!(
            faults.scans.load(std::sync::atomic::Ordering::SeqCst),
            3 * 3 * reads
        );
    }
    assert!(stack.manifests().await.is_empty());
    assert!(
        receive(&stack.aws, &stack.dlq).await.is_empty(),
        "SQS's redrive moves it, not the worker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_the_table_goes_to_the_dlq_at_once_with_one_email() {
    let stack = Stack::new(&every_type_items(10)).await;
    let faults = FailingScans::access_denied();
    let worker = worker_with_failing_scans(&stack, &faults, 5);
    let job_id = unique("denied");
    let body = format!(r#"{{"table": "{}", "job_id": "{job_id}"}}"#, stack.table);
    let report = worker
        .handle_message(
            &job_message("c0ffee00-0000-4000-8000-00000000f002", body, 1),
            Instant::now() + Duration::from_secs(600),
        )
        .await;
    assert_eq!(
        report.disposition,
        Disposition::Rejected,
        "{}",
        report.detail
    );
    assert!(!report.keep_on_queue);
    assert_eq!(
        faults.scans.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "access denied is not retried"
    );
    let dead = receive(&stack.aws, &stack.dlq).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0]
        .message_attributes()
        .and_then(|a| a.get(REASON_ATTRIBUTE))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("not authorized"), "{reason}");
    let emails: Vec<_> = stack
        .emails()
        .into_iter()
        .filter(|(_, text, _)| text.contains(&job_id))
        .collect();
    assert_eq!(emails.len(), 1, "{emails:?}");
    assert!(emails[0].0.contains("FAILED"), "{}", emails[0].0);
    assert!(emails[0].1.contains("dynamodb:Scan"), "{}", emails[0].1);
}

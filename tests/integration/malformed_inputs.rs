//! Malformed input at both doors: API bodies and SQS messages. Each gets a clear error (a 400 that
//! names the field, a 413, or the dead-letter queue with a logged reason); none crashes the
//! process; valid messages in the same batch still succeed. In-process with the memory adapters:
//! the emulator proves the adapters elsewhere, this proves the judgement.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use ddb_backup::backup::pipeline::Tuning;
use ddb_backup::model::job::{BucketName, Destination, JobDefaults, Prefix};
use ddb_backup::source::MemorySource;
use ddb_backup::store::{MemoryStore, ObjectStore};
use ddb_backup::triggers::api::Api;
use ddb_backup::triggers::queue::MemoryQueue;
use ddb_backup::triggers::status::StatusBoard;
use ddb_backup::triggers::worker::{Disposition, QueueMessage, Worker};
use tokio::time::Instant;

fn defaults() -> JobDefaults {
    JobDefaults {
        bucket: Some(BucketName::new("student-backup-20250706").unwrap()),
        ..JobDefaults::default()
    }
}

fn table() -> MemorySource {
    let items = (0..20)
        .map(|i| {
            [(
                "id".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::S(format!("s-{i}")),
            )]
            .into_iter()
            .collect()
        })
        .collect();
    MemorySource::new("studentData", "id", items, 10)
}

fn post(body: &str, base64: bool) -> ApiGatewayProxyRequest {
    let mut request: ApiGatewayProxyRequest =
        serde_json::from_str(include_str!("../fixtures/apigw-post-backup.json")).unwrap();
    request.body = Some(body.to_string());
    request.is_base64_encoded = base64;
    request
}

fn reply(response: &ApiGatewayProxyResponse) -> serde_json::Value {
    match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).expect("a JSON error body"),
        other => panic!("no body: {other:?}"),
    }
}

#[tokio::test]
async fn every_malformed_api_body_gets_a_clear_4xx_and_nothing_is_queued() {
    let queue = MemoryQueue::new();
    let api = Api::new(
        Arc::new(queue.clone()),
        defaults(),
        vec!["https://d111111abcdef8.cloudfront.net".into()],
    )
    .with_tables(Arc::new(table()))
    .with_status(StatusBoard::new(
        Arc::new(MemoryStore::new()),
        Prefix::new("backup-status/").unwrap(),
    ));
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let many = format!(
        r#"{{"table":"studentData","notify":[{}]}}"#,
        vec![r#""a@example.com""#; 51].join(",")
    );
    let long_id = format!(
        r#"{{"table":"studentData","job_id":"{}"}}"#,
        "j".repeat(129)
    );
    let huge = format!(
        r#"{{"table":"studentData","prefix":"{}"}}"#,
        "p".repeat(20_000)
    );
    // (body, base64?, expected status, field the error must name: "" for none)
    let cases: Vec<(String, bool, i64, &str)> = vec![
        (r#"{"table": "studentData""#.into(), false, 400, ""),
        ("not json at all".into(), false, 400, ""),
        (
            r#"{"table": "studentData"} trailing"#.into(),
            false,
            400,
            "",
        ),
        ("null".into(), false, 400, "."),
        (r#""studentData""#.into(), false, 400, "."),
        ("42".into(), false, 400, "."),
        (r#"["studentData"]"#.into(), false, 400, "."),
        (deep, false, 400, ""),
        ("{}".into(), false, 400, "table"),
        (r#"{"table": 42}"#.into(), false, 400, "table"),
        (r#"{"table": "ab"}"#.into(), false, 400, "table"),
        (r#"{"table": "no-such-table"}"#.into(), false, 400, "table"),
        (r#"{"table": "bad name!"}"#.into(), false, 400, "table"),
        (
            r#"{"table": "studentData", "tabel": "x"}"#.into(),
            false,
            400,
            "tabel",
        ),
        (
            r#"{"table": "studentData", "table": "studentData"}"#.into(),
            false,
            400,
            "table",
        ),
        (
            r#"{"table": "studentData", "format": "xml"}"#.into(),
            false,
            400,
            "format",
        ),
        (
            r#"{"table": "studentData", "format": 1}"#.into(),
            false,
            400,
            "format",
        ),
        (
            r#"{"table": "studentData", "compression": "brotli"}"#.into(),
            false,
            400,
            "compression",
        ),
        (
            r#"{"table": "studentData", "format": "parquet", "compression": "gzip"}"#.into(),
            false,
            400,
            "compression",
        ),
        (
            r#"{"table": "studentData", "format": "csv", "parquet_compression": "zstd"}"#.into(),
            false,
            400,
            "parquet_compression",
        ),
        (
            r#"{"table": "studentData", "parquet_compression": "lz4"}"#.into(),
            false,
            400,
            "parquet_compression",
        ),
        (
            r#"{"table": "studentData", "segments": 0}"#.into(),
            false,
            400,
            "segments",
        ),
        (
            r#"{"table": "studentData", "segments": -4}"#.into(),
            false,
            400,
            "segments",
        ),
        (
            r#"{"table": "studentData", "segments": 1000001}"#.into(),
            false,
            400,
            "segments",
        ),
        (
            r#"{"table": "studentData", "segments": 99999999999999999999999}"#.into(),
            false,
            400,
            "segments",
        ),
        (
            r#"{"table": "studentData", "segments": 2.5}"#.into(),
            false,
            400,
            "segments",
        ),
        (
            r#"{"table": "studentData", "segments": "8"}"#.into(),
            false,
            400,
            "segments",
        ),
        (
            r#"{"table": "studentData", "bucket": "ab"}"#.into(),
            false,
            400,
            "bucket",
        ),
        (
            r#"{"table": "studentData", "bucket": "Student_Backup"}"#.into(),
            false,
            400,
            "bucket",
        ),
        (
            r#"{"table": "studentData", "bucket": "192.168.1.1"}"#.into(),
            false,
            400,
            "bucket",
        ),
        (
            r#"{"table": "studentData", "prefix": "../escape"}"#.into(),
            false,
            400,
            "prefix",
        ),
        (
            r#"{"table": "studentData", "prefix": "/absolute"}"#.into(),
            false,
            400,
            "prefix",
        ),
        (
            r#"{"table": "studentData", "consistent_read": "yes"}"#.into(),
            false,
            400,
            "consistent_read",
        ),
        (
            r#"{"table": "studentData", "notify": "ops@example.com"}"#.into(),
            false,
            400,
            "notify",
        ),
        (
            r#"{"table": "studentData", "notify": ["not-an-address"]}"#.into(),
            false,
            400,
            "notify[0]",
        ),
        (many, false, 400, "notify"),
        (
            r#"{"table": "studentData", "job_id": "a/b"}"#.into(),
            false,
            400,
            "job_id",
        ),
        (long_id, false, 400, "job_id"),
        (
            r#"{"table": "studentData", "trigger": "schedule"}"#.into(),
            false,
            400,
            "trigger",
        ),
        (
            r#"{"table": "studentData", "trigger": "cron"}"#.into(),
            false,
            400,
            "trigger",
        ),
        (
            r#"{"table": "studentData", "requested_at": "yesterday"}"#.into(),
            false,
            400,
            "requested_at",
        ),
        ("%%% not base64 %%%".into(), true, 400, ""),
        ("//79/A==".into(), true, 400, ""),
        (huge, false, 413, ""),
    ];
    assert!(cases.len() >= 30);
    for (body, base64, status, field) in &cases {
        let response = api.handle(post(body, *base64)).await;
        let shown: String = body.chars().take(80).collect();
        assert_eq!(
            response.status_code, *status,
            "{shown}: {:?}",
            response.body
        );
        let error = reply(&response);
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.len() > 10, "{shown}: unhelpful error {error}");
        if !field.is_empty() {
            assert_eq!(error["field"].as_str(), Some(*field), "{shown}: {error}");
        }
        assert_eq!(
            response
                .headers
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("https://d111111abcdef8.cloudfront.net"),
            "{shown}: errors carry CORS headers"
        );
    }
    assert!(queue.messages().is_empty(), "a bad body was queued");
}

#[tokio::test]
async fn malformed_sqs_messages_go_to_the_dlq_with_a_reason_and_the_valid_ones_succeed() {
    let store = MemoryStore::new();
    let dead_letters = MemoryQueue::new();
    let stores_store = store.clone();
    let worker = Worker::new(
        Arc::new(table()),
        Arc::new(move |_: &Destination| Arc::new(stores_store.clone()) as Arc<dyn ObjectStore>),
        defaults(),
        Tuning::default(),
    )
    .with_dead_letters(Arc::new(dead_letters.clone()))
    .with_limits(Duration::from_millis(10), 5);
    let poison = [
        "",
        "   ",
        "not json",
        r#"{"table": "studentData""#,
        r#"{"table": "studentData"} {"table": "studentData"}"#,
        "null",
        "[]",
        r#"{"tabel": "studentData"}"#,
        r#"{"table": "studentData", "segments": "all"}"#,
        r#"{"table": "studentData", "format": "csv2"}"#,
        r#"{"table": "missingTable"}"#,
        r#"{"continuation": 2, "job": {"table": "studentData", "job_id": "ghost", "requested_at": "2026-11-28T02:00:00Z"}}"#,
        r#"{"continuation": 0, "job": {"table": "studentData"}}"#,
        r#"{"continuation": "one", "job": {"table": "studentData"}}"#,
        r#"{"continuation": 1}"#,
        r#"{"continuation": 1, "job": {"table": "studentData"}}"#,
        r#"{"continuation": 1, "job": {"table": "studentData", "job_id": "x", "requested_at": "2026-11-28T02:00:00Z"}, "extra": true}"#,
        r#"{"continuation": 1, "job": "studentData"}"#,
    ];
    let mut messages: Vec<QueueMessage> = poison
        .iter()
        .enumerate()
        .map(|(i, body)| {
            QueueMessage::from_parts(format!("poison-{i}"), body.to_string(), None, None)
        })
        .collect();
    for i in 0..2 {
        messages.insert(
            i * 7,
            QueueMessage::from_parts(
                format!("valid-{i}"),
                r#"{"table": "studentData"}"#.to_string(),
                None,
                None,
            ),
        );
    }
    let reports = worker
        .handle_batch(&messages, Instant::now() + Duration::from_secs(600))
        .await;
    assert_eq!(reports.len(), poison.len() + 2);
    for report in &reports {
        if report.message_id.starts_with("valid") {
            assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);
        } else {
            assert_eq!(
                report.disposition,
                Disposition::Rejected,
                "{}: {}",
                report.message_id,
                report.detail
            );
            assert!(!report.keep_on_queue);
            assert!(
                report.detail.len() > 10,
                "{}: {}",
                report.message_id,
                report.detail
            );
        }
    }
    let dead = dead_letters.messages();
    assert_eq!(dead.len(), poison.len());
    for (message, body) in dead.iter().zip(poison) {
        assert_eq!(message.body, body, "the DLQ keeps the body as sent");
        assert!(message.reason.as_deref().is_some_and(|r| !r.is_empty()));
    }
    let manifests = store
        .keys()
        .into_iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .count();
    assert_eq!(manifests, 2);
}

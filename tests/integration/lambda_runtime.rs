//! The built Lambda binaries under a local Lambda runtime emulator, so the real `bootstrap` path
//! is exercised: runtime API polling, event decoding, response encoding, JSON logs.
//! `cargo lambda watch --only-lambda-apis` serves the runtime API; the test starts the binary
//! cargo built for this test (as Lambda starts `bootstrap`) and delivers events with
//! `cargo lambda invoke --data-file`. cargo-lambda comes from PyPI into `.venv`
//! (`scripts/emulator.sh start` installs it).

use std::path::Path;

use crate::common::*;

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_worker_binaries_serve_real_events_through_the_lambda_runtime() {
    let aws = aws().await;
    let table = unique("runtime");
    create_table(&aws, &table).await;
    put_items(&aws, &table, &every_type_items(12)).await;
    let bucket = unique("runtime-backup");
    create_bucket(&aws, &bucket).await;
    let (queue, dlq) = create_queues(&aws, &unique("runtime-jobs"), 5).await;
    let env = vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("DDB_BACKUP_BUCKET", bucket.clone()),
        ("DDB_BACKUP_QUEUE_URL", queue.clone()),
        ("DDB_BACKUP_DLQ_URL", dlq.clone()),
        // cargo lambda's invocations get a short deadline; a real worker keeps 60 s in hand.
        ("DDB_BACKUP_DEADLINE_MARGIN_SECS", "2".to_string()),
        (
            "DDB_BACKUP_CORS_ORIGINS",
            "https://d111111abcdef8.cloudfront.net".to_string(),
        ),
    ];

    // The API binary: preflight, a bad body, a good one.
    let api = LocalLambda::start(env!("CARGO_BIN_EXE_backup-api"), &env);
    let preflight = api.invoke(&fixture("apigw-options-preflight.json"));
    assert_eq!(preflight["statusCode"], 204, "{preflight}");
    assert_eq!(
        preflight["headers"]["access-control-allow-origin"],
        "https://d111111abcdef8.cloudfront.net"
    );
    let mut bad = fixture("apigw-post-backup.json");
    bad["body"] = serde_json::json!(r#"{"table": "x", "segments": "many"}"#);
    let response = api.invoke(&bad);
    assert_eq!(response["statusCode"], 400, "{response}");
    let error: serde_json::Value =
        serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(error["field"], "segments", "{error}");
    let mut post = fixture("apigw-post-backup.json");
    post["body"] = serde_json::json!(format!(r#"{{"table": "{table}"}}"#));
    let response = api.invoke(&post);
    assert_eq!(response["statusCode"], 202, "{response}");
    let job_id = serde_json::from_str::<serde_json::Value>(response["body"].as_str().unwrap())
        .unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Lambda logs are JSON lines with the request's fields.
    let log = api.function_log();
    let line = log
        .lines()
        .find(|l| l.contains("job queued"))
        .unwrap_or_else(|| panic!("no `job queued` line in:\n{log}"));
    let entry: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(entry["fields"]["job_id"], job_id.as_str());
    drop(api);

    // The worker binary: the queued job plus a poison message, in one SQS event.
    aws.sqs()
        .send_message()
        .queue_url(&queue)
        .message_body("{\"table\": ")
        .send()
        .await
        .unwrap();
    let mut messages = Vec::new();
    for _ in 0..5 {
        messages.extend(receive(&aws, &queue).await);
        if messages.len() == 2 {
            break;
        }
    }
    assert_eq!(messages.len(), 2);
    let event = sqs_event_json(&messages, "arn:aws:sqs:us-east-1:123456789012:runtime-jobs");
    let worker = LocalLambda::start(env!("CARGO_BIN_EXE_backup-worker"), &env);
    let response = worker.invoke(&event);
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}\n{}",
        worker.function_log()
    );
    let keys = list_keys(&aws, &bucket).await;
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("/{job_id}/manifest.json"))),
        "{keys:?}"
    );
    let log = worker.function_log();
    assert!(log.contains("message rejected"), "{log}");
    assert!(log.contains("backup complete"), "{log}");
    // One summary line per message, with the job, table, items, bytes and duration.
    let summary: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| {
            e["fields"]["message"] == "message handled" && e["fields"]["job_id"] == job_id.as_str()
        })
        .unwrap_or_else(|| panic!("no summary line for {job_id} in:\n{log}"));
    let fields = &summary["fields"];
    assert_eq!(fields["table"], table.as_str(), "{summary}");
    assert_eq!(fields["items"], 12, "{summary}");
    assert!(fields["bytes"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(fields["duration_ms"].is_u64(), "{summary}");
    // The job's metrics, as a CloudWatch Embedded Metric Format line of their own.
    let emf: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["_aws"].is_object() && e["job_id"] == job_id.as_str())
        .unwrap_or_else(|| panic!("no EMF line for {job_id} in:\n{log}"));
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "ddb-backup", "{emf}");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["Table"]]),
        "{emf}"
    );
    assert!(
        emf["_aws"]["Timestamp"].as_u64().unwrap_or(0) > 1_700_000_000_000,
        "{emf}"
    );
    assert_eq!(emf["Table"], table.as_str(), "{emf}");
    assert_eq!(emf["BackupSucceeded"], 1, "{emf}");
    assert_eq!(emf["ItemsBackedUp"], 12, "{emf}");
    assert_eq!(emf["BytesStored"], fields["bytes"], "{emf}");
}

//! Restore to a moment, and item by item, from backups and the changes captured by the real
//! `backup-changes` binary: the emulator serves the table's stream, [`StreamDriver`] plays
//! Lambda's event source mapping, and the `ddb-backup` CLI restores as a user would.

use std::collections::HashMap;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use ddb_backup::model::manifest::ConsistencyKind;
use ddb_backup::source::DynamoDbSource;
use ddb_backup::{Backup, BackupJob, Item, JobDefaults, Manifest, Tuning};

use crate::common::*;

fn capture_env(bucket: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("DDB_BACKUP_BUCKET", bucket.to_string()),
        ("DDB_BACKUP_COMPRESSION", "zstd".to_string()),
    ]
}

fn cli(args: &[&str]) -> Output {
    ddb_backup(args)
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn id(i: usize) -> String {
    format!("item-{i:04}")
}

async fn backup(aws: &ddb_backup::aws::AwsContext, table: &str, bucket: &str) -> Manifest {
    let job = BackupJob::parse(
        &format!(r#"{{"table":"{table}","bucket":"{bucket}","segments":4,"compression":"zstd"}}"#),
        &JobDefaults::default(),
    )
    .unwrap();
    // Small pages, so the scan takes long enough for the writer to change items under it.
    Backup::new(
        Arc::new(DynamoDbSource::new(aws.dynamodb()).with_page_limit(2)),
        s3_store(aws, bucket),
        Tuning::default(),
    )
    .run(&job)
    .await
    .expect("backup")
}

/// Puts, updates, deletes and re-creates keys, tricky items among them, as a live table sees.
async fn churn(aws: &ddb_backup::aws::AwsContext, table: &str, round: usize) {
    let client = aws.dynamodb();
    let tricky = every_type_items(8);
    for i in 0..10 {
        let mut changed = tricky[(i + round) % 8].clone();
        changed.insert("id".into(), s(&id((i * 3 + round) % 40)));
        changed.insert("round".into(), AttributeValue::N(format!("{round}.{i}")));
        let deleted = id((i * 7 + round * 5 + 1) % 40);
        client
            .put_item()
            .table_name(table)
            .set_item(Some(changed))
            .send()
            .await
            .unwrap();
        client
            .delete_item()
            .table_name(table)
            .key("id", s(&deleted))
            .send()
            .await
            .unwrap();
        if i % 3 == 2 {
            // Re-created after its delete, with other attributes.
            let mut again = tricky[i % 8].clone();
            again.insert("id".into(), s(&deleted));
            again.insert("again".into(), AttributeValue::Bool(true));
            client
                .put_item()
                .table_name(table)
                .set_item(Some(again))
                .send()
                .await
                .unwrap();
        }
        let mut new = tricky[(i * 5) % 8].clone();
        new.insert("id".into(), s(&format!("new-{round}-{i}")));
        client
            .put_item()
            .table_name(table)
            .set_item(Some(new))
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next whole second after now, once it has passed and a little more: a moment no write
/// before it is stamped after, and none after it before.
async fn moment() -> DateTime<Utc> {
    let now = Utc::now();
    let t = now.duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(1);
    let wait = (t - now + TimeDelta::milliseconds(1200)).to_std().unwrap();
    tokio::time::sleep(wait).await;
    t
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_to_a_moment_during_or_between_backups_gives_the_table_as_it_was() {
    let aws = aws().await;
    let table = unique("pitr");
    let stream = create_table_with_stream(&aws, &table).await;
    let bucket = unique("pitr-backups");
    create_bucket(&aws, &bucket).await;
    put_items(&aws, &table, &every_type_items(40)).await;
    let capture = LocalLambda::start(env!("CARGO_BIN_EXE_backup-changes"), &capture_env(&bucket));
    let mut driver = StreamDriver::new(&stream);
    driver.deliver(&capture, 25);

    // A backup while the table changes under it, then a moment T1 after the writes stop.
    let (first, ()) = tokio::join!(backup(&aws, &table, &bucket), churn(&aws, &table, 0));
    let consistency = first
        .consistency
        .clone()
        .expect("the manifest says its consistency");
    assert_eq!(
        consistency.kind,
        ConsistencyKind::PointInTime,
        "{consistency:?}"
    );
    assert_eq!(consistency.stream_arn.as_deref(), Some(stream.as_str()));
    assert!(consistency.consistent_as_of.is_some());
    let at_t1 = scan_all(&aws, &table).await;
    let t1 = moment().await;

    // More changes, a moment T2 between the two backups, more changes, the second backup.
    churn(&aws, &table, 1).await;
    let at_t2 = scan_all(&aws, &table).await;
    let t2 = moment().await;
    churn(&aws, &table, 2).await;
    let second = backup(&aws, &table, &bucket).await;
    let now = scan_all(&aws, &table).await;
    driver.deliver(&capture, 25);

    for (t, expected, label) in [(t1, &at_t1, "during"), (t2, &at_t2, "between")] {
        let target = unique(&format!("pitr-{label}"));
        let report = ok(&cli(&[
            "restore",
            "--to-time",
            &rfc3339(t),
            "--source-table",
            &table,
            "--bucket",
            &bucket,
            "--table",
            &target,
            "--create-table",
            "--json",
        ]));
        assert_eq!(report["changes"]["as_of"], rfc3339(t), "{report}");
        let restored = scan_all(&aws, &target).await;
        assert_eq!(ids(&restored), ids(expected), "{label}: the keys at {t}");
        assert_eq!(
            sorted(restored),
            sorted(expected.clone()),
            "{label}: the items at {t}"
        );
    }
    // A T between the backups starts from the first: the second's scan ended after it.
    assert!(second.consistency.as_ref().unwrap().scan_to > rfc3339(t2));

    // Into the table itself, to T2: the keys created since are deleted, the rest put back.
    driver.deliver(&capture, 25);
    let report = ok(&cli(&[
        "restore",
        "--to-time",
        &rfc3339(t2),
        "--bucket",
        &bucket,
        "--table",
        &table,
        "--json",
    ]));
    assert!(
        report["changes"]["deleted"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(
        sorted(scan_all(&aws, &table).await),
        sorted(at_t2.clone()),
        "in place"
    );

    // The second backup restored by its manifest alone: consistent as of its end.
    let target = unique("pitr-manifest");
    let location = format!(
        "s3://{bucket}/backups/{table}/dt={}/{}/",
        &second.requested_at[..10],
        second.job_id
    );
    ok(&cli(&[
        "restore",
        &location,
        "--table",
        &target,
        "--create-table",
        "--json",
    ]));
    assert_eq!(sorted(scan_all(&aws, &target).await), sorted(now));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_level_restore_brings_back_deleted_and_corrupted_items_and_leaves_one_changed_since() {
    let aws = aws().await;
    let table = unique("items");
    let stream = create_table_with_stream(&aws, &table).await;
    let bucket = unique("items-backups");
    create_bucket(&aws, &bucket).await;
    let original = every_type_items(16);
    put_items(&aws, &table, &original).await;
    let capture = LocalLambda::start(env!("CARGO_BIN_EXE_backup-changes"), &capture_env(&bucket));
    let mut driver = StreamDriver::new(&stream);
    driver.deliver(&capture, 100);
    backup(&aws, &table, &bucket).await;
    let t = moment().await;

    // A bad script: two items deleted, two corrupted; a legitimate change beside it.
    let client = aws.dynamodb();
    for i in [1, 2] {
        client
            .delete_item()
            .table_name(&table)
            .key("id", s(&id(i)))
            .send()
            .await
            .unwrap();
    }
    for i in [3, 4, 10] {
        let mut item = original[i].clone();
        item.insert("corrupt".into(), s("yes"));
        client
            .put_item()
            .table_name(&table)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    driver.deliver(&capture, 100);
    // What changed since T, as a person deciding what to restore reads it.
    let listed = ok(&cli(&[
        "changes",
        "--table",
        &table,
        "--bucket",
        &bucket,
        "--since",
        &rfc3339(t),
        "--json",
    ]));
    assert_eq!(listed["keys_changed"], 5, "{listed}");
    assert_eq!(listed["changes"], 5, "{listed}");
    // Someone writes item 4 again, after the capture's last record of it (not captured yet).
    let mut later = original[4].clone();
    later.insert("fixed_by_hand".into(), AttributeValue::Bool(true));
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(later.clone()))
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(
        &keys,
        format!(
            "{{\"id\":{{\"S\":\"{}\"}}}}\n{{\"id\":{{\"S\":\"{}\"}}}}\n{}\n{{\"id\":{{\"S\":\"{}\"}}}}\n",
            id(1), id(2), id(3), id(4)
        ),
    )
    .unwrap();
    let args = [
        "restore",
        "--to-time",
        &rfc3339(t),
        "--bucket",
        &bucket,
        "--table",
        &table,
        "--keys",
        keys.to_str().unwrap(),
        "--json",
    ];
    let out = cli(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--overwrite"));
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let outcome: HashMap<String, String> = results
        .iter()
        .map(|r| {
            (
                r["key"]["id"]["S"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        outcome,
        HashMap::from([
            (id(1), "restored".to_string()),
            (id(2), "restored".to_string()),
            (id(3), "restored".to_string()),
            (id(4), "changed_since".to_string()),
        ])
    );
    let live: HashMap<String, Item> = scan_all(&aws, &table)
        .await
        .into_iter()
        .map(|i| (i["id"].as_s().unwrap().clone(), i))
        .collect();
    for i in [1, 2, 3] {
        assert_eq!(live[&id(i)], original[i], "{} is back as it was", id(i));
    }
    assert_eq!(live[&id(4)], later, "the item written since is left alone");
    assert!(
        live[&id(10)].contains_key("corrupt"),
        "an item not named is left alone"
    );
    assert_eq!(live.len(), 16);

    // Told to, it overwrites the one changed since.
    let mut overwrite = args.to_vec();
    overwrite.push("--overwrite");
    let results = ok(&cli(&overwrite));
    assert!(
        results
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["outcome"] == "overwritten"),
        "{results}"
    );
    let back = scan_all(&aws, &table).await;
    assert_eq!(
        back.iter().find(|i| i["id"] == s(&id(4))).unwrap(),
        &original[4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivered_twice_is_stored_once_and_a_lost_one_makes_restore_refuse() {
    let aws = aws().await;
    let table = unique("lost");
    let stream = create_table_with_stream(&aws, &table).await;
    let bucket = unique("lost-backups");
    create_bucket(&aws, &bucket).await;
    put_items(&aws, &table, &every_type_items(6)).await;
    let capture = LocalLambda::start(env!("CARGO_BIN_EXE_backup-changes"), &capture_env(&bucket));
    let mut driver = StreamDriver::new(&stream);
    assert_eq!(driver.deliver(&capture, 4), 6);
    backup(&aws, &table, &bucket).await;

    // Delivered again (Lambda retried after a lost reply): the same objects, nothing more.
    let batches = format!("backups/{table}/changes/batches/");
    let before: Vec<String> = list_keys(&aws, &bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&batches))
        .collect();
    assert_eq!(before.len(), 2, "{before:?}");
    for event in driver.delivered.clone() {
        assert_eq!(
            capture.invoke(&event)["batchItemFailures"],
            serde_json::json!([])
        );
    }
    let after: Vec<String> = list_keys(&aws, &bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&batches))
        .collect();
    assert_eq!(after, before);

    // Changes the capture has not stored yet: restore to after them refuses, naming how far
    // it can go.
    let t = moment().await;
    aws.dynamodb()
        .put_item()
        .table_name(&table)
        .item("id", s("late"))
        .send()
        .await
        .unwrap();
    let later = moment().await;
    let target = unique("lost-restored");
    let out = cli(&[
        "restore",
        "--to-time",
        &rfc3339(later),
        "--source-table",
        &table,
        "--bucket",
        &bucket,
        "--table",
        &target,
        "--create-table",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("complete only up to"),
        "{err}"
    );
    driver.deliver(&capture, 4);
    ok(&cli(&[
        "restore",
        "--to-time",
        &rfc3339(later),
        "--source-table",
        &table,
        "--bucket",
        &bucket,
        "--table",
        &target,
        "--create-table",
        "--json",
    ]));
    assert!(scan_all(&aws, &target)
        .await
        .iter()
        .any(|i| i["id"] == s("late")));

    // Lambda gave up on a batch (its on-failure destination's message, through the queue):
    // restore to a moment after it refuses; to one before it still works.
    let shard = driver.delivered[0]["Records"][0]["dynamodb"]["SequenceNumber"].clone();
    let lost_at = Utc::now();
    let body = serde_json::json!({
        "requestContext": {"requestId": "r", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
        "version": "1.0", "timestamp": rfc3339(lost_at),
        "DDBStreamBatchInfo": {
            "shardId": "shardId-lost", "startSequenceNumber": "9000000000000000000001",
            "endSequenceNumber": "9000000000000000000009",
            "approximateArrivalOfFirstRecord": rfc3339(lost_at),
            "approximateArrivalOfLastRecord": rfc3339(lost_at + TimeDelta::seconds(2)),
            "batchSize": 9, "streamArn": stream,
        }
    });
    let event = serde_json::json!({"Records": [{
        "messageId": "m-1", "receiptHandle": "h", "body": body.to_string(), "attributes": {},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:change-failures", "awsRegion": "us-east-1"
    }]});
    assert_eq!(
        capture.invoke(&event)["batchItemFailures"],
        serde_json::json!([]),
        "{shard}"
    );
    let after_loss = moment().await + TimeDelta::seconds(2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = cli(&[
        "restore",
        "--to-time",
        &rfc3339(after_loss),
        "--source-table",
        &table,
        "--bucket",
        &bucket,
        "--table",
        &unique("lost-refused"),
        "--create-table",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("were not stored"),
        "{err}"
    );
    ok(&cli(&[
        "restore",
        "--to-time",
        &rfc3339(t),
        "--source-table",
        &table,
        "--bucket",
        &bucket,
        "--table",
        &unique("lost-before"),
        "--create-table",
        "--json",
    ]));
}

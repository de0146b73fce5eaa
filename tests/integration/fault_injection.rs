//! With about 11 % of DynamoDB and S3 requests failing (dropped connections, throttling,
//! `SlowDown`, 500s) and another 5.5 % delayed, a backup completes and holds exactly the items of
//! a clean run: same items, same counts, compared after decoding, since file boundaries may
//! differ.

use std::sync::Arc;

use crate::common::*;
use ddb_backup::aws::AwsContext;
use ddb_backup::backup::pipeline::{Backup, Tuning};
use ddb_backup::codec::decode::decode_line;
use ddb_backup::model::job::{BackupJob, JobDefaults};
use ddb_backup::source::DynamoDbSource;
use ddb_backup::store::{S3Store, ServerSideEncryption};
use ddb_backup::{Item, Manifest};

fn job(table: &str, bucket: &str, job_id: &str) -> BackupJob {
    BackupJob::parse(
        &format!(
            r#"{{"table":"{table}","bucket":"{bucket}","job_id":"{job_id}","segments":3,"compression":"none"}}"#
        ),
        &JobDefaults::default(),
    )
    .expect("job")
}

fn retries() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_max_attempts(8)
        .with_initial_backoff(std::time::Duration::from_millis(20))
}

/// The S3 store for `bucket`, its requests going through `faults`.
fn faulty_store(aws: &AwsContext, bucket: &str, faults: &Faults) -> Arc<S3Store> {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws.s3()
            .config()
            .to_builder()
            .interceptor(faults.clone())
            .retry_config(retries())
            .build(),
    );
    Arc::new(S3Store::new(
        s3,
        ddb_backup::model::job::BucketName::new(bucket).unwrap(),
        ServerSideEncryption::Aes256,
        None,
    ))
}

async fn items_of(aws: &AwsContext, bucket: &str, manifest: &Manifest) -> Vec<Item> {
    let mut items = Vec::new();
    for file in &manifest.files {
        let (bytes, _, _) = get_object(aws, bucket, &file.key).await;
        let reader =
            ddb_backup::backup::compress::decompressing_reader(manifest.compression, &bytes[..])
                .unwrap();
        for line in std::io::BufRead::lines(std::io::BufReader::new(reader)) {
            items.push(decode_line(manifest.format, &line.unwrap()).unwrap());
        }
    }
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_in_nine_failing_on_dynamodb_and_s3_changes_nothing_in_the_backup() {
    let aws = aws().await;
    let table = unique("faulty");
    let bucket = unique("faulty-bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    let mut items = large_items(20, 100_000);
    items.extend(every_type_items(200));
    put_items(&aws, &table, &items).await;
    // A file per page: many S3 requests for the faults to hit.
    let tuning = Tuning {
        file_size_target: 1,
        ..Tuning::default()
    };

    let clean = Backup::new(
        Arc::new(DynamoDbSource::new(aws.dynamodb()).with_page_limit(5)),
        s3_store(&aws, &bucket),
        tuning.clone(),
    )
    .run(&job(&table, &bucket, "clean"))
    .await
    .expect("clean backup");

    // Every 6th request: in turn a dropped connection, a delay, an error response.
    let dynamo_faults = Faults::new(6, false);
    let s3_faults = Faults::new(6, true);
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws.dynamodb()
            .config()
            .to_builder()
            .interceptor(dynamo_faults.clone())
            .retry_config(retries())
            .build(),
    );
    let faulty = Backup::new(
        Arc::new(DynamoDbSource::new(dynamodb).with_page_limit(5)),
        faulty_store(&aws, &bucket, &s3_faults),
        tuning,
    )
    .run(&job(&table, &bucket, "faulty"))
    .await
    .expect("the backup completes through the faults");

    let (dropped, delayed, errors) = dynamo_faults.counts();
    assert!(
        dropped >= 1 && delayed >= 1 && errors >= 1,
        "DynamoDB faults: {dropped} {delayed} {errors}"
    );
    let (dropped, delayed, errors) = s3_faults.counts();
    assert!(
        dropped >= 1 && delayed >= 1 && errors >= 1,
        "S3 faults: {dropped} {delayed} {errors}"
    );
    eprintln!(
        "faults injected: DynamoDB {:?}, S3 {:?} (dropped, delayed, error responses)",
        dynamo_faults.counts(),
        s3_faults.counts()
    );

    assert_eq!(faulty.item_count, clean.item_count);
    assert_eq!(faulty.item_count, items.len() as u64);
    let clean_items = sorted(items_of(&aws, &bucket, &clean).await);
    let faulty_items = sorted(items_of(&aws, &bucket, &faulty).await);
    assert_eq!(faulty_items, clean_items, "the same items, decoded");
    assert_eq!(faulty_items, sorted(items));
    assert_eq!(open_multipart_uploads(&aws, &bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_part_uploads_survive_dropped_connections_delays_and_slowdown() {
    let aws = aws().await;
    let table = unique("faulty-parts");
    let bucket = unique("faulty-parts-bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    // 24 MB in one segment: one file of five 5 MiB parts.
    let items = large_items(80, 300_000);
    put_items(&aws, &table, &items).await;
    let s3_faults = Faults::new(3, true);
    let manifest = Backup::new(
        Arc::new(DynamoDbSource::new(aws.dynamodb())),
        faulty_store(&aws, &bucket, &s3_faults),
        Tuning {
            part_size: 5 * 1024 * 1024,
            ..Tuning::default()
        },
    )
    .run(
        &BackupJob::parse(
            &format!(
                r#"{{"table":"{table}","bucket":"{bucket}","segments":1,"compression":"none"}}"#
            ),
            &JobDefaults::default(),
        )
        .unwrap(),
    )
    .await
    .expect("the backup completes through the faults");
    let hit = s3_faults.hit.lock().unwrap().clone();
    assert!(
        hit.iter()
            .any(|r| r.starts_with("PUT") && r.contains("partNumber=")),
        "no fault hit a part upload: {hit:?}"
    );
    eprintln!(
        "faults on {} S3 requests (dropped, delayed, error responses): {:?}",
        hit.len(),
        s3_faults.counts()
    );
    assert_eq!(manifest.files.len(), 1);
    assert_eq!(
        sorted(items_of(&aws, &bucket, &manifest).await),
        sorted(items)
    );
    assert_eq!(open_multipart_uploads(&aws, &bucket).await, 0);
}

//! The pipeline against the emulator through the real SDK clients: every item type round-trips
//! through both formats and every compression, manifests match the stored objects, multipart
//! uploads work, and a failed run leaves no manifest and no open upload.
//!
//! One file of about 700 lines: the cases share the failing-store and table fixtures below, and
//! each reads as a scenario from table to manifest.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crate::common::*;
use async_trait::async_trait;
use bytes::Bytes;
use ddb_backup::backup::compress::decompressing_reader;
use ddb_backup::codec::decode::decode_dynamodb_json_line;
use ddb_backup::model::format::ParquetCompression;
use ddb_backup::model::job::JobDefaults;
use ddb_backup::source::DynamoDbSource;
use ddb_backup::store::{
    CompletedPart, ObjectMeta, ObjectStore, S3Store, ServerSideEncryption, StoreError,
};
use ddb_backup::{Backup, BackupError, BackupJob, Compression, Format, Item, Manifest, Tuning};
use sha2::{Digest, Sha256};

fn job(table: &str, bucket: &str, extra: &str) -> BackupJob {
    let json = format!(r#"{{"table":"{table}","bucket":"{bucket}","trigger":"cli"{extra}}}"#);
    BackupJob::parse(&json, &JobDefaults::default()).expect("valid job")
}

fn backup(
    aws: &ddb_backup::aws::AwsContext,
    store: Arc<dyn ObjectStore>,
    tuning: Tuning,
) -> Backup {
    Backup::new(Arc::new(DynamoDbSource::new(aws.dynamodb())), store, tuning)
}

/// Downloads one data file and checks what the manifest and the object metadata say about it:
/// stored size, SHA-256, `Content-Type`, no `Content-Encoding`, and what a compressed file holds.
async fn stored_file(
    aws: &ddb_backup::aws::AwsContext,
    bucket: &str,
    manifest: &Manifest,
    file: &ddb_backup::model::manifest::FileEntry,
) -> Vec<u8> {
    let (body, content_type, content_encoding) = get_object(aws, bucket, &file.key).await;
    assert_eq!(body.len() as u64, file.bytes, "{}: stored size", file.key);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        file.sha256,
        "{}: sha256",
        file.key
    );
    assert_eq!(
        content_type.as_deref(),
        Some(manifest.content_type.as_str())
    );
    assert_eq!(
        content_type.as_deref(),
        Some(ddb_backup::model::format::stored_content_type(
            manifest.format,
            manifest.compression
        ))
    );
    // A compressed file is stored as what it is: no client decompresses it on download.
    assert_eq!(content_encoding, None, "{}", file.key);
    if manifest.compression != Compression::None {
        let head = aws
            .s3()
            .head_object()
            .bucket(bucket)
            .key(&file.key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.metadata()
                .and_then(|m| m.get("records-content-type"))
                .map(String::as_str),
            Some(manifest.format.content_type()),
            "{}",
            file.key
        );
    }
    body.to_vec()
}

/// Reads back every file of a manifest, checking size and checksum, and returns the decoded lines.
async fn read_backup(
    aws: &ddb_backup::aws::AwsContext,
    bucket: &str,
    manifest: &Manifest,
) -> Vec<String> {
    let mut lines = Vec::new();
    for file in &manifest.files {
        let body = stored_file(aws, bucket, manifest, file).await;
        let reader = decompressing_reader(manifest.compression, &body[..]).unwrap();
        let mut count = 0u64;
        let mut plain = 0u64;
        for line in BufReader::new(reader).lines() {
            let line = line.expect("utf-8 line");
            plain += line.len() as u64 + 1;
            count += 1;
            lines.push(line);
        }
        assert_eq!(count, file.item_count, "{}: item count", file.key);
        assert_eq!(
            plain, file.uncompressed_bytes,
            "{}: uncompressed size",
            file.key
        );
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_through_every_format_and_compression() {
    let aws = aws().await;
    let table = unique("every-type");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    let items = every_type_items(40);
    put_items(&aws, &table, &items).await;

    for format in Format::ALL {
        // Parquet compresses its columns instead of the stream: each codec once.
        let codecs: Vec<(Compression, String)> = if format == Format::Parquet {
            ParquetCompression::ALL
                .iter()
                .map(|c| {
                    (
                        Compression::None,
                        format!(r#","parquet_compression":"{c}""#),
                    )
                })
                .collect()
        } else {
            Compression::ALL
                .iter()
                .map(|c| (*c, format!(r#","compression":"{c}""#)))
                .collect()
        };
        for (compression, codec) in codecs {
            let job = job(
                &table,
                &bucket,
                &format!(r#","format":"{format}"{codec},"segments":3"#),
            );
            let manifest = backup(&aws, s3_store(&aws, &bucket), Tuning::default())
                .run(&job)
                .await
                .unwrap_or_else(|e| panic!("{format}/{codec}: {e}"));
            assert_eq!(manifest.item_count, 40);
            assert_eq!(manifest.segments, 3);
            assert_eq!(manifest.key_schema[0].attribute_name, "id");
            assert!(manifest.files.iter().all(|f| f.key.ends_with(
                &ddb_backup::model::format::file_extension(format, compression)
            )));

            // The manifest in the bucket is the one returned, and it is written last.
            let manifest_key = format!(
                "{}manifest.json",
                manifest
                    .location
                    .trim_start_matches(&format!("s3://{bucket}/"))
            );
            let (stored, content_type, _) = get_object(&aws, &bucket, &manifest_key).await;
            assert_eq!(content_type.as_deref(), Some("application/json"));
            assert_eq!(Manifest::from_json(&stored).unwrap(), manifest);

            assert_eq!(
                server_side_encryption(&aws, &bucket, &manifest.files[0].key)
                    .await
                    .as_deref(),
                Some("AES256"),
                "data files are encrypted at rest"
            );

            if format == Format::Json {
                check_plain_json(&read_backup(&aws, &bucket, &manifest).await, &items);
            } else {
                let decoded = read_backup_items(&aws, &bucket, &manifest).await;
                assert_eq!(sorted(decoded), sorted(items.clone()), "{format}/{codec}");
            }
        }
    }
}

/// Reads back every file of a manifest in any format through `ddb_backup::readback::records`, checking
/// stored size, checksum, item count and decompressed size.
async fn read_backup_items(
    aws: &ddb_backup::aws::AwsContext,
    bucket: &str,
    manifest: &Manifest,
) -> Vec<Item> {
    let mut items = Vec::new();
    for file in &manifest.files {
        let body = stored_file(aws, bucket, manifest, file).await;
        let read = ddb_backup::readback::records::read_items(
            &body[..],
            manifest.format,
            manifest.compression,
            file.columns.as_deref(),
            |item| {
                items.push(item);
                true
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", file.key));
        assert_eq!(read.items, file.item_count, "{}: item count", file.key);
        assert_eq!(read.plain_bytes, file.uncompressed_bytes, "{}", file.key);
    }
    items
}

/// Plain JSON: one object per item, same ids, and numbers written with their exact digits.
fn check_plain_json(lines: &[String], items: &[Item]) {
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let mut ids: Vec<String> = parsed
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, crate::common::ids(items));
    let all = lines.join("\n");
    for exact in [
        "\"big\":12345678901234567890123456789012345678",
        "\"negbig\":-99999999999999999999999999999999999999",
        "\"tiny\":1E-130",
        "\"huge\":9.9999999999999999999999999999999999999E+125",
        "\"frac\":0.000000000000000000000000000000000001",
        "3.14159265358979323846264338327950288",
    ] {
        assert!(all.contains(exact), "missing exact number text {exact}");
    }
    let one = parsed.iter().find(|v| v["id"] == "item-0001").unwrap();
    assert_eq!(one["bin"], "AAEC//4KDQ==");
    assert_eq!(one["emptybin"], "");
    assert_eq!(one["bs"], serde_json::json!(["AQ==", "AgM="]));
    assert!(one["nothing"].is_null());
    let two = parsed.iter().find(|v| v["id"] == "item-0002").unwrap();
    assert_eq!(two["address"]["inner"]["emptymap"], serde_json::json!({}));
    assert_eq!(two["address"]["city"], "São Paulo");
    let zero = parsed.iter().find(|v| v["id"] == "item-0000").unwrap();
    assert_eq!(zero["empty"], "");
    assert_eq!(zero["unicode"], "Hà Nội ✓ 😀 \u{0} \"quoted\" \\ \n\t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_goes_through_multipart_and_rolls_files() {
    let aws = aws().await;
    let table = unique("large");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    // 36 items of ~300 KB: 10.8 MB, more than two 5 MiB parts, read in ~11 one-megabyte pages.
    let items = large_items(36, 300_000);
    put_items(&aws, &table, &items).await;
    let tuning = Tuning {
        part_size: 5 * 1024 * 1024,
        ..Tuning::default()
    };
    let job1 = job(&table, &bucket, r#","compression":"none","segments":1"#);
    let manifest = backup(&aws, s3_store(&aws, &bucket), tuning.clone())
        .run(&job1)
        .await
        .expect("backup");
    assert_eq!(manifest.files.len(), 1);
    assert!(
        manifest.files[0].bytes > 10 * 1024 * 1024,
        "{}",
        manifest.files[0].bytes
    );
    let lines = read_backup(&aws, &bucket, &manifest).await;
    let decoded: Vec<Item> = lines
        .iter()
        .map(|l| decode_dynamodb_json_line(l).unwrap())
        .collect();
    assert_eq!(sorted(decoded), sorted(items.clone()));
    assert_eq!(open_multipart_uploads(&aws, &bucket).await, 0);

    // A tiny size target closes a file after every page: many files per segment, each item once.
    let rolling = Tuning {
        file_size_target: 1,
        ..tuning
    };
    // verify streams the 10 MB object back from S3 and finds it whole.
    let report = ddb_backup::readback::verify::verify_backup(
        s3_store(&aws, &bucket),
        &manifest,
        str::to_string,
    )
    .await
    .expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems());
    assert_eq!(report.items(), 36);

    let job2 = job(&table, &bucket, r#","compression":"zstd","segments":2"#);
    let manifest = backup(&aws, s3_store(&aws, &bucket), rolling)
        .run(&job2)
        .await
        .expect("backup");
    assert!(manifest.files.len() >= 6, "{} files", manifest.files.len());
    assert!(manifest
        .files
        .iter()
        .any(|f| f.key.contains("seg-0001-00002")));
    let lines = read_backup(&aws, &bucket, &manifest).await;
    let decoded: Vec<Item> = lines
        .iter()
        .map(|l| decode_dynamodb_json_line(l).unwrap())
        .collect();
    assert_eq!(sorted(decoded), sorted(items));
}

/// The real S3 adapter, with the `fail_at`-th UploadPart failing as a dropped connection would.
struct FailingPartStore {
    inner: Arc<S3Store>,
    parts: AtomicU32,
    fail_at: u32,
}

#[async_trait]
impl ObjectStore for FailingPartStore {
    async fn preflight(&self) -> Result<(), StoreError> {
        self.inner.preflight().await
    }
    fn min_part_size(&self) -> usize {
        self.inner.min_part_size()
    }
    fn uri(&self, key: &str) -> String {
        self.inner.uri(key)
    }
    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<(), StoreError> {
        self.inner.put_object(key, body, meta).await
    }
    async fn create_multipart(&self, key: &str, meta: &ObjectMeta) -> Result<String, StoreError> {
        self.inner.create_multipart(key, meta).await
    }
    async fn upload_part(
        &self,
        key: &str,
        id: &str,
        n: i32,
        body: Bytes,
    ) -> Result<CompletedPart, StoreError> {
        if self.parts.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(StoreError::request(
                "UploadPart",
                key,
                ddb_backup::aws::FailureKind::Unreachable,
                "injected failure: connection reset",
            ));
        }
        self.inner.upload_part(key, id, n, body).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StoreError> {
        self.inner.complete_multipart(key, id, parts).await
    }
    async fn abort_multipart(&self, key: &str, id: &str) -> Result<(), StoreError> {
        self.inner.abort_multipart(key, id).await
    }
    async fn abort_uploads_under(
        &self,
        prefix: &str,
        owned: &ddb_backup::store::KeyFilter<'_>,
    ) -> Result<usize, StoreError> {
        self.inner.abort_uploads_under(prefix, owned).await
    }
    async fn put_object_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
        condition: ddb_backup::store::Precondition<'_>,
    ) -> Result<bool, StoreError> {
        self.inner.put_object_if(key, body, meta, condition).await
    }
    async fn get_tagged(&self, key: &str) -> Result<Option<(Bytes, String)>, StoreError> {
        self.inner.get_tagged(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn default_retention(
        &self,
    ) -> Result<Option<ddb_backup::store::DefaultRetention>, StoreError> {
        self.inner.default_retention().await
    }
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.exists(key).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn open(&self, key: &str) -> Result<ddb_backup::store::ObjectReader, StoreError> {
        self.inner.open(key).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_failing_midway_leaves_no_manifest_and_no_open_upload() {
    let aws = aws().await;
    let table = unique("failing");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    put_items(&aws, &table, &large_items(36, 300_000)).await;
    let store = Arc::new(FailingPartStore {
        inner: s3_store(&aws, &bucket),
        parts: AtomicU32::new(0),
        fail_at: 2,
    });
    let tuning = Tuning {
        part_size: 5 * 1024 * 1024,
        ..Tuning::default()
    };
    let job = job(&table, &bucket, r#","compression":"none","segments":2"#);
    let err = backup(&aws, store.clone(), tuning)
        .run(&job)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Store(_)), "{err}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert!(
        store.parts.load(Ordering::SeqCst) >= 2,
        "the failing part was reached"
    );
    assert_eq!(
        open_multipart_uploads(&aws, &bucket).await,
        0,
        "multipart uploads left open"
    );
    let keys = list_keys(&aws, &bucket).await;
    assert!(
        !keys.iter().any(|k| k.ends_with("manifest.json")),
        "a manifest was written: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_and_missing_table_fail_fast_with_clear_errors() {
    let aws = aws().await;
    let table = unique("exists");
    create_table(&aws, &table).await;
    put_items(&aws, &table, &every_type_items(4)).await;

    let missing_bucket = unique("nobucket");
    let err = backup(&aws, s3_store(&aws, &missing_bucket), Tuning::default())
        .run(&job(&table, &missing_bucket, ""))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Store(StoreError::DestinationMissing { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&missing_bucket), "{err}");

    let bucket = unique("bkt");
    create_bucket(&aws, &bucket).await;
    let missing_table = unique("notable");
    let err = backup(&aws, s3_store(&aws, &bucket), Tuning::default())
        .run(&job(&missing_table, &bucket, ""))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(&missing_table) && err.to_string().contains("not found"),
        "{err}"
    );
    assert!(list_keys(&aws, &bucket).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_id_is_backed_up_once_and_empty_tables_still_get_a_manifest() {
    let aws = aws().await;
    let table = unique("empty");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    let job = job(&table, &bucket, r#","job_id":"nightly-1""#);
    let manifest = backup(&aws, s3_store(&aws, &bucket), Tuning::default())
        .run(&job)
        .await
        .expect("backup of an empty table");
    assert_eq!(manifest.item_count, 0);
    assert!(manifest.files.is_empty());
    let err = backup(&aws, s3_store(&aws, &bucket), Tuning::default())
        .run(&job)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::AlreadyComplete { .. }), "{err}");
    let keys = list_keys(&aws, &bucket).await;
    assert_eq!(
        keys.len(),
        2,
        "only the manifest and the table's latest.json: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("/manifest.json")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("backups/{table}/latest.json")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_encryption_is_requested_when_configured() {
    let aws = aws().await;
    let table = unique("kms");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    put_items(&aws, &table, &every_type_items(4)).await;
    let store = s3_store_with(&aws, &bucket, ServerSideEncryption::Kms { key_id: None });
    let manifest = backup(&aws, store, Tuning::default())
        .run(&job(&table, &bucket, ""))
        .await
        .expect("backup");
    assert_eq!(
        server_side_encryption(&aws, &bucket, &manifest.files[0].key)
            .await
            .as_deref(),
        Some("aws:kms")
    );
}

/// Replaces every `every`-th DynamoDB response (DescribeTable and Scan) from the emulator with a
/// throttling error or a 500, alternating, as a busy table or a failing front end would answer.
#[derive(Debug)]
struct ScanFaults {
    every: u32,
    seen: Arc<AtomicU32>,
    injected: Arc<AtomicU32>,
}

impl aws_sdk_dynamodb::config::Intercept for ScanFaults {
    fn name(&self) -> &'static str {
        "ScanFaults"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if !(self.seen.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(self.every) {
            return Ok(());
        }
        let n = self.injected.fetch_add(1, Ordering::SeqCst);
        let (status, body) = if n.is_multiple_of(2) {
            (
                400,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected throttling"}"#,
            )
        } else {
            (
                500,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected failure"}"#,
            )
        };
        let response = context.response_mut();
        *response.status_mut() = status.try_into()?;
        *response.body_mut() = aws_smithy_types::body::SdkBody::from(body);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_and_failing_scans_are_retried_without_losing_or_repeating_a_page() {
    let aws = aws().await;
    let table = unique("faults");
    let bucket = unique("bkt");
    create_table(&aws, &table).await;
    create_bucket(&aws, &bucket).await;
    // Items of ~20 KB make 1 MB pages of ~50 items: many pages per segment.
    let mut items = large_items(120, 20_000);
    items.extend(every_type_items(40));
    put_items(&aws, &table, &items).await;
    let faults = ScanFaults {
        every: 3,
        seen: Arc::new(AtomicU32::new(0)),
        injected: Arc::new(AtomicU32::new(0)),
    };
    let injected = faults.injected.clone();
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws.sdk)
            .interceptor(faults)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(std::time::Duration::from_millis(10)),
            )
            .build(),
    );
    let backup = Backup::new(
        Arc::new(DynamoDbSource::new(client)),
        s3_store(&aws, &bucket),
        Tuning::default(),
    );
    // A generous read budget: it must notice the throttling and slow down, not fail.
    let manifest = backup
        .run(&job(
            &table,
            &bucket,
            r#","segments":2,"read_budget":100000"#,
        ))
        .await
        .expect("backup through injected faults");
    assert!(injected.load(Ordering::SeqCst) >= 2, "faults were injected");
    assert!(
        backup.progress().throttled_segments.load(Ordering::SeqCst) >= 1,
        "the read budget saw the throttling"
    );
    let lines = read_backup(&aws, &bucket, &manifest).await;
    let decoded: Vec<Item> = lines
        .iter()
        .map(|l| decode_dynamodb_json_line(l).unwrap())
        .collect();
    assert_eq!(decoded.len(), items.len(), "no page lost or read twice");
    assert_eq!(sorted(decoded), sorted(items));
}

/// A table source that notes when each Scan request started and what it consumed.
struct Metered {
    inner: DynamoDbSource,
    pages: std::sync::Mutex<Vec<(std::time::Instant, f64)>>,
}

#[async_trait]
impl ddb_backup::source::TableSource for Metered {
    async fn describe(
        &self,
        table: &str,
    ) -> Result<ddb_backup::source::TableInfo, ddb_backup::source::ScanError> {
        self.inner.describe(table).await
    }
    async fn scan_page(
        &self,
        request: &ddb_backup::source::PageRequest,
    ) -> Result<ddb_backup::source::Page, ddb_backup::source::ScanError> {
        let started = std::time::Instant::now();
        let page = self.inner.scan_page(request).await?;
        self.pages
            .lock()
            .unwrap()
            .push((started, page.consumed_capacity));
        Ok(page)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_budget_holds_the_consumed_capacity_per_second_within_ten_percent() {
    let aws = aws().await;
    let table = unique("budget");
    let bucket = unique("bkt");
    // Provisioned at 10 RCU/s: the job asks for 40 % of it (4 RCU/s) and at most 8 RCU/s, and
    // the smaller wins.
    create_provisioned_table(&aws, &table, 10).await;
    create_bucket(&aws, &bucket).await;
    let items = every_type_items(100);
    put_items(&aws, &table, &items).await;
    // Low enough that the emulator keeps up even while the other tests load it (at 8 RCU/s over
    // 3 segments it sometimes could not: each segment must then turn a page every 375 ms).
    let budget = 4.0;
    let source = Arc::new(Metered {
        // Small pages, so the run is many requests long.
        inner: DynamoDbSource::new(aws.dynamodb()).with_page_limit(4),
        pages: Default::default(),
    });
    let manifest = Backup::new(source.clone(), s3_store(&aws, &bucket), Tuning::default())
        .run(&job(
            &table,
            &bucket,
            r#","segments":3,"read_budget_percent":40,"read_budget":8"#,
        ))
        .await
        .expect("backup");
    assert_eq!(manifest.item_count, 100);
    // The budget paces the starts of requests: everything consumed before the last request
    // started, over the time from the first start to the last.
    let mut pages = source.pages.lock().unwrap().clone();
    pages.sort_by_key(|(t, _)| *t);
    let (first, last) = (pages[0].0, pages[pages.len() - 1].0);
    let consumed: f64 = pages[..pages.len() - 1].iter().map(|(_, c)| c).sum();
    let seconds = (last - first).as_secs_f64();
    let rate = consumed / seconds;
    eprintln!(
        "read budget {budget} RCU/s: {} requests, {consumed} RCU in {seconds:.2} s = {rate:.2} RCU/s",
        pages.len()
    );
    assert!(
        consumed >= 3.0 * budget,
        "too short a run to measure: {consumed} RCU"
    );
    // Never more than 10 % over the budget: that is the promise. Not far under it either, so
    // the budget, not a slow emulator, set the pace (the slack allows for the other tests
    // loading the emulator meanwhile).
    assert!(
        rate <= budget * 1.1,
        "{rate:.2} RCU/s ({consumed} RCU in {seconds:.2} s) exceeds the budget of {budget}"
    );
    assert!(
        rate >= budget * 0.8,
        "{rate:.2} RCU/s ({consumed} RCU in {seconds:.2} s): far under the budget of {budget}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_items_from_the_real_client_are_the_items_the_sdk_decodes() {
    use ddb_backup::source::{PageItems, PageRequest, TableSource};
    let aws = aws().await;
    let table = unique("wire");
    create_table(&aws, &table).await;
    let mut items = every_type_items(60);
    items.extend(large_items(60, 30_000));
    put_items(&aws, &table, &items).await;
    let source = DynamoDbSource::new(aws.dynamodb());
    for wire_items in [true, false] {
        let mut request = PageRequest {
            table: table.clone(),
            segment: 0,
            total_segments: 1,
            exclusive_start_key: None,
            consistent_read: false,
            limit: None,
            wire_items,
        };
        let (mut seen, mut pages) = (Vec::new(), 0);
        loop {
            let page = source.scan_page(&request).await.expect("scan page");
            pages += 1;
            match (page.items, wire_items) {
                (PageItems::Wire(wire), true) => {
                    for map in wire.iter() {
                        assert!(!map.contains(&b'\n'), "a wire item spans lines");
                        seen.push(
                            ddb_backup::codec::decode::decode_item_map(map).expect("DynamoDB JSON"),
                        );
                    }
                }
                (PageItems::Decoded(decoded), false) => seen.extend(decoded),
                (other, _) => panic!("wire_items={wire_items} gave the other form: {other:?}"),
            }
            match page.last_evaluated_key {
                Some(key) => request.exclusive_start_key = Some(key),
                None => break,
            }
        }
        assert!(pages >= 2, "the 1 MB page limit split the table");
        assert_eq!(
            sorted(seen),
            sorted(items.clone()),
            "wire_items={wire_items}"
        );
    }
}

//! A backup into an S3 Object Lock bucket on the emulator: the uploads carry the integrity
//! checksums S3 requires there (checked on the requests the SDK actually sends), the manifest
//! records the retention, and deleting a version of a backup's object is refused.

use std::sync::{Arc, Mutex};

use crate::common::*;
use ddb_backup::model::manifest::LockMode;
use ddb_backup::source::DynamoDbSource;
use ddb_backup::store::{DefaultRetention, S3Store, ServerSideEncryption};
use ddb_backup::{Backup, BackupJob, JobDefaults, Tuning};

/// One request as sent: method, URI and headers (names in lower case).
type Sent = (String, String, Vec<(String, String)>);

/// Records every request an S3 client sends.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Sent>>>);

impl aws_sdk_s3::config::Intercept for Recorder {
    fn name(&self) -> &'static str {
        "request recorder"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request();
        let headers = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        self.0.lock().unwrap().push((
            request.method().to_string(),
            request.uri().to_string(),
            headers,
        ));
        Ok(())
    }
}

/// Whether a request carries a CRC32 of its body: as a header, or announced as a trailer of an
/// `aws-chunked` body (how the SDK sends a checksum it computes while streaming).
fn carries_checksum(headers: &[(String, String)]) -> bool {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    get("x-amz-checksum-crc32").is_some()
        || (get("x-amz-trailer") == Some("x-amz-checksum-crc32")
            && get("content-encoding").is_some_and(|e| e.contains("aws-chunked")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_into_an_object_lock_bucket_records_its_retention_and_cannot_be_deleted() {
    let aws = aws().await;
    let (table, bucket) = large_table_and_lock_bucket(&aws, "locked").await;
    aws.s3()
        .put_object_lock_configuration()
        .bucket(&bucket)
        .object_lock_configuration(
            aws_sdk_s3::types::ObjectLockConfiguration::builder()
                .object_lock_enabled(aws_sdk_s3::types::ObjectLockEnabled::Enabled)
                .rule(
                    aws_sdk_s3::types::ObjectLockRule::builder()
                        .default_retention(
                            aws_sdk_s3::types::DefaultRetention::builder()
                                .mode(aws_sdk_s3::types::ObjectLockRetentionMode::Governance)
                                .days(3)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();

    let recorder = Recorder::default();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws.s3()
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            // Checksums only where an operation requires one: what is sent is then what the
            // store asks for, not the SDK's default.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build(),
    );
    let store = Arc::new(S3Store::new(
        s3,
        ddb_backup::model::job::BucketName::new(&bucket).unwrap(),
        ServerSideEncryption::Aes256,
        None,
    ));
    let job = BackupJob::parse(
        &format!(
            r#"{{"table": "{table}", "bucket": "{bucket}", "segments": 1, "compression": "none"}}"#
        ),
        &JobDefaults::default(),
    )
    .unwrap();
    let manifest = Backup::new(
        Arc::new(DynamoDbSource::new(aws.dynamodb())),
        store,
        Tuning::default(),
    )
    .run(&job)
    .await
    .expect("a backup into an Object Lock bucket");

    let retention = manifest
        .retention
        .clone()
        .expect("the manifest records the retention");
    assert_eq!((retention.mode, retention.days), (LockMode::Governance, 3));
    let started = chrono::DateTime::parse_from_rfc3339(&manifest.started_at).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(&retention.retain_until).unwrap();
    assert_eq!(until - started, chrono::Duration::days(3));

    // What the SDK sent: every object body with its checksum.
    let requests = recorder.0.lock().unwrap().clone();
    let uploads: Vec<_> = requests
        .iter()
        .filter(|(method, uri, _)| {
            method == "PUT" && !uri.contains("object-lock") && !uri.contains("uploadId=")
                || uri.contains("partNumber=")
        })
        .collect();
    let parts = uploads
        .iter()
        .filter(|(_, uri, _)| uri.contains("partNumber="))
        .count();
    assert!(
        parts >= 2,
        "a multipart upload of several parts: {uploads:#?}"
    );
    assert!(
        uploads.len() > parts,
        "the manifest's PutObject too: {uploads:#?}"
    );
    for (method, uri, headers) in &uploads {
        assert!(
            carries_checksum(headers),
            "{method} {uri} carries no CRC32: {headers:?}"
        );
    }

    assert_refused_deletes(&aws, &bucket, &manifest_key(&manifest, &bucket)).await;

    // A small backup's data files are single PutObjects: their versions are locked as well. (The
    // emulator applies a bucket's default retention to PutObject only, not to a completed
    // multipart upload, which S3 locks just the same; so the large file above is not tried.)
    let small = unique("locked-small");
    create_table(&aws, &small).await;
    put_items(&aws, &small, &every_type_items(20)).await;
    let manifest = run_backup(
        &aws,
        s3_store(&aws, &bucket),
        &format!(r#"{{"table": "{small}", "bucket": "{bucket}", "segments": 2}}"#),
    )
    .await;
    assert!(manifest.retention.is_some());
    for file in &manifest.files {
        assert_refused_deletes(&aws, &bucket, &file.key).await;
    }
}

/// The deployed bucket has Object Lock on but no default rule: the worker locks each object of
/// a backup (data files, manifest) itself, and leaves the documents jobs coordinate with
/// (`latest.json`, checkpoints, status) unlocked, so that their rewrites do not pile up as
/// locked versions for the whole retention. Checked on the requests sent (the emulator does not
/// keep a completed multipart upload's lock) and on the objects stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_default_rule_only_the_objects_of_a_backup_are_locked() {
    let aws = aws().await;
    let (table, bucket) = large_table_and_lock_bucket(&aws, "lockeach").await;
    let recorder = Recorder::default();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws.s3()
            .config()
            .to_builder()
            .interceptor(recorder.clone())
            .build(),
    );
    let store = Arc::new(
        S3Store::new(
            s3,
            ddb_backup::model::job::BucketName::new(&bucket).unwrap(),
            ServerSideEncryption::Aes256,
            None,
        )
        .with_object_lock(Some(DefaultRetention {
            mode: LockMode::Governance,
            days: 2,
        })),
    );
    let manifest = run_backup(
        &aws,
        store,
        &format!(
            r#"{{"table": "{table}", "bucket": "{bucket}", "segments": 1, "compression": "none"}}"#
        ),
    )
    .await;
    let retention = manifest.retention.clone().expect("the manifest records it");
    assert_eq!((retention.mode, retention.days), (LockMode::Governance, 2));
    let manifest_key = manifest_key(&manifest, &bucket);
    let mut backup: Vec<String> = manifest.files.iter().map(|f| f.key.clone()).collect();
    backup.push(manifest_key.clone());

    // Every object created (PutObject, CreateMultipartUpload) is locked exactly when it is
    // part of the backup, until two days from now.
    let now = chrono::Utc::now();
    let mut created = (0, 0);
    for (method, uri, headers) in recorder.0.lock().unwrap().iter() {
        let path = uri.split('?').next().unwrap_or_default();
        let creates =
            (method == "PUT" && !uri.contains("partNumber=")) || uri.ends_with("?uploads");
        let Some(key) = path
            .split(&format!("/{bucket}/"))
            .nth(1)
            .filter(|_| creates)
        else {
            continue;
        };
        let key = &key.replace("%3D", "=");
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        if backup.iter().any(|b| b == key) {
            created.0 += 1;
            assert_eq!(
                get("x-amz-object-lock-mode").as_deref(),
                Some("GOVERNANCE"),
                "{key}"
            );
            let until = chrono::DateTime::parse_from_rfc3339(
                &get("x-amz-object-lock-retain-until-date").expect("a retain-until date"),
            )
            .unwrap();
            let days = (until.with_timezone(&chrono::Utc) - now).num_minutes() as f64 / 1440.0;
            assert!(
                (1.99..=2.01).contains(&days),
                "{key} locked for {days} days"
            );
        } else {
            created.1 += 1;
            assert_eq!(
                get("x-amz-object-lock-mode"),
                None,
                "{key} coordinates the job but is locked"
            );
        }
    }
    assert!(
        created.0 == backup.len() && created.1 >= 1,
        "{created:?} of {backup:?}"
    );

    // As stored: the manifest is locked and cannot be deleted; latest.json is not locked.
    let locked = |key: String| {
        let s3 = aws.s3();
        let bucket = bucket.clone();
        async move {
            s3.head_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap()
                .object_lock_mode
                .is_some()
        }
    };
    assert!(
        locked(manifest_key.clone()).await,
        "the manifest is not locked"
    );
    let latest = format!("backups/{table}/latest.json");
    assert!(!locked(latest).await, "latest.json is locked");
    assert_refused_deletes(&aws, &bucket, &manifest_key).await;
}

/// A table of about 7 MiB (one segment: a multipart upload of two parts, and the manifest's
/// PutObject) and a bucket with Object Lock enabled and no default rule yet.
async fn large_table_and_lock_bucket(
    aws: &ddb_backup::aws::AwsContext,
    name: &str,
) -> (String, String) {
    let table = unique(name);
    create_table(aws, &table).await;
    put_items(aws, &table, &large_items(24, 300_000)).await;
    let bucket = unique(name);
    aws.s3()
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .unwrap();
    (table, bucket)
}

fn manifest_key(manifest: &ddb_backup::Manifest, bucket: &str) -> String {
    let base = manifest
        .location
        .trim_start_matches(&format!("s3://{bucket}/"))
        .to_string();
    format!("{base}manifest.json")
}

/// Deleting the version of `key` is refused and the object is still there.
async fn assert_refused_deletes(aws: &ddb_backup::aws::AwsContext, bucket: &str, key: &str) {
    let versions = aws
        .s3()
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let version = versions.versions()[0].version_id().unwrap().to_string();
    let refused = aws
        .s3()
        .delete_object()
        .bucket(bucket)
        .key(key)
        .version_id(&version)
        .send()
        .await;
    assert!(
        refused.is_err(),
        "deleting {key} version {version} succeeded"
    );
    let (body, _, _) = get_object(aws, bucket, key).await;
    assert!(!body.is_empty(), "{key} is still there");
}

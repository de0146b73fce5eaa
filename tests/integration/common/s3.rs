//! Buckets and objects in the emulator, and the S3 store and backup the tests run against them.

use ddb_backup::aws::AwsContext;
use ddb_backup::{Item, Manifest};

/// Creates a bucket.
pub async fn create_bucket(aws: &AwsContext, name: &str) {
    aws.s3()
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("create bucket");
}

/// Every key in a bucket, sorted.
pub async fn list_keys(aws: &AwsContext, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = aws
            .s3()
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match out.next_continuation_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    keys.sort();
    keys
}

/// Multipart uploads still open in a bucket.
pub async fn open_multipart_uploads(aws: &AwsContext, bucket: &str) -> usize {
    aws.s3()
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list multipart uploads")
        .uploads()
        .len()
}

/// Downloads an object with its Content-Type and Content-Encoding.
pub async fn get_object(
    aws: &AwsContext,
    bucket: &str,
    key: &str,
) -> (Vec<u8>, Option<String>, Option<String>) {
    let out = aws
        .s3()
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    let content_type = out.content_type.clone();
    let content_encoding = out.content_encoding.clone();
    let body = out
        .body
        .collect()
        .await
        .expect("read body")
        .into_bytes()
        .to_vec();
    (body, content_type, content_encoding)
}

/// Runs the job JSON against the emulator's DynamoDB into `store`, with default tuning.
pub async fn run_backup(
    aws: &AwsContext,
    store: std::sync::Arc<dyn ddb_backup::store::ObjectStore>,
    job_json: &str,
) -> ddb_backup::Manifest {
    let job = ddb_backup::BackupJob::parse(job_json, &ddb_backup::JobDefaults::default())
        .expect("valid job");
    ddb_backup::Backup::new(
        std::sync::Arc::new(ddb_backup::source::DynamoDbSource::new(aws.dynamodb())),
        store,
        ddb_backup::Tuning::default(),
    )
    .run(&job)
    .await
    .expect("backup")
}

/// The server-side encryption S3 reports for an object.
pub async fn server_side_encryption(aws: &AwsContext, bucket: &str, key: &str) -> Option<String> {
    aws.s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head object")
        .server_side_encryption()
        .map(|s| s.as_str().to_string())
}

/// The S3 store for a bucket, with SSE-S3 unless told otherwise.
pub fn s3_store_with(
    aws: &AwsContext,
    bucket: &str,
    sse: ddb_backup::store::ServerSideEncryption,
) -> std::sync::Arc<ddb_backup::store::S3Store> {
    std::sync::Arc::new(ddb_backup::store::S3Store::new(
        aws.s3(),
        ddb_backup::model::job::BucketName::new(bucket).expect("bucket name"),
        sse,
        None,
    ))
}

/// The S3 store for a bucket with SSE-S3.
pub fn s3_store(aws: &AwsContext, bucket: &str) -> std::sync::Arc<ddb_backup::store::S3Store> {
    s3_store_with(aws, bucket, ddb_backup::store::ServerSideEncryption::Aes256)
}

/// A backup of `items` (table `tbl`, key `id`) into a local directory by the real pipeline, from
/// an in-memory table: no emulator needed. `fields` are extra job fields (`,"format":"csv"`).
pub async fn directory_backup(dir: &std::path::Path, items: &[Item], fields: &str) -> Manifest {
    let job =
        ddb_backup::JobRequest::from_json(&format!(r#"{{"table":"tbl","segments":2{fields}}}"#))
            .expect("job JSON")
            .into_job(
                &Default::default(),
                Some(ddb_backup::model::job::Destination::Directory {
                    root: dir.to_path_buf(),
                    prefix: ddb_backup::model::job::Prefix::default(),
                }),
            )
            .expect("valid job");
    ddb_backup::Backup::new(
        std::sync::Arc::new(ddb_backup::source::MemorySource::new(
            "tbl",
            "id",
            items.to_vec(),
            200,
        )),
        std::sync::Arc::new(ddb_backup::store::LocalStore::new(dir)),
        ddb_backup::Tuning::default(),
    )
    .run(&job)
    .await
    .expect("backup")
}

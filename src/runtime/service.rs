//! Wiring shared by the CLI and the Lambda handlers: the same settings build the same adapters,
//! so every entry point runs the identical pipeline.

use std::sync::Arc;

use crate::aws::AwsContext;
use crate::backup::pipeline::Backup;
use crate::changes::{Capture, ChangeStream, DynamoDbStreams};
use crate::model::job::{BackupJob, Destination};
use crate::model::manifest::{Manifest, MANIFEST_FILE};
use crate::runtime::config::{ConfigError, Settings};
use crate::source::{DynamoDbSource, TableSource};
use crate::store::{LocalStore, ObjectStore, S3Store};
use crate::triggers::api::Api;
use crate::triggers::notify::SesNotifier;
use crate::triggers::queue::SqsQueue;
use crate::triggers::status::StatusBoard;
use crate::triggers::worker::{StoreFactory, Worker};

/// The store for a job's destination.
pub fn store_for(
    destination: &Destination,
    aws: &AwsContext,
    settings: &Settings,
) -> Arc<dyn ObjectStore> {
    match destination {
        Destination::S3 { bucket, .. } => {
            // The deployment's bucket locks backups object by object; any other bucket keeps
            // its own rule.
            let lock = settings
                .object_lock
                .filter(|_| settings.defaults.bucket.as_ref() == Some(bucket));
            Arc::new(
                S3Store::new(
                    aws.s3(),
                    bucket.clone(),
                    settings.sse.clone(),
                    settings.expected_bucket_owner.clone(),
                )
                .with_object_lock(lock),
            )
        }
        Destination::Directory { root, .. } => Arc::new(LocalStore::new(root.clone())),
    }
}

/// The change capture of the deployment: into its bucket, under its prefix, compressed as its
/// backups are.
pub fn capture(aws: &AwsContext, settings: &Settings) -> Result<Capture, ConfigError> {
    let bucket = settings
        .defaults
        .bucket
        .clone()
        .ok_or_else(|| ConfigError {
            var: "DDB_BACKUP_BUCKET",
            message: "change capture needs the bucket its table's backups go to".into(),
        })?;
    let destination = Destination::S3 {
        bucket,
        prefix: settings.defaults.prefix.clone(),
    };
    Ok(Capture::new(
        store_for(&destination, aws, settings),
        change_stream(aws),
        settings.defaults.prefix.as_str(),
        settings.defaults.compression,
    ))
}

/// The DynamoDB Streams adapter.
pub fn change_stream(aws: &AwsContext) -> Arc<dyn ChangeStream> {
    Arc::new(DynamoDbStreams::new(aws.dynamodb_streams()))
}

/// The DynamoDB table source.
pub fn dynamodb_source(aws: &AwsContext) -> Arc<dyn TableSource> {
    Arc::new(DynamoDbSource::new(aws.dynamodb()))
}

/// A ready-to-run backup of `job` against AWS (or the configured endpoint).
pub fn backup_for(job: &BackupJob, aws: &AwsContext, settings: &Settings) -> Backup {
    Backup::new(
        dynamodb_source(aws),
        store_for(&job.destination, aws, settings),
        settings.tuning.clone(),
    )
}

/// A backup found by its manifest, ready to verify or restore.
pub struct OpenedBackup {
    /// Where its files are.
    pub store: Arc<dyn ObjectStore>,
    /// The manifest.
    pub manifest: Manifest,
    /// The manifest's key in the store.
    pub key: String,
    local: bool,
}

impl OpenedBackup {
    /// Whether it is a local directory (whose changes, if any, are not beside it).
    pub fn is_local(&self) -> bool {
        self.local
    }
}

impl OpenedBackup {
    /// The store key of a file the manifest lists. In a directory the data files sit in `data/`
    /// beside the manifest, wherever the folder has been moved.
    pub fn locate(&self, key: &str) -> String {
        if self.local {
            key.rfind("data/").map_or(key, |i| &key[i..]).to_string()
        } else {
            key.to_string()
        }
    }
}

/// Why a backup could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The location is not an `s3://` URI with a valid bucket.
    #[error("`{location}` is not a backup location: {message}")]
    Location {
        /// What was given.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// The manifest could not be read.
    #[error("cannot read the manifest {uri}: {source}")]
    Read {
        /// Where it was looked for.
        uri: String,
        /// Why.
        source: crate::store::StoreError,
    },
    /// The manifest is not one.
    #[error("{uri}: {message}")]
    Parse {
        /// Where it was read.
        uri: String,
        /// Why it is not a manifest.
        message: String,
    },
}

/// Opens a backup from `s3://bucket/…/manifest.json` (or its folder), or a local manifest file or
/// backup folder.
pub async fn open_backup(
    location: &str,
    aws: &AwsContext,
    settings: &Settings,
) -> Result<OpenedBackup, OpenError> {
    let (store, key, local): (Arc<dyn ObjectStore>, String, bool) = if let Some(rest) =
        location.strip_prefix("s3://")
    {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket =
            crate::model::job::BucketName::new(bucket).map_err(|message| OpenError::Location {
                location: location.to_string(),
                message: message.into(),
            })?;
        let key = if key.is_empty() || key.ends_with('/') {
            format!("{key}{MANIFEST_FILE}")
        } else {
            key.to_string()
        };
        let store = S3Store::new(
            aws.s3(),
            bucket,
            settings.sse.clone(),
            settings.expected_bucket_owner.clone(),
        );
        (Arc::new(store), key, false)
    } else {
        let path = std::path::PathBuf::from(location);
        let file = if path.is_dir() {
            path.join(MANIFEST_FILE)
        } else {
            path
        };
        let dir = file
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| ".".into());
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        (Arc::new(LocalStore::new(dir)), name, true)
    };
    let uri = store.uri(&key);
    let body = store.get(&key).await.map_err(|source| OpenError::Read {
        uri: uri.clone(),
        source,
    })?;
    let manifest =
        Manifest::from_json(&body).map_err(|message| OpenError::Parse { uri, message })?;
    Ok(OpenedBackup {
        store,
        manifest,
        key,
        local,
    })
}

/// Job status documents in the default bucket, when one is configured.
pub fn status_board(aws: &AwsContext, settings: &Settings) -> Option<StatusBoard> {
    let bucket = settings.defaults.bucket.clone()?;
    let store = S3Store::new(
        aws.s3(),
        bucket,
        settings.sse.clone(),
        settings.expected_bucket_owner.clone(),
    );
    Some(StatusBoard::new(
        Arc::new(store),
        settings.status_prefix.clone(),
    ))
}

/// The backups of the deployment's bucket (or `bucket`), for `list` and `GET /backups`; `None`
/// without a bucket.
pub fn catalog(
    aws: &AwsContext,
    settings: &Settings,
    bucket: Option<crate::model::job::BucketName>,
) -> Option<crate::triggers::catalog::Catalog> {
    let bucket = bucket.or_else(|| settings.defaults.bucket.clone())?;
    let status = match &settings.defaults.bucket {
        Some(default) if *default == bucket => status_board(aws, settings),
        _ => None,
    };
    let store = Arc::new(S3Store::new(
        aws.s3(),
        bucket,
        settings.sse.clone(),
        settings.expected_bucket_owner.clone(),
    ));
    Some(crate::triggers::catalog::Catalog::new(
        store,
        settings.defaults.prefix.clone(),
        status,
    ))
}

/// The SQS worker with every port the settings configure: continuations need
/// `DDB_BACKUP_QUEUE_URL`, dead letters `DDB_BACKUP_DLQ_URL` (and
/// `DDB_BACKUP_FAILED_JOBS_QUEUE_URL`, where they are kept once recorded), email
/// `DDB_BACKUP_SENDER`.
pub fn worker(aws: &AwsContext, settings: &Settings) -> Worker {
    let store_aws = aws.clone();
    let store_settings = settings.clone();
    let stores: StoreFactory =
        Arc::new(move |destination| store_for(destination, &store_aws, &store_settings));
    let mut worker = Worker::new(
        dynamodb_source(aws),
        stores,
        settings.defaults.clone(),
        settings.tuning.clone(),
    )
    .with_limits(settings.deadline_margin, settings.max_receives)
    .with_stuck_after(settings.stuck_after)
    .with_policy(settings.policy.clone())
    .with_shrink_alert(settings.shrink_alert_percent, settings.console_url.clone())
    .with_writer(Arc::new(
        crate::readback::table_writer::DynamoDbWriter::new(aws.dynamodb()),
    ));
    if let Some(url) = &settings.queue_url {
        worker = worker.with_queue(Arc::new(SqsQueue::new(aws.sqs(), url)));
    }
    if let Some(url) = &settings.dead_letter_queue_url {
        worker = worker.with_dead_letters(Arc::new(SqsQueue::new(aws.sqs(), url)));
    }
    if let Some(url) = &settings.failed_jobs_queue_url {
        worker = worker.with_failed_jobs(Arc::new(SqsQueue::new(aws.sqs(), url)));
    }
    if let Some(sender) = &settings.sender {
        worker = worker.with_notifier(Arc::new(SesNotifier::new(aws.sesv2())), sender.clone());
    }
    if let Some(board) = status_board(aws, settings) {
        worker = worker.with_status(board);
    }
    worker
}

/// The API handler; it needs the queue (`DDB_BACKUP_QUEUE_URL`).
pub fn api(aws: &AwsContext, settings: &Settings) -> Result<Api, ConfigError> {
    let url = settings.queue_url.as_ref().ok_or_else(|| ConfigError {
        var: "DDB_BACKUP_QUEUE_URL",
        message: "required by the API: the URL of the job queue".to_string(),
    })?;
    let mut api = Api::new(
        Arc::new(SqsQueue::new(aws.sqs(), url)),
        settings.defaults.clone(),
        settings.cors_origins.clone(),
    )
    .with_tables(dynamodb_source(aws))
    .with_policy(settings.policy.clone());
    if let Some(board) = status_board(aws, settings) {
        api = api.with_status(board);
    }
    if let Some(catalog) = catalog(aws, settings, None) {
        api = api.with_catalog(catalog);
    }
    Ok(api)
}

/// JSON logs for Lambda: one object per line, which CloudWatch Logs Insights queries by field.
/// `RUST_LOG` overrides the level (default `info`).
pub fn init_lambda_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .init();
}

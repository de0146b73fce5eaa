//! Wiring shared by the CLI and the Lambda handlers: the same settings build the same adapters,
//! so every entry point runs the identical pipeline.

use std::sync::Arc;

use crate::aws::AwsContext;
use crate::config::Settings;
use crate::job::{BackupJob, Destination};
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::pipeline::Backup;
use crate::scan::{DynamoDbSource, TableSource};
use crate::store::{LocalStore, ObjectStore, S3Store};

/// The store for a job's destination.
pub fn store_for(
    destination: &Destination,
    aws: &AwsContext,
    settings: &Settings,
) -> Arc<dyn ObjectStore> {
    match destination {
        Destination::S3 { bucket, .. } => Arc::new(S3Store::new(
            aws.s3(),
            bucket.clone(),
            settings.sse.clone(),
            settings.expected_bucket_owner.clone(),
        )),
        Destination::Directory { root, .. } => Arc::new(LocalStore::new(root.clone())),
    }
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
    local: bool,
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
    let (store, key, local): (Arc<dyn ObjectStore>, String, bool) =
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket =
                crate::job::BucketName::new(bucket).map_err(|message| OpenError::Location {
                    location: location.to_string(),
                    message,
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
        local,
    })
}

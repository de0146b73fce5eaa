//! Wiring shared by the CLI and the Lambda handlers: the same settings build the same adapters,
//! so every entry point runs the identical pipeline.

use std::sync::Arc;

use crate::aws::AwsContext;
use crate::config::Settings;
use crate::job::{BackupJob, Destination};
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

//! `backup-changes`: the change-capture Lambda. Subscribed to the table's stream by an event
//! source mapping, it stores each batch of changes beside the table's backups; subscribed to its
//! failure queue, it records the batches Lambda gave up on. Configuration is the `DDB_BACKUP_*`
//! environment (docs/changes.md).

use ddb_backup::aws::AwsContext;
use ddb_backup::runtime::config::Settings;
use ddb_backup::runtime::service;
use ddb_backup::triggers::stream;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::value::RawValue;

/// mimalloc, tuned by [`ddb_backup::runtime::allocator::tune`] (why: see that module).
#[global_allocator]
static ALLOCATOR: ddb_backup::runtime::allocator::Allocator =
    ddb_backup::runtime::allocator::Allocator;

#[tokio::main]
async fn main() -> Result<(), Error> {
    ddb_backup::runtime::allocator::tune();
    service::init_lambda_logging();
    let settings = Settings::from_env()?;
    let aws = AwsContext::load(&settings.aws).await;
    let capture = std::sync::Arc::new(service::capture(&aws, &settings)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        let capture = capture.clone();
        async move {
            tracing::info!(request_id = %event.context.request_id, "invocation");
            stream::handle(&capture, &event.payload).await.map_err(|e| {
                tracing::error!(error = %e, "batch not stored; Lambda will retry it");
                Error::from(e.to_string())
            })
        }
    }))
    .await
}

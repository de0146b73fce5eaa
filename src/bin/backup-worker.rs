//! `BackupDynamoDBAndSendEmail`: the SQS-triggered worker Lambda. It parses the event, hands the
//! messages to the library's worker, and returns the partial batch response. Configuration is
//! the `DDB_BACKUP_*` environment (README, "Configuration").

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use ddb_backup::aws::AwsContext;
use ddb_backup::runtime::config::Settings;
use ddb_backup::runtime::service;
use ddb_backup::triggers::metrics::EmfStdout;
use ddb_backup::triggers::worker::deadline_from_epoch_ms;
use lambda_runtime::{service_fn, Error, LambdaEvent};

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
    // Per-job metrics as EMF lines in the log: CloudWatch makes them metrics, no API call.
    let worker = Arc::new(service::worker(&aws, &settings).with_metrics(Arc::new(EmfStdout)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move {
            let deadline = deadline_from_epoch_ms(event.context.deadline);
            tracing::info!(request_id = %event.context.request_id, deadline_ms = event.context.deadline,
                           records = event.payload.records.len(), "invocation");
            Ok::<SqsBatchResponse, Error>(worker.handle_sqs_event(event.payload, deadline).await)
        }
    }))
    .await
}

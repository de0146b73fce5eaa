//! The `POST /backup` and `GET /backup/{job_id}` Lambda behind API Gateway (REST, proxy
//! integration): parses the event, hands it to the library's API handler, returns its response.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use ddb_backup::aws::AwsContext;
use ddb_backup::runtime::config::Settings;
use ddb_backup::runtime::service;
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
    let api = Arc::new(service::api(&aws, &settings)?);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayProxyRequest>| {
            let api = api.clone();
            async move { Ok::<ApiGatewayProxyResponse, Error>(api.handle(event.payload).await) }
        },
    ))
    .await
}

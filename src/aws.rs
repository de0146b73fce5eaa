//! AWS SDK plumbing shared by every adapter: loading configuration (region, credentials, endpoint,
//! retries) and turning SDK errors into messages an operator can act on.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Where and how to reach AWS; every field falls back to the standard AWS chain.
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Region override (else `AWS_REGION`, profile, IMDS).
    pub region: Option<String>,
    /// Endpoint override for every service (else `AWS_ENDPOINT_URL`), e.g. a local emulator.
    pub endpoint_url: Option<String>,
    /// Named profile (else `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Attempts per request, first try included, for throttling, 5xx and network errors.
    pub max_attempts: u32,
}

/// Attempts per request unless configured: generous, because a nightly job would rather wait
/// out a throttling burst than fail.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// Longest wait for a TCP/TLS connection before the attempt fails and is retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Loaded SDK configuration plus what the S3 client needs to know about the endpoint.
#[derive(Debug, Clone)]
pub struct AwsContext {
    /// Shared SDK configuration.
    pub sdk: SdkConfig,
    /// A custom endpoint (emulator, VPC endpoint) needs path-style bucket addressing.
    pub custom_endpoint: bool,
}

impl AwsContext {
    /// Loads region, credentials and endpoint with the standard chain, plus our retry policy.
    pub async fn load(options: &AwsOptions) -> AwsContext {
        let endpoint = options
            .endpoint_url
            .clone()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .filter(|e| !e.is_empty());
        let attempts = if options.max_attempts == 0 {
            DEFAULT_MAX_ATTEMPTS
        } else {
            options.max_attempts
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            // A black-holed endpoint fails an attempt in seconds, not at the OS's TCP timeout, so
            // retries stay bounded in time. No whole-request timeout: a large part upload on a
            // slow link may legitimately take minutes.
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            );
        if let Some(region) = &options.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        AwsContext {
            sdk: loader.load().await,
            custom_endpoint: endpoint.is_some(),
        }
    }

    /// DynamoDB client.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// SQS client.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    /// SES v2 client.
    pub fn sesv2(&self) -> aws_sdk_sesv2::Client {
        aws_sdk_sesv2::Client::new(&self.sdk)
    }

    /// S3 client; path-style addressing on custom endpoints, where virtual hosts do not resolve.
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(self.custom_endpoint)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// What an SDK error says, reduced to what callers branch on.
#[derive(Debug, Clone)]
pub struct ErrorFacts {
    /// Service error code (`ResourceNotFoundException`, `NoSuchBucket`…).
    pub code: Option<String>,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Full message with causes.
    pub message: String,
}

impl ErrorFacts {
    /// Whether the caller lacks permission.
    pub fn is_access_denied(&self) -> bool {
        self.status == Some(403)
            || matches!(
                self.code.as_deref(),
                Some(
                    "AccessDenied"
                        | "AccessDeniedException"
                        | "Forbidden"
                        | "UnrecognizedClientException"
                )
            )
    }
}

/// Reads code, status and message out of any SDK error.
pub fn error_facts<E>(err: &SdkError<E, HttpResponse>) -> ErrorFacts
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err.code().map(str::to_string);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = match (err.as_service_error(), err.message()) {
        (Some(_), Some(msg)) => format!("{}: {msg}", code.as_deref().unwrap_or("error")),
        _ => DisplayErrorContext(err).to_string(),
    };
    ErrorFacts {
        code,
        status,
        message,
    }
}

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

/// Longest silence while reading a response before the attempt fails and is retried: a reply
/// that stalls halfway (a reset that never arrives) must not eat the minute a worker keeps in
/// hand before its deadline.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest whole attempt of a request with a small body (every call but part and object
/// uploads, which get [`attempt_timeout`] for their size).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest upload an attempt allows before it is retried: 1 MiB/s, a fiftieth of what a
/// Lambda function gets from S3 in its region.
pub const SLOWEST_UPLOAD_BYTES_PER_SEC: u64 = 1024 * 1024;

/// The whole-attempt timeout for a request carrying `body_bytes`: [`ATTEMPT_TIMEOUT`] plus the
/// body's time at [`SLOWEST_UPLOAD_BYTES_PER_SEC`]. A 16 MiB part gets 46 s.
pub fn attempt_timeout(body_bytes: u64) -> Duration {
    ATTEMPT_TIMEOUT + Duration::from_secs(body_bytes.div_ceil(SLOWEST_UPLOAD_BYTES_PER_SEC))
}

/// The timeouts of every request (connect, read, whole attempt), with the attempt sized to
/// a body of `body_bytes`.
pub fn timeouts(body_bytes: u64) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(attempt_timeout(body_bytes))
        .build()
}

/// The retry policy of every client: `max_attempts` attempts (first try included) with
/// exponential backoff and full jitter from 100 ms, at most 20 s between tries.
pub fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(20))
}

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
            .retry_config(retry_config(attempts))
            // A black-holed endpoint or a hung reply fails an attempt in seconds, not at the
            // OS's TCP timeout, so retries stay bounded in time. Uploads override the attempt
            // timeout with one sized to their body.
            .timeout_config(timeouts(0));
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

    /// DynamoDB Streams client.
    pub fn dynamodb_streams(&self) -> aws_sdk_dynamodbstreams::Client {
        aws_sdk_dynamodbstreams::Client::new(&self.sdk)
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

pub use crate::error::BoxError;

/// What went wrong with an AWS call, as far as deciding what to do next needs: the kind decides
/// whether to try again and what the one-line message tells the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No region configured: the request could not even be addressed.
    NoRegion,
    /// No credentials found in the standard chain.
    NoCredentials,
    /// The endpoint did not answer (connection refused, DNS, TLS).
    Unreachable,
    /// An attempt timed out.
    TimedOut,
    /// The service throttled the caller.
    Throttled,
    /// The service failed (5xx) or sent a response that could not be read.
    ServerError,
    /// The credentials are valid but not allowed to do this.
    AccessDenied,
    /// The service refused the request as it is (4xx other than throttling and access).
    Rejected,
}

impl FailureKind {
    /// Whether the same request can succeed later (the SDK already retried it a few times).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            FailureKind::Unreachable
                | FailureKind::TimedOut
                | FailureKind::Throttled
                | FailureKind::ServerError
        )
    }
}

/// What an SDK error says, reduced to what callers branch on.
#[derive(Debug, Clone)]
pub struct ErrorFacts {
    /// Service error code (`ResourceNotFoundException`, `NoSuchBucket`…).
    pub code: Option<String>,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// What kind of failure this is.
    pub kind: FailureKind,
    /// One line for the operator: the service's code and message, or what to fix locally.
    pub message: String,
}

impl ErrorFacts {
    /// Whether the caller lacks permission.
    pub fn is_access_denied(&self) -> bool {
        self.kind == FailureKind::AccessDenied
    }
}

/// Service error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "SlowDown",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    // DynamoDB Streams: too many GetRecords or GetShardIterator calls on a shard.
    "LimitExceededException",
];

/// Service error codes that mean "not allowed".
const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "Forbidden",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// Reads code, status, kind and a one-line message out of any SDK error.
pub fn error_facts<E>(err: &SdkError<E, HttpResponse>) -> ErrorFacts
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err.code().map(str::to_string);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let kind = failure_kind(err, code.as_deref(), status);
    let message = match (err.as_service_error(), err.message()) {
        (Some(_), Some(msg)) => format!("{}: {msg}", code.as_deref().unwrap_or("error")),
        _ => match kind {
            FailureKind::NoRegion => NO_REGION.to_string(),
            FailureKind::NoCredentials => NO_CREDENTIALS.to_string(),
            FailureKind::Unreachable => {
                "the AWS endpoint did not answer: check the network, or --endpoint-url / AWS_ENDPOINT_URL if one is set".to_string()
            }
            FailureKind::TimedOut => "the request timed out".to_string(),
            _ => DisplayErrorContext(err).to_string(),
        },
    };
    ErrorFacts {
        code,
        status,
        kind,
        message,
    }
}

/// What to do when no region is configured.
pub const NO_REGION: &str = "no AWS region: pass --region or set AWS_REGION";

/// What to do when no credentials are found.
pub const NO_CREDENTIALS: &str = "no AWS credentials: set AWS_PROFILE (or pass --profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login`";

fn failure_kind<E>(
    err: &SdkError<E, HttpResponse>,
    code: Option<&str>,
    status: Option<u16>,
) -> FailureKind
where
    E: std::error::Error + 'static,
{
    use aws_credential_types::provider::error::CredentialsError;
    use aws_smithy_http::endpoint::ResolveEndpointError;
    match err {
        SdkError::ServiceError(_) => {
            if code.is_some_and(|c| THROTTLING_CODES.contains(&c)) || status == Some(429) {
                FailureKind::Throttled
            } else if code.is_some_and(|c| ACCESS_DENIED_CODES.contains(&c)) || status == Some(403)
            {
                FailureKind::AccessDenied
            } else if status.is_some_and(|s| s >= 500) {
                FailureKind::ServerError
            } else {
                FailureKind::Rejected
            }
        }
        SdkError::TimeoutError(_) => FailureKind::TimedOut,
        SdkError::ResponseError(_) => FailureKind::ServerError,
        _ if caused_by::<CredentialsError>(err) => FailureKind::NoCredentials,
        // The endpoint rules fail without a region ("Invalid Configuration: Missing Region"),
        // or on endpoint settings that contradict each other (FIPS with a custom endpoint).
        _ if caused_by::<ResolveEndpointError>(err) => {
            if err_chain_mentions(err, "region") {
                FailureKind::NoRegion
            } else {
                FailureKind::Rejected
            }
        }
        SdkError::DispatchFailure(failure) if failure.is_timeout() => FailureKind::TimedOut,
        SdkError::DispatchFailure(failure) if failure.is_user() => FailureKind::Rejected,
        SdkError::DispatchFailure(_) => FailureKind::Unreachable,
        _ => FailureKind::Rejected,
    }
}

/// Whether an error of type `T` is somewhere in `err`'s chain of causes.
fn caused_by<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<T>() {
            return true;
        }
        next = e.source();
    }
    false
}

fn err_chain_mentions(err: &(dyn std::error::Error + 'static), word: &str) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.to_string().to_ascii_lowercase().contains(word) {
            return true;
        }
        next = e.source();
    }
    false
}

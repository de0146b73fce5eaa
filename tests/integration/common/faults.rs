//! Fault injection for the SDK clients: dropped connections, latency and error responses on every nth request.

/// Faults between an SDK client and the emulator, for both DynamoDB and S3 clients (they share
/// the smithy interceptor trait). Every `every`-th request gets the next fault in turn:
/// - a dropped connection: the attempt is sent to a closed port, so it never reaches the
///   emulator and the SDK sees a connection error;
/// - latency: the attempt is held back 150 ms;
/// - an error response: DynamoDB throttling or 500, S3 `SlowDown` (503) or 500. It replaces the
///   emulator's answer, so it is used only where repeating the request is harmless (not on the
///   POSTs that create or complete a multipart upload; those get a dropped connection instead).
#[derive(Debug, Clone)]
pub struct Faults {
    every: u32,
    s3: bool,
    seen: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Faults injected, by kind: dropped, latency, error.
    pub injected: std::sync::Arc<[std::sync::atomic::AtomicU32; 3]>,
    /// `METHOD URI` of every request that got a fault.
    pub hit: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[derive(Debug, Clone)]
struct ReplaceResponse(u16, &'static str);

impl aws_smithy_types::config_bag::Storable for ReplaceResponse {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl Faults {
    /// Faults on every `every`-th request of a DynamoDB (`s3 == false`) or S3 client.
    pub fn new(every: u32, s3: bool) -> Faults {
        Faults {
            every,
            s3,
            seen: Default::default(),
            injected: Default::default(),
            hit: Default::default(),
        }
    }

    /// Faults injected so far, by kind: (dropped connections, delays, error responses).
    pub fn counts(&self) -> (u32, u32, u32) {
        use std::sync::atomic::Ordering::SeqCst;
        (
            self.injected[0].load(SeqCst),
            self.injected[1].load(SeqCst),
            self.injected[2].load(SeqCst),
        )
    }

    fn error_response(&self, n: u32) -> ReplaceResponse {
        match (self.s3, n % 2) {
            (true, 0) => ReplaceResponse(
                503,
                "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>",
            ),
            (true, _) => ReplaceResponse(
                500,
                "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>",
            ),
            (false, 0) => ReplaceResponse(
                400,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected throttling"}"#,
            ),
            (false, _) => ReplaceResponse(
                500,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected failure"}"#,
            ),
        }
    }
}

impl aws_sdk_s3::config::Intercept for Faults {
    fn name(&self) -> &'static str {
        "test fault injector"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        use std::sync::atomic::Ordering::SeqCst;
        if !(self.seen.fetch_add(1, SeqCst) + 1).is_multiple_of(self.every) {
            return Ok(());
        }
        let n = self.seen.load(SeqCst) / self.every;
        let request = context.request_mut();
        if let Ok(mut hit) = self.hit.lock() {
            hit.push(format!("{} {}", request.method(), request.uri()));
        }
        // DynamoDB reads (Scan, DescribeTable) are all POSTs and all safe to repeat.
        let safe_to_replay = !self.s3 || request.method() != "POST";
        match n % 3 {
            1 => {
                self.injected[1].fetch_add(1, SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
            2 if safe_to_replay => {
                self.injected[2].fetch_add(1, SeqCst);
                cfg.interceptor_state()
                    .store_put(self.error_response(n / 3));
            }
            _ => {
                self.injected[0].fetch_add(1, SeqCst);
                let uri = request.uri().to_string();
                let rest = uri.trim_start_matches("http://");
                let path = rest.find('/').map_or("/", |i| &rest[i..]);
                request.set_uri(format!("http://127.0.0.1:1{path}"))?;
            }
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextMut<
            '_,
        >,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        if let Some(ReplaceResponse(status, body)) = cfg.load::<ReplaceResponse>().cloned() {
            cfg.interceptor_state().unset::<ReplaceResponse>();
            let response = context.response_mut();
            *response.status_mut() = status.try_into()?;
            *response.body_mut() = aws_smithy_types::body::SdkBody::from(body);
        }
        Ok(())
    }
}

/// Every DynamoDB `Scan` answered with one error, after the request reached the emulator: what a
/// table that keeps throttling, keeps failing or refuses the role looks like to the SDK, which
/// retries it as it would against AWS. Other operations pass untouched.
#[derive(Debug, Clone)]
pub struct FailingScans {
    status: u16,
    body: &'static str,
    /// Scan requests answered with the error.
    pub scans: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

#[derive(Debug, Clone)]
struct IsScan;

impl aws_smithy_types::config_bag::Storable for IsScan {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl FailingScans {
    /// `ProvisionedThroughputExceededException` on every Scan.
    pub fn throttling() -> FailingScans {
        Self::new(
            400,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#,
        )
    }

    /// `InternalServerError` (500) on every Scan.
    pub fn server_error() -> FailingScans {
        Self::new(
            500,
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#,
        )
    }

    /// `AccessDeniedException` on every Scan: the role lost `dynamodb:Scan`.
    pub fn access_denied() -> FailingScans {
        Self::new(
            400,
            r#"{"__type":"com.amazon.coral.service#AccessDeniedException","message":"User: arn:aws:sts::123456789012:assumed-role/DynamoDBBackupRole/worker is not authorized to perform: dynamodb:Scan"}"#,
        )
    }

    fn new(status: u16, body: &'static str) -> FailingScans {
        FailingScans {
            status,
            body,
            scans: Default::default(),
        }
    }

    /// A DynamoDB client over `aws` whose Scans fail, with 3 attempts 10 ms apart.
    pub fn client(&self, aws: &ddb_backup::aws::AwsContext) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws.dynamodb()
                .config()
                .to_builder()
                .interceptor(self.clone())
                .retry_config(
                    aws_config::retry::RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(std::time::Duration::from_millis(10)),
                )
                .build(),
        )
    }
}

impl aws_sdk_dynamodb::config::Intercept for FailingScans {
    fn name(&self) -> &'static str {
        "failing scans"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut<
            '_,
        >,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let target = context.request().headers().get("x-amz-target");
        if target.is_some_and(|t| t.ends_with(".Scan")) {
            cfg.interceptor_state().store_put(IsScan);
        }
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if cfg.load::<IsScan>().is_some() {
            cfg.interceptor_state().unset::<IsScan>();
            self.scans.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let response = context.response_mut();
            *response.status_mut() = self.status.try_into()?;
            *response.body_mut() = aws_smithy_types::body::SdkBody::from(self.body);
        }
        Ok(())
    }
}

//! Test harness for the emulator tests: real AWS SDK clients talking HTTP to moto.
//! Start the emulator with `scripts/test.sh` (which runs everything) or
//! `eval "$(scripts/emulator.sh start)"` before `cargo test`.
#![allow(dead_code)]

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ScalarAttributeType, WriteRequest,
};
use ddb_backup::aws::AwsContext;
use ddb_backup::Item;

/// The emulator's endpoint, or a panic that says how to start it: a test never skips silently.
pub fn endpoint() -> String {
    let endpoint = std::env::var("DDB_BACKUP_TEST_ENDPOINT")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| {
            panic!(
                "no AWS emulator configured: run `scripts/test.sh`, or start moto with \
                 `eval \"$(scripts/emulator.sh start)\"` and run cargo test again"
            )
        });
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    if std::net::TcpStream::connect(&addr).is_err() {
        panic!(
            "the AWS emulator at {endpoint} is not answering: start it with \
             `eval \"$(scripts/emulator.sh start)\"` (or run `scripts/test.sh`)"
        );
    }
    endpoint
}

/// SDK configuration for the emulator, with test credentials and us-east-1.
pub async fn aws() -> AwsContext {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    AwsContext {
        sdk,
        custom_endpoint: true,
    }
}

/// A name no other test uses (tests run in parallel against one emulator).
pub fn unique(base: &str) -> String {
    format!(
        "{base}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// Creates an on-demand table keyed by `id` (S).
pub async fn create_table(aws: &AwsContext, name: &str) {
    aws.dynamodb()
        .create_table()
        .table_name(name)
        .attribute_definitions(attr_def("id", ScalarAttributeType::S))
        .key_schema(key_element("id", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

/// Writes items in batches of 25, resubmitting unprocessed ones.
pub async fn put_items(aws: &AwsContext, table: &str, items: &[Item]) {
    let client = aws.dynamodb();
    for chunk in items.chunks(25) {
        let mut requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|item| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item.clone()))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .collect();
        while !requests.is_empty() {
            let out = client
                .batch_write_item()
                .request_items(table, requests)
                .send()
                .await
                .expect("batch write");
            requests = out
                .unprocessed_items
                .and_then(|mut m| m.remove(table))
                .unwrap_or_default();
        }
    }
}

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

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Items that cover every AttributeValue type and its corners: 38-digit numbers, extreme
/// exponents, empty strings and binaries, unicode, awkward attribute names, all three set types,
/// nested maps and lists, and items whose attributes differ from each other.
pub fn every_type_items(count: usize) -> Vec<Item> {
    (0..count)
        .map(|i| {
            let mut item: Item = HashMap::new();
            item.insert("id".into(), s(&format!("item-{i:04}")));
            match i % 4 {
                0 => {
                    item.insert("big".into(), n("12345678901234567890123456789012345678"));
                    item.insert(
                        "negbig".into(),
                        n("-99999999999999999999999999999999999999"),
                    );
                    item.insert("tiny".into(), n("1E-130"));
                    item.insert(
                        "huge".into(),
                        n("9.9999999999999999999999999999999999999E+125"),
                    );
                    item.insert("frac".into(), n("0.000000000000000000000000000000000001"));
                    item.insert("empty".into(), s(""));
                    item.insert("unicode".into(), s("Hà Nội ✓ 😀 \u{0} \"quoted\" \\ \n\t"));
                }
                1 => {
                    item.insert(
                        "bin".into(),
                        AttributeValue::B(Blob::new(vec![0, 1, 2, 255, 254, 10, 13])),
                    );
                    item.insert("emptybin".into(), AttributeValue::B(Blob::new(Vec::new())));
                    item.insert(
                        "ss".into(),
                        AttributeValue::Ss(vec!["a".into(), "b,c".into(), "\"q\"".into()]),
                    );
                    item.insert(
                        "ns".into(),
                        AttributeValue::Ns(vec!["1".into(), "-2.5".into(), "1E+100".into()]),
                    );
                    item.insert(
                        "bs".into(),
                        AttributeValue::Bs(vec![Blob::new(vec![1]), Blob::new(vec![2, 3])]),
                    );
                    item.insert("flag".into(), AttributeValue::Bool(false));
                    item.insert("nothing".into(), AttributeValue::Null(true));
                }
                2 => {
                    let mut inner = HashMap::new();
                    inner.insert(
                        "deep".into(),
                        AttributeValue::L(vec![n("1"), s(""), AttributeValue::Null(true)]),
                    );
                    inner.insert("emptymap".into(), AttributeValue::M(HashMap::new()));
                    let mut address = HashMap::new();
                    address.insert("city".into(), s("São Paulo"));
                    address.insert("zip".into(), n("1000"));
                    address.insert("inner".into(), AttributeValue::M(inner));
                    item.insert("address".into(), AttributeValue::M(address));
                    item.insert(
                        "list".into(),
                        AttributeValue::L(vec![
                            s("x"),
                            n("3.14159265358979323846264338327950288"),
                            AttributeValue::Bool(true),
                            AttributeValue::L(vec![]),
                            AttributeValue::Ss(vec!["only".into()]),
                        ]),
                    );
                }
                _ => {
                    item.insert("comma,name".into(), s("v"));
                    item.insert("quote\"name".into(), s("v"));
                    item.insert("new\nline".into(), s("v"));
                    item.insert("spaces in name".into(), n("-0"));
                    item.insert("gpa".into(), n("3.75"));
                    item.insert("enrolled".into(), AttributeValue::Bool(true));
                }
            }
            item
        })
        .collect()
}

/// Items of about `size` bytes each (incompressible text), to make multi-megabyte outputs
/// from few items, since the emulator scans slowly.
pub fn large_items(count: usize, size: usize) -> Vec<Item> {
    (0..count)
        .map(|i| {
            let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let text: String = (0..size)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (b'!' + (state % 90) as u8) as char
                })
                .collect();
            let mut item: Item = HashMap::new();
            item.insert("id".into(), s(&format!("big-{i:04}")));
            item.insert("payload".into(), AttributeValue::S(text));
            item
        })
        .collect()
}

/// Item ids, sorted.
pub fn ids(items: &[Item]) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_s().expect("id is S").clone())
        .collect();
    ids.sort();
    ids
}

/// Items sorted by id, for comparing item sets.
pub fn sorted(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by(|a, b| a["id"].as_s().ok().cmp(&b["id"].as_s().ok()));
    items
}

/// Every item of a table (a plain paged Scan).
pub async fn scan_all(aws: &AwsContext, table: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = aws
            .dynamodb()
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(out.items.unwrap_or_default());
        match out.last_evaluated_key.filter(|k| !k.is_empty()) {
            Some(key) => start = Some(key),
            None => return items,
        }
    }
}

/// Creates an on-demand table keyed by `id` (S) with a global secondary index `byGroup` on `grp` (S).
pub async fn create_table_with_gsi(aws: &AwsContext, name: &str) {
    use aws_sdk_dynamodb::types::{GlobalSecondaryIndex, Projection, ProjectionType};
    aws.dynamodb()
        .create_table()
        .table_name(name)
        .attribute_definitions(attr_def("id", ScalarAttributeType::S))
        .attribute_definitions(attr_def("grp", ScalarAttributeType::S))
        .key_schema(key_element("id", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("byGroup")
                .key_schema(key_element("grp", KeyType::Hash))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table with GSI");
}

/// The S3 store for a bucket, with SSE-S3 unless told otherwise.
pub fn s3_store_with(
    aws: &AwsContext,
    bucket: &str,
    sse: ddb_backup::store::ServerSideEncryption,
) -> std::sync::Arc<ddb_backup::store::S3Store> {
    std::sync::Arc::new(ddb_backup::store::S3Store::new(
        aws.s3(),
        ddb_backup::job::BucketName::new(bucket).expect("bucket name"),
        sse,
        None,
    ))
}

/// The S3 store for a bucket with SSE-S3.
pub fn s3_store(aws: &AwsContext, bucket: &str) -> std::sync::Arc<ddb_backup::store::S3Store> {
    s3_store_with(aws, bucket, ddb_backup::store::ServerSideEncryption::Aes256)
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
        std::sync::Arc::new(ddb_backup::scan::DynamoDbSource::new(aws.dynamodb())),
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

/// An attribute definition.
pub fn attr_def(name: &str, ty: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ty)
        .build()
        .expect("attribute definition")
}

/// A key schema element.
pub fn key_element(name: &str, ty: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(ty)
        .build()
        .expect("key element")
}

/// What moto holds, from `GET /moto-api/data.json` (sent emails are under `.ses.Message[]`).
pub fn moto_data() -> serde_json::Value {
    use std::io::{Read, Write};
    let endpoint = endpoint();
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the emulator");
    write!(
        stream,
        "GET /moto-api/data.json HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    serde_json::from_slice(&response[split + 4..]).expect("moto's data.json")
}

/// Emails moto accepted through SES, as (subject, html body, recipients).
pub fn sent_emails() -> Vec<(String, String, Vec<String>)> {
    let data = moto_data();
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["subject"].as_str().unwrap_or_default().to_string(),
                m["body"].as_str().unwrap_or_default().to_string(),
                m["destinations"]["ToAddresses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect(),
            )
        })
        .collect()
}

/// A job queue with its dead-letter queue (redrive after `max_receives`), as infra/ makes them.
pub async fn create_queues(aws: &AwsContext, name: &str, max_receives: u32) -> (String, String) {
    let sqs = aws.sqs();
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the dead-letter queue")
        .queue_url
        .expect("dlq url");
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("dlq arn");
    let queue = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
                .to_string(),
        )
        .send()
        .await
        .expect("create the job queue")
        .queue_url
        .expect("queue url");
    (queue, dlq)
}

/// Receives what is on `queue` (up to 10), with the attributes Lambda's event carries.
pub async fn receive(aws: &AwsContext, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    aws.sqs()
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .visibility_timeout(60)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive messages")
        .messages
        .unwrap_or_default()
}

/// The Lambda SQS event for `messages`, exactly as the event source mapping delivers it.
pub fn sqs_event_json(
    messages: &[aws_sdk_sqs::types::Message],
    queue_arn: &str,
) -> serde_json::Value {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), serde_json::json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::json!({ "Records": records })
}

/// Does what Lambda's event source mapping does after an invocation: deletes every message not
/// reported as a batch item failure.
pub async fn acknowledge(
    aws: &AwsContext,
    queue: &str,
    messages: &[aws_sdk_sqs::types::Message],
    failures: &[String],
) {
    for m in messages {
        if !failures.iter().any(|f| Some(f.as_str()) == m.message_id()) {
            aws.sqs()
                .delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete message");
        }
    }
}

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

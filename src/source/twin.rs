//! DynamoDB's read side as a twin, for the benches and tests that measure a backup against a
//! table's read limit without an AWS account. It answers `DescribeTable` and `Scan` in
//! DynamoDB's JSON protocol, so the real SDK client reads it, with its own retries and backoff:
//! in process ([`ReadTwin::client`], no sockets, so a bench can run in paused time) or over HTTP
//! ([`ReadTwin::serve`], for the release CLI and worker).
//!
//! As DynamoDB does:
//! - keys hash into one key space; partitions and parallel Scan segments are equal ranges of it,
//!   and a segment reads its range in key order;
//! - each partition serves 3,000 read units a second and the table its provisioned rate or
//!   on-demand ceiling, with up to 300 s of unused capacity saved as burst ([`Capacity`]);
//! - a page stops at the request's `Limit` or after 1 MB, and costs the bytes it read in 4 KiB
//!   units, halved when eventually consistent, reported as `ConsumedCapacity`;
//! - a read is let in while its partition and the table have capacity, and may leave them in
//!   debt; otherwise it gets `ProvisionedThroughputExceededException` (`ThrottlingException` on an
//!   on-demand table) with its `ThrottlingReasons`.
//!
//! Its items are small (the key and a short payload) but each is billed as `item_bytes`, so
//! a bench reads gigabytes of table in seconds of CPU.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::capacity::{key_hash, range_start, read_units, Capacity, CapacitySpec, Throttled};

/// Most bytes one Scan page reads.
const PAGE_BYTES: u64 = 1024 * 1024;
/// What a throttled request takes to come back.
const THROTTLE_LATENCY: Duration = Duration::from_millis(2);
/// The partition-key value every item of the hot key range shares.
const HOT_KEY: &str = "hot";

/// How a twin table is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// Provisioned capacity: `DescribeTable` reports the table's rate as its read capacity.
    Provisioned,
    /// On demand: the table's rate is its ceiling, and `DescribeTable` reports no capacity.
    OnDemand,
}

/// What a twin table holds and serves.
#[derive(Debug, Clone)]
pub struct TwinSpec {
    /// Table name.
    pub table: String,
    /// Items in the table.
    pub items: u64,
    /// Bytes each item is billed as.
    pub item_bytes: u64,
    /// Items that share one partition-key value (a hot key range), from the start.
    pub hot_items: u64,
    /// The table's read capacity ([`CapacitySpec::reads`]).
    pub capacity: CapacitySpec,
    /// Provisioned or on demand.
    pub billing: Billing,
    /// Time a page takes to come back, plus [`TwinSpec::latency_per_mib`] of what it read.
    pub latency: Duration,
    /// Time per MiB read.
    pub latency_per_mib: Duration,
}

impl TwinSpec {
    /// A provisioned table `table` of `items` items of `item_bytes`, `partitions` partitions at
    /// `rcu` read units a second, busy until now (no burst saved), pages taking 10 ms + 15 ms
    /// per MiB.
    pub fn provisioned(
        table: &str,
        items: u64,
        item_bytes: u64,
        partitions: usize,
        rcu: f64,
    ) -> Self {
        TwinSpec {
            table: table.to_string(),
            items,
            item_bytes,
            hot_items: 0,
            capacity: CapacitySpec::reads(partitions, rcu),
            billing: Billing::Provisioned,
            latency: Duration::from_millis(10),
            latency_per_mib: Duration::from_millis(15),
        }
    }
}

/// What the twin served and refused.
#[derive(Debug, Default)]
pub struct TwinStats {
    /// Scan pages served.
    pub pages: AtomicU64,
    /// Items served.
    pub items: AtomicU64,
    /// Read units Scans consumed, in thousandths.
    pub milli_units: AtomicU64,
    /// Scan requests refused for a partition's rate.
    pub throttled_by_partition: AtomicU64,
    /// Scan requests refused for the table's rate.
    pub throttled_by_table: AtomicU64,
    /// Read units other traffic asked for ([`ReadTwin::other_traffic`]), in thousandths.
    pub other_offered_milli: AtomicU64,
    /// Read units other traffic was served, in thousandths.
    pub other_served_milli: AtomicU64,
}

impl TwinStats {
    /// Read units Scans consumed.
    pub fn units(&self) -> f64 {
        self.milli_units.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// Scan requests refused.
    pub fn throttled(&self) -> u64 {
        self.throttled_by_partition.load(Ordering::Relaxed)
            + self.throttled_by_table.load(Ordering::Relaxed)
    }
}

/// One item's place in the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    hash: u64,
    index: u64,
}

/// A table's read side (see the module documentation).
#[derive(Debug)]
pub struct ReadTwin {
    spec: TwinSpec,
    arn: String,
    /// Every item, in key-space order.
    slots: Vec<Slot>,
    capacity: Mutex<Capacity>,
    /// Read units served per partition, in thousandths.
    partition_milli: Vec<AtomicU64>,
    /// What it served and refused.
    pub stats: TwinStats,
}

impl ReadTwin {
    /// The table `spec` describes, its capacity starting now.
    pub fn new(spec: TwinSpec) -> Arc<Self> {
        let mut slots: Vec<Slot> = (0..spec.items)
            .map(|index| Slot {
                hash: key_hash(partition_key(index, spec.hot_items).as_bytes()),
                index,
            })
            .collect();
        slots.sort_unstable();
        let capacity = Capacity::new(spec.capacity);
        Arc::new(ReadTwin {
            arn: format!(
                "arn:aws:dynamodb:us-east-1:000000000000:table/{}",
                spec.table
            ),
            partition_milli: (0..spec.capacity.partitions.max(1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            slots,
            capacity: Mutex::new(capacity),
            stats: TwinStats::default(),
            spec,
        })
    }

    /// What it was made from.
    pub fn spec(&self) -> &TwinSpec {
        &self.spec
    }

    /// Read units Scans consumed on each partition.
    pub fn partition_units(&self) -> Vec<f64> {
        self.partition_milli
            .iter()
            .map(|m| m.load(Ordering::Relaxed) as f64 / 1000.0)
            .collect()
    }

    /// The partition that holds the hot key range.
    pub fn hot_partition(&self) -> usize {
        self.lock().partition_of_hash(key_hash(HOT_KEY.as_bytes()))
    }

    /// Read units the whole table is billed as, read eventually consistent.
    pub fn table_units(&self) -> f64 {
        read_units(self.spec.items * self.spec.item_bytes, false)
    }

    /// An SDK client that sends its requests straight to the twin: no sockets, and the SDK's
    /// sleeps on tokio's clock, so a test or bench can run it in paused time. `retry_partition`
    /// gives it a retry quota of its own, as a worker's own process has.
    pub fn client(
        self: &Arc<Self>,
        retry: aws_sdk_dynamodb::config::retry::RetryConfig,
        retry_partition: &str,
    ) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "twin", "twin", None, None, "twin",
            ))
            .endpoint_url("http://twin.invalid")
            .http_client(SharedHttpClient::new(InProcess(self.clone())))
            .retry_config(retry)
            .retry_partition(
                aws_sdk_dynamodb::config::retry::RetryPartition::custom(
                    retry_partition.to_string(),
                )
                .build(),
            )
            .timeout_config(crate::aws::timeouts(0))
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// Serves DynamoDB's JSON protocol over HTTP on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) {
        use http_body_util::{BodyExt, Full};
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let twin = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let twin = twin.clone();
                        async move {
                            let target = header(request.headers(), "x-amz-target");
                            let body = request
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, body) = twin.handle(&target, &body).await;
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/x-amz-json-1.0")
                                .header("x-amzn-requestid", "twin")
                                .body(Full::new(body))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// Runs other traffic beside the scan for `duration`: `rate` read units a second, offered
    /// every 10 ms as one-unit reads spread over the partitions, as an application's `GetItem`
    /// calls are. What the table refuses is lost (counted in [`TwinStats`]), so the share kept
    /// is what a backup left the application.
    pub async fn other_traffic(self: Arc<Self>, rate: f64, duration: Duration) {
        let tick = Duration::from_millis(10);
        let end = Instant::now() + duration;
        let partitions = self.spec.capacity.partitions.max(1);
        let mut next_partition = 0;
        let mut owed = 0.0;
        let mut interval = tokio::time::interval(tick);
        while Instant::now() < end {
            interval.tick().await;
            owed += rate * tick.as_secs_f64();
            let now = Instant::now();
            let mut capacity = self.lock();
            while owed >= 1.0 {
                owed -= 1.0;
                let partition = next_partition % partitions;
                next_partition += 1;
                self.stats
                    .other_offered_milli
                    .fetch_add(1000, Ordering::Relaxed);
                if capacity.admit_read(partition, now).is_ok() {
                    capacity.charge(partition, 1.0, now);
                    self.stats
                        .other_served_milli
                        .fetch_add(1000, Ordering::Relaxed);
                }
            }
        }
    }

    /// Answers one request of DynamoDB's JSON protocol: the status and body.
    pub async fn handle(&self, target: &str, body: &[u8]) -> (u16, Bytes) {
        let operation = target.rsplit('.').next().unwrap_or_default();
        let request: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(400, "SerializationException", &e.to_string(), None),
        };
        if request["TableName"].as_str() != Some(self.spec.table.as_str()) {
            return error(
                400,
                "ResourceNotFoundException",
                "Requested resource not found",
                None,
            );
        }
        match operation {
            "DescribeTable" => (200, Bytes::from(self.describe().to_string())),
            "Scan" => self.scan(&request).await,
            other => error(
                400,
                "UnknownOperationException",
                &format!("the twin does not serve {other}"),
                None,
            ),
        }
    }

    fn describe(&self) -> Value {
        let rate = self.spec.capacity.table_rate;
        let mut table = json!({
            "TableName": self.spec.table,
            "TableArn": self.arn,
            "TableStatus": "ACTIVE",
            "CreationDateTime": 1.7e9,
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"}
            ],
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"}
            ],
            "ItemCount": self.spec.items,
            "TableSizeBytes": self.spec.items * self.spec.item_bytes,
        });
        match self.spec.billing {
            Billing::Provisioned => {
                table["ProvisionedThroughput"] = json!({
                    "ReadCapacityUnits": rate as i64,
                    "WriteCapacityUnits": 1000,
                    "NumberOfDecreasesToday": 0
                });
                table["BillingModeSummary"] = json!({"BillingMode": "PROVISIONED"});
            }
            Billing::OnDemand => {
                table["ProvisionedThroughput"] = json!({
                    "ReadCapacityUnits": 0,
                    "WriteCapacityUnits": 0,
                    "NumberOfDecreasesToday": 0
                });
                table["BillingModeSummary"] = json!({"BillingMode": "PAY_PER_REQUEST"});
            }
        }
        json!({ "Table": table })
    }

    async fn scan(&self, request: &Value) -> (u16, Bytes) {
        let total = request["TotalSegments"].as_u64().unwrap_or(1).max(1);
        let segment = request["Segment"].as_u64().unwrap_or(0);
        if segment >= total {
            return error(
                400,
                "ValidationException",
                "Segment must be less than TotalSegments",
                None,
            );
        }
        let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
        let limit = match request["Limit"].as_u64() {
            None => u64::MAX,
            Some(0) => return error(400, "ValidationException", "Limit must be at least 1", None),
            Some(n) => n,
        };
        let low = range_start(segment, total).unwrap_or(0);
        let high = range_start(segment + 1, total);
        let in_segment = |slot: &Slot| high.is_none_or(|h| slot.hash < h);
        let start = match &request["ExclusiveStartKey"] {
            Value::Null => self.slots.partition_point(|s| s.hash < low),
            key => match start_slot(key, self.spec.hot_items) {
                Some(after) => self.slots.partition_point(|s| *s <= after),
                None => {
                    return error(
                        400,
                        "ValidationException",
                        "The provided starting key is invalid",
                        None,
                    )
                }
            },
        };
        let mut end = start;
        let mut bytes = 0;
        while end < self.slots.len()
            && in_segment(&self.slots[end])
            && ((end - start) as u64) < limit
            && (end == start || bytes + self.spec.item_bytes <= PAGE_BYTES)
        {
            bytes += self.spec.item_bytes;
            end += 1;
        }
        let page = &self.slots[start..end];
        let units = read_units(bytes, consistent);
        if let Err(by) = self.admit_and_charge(page, low, units) {
            tokio::time::sleep(THROTTLE_LATENCY).await;
            return self.throttle(by);
        }
        self.stats.pages.fetch_add(1, Ordering::Relaxed);
        self.stats
            .items
            .fetch_add(page.len() as u64, Ordering::Relaxed);
        self.stats
            .milli_units
            .fetch_add((units * 1000.0) as u64, Ordering::Relaxed);
        let latency = self.spec.latency
            + self
                .spec
                .latency_per_mib
                .mul_f64(bytes as f64 / (1024.0 * 1024.0));
        tokio::time::sleep(latency).await;

        let items: Vec<Value> = page
            .iter()
            .map(|s| {
                let mut item = key_json(s.index, self.spec.hot_items);
                item["data"] = json!({"S": "twin"});
                item
            })
            .collect();
        let mut body = json!({
            "Count": items.len(),
            "Items": items,
            "ScannedCount": page.len(),
            "ConsumedCapacity": {"TableName": self.spec.table, "CapacityUnits": units},
        });
        // As DynamoDB does, a page that stopped at its Limit says where it stopped even when
        // nothing follows (the next page is then empty).
        let more = end < self.slots.len() && in_segment(&self.slots[end]);
        if more || page.len() as u64 == limit {
            if let Some(last) = page.last() {
                body["LastEvaluatedKey"] = key_json(last.index, self.spec.hot_items);
            }
        }
        (200, Bytes::from(body.to_string()))
    }

    /// Lets the read of `page` (in the segment starting at `low`) in if its first partition and
    /// the table have capacity, and charges each partition it read its share of `units`.
    fn admit_and_charge(&self, page: &[Slot], low: u64, units: f64) -> Result<(), Throttled> {
        let now = Instant::now();
        let mut capacity = self.lock();
        let first = capacity.partition_of_hash(page.first().map_or(low, |s| s.hash));
        capacity.admit_read(first, now)?;
        if page.is_empty() {
            capacity.charge(first, units, now);
            self.partition_milli[first].fetch_add((units * 1000.0) as u64, Ordering::Relaxed);
            return Ok(());
        }
        let per_item = units / page.len() as f64;
        let partitions: Vec<usize> = page
            .iter()
            .map(|s| capacity.partition_of_hash(s.hash))
            .collect();
        for run in partitions.chunk_by(|a, b| a == b) {
            let partition = run[0];
            let cost = per_item * run.len() as f64;
            capacity.charge(partition, cost, now);
            self.partition_milli[partition].fetch_add((cost * 1000.0) as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn throttle(&self, by: Throttled) -> (u16, Bytes) {
        let (counter, reason) = match (by, self.spec.billing) {
            (Throttled::Partition, _) => (
                &self.stats.throttled_by_partition,
                "TableReadKeyRangeThroughputExceeded",
            ),
            (Throttled::Table, Billing::Provisioned) => (
                &self.stats.throttled_by_table,
                "TableReadProvisionedThroughputExceeded",
            ),
            (Throttled::Table, Billing::OnDemand) => (
                &self.stats.throttled_by_table,
                "TableReadAccountLimitExceeded",
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let (code, message) = match (by, self.spec.billing) {
            (Throttled::Table, Billing::OnDemand) => (
                "ThrottlingException",
                "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly.",
            ),
            _ => (
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
            ),
        };
        error(400, code, message, Some((reason, &self.arn)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Capacity> {
        self.capacity.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Item `index`'s partition-key value: the hot key for the first `hot_items`.
fn partition_key(index: u64, hot_items: u64) -> String {
    if index < hot_items {
        HOT_KEY.to_string()
    } else {
        format!("item-{index:010}")
    }
}

/// Item `index`'s key as DynamoDB JSON.
fn key_json(index: u64, hot_items: u64) -> Value {
    json!({
        "pk": {"S": partition_key(index, hot_items)},
        "sk": {"N": index.to_string()},
    })
}

/// The slot an `ExclusiveStartKey` names.
fn start_slot(key: &Value, hot_items: u64) -> Option<Slot> {
    let index: u64 = key["sk"]["N"].as_str()?.parse().ok()?;
    let pk = key["pk"]["S"].as_str()?;
    (pk == partition_key(index, hot_items)).then(|| Slot {
        hash: key_hash(pk.as_bytes()),
        index,
    })
}

/// An error response in DynamoDB's shape.
fn error(status: u16, code: &str, message: &str, reason: Option<(&str, &str)>) -> (u16, Bytes) {
    let mut body = json!({
        "__type": format!("com.amazonaws.dynamodb.v20120810#{code}"),
        "message": message,
    });
    if let Some((reason, resource)) = reason {
        // DynamoDB's model spells the member differently on the two exceptions.
        let member = if code == "ThrottlingException" {
            "throttlingReasons"
        } else {
            "ThrottlingReasons"
        };
        body[member] = json!([{"reason": reason, "resource": resource}]);
    }
    (status, Bytes::from(body.to_string()))
}

fn header(headers: &hyper::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The SDK's HTTP client, answered by the twin in process.
#[derive(Debug, Clone)]
struct InProcess(Arc<ReadTwin>);

impl HttpClient for InProcess {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for InProcess {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let twin = self.0.clone();
        let target = request
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_string();
        let body = request.body().bytes().map(Bytes::copy_from_slice);
        HttpConnectorFuture::new(async move {
            let (status, body) = twin.handle(&target, &body.unwrap_or_default()).await;
            let mut response = HttpResponse::new(
                status.try_into().expect("a valid status"),
                SdkBody::from(body),
            );
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.0");
            response.headers_mut().insert("x-amzn-requestid", "twin");
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests;

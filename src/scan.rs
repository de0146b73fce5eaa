//! The first stage: reading a table with a parallel segmented Scan. The [`TableSource`] port has a
//! DynamoDB adapter for production and synthetic sources for tests and benchmarks; the paging loop
//! ([`scan_segment`]) is the same for all of them.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TableDescription};
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::aws::error_facts;
use crate::budget::ReadBudget;
use crate::encode::Item;
use crate::wire::{split_scan_response, WireItems};

/// A key attribute of a table or index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyElement {
    /// Attribute name.
    pub attribute_name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
}

/// A typed attribute definition (keys of the table and its indexes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeDefinition {
    /// Attribute name.
    pub attribute_name: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}

/// A secondary index, as much as a restore needs to recreate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Index name.
    pub index_name: String,
    /// Its key.
    pub key_schema: Vec<KeyElement>,
    /// `ALL`, `KEYS_ONLY` or `INCLUDE`.
    pub projection_type: Option<String>,
    /// Projected attributes for `INCLUDE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_key_attributes: Vec<String>,
}

/// What the backup records about the table: enough to choose segments and, later, to recreate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    /// Table name.
    pub table_name: String,
    /// Table ARN.
    pub table_arn: Option<String>,
    /// Primary key.
    pub key_schema: Vec<KeyElement>,
    /// Types of key attributes.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// `PROVISIONED` or `PAY_PER_REQUEST`.
    pub billing_mode: Option<String>,
    /// Provisioned read capacity (0 on on-demand tables).
    pub provisioned_read_capacity: Option<i64>,
    /// Provisioned write capacity.
    pub provisioned_write_capacity: Option<i64>,
    /// Global secondary indexes.
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexInfo>,
    /// Local secondary indexes.
    #[serde(default)]
    pub local_secondary_indexes: Vec<IndexInfo>,
    /// Approximate item count (DynamoDB refreshes it about every six hours).
    pub item_count: Option<i64>,
    /// Approximate size in bytes (same refresh).
    pub size_bytes: Option<i64>,
}

/// One Scan request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Table name.
    pub table: String,
    /// This segment.
    pub segment: u32,
    /// All segments.
    pub total_segments: u32,
    /// Where the previous page ended.
    pub exclusive_start_key: Option<Item>,
    /// Strongly consistent read.
    pub consistent_read: bool,
    /// At most this many items (the read budget's page size); `None`: up to 1 MB.
    pub limit: Option<i32>,
    /// Return the items as DynamoDB's wire bytes ([`PageItems::Wire`]) when the source can: the
    /// `dynamodb-json` format writes them out as they came. Sources that cannot, decode.
    pub wire_items: bool,
}

/// A page's items, in whichever form the source produced them.
#[derive(Debug)]
pub enum PageItems {
    /// SDK items.
    Decoded(Vec<Item>),
    /// DynamoDB JSON attribute maps exactly as DynamoDB sent them.
    Wire(WireItems),
}

impl Default for PageItems {
    fn default() -> Self {
        PageItems::Decoded(Vec::new())
    }
}

impl PageItems {
    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            PageItems::Decoded(items) => items.len(),
            PageItems::Wire(items) => items.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One page of a Scan.
#[derive(Debug, Default)]
pub struct Page {
    /// Items of the page.
    pub items: PageItems,
    /// Where to continue; `None` when the segment is done.
    pub last_evaluated_key: Option<Item>,
    /// Read capacity units this page consumed.
    pub consumed_capacity: f64,
}

/// Why reading the table failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The table is not there (or not in this region/account).
    #[error("table `{table}` not found: check the name, the region ({region}) and the account")]
    TableNotFound {
        /// Table name.
        table: String,
        /// Region the client used.
        region: String,
    },
    /// The caller may not read the table.
    #[error("access denied: {operation} on table `{table}`: {message}; grant dynamodb:{operation} on the table to the role")]
    AccessDenied {
        /// The API call.
        operation: &'static str,
        /// Table name.
        table: String,
        /// Service message.
        message: String,
    },
    /// Anything else, after the SDK's retries of throttling, 5xx and network errors ran out.
    #[error("{operation} on table `{table}` failed: {message}")]
    Request {
        /// The API call.
        operation: &'static str,
        /// Table name.
        table: String,
        /// Error with causes.
        message: String,
    },
}

/// The table source port.
#[async_trait]
pub trait TableSource: Send + Sync {
    /// Describes the table: key schema, indexes, size.
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError>;

    /// Reads one page of one segment.
    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError>;

    /// Throttled requests seen so far (including those the SDK retried), so the read budget can
    /// slow the whole job down.
    fn throttle_count(&self) -> u64 {
        0
    }
}

/// DynamoDB adapter. Throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
/// `RequestLimitExceeded`), 5xx and network errors are retried by the SDK with exponential backoff
/// ([`crate::aws::AwsOptions::max_attempts`]); a retried request repeats the same
/// `ExclusiveStartKey`, so a page is never skipped nor read twice.
#[derive(Debug, Clone)]
pub struct DynamoDbSource {
    client: aws_sdk_dynamodb::Client,
    page_limit: Option<i32>,
    throttles: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl DynamoDbSource {
    /// A source reading through `client` (plus an interceptor that counts throttled attempts).
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        let throttles = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let client = aws_sdk_dynamodb::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(ThrottleCounter(throttles.clone()))
                .build(),
        );
        DynamoDbSource {
            client,
            page_limit: None,
            throttles,
        }
    }

    /// At most `items` per Scan page (DynamoDB's own limit is 1 MB). Smaller pages mean finer
    /// checkpoints and smoother read rates, at more requests.
    pub fn with_page_limit(mut self, items: i32) -> Self {
        self.page_limit = Some(items.max(1));
        self
    }

    fn region(&self) -> String {
        self.client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "<none>".to_string())
    }

    fn fail<E>(
        &self,
        operation: &'static str,
        table: &str,
        err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> ScanError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let facts = error_facts(&err);
        if facts.code.as_deref() == Some("ResourceNotFoundException") {
            ScanError::TableNotFound {
                table: table.to_string(),
                region: self.region(),
            }
        } else if facts.is_access_denied() {
            ScanError::AccessDenied {
                operation,
                table: table.to_string(),
                message: facts.message,
            }
        } else {
            ScanError::Request {
                operation,
                table: table.to_string(),
                message: facts.message,
            }
        }
    }
}

#[async_trait]
impl TableSource for DynamoDbSource {
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError> {
        let out = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| self.fail("DescribeTable", table, e))?;
        let description = out.table.ok_or_else(|| ScanError::Request {
            operation: "DescribeTable",
            table: table.to_string(),
            message: "response carried no table description".to_string(),
        })?;
        Ok(table_info(table, description))
    }

    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError> {
        let scan = self
            .client
            .scan()
            .table_name(&request.table)
            .segment(request.segment as i32)
            .total_segments(request.total_segments as i32)
            .set_exclusive_start_key(request.exclusive_start_key.clone())
            .set_limit(match (request.limit, self.page_limit) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
            .consistent_read(request.consistent_read)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        let wire = WireSlot::default();
        let out = if request.wire_items {
            scan.customize()
                .interceptor(CaptureWireItems(wire.clone()))
                .send()
                .await
        } else {
            scan.send().await
        }
        .map_err(|e| self.fail("Scan", &request.table, e))?;
        let wire = wire.lock().unwrap_or_else(|e| e.into_inner()).take();
        let items = match wire {
            Some(wire) => {
                let count = out.count as usize;
                if wire.len() != count {
                    return Err(ScanError::Request {
                        operation: "Scan",
                        table: request.table.clone(),
                        message: format!(
                            "the response body held {} items but its Count says {count}",
                            wire.len()
                        ),
                    });
                }
                PageItems::Wire(wire)
            }
            None => PageItems::Decoded(out.items.unwrap_or_default()),
        };
        Ok(Page {
            items,
            last_evaluated_key: out.last_evaluated_key.filter(|k| !k.is_empty()),
            consumed_capacity: out
                .consumed_capacity
                .and_then(|c| c.capacity_units)
                .unwrap_or(0.0),
        })
    }

    fn throttle_count(&self) -> u64 {
        self.throttles.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Where [`CaptureWireItems`] leaves a page's items for the caller of `send`.
type WireSlot = std::sync::Arc<std::sync::Mutex<Option<WireItems>>>;

/// Keeps a Scan page's items as DynamoDB sent them: on a successful response it wraps the body so
/// that, once the SDK has read it, the items are cut out into the slot and the SDK deserializes
/// only the rest (count, `LastEvaluatedKey`, consumed capacity). Errors, retries, signing and
/// timeouts stay the SDK's. A body the splitter cannot read goes to the SDK unchanged, and the
/// page comes back decoded.
#[derive(Debug)]
struct CaptureWireItems(WireSlot);

impl aws_sdk_dynamodb::config::Intercept for CaptureWireItems {
    fn name(&self) -> &'static str {
        "ddb-backup wire items"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let response = context.response_mut();
        if response.status().is_success() {
            let body = std::mem::replace(response.body_mut(), SdkBody::taken());
            *response.body_mut() = SdkBody::from_body_1_x(SplitWhenRead {
                inner: body,
                buf: Vec::new(),
                slot: self.0.clone(),
                done: false,
            });
        }
        Ok(())
    }
}

/// A response body that collects the bytes, and at the end hands the items to the slot and only
/// the rest on to the SDK.
struct SplitWhenRead {
    inner: SdkBody,
    buf: Vec<u8>,
    slot: WireSlot,
    done: bool,
}

impl http_body::Body for SplitWhenRead {
    type Data = Bytes;
    type Error = aws_sdk_dynamodb::error::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if this.buf.is_empty() {
                            let hint = http_body::Body::size_hint(&this.inner);
                            this.buf.reserve(hint.lower() as usize + data.len());
                        }
                        this.buf.extend_from_slice(&data);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let body = Bytes::from(std::mem::take(&mut this.buf));
                    let rest = match split_scan_response(body.clone()) {
                        Ok(split) => {
                            *this.slot.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(split.items);
                            split.rest
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Scan response kept whole; the SDK decodes its items");
                            body
                        }
                    };
                    return Poll::Ready(Some(Ok(http_body::Frame::data(rest))));
                }
            }
        }
    }
}

/// Counts Scan attempts DynamoDB throttled, including the ones the SDK retries on its own.
#[derive(Debug)]
struct ThrottleCounter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl aws_sdk_dynamodb::config::Intercept for ThrottleCounter {
    fn name(&self) -> &'static str {
        "ddb-backup throttle counter"
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        let code = context
            .output_or_error()
            .and_then(|r| r.err())
            .and_then(|e| e.as_operation_error())
            .and_then(|e| e.downcast_ref::<aws_sdk_dynamodb::operation::scan::ScanError>())
            .and_then(|e| e.code().map(str::to_string));
        if matches!(
            code.as_deref(),
            Some(
                "ProvisionedThroughputExceededException"
                    | "ThrottlingException"
                    | "RequestLimitExceeded"
            )
        ) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }
}

fn table_info(table: &str, d: TableDescription) -> TableInfo {
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<KeyElement> {
        schema
            .iter()
            .map(|k| KeyElement {
                attribute_name: k.attribute_name().to_string(),
                key_type: k.key_type().as_str().to_string(),
            })
            .collect()
    };
    let projection = |p: Option<&aws_sdk_dynamodb::types::Projection>| {
        (
            p.and_then(|p| p.projection_type())
                .map(|t| t.as_str().to_string()),
            p.map(|p| p.non_key_attributes().to_vec())
                .unwrap_or_default(),
        )
    };
    TableInfo {
        table_name: d.table_name().unwrap_or(table).to_string(),
        table_arn: d.table_arn().map(str::to_string),
        key_schema: keys(d.key_schema()),
        attribute_definitions: d
            .attribute_definitions()
            .iter()
            .map(|a| AttributeDefinition {
                attribute_name: a.attribute_name().to_string(),
                attribute_type: a.attribute_type().as_str().to_string(),
            })
            .collect(),
        billing_mode: d
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str().to_string())
            .or_else(|| {
                Some("PROVISIONED".to_string()).filter(|_| d.provisioned_throughput().is_some())
            }),
        provisioned_read_capacity: d
            .provisioned_throughput()
            .and_then(|p| p.read_capacity_units()),
        provisioned_write_capacity: d
            .provisioned_throughput()
            .and_then(|p| p.write_capacity_units()),
        global_secondary_indexes: d
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let (projection_type, non_key_attributes) = projection(g.projection());
                IndexInfo {
                    index_name: g.index_name().unwrap_or_default().to_string(),
                    key_schema: keys(g.key_schema()),
                    projection_type,
                    non_key_attributes,
                }
            })
            .collect(),
        local_secondary_indexes: d
            .local_secondary_indexes()
            .iter()
            .map(|l| {
                let (projection_type, non_key_attributes) = projection(l.projection());
                IndexInfo {
                    index_name: l.index_name().unwrap_or_default().to_string(),
                    key_schema: keys(l.key_schema()),
                    projection_type,
                    non_key_attributes,
                }
            })
            .collect(),
        item_count: d.item_count(),
        size_bytes: d.table_size_bytes(),
    }
}

/// Bytes of table per segment when choosing the segment count.
pub const BYTES_PER_SEGMENT: i64 = 128 * 1024 * 1024;
/// Assumed average item size when DynamoDB reports an item count but no size.
pub const ASSUMED_ITEM_BYTES: i64 = 1024;
/// Segments used when the table reports neither size nor count (statistics are refreshed only
/// about every six hours, so a freshly loaded table reports zero).
pub const SEGMENTS_WITHOUT_STATISTICS: u32 = 4;

/// The segment count for a job that names none: one segment per 128 MiB of table (by
/// `TableSizeBytes`, else `ItemCount` × 1 KiB), at least 1 and at most `max`; 4 (capped at `max`)
/// when the table reports neither, since its statistics may simply be stale.
pub fn auto_segments(info: &TableInfo, max: u32) -> u32 {
    let max = max.max(1);
    let size = match (info.size_bytes, info.item_count) {
        (Some(bytes), _) if bytes > 0 => bytes,
        (_, Some(count)) if count > 0 => count.saturating_mul(ASSUMED_ITEM_BYTES),
        _ => return SEGMENTS_WITHOUT_STATISTICS.min(max),
    };
    let wanted = (size + BYTES_PER_SEGMENT - 1) / BYTES_PER_SEGMENT;
    u32::try_from(wanted).unwrap_or(u32::MAX).clamp(1, max)
}

/// What one segment's scan read.
#[derive(Debug, Default, Clone)]
pub struct SegmentScan {
    /// Pages read.
    pub pages: u64,
    /// Items read.
    pub items: u64,
    /// Read capacity consumed.
    pub consumed_capacity: f64,
    /// Where to resume when the scan stopped at the deadline; `None` when the segment is done.
    pub resume_key: Option<Item>,
    /// Whether DynamoDB throttled this segment (the budget slowed down).
    pub throttled: bool,
}

/// Reads the pages of one segment into `pages`, in order, from `request.exclusive_start_key`.
/// With a `deadline`, stops after the first page that ends past it and returns the key to resume
/// from; at least one page is read per call, so a resumed job always makes progress. With a
/// `budget`, waits for it before every page, charges what the page consumed, sizes pages to about
/// a second of the segment's share, and slows the job down when DynamoDB throttles. Stops early
/// without error when the receiver is gone (the consumer failed and reports why).
pub async fn scan_segment(
    source: &dyn TableSource,
    mut request: PageRequest,
    pages: mpsc::Sender<PageItems>,
    deadline: Option<tokio::time::Instant>,
    budget: Option<&ReadBudget>,
) -> Result<SegmentScan, ScanError> {
    let mut stats = SegmentScan::default();
    loop {
        if let Some(budget) = budget {
            budget.acquire().await;
            let per_item = stats.consumed_capacity / stats.items.max(1) as f64;
            if let Some(limit) = budget.page_limit(request.total_segments, per_item) {
                request.limit = Some(limit);
            }
        }
        let throttles_before = source.throttle_count();
        let page = source.scan_page(&request).await?;
        if let Some(budget) = budget {
            budget.consumed(page.consumed_capacity);
            if source.throttle_count() > throttles_before {
                budget.throttled();
                stats.throttled = true;
            }
        }
        stats.pages += 1;
        stats.items += page.items.len() as u64;
        stats.consumed_capacity += page.consumed_capacity;
        if !page.items.is_empty() && pages.send(page.items).await.is_err() {
            return Ok(stats);
        }
        match page.last_evaluated_key {
            Some(key) if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                stats.resume_key = Some(key);
                return Ok(stats);
            }
            Some(key) => request.exclusive_start_key = Some(key),
            None => return Ok(stats),
        }
    }
}

/// Renders decoded items the way DynamoDB sends them, so in-process sources can serve the wire
/// path too.
pub fn wire_items(items: &[Item]) -> Result<WireItems, ScanError> {
    let fail = |message: String| ScanError::Request {
        operation: "Scan",
        table: "<in-process>".to_string(),
        message,
    };
    let mut maps = Vec::with_capacity(items.len());
    for item in items {
        let mut map = Vec::new();
        crate::encode::write_item_map(item, &mut map).map_err(|e| fail(e.to_string()))?;
        maps.push(map);
    }
    WireItems::from_maps(maps.iter().map(Vec::as_slice)).map_err(|e| fail(e.to_string()))
}

/// A table that lives in memory: for fast tests of the pipeline without an emulator.
#[derive(Debug, Clone)]
pub struct MemorySource {
    info: TableInfo,
    items: Vec<Item>,
    page_size: usize,
    page_delay: Option<std::time::Duration>,
}

impl MemorySource {
    /// A table keyed by `key` (type `S`) holding `items`, served `page_size` items per page.
    pub fn new(table: &str, key: &str, items: Vec<Item>, page_size: usize) -> Self {
        MemorySource {
            info: TableInfo {
                table_name: table.to_string(),
                table_arn: None,
                key_schema: vec![KeyElement {
                    attribute_name: key.to_string(),
                    key_type: "HASH".to_string(),
                }],
                attribute_definitions: vec![AttributeDefinition {
                    attribute_name: key.to_string(),
                    attribute_type: "S".to_string(),
                }],
                billing_mode: Some("PAY_PER_REQUEST".to_string()),
                provisioned_read_capacity: None,
                provisioned_write_capacity: None,
                global_secondary_indexes: Vec::new(),
                local_secondary_indexes: Vec::new(),
                item_count: Some(items.len() as i64),
                size_bytes: None,
            },
            items,
            page_size: page_size.max(1),
            page_delay: None,
        }
    }

    /// Makes every page take `delay`, like a remote table, so deadlines can be tested.
    pub fn with_page_delay(mut self, delay: std::time::Duration) -> Self {
        self.page_delay = Some(delay);
        self
    }
}

#[async_trait]
impl TableSource for MemorySource {
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError> {
        if table == self.info.table_name {
            Ok(self.info.clone())
        } else {
            Err(ScanError::TableNotFound {
                table: table.to_string(),
                region: "memory".to_string(),
            })
        }
    }

    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError> {
        if let Some(delay) = self.page_delay {
            tokio::time::sleep(delay).await;
        }
        // Segment s owns items s, s+n, s+2n…; the start key carries the next index.
        let start = match request
            .exclusive_start_key
            .as_ref()
            .and_then(|k| k.get("__next"))
        {
            Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => n.parse().unwrap_or(usize::MAX),
            _ => request.segment as usize,
        };
        let step = request.total_segments.max(1) as usize;
        let mut items = Vec::new();
        let mut next = start;
        let page_size = request
            .limit
            .map_or(self.page_size, |l| self.page_size.min(l.max(1) as usize));
        while next < self.items.len() && items.len() < page_size {
            items.push(self.items[next].clone());
            next += step;
        }
        let last_evaluated_key = (next < self.items.len()).then(|| {
            HashMap::from([(
                "__next".to_string(),
                aws_sdk_dynamodb::types::AttributeValue::N(next.to_string()),
            )])
        });
        Ok(Page {
            consumed_capacity: items.len() as f64 * 0.5,
            items: if request.wire_items {
                PageItems::Wire(wire_items(&items)?)
            } else {
                PageItems::Decoded(items)
            },
            last_evaluated_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(size: Option<i64>, count: Option<i64>) -> TableInfo {
        let mut info = MemorySource::new("t", "id", Vec::new(), 1).info;
        info.size_bytes = size;
        info.item_count = count;
        info
    }

    #[test]
    fn auto_segments_follow_the_documented_rule() {
        assert_eq!(
            auto_segments(&info(Some(0), Some(0)), 32),
            4,
            "no statistics"
        );
        assert_eq!(auto_segments(&info(None, None), 2), 2, "capped by max");
        assert_eq!(auto_segments(&info(Some(1), None), 32), 1);
        assert_eq!(auto_segments(&info(Some(BYTES_PER_SEGMENT), None), 32), 1);
        assert_eq!(
            auto_segments(&info(Some(BYTES_PER_SEGMENT + 1), None), 32),
            2
        );
        assert_eq!(
            auto_segments(&info(Some(100 * BYTES_PER_SEGMENT), None), 32),
            32
        );
        // Size missing (moto always reports 0): estimated from the count at 1 KiB per item.
        assert_eq!(auto_segments(&info(Some(0), Some(300_000)), 32), 3);
    }

    #[tokio::test]
    async fn segments_of_a_memory_table_cover_every_item_once() {
        let items: Vec<Item> = (0..103)
            .map(|i| {
                HashMap::from([(
                    "id".to_string(),
                    aws_sdk_dynamodb::types::AttributeValue::S(i.to_string()),
                )])
            })
            .collect();
        let source = MemorySource::new("t", "id", items, 10);
        let mut seen = Vec::new();
        for segment in 0..4 {
            let (tx, mut rx) = mpsc::channel(100);
            let request = PageRequest {
                table: "t".into(),
                segment,
                total_segments: 4,
                exclusive_start_key: None,
                consistent_read: false,
                limit: None,
                wire_items: false,
            };
            let stats = scan_segment(&source, request, tx, None, None)
                .await
                .unwrap();
            while let Some(page) = rx.recv().await {
                let PageItems::Decoded(page) = page else {
                    panic!("decoded items were asked for");
                };
                seen.extend(page);
            }
            assert!(stats.pages >= 2);
        }
        assert_eq!(seen.len(), 103);
        let mut ids: Vec<_> = seen
            .iter()
            .map(|i| i["id"].as_s().unwrap().parse::<u32>().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, (0..103).collect::<Vec<_>>());
    }
}

//! Reading a table: the [`TableSource`] port, its DynamoDB adapter ([`dynamodb`]) and in-memory
//! twin ([`memory`]), and the paging loop every source shares ([`segment`]). The read budget
//! ([`budget`]) paces that loop; [`capacity`] is DynamoDB's capacity model, a twin for the tests and
//! benches that measure against a table's limit.

pub mod budget;
pub mod capacity;
pub mod dynamodb;
mod interceptors;
pub mod memory;
pub mod pace;
pub mod seed;
pub mod segment;
pub mod twin;

use async_trait::async_trait;

use crate::aws::{BoxError, FailureKind};
use crate::codec::wire::WireItems;
use crate::error::Retryable;
pub use crate::model::table::{AttributeDefinition, IndexInfo, KeyElement, TableInfo};
use crate::model::Item;
pub use dynamodb::DynamoDbSource;
pub use memory::{wire_items, MemorySource};
pub use segment::{auto_segments, scan_segment, spread_order, SegmentEnd, SegmentScan};

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
    /// Attempts at this page DynamoDB throttled before one went through (the SDK retried them).
    pub throttles: PageThrottles,
}

/// Throttled attempts at one page, by the limit that refused them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageThrottles {
    /// Refused for the table's rate (provisioned, or the on-demand ceiling), or for a reason
    /// DynamoDB did not give.
    pub table: u32,
    /// Refused for the partition holding the keys read (`KeyRangeThroughputExceeded`): a hot
    /// key range, which slows only the segment reading it.
    pub partition: u32,
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
        /// What kind of failure, which decides whether to try again.
        kind: FailureKind,
        /// One line saying what happened.
        message: String,
        /// The SDK's error with its whole chain, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

impl ScanError {
    /// A failed request that is not an SDK error: a response that contradicts itself (a server
    /// fault, worth another try) or an item that cannot be sent (a bug in the source).
    pub fn request(
        operation: &'static str,
        table: &str,
        kind: FailureKind,
        message: impl Into<String>,
    ) -> Self {
        ScanError::Request {
            operation,
            table: table.to_string(),
            kind,
            message: message.into(),
            source: None,
        }
    }
}

impl ScanError {
    /// Whether DynamoDB refused the request for its rate, after the SDK's own retries.
    pub fn is_throttle(&self) -> bool {
        matches!(
            self,
            ScanError::Request {
                kind: FailureKind::Throttled,
                ..
            }
        )
    }
}

impl Retryable for ScanError {
    fn is_retryable(&self) -> bool {
        match self {
            ScanError::TableNotFound { .. } | ScanError::AccessDenied { .. } => false,
            ScanError::Request { kind, .. } => kind.is_retryable(),
        }
    }
}

/// The table source port.
#[async_trait]
pub trait TableSource: Send + Sync {
    /// Describes the table: key schema, indexes, size.
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError>;

    /// Reads one page of one segment, saying which of its attempts were throttled, so the read
    /// budget can slow down.
    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError>;
}

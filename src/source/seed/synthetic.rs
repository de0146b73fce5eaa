//! A table that exists only in memory and answers Scan pages of generated students, as DynamoDB's
//! wire bytes when asked: the in-process source of the benchmark and of fast tests.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::codec::wire::split_scan_response;
use crate::source::{
    AttributeDefinition, KeyElement, Page, PageItems, PageRequest, ScanError, TableInfo,
    TableSource,
};

use super::*;

/// An in-process table of `count` generated students, served in pages of `page_size`, for
/// benchmarks: it measures our pipeline, not an emulator or network.
///
/// By default every item is generated afresh. [`SyntheticSource::prerendered`] instead serves
/// full wire pages from a few response bodies rendered up front, so that producing a page costs
/// no more than receiving one (DynamoDB's work is not ours to measure). Bodies repeat only every
/// few pages, megabytes apart: farther than zstd's window at its default level (2 MiB) and
/// gzip's (32 KiB), so the compressors cannot exploit the repetition.
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    table: String,
    count: u64,
    page_size: u64,
    bodies: Arc<Vec<bytes::Bytes>>,
}

impl SyntheticSource {
    /// `count` students in table `table`, each generated when its page is read.
    pub fn new(table: &str, count: u64, page_size: u64) -> Self {
        SyntheticSource {
            table: table.to_string(),
            count,
            page_size: page_size.max(1),
            bodies: Arc::new(Vec::new()),
        }
    }

    /// Like [`SyntheticSource::new`], but full pages of the wire formats take turns among
    /// `distinct` response bodies rendered now (pages of other formats, and a segment's last
    /// partial page, are still generated when read).
    pub fn prerendered(table: &str, count: u64, page_size: u64, distinct: usize) -> Self {
        let page_size = page_size.max(1);
        let bodies = (0..distinct as u64)
            .map(|p| students_scan_response(p * page_size..(p + 1) * page_size).into())
            .collect();
        SyntheticSource {
            bodies: Arc::new(bodies),
            ..SyntheticSource::new(table, count, page_size)
        }
    }

    /// The students segment `segment` of `total` reads: a contiguous slice of the table, so a
    /// benchmark can rebuild exactly the stream each segment's file holds.
    pub fn segment_range(&self, segment: u32, total: u32) -> std::ops::Range<u64> {
        let total = u64::from(total.max(1));
        let segment = u64::from(segment);
        self.count * segment / total..self.count * (segment + 1) / total
    }

    /// The Scan response body of the page of students `start..end`, as the wire formats' pages
    /// are cut from it: one of the pre-rendered bodies for a full page when there are some.
    pub fn response_body(&self, start: u64, end: u64) -> bytes::Bytes {
        match self.bodies.len() {
            n if n > 0 && end - start == self.page_size => {
                self.bodies[((start / self.page_size) % n as u64) as usize].clone()
            }
            _ => students_scan_response(start..end).into(),
        }
    }
}

#[async_trait]
impl TableSource for SyntheticSource {
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError> {
        Ok(TableInfo {
            table_name: table.to_string(),
            table_arn: None,
            key_schema: vec![KeyElement {
                attribute_name: "id".into(),
                key_type: "HASH".into(),
            }],
            attribute_definitions: vec![AttributeDefinition {
                attribute_name: "id".into(),
                attribute_type: "S".into(),
            }],
            billing_mode: Some("PAY_PER_REQUEST".into()),
            provisioned_read_capacity: None,
            provisioned_write_capacity: None,
            global_secondary_indexes: Vec::new(),
            local_secondary_indexes: Vec::new(),
            item_count: Some(self.count as i64),
            size_bytes: None,
            stream: None,
        })
    }

    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError> {
        if request.table != self.table {
            return Err(ScanError::TableNotFound {
                table: request.table.clone(),
                region: "synthetic".into(),
            });
        }
        // The start key holds the next index.
        let std::ops::Range { start: lo, end: hi } =
            self.segment_range(request.segment, request.total_segments);
        let start = match request
            .exclusive_start_key
            .as_ref()
            .and_then(|k| k.get("next"))
        {
            Some(AttributeValue::N(n)) => n.parse().unwrap_or(hi),
            _ => lo,
        };
        let end = (start + self.page_size).min(hi);
        let items = if request.wire_items {
            // The same path as a real response: a body, split by the same scanner.
            let split = split_scan_response(self.response_body(start, end)).map_err(|e| {
                ScanError::request(
                    "Scan",
                    &self.table,
                    crate::aws::FailureKind::ServerError,
                    e.to_string(),
                )
            })?;
            PageItems::Wire(split.items)
        } else {
            PageItems::Decoded((start..end).map(student).collect())
        };
        Ok(Page {
            items,
            last_evaluated_key: (end < hi)
                .then(|| HashMap::from([("next".to_string(), AttributeValue::N(end.to_string()))])),
            consumed_capacity: 0.0,
            throttles: Default::default(),
        })
    }
}

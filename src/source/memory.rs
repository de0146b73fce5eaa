//! A table in memory: the in-process twin of the DynamoDB adapter, for fast tests of the pipeline
//! without an emulator.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Page, PageItems, PageRequest, ScanError, TableSource};
use crate::aws::FailureKind;
use crate::codec::wire::WireItems;
use crate::model::table::{AttributeDefinition, KeyElement, TableInfo};
use crate::model::Item;

/// Renders decoded items the way DynamoDB sends them, so in-process sources can serve the wire
/// path too.
pub fn wire_items(items: &[Item]) -> Result<WireItems, ScanError> {
    let fail = |message: String| {
        ScanError::request("Scan", "<in-process>", FailureKind::Rejected, message)
    };
    let mut maps = Vec::with_capacity(items.len());
    for item in items {
        let mut map = Vec::new();
        crate::codec::encode::write_item_map(item, &mut map).map_err(|e| fail(e.to_string()))?;
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
                stream: None,
            },
            items,
            page_size: page_size.max(1),
            page_delay: None,
        }
    }

    /// The description [`TableSource::describe`] returns.
    pub fn table_info(&self) -> TableInfo {
        self.info.clone()
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
            throttles: Default::default(),
            items: if request.wire_items {
                PageItems::Wire(wire_items(&items)?)
            } else {
                PageItems::Decoded(items)
            },
            last_evaluated_key,
        })
    }
}

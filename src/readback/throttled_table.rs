//! A table writer that throttles as DynamoDB does ([`crate::source::capacity`]): each item costs
//! its write units on its key's partition and on the table; what the buckets cannot serve comes
//! back unprocessed, and a batch of which nothing fits fails with
//! `ProvisionedThroughputExceededException`. It wraps any writer, so restores and their benches
//! meet a table's write limit without an AWS account.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::aws::FailureKind;
use crate::model::Item;
use crate::readback::restore::write_units;
use crate::readback::table_writer::{TableSpec, TableWriter, WriteError};
use crate::source::capacity::{Capacity, CapacitySpec};
use crate::source::TableInfo;

/// What the twin saw.
#[derive(Debug, Default)]
pub struct ThrottleStats {
    /// Write units served.
    pub units: AtomicU64,
    /// Items returned unprocessed.
    pub unprocessed_items: AtomicU64,
    /// Batches refused whole (`ProvisionedThroughputExceededException`).
    pub throttled_requests: AtomicU64,
    /// Batches served, in whole or in part.
    pub requests: AtomicU64,
}

/// `inner`, behind a table's write capacity.
pub struct ThrottledTable<W> {
    inner: W,
    capacity: Mutex<Capacity>,
    partition_keys: Mutex<HashMap<String, String>>,
    /// What it served and refused.
    pub stats: ThrottleStats,
}

impl<W: TableWriter> ThrottledTable<W> {
    /// `inner` with the capacity `spec` describes.
    pub fn new(inner: W, spec: CapacitySpec) -> Self {
        ThrottledTable {
            inner,
            capacity: Mutex::new(Capacity::new(spec)),
            partition_keys: Mutex::default(),
            stats: ThrottleStats::default(),
        }
    }

    /// The writer behind the twin.
    pub fn inner(&self) -> &W {
        &self.inner
    }

    async fn partition_key(&self, table: &str) -> Result<String, WriteError> {
        if let Some(name) = self
            .partition_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
        {
            return Ok(name.clone());
        }
        let info = self.inner.describe(table).await?.ok_or_else(|| {
            WriteError::refused("BatchWriteItem", table, "ResourceNotFoundException")
        })?;
        let name = info
            .key_schema
            .iter()
            .find(|k| k.key_type == "HASH")
            .map(|k| k.attribute_name.clone())
            .unwrap_or_default();
        self.partition_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_string(), name.clone());
        Ok(name)
    }

    /// Splits `items` into those the capacity serves now and those it does not.
    async fn admit(
        &self,
        table: &str,
        items: Vec<Item>,
    ) -> Result<(Vec<Item>, Vec<Item>, f64), WriteError> {
        let key = self.partition_key(table).await?;
        let now = tokio::time::Instant::now();
        let mut capacity = self.capacity.lock().unwrap_or_else(|e| e.into_inner());
        let (mut served, mut refused, mut units) = (Vec::new(), Vec::new(), 0.0);
        for item in items {
            let cost = write_units(&item) as f64;
            let partition = capacity.partition_of(&format!("{:?}", item.get(&key)));
            if capacity.try_spend(partition, cost, now) {
                units += cost;
                served.push(item);
            } else {
                refused.push(item);
            }
        }
        Ok((served, refused, units))
    }

    async fn write(
        &self,
        table: &str,
        items: Vec<Item>,
        delete: bool,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        let operation = "BatchWriteItem";
        let (served, mut refused, units) = self.admit(table, items).await?;
        if served.is_empty() {
            self.stats
                .throttled_requests
                .fetch_add(1, Ordering::Relaxed);
            return Err(WriteError::Request {
                operation,
                table: table.to_string(),
                kind: FailureKind::Throttled,
                message: "ProvisionedThroughputExceededException: The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.".into(),
                source: None,
            });
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats.units.fetch_add(units as u64, Ordering::Relaxed);
        self.stats
            .unprocessed_items
            .fetch_add(refused.len() as u64, Ordering::Relaxed);
        let (left, _) = if delete {
            self.inner.batch_delete(table, served).await?
        } else {
            self.inner.batch_write(table, served).await?
        };
        refused.extend(left);
        Ok((refused, units))
    }
}

#[async_trait]
impl<W: TableWriter> TableWriter for ThrottledTable<W> {
    async fn describe(&self, table: &str) -> Result<Option<TableInfo>, WriteError> {
        self.inner.describe(table).await
    }

    async fn create_table(&self, table: &str, spec: &TableSpec) -> Result<(), WriteError> {
        self.inner.create_table(table, spec).await
    }

    async fn batch_write(
        &self,
        table: &str,
        items: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        self.write(table, items, false).await
    }

    async fn batch_delete(
        &self,
        table: &str,
        keys: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        self.write(table, keys, true).await
    }

    async fn get_item(&self, table: &str, key: &Item) -> Result<Option<Item>, WriteError> {
        self.inner.get_item(table, key).await
    }

    async fn write_if(
        &self,
        table: &str,
        key: &Item,
        new: Option<&Item>,
        expected: Option<&Item>,
    ) -> Result<bool, WriteError> {
        self.inner.write_if(table, key, new, expected).await
    }
}

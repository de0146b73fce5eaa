//! The write side of a table, for restore: a narrow port with a DynamoDB adapter and an in-memory
//! one for fast tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition as SdkAttributeDefinition, AttributeValue, BillingMode, DeleteRequest,
    GlobalSecondaryIndex, KeySchemaElement, KeyType, LocalSecondaryIndex, Projection,
    ProjectionType, PutRequest, ReturnConsumedCapacity, ScalarAttributeType, WriteRequest,
};

use crate::aws::{error_facts, BoxError, FailureKind};
use crate::error::Retryable;
use crate::model::Item;
use crate::source::{
    AttributeDefinition, DynamoDbSource, IndexInfo, KeyElement, ScanError, TableInfo, TableSource,
};

/// What a new table needs: the backed-up table's keys and indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Primary key.
    pub key_schema: Vec<KeyElement>,
    /// Types of every key attribute (table and indexes).
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// Global secondary indexes.
    pub global_secondary_indexes: Vec<IndexInfo>,
    /// Local secondary indexes.
    pub local_secondary_indexes: Vec<IndexInfo>,
}

/// Why a write-side call failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Describing the target table failed.
    #[error(transparent)]
    Describe(#[from] ScanError),
    /// The call failed after the SDK's retries, or was refused as it is.
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

impl WriteError {
    /// A request refused before or without an SDK error (a request this writer cannot build, a
    /// table the memory twin does not hold).
    pub(crate) fn refused(operation: &'static str, table: &str, message: impl ToString) -> Self {
        WriteError::Request {
            operation,
            table: table.to_string(),
            kind: FailureKind::Rejected,
            message: message.to_string(),
            source: None,
        }
    }

    /// An SDK error, classified and put in one line.
    pub(crate) fn sdk<E>(
        operation: &'static str,
        table: &str,
        err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        let facts = error_facts(&err);
        WriteError::Request {
            operation,
            table: table.to_string(),
            kind: facts.kind,
            message: facts.message,
            source: Some(err.into()),
        }
    }
}

impl Retryable for WriteError {
    fn is_retryable(&self) -> bool {
        match self {
            WriteError::Describe(e) => e.is_retryable(),
            WriteError::Request { kind, .. } => kind.is_retryable(),
        }
    }
}

/// The table writer port.
#[async_trait]
pub trait TableWriter: Send + Sync {
    /// The table's description, or `None` when it does not exist.
    async fn describe(&self, table: &str) -> Result<Option<TableInfo>, WriteError>;

    /// Creates an on-demand table and waits until it is active.
    async fn create_table(&self, table: &str, spec: &TableSpec) -> Result<(), WriteError>;

    /// Writes up to 25 items; returns those DynamoDB did not process and the capacity consumed.
    async fn batch_write(
        &self,
        table: &str,
        items: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError>;

    /// Deletes up to 25 items by their keys; returns the keys DynamoDB did not process and the
    /// capacity consumed.
    async fn batch_delete(
        &self,
        table: &str,
        keys: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError>;

    /// The live item with `key`, read strongly consistent.
    async fn get_item(&self, table: &str, key: &Item) -> Result<Option<Item>, WriteError>;

    /// Puts `new` (or deletes `key` when `None`) only if the live item is still `expected`
    /// (`None`: absent), attribute for attribute; `Ok(false)` when it is not.
    async fn write_if(
        &self,
        table: &str,
        key: &Item,
        new: Option<&Item>,
        expected: Option<&Item>,
    ) -> Result<bool, WriteError>;
}

/// Whether two items are the same: equal attributes, sets compared as sets (DynamoDB does not
/// keep a set's order, so two reads of one item may list it differently).
pub fn same_item(a: &Item, b: &Item) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(name, value)| b.get(name).is_some_and(|other| same_value(value, other)))
}

fn same_value(a: &AttributeValue, b: &AttributeValue) -> bool {
    fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
        let mut v = v.to_vec();
        v.sort();
        v
    }
    match (a, b) {
        (AttributeValue::Ss(x), AttributeValue::Ss(y)) => sorted(x) == sorted(y),
        (AttributeValue::Ns(x), AttributeValue::Ns(y)) => sorted(x) == sorted(y),
        (AttributeValue::Bs(x), AttributeValue::Bs(y)) => {
            let bytes = |v: &[aws_sdk_dynamodb::primitives::Blob]| {
                sorted(&v.iter().map(|b| b.as_ref().to_vec()).collect::<Vec<_>>())
            };
            bytes(x) == bytes(y)
        }
        (AttributeValue::M(x), AttributeValue::M(y)) => same_item(x, y),
        (AttributeValue::L(x), AttributeValue::L(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        _ => a == b,
    }
}

/// The condition that the live item is `expected`: absent, or every attribute equal, and none
/// of the attributes `new` brings that `expected` lacks (an attribute a concurrent writer added).
fn condition_for(
    key: &Item,
    expected: Option<&Item>,
    new: Option<&Item>,
) -> (
    String,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    match expected {
        None => {
            let mut parts = Vec::new();
            for (i, name) in key.keys().enumerate() {
                names.insert(format!("#k{i}"), name.clone());
                parts.push(format!("attribute_not_exists(#k{i})"));
            }
            (parts.join(" AND "), names, values)
        }
        Some(item) => {
            let mut parts = Vec::new();
            for (i, (name, value)) in item.iter().enumerate() {
                names.insert(format!("#a{i}"), name.clone());
                values.insert(format!(":v{i}"), value.clone());
                parts.push(format!("#a{i} = :v{i}"));
            }
            let added = new
                .into_iter()
                .flat_map(|n| n.keys())
                .filter(|name| !item.contains_key(*name));
            for (i, name) in added.enumerate() {
                names.insert(format!("#n{i}"), name.clone());
                parts.push(format!("attribute_not_exists(#n{i})"));
            }
            (parts.join(" AND "), names, values)
        }
    }
}

/// DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoDbWriter {
    client: aws_sdk_dynamodb::Client,
}

impl DynamoDbWriter {
    /// A writer using `client`.
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        DynamoDbWriter { client }
    }

    /// One `BatchWriteItem`: the requests DynamoDB did not process, and the capacity consumed.
    async fn batch(
        &self,
        table: &str,
        requests: Vec<WriteRequest>,
    ) -> Result<(Vec<WriteRequest>, f64), WriteError> {
        let out = self
            .client
            .batch_write_item()
            .request_items(table, requests)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| WriteError::sdk("BatchWriteItem", table, e))?;
        let consumed = out
            .consumed_capacity()
            .iter()
            .filter_map(|c| c.capacity_units())
            .sum();
        let unprocessed = out
            .unprocessed_items
            .and_then(|mut m| m.remove(table))
            .unwrap_or_default();
        Ok((unprocessed, consumed))
    }
}

pub(crate) fn sdk_keys(
    table: &str,
    keys: &[KeyElement],
) -> Result<Vec<KeySchemaElement>, WriteError> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(|e| WriteError::refused("CreateTable", table, e))
        })
        .collect()
}

/// The SDK's attribute definitions of `spec`, for CreateTable and ImportTable.
pub(crate) fn sdk_definitions(
    operation: &'static str,
    table: &str,
    spec: &TableSpec,
) -> Result<Vec<SdkAttributeDefinition>, WriteError> {
    spec.attribute_definitions
        .iter()
        .map(|a| {
            SdkAttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(|e| WriteError::refused(operation, table, e))
        })
        .collect()
}

/// The SDK's global secondary indexes of `spec`, each with `throughput` when provisioned.
pub(crate) fn sdk_global_indexes(
    operation: &'static str,
    table: &str,
    spec: &TableSpec,
    throughput: Option<aws_sdk_dynamodb::types::ProvisionedThroughput>,
) -> Result<Vec<GlobalSecondaryIndex>, WriteError> {
    spec.global_secondary_indexes
        .iter()
        .map(|g| {
            GlobalSecondaryIndex::builder()
                .index_name(&g.index_name)
                .set_key_schema(Some(sdk_keys(table, &g.key_schema)?))
                .projection(sdk_projection(g))
                .set_provisioned_throughput(throughput.clone())
                .build()
                .map_err(|e| WriteError::refused(operation, table, e))
        })
        .collect()
}

pub(crate) fn sdk_projection(index: &IndexInfo) -> Projection {
    Projection::builder()
        .set_projection_type(index.projection_type.as_deref().map(ProjectionType::from))
        .set_non_key_attributes(
            (!index.non_key_attributes.is_empty()).then(|| index.non_key_attributes.clone()),
        )
        .build()
}

#[async_trait]
impl TableWriter for DynamoDbWriter {
    async fn describe(&self, table: &str) -> Result<Option<TableInfo>, WriteError> {
        match DynamoDbSource::new(self.client.clone())
            .describe(table)
            .await
        {
            Ok(info) => Ok(Some(info)),
            Err(ScanError::TableNotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn create_table(&self, table: &str, spec: &TableSpec) -> Result<(), WriteError> {
        use aws_sdk_dynamodb::client::Waiters;
        let definitions = sdk_definitions("CreateTable", table, spec)?;
        let gsis = sdk_global_indexes("CreateTable", table, spec, None)?;
        let lsis = spec
            .local_secondary_indexes
            .iter()
            .map(|l| {
                LocalSecondaryIndex::builder()
                    .index_name(&l.index_name)
                    .set_key_schema(Some(sdk_keys(table, &l.key_schema)?))
                    .projection(sdk_projection(l))
                    .build()
                    .map_err(|e| WriteError::refused("CreateTable", table, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .create_table()
            .table_name(table)
            .set_attribute_definitions(Some(definitions))
            .set_key_schema(Some(sdk_keys(table, &spec.key_schema)?))
            .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
            .set_local_secondary_indexes((!lsis.is_empty()).then_some(lsis))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| WriteError::sdk("CreateTable", table, e))?;
        self.client
            .wait_until_table_exists()
            .table_name(table)
            .wait(std::time::Duration::from_secs(600))
            .await
            .map_err(|e| WriteError::Request {
                operation: "DescribeTable",
                table: table.to_string(),
                kind: FailureKind::TimedOut,
                message: "the new table did not become active within 10 minutes".to_string(),
                source: Some(e.into()),
            })?;
        Ok(())
    }

    async fn batch_write(
        &self,
        table: &str,
        items: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        let requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| WriteError::refused("BatchWriteItem", table, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (unprocessed, consumed) = self.batch(table, requests).await?;
        let items = unprocessed
            .into_iter()
            .filter_map(|w| w.put_request.map(|p| p.item))
            .collect();
        Ok((items, consumed))
    }

    async fn batch_delete(
        &self,
        table: &str,
        keys: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        let requests = keys
            .into_iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
                    .map_err(|e| WriteError::refused("BatchWriteItem", table, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (unprocessed, consumed) = self.batch(table, requests).await?;
        let keys = unprocessed
            .into_iter()
            .filter_map(|w| w.delete_request.map(|d| d.key))
            .collect();
        Ok((keys, consumed))
    }

    async fn get_item(&self, table: &str, key: &Item) -> Result<Option<Item>, WriteError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| WriteError::sdk("GetItem", table, e))?;
        Ok(out.item)
    }

    async fn write_if(
        &self,
        table: &str,
        key: &Item,
        new: Option<&Item>,
        expected: Option<&Item>,
    ) -> Result<bool, WriteError> {
        let (condition, names, values) = condition_for(key, expected, new);
        let values = (!values.is_empty()).then_some(values);
        let result = match new {
            Some(item) => self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(item.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.code() == Some("ConditionalCheckFailedException"),
                        WriteError::sdk("PutItem", table, e),
                    )
                }),
            None => self
                .client
                .delete_item()
                .table_name(table)
                .set_key(Some(key.clone()))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(values)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    (
                        e.code() == Some("ConditionalCheckFailedException"),
                        WriteError::sdk("DeleteItem", table, e),
                    )
                }),
        };
        match result {
            Ok(()) => Ok(true),
            Err((true, _)) => Ok(false),
            Err((false, e)) => Err(e),
        }
    }
}

/// Each table's spec and items.
type MemoryTables = HashMap<String, (TableSpec, Vec<Item>)>;

/// Tables in memory, keyed by their primary key. `unprocess_every` > 0 makes every n-th batch
/// return its last item unprocessed, as a throttled DynamoDB does.
#[derive(Clone, Default)]
pub struct MemoryWriter {
    tables: Arc<Mutex<MemoryTables>>,
    batches: Arc<Mutex<u64>>,
    unprocess_every: u64,
}

impl MemoryWriter {
    /// An empty set of tables.
    pub fn new() -> Self {
        Self::default()
    }

    /// One that leaves items unprocessed now and then.
    pub fn throttling(every: u64) -> Self {
        MemoryWriter {
            unprocess_every: every,
            ..Self::default()
        }
    }

    /// The items of a table (last write per key wins).
    pub fn items(&self, table: &str) -> Vec<Item> {
        self.tables
            .lock()
            .map(|t| {
                t.get(table)
                    .map(|(_, items)| items.clone())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl TableWriter for MemoryWriter {
    async fn describe(&self, table: &str) -> Result<Option<TableInfo>, WriteError> {
        let tables = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(tables.get(table).map(|(spec, items)| TableInfo {
            table_name: table.to_string(),
            table_arn: None,
            key_schema: spec.key_schema.clone(),
            attribute_definitions: spec.attribute_definitions.clone(),
            billing_mode: Some("PAY_PER_REQUEST".into()),
            provisioned_read_capacity: None,
            provisioned_write_capacity: None,
            global_secondary_indexes: spec.global_secondary_indexes.clone(),
            local_secondary_indexes: spec.local_secondary_indexes.clone(),
            item_count: Some(items.len() as i64),
            size_bytes: None,
            stream: None,
        }))
    }

    async fn create_table(&self, table: &str, spec: &TableSpec) -> Result<(), WriteError> {
        let mut tables = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tables.insert(table.to_string(), (spec.clone(), Vec::new()));
        Ok(())
    }

    async fn batch_write(
        &self,
        table: &str,
        mut items: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        let n = {
            let mut batches = self
                .batches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *batches += 1;
            *batches
        };
        let unprocessed =
            if self.unprocess_every > 0 && n % self.unprocess_every == 0 && items.len() > 1 {
                items.split_off(items.len() - 1)
            } else {
                Vec::new()
            };
        let mut tables = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (spec, stored) = tables.get_mut(table).ok_or_else(|| {
            WriteError::refused("BatchWriteItem", table, "ResourceNotFoundException")
        })?;
        let key_names: Vec<String> = spec
            .key_schema
            .iter()
            .map(|k| k.attribute_name.clone())
            .collect();
        for item in items {
            let key: Vec<_> = key_names.iter().map(|k| item.get(k).cloned()).collect();
            stored.retain(|old| {
                key_names
                    .iter()
                    .map(|k| old.get(k).cloned())
                    .collect::<Vec<_>>()
                    != key
            });
            stored.push(item);
        }
        Ok((unprocessed, 0.0))
    }

    async fn batch_delete(
        &self,
        table: &str,
        keys: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        self.with_table(table, |key_names, stored| {
            for key in &keys {
                stored.retain(|old| !matches_key(old, key, key_names));
            }
        })?;
        Ok((Vec::new(), 0.0))
    }

    async fn get_item(&self, table: &str, key: &Item) -> Result<Option<Item>, WriteError> {
        self.with_table(table, |key_names, stored| {
            stored
                .iter()
                .find(|item| matches_key(item, key, key_names))
                .cloned()
        })
    }

    async fn write_if(
        &self,
        table: &str,
        key: &Item,
        new: Option<&Item>,
        expected: Option<&Item>,
    ) -> Result<bool, WriteError> {
        self.with_table(table, |key_names, stored| {
            let live = stored
                .iter()
                .position(|item| matches_key(item, key, key_names));
            let holds = match (live, expected) {
                (None, None) => true,
                (Some(at), Some(expected)) => same_item(&stored[at], expected),
                _ => false,
            };
            if holds {
                if let Some(at) = live {
                    stored.remove(at);
                }
                if let Some(item) = new {
                    stored.push(item.clone());
                }
            }
            holds
        })
    }
}

fn matches_key(item: &Item, key: &Item, key_names: &[String]) -> bool {
    key_names.iter().all(|k| item.get(k) == key.get(k))
}

impl MemoryWriter {
    fn with_table<T>(
        &self,
        table: &str,
        f: impl FnOnce(&[String], &mut Vec<Item>) -> T,
    ) -> Result<T, WriteError> {
        let mut tables = self
            .tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (spec, stored) = tables
            .get_mut(table)
            .ok_or_else(|| WriteError::refused("WriteItem", table, "ResourceNotFoundException"))?;
        let key_names: Vec<String> = spec
            .key_schema
            .iter()
            .map(|k| k.attribute_name.clone())
            .collect();
        Ok(f(&key_names, stored))
    }

    /// Puts `item` as a live table would, for tests that change a table under a restore.
    pub fn put(&self, table: &str, item: Item) {
        let _ = self.with_table(table, |key_names, stored| {
            stored.retain(|old| !matches_key(old, &item, key_names));
            stored.push(item);
        });
    }
}

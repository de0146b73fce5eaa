//! The write side of a table, for restore: a narrow port with a DynamoDB adapter and an in-memory
//! one for fast tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition as SdkAttributeDefinition, BillingMode, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, LocalSecondaryIndex, Projection, ProjectionType, PutRequest,
    ReturnConsumedCapacity, ScalarAttributeType, WriteRequest,
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
    fn refused(operation: &'static str, table: &str, message: impl ToString) -> Self {
        WriteError::Request {
            operation,
            table: table.to_string(),
            kind: FailureKind::Rejected,
            message: message.to_string(),
            source: None,
        }
    }

    /// An SDK error, classified and put in one line.
    fn sdk<E>(
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
}

fn sdk_keys(table: &str, keys: &[KeyElement]) -> Result<Vec<KeySchemaElement>, WriteError> {
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

fn sdk_projection(index: &IndexInfo) -> Projection {
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
        let definitions = spec
            .attribute_definitions
            .iter()
            .map(|a| {
                SdkAttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                    .build()
                    .map_err(|e| WriteError::refused("CreateTable", table, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let gsis = spec
            .global_secondary_indexes
            .iter()
            .map(|g| {
                GlobalSecondaryIndex::builder()
                    .index_name(&g.index_name)
                    .set_key_schema(Some(sdk_keys(table, &g.key_schema)?))
                    .projection(sdk_projection(g))
                    .build()
                    .map_err(|e| WriteError::refused("CreateTable", table, e))
            })
            .collect::<Result<Vec<_>, _>>()?;
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
            .unwrap_or_default()
            .into_iter()
            .filter_map(|w| w.put_request.map(|p| p.item))
            .collect();
        Ok((unprocessed, consumed))
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
}

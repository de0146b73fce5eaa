//! What a backup records about its table: the key schema, indexes and size statistics, enough to
//! choose a segment count and, later, to recreate the table.

use serde::{Deserialize, Serialize};

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
    /// The table's stream, when one is enabled: what change capture reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<TableStream>,
}

/// A table's DynamoDB stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStream {
    /// Its ARN (a new one each time the stream is enabled).
    pub arn: String,
    /// `NEW_AND_OLD_IMAGES`, `NEW_IMAGE`, `OLD_IMAGE` or `KEYS_ONLY`.
    pub view_type: String,
}

impl TableStream {
    /// Whether its records carry the item after each change, which restoring to a time needs.
    pub fn has_new_images(&self) -> bool {
        matches!(self.view_type.as_str(), "NEW_AND_OLD_IMAGES" | "NEW_IMAGE")
    }
}

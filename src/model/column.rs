//! The column schema of a tabular file (CSV, Parquet), as the manifest records it: which
//! DynamoDB type each column holds and how Parquet stores its numbers. The encoders discover it
//! ([`crate::codec::encode::columns`]); restore reads it back.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

/// A DynamoDB attribute type, as recorded for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DynamoType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
    /// Boolean.
    #[serde(rename = "BOOL")]
    Bool,
    /// Null.
    #[serde(rename = "NULL")]
    Null,
    /// String set.
    SS,
    /// Number set.
    NS,
    /// Binary set.
    BS,
    /// Map.
    M,
    /// List.
    L,
}

impl DynamoType {
    /// The type of `value`; `None` for a variant this build does not know.
    pub fn of(value: &AttributeValue) -> Option<DynamoType> {
        Some(match value {
            AttributeValue::S(_) => DynamoType::S,
            AttributeValue::N(_) => DynamoType::N,
            AttributeValue::B(_) => DynamoType::B,
            AttributeValue::Bool(_) => DynamoType::Bool,
            AttributeValue::Null(_) => DynamoType::Null,
            AttributeValue::Ss(_) => DynamoType::SS,
            AttributeValue::Ns(_) => DynamoType::NS,
            AttributeValue::Bs(_) => DynamoType::BS,
            AttributeValue::M(_) => DynamoType::M,
            AttributeValue::L(_) => DynamoType::L,
            _ => return None,
        })
    }
}

/// How a Parquet column stores the numbers of an `N` attribute. CSV always writes the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "as")]
pub enum NumberStorage {
    /// 64-bit integers: every sampled value was a plainly written integer in range.
    Int64,
    /// `Decimal128(38, scale)`: every sampled value was a plainly written decimal that fits.
    Decimal {
        /// Digits after the point.
        scale: i8,
    },
    /// The exact text, when neither fits (exponents, more than 38 digits).
    Text,
}

/// One column of a tabular file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// Attribute name (any UTF-8, including commas, quotes and newlines).
    pub name: String,
    /// The DynamoDB type of every value in the column.
    pub dynamodb_type: DynamoType,
    /// Number storage, for `N` columns of Parquet files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<NumberStorage>,
}

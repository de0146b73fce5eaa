//! What the product talks about, free of any I/O: the validated [`job::BackupJob`], the output
//! [`format`]s, the [`table`] description and tabular [`column`] schema a backup records, the
//! [`manifest`] that makes a backup complete, and the documents the workers of a [`fan_out`] job
//! exchange, where a table's captured [`changes`] are kept, and the [`restore_job`] that queued restore workers share. Every other module depends on these; they depend on nothing else in the crate.

pub mod changes;
pub mod column;
pub mod fan_out;
pub mod format;
pub mod job;
pub mod manifest;
pub mod restore_job;
pub mod table;

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// One DynamoDB item, as the SDK returns it from `Scan`.
pub type Item = HashMap<String, AttributeValue>;

//! Encoders turn items into bytes of one output format. They write into any [`io::Write`] and know
//! nothing of compression or storage: the pipeline hands them whatever stream sits below.

pub mod columns;
mod csv;
mod ddb_json;
mod json;
pub mod parquet;
mod sampled;
pub(crate) mod text;

use std::io::{self, Write};

use crate::codec::number::NumberError;
use crate::codec::wire::WireItems;
use crate::error::{io_is_retryable, BoxError, Retryable};
use crate::model::format::{Format, ParquetCompression};
use crate::model::Item;

pub use self::csv::csv_encoder;
pub use self::parquet::parquet_encoder;
pub use columns::Column;
pub use ddb_json::{write_item_map, DynamoDbJsonEncoder};
pub use json::JsonLinesEncoder;

/// Why an item could not be encoded. Names the attribute so the operator can find the item.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A variant this build does not know (a newer DynamoDB type, or the SDK's `Unknown`).
    #[error("attribute `{attribute}` has a DynamoDB type this version of ddb-backup does not know; upgrade ddb-backup")]
    UnknownType {
        /// Path of the attribute within the item.
        attribute: String,
    },
    /// An `N` value that is not a number (DynamoDB never returns one; an emulator might).
    #[error("attribute `{attribute}`: {source}")]
    InvalidNumber {
        /// Path of the attribute within the item.
        attribute: String,
        /// What is wrong with the text.
        source: NumberError,
    },
    /// A wire item that is not DynamoDB JSON (DynamoDB never sends one; an emulator might).
    #[error("{0}")]
    Wire(#[from] crate::codec::decode::DecodeError),
    /// The Parquet writer failed.
    #[error("writing Parquet failed: {0}")]
    Parquet(#[source] BoxError),
    /// The CSV writer refused a record.
    #[error("writing CSV failed: {0}")]
    Csv(#[from] ::csv::Error),
    /// The stream below failed.
    #[error("writing encoded items failed: {0}")]
    Io(#[from] io::Error),
}

impl Retryable for EncodeError {
    /// An item that cannot be encoded stays so; only the stream below can fail for a passing
    /// reason, such as memory for a part buffer running out.
    fn is_retryable(&self) -> bool {
        match self {
            EncodeError::Io(e) => io_is_retryable(e),
            EncodeError::Csv(e) => {
                matches!(e.kind(), ::csv::ErrorKind::Io(io) if io_is_retryable(io))
            }
            EncodeError::UnknownType { .. }
            | EncodeError::InvalidNumber { .. }
            | EncodeError::Wire(_)
            | EncodeError::Parquet(_) => false,
        }
    }
}

/// Writes items of one format into a stream. One encoder serves one output file: `finish` writes
/// whatever trailer the format needs.
pub trait RecordEncoder: Send {
    /// Encodes a batch of items (typically one Scan page) into `out`.
    fn encode_batch(&mut self, items: &[Item], out: &mut dyn Write) -> Result<(), EncodeError>;

    /// Encodes a batch of items that are still DynamoDB's wire bytes. The default decodes them
    /// first; formats that can use the bytes as they are override it.
    fn encode_wire(&mut self, items: &WireItems, out: &mut dyn Write) -> Result<(), EncodeError> {
        let decoded = items
            .iter()
            .map(crate::codec::decode::decode_item_map)
            .collect::<Result<Vec<_>, _>>()?;
        self.encode_batch(&decoded, out)
    }

    /// Writes any trailer; the encoder is not used again afterwards.
    fn finish(&mut self, out: &mut dyn Write) -> Result<(), EncodeError>;

    /// The columns of a tabular file (known once the sample is taken), for the manifest.
    fn columns(&self) -> Option<Vec<Column>> {
        None
    }
}

/// What an encoder needs besides the format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    /// The table's key attributes, in key schema order: the first columns of CSV and Parquet.
    pub key_attributes: Vec<String>,
    /// Column compression of Parquet files.
    pub parquet_compression: ParquetCompression,
}

/// A fresh encoder for one file of `format`.
pub fn encoder_for(format: Format, options: &EncodeOptions) -> Box<dyn RecordEncoder> {
    match format {
        Format::DynamodbJson => Box::new(DynamoDbJsonEncoder::default()),
        Format::Json => Box::new(JsonLinesEncoder::default()),
        Format::Csv => Box::new(csv_encoder(options.key_attributes.clone())),
        Format::Parquet => Box::new(parquet_encoder(
            options.key_attributes.clone(),
            options.parquet_compression,
        )),
    }
}

/// Encodes items one line each into an internal buffer that is handed down in large writes, so
/// the stream below sees few, big `write` calls whatever the item size.
pub(crate) struct LineBuffer {
    buf: Vec<u8>,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer {
            buf: Vec::with_capacity(Self::FLUSH_AT + 4096),
        }
    }
}

impl LineBuffer {
    const FLUSH_AT: usize = 64 * 1024;

    /// Encodes every item with `line`, flushing to `out` every 64 KiB and at the end.
    pub(crate) fn encode_lines<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        out: &mut dyn Write,
        mut line: impl FnMut(T, &mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        for item in items {
            line(item, &mut self.buf)?;
            self.buf.push(b'\n');
            if self.buf.len() >= Self::FLUSH_AT {
                out.write_all(&self.buf)?;
                self.buf.clear();
            }
        }
        if !self.buf.is_empty() {
            out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Where a value sits inside an item, kept as a chain of borrows so that the hot path allocates
/// nothing; it is rendered (`address.city`, `tags.[2]`) only when an error needs it.
#[derive(Clone, Copy)]
pub(crate) enum AttrPath<'a> {
    /// A top-level attribute.
    Top(&'a str),
    /// A field of a map.
    Field(&'a AttrPath<'a>, &'a str),
    /// An element of a list.
    Index(&'a AttrPath<'a>, usize),
}

impl AttrPath<'_> {
    /// The dotted path for messages.
    pub(crate) fn render(&self) -> String {
        match self {
            AttrPath::Top(name) => name.to_string(),
            AttrPath::Field(parent, name) => format!("{}.{name}", parent.render()),
            AttrPath::Index(parent, i) => format!("{}.[{i}]", parent.render()),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_items {
    //! Items that cover every AttributeValue variant and the awkward corners of each.
    use super::*;
    use aws_sdk_dynamodb::primitives::Blob;
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;

    /// One item with every type, nested containers, extreme numbers and awkward strings.
    pub fn every_type() -> Item {
        let mut address = HashMap::new();
        address.insert("city".to_string(), AttributeValue::S("Hà Nội".into()));
        address.insert("zip".to_string(), AttributeValue::N("100000".into()));
        address.insert(
            "geo".to_string(),
            AttributeValue::L(vec![
                AttributeValue::N("21.0285".into()),
                AttributeValue::N("105.8542".into()),
            ]),
        );
        let mut item = HashMap::new();
        item.insert("id".to_string(), AttributeValue::S("s-0001".into()));
        item.insert("empty".to_string(), AttributeValue::S(String::new()));
        item.insert(
            "quote\"comma,\nnewline".to_string(),
            AttributeValue::S("tab\t\"q\" \\ \u{1} é 😀".into()),
        );
        item.insert(
            "big".to_string(),
            AttributeValue::N("12345678901234567890123456789012345678".into()),
        );
        item.insert("tiny".to_string(), AttributeValue::N("-1E-130".into()));
        item.insert(
            "huge".to_string(),
            AttributeValue::N("9.9999999999999999999999999999999999999E+125".into()),
        );
        item.insert("gpa".to_string(), AttributeValue::N("3.75".into()));
        item.insert(
            "bin".to_string(),
            AttributeValue::B(Blob::new(vec![0u8, 255, 10, 13, 34])),
        );
        item.insert(
            "emptybin".to_string(),
            AttributeValue::B(Blob::new(Vec::new())),
        );
        item.insert("enrolled".to_string(), AttributeValue::Bool(true));
        item.insert("nothing".to_string(), AttributeValue::Null(true));
        item.insert(
            "tags".to_string(),
            AttributeValue::Ss(vec!["a".into(), "b,c".into()]),
        );
        item.insert(
            "scores".to_string(),
            AttributeValue::Ns(vec!["1".into(), "-0.5".into()]),
        );
        item.insert(
            "blobs".to_string(),
            AttributeValue::Bs(vec![Blob::new(vec![1u8]), Blob::new(vec![2u8, 3])]),
        );
        item.insert("address".to_string(), AttributeValue::M(address));
        item.insert(
            "mixed".to_string(),
            AttributeValue::L(vec![
                AttributeValue::S(String::new()),
                AttributeValue::Null(true),
                AttributeValue::M(HashMap::new()),
                AttributeValue::L(vec![]),
                AttributeValue::Bool(false),
            ]),
        );
        item
    }
}

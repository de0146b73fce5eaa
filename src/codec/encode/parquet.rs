//! Apache Parquet, through `arrow` and `parquet`. Type mapping (docs/formats.md has the full table):
//! S → UTF8 string; N → Int64, Decimal128(38, s) or the exact text, per the file's sample
//! ([`NumberStorage`]); B → binary; BOOL → boolean; NULL → boolean `true`; SS and NS → lists of
//! strings (numbers as their exact text); BS → list of binaries; M and L → DynamoDB JSON text.
//!
//! M and L are kept as DynamoDB JSON rather than nested Parquet types on purpose: DynamoDB maps and
//! lists are schemaless and heterogeneous (a list may mix strings, numbers and maps), so a nested
//! schema sampled from some items would push most real documents into `_extra`, while the JSON text
//! is exact and queryable (`json_extract` in DuckDB and Athena).
//!
//! Each column's DynamoDB type (and number storage) is written into the file's key-value metadata
//! under [`COLUMNS_METADATA_KEY`], so a reader can rebuild the exact items from the file alone.
//! A row group is closed once the writer holds about [`ROW_GROUP_MEMORY`] (encoded pages,
//! dictionaries and buffers together), so memory stays flat whatever the table's size.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Decimal128Builder, Int64Builder, ListBuilder,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use aws_sdk_dynamodb::types::AttributeValue;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::columns::{
    parse_decimal, parse_int64, Column, Columns, DynamoType, NumberStorage, Tabular, EXTRA_COLUMN,
};
use super::ddb_json::{write_attribute_pairs, write_nested};
use super::sampled::{Sampled, TableWriter};
use super::{EncodeError, RecordEncoder};
use crate::model::format::ParquetCompression;
use crate::model::Item;

/// Key of the file metadata entry holding the columns' DynamoDB types (JSON, [`Column`]s).
pub const COLUMNS_METADATA_KEY: &str = "ddb-backup.columns";

/// A row group is closed once the writer reports this much memory: with zstd a row group of about
/// 4 MB stored, some 20,000 student items. The writer's estimate leaves out much of what it
/// really holds (measured: peak RSS grows several times faster than the cap), so the cap is low.
pub const ROW_GROUP_MEMORY: usize = 8 * 1024 * 1024;

/// A Parquet encoder for one file; `keys` are the table's key attributes (the first columns).
pub fn parquet_encoder(keys: Vec<String>, compression: ParquetCompression) -> impl RecordEncoder {
    Sampled::new(
        keys,
        Tabular::Parquet,
        ParquetTable {
            compression,
            writer: None,
            schema: None,
            scratch: Vec::new(),
        },
    )
}

struct ParquetTable {
    compression: ParquetCompression,
    writer: Option<ArrowWriter<Vec<u8>>>,
    schema: Option<SchemaRef>,
    scratch: Vec<u8>,
}

fn parquet_error(e: impl Into<crate::error::BoxError>) -> EncodeError {
    EncodeError::Parquet(e.into())
}

/// The Arrow type a column is stored as.
pub fn arrow_type(column: &Column) -> DataType {
    let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
    match column.dynamodb_type {
        DynamoType::N => match column.number {
            Some(NumberStorage::Int64) => DataType::Int64,
            Some(NumberStorage::Decimal { scale }) => DataType::Decimal128(38, scale),
            _ => DataType::Utf8,
        },
        DynamoType::S | DynamoType::M | DynamoType::L => DataType::Utf8,
        DynamoType::B => DataType::Binary,
        DynamoType::Bool | DynamoType::Null => DataType::Boolean,
        DynamoType::SS | DynamoType::NS => list(DataType::Utf8),
        DynamoType::BS => list(DataType::Binary),
    }
}

enum Builder {
    Utf8(StringBuilder),
    Int64(Int64Builder),
    Decimal(Decimal128Builder, i8),
    Binary(BinaryBuilder),
    Bool(BooleanBuilder),
    Utf8List(ListBuilder<StringBuilder>),
    BinaryList(ListBuilder<BinaryBuilder>),
}

impl Builder {
    fn for_type(data_type: &DataType) -> Result<Builder, EncodeError> {
        Ok(match data_type {
            DataType::Int64 => Builder::Int64(Int64Builder::new()),
            DataType::Decimal128(precision, scale) => Builder::Decimal(
                Decimal128Builder::new()
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(parquet_error)?,
                *scale,
            ),
            DataType::Binary => Builder::Binary(BinaryBuilder::new()),
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::List(field) if field.data_type() == &DataType::Binary => {
                Builder::BinaryList(ListBuilder::new(BinaryBuilder::new()))
            }
            DataType::List(_) => Builder::Utf8List(ListBuilder::new(StringBuilder::new())),
            _ => Builder::Utf8(StringBuilder::new()),
        })
    }

    fn append(
        &mut self,
        name: &str,
        value: Option<&AttributeValue>,
        scratch: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let misfit = || parquet_error(format!("attribute `{name}` does not fit its column"));
        match (self, value) {
            (Builder::Utf8(b), None) => b.append_null(),
            (Builder::Int64(b), None) => b.append_null(),
            (Builder::Decimal(b, _), None) => b.append_null(),
            (Builder::Binary(b), None) => b.append_null(),
            (Builder::Bool(b), None) => b.append_null(),
            (Builder::Utf8List(b), None) => b.append_null(),
            (Builder::BinaryList(b), None) => b.append_null(),
            (Builder::Utf8(b), Some(AttributeValue::S(s) | AttributeValue::N(s))) => {
                b.append_value(s)
            }
            (Builder::Utf8(b), Some(v @ (AttributeValue::M(_) | AttributeValue::L(_)))) => {
                scratch.clear();
                write_nested(scratch, name, v)?;
                b.append_value(std::str::from_utf8(scratch).map_err(parquet_error)?);
            }
            (Builder::Int64(b), Some(AttributeValue::N(n))) => {
                b.append_value(parse_int64(n).ok_or_else(misfit)?)
            }
            (Builder::Decimal(b, scale), Some(AttributeValue::N(n))) => {
                b.append_value(parse_decimal(n, *scale).ok_or_else(misfit)?)
            }
            (Builder::Binary(b), Some(AttributeValue::B(v))) => b.append_value(v.as_ref()),
            (Builder::Bool(b), Some(AttributeValue::Bool(v))) => b.append_value(*v),
            (Builder::Bool(b), Some(AttributeValue::Null(_))) => b.append_value(true),
            (Builder::Utf8List(b), Some(AttributeValue::Ss(set) | AttributeValue::Ns(set))) => {
                for s in set {
                    b.values().append_value(s);
                }
                b.append(true);
            }
            (Builder::BinaryList(b), Some(AttributeValue::Bs(set))) => {
                for v in set {
                    b.values().append_value(v.as_ref());
                }
                b.append(true);
            }
            _ => return Err(misfit()),
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Decimal(b, _) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Utf8List(b) => Arc::new(b.finish()),
            Builder::BinaryList(b) => Arc::new(b.finish()),
        }
    }
}

impl ParquetTable {
    fn drain(&mut self, out: &mut dyn Write) -> Result<(), EncodeError> {
        if let Some(writer) = self.writer.as_mut() {
            let bytes = writer.inner_mut();
            out.write_all(bytes)?;
            bytes.clear();
        }
        Ok(())
    }
}

impl TableWriter for ParquetTable {
    fn begin(&mut self, columns: &Columns, _out: &mut dyn Write) -> Result<(), EncodeError> {
        let fields: Vec<Field> = columns
            .columns()
            .iter()
            .map(|c| Field::new(c.name.as_str(), arrow_type(c), true))
            .chain([Field::new(EXTRA_COLUMN, DataType::Utf8, true)])
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let codec = match self.compression {
            ParquetCompression::Zstd => Codec::ZSTD(ZstdLevel::try_new(3).map_err(parquet_error)?),
            ParquetCompression::Snappy => Codec::SNAPPY,
            ParquetCompression::Gzip => Codec::GZIP(GzipLevel::default()),
            ParquetCompression::None => Codec::UNCOMPRESSED,
        };
        let described = serde_json::to_string(columns.columns()).map_err(parquet_error)?;
        let properties = WriterProperties::builder()
            .set_compression(codec)
            .set_created_by(format!("ddb-backup {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                COLUMNS_METADATA_KEY.to_string(),
                described,
            )]))
            .build();
        self.writer = Some(
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))
                .map_err(parquet_error)?,
        );
        self.schema = Some(schema);
        Ok(())
    }

    fn rows(
        &mut self,
        columns: &Columns,
        items: &[Item],
        out: &mut dyn Write,
    ) -> Result<(), EncodeError> {
        let Some(schema) = self.schema.clone() else {
            return Err(parquet_error("rows before the schema"));
        };
        let mut builders = schema
            .fields()
            .iter()
            .map(|f| Builder::for_type(f.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        let (mut placed, mut extra) = (Vec::new(), Vec::new());
        let mut extra_json = Vec::new();
        for item in items {
            columns.place(item, &mut placed, &mut extra);
            for ((builder, column), value) in
                builders.iter_mut().zip(columns.columns()).zip(&placed)
            {
                builder.append(&column.name, *value, &mut self.scratch)?;
            }
            let Some(Builder::Utf8(extra_builder)) = builders.last_mut() else {
                return Err(parquet_error("no _extra column"));
            };
            if extra.is_empty() {
                extra_builder.append_null();
            } else {
                extra_json.clear();
                write_attribute_pairs(&mut extra_json, &extra)?;
                extra_builder
                    .append_value(std::str::from_utf8(&extra_json).map_err(parquet_error)?);
            }
        }
        let arrays: Vec<ArrayRef> = builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(schema, arrays).map_err(parquet_error)?;
        if let Some(writer) = self.writer.as_mut() {
            writer.write(&batch).map_err(parquet_error)?;
            if writer.memory_size() >= ROW_GROUP_MEMORY {
                writer.flush().map_err(parquet_error)?;
            }
        }
        self.drain(out)
    }

    fn end(&mut self, out: &mut dyn Write) -> Result<(), EncodeError> {
        if let Some(writer) = self.writer.as_mut() {
            writer.finish().map_err(parquet_error)?;
        }
        self.drain(out)
    }
}

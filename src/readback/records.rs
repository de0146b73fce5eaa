//! Reading the items of one backup file, in any format and as stored (compressed): what verify,
//! restore and the round-trip tests stand on. Line formats decode line by line; CSV takes its
//! column types from the manifest; Parquet takes them from its own key-value metadata and is
//! spooled to a temporary file first, because a Parquet reader starts at the footer.

use std::io::{self, BufRead, BufReader, Read};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::backup::compress::decompressing_reader;
use crate::codec::decode::{decode_item_map, decode_line, decode_typed_value};
use crate::codec::encode::columns::{
    format_decimal, Column, DynamoType, NumberStorage, EXTRA_COLUMN,
};
use crate::codec::encode::parquet::COLUMNS_METADATA_KEY;
use crate::codec::number::json_number;
use crate::model::format::{Compression, Format};
use crate::model::Item;

/// What reading a whole file found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileRead {
    /// Items read.
    pub items: u64,
    /// Bytes after decompression (for Parquet, the file itself).
    pub plain_bytes: u64,
}

/// Why a file could not be read to the end; says how far it got.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RecordError {
    /// What was read before the failure.
    pub read: FileRead,
    /// What went wrong, naming the record (1-based) where there is one.
    pub message: String,
}

/// Reads every item of a stored file in order, handing each to `each`; `each` returning `false`
/// stops the reading early (not an error). `columns` are the manifest's columns of a CSV file.
pub fn read_items<R: Read>(
    raw: R,
    format: Format,
    compression: Compression,
    columns: Option<&[Column]>,
    mut each: impl FnMut(Item) -> bool,
) -> Result<FileRead, RecordError> {
    let mut read = FileRead::default();
    let fail = |read: FileRead, message: String| RecordError { read, message };
    if format == Format::Parquet {
        return read_parquet(raw, &mut each);
    }
    let decompressed = decompressing_reader(compression, BufReader::new(raw)).map_err(|e| {
        fail(
            read,
            format!("cannot start {compression} decompression: {e}"),
        )
    })?;
    let mut counted = Counted {
        inner: decompressed,
        bytes: 0,
    };
    if format == Format::Csv {
        let Some(columns) = columns else {
            return Err(fail(
                read,
                "the manifest lists no columns for this CSV file, so its types are unknown"
                    .to_string(),
            ));
        };
        let result = read_csv(&mut counted, columns, &mut read, &mut each);
        read.plain_bytes = counted.bytes;
        return result.map(|()| read).map_err(|m| fail(read, m));
    }
    let mut lines = BufReader::new(&mut counted);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match lines.read_line(&mut line) {
            Ok(0) => return Ok(read),
            Ok(n) => n,
            Err(e) => {
                return Err(fail(
                    read,
                    format!(
                        "corrupt or truncated {compression} data after {} items: {e}",
                        read.items
                    ),
                ))
            }
        };
        read.plain_bytes += n as u64;
        let Some(record) = line.strip_suffix('\n') else {
            return Err(fail(
                read,
                format!(
                    "record {} is cut off (no line end): the file is truncated",
                    read.items + 1
                ),
            ));
        };
        let item = decode_line(format, record).map_err(|e| {
            fail(
                read,
                format!("record {} does not decode: {e}", read.items + 1),
            )
        })?;
        read.items += 1;
        if !each(item) {
            return Ok(read);
        }
    }
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

fn read_csv(
    input: impl Read,
    columns: &[Column],
    read: &mut FileRead,
    each: &mut impl FnMut(Item) -> bool,
) -> Result<(), String> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(input);
    let header = csv.headers().map_err(|e| format!("header row: {e}"))?;
    let expected: Vec<&str> = columns
        .iter()
        .map(|c| c.name.as_str())
        .chain([EXTRA_COLUMN])
        .collect();
    if header.iter().collect::<Vec<_>>() != expected {
        return Err(format!(
            "header row {:?} is not the manifest's columns {expected:?}",
            header.iter().collect::<Vec<_>>()
        ));
    }
    let mut record = csv::StringRecord::new();
    loop {
        let record_no = read.items + 1;
        match csv.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => return Err(format!("record {record_no}: {e}")),
        }
        let mut item = Item::with_capacity(columns.len());
        for (column, cell) in columns.iter().zip(record.iter()) {
            if !cell.is_empty() {
                let value = csv_value(column, cell)
                    .map_err(|m| format!("record {record_no}, column `{}`: {m}", column.name))?;
                item.insert(column.name.clone(), value);
            }
        }
        let extra = record.get(columns.len()).unwrap_or_default();
        merge_extra(&mut item, extra).map_err(|m| format!("record {record_no}: {m}"))?;
        read.items += 1;
        if !each(item) {
            return Ok(());
        }
    }
}

/// Rebuilds an item from a row of cells in the CSV cell syntax (see [`crate::codec::encode::csv_encoder`];
/// `None` is a missing attribute, `Some("")` an empty one, as Parquet can say) and its `_extra`
/// cell. Public so that rows read by other tools (DuckDB, pyarrow) can be checked against the
/// items they came from.
pub fn item_from_cells(
    columns: &[Column],
    cells: &[Option<String>],
    extra: Option<&str>,
) -> Result<Item, String> {
    let mut item = Item::with_capacity(columns.len());
    for (column, cell) in columns.iter().zip(cells) {
        if let Some(cell) = cell.as_deref() {
            let value =
                csv_value(column, cell).map_err(|m| format!("column `{}`: {m}", column.name))?;
            item.insert(column.name.clone(), value);
        }
    }
    merge_extra(&mut item, extra.unwrap_or_default())?;
    Ok(item)
}

/// Adds the attributes of an `_extra` cell (a DynamoDB JSON attribute map, or empty).
fn merge_extra(item: &mut Item, extra: &str) -> Result<(), String> {
    if extra.is_empty() {
        return Ok(());
    }
    let extra = decode_item_map(extra.as_bytes()).map_err(|e| format!("column `_extra`: {e}"))?;
    for (name, value) in extra {
        if item.insert(name.clone(), value).is_some() {
            return Err(format!(
                "attribute `{name}` is both a column and in `_extra`"
            ));
        }
    }
    Ok(())
}

fn base64(text: &str) -> Result<Blob, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map(Blob::new)
        .map_err(|e| format!("not base64: {e}"))
}

fn number(text: &str) -> Result<String, String> {
    json_number(text).map_err(|e| e.to_string())?;
    Ok(text.to_string())
}

/// An SS or NS from its members' text (numbers checked).
fn string_set(ty: DynamoType, members: Vec<String>) -> Result<AttributeValue, String> {
    if ty == DynamoType::NS {
        for n in &members {
            number(n)?;
        }
        return Ok(AttributeValue::Ns(members));
    }
    Ok(AttributeValue::Ss(members))
}

/// An M or L from the DynamoDB JSON text the tabular formats keep it as.
fn nested(column: &Column, text: &str) -> Result<AttributeValue, String> {
    let value = if column.dynamodb_type == DynamoType::M {
        decode_item_map(text.as_bytes()).map(AttributeValue::M)
    } else {
        decode_typed_value(&format!("{{\"L\":{text}}}"), &column.name)
    };
    value.map_err(|e| e.to_string())
}

/// A CSV cell back into the value it was written from (see [`crate::codec::encode::csv_encoder`]).
fn csv_value(column: &Column, cell: &str) -> Result<AttributeValue, String> {
    let strings = || serde_json::from_str::<Vec<String>>(cell).map_err(|e| e.to_string());
    Ok(match column.dynamodb_type {
        DynamoType::S => AttributeValue::S(cell.to_string()),
        DynamoType::N => AttributeValue::N(number(cell)?),
        DynamoType::B => AttributeValue::B(base64(cell)?),
        DynamoType::Bool => match cell {
            "true" => AttributeValue::Bool(true),
            "false" => AttributeValue::Bool(false),
            other => return Err(format!("expected true or false, got `{other}`")),
        },
        DynamoType::Null => AttributeValue::Null(true),
        DynamoType::SS | DynamoType::NS => string_set(column.dynamodb_type, strings()?)?,
        DynamoType::BS => AttributeValue::Bs(
            strings()?
                .iter()
                .map(|b| base64(b))
                .collect::<Result<_, _>>()?,
        ),
        DynamoType::M | DynamoType::L => nested(column, cell)?,
    })
}

/// Reads a Parquet file. The parquet crate panics on some corrupt files (a column chunk whose
/// offsets are negative) instead of answering an error: a panic is caught and reported as the
/// file being unreadable, so `verify` names the file instead of dying.
fn read_parquet<R: Read>(
    raw: R,
    each: &mut impl FnMut(Item) -> bool,
) -> Result<FileRead, RecordError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_parquet_file(raw, each)
    }))
    .unwrap_or_else(|panic| {
        let cause = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(RecordError {
            read: FileRead::default(),
            message: format!("not a readable Parquet file: {cause}"),
        })
    })
}

fn read_parquet_file<R: Read>(
    mut raw: R,
    each: &mut impl FnMut(Item) -> bool,
) -> Result<FileRead, RecordError> {
    let mut read = FileRead::default();
    let fail = |read: FileRead, message: String| RecordError { read, message };
    let mut spool = tempfile::tempfile()
        .map_err(|e| fail(read, format!("cannot create a temporary file: {e}")))?;
    read.plain_bytes = io::copy(&mut raw, &mut spool)
        .map_err(|e| fail(read, format!("reading the file failed: {e}")))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(spool)
        .map_err(|e| fail(read, format!("not a readable Parquet file: {e}")))?;
    let described = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == COLUMNS_METADATA_KEY))
        .and_then(|kv| kv.value.clone())
        .ok_or_else(|| {
            fail(
                read,
                format!("no `{COLUMNS_METADATA_KEY}` metadata: not written by ddb-backup"),
            )
        })?;
    let columns: Vec<Column> = serde_json::from_str(&described)
        .map_err(|e| fail(read, format!("`{COLUMNS_METADATA_KEY}` metadata: {e}")))?;
    let reader = builder
        .with_batch_size(4096)
        .build()
        .map_err(|e| fail(read, e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| fail(read, format!("after {} items: {e}", read.items)))?;
        if batch.num_columns() != columns.len() + 1 {
            return Err(fail(
                read,
                format!(
                    "{} columns, but the metadata describes {} and `_extra`",
                    batch.num_columns(),
                    columns.len()
                ),
            ));
        }
        let extra = batch
            .column(columns.len())
            .as_string_opt::<i32>()
            .ok_or_else(|| fail(read, "column `_extra` is not text".to_string()))?;
        for row in 0..batch.num_rows() {
            let record_no = read.items + 1;
            let mut item = Item::with_capacity(columns.len());
            for (i, column) in columns.iter().enumerate() {
                let array = batch.column(i);
                if array.is_null(row) {
                    continue;
                }
                let value = parquet_value(column, array.as_ref(), row).map_err(|m| {
                    fail(
                        read,
                        format!("record {record_no}, column `{}`: {m}", column.name),
                    )
                })?;
                item.insert(column.name.clone(), value);
            }
            if !extra.is_null(row) {
                merge_extra(&mut item, extra.value(row))
                    .map_err(|m| fail(read, format!("record {record_no}: {m}")))?;
            }
            read.items += 1;
            if !each(item) {
                return Ok(read);
            }
        }
    }
    Ok(read)
}

/// One Parquet cell back into its value.
fn parquet_value(column: &Column, array: &dyn Array, row: usize) -> Result<AttributeValue, String> {
    let wrong = || {
        format!(
            "stored as {}, which does not fit its type",
            array.data_type()
        )
    };
    let text = || {
        array
            .as_string_opt::<i32>()
            .map(|a| a.value(row).to_string())
            .ok_or_else(wrong)
    };
    let strings = || -> Result<Vec<String>, String> {
        let list = array.as_list_opt::<i32>().ok_or_else(wrong)?.value(row);
        let values = list.as_string_opt::<i32>().ok_or_else(wrong)?;
        Ok((0..values.len())
            .map(|i| values.value(i).to_string())
            .collect())
    };
    Ok(match column.dynamodb_type {
        DynamoType::S => AttributeValue::S(text()?),
        DynamoType::N => AttributeValue::N(match (column.number, array.data_type()) {
            (Some(NumberStorage::Int64), DataType::Int64) => array
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(wrong)?
                .value(row)
                .to_string(),
            (Some(NumberStorage::Decimal { scale }), DataType::Decimal128(_, s)) if *s == scale => {
                let decimals = array
                    .as_primitive_opt::<arrow::datatypes::Decimal128Type>()
                    .ok_or_else(wrong)?;
                format_decimal(decimals.value(row), scale)
            }
            (_, DataType::Utf8) => number(&text()?)?,
            _ => return Err(wrong()),
        }),
        DynamoType::B => AttributeValue::B(Blob::new(
            array.as_binary_opt::<i32>().ok_or_else(wrong)?.value(row),
        )),
        DynamoType::Bool => {
            AttributeValue::Bool(array.as_boolean_opt().ok_or_else(wrong)?.value(row))
        }
        DynamoType::Null => AttributeValue::Null(true),
        DynamoType::SS | DynamoType::NS => string_set(column.dynamodb_type, strings()?)?,
        DynamoType::BS => {
            let list = array.as_list_opt::<i32>().ok_or_else(wrong)?.value(row);
            let values = list.as_binary_opt::<i32>().ok_or_else(wrong)?;
            AttributeValue::Bs(
                (0..values.len())
                    .map(|i| Blob::new(values.value(i)))
                    .collect(),
            )
        }
        DynamoType::M | DynamoType::L => nested(column, &text()?)?,
    })
}

/// Every item of a file, for tests and small files.
pub fn read_all(
    raw: impl Read,
    format: Format,
    compression: Compression,
    columns: Option<&[Column]>,
) -> Result<Vec<Item>, RecordError> {
    let mut items = Vec::new();
    read_items(raw, format, compression, columns, |item| {
        items.push(item);
        true
    })?;
    Ok(items)
}

#[cfg(test)]
mod tests;

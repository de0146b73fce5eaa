//! RFC 4180 CSV (CRLF line ends, fields quoted when needed) with a header row: the discovered
//! columns, then `_extra`. Cells: S as is, N as its exact text, B as base64, BOOL as
//! `true`/`false`, NULL as `null`, SS/NS/BS as JSON arrays of strings (numbers as their text,
//! binaries as base64), M and L as DynamoDB JSON. An empty cell always means the attribute is
//! missing: empty strings and binaries, which CSV could not tell apart from that, go to `_extra`.

use std::io::Write;

use aws_sdk_dynamodb::types::AttributeValue;

use super::columns::{Column, Columns, Tabular, EXTRA_COLUMN};
use super::ddb_json::{write_attribute_pairs, write_nested};
use super::sampled::{Sampled, TableWriter};
use super::text::write_json_str;
use super::{EncodeError, RecordEncoder};
use crate::codec::number::json_number;
use crate::model::Item;

/// A CSV encoder for one file; `keys` are the table's key attributes (the first columns).
pub fn csv_encoder(keys: Vec<String>) -> impl RecordEncoder {
    Sampled::new(keys, Tabular::Csv, CsvWriter::default())
}

/// Rows of one page are written into `buf`, then handed down in one write.
#[derive(Default)]
struct CsvWriter {
    buf: Vec<u8>,
    record: Vec<Vec<u8>>,
}

impl CsvWriter {
    fn emit(&mut self, out: &mut dyn Write) -> Result<(), EncodeError> {
        out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

fn csv_writer(buf: &mut Vec<u8>) -> csv::Writer<&mut Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .has_headers(false)
        .from_writer(buf)
}

fn csv_error(e: csv::Error) -> EncodeError {
    EncodeError::Csv(e)
}

impl TableWriter for CsvWriter {
    fn begin(&mut self, columns: &Columns, out: &mut dyn Write) -> Result<(), EncodeError> {
        {
            let mut w = csv_writer(&mut self.buf);
            let names = columns.columns().iter().map(|c| c.name.as_str());
            w.write_record(names.chain([EXTRA_COLUMN]))
                .map_err(csv_error)?;
            w.flush()?;
        }
        self.emit(out)
    }

    fn rows(
        &mut self,
        columns: &Columns,
        items: &[Item],
        out: &mut dyn Write,
    ) -> Result<(), EncodeError> {
        let (mut placed, mut extra) = (Vec::new(), Vec::new());
        let record = &mut self.record;
        record.resize_with(columns.columns().len() + 1, Vec::new);
        {
            let mut w = csv_writer(&mut self.buf);
            for item in items {
                columns.place(item, &mut placed, &mut extra);
                for ((slot, column), cell) in placed.iter().zip(columns.columns()).zip(&mut *record)
                {
                    cell.clear();
                    if let Some(value) = slot {
                        write_cell(cell, column, value)?;
                    }
                }
                let last = record.len() - 1;
                record[last].clear();
                if !extra.is_empty() {
                    write_attribute_pairs(&mut record[last], &extra)?;
                }
                w.write_record(&*record).map_err(csv_error)?;
            }
            w.flush()?;
        }
        self.emit(out)
    }

    fn end(&mut self, out: &mut dyn Write) -> Result<(), EncodeError> {
        self.emit(out)
    }
}

/// One cell's text.
fn write_cell(
    cell: &mut Vec<u8>,
    column: &Column,
    value: &AttributeValue,
) -> Result<(), EncodeError> {
    use base64::Engine;
    let b64 = &base64::engine::general_purpose::STANDARD;
    match value {
        AttributeValue::S(s) => cell.extend_from_slice(s.as_bytes()),
        AttributeValue::N(n) => {
            check_number(&column.name, n)?;
            cell.extend_from_slice(n.as_bytes());
        }
        AttributeValue::B(b) => cell.extend_from_slice(b64.encode(b.as_ref()).as_bytes()),
        AttributeValue::Bool(b) => cell.extend_from_slice(if *b { b"true" } else { b"false" }),
        AttributeValue::Null(_) => cell.extend_from_slice(b"null"),
        AttributeValue::Ss(set) => json_strings(cell, set.iter().map(String::as_str)),
        AttributeValue::Ns(set) => {
            for n in set {
                check_number(&column.name, n)?;
            }
            json_strings(cell, set.iter().map(String::as_str));
        }
        AttributeValue::Bs(set) => {
            let encoded: Vec<String> = set.iter().map(|b| b64.encode(b.as_ref())).collect();
            json_strings(cell, encoded.iter().map(String::as_str));
        }
        AttributeValue::M(_) | AttributeValue::L(_) => write_nested(cell, &column.name, value)?,
        _ => {
            return Err(EncodeError::UnknownType {
                attribute: column.name.clone(),
            })
        }
    }
    Ok(())
}

fn check_number(attribute: &str, n: &str) -> Result<(), EncodeError> {
    json_number(n)
        .map(|_| ())
        .map_err(|source| EncodeError::InvalidNumber {
            attribute: attribute.to_string(),
            source,
        })
}

fn json_strings<'a>(cell: &mut Vec<u8>, values: impl Iterator<Item = &'a str>) {
    cell.push(b'[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            cell.push(b',');
        }
        write_json_str(cell, v);
    }
    cell.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Retryable;

    #[test]
    fn a_record_the_csv_writer_refuses_keeps_its_cause_and_is_not_retried() {
        let mut buf = Vec::new();
        let mut w = csv_writer(&mut buf);
        w.write_record(["a", "b"]).unwrap();
        let err = csv_error(w.write_record(["a"]).unwrap_err());
        assert!(matches!(err, EncodeError::Csv(_)), "{err:?}");
        assert!(!err.is_retryable(), "the same record fails the same way");
        let cause = std::error::Error::source(&err).expect("the csv error is kept");
        assert!(cause.is::<::csv::Error>(), "{cause:?}");
    }
}

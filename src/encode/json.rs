//! Plain JSON lines for analytics tools (jq, DuckDB, Athena's JSON SerDe). Mapping:
//! S → string, N → number with its exact digits, B → base64 string, BOOL → true/false,
//! NULL → null, SS/NS/BS → arrays of strings/numbers/base64, M → object, L → array.

use std::io::Write;

use aws_sdk_dynamodb::types::AttributeValue;

use super::ddb_json::write_array;
use super::number::json_number;
use super::text::{write_base64_str, write_json_str};
use super::{AttrPath, EncodeError, Item, LineBuffer, RecordEncoder};

/// Readable but lossy: a set and a list, or a binary and a string, look alike afterwards.
#[derive(Default)]
pub struct JsonLinesEncoder {
    lines: LineBuffer,
}

impl RecordEncoder for JsonLinesEncoder {
    fn encode_batch(&mut self, items: &[Item], out: &mut dyn Write) -> Result<(), EncodeError> {
        self.lines
            .encode_lines(items, out, |item, buf| write_object(buf, item, None))
    }

    fn finish(&mut self, _out: &mut dyn Write) -> Result<(), EncodeError> {
        Ok(())
    }
}

fn write_object(
    buf: &mut Vec<u8>,
    map: &Item,
    parent: Option<&AttrPath>,
) -> Result<(), EncodeError> {
    buf.push(b'{');
    for (i, (name, value)) in map.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_json_str(buf, name);
        buf.push(b':');
        let path = match parent {
            None => AttrPath::Top(name),
            Some(p) => AttrPath::Field(p, name),
        };
        write_value(buf, value, &path)?;
    }
    buf.push(b'}');
    Ok(())
}

fn write_number(buf: &mut Vec<u8>, n: &str, path: &AttrPath) -> Result<(), EncodeError> {
    let text = json_number(n).map_err(|source| EncodeError::InvalidNumber {
        attribute: path.render(),
        source,
    })?;
    buf.extend_from_slice(text.as_bytes());
    Ok(())
}

fn write_value(
    buf: &mut Vec<u8>,
    value: &AttributeValue,
    path: &AttrPath,
) -> Result<(), EncodeError> {
    match value {
        AttributeValue::S(s) => write_json_str(buf, s),
        AttributeValue::N(n) => write_number(buf, n, path)?,
        AttributeValue::B(b) => write_base64_str(buf, b.as_ref()),
        AttributeValue::Bool(b) => buf.extend_from_slice(if *b { b"true" } else { b"false" }),
        AttributeValue::Null(_) => buf.extend_from_slice(b"null"),
        AttributeValue::Ss(set) => write_array(buf, set, |buf, s| {
            write_json_str(buf, s);
            Ok(())
        })?,
        AttributeValue::Ns(set) => write_array(buf, set, |buf, n| write_number(buf, n, path))?,
        AttributeValue::Bs(set) => write_array(buf, set, |buf, b| {
            write_base64_str(buf, b.as_ref());
            Ok(())
        })?,
        AttributeValue::M(map) => write_object(buf, map, Some(path))?,
        AttributeValue::L(list) => {
            buf.push(b'[');
            for (i, v) in list.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_value(buf, v, &AttrPath::Index(path, i))?;
            }
            buf.push(b']');
        }
        _ => {
            return Err(EncodeError::UnknownType {
                attribute: path.render(),
            })
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::test_items::every_type;

    fn encode(item: Item) -> String {
        let mut out = Vec::new();
        JsonLinesEncoder::default()
            .encode_batch(&[item], &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Reads the line with exact numbers (serde_json's arbitrary-precision mode is not enabled
    /// crate-wide, so numbers are checked on the raw text instead).
    #[test]
    fn every_type_maps_as_documented_with_exact_numbers() {
        let line = encode(every_type());
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], "s-0001");
        assert_eq!(v["empty"], "");
        assert_eq!(v["quote\"comma,\nnewline"], "tab\t\"q\" \\ \u{1} é 😀");
        assert_eq!(v["bin"], "AP8KDSI=");
        assert_eq!(v["emptybin"], "");
        assert_eq!(v["enrolled"], true);
        assert!(v["nothing"].is_null());
        assert_eq!(v["tags"], serde_json::json!(["a", "b,c"]));
        assert_eq!(v["blobs"], serde_json::json!(["AQ==", "AgM="]));
        assert_eq!(v["address"]["city"], "Hà Nội");
        assert_eq!(v["mixed"], serde_json::json!(["", null, {}, [], false]));
        // Exact digits survive as written, no float rounding.
        assert!(
            line.contains("\"big\":12345678901234567890123456789012345678"),
            "{line}"
        );
        assert!(line.contains("\"tiny\":-1E-130"), "{line}");
        assert!(
            line.contains("\"huge\":9.9999999999999999999999999999999999999E+125"),
            "{line}"
        );
        assert!(line.contains("\"scores\":[1,-0.5]"), "{line}");
        assert!(line.contains("\"zip\":100000"), "{line}");
    }

    #[test]
    fn json_forbidden_number_spellings_are_normalised() {
        let mut item = Item::new();
        item.insert("n".into(), AttributeValue::N(".5".into()));
        assert_eq!(encode(item), "{\"n\":0.5}\n");
    }
}

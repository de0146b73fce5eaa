//! DynamoDB JSON lines: `{"Item":{"name":{"S":"..."}}}` per line, byte-compatible with the data
//! files of DynamoDB's native Export to S3, so `ImportTable` loads our backups unchanged.

use std::io::Write;

use aws_sdk_dynamodb::types::AttributeValue;

use super::text::{write_base64_str, write_json_str};
use crate::codec::number::json_number;
use crate::codec::wire::WireItems;

use super::{AttrPath, EncodeError, LineBuffer, RecordEncoder};
use crate::model::Item;

/// Lossless encoder: every attribute keeps its DynamoDB type tag.
#[derive(Default)]
pub struct DynamoDbJsonEncoder {
    lines: LineBuffer,
}

impl RecordEncoder for DynamoDbJsonEncoder {
    fn encode_batch(&mut self, items: &[Item], out: &mut dyn Write) -> Result<(), EncodeError> {
        self.lines.encode_lines(items, out, |item, buf| {
            buf.extend_from_slice(b"{\"Item\":");
            write_map(buf, item, None)?;
            buf.push(b'}');
            Ok(())
        })
    }

    /// DynamoDB sends items in exactly the form of an export line's `Item`: copied as they are.
    fn encode_wire(&mut self, items: &WireItems, out: &mut dyn Write) -> Result<(), EncodeError> {
        self.lines.encode_lines(items.iter(), out, |map, buf| {
            buf.extend_from_slice(b"{\"Item\":");
            buf.extend_from_slice(map);
            buf.push(b'}');
            Ok(())
        })
    }

    fn finish(&mut self, _out: &mut dyn Write) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Writes an item's attribute map (`{"id":{"S":"a"}}`), the form DynamoDB sends items in.
pub fn write_item_map(item: &Item, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
    write_map(buf, item, None)
}

/// Writes leftover attributes (the `_extra` column of the tabular formats) as an attribute map.
pub(crate) fn write_attribute_pairs(
    buf: &mut Vec<u8>,
    pairs: &[(&String, &AttributeValue)],
) -> Result<(), EncodeError> {
    write_pairs(buf, pairs.iter().copied(), None)
}

/// Writes the contents of an `M` (an attribute map) or an `L` (a list of typed values) of
/// attribute `name` as DynamoDB JSON: how the tabular formats keep nested data exact.
pub(crate) fn write_nested(
    buf: &mut Vec<u8>,
    name: &str,
    value: &AttributeValue,
) -> Result<(), EncodeError> {
    let path = AttrPath::Top(name);
    match value {
        AttributeValue::M(map) => write_map(buf, map, Some(&path)),
        AttributeValue::L(list) => write_list(buf, list, &path),
        other => write_value(buf, other, &path),
    }
}

/// Writes a map of attributes; `parent` is the map's own path (`None` for the item itself).
fn write_map(buf: &mut Vec<u8>, map: &Item, parent: Option<&AttrPath>) -> Result<(), EncodeError> {
    write_pairs(buf, map.iter(), parent)
}

/// Writes `{"name":{typed value},…}` for the given attributes.
fn write_pairs<'a>(
    buf: &mut Vec<u8>,
    pairs: impl Iterator<Item = (&'a String, &'a AttributeValue)>,
    parent: Option<&AttrPath>,
) -> Result<(), EncodeError> {
    buf.push(b'{');
    for (i, (name, value)) in pairs.enumerate() {
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

/// Writes `[{typed value},…]`, the contents of an `L`.
fn write_list(
    buf: &mut Vec<u8>,
    list: &[AttributeValue],
    path: &AttrPath,
) -> Result<(), EncodeError> {
    write_array(buf, list.iter().enumerate(), |buf, (i, v)| {
        write_value(buf, v, &AttrPath::Index(path, i))
    })
}

fn write_value(
    buf: &mut Vec<u8>,
    value: &AttributeValue,
    path: &AttrPath,
) -> Result<(), EncodeError> {
    match value {
        AttributeValue::S(s) => {
            buf.extend_from_slice(b"{\"S\":");
            write_json_str(buf, s);
        }
        AttributeValue::N(n) => {
            check_number(n, path)?;
            buf.extend_from_slice(b"{\"N\":");
            write_json_str(buf, n);
        }
        AttributeValue::B(b) => {
            buf.extend_from_slice(b"{\"B\":");
            write_base64_str(buf, b.as_ref());
        }
        AttributeValue::Bool(b) => {
            buf.extend_from_slice(if *b {
                b"{\"BOOL\":true"
            } else {
                b"{\"BOOL\":false"
            });
        }
        AttributeValue::Null(_) => buf.extend_from_slice(b"{\"NULL\":true"),
        AttributeValue::Ss(set) => {
            buf.extend_from_slice(b"{\"SS\":");
            write_array(buf, set, |buf, s| {
                write_json_str(buf, s);
                Ok(())
            })?;
        }
        AttributeValue::Ns(set) => {
            buf.extend_from_slice(b"{\"NS\":");
            write_array(buf, set, |buf, n| {
                check_number(n, path)?;
                write_json_str(buf, n);
                Ok(())
            })?;
        }
        AttributeValue::Bs(set) => {
            buf.extend_from_slice(b"{\"BS\":");
            write_array(buf, set, |buf, b| {
                write_base64_str(buf, b.as_ref());
                Ok(())
            })?;
        }
        AttributeValue::M(map) => {
            buf.extend_from_slice(b"{\"M\":");
            write_map(buf, map, Some(path))?;
        }
        AttributeValue::L(list) => {
            buf.extend_from_slice(b"{\"L\":");
            write_list(buf, list, path)?;
        }
        _ => {
            return Err(EncodeError::UnknownType {
                attribute: path.render(),
            })
        }
    }
    buf.push(b'}');
    Ok(())
}

/// DynamoDB JSON keeps numbers as strings, so the text is written unchanged; it is still checked,
/// so a corrupt value fails the backup instead of producing a file restore cannot load.
fn check_number(n: &str, path: &AttrPath) -> Result<(), EncodeError> {
    json_number(n)
        .map(|_| ())
        .map_err(|source| EncodeError::InvalidNumber {
            attribute: path.render(),
            source,
        })
}

pub(super) fn write_array<T>(
    buf: &mut Vec<u8>,
    values: impl IntoIterator<Item = T>,
    mut each: impl FnMut(&mut Vec<u8>, T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    buf.push(b'[');
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        each(buf, v)?;
    }
    buf.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode::decode_dynamodb_json_line;
    use crate::codec::encode::test_items::every_type;

    fn encode(items: &[Item]) -> String {
        let mut out = Vec::new();
        let mut enc = DynamoDbJsonEncoder::default();
        enc.encode_batch(items, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_type_round_trips_exactly() {
        let item = every_type();
        let text = encode(std::slice::from_ref(&item));
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 1);
        let back = decode_dynamodb_json_line(text.trim_end()).unwrap();
        assert_eq!(back, item);
    }

    #[test]
    fn line_shape_matches_native_export() {
        let mut item = Item::new();
        item.insert("id".into(), AttributeValue::S("1".into()));
        assert_eq!(
            encode(&[item.clone(), item]),
            "{\"Item\":{\"id\":{\"S\":\"1\"}}}\n".repeat(2)
        );
        let mut item = Item::new();
        item.insert("n".into(), AttributeValue::N("+0.50".into()));
        item.insert("x".into(), AttributeValue::Null(true));
        let line = encode(&[item]);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value["Item"]["n"]["N"], "+0.50",
            "number text is kept exactly"
        );
        assert_eq!(value["Item"]["x"]["NULL"], true);
    }

    #[test]
    fn bad_numbers_name_the_nested_attribute() {
        let mut inner = Item::new();
        inner.insert("n".into(), AttributeValue::N("12abc".into()));
        let mut item = Item::new();
        item.insert(
            "outer".into(),
            AttributeValue::L(vec![AttributeValue::M(inner)]),
        );
        let err = DynamoDbJsonEncoder::default()
            .encode_batch(&[item], &mut Vec::new())
            .unwrap_err();
        assert!(err.to_string().contains("outer.[0].n"), "{err}");
    }

    #[test]
    fn many_items_flush_in_large_writes_and_keep_every_line() {
        let items: Vec<Item> = (0..5000)
            .map(|i| {
                let mut item = Item::new();
                item.insert("id".into(), AttributeValue::S(format!("{i:05}")));
                item
            })
            .collect();
        let text = encode(&items);
        let ids: Vec<String> = text
            .lines()
            .map(
                |l| match decode_dynamodb_json_line(l).unwrap().remove("id") {
                    Some(AttributeValue::S(s)) => s,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        assert_eq!(
            ids,
            (0..5000).map(|i| format!("{i:05}")).collect::<Vec<_>>()
        );
    }
}

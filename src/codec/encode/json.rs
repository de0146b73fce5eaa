//! Plain JSON lines for analytics tools (jq, DuckDB, Athena's JSON SerDe). Mapping:
//! S → string, N → number with its exact digits, B → base64 string, BOOL → true/false,
//! NULL → null, SS/NS/BS → arrays of strings/numbers/base64, M → object, L → array.
//!
//! Scanned items arrive as DynamoDB's wire bytes (see [`crate::codec::wire`]), and the mapping above only
//! drops the type wrappers: strings, base64 and names are already JSON strings, numbers only need
//! [`json_number`]. So [`transcode_item`] rewrites the bytes directly, without building SDK items;
//! anything it does not expect sends the item through the decoder and the general path instead.

use std::io::Write;

use aws_sdk_dynamodb::types::AttributeValue;

use super::ddb_json::write_array;
use super::text::{write_base64_str, write_json_str};
use super::{AttrPath, EncodeError, LineBuffer, RecordEncoder};
use crate::codec::number::json_number;
use crate::codec::wire::WireItems;
use crate::model::Item;

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

    fn encode_wire(&mut self, items: &WireItems, out: &mut dyn Write) -> Result<(), EncodeError> {
        self.lines.encode_lines(items.iter(), out, |map, buf| {
            let start = buf.len();
            if transcode_item(map, buf).is_none() {
                buf.truncate(start);
                let item = crate::codec::decode::decode_item_map(map)?;
                write_object(buf, &item, None)?;
            }
            Ok(())
        })
    }

    fn finish(&mut self, _out: &mut dyn Write) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Writes a wire item (a compact DynamoDB JSON attribute map) as a plain JSON object. `None` when
/// the bytes are not what DynamoDB writes (or a number is not one); the caller then decodes the
/// item, which reports the problem with the attribute's name. Output written before `None` is
/// left for the caller to discard.
fn transcode_item(map: &[u8], out: &mut Vec<u8>) -> Option<()> {
    (transcode_map(map, 0, out, 0)? == map.len()).then_some(())
}

/// DynamoDB nests at most 32 levels; anything deeper is left to the decoder, whose own limit
/// keeps a hostile body from exhausting the stack.
const MAX_DEPTH: u32 = 40;

/// An attribute map at `b[i]`: names are copied, values lose their type wrappers.
fn transcode_map(b: &[u8], i: usize, out: &mut Vec<u8>, depth: u32) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    sequence(b, i, out, (b'{', b'}'), |b, i, out| {
        let name_end = copy_string(b, i, out)?;
        if *b.get(name_end)? != b':' {
            return None;
        }
        out.push(b':');
        transcode_typed(b, name_end + 1, out, depth)
    })
}

/// A typed value `{"TAG":value}` at `b[i]`, written as its plain JSON value.
fn transcode_typed(b: &[u8], i: usize, out: &mut Vec<u8>, depth: u32) -> Option<usize> {
    if b.get(i..i + 2)? != b"{\"" {
        return None;
    }
    let tag_start = i + 2;
    let tag_len = b
        .get(tag_start..)?
        .iter()
        .take(5)
        .position(|&c| c == b'"')?;
    let mut j = tag_start + tag_len + 1;
    if *b.get(j)? != b':' {
        return None;
    }
    j += 1;
    let literal = |out: &mut Vec<u8>, expected: &[u8], written: &[u8]| {
        (b.get(j..j + expected.len())? == expected).then(|| {
            out.extend_from_slice(written);
            j + expected.len()
        })
    };
    j = match &b[tag_start..tag_start + tag_len] {
        b"S" | b"B" => copy_string(b, j, out)?,
        b"N" => number(b, j, out)?,
        b"BOOL" => literal(out, b"true", b"true").or_else(|| literal(out, b"false", b"false"))?,
        b"NULL" => literal(out, b"true", b"null")?,
        b"SS" | b"BS" => array(b, j, out, copy_string)?,
        b"NS" => array(b, j, out, number)?,
        b"M" => transcode_map(b, j, out, depth + 1)?,
        b"L" if depth < MAX_DEPTH => {
            array(b, j, out, |b, i, out| transcode_typed(b, i, out, depth + 1))?
        }
        _ => return None,
    };
    (*b.get(j)? == b'}').then_some(j + 1)
}

/// `[e,e,…]` at `b[i]`, each element written by `element`.
fn array(
    b: &[u8],
    i: usize,
    out: &mut Vec<u8>,
    element: impl Fn(&[u8], usize, &mut Vec<u8>) -> Option<usize>,
) -> Option<usize> {
    sequence(b, i, out, (b'[', b']'), element)
}

/// `open e,e,… close` at `b[i]`: the brackets and commas are copied, each element is written by
/// `element`.
fn sequence(
    b: &[u8],
    mut i: usize,
    out: &mut Vec<u8>,
    (open, close): (u8, u8),
    element: impl Fn(&[u8], usize, &mut Vec<u8>) -> Option<usize>,
) -> Option<usize> {
    if *b.get(i)? != open {
        return None;
    }
    out.push(open);
    i += 1;
    if *b.get(i)? == close {
        out.push(close);
        return Some(i + 1);
    }
    loop {
        i = element(b, i, out)?;
        let next = *b.get(i)?;
        out.push(next);
        i += 1;
        if next == close {
            return Some(i);
        }
        if next != b',' {
            return None;
        }
    }
}

/// A JSON string at `b[i]`, copied as it is (escapes and all).
fn copy_string(b: &[u8], i: usize, out: &mut Vec<u8>) -> Option<usize> {
    let end = string_end(b, i)?;
    out.extend_from_slice(&b[i..end]);
    Some(end)
}

/// A DynamoDB number (a JSON string of digits) at `b[i]`, written as a JSON number.
fn number(b: &[u8], i: usize, out: &mut Vec<u8>) -> Option<usize> {
    let end = string_end(b, i)?;
    let digits = &b[i + 1..end - 1];
    if is_plain_json_number(digits) {
        out.extend_from_slice(digits);
    } else {
        let text = std::str::from_utf8(digits).ok()?;
        if text.contains('\\') {
            return None;
        }
        out.extend_from_slice(json_number(text).ok()?.as_bytes());
    }
    Some(end)
}

/// Whether `n` is already a JSON number as it stands: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, the way
/// DynamoDB returns most numbers. Others (exponents, for one) go through [`json_number`].
fn is_plain_json_number(n: &[u8]) -> bool {
    let n = n.strip_prefix(b"-").unwrap_or(n);
    let (int, frac) = match n.iter().position(|&c| c == b'.') {
        Some(dot) => (&n[..dot], Some(&n[dot + 1..])),
        None => (n, None),
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    digits(int) && (int.len() == 1 || int[0] != b'0') && frac.is_none_or(digits)
}

/// The index just past the JSON string whose opening quote is at `b[i]`; eight bytes at a time
/// until a quote or backslash is near.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if *b.get(i)? != b'"' {
        return None;
    }
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Bytes equal to `c` get their high bit set; the lowest flagged byte is always a true match.
    let flag = |w: u64, c: u8| {
        let v = w ^ (ONES * u64::from(c));
        v.wrapping_sub(ONES) & !v & HIGHS
    };
    let mut j = i + 1;
    loop {
        if let Some(chunk) = b.get(j..j + 8) {
            let w = u64::from_le_bytes(chunk.try_into().ok()?);
            let hits = flag(w, b'"') | flag(w, b'\\');
            if hits == 0 {
                j += 8;
                continue;
            }
            j += (hits.trailing_zeros() / 8) as usize;
        }
        match *b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
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
        AttributeValue::L(list) => write_array(buf, list.iter().enumerate(), |buf, (i, v)| {
            write_value(buf, v, &AttrPath::Index(path, i))
        })?,
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
    use crate::codec::encode::test_items::every_type;

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

    /// The wire form of `item`, as DynamoDB sends it.
    fn wire(item: &Item) -> Vec<u8> {
        let mut map = Vec::new();
        crate::codec::encode::ddb_json::write_item_map(item, &mut map).unwrap();
        map
    }

    fn encode_wire(maps: &[&[u8]]) -> Result<String, EncodeError> {
        let items = WireItems::from_maps(maps.iter().copied()).unwrap();
        let mut out = Vec::new();
        JsonLinesEncoder::default().encode_wire(&items, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn wire_items_are_rewritten_to_the_same_json_as_decoded_ones() {
        let mut odd = Item::new();
        odd.insert("half".into(), AttributeValue::N(".5".into()));
        odd.insert(
            "\u{7f}\u{0}é".into(),
            AttributeValue::Ns(vec!["-0".into(), "1e3".into()]),
        );
        let mut items = vec![every_type(), odd];
        items.extend((0..500).map(crate::source::seed::student));
        for item in items {
            let map = wire(&item);
            let mut rewritten = Vec::new();
            assert!(
                transcode_item(&map, &mut rewritten).is_some(),
                "declined {}",
                String::from_utf8_lossy(&map)
            );
            // Numbers compare by their exact text (serde_json's arbitrary precision).
            let got: serde_json::Value = serde_json::from_slice(&rewritten).unwrap();
            let expected: serde_json::Value = serde_json::from_str(&encode(item)).unwrap();
            assert_eq!(got, expected);
        }
        let lines = encode_wire(&[
            &wire(&every_type()),
            &wire(&crate::source::seed::student(3)),
        ])
        .unwrap();
        assert_eq!(lines.lines().count(), 2);
    }

    #[test]
    fn escapes_are_kept_and_containers_nest() {
        let line = encode_wire(&[
            br#"{"a b\"c":{"S":"x \"y\" \u00e9"},"l":{"L":[{"NS":["1","2.5"]},{"BS":[]},{"M":{}}]}}"#,
        ])
        .unwrap();
        assert_eq!(
            line,
            "{\"a b\\\"c\":\"x \\\"y\\\" \\u00e9\",\"l\":[[1,2.5],[],{}]}\n"
        );
    }

    #[test]
    fn what_the_rewrite_does_not_expect_takes_the_general_path() {
        // A bad number is reported with where it sits in the item.
        let err = encode_wire(&[br#"{"a":{"M":{"n":{"N":"12abc"}}}}"#]).unwrap_err();
        assert!(err.to_string().contains("Item.a.M.n"), "{err}");
        // So is a type DynamoDB does not have.
        let err = encode_wire(&[br#"{"x":{"Q":"1"}}"#]).unwrap_err();
        assert!(err.to_string().contains('x'), "{err}");
        // Nesting deeper than DynamoDB allows is left to the decoder.
        let deep = format!(
            "{{\"d\":{}{{\"S\":\"x\"}}{}}}",
            r#"{"L":["#.repeat(50),
            "]}".repeat(50)
        );
        let mut out = Vec::new();
        assert!(transcode_item(deep.as_bytes(), &mut out).is_none());
        let shallow = format!(
            "{{\"d\":{}{{\"S\":\"x\"}}{}}}",
            r#"{"L":["#.repeat(30),
            "]}".repeat(30)
        );
        assert!(transcode_item(shallow.as_bytes(), &mut out).is_some());
        // A NULL that is not `true` is decoded, not rewritten.
        let mut out = Vec::new();
        assert!(transcode_item(br#"{"z":{"NULL":false}}"#, &mut out).is_none());
    }

    #[test]
    fn only_numbers_json_accepts_as_written_skip_the_rewrite() {
        for plain in [
            "0",
            "-0",
            "7",
            "10",
            "3.75",
            "-0.5",
            "0.0",
            "12345678901234567890123456789012345678",
        ] {
            assert!(is_plain_json_number(plain.as_bytes()), "{plain}");
            assert_eq!(json_number(plain).unwrap(), plain);
        }
        for other in [
            "", "-", "007", ".5", "5.", "1e3", "1E-130", "+1", "1.2.3", "--1", "1a",
        ] {
            assert!(!is_plain_json_number(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn json_forbidden_number_spellings_are_normalised() {
        let mut item = Item::new();
        item.insert("n".into(), AttributeValue::N(".5".into()));
        assert_eq!(encode(item), "{\"n\":0.5}\n");
    }
}

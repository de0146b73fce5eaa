//! Reading DynamoDB JSON back into items: what verify and restore stand on, and what the tests use
//! to prove that a backup loses nothing.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde_json::Value;

use crate::codec::number::json_number;
use crate::model::format::Format;
use crate::model::Item;

/// A line that is not a DynamoDB JSON item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a DynamoDB JSON item at `{path}`: {message}")]
pub struct DecodeError {
    /// Where in the line (`Item.address.M.city`).
    pub path: String,
    /// What was found instead of what was expected.
    pub message: String,
}

fn err(path: &str, message: impl Into<String>) -> DecodeError {
    DecodeError {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Decodes one line of a backup file in a line format (`dynamodb-json`, `json`); the tabular
/// formats are read by [`crate::readback::records`].
pub fn decode_line(format: Format, line: &str) -> Result<Item, DecodeError> {
    match format {
        Format::DynamodbJson => decode_dynamodb_json_line(line),
        Format::Json => decode_plain_json_line(line),
        Format::Csv | Format::Parquet => Err(err("", format!("{format} files have no lines"))),
    }
}

/// Decodes one typed value (`{"L":[{"S":"a"}]}`), as the tabular formats store maps and lists.
pub fn decode_typed_value(text: &str, path: &str) -> Result<AttributeValue, DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|e| err(path, e.to_string()))?;
    decode_value(value, path)
}

/// Decodes one `{"Item":{...}}` line.
pub fn decode_dynamodb_json_line(line: &str) -> Result<Item, DecodeError> {
    let value: Value = serde_json::from_str(line).map_err(|e| err("", e.to_string()))?;
    let Value::Object(mut top) = value else {
        return Err(err("", "expected an object"));
    };
    match (top.remove("Item"), top.is_empty()) {
        (Some(Value::Object(map)), true) => decode_map(map, "Item"),
        (Some(_), true) => Err(err("Item", "expected an object of attributes")),
        _ => Err(err("", "expected exactly one key, \"Item\"")),
    }
}

/// Decodes an item's attribute map (`{"id":{"S":"a"}}`), the form DynamoDB sends items in.
pub fn decode_item_map(bytes: &[u8]) -> Result<Item, DecodeError> {
    match serde_json::from_slice(bytes).map_err(|e| err("", e.to_string()))? {
        Value::Object(map) => decode_map(map, "Item"),
        _ => Err(err("", "expected an object of attributes")),
    }
}

fn decode_map(map: serde_json::Map<String, Value>, path: &str) -> Result<Item, DecodeError> {
    let mut item = HashMap::with_capacity(map.len());
    for (name, value) in map {
        let child = format!("{path}.{name}");
        item.insert(name, decode_value(value, &child)?);
    }
    Ok(item)
}

fn decode_value(value: Value, path: &str) -> Result<AttributeValue, DecodeError> {
    let Value::Object(map) = value else {
        return Err(err(path, "expected a {\"TYPE\": value} object"));
    };
    if map.len() != 1 {
        return Err(err(path, "expected exactly one type tag"));
    }
    let Some((tag, inner)) = map.into_iter().next() else {
        return Err(err(path, "expected exactly one type tag"));
    };
    let p = format!("{path}.{tag}");
    Ok(match (tag.as_str(), inner) {
        ("S", Value::String(s)) => AttributeValue::S(s),
        ("N", Value::String(n)) => AttributeValue::N(number(n, &p)?),
        ("B", Value::String(b)) => AttributeValue::B(blob(&b, &p)?),
        ("BOOL", Value::Bool(b)) => AttributeValue::Bool(b),
        ("NULL", Value::Bool(true)) => AttributeValue::Null(true),
        ("SS", Value::Array(a)) => AttributeValue::Ss(strings(a, &p)?),
        ("NS", Value::Array(a)) => AttributeValue::Ns(
            strings(a, &p)?
                .into_iter()
                .map(|n| number(n, &p))
                .collect::<Result<_, _>>()?,
        ),
        ("BS", Value::Array(a)) => AttributeValue::Bs(
            strings(a, &p)?
                .iter()
                .map(|b| blob(b, &p))
                .collect::<Result<_, _>>()?,
        ),
        ("M", Value::Object(m)) => AttributeValue::M(decode_map(m, &p)?),
        ("L", Value::Array(a)) => AttributeValue::L(
            a.into_iter()
                .enumerate()
                .map(|(i, v)| decode_value(v, &format!("{p}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        (tag, v) => return Err(err(path, format!("unexpected `{tag}` with {v}"))),
    })
}

fn number(n: String, path: &str) -> Result<String, DecodeError> {
    json_number(&n).map_err(|e| err(path, e.to_string()))?;
    Ok(n)
}

fn blob(b64: &str, path: &str) -> Result<Blob, DecodeError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Blob::new)
        .map_err(|e| err(path, format!("bad base64: {e}")))
}

fn strings(values: Vec<Value>, path: &str) -> Result<Vec<String>, DecodeError> {
    values
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            other => Err(err(path, format!("expected a string, found {other}"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_lines_name_the_place() {
        let e = decode_dynamodb_json_line(r#"{"Item":{"a":{"N":"x"}}}"#).unwrap_err();
        assert_eq!(e.path, "Item.a.N");
        let e = decode_dynamodb_json_line(r#"{"Item":{"a":{"Q":1}}}"#).unwrap_err();
        assert_eq!(e.path, "Item.a");
        assert!(decode_dynamodb_json_line(r#"{"Other":{}}"#).is_err());
        assert!(decode_dynamodb_json_line("not json").is_err());
    }
}

/// Decodes one plain JSON line (the lossy `json` format) with the documented rules: string → S,
/// number → N (exact digits), true/false → BOOL, null → NULL, array → L, object → M. Sets come
/// back as lists and binaries as base64 strings: that is why this format is lossy.
pub fn decode_plain_json_line(line: &str) -> Result<Item, DecodeError> {
    match serde_json::from_str::<Value>(line).map_err(|e| err("", e.to_string()))? {
        Value::Object(map) => map
            .into_iter()
            .map(|(name, v)| {
                let value = plain_value(v, &name)?;
                Ok((name, value))
            })
            .collect(),
        _ => Err(err("", "expected a JSON object")),
    }
}

fn plain_value(value: Value, path: &str) -> Result<AttributeValue, DecodeError> {
    Ok(match value {
        Value::String(s) => AttributeValue::S(s),
        // serde_json keeps the number's digits (arbitrary_precision); only `E` may become `e`.
        Value::Number(n) => AttributeValue::N(number(n.to_string(), path)?),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Null => AttributeValue::Null(true),
        Value::Array(items) => AttributeValue::L(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| plain_value(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => AttributeValue::M(
            map.into_iter()
                .map(|(k, v)| {
                    let child = format!("{path}.{k}");
                    Ok((k, plain_value(v, &child)?))
                })
                .collect::<Result<_, DecodeError>>()?,
        ),
    })
}

#[cfg(test)]
mod plain_tests {
    use super::*;

    #[test]
    fn plain_json_follows_the_documented_rules_and_keeps_every_digit() {
        let item = decode_plain_json_line(
            r#"{"id":"a","big":12345678901234567890123456789012345678,"tiny":1E-130,"ok":true,"none":null,"l":[1,"x"],"m":{"k":{}}}"#,
        )
        .unwrap();
        assert_eq!(item["id"], AttributeValue::S("a".into()));
        assert_eq!(
            item["big"],
            AttributeValue::N("12345678901234567890123456789012345678".into())
        );
        assert_eq!(item["tiny"], AttributeValue::N("1e-130".into()));
        assert_eq!(item["ok"], AttributeValue::Bool(true));
        assert_eq!(item["none"], AttributeValue::Null(true));
        assert_eq!(
            item["l"],
            AttributeValue::L(vec![
                AttributeValue::N("1".into()),
                AttributeValue::S("x".into())
            ])
        );
        assert!(
            matches!(&item["m"], AttributeValue::M(m) if matches!(&m["k"], AttributeValue::M(inner) if inner.is_empty()))
        );
        assert!(decode_plain_json_line("[1]").is_err());
    }
}

//! Reading DynamoDB JSON back into items: what verify and restore stand on, and what the tests use
//! to prove that a backup loses nothing.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde_json::Value;

use crate::encode::{json_number, Item};

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

//! Items for the tests: every attribute type and its corners, large items, and helpers to compare.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use ddb_backup::Item;

/// Items that cover every AttributeValue type and its corners: 38-digit numbers, extreme
/// exponents, empty strings and binaries, unicode, awkward attribute names, all three set types,
/// nested maps and lists, and items whose attributes differ from each other.
pub fn every_type_items(count: usize) -> Vec<Item> {
    (0..count)
        .map(|i| {
            let mut item: Item = HashMap::new();
            item.insert("id".into(), s(&format!("item-{i:04}")));
            match i % 4 {
                0 => {
                    item.insert("big".into(), n("12345678901234567890123456789012345678"));
                    item.insert(
                        "negbig".into(),
                        n("-99999999999999999999999999999999999999"),
                    );
                    item.insert("tiny".into(), n("1E-130"));
                    item.insert(
                        "huge".into(),
                        n("9.9999999999999999999999999999999999999E+125"),
                    );
                    item.insert("frac".into(), n("0.000000000000000000000000000000000001"));
                    item.insert("empty".into(), s(""));
                    item.insert("unicode".into(), s("Hà Nội ✓ 😀 \u{0} \"quoted\" \\ \n\t"));
                }
                1 => {
                    item.insert(
                        "bin".into(),
                        AttributeValue::B(Blob::new(vec![0, 1, 2, 255, 254, 10, 13])),
                    );
                    item.insert("emptybin".into(), AttributeValue::B(Blob::new(Vec::new())));
                    item.insert(
                        "ss".into(),
                        AttributeValue::Ss(vec!["a".into(), "b,c".into(), "\"q\"".into()]),
                    );
                    item.insert(
                        "ns".into(),
                        AttributeValue::Ns(vec!["1".into(), "-2.5".into(), "1E+100".into()]),
                    );
                    item.insert(
                        "bs".into(),
                        AttributeValue::Bs(vec![Blob::new(vec![1]), Blob::new(vec![2, 3])]),
                    );
                    item.insert("flag".into(), AttributeValue::Bool(false));
                    item.insert("nothing".into(), AttributeValue::Null(true));
                }
                2 => {
                    let mut inner = HashMap::new();
                    inner.insert(
                        "deep".into(),
                        AttributeValue::L(vec![n("1"), s(""), AttributeValue::Null(true)]),
                    );
                    inner.insert("emptymap".into(), AttributeValue::M(HashMap::new()));
                    let mut address = HashMap::new();
                    address.insert("city".into(), s("São Paulo"));
                    address.insert("zip".into(), n("1000"));
                    address.insert("inner".into(), AttributeValue::M(inner));
                    item.insert("address".into(), AttributeValue::M(address));
                    item.insert(
                        "list".into(),
                        AttributeValue::L(vec![
                            s("x"),
                            n("3.14159265358979323846264338327950288"),
                            AttributeValue::Bool(true),
                            AttributeValue::L(vec![]),
                            AttributeValue::Ss(vec!["only".into()]),
                        ]),
                    );
                }
                _ => {
                    item.insert("comma,name".into(), s("v"));
                    item.insert("quote\"name".into(), s("v"));
                    item.insert("new\nline".into(), s("v"));
                    item.insert("spaces in name".into(), n("-0"));
                    item.insert("gpa".into(), n("3.75"));
                    item.insert("enrolled".into(), AttributeValue::Bool(true));
                }
            }
            item
        })
        .collect()
}

/// Items of about `size` bytes each (incompressible text), to make multi-megabyte outputs
/// from few items, since the emulator scans slowly.
pub fn large_items(count: usize, size: usize) -> Vec<Item> {
    (0..count)
        .map(|i| {
            let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let text: String = (0..size)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (b'!' + (state % 90) as u8) as char
                })
                .collect();
            let mut item: Item = HashMap::new();
            item.insert("id".into(), s(&format!("big-{i:04}")));
            item.insert("payload".into(), AttributeValue::S(text));
            item
        })
        .collect()
}

/// Item ids, sorted.
pub fn ids(items: &[Item]) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .map(|i| i["id"].as_s().expect("id is S").clone())
        .collect();
    ids.sort();
    ids
}

/// Items sorted by id, for comparing item sets.
pub fn sorted(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by(|a, b| a["id"].as_s().ok().cmp(&b["id"].as_s().ok()));
    items
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

//! Columns for the tabular formats (CSV and Parquet). DynamoDB tables have no schema, so each file
//! discovers its own from a sample of its first items: the key attributes first, then every other
//! attribute of the sample in byte order of its name, each with the DynamoDB type most of the
//! sample gave it. A value that does not fit its column (an attribute the sample never saw, a
//! different type, or a number the column's storage cannot hold exactly) goes into the `_extra`
//! column, which holds the item's leftover attributes as a DynamoDB JSON attribute map. So every
//! attribute of every item is written exactly once, and a reader that knows the column types
//! (Parquet key-value metadata, the manifest) rebuilds the items exactly.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

pub use crate::model::column::{Column, DynamoType, NumberStorage};
use crate::model::Item;

/// Name of the column that carries attributes outside the schema.
pub const EXTRA_COLUMN: &str = "_extra";

/// At most this many columns besides `_extra`; a sparser table puts the rest into `_extra`.
pub const MAX_COLUMNS: usize = 1000;

/// Items sampled to discover a file's columns (about one Scan page of small items).
pub const SAMPLE_ITEMS: usize = 2000;

/// Which file format the columns are for: their rules for what fits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tabular {
    /// CSV cannot tell an empty field from a missing one, so empty strings and binaries go to
    /// `_extra`, and numbers stay text.
    Csv,
    /// Parquet stores numbers as Int64 or Decimal128 when the sample allows.
    Parquet,
}

/// The columns of one file, with the lookup from attribute name to column.
#[derive(Debug, Clone)]
pub struct Columns {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    tabular: Tabular,
}

impl Columns {
    /// Discovers columns from `sample`: `keys` first (in key schema order), then the other
    /// attribute names in byte order, each with the type most of the sample gave it.
    pub fn discover(keys: &[String], sample: &[Item], tabular: Tabular) -> Columns {
        let mut types: HashMap<&str, HashMap<DynamoType, usize>> = HashMap::new();
        for item in sample {
            for (name, value) in item {
                if let Some(ty) = DynamoType::of(value) {
                    *types.entry(name).or_default().entry(ty).or_default() += 1;
                }
            }
        }
        let mut names: Vec<&str> = types
            .keys()
            .copied()
            .filter(|n| *n != EXTRA_COLUMN && !keys.iter().any(|k| k == n))
            .collect();
        if names.len() > MAX_COLUMNS {
            // Keep the most frequent attributes; the rare ones go to `_extra`.
            names.sort_by_key(|n| std::cmp::Reverse(types[n].values().sum::<usize>()));
            names.truncate(MAX_COLUMNS);
        }
        names.sort_unstable();
        let ordered = keys
            .iter()
            .map(String::as_str)
            .filter(|k| types.contains_key(k))
            .chain(names);
        let mut columns = Vec::new();
        for name in ordered {
            let Some((&ty, _)) = types[name]
                .iter()
                .max_by_key(|(ty, count)| (**count, std::cmp::Reverse(**ty)))
            else {
                continue;
            };
            let number = (ty == DynamoType::N && tabular == Tabular::Parquet).then(|| {
                number_storage(sample.iter().filter_map(|item| match item.get(name) {
                    Some(AttributeValue::N(n)) => Some(n.as_str()),
                    _ => None,
                }))
            });
            columns.push(Column {
                name: name.to_string(),
                dynamodb_type: ty,
                number,
            });
        }
        Columns::new(columns, tabular)
    }

    /// Columns read back from a file's metadata or a manifest.
    pub fn new(columns: Vec<Column>, tabular: Tabular) -> Columns {
        let index = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        Columns {
            columns,
            index,
            tabular,
        }
    }

    /// The columns, without `_extra`.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Sorts an item's attributes into `row` (one slot per column) and `extra` (the rest).
    pub fn place<'a>(
        &self,
        item: &'a Item,
        row: &mut Vec<Option<&'a AttributeValue>>,
        extra: &mut Vec<(&'a String, &'a AttributeValue)>,
    ) {
        row.clear();
        row.resize(self.columns.len(), None);
        extra.clear();
        for (name, value) in item {
            match self.index.get(name.as_str()) {
                Some(&i) if self.fits(&self.columns[i], value) => row[i] = Some(value),
                _ => extra.push((name, value)),
            }
        }
        // A stable order keeps `_extra` deterministic for a given item.
        extra.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }

    fn fits(&self, column: &Column, value: &AttributeValue) -> bool {
        if DynamoType::of(value) != Some(column.dynamodb_type) {
            return false;
        }
        match (value, self.tabular) {
            (AttributeValue::S(s), Tabular::Csv) => !s.is_empty(),
            (AttributeValue::B(b), Tabular::Csv) => !b.as_ref().is_empty(),
            (AttributeValue::N(n), Tabular::Parquet) => match column.number {
                Some(NumberStorage::Int64) => parse_int64(n).is_some(),
                Some(NumberStorage::Decimal { scale }) => parse_decimal(n, scale).is_some(),
                _ => true,
            },
            _ => true,
        }
    }
}

/// Int64 when every sampled number is a canonical i64, Decimal128(38, s) when every one is a
/// canonical decimal that fits, otherwise text.
fn number_storage<'a>(values: impl Iterator<Item = &'a str>) -> NumberStorage {
    let mut all_int = true;
    let mut scale = 0usize;
    let mut int_digits = 0usize;
    for n in values {
        match canonical_decimal(n) {
            Some((int, frac)) => {
                all_int &= frac.is_empty() && parse_int64(n).is_some();
                scale = scale.max(frac.len());
                int_digits = int_digits.max(int.trim_start_matches('0').len());
            }
            None => return NumberStorage::Text,
        }
    }
    if all_int {
        NumberStorage::Int64
    } else if scale + int_digits <= 38 {
        NumberStorage::Decimal { scale: scale as i8 }
    } else {
        NumberStorage::Text
    }
}

/// Splits a canonically written decimal (`-?(0|[1-9]\d*)(\.\d*[1-9])?`, not `-0`) into its integer
/// and fraction digits. Anything else (exponents, `+`, leading or trailing zeros) is `None`, so
/// that what a reader prints back is the same text.
fn canonical_decimal(n: &str) -> Option<(&str, &str)> {
    let unsigned = n.strip_prefix('-').unwrap_or(n);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    if unsigned.contains('.') && (!digits(frac) || frac.ends_with('0')) {
        return None;
    }
    if n.starts_with('-') && int == "0" && frac.is_empty() {
        return None;
    }
    Some((int, frac))
}

/// The value of a canonically written integer that fits in i64.
pub(crate) fn parse_int64(n: &str) -> Option<i64> {
    let v: i64 = n.parse().ok()?;
    (v.to_string() == n).then_some(v)
}

/// The unscaled Decimal128 value of a canonically written decimal with at most `scale` fraction
/// digits and at most 38 digits in all.
pub(crate) fn parse_decimal(n: &str, scale: i8) -> Option<i128> {
    let (int, frac) = canonical_decimal(n)?;
    let scale = usize::try_from(scale).ok()?;
    if frac.len() > scale || int.trim_start_matches('0').len() + scale > 38 {
        return None;
    }
    let mut digits = String::with_capacity(int.len() + scale + 1);
    if n.starts_with('-') {
        digits.push('-');
    }
    digits.push_str(int);
    digits.push_str(frac);
    digits.extend(std::iter::repeat_n('0', scale - frac.len()));
    digits.parse().ok()
}

/// The canonical text of an unscaled Decimal128 value: what [`parse_decimal`] read.
pub(crate) fn format_decimal(unscaled: i128, scale: i8) -> String {
    let scale = usize::try_from(scale).unwrap_or(0);
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode::test_items::every_type;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.to_string())
    }
    fn n(v: &str) -> AttributeValue {
        AttributeValue::N(v.to_string())
    }

    #[test]
    fn keys_come_first_then_names_in_byte_order_with_the_majority_type() {
        let mut sample: Vec<Item> = (0..5)
            .map(|i| {
                Item::from([
                    ("zeta".to_string(), n(&i.to_string())),
                    ("id".to_string(), s(&format!("k{i}"))),
                    ("Alpha".to_string(), s("x")),
                    ("mixed".to_string(), if i < 3 { s("a") } else { n("1") }),
                ])
            })
            .collect();
        sample[0].insert("_extra".to_string(), s("mine"));
        let columns = Columns::discover(&["id".to_string()], &sample, Tabular::Parquet);
        let names: Vec<_> = columns.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "Alpha", "mixed", "zeta"]);
        assert_eq!(columns.columns()[2].dynamodb_type, DynamoType::S);
        assert_eq!(columns.columns()[3].number, Some(NumberStorage::Int64));
        // The odd ones out go to `_extra`, including an attribute that is itself named `_extra`.
        let (mut row, mut extra) = (Vec::new(), Vec::new());
        columns.place(&sample[0], &mut row, &mut extra);
        assert_eq!(extra.len(), 1);
        columns.place(&sample[4], &mut row, &mut extra);
        assert_eq!(extra, [(&"mixed".to_string(), &n("1"))]);
        assert!(row[2].is_none());
    }

    #[test]
    fn number_storage_is_chosen_so_that_every_value_reads_back_as_the_same_text() {
        let pick = |v: &[&str]| number_storage(v.iter().copied());
        assert_eq!(
            pick(&["1", "-20", "9223372036854775807"]),
            NumberStorage::Int64
        );
        assert_eq!(
            pick(&["1", "9223372036854775808"]),
            NumberStorage::Decimal { scale: 0 }
        );
        assert_eq!(
            pick(&["3.75", "-0.5", "100"]),
            NumberStorage::Decimal { scale: 2 }
        );
        assert_eq!(
            pick(&["12345678901234567890123456789012345678"]),
            NumberStorage::Decimal { scale: 0 }
        );
        assert_eq!(
            pick(&["1.5", "12345678901234567890123456789012345678"]),
            NumberStorage::Text
        );
        for odd in ["1E+2", "-1E-130", "+1", "007", "3.50", "-0", ".5", "5."] {
            assert_eq!(pick(&["1", odd]), NumberStorage::Text, "{odd}");
        }
        for (text, scale) in [
            ("3.75", 2),
            ("-0.5", 3),
            ("100", 2),
            ("0", 1),
            ("-12.345", 5),
        ] {
            let v = parse_decimal(text, scale).unwrap();
            assert_eq!(format_decimal(v, scale), text);
        }
        assert_eq!(parse_decimal("1.234", 2), None, "too many fraction digits");
        assert_eq!(parse_int64("-0"), None);
        assert_eq!(parse_int64("1"), Some(1));
    }

    #[test]
    fn csv_sends_empty_strings_and_binaries_to_extra() {
        let item = every_type();
        let columns = Columns::discover(
            &["id".to_string()],
            std::slice::from_ref(&item),
            Tabular::Csv,
        );
        let (mut row, mut extra) = (Vec::new(), Vec::new());
        columns.place(&item, &mut row, &mut extra);
        let names: Vec<&str> = extra.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["empty", "emptybin"]);
        assert_eq!(row.iter().flatten().count() + extra.len(), item.len());
    }
}

//! Independent readers: DuckDB and pyarrow (from PyPI, installed by `scripts/test.sh` into
//! `.venv-readers`) read our Parquet, CSV and JSON-lines files exactly as stored, compressed as
//! they are, and must return the same row counts and the same values as the items backed up.
//! The files are written by the real pipeline into a local directory; the readers' rows are
//! turned back into items with the column types the backup recorded and compared exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{directory_backup, every_type_items, sorted};
use ddb_backup::codec::decode::decode_dynamodb_json_line;
use ddb_backup::readback::records::item_from_cells;
use ddb_backup::{Format, Item, Manifest};
use serde_json::{json, Value};

/// The readers' Python, or a panic that says how to get it: this test never skips.
fn readers_python() -> PathBuf {
    let python = std::env::var_os("DDB_BACKUP_READERS_PYTHON").map(PathBuf::from);
    match python {
        Some(p) if p.exists() => p,
        _ => panic!(
            "DDB_BACKUP_READERS_PYTHON is not set to a Python with duckdb and pyarrow: run the \
             suite with scripts/test.sh, or `eval \"$(scripts/readers.sh)\"` first"
        ),
    }
}

/// Items of every type, plus enough of them that the tabular files sample only the first ones
/// and items beyond the sample carry attributes it never saw.
fn items() -> Vec<Item> {
    let mut items = every_type_items(2400);
    for (i, item) in items.iter_mut().enumerate() {
        // A plain integer in every item: a Parquet INT64 column.
        item.insert(
            "count".to_string(),
            aws_sdk_dynamodb::types::AttributeValue::N(i.to_string()),
        );
    }
    for (i, item) in items.iter_mut().enumerate().skip(2100) {
        item.insert(
            "late, \"new\"\nattribute".to_string(),
            aws_sdk_dynamodb::types::AttributeValue::N(format!("{i}.5")),
        );
    }
    items
}

/// Runs the Python readers over every file of every manifest; one result per file, in order.
fn read_with_python(dir: &Path, manifests: &[Manifest]) -> Vec<Value> {
    let specs: Vec<Value> = manifests
        .iter()
        .flat_map(|m| {
            m.files.iter().map(move |f| {
                json!({
                    "format": m.format.name(),
                    "compression": m.compression.name(),
                    "path": dir.join(&f.key),
                    "columns": f.columns,
                })
            })
        })
        .collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/readers/read_backup.py");
    let mut child = Command::new(readers_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the readers");
    serde_json::to_writer(child.stdin.take().expect("stdin"), &specs).expect("send specs");
    let out = child.wait_with_output().expect("readers finish");
    assert!(
        out.status.success(),
        "the readers failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("readers print JSON")
}

/// A reader's row of a CSV or Parquet file back into an item, through the recorded columns. Lists
/// (Parquet sets) become JSON array text and booleans `true`/`false`: the CSV cell syntax.
fn tabular_item(row: &Value, columns: &[ddb_backup::codec::encode::Column]) -> Item {
    let cell = |name: &str| -> Option<String> {
        match row.get(name)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            other => Some(other.to_string()),
        }
    };
    let cells: Vec<Option<String>> = columns.iter().map(|c| cell(&c.name)).collect();
    item_from_cells(columns, &cells, cell("_extra").as_deref())
        .unwrap_or_else(|e| panic!("row {row}: {e}"))
}

/// The types pyarrow finds in a Parquet file are the ones the manifest's columns promise: numbers
/// as INT64 or DECIMAL(38, s) (or exact text), never a float; NULL as BOOLEAN; sets as lists.
fn check_parquet_schema(schema: &Value, columns: &[ddb_backup::codec::encode::Column], key: &str) {
    use ddb_backup::model::column::{DynamoType, NumberStorage};
    let schema = schema.as_array().expect("a schema");
    assert_eq!(schema.len(), columns.len() + 1, "{key}: {schema:?}");
    for (column, found) in columns.iter().zip(schema) {
        assert_eq!(found["name"], column.name.as_str(), "{key}");
        let (arrow, physical, logical) = match (column.dynamodb_type, column.number) {
            (DynamoType::N, Some(NumberStorage::Int64)) => ("int64".to_string(), "INT64", "None"),
            (DynamoType::N, Some(NumberStorage::Decimal { scale })) => (
                format!("decimal128(38, {scale})"),
                "FIXED_LEN_BYTE_ARRAY",
                "Decimal",
            ),
            (DynamoType::N | DynamoType::S | DynamoType::M | DynamoType::L, _) => {
                ("string".to_string(), "BYTE_ARRAY", "String")
            }
            (DynamoType::B, _) => ("binary".to_string(), "BYTE_ARRAY", "None"),
            (DynamoType::Bool | DynamoType::Null, _) => ("bool".to_string(), "BOOLEAN", "None"),
            (DynamoType::SS | DynamoType::NS, _) => {
                ("list<item: string>".to_string(), "BYTE_ARRAY", "String")
            }
            (DynamoType::BS, _) => ("list<item: binary>".to_string(), "BYTE_ARRAY", "None"),
        };
        let context = format!(
            "{key}, column {:?} ({:?})",
            column.name, column.dynamodb_type
        );
        assert_eq!(found["arrow"], arrow.as_str(), "{context}: {found}");
        assert_eq!(found["physical"], physical, "{context}: {found}");
        assert!(
            found["logical"].as_str().unwrap().starts_with(logical),
            "{context}: {found}"
        );
    }
    let extra = &schema[columns.len()];
    assert_eq!(
        (&extra["name"], &extra["arrow"]),
        (&json!("_extra"), &json!("string"))
    );
    let text = serde_json::to_string(schema).unwrap().to_lowercase();
    assert!(
        !text.contains("float") && !text.contains("double"),
        "{key}: a float column: {text}"
    );
}

/// The Parquet files of a backup hold every kind of column the schema check is about, so the
/// check cannot pass by having nothing to check.
fn assert_every_parquet_kind(columns: &[&ddb_backup::codec::encode::Column]) {
    use ddb_backup::model::column::{DynamoType, NumberStorage};
    let kinds: Vec<_> = columns
        .iter()
        .map(|c| (c.dynamodb_type, c.number))
        .collect();
    for wanted in [
        (DynamoType::N, Some(NumberStorage::Int64)),
        (DynamoType::Null, None),
        (DynamoType::Bool, None),
        (DynamoType::B, None),
        (DynamoType::SS, None),
        (DynamoType::NS, None),
        (DynamoType::BS, None),
    ] {
        assert!(kinds.contains(&wanted), "no {wanted:?} column in {kinds:?}");
    }
    assert!(
        kinds
            .iter()
            .any(|(_, n)| matches!(n, Some(NumberStorage::Decimal { .. }))),
        "no decimal column in {kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_pyarrow_read_our_files_as_stored_and_get_the_same_items() {
    readers_python();
    let dir = tempfile::tempdir().expect("temp dir");
    let items = items();
    let cases = [
        r#","format":"parquet""#,
        r#","format":"parquet","parquet_compression":"snappy""#,
        r#","format":"parquet","parquet_compression":"gzip""#,
        r#","format":"parquet","parquet_compression":"none""#,
        r#","format":"csv","compression":"gzip""#,
        r#","format":"csv","compression":"zstd""#,
        r#","format":"csv","compression":"none""#,
        r#","format":"dynamodb-json","compression":"gzip""#,
        r#","format":"dynamodb-json","compression":"zstd""#,
        r#","format":"json","compression":"gzip""#,
    ];
    let mut manifests = Vec::new();
    for fields in cases {
        manifests.push(directory_backup(dir.path(), &items, fields).await);
    }
    let results = read_with_python(dir.path(), &manifests);
    let mut results = results.iter();
    for (manifest, fields) in manifests.iter().zip(cases) {
        if manifest.format == Format::Parquet {
            let columns: Vec<_> = manifest
                .files
                .iter()
                .flat_map(|f| f.columns.iter().flatten())
                .collect();
            assert_every_parquet_kind(&columns);
        }
        let mut by_reader: Vec<(&str, Vec<Item>)> = vec![("duckdb", vec![]), ("pyarrow", vec![])];
        let mut pyarrow_cannot_read_plain_json = false;
        let mut ids: Vec<(&str, Vec<String>)> = vec![("duckdb", vec![]), ("pyarrow", vec![])];
        for file in &manifest.files {
            let result = results.next().expect("a result per file");
            if manifest.format == Format::Parquet {
                let columns = file.columns.as_deref().expect("columns recorded");
                check_parquet_schema(&result["schema"], columns, &file.key);
            }
            for ((reader, got), (_, got_ids)) in by_reader.iter_mut().zip(ids.iter_mut()) {
                if let Some(error) = result[*reader]["error"].as_str() {
                    // Only pyarrow, only plain JSON, only for lists that mix types.
                    assert!(
                        *reader == "pyarrow"
                            && manifest.format == Format::Json
                            && error.contains("changed from"),
                        "{reader} {fields}: {error}"
                    );
                    pyarrow_cannot_read_plain_json = true;
                    continue;
                }
                let rows = result[*reader].as_array().expect("rows");
                assert_eq!(
                    rows.len() as u64,
                    file.item_count,
                    "{reader} {fields}: row count of {}",
                    file.key
                );
                for row in rows {
                    match manifest.format {
                        Format::Csv | Format::Parquet => {
                            let columns = file.columns.as_deref().expect("columns recorded");
                            got.push(tabular_item(row, columns));
                        }
                        Format::DynamodbJson => got.push(
                            decode_dynamodb_json_line(&row.to_string())
                                .unwrap_or_else(|e| panic!("{reader} {fields}: {row}: {e}")),
                        ),
                        Format::Json => {
                            got_ids.push(row["id"].as_str().expect("id").to_string());
                        }
                    }
                }
            }
        }
        for ((reader, got), (_, got_ids)) in by_reader.into_iter().zip(ids) {
            if manifest.format == Format::Json {
                // Plain JSON numbers of 38 digits become doubles in both readers (their choice,
                // not our output's): rows and ids are what can be compared exactly.
                if reader == "pyarrow" && pyarrow_cannot_read_plain_json {
                    continue;
                }
                let mut got_ids = got_ids;
                got_ids.sort();
                assert_eq!(got_ids, crate::common::ids(&items), "{reader} {fields}");
            } else {
                assert_eq!(got.len(), items.len(), "{reader} {fields}");
                let (got, want) = (sorted(got), sorted(items.clone()));
                if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
                    let differing: Vec<_> = w
                        .iter()
                        .filter(|(k, v)| g.get(*k) != Some(v))
                        .map(|(k, v)| format!("{k}: backed up {v:?}, read {:?}", g.get(k)))
                        .chain(
                            g.keys()
                                .filter(|k| !w.contains_key(*k))
                                .map(|k| format!("{k}: invented")),
                        )
                        .collect();
                    panic!(
                        "{reader} {fields}: item {:?} differs: {differing:#?}",
                        w.get("id")
                    );
                }
            }
        }
    }
}

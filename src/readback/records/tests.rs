use super::*;
use crate::codec::encode::columns::SAMPLE_ITEMS;
use crate::codec::encode::test_items::every_type;
use crate::model::format::ParquetCompression;
use crate::store::{MemoryStore, ObjectStore};
use crate::test_support::{memory_backup, sorted_by_id};

/// Every type, plus what a sample cannot foresee: types that change (`gpa` as S), attributes
/// that come and go, attributes first seen after the sample, numbers a column cannot hold
/// (`count` beyond i64, `ratio` with more decimals, `tiny` with an exponent), and a key that
/// is not the first attribute by name.
fn varied_items(n: usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let mut item = every_type();
            item.insert("id".into(), AttributeValue::S(format!("id-{i:05}")));
            item.insert("count".into(), AttributeValue::N(i.to_string()));
            item.insert("ratio".into(), AttributeValue::N(format!("{}.25", i % 7)));
            match i % 5 {
                1 => {
                    item.insert("gpa".into(), AttributeValue::S("n/a".into()));
                }
                2 => {
                    item.remove("address");
                    item.remove("tags");
                    item.remove("empty");
                }
                3 => {
                    item.insert("notes".into(), AttributeValue::Null(true));
                }
                _ => {}
            }
            if i == n - 1 {
                item.insert(
                    "count".into(),
                    AttributeValue::N("123456789012345678901234567890".into()),
                );
                item.insert("ratio".into(), AttributeValue::N("0.125".into()));
                item.insert("gpa".into(), AttributeValue::N("3.5E+2".into()));
            }
            if i > SAMPLE_ITEMS {
                item.insert(
                    "late, \"new\"\nattribute".into(),
                    AttributeValue::Ss(vec!["x".into()]),
                );
            }
            item
        })
        .collect()
}

async fn round_trip(items: &[Item], extra: &str) -> (crate::Manifest, Vec<Item>) {
    let store = MemoryStore::new();
    let manifest = memory_backup(&store, items.to_vec(), extra).await;
    let mut back = Vec::new();
    for file in &manifest.files {
        let bytes = store.get(&file.key).await.unwrap();
        let read = read_items(
            &bytes[..],
            manifest.format,
            manifest.compression,
            file.columns.as_deref(),
            |item| {
                back.push(item);
                true
            },
        )
        .unwrap_or_else(|e| panic!("{extra}: {}: {e}", file.key));
        assert_eq!(read.items, file.item_count);
        assert_eq!(read.plain_bytes, file.uncompressed_bytes, "{extra}");
    }
    (manifest, back)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_parquet_give_back_every_item_exactly() {
    let items = varied_items(SAMPLE_ITEMS + 300);
    let mut cases: Vec<String> = Compression::ALL
        .iter()
        .map(|c| format!(r#","format":"csv","compression":"{c}","segments":1"#))
        .collect();
    cases.extend(
        ParquetCompression::ALL
            .iter()
            .map(|c| format!(r#","format":"parquet","parquet_compression":"{c}","segments":1"#)),
    );
    for extra in cases {
        let (manifest, back) = round_trip(&items, &extra).await;
        assert_eq!(back.len(), items.len(), "{extra}");
        assert_eq!(sorted_by_id(back), sorted_by_id(items.clone()), "{extra}");
        let columns = manifest.files[0]
            .columns
            .as_ref()
            .expect("columns recorded");
        assert_eq!(columns[0].name, "id", "the key comes first");
        assert!(
            !columns.iter().any(|c| c.name.starts_with("late")),
            "an attribute first seen after the sample is carried by `_extra`"
        );
        if manifest.format == Format::Parquet {
            let find = |name: &str| columns.iter().find(|c| c.name == name).unwrap();
            assert_eq!(find("count").number, Some(NumberStorage::Int64));
            assert_eq!(
                find("ratio").number,
                Some(NumberStorage::Decimal { scale: 2 })
            );
            assert_eq!(
                find("big").number,
                Some(NumberStorage::Decimal { scale: 0 })
            );
            assert_eq!(find("tiny").number, Some(NumberStorage::Text));
            assert_eq!(find("gpa").dynamodb_type, DynamoType::N);
        }
    }
}

#[tokio::test]
async fn a_small_file_takes_its_columns_from_all_it_has() {
    let items = varied_items(7);
    for format in ["csv", "parquet"] {
        let (_, back) = round_trip(&items, &format!(r#","format":"{format}","segments":1"#)).await;
        assert_eq!(sorted_by_id(back), sorted_by_id(items.clone()), "{format}");
    }
}

#[tokio::test]
async fn a_csv_file_without_its_columns_or_with_other_columns_is_refused() {
    let store = MemoryStore::new();
    let manifest = memory_backup(&store, varied_items(5), r#","format":"csv""#).await;
    let file = &manifest.files[0];
    let bytes = store.get(&file.key).await.unwrap();
    let err = read_all(&bytes[..], Format::Csv, manifest.compression, None).unwrap_err();
    assert!(err.message.contains("no columns"), "{err}");
    let mut other = file.columns.clone().unwrap();
    other.swap(1, 2);
    let err = read_all(&bytes[..], Format::Csv, manifest.compression, Some(&other)).unwrap_err();
    assert!(err.message.contains("header row"), "{err}");
}

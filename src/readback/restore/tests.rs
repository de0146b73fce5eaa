use super::*;
use crate::model::table::TableInfo;
use crate::readback::table_writer::MemoryWriter;
use crate::store::MemoryStore;
use crate::test_support::{memory_backup, numbered_items as items, sorted_by_id as sorted};

async fn backup(store: &MemoryStore, items: Vec<Item>, format: &str) -> Manifest {
    memory_backup(
        store,
        items,
        &format!(r#","format":"{format}","segments":3"#),
    )
    .await
}

fn options(table: &str, create: bool) -> RestoreOptions {
    RestoreOptions {
        table: TableName::new(table).unwrap(),
        create_table: create,
        write_budget: None,
        concurrency: 4,
        allow_lossy: false,
        overlay: None,
    }
}

async fn run(
    store: &MemoryStore,
    manifest: &Manifest,
    writer: &MemoryWriter,
    options: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    restore(
        Arc::new(store.clone()),
        manifest,
        str::to_string,
        Arc::new(writer.clone()),
        options,
        Arc::new(RestoreProgress::default()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_comes_back_exactly_even_when_throttled_and_twice() {
    let store = MemoryStore::new();
    let original = items(300);
    let manifest = backup(&store, original.clone(), "dynamodb-json").await;
    let writer = MemoryWriter::throttling(3);
    let report = run(&store, &manifest, &writer, &options("copy", true))
        .await
        .unwrap();
    assert_eq!(report.items, 300);
    assert!(
        report.retries > 0,
        "the throttling writer forced resubmissions"
    );
    assert_eq!(sorted(writer.items("copy")), sorted(original.clone()));
    // Idempotent: a second run into the same table leaves the same items.
    run(&store, &manifest, &writer, &options("copy", false))
        .await
        .unwrap();
    assert_eq!(sorted(writer.items("copy")), sorted(original));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_sources_are_refused_unless_allowed() {
    let store = MemoryStore::new();
    let manifest = backup(&store, items(30), "json").await;
    let writer = MemoryWriter::new();
    let err = run(&store, &manifest, &writer, &options("copy", true))
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::Lossy { .. }), "{err}");
    assert!(err.to_string().contains("--allow-lossy"), "{err}");
    let allowed = RestoreOptions {
        allow_lossy: true,
        ..options("copy", true)
    };
    run(&store, &manifest, &writer, &allowed).await.unwrap();
    let restored = sorted(writer.items("copy"));
    assert_eq!(restored.len(), 30);
    // The documented rules: sets come back as lists, binary as its base64 text, digits exact.
    assert!(matches!(&restored[0]["tags"], AttributeValue::L(l) if l.len() == 2));
    assert_eq!(restored[0]["bin"], AttributeValue::S("AP8KDSI=".into()));
    assert_eq!(
        restored[0]["big"],
        AttributeValue::N("12345678901234567890123456789012345678".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_table_mistakes_are_explained() {
    let store = MemoryStore::new();
    let manifest = backup(&store, items(5), "dynamodb-json").await;
    let writer = MemoryWriter::new();
    let err = run(&store, &manifest, &writer, &options("absent", false))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--create-table"), "{err}");
    run(&store, &manifest, &writer, &options("copy", true))
        .await
        .unwrap();
    let err = run(&store, &manifest, &writer, &options("copy", true))
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::TableExists(_)), "{err}");
    let other_key = TableSpec {
        key_schema: vec![crate::source::KeyElement {
            attribute_name: "pk".into(),
            key_type: "HASH".into(),
        }],
        attribute_definitions: vec![crate::source::AttributeDefinition {
            attribute_name: "pk".into(),
            attribute_type: "N".into(),
        }],
        global_secondary_indexes: vec![],
        local_secondary_indexes: vec![],
    };
    writer.create_table("other", &other_key).await.unwrap();
    let err = run(&store, &manifest, &writer, &options("other", false))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("HASH id (S)") && err.to_string().contains("HASH pk (N)"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_write_budget_holds_the_average_rate() {
    let budget = WriteBudget::new(50.0);
    let start = tokio::time::Instant::now();
    for _ in 0..10 {
        budget.acquire(30.0).await;
    }
    // 300 units at 50/s with a 50-unit burst: at least 5 s.
    let elapsed = start.elapsed().as_secs_f64();
    assert!((5.0..6.5).contains(&elapsed), "{elapsed}");
}

#[test]
fn item_sizes_follow_dynamodb_rules() {
    let mut item = Item::new();
    item.insert("id".into(), AttributeValue::S("abc".into()));
    item.insert("n".into(), AttributeValue::N("12345".into()));
    assert_eq!(item_size(&item), 2 + 3 + 1 + 4);
    assert_eq!(write_units(&item), 1);
    item.insert("blob".into(), AttributeValue::S("x".repeat(3000)));
    assert_eq!(write_units(&item), 3);
}

/// A table that refuses the first write, as DynamoDB refuses an item over 400 KB, and is slow to
/// take the others, so the other writers are mid-request when the first one fails.
struct RefusingWriter {
    inner: MemoryWriter,
    calls: AtomicU64,
}

#[async_trait::async_trait]
impl TableWriter for RefusingWriter {
    async fn describe(&self, table: &str) -> Result<Option<TableInfo>, WriteError> {
        self.inner.describe(table).await
    }

    async fn create_table(&self, table: &str, spec: &TableSpec) -> Result<(), WriteError> {
        self.inner.create_table(table, spec).await
    }

    async fn batch_write(
        &self,
        table: &str,
        items: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(WriteError::Request {
                operation: "BatchWriteItem",
                table: table.to_string(),
                kind: crate::aws::FailureKind::Rejected,
                message: "ValidationException: Item size has exceeded the maximum allowed size"
                    .to_string(),
                source: None,
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        self.inner.batch_write(table, items).await
    }

    async fn batch_delete(
        &self,
        table: &str,
        keys: Vec<Item>,
    ) -> Result<(Vec<Item>, f64), WriteError> {
        self.inner.batch_delete(table, keys).await
    }

    async fn get_item(&self, table: &str, key: &Item) -> Result<Option<Item>, WriteError> {
        self.inner.get_item(table, key).await
    }

    async fn write_if(
        &self,
        table: &str,
        key: &Item,
        new: Option<&Item>,
        expected: Option<&Item>,
    ) -> Result<bool, WriteError> {
        self.inner.write_if(table, key, new, expected).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_ends_the_restore_with_its_own_error_at_any_concurrency() {
    let store = MemoryStore::new();
    // Far more batches than the channel holds, so the reader is waiting when the writers fail.
    let manifest = backup(&store, items(2000), "dynamodb-json").await;
    for concurrency in [1, 8] {
        let writer = Arc::new(RefusingWriter {
            inner: MemoryWriter::new(),
            calls: AtomicU64::new(0),
        });
        let options = RestoreOptions {
            concurrency,
            ..options("copy", true)
        };
        let restore = restore(
            Arc::new(store.clone()),
            &manifest,
            str::to_string,
            writer,
            &options,
            Arc::new(RestoreProgress::default()),
        );
        let result = tokio::time::timeout(std::time::Duration::from_secs(20), restore)
            .await
            .unwrap_or_else(|_| panic!("restore with {concurrency} writers never ended"));
        let err = result.expect_err("a write was refused");
        assert!(
            matches!(err, RestoreError::Write(_))
                && err.to_string().contains("maximum allowed size"),
            "{concurrency} writers: {err}"
        );
    }
}

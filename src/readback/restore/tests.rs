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
        resume: None,
        stop_at: None,
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

/// A restore stopped at an instant reports where every earlier record is written; resumed from
/// there, again and again, it writes every item of every file, and skips what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_stopped_and_resumed_from_its_position_writes_every_item() {
    let store = MemoryStore::new();
    let original = items(1000);
    let manifest = backup(&store, original.clone(), "dynamodb-json").await;
    assert!(manifest.files.len() >= 3, "several files");
    let writer = MemoryWriter::throttling(4);
    let mut resume = None;
    let mut legs = 0;
    let mut written = 0;
    loop {
        legs += 1;
        let options = RestoreOptions {
            // Each leg starts with a second's budget (200 units), stops reading after 60 ms
            // and writes the batches it has read.
            write_budget: Some(200.0),
            concurrency: 3,
            resume,
            stop_at: Some(tokio::time::Instant::now() + Duration::from_millis(60)),
            ..options("copy", legs == 1)
        };
        let report = run(&store, &manifest, &writer, &options).await.unwrap();
        written += report.items;
        match report.paused_at {
            Some(at) => {
                assert!(Some(at) >= resume, "positions only move forward");
                resume = Some(at);
            }
            None => break,
        }
        assert!(legs < 100, "no progress");
    }
    assert!(
        legs >= 3,
        "the restore was stopped and resumed ({legs} legs)"
    );
    assert_eq!(sorted(writer.items("copy")), sorted(original));
    // Resubmitted batches in flight at a stop are rewritten, nothing else.
    assert!(written < 1000 + legs * 25 * 3, "{written} writes");
}

/// The position never passes a batch that is not written: a resume from a position skips
/// exactly the records before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_skips_exactly_the_records_before_its_position() {
    let store = MemoryStore::new();
    let original = items(200);
    let manifest = backup(&store, original.clone(), "dynamodb-json").await;
    let writer = MemoryWriter::new();
    let start = Position {
        file: 1,
        records: 7,
    };
    let options = RestoreOptions {
        resume: Some(start),
        ..options("copy", true)
    };
    let report = run(&store, &manifest, &writer, &options).await.unwrap();
    let before: u64 = manifest.files[0].item_count + 7;
    assert_eq!(report.items, 200 - before);
    assert_eq!(report.paused_at, None);
    assert_eq!(writer.items("copy").len() as u64, 200 - before);
}

/// What a crash would save: at every moment, every record before the reported position is in
/// the table, though batches finish out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_position_never_passes_a_record_not_yet_written() {
    let store = MemoryStore::new();
    let manifest = backup(&store, items(600), "dynamodb-json").await;
    // Every file's ids, in the order restore reads them.
    let mut order: Vec<Vec<String>> = Vec::new();
    for file in &manifest.files {
        let bytes = store.get(&file.key).await.unwrap();
        let mut ids = Vec::new();
        read_items(
            bytes.as_ref(),
            manifest.format,
            manifest.compression,
            None,
            |item| {
                ids.push(item["id"].as_s().unwrap().clone());
                true
            },
        )
        .unwrap();
        order.push(ids);
    }
    let writer = MemoryWriter::throttling(3);
    let progress = Arc::new(RestoreProgress::default());
    let options = RestoreOptions {
        write_budget: Some(1500.0),
        concurrency: 6,
        ..options("copy", true)
    };
    let run = restore(
        Arc::new(store.clone()),
        &manifest,
        str::to_string,
        Arc::new(writer.clone()),
        &options,
        progress.clone(),
    );
    let check = async {
        let mut samples = 0;
        loop {
            let at = progress.position();
            let written: std::collections::HashSet<String> = writer
                .items("copy")
                .iter()
                .map(|i| i["id"].as_s().unwrap().clone())
                .collect();
            let before = order.iter().take(at.file).flatten().chain(
                order
                    .get(at.file)
                    .into_iter()
                    .flatten()
                    .take(at.records as usize),
            );
            for id in before {
                assert!(
                    written.contains(id),
                    "{id} is before {at:?} but not written"
                );
            }
            samples += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            if samples > 5000 {
                return samples;
            }
        }
    };
    tokio::select! {
        done = run => { done.unwrap(); }
        _ = check => {}
    }
    assert_eq!(writer.items("copy").len(), 600);
}

/// Against a table's write limit (the capacity twin: one partition, a table of 200 WCU/s, no burst),
/// with no budget: every batch DynamoDB refuses whole or in part is written later, none lost,
/// and the restore runs at the limit, not past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_tables_write_limit_throttled_writes_are_retried_and_never_lost() {
    use crate::readback::throttled_table::ThrottledTable;
    use crate::source::capacity::CapacitySpec;
    let store = MemoryStore::new();
    let original = items(600);
    let manifest = backup(&store, original.clone(), "dynamodb-json").await;
    let table = Arc::new(ThrottledTable::new(
        MemoryWriter::new(),
        CapacitySpec::writes(1, 200.0),
    ));
    let started = std::time::Instant::now();
    let report = restore(
        Arc::new(store.clone()),
        &manifest,
        str::to_string,
        table.clone(),
        &RestoreOptions {
            concurrency: 8,
            ..options("copy", true)
        },
        Arc::new(RestoreProgress::default()),
    )
    .await
    .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let units = table.stats.units.load(Ordering::Relaxed) as f64;
    assert_eq!(report.items, 600);
    assert!(report.retries > 0, "the table throttled");
    assert_eq!(sorted(table.inner().items("copy")), sorted(original));
    // A second's capacity to start with, then 200 units a second.
    assert!(
        units / 200.0 - 1.0 <= seconds * 1.05,
        "{units} units in {seconds:.2} s"
    );
}

/// With no budget, nothing is paced until the table throttles; then writes are paced at what
/// it took in the last second, a little less at each throttle, and with no throttle for a
/// while the pace doubles every second (the other writers are done, or the table grew).
#[tokio::test(start_paused = true)]
async fn without_a_budget_writes_are_paced_at_what_the_table_takes() {
    let budget = WriteBudget::unlimited();
    let start = tokio::time::Instant::now();
    for _ in 0..100 {
        budget.acquire(100.0).await;
        budget.accepted(100.0);
    }
    assert_eq!(
        start.elapsed().as_secs_f64(),
        0.0,
        "unpaced until a throttle"
    );
    // The table took 1,000 units over the last second, then refused.
    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..10 {
        tokio::time::advance(Duration::from_millis(100)).await;
        budget.accepted(100.0);
    }
    budget.throttled();
    let paced = tokio::time::Instant::now();
    for _ in 0..5 {
        budget.acquire(100.0).await;
    }
    let took = paced.elapsed().as_secs_f64();
    assert!(
        (0.4..0.6).contains(&took),
        "500 units at about 1,000 a second: {took}"
    );
    // A second throttle at once counts once; a later one steps the pace down.
    budget.throttled();
    tokio::time::advance(Duration::from_secs(5)).await;
    let probing = tokio::time::Instant::now();
    for _ in 0..40 {
        budget.acquire(100.0).await;
    }
    let took = probing.elapsed().as_secs_f64();
    assert!(
        took < 0.5,
        "4,000 units after 5 s without a throttle: {took}"
    );
}

/// A batch DynamoDB refuses whole (`ProvisionedThroughputExceededException` past the SDK's
/// retries) is written later, like items returned unprocessed, instead of failing the restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_whole_is_written_later() {
    struct Refusing {
        inner: MemoryWriter,
        refusals: std::sync::atomic::AtomicU32,
    }
    #[async_trait::async_trait]
    impl TableWriter for Refusing {
        async fn describe(&self, t: &str) -> Result<Option<TableInfo>, WriteError> {
            self.inner.describe(t).await
        }
        async fn create_table(&self, t: &str, s: &TableSpec) -> Result<(), WriteError> {
            self.inner.create_table(t, s).await
        }
        async fn batch_write(&self, t: &str, i: Vec<Item>) -> Result<(Vec<Item>, f64), WriteError> {
            if self.refusals.fetch_add(1, Ordering::Relaxed) < 3 {
                return Err(WriteError::Request {
                    operation: "BatchWriteItem",
                    table: t.to_string(),
                    kind: crate::aws::FailureKind::Throttled,
                    message: "ProvisionedThroughputExceededException".into(),
                    source: None,
                });
            }
            self.inner.batch_write(t, i).await
        }
        async fn batch_delete(
            &self,
            t: &str,
            k: Vec<Item>,
        ) -> Result<(Vec<Item>, f64), WriteError> {
            self.inner.batch_delete(t, k).await
        }
        async fn get_item(&self, t: &str, k: &Item) -> Result<Option<Item>, WriteError> {
            self.inner.get_item(t, k).await
        }
        async fn write_if(
            &self,
            t: &str,
            k: &Item,
            n: Option<&Item>,
            e: Option<&Item>,
        ) -> Result<bool, WriteError> {
            self.inner.write_if(t, k, n, e).await
        }
    }
    let store = MemoryStore::new();
    let original = items(100);
    let manifest = backup(&store, original.clone(), "dynamodb-json").await;
    let writer = Arc::new(Refusing {
        inner: MemoryWriter::new(),
        refusals: Default::default(),
    });
    let report = restore(
        Arc::new(store.clone()),
        &manifest,
        str::to_string,
        writer.clone(),
        &options("copy", true),
        Arc::new(RestoreProgress::default()),
    )
    .await
    .unwrap();
    assert!(report.retries >= 3);
    assert_eq!(sorted(writer.inner.items("copy")), sorted(original));
}

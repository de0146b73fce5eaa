//! Restore at a table's write limit: how much of the write rate a table allows a restore
//! holds, on 1, 4 and 16 workers, against the capacity twin (`source::capacity`): each item
//! costs its write units on its key's partition (1,000 WCU/s each) and on the table, which a new
//! table serves at its rate with one second in hand; what does not fit comes back unprocessed,
//! and a batch of which nothing fits is refused with `ProvisionedThroughputExceededException`.
//!
//! Each worker is one `restore` of its share of the files, as a queued restore job's workers
//! are (`share_files`), in one process. "budget": each writes at its part of the table's rate
//! (the restore job's `write_budget` split evenly); "no budget": each writes as fast as the
//! table lets it, backing off when throttled. The items are synthetic `studentData` students of
//! one write unit each, from a `dynamodb-json` + zstd backup in memory, into a table that keeps
//! only their keys.
//!
//!   cargo bench --bench restore                # full run (about two minutes)
//!   cargo bench --bench restore -- --smoke     # quick run used by CI to keep this working
//!
//! "of allowed" is the units written over what the table allowed in that time: its rate for
//! the run, plus the one second's capacity a new table starts with.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use ddb_backup::model::job::{JobDefaults, TableName};
use ddb_backup::model::restore_job::share_files;
use ddb_backup::readback::restore::{restore, RestoreOptions, RestoreProgress};
use ddb_backup::readback::table_writer::{TableSpec, TableWriter, WriteError};
use ddb_backup::readback::throttled_table::ThrottledTable;
use ddb_backup::source::capacity::CapacitySpec;
use ddb_backup::source::seed::SyntheticSource;
use ddb_backup::source::TableInfo;
use ddb_backup::store::{MemoryStore, ObjectStore};
use ddb_backup::{Backup, BackupJob, Item, Manifest, Tuning};

#[global_allocator]
static ALLOCATOR: ddb_backup::runtime::allocator::Allocator =
    ddb_backup::runtime::allocator::Allocator;

/// The table's write rate: four partitions' worth.
const TABLE_WCU: f64 = 4000.0;
const PARTITIONS: usize = 4;

/// A table that keeps only the keys it was given: restore's writes cost what DynamoDB's
/// bookkeeping would, not a copy of every item.
#[derive(Default)]
struct KeysOnly {
    spec: Mutex<Option<TableSpec>>,
    keys: Mutex<HashSet<String>>,
}

#[async_trait]
impl TableWriter for KeysOnly {
    async fn describe(&self, table: &str) -> Result<Option<TableInfo>, WriteError> {
        Ok(self
            .spec
            .lock()
            .expect("lock")
            .as_ref()
            .map(|spec| TableInfo {
                table_name: table.to_string(),
                table_arn: None,
                key_schema: spec.key_schema.clone(),
                attribute_definitions: spec.attribute_definitions.clone(),
                billing_mode: None,
                provisioned_read_capacity: None,
                provisioned_write_capacity: None,
                global_secondary_indexes: vec![],
                local_secondary_indexes: vec![],
                item_count: None,
                size_bytes: None,
                stream: None,
            }))
    }

    async fn create_table(&self, _: &str, spec: &TableSpec) -> Result<(), WriteError> {
        *self.spec.lock().expect("lock") = Some(spec.clone());
        Ok(())
    }

    async fn batch_write(&self, _: &str, items: Vec<Item>) -> Result<(Vec<Item>, f64), WriteError> {
        let mut keys = self.keys.lock().expect("lock");
        for item in &items {
            keys.insert(format!("{:?}", item.get("id")));
        }
        Ok((Vec::new(), items.len() as f64))
    }

    async fn batch_delete(&self, _: &str, _: Vec<Item>) -> Result<(Vec<Item>, f64), WriteError> {
        Ok((Vec::new(), 0.0))
    }

    async fn get_item(&self, _: &str, _: &Item) -> Result<Option<Item>, WriteError> {
        Ok(None)
    }

    async fn write_if(
        &self,
        _: &str,
        _: &Item,
        _: Option<&Item>,
        _: Option<&Item>,
    ) -> Result<bool, WriteError> {
        Ok(true)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A `dynamodb-json` + zstd backup of `items` students in 32 files.
async fn backup(store: &MemoryStore, items: u64) -> Manifest {
    let job = BackupJob::parse(
        r#"{"table":"studentData","bucket":"bench-bucket","job_id":"bench","compression":"zstd","segments":32}"#,
        &JobDefaults::default(),
    )
    .expect("job");
    Backup::new(
        Arc::new(SyntheticSource::new("studentData", items, 2000)),
        Arc::new(store.clone()),
        Tuning::default(),
    )
    .run(&job)
    .await
    .expect("backup")
}

struct Run {
    seconds: f64,
    units: u64,
    per_worker: Vec<u64>,
    throttled_requests: u64,
    unprocessed: u64,
    restored: usize,
}

async fn restore_on(
    store: &MemoryStore,
    manifest: &Manifest,
    workers: u32,
    budget: bool,
    capacity: CapacitySpec,
) -> Run {
    let table = "restored-bench";
    let twin = Arc::new(ThrottledTable::new(KeysOnly::default(), capacity));
    let spec = TableSpec {
        key_schema: manifest.key_schema.clone(),
        attribute_definitions: manifest.attribute_definitions.clone(),
        global_secondary_indexes: vec![],
        local_secondary_indexes: vec![],
    };
    twin.create_table(table, &spec).await.expect("table");
    let started = Instant::now();
    let tasks: Vec<_> = share_files(&manifest.files, workers)
        .into_iter()
        .map(|keys| {
            let mut share = manifest.clone();
            share.files.retain(|f| keys.contains(&f.key));
            let store: Arc<dyn ObjectStore> = Arc::new(store.clone());
            let twin = twin.clone();
            let options = RestoreOptions {
                table: TableName::new(table).expect("name"),
                create_table: false,
                write_budget: budget.then(|| TABLE_WCU / f64::from(workers)),
                concurrency: 8,
                allow_lossy: false,
                overlay: None,
                resume: None,
                stop_at: None,
            };
            tokio::spawn(async move {
                restore(
                    store,
                    &share,
                    str::to_string,
                    twin,
                    &options,
                    Arc::new(RestoreProgress::default()),
                )
                .await
                .expect("restore")
                .items
            })
        })
        .collect();
    let mut per_worker = Vec::new();
    for task in tasks {
        per_worker.push(task.await.expect("worker"));
    }
    let seconds = started.elapsed().as_secs_f64();
    Run {
        seconds,
        units: twin.stats.units.load(Ordering::Relaxed),
        per_worker,
        throttled_requests: twin.stats.throttled_requests.load(Ordering::Relaxed),
        unprocessed: twin.stats.unprocessed_items.load(Ordering::Relaxed),
        restored: twin.inner().keys.lock().map(|k| k.len()).unwrap_or(0),
    }
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    // About 15 s of the table's rate per case (1.5 s in a smoke run).
    let items: u64 = if smoke { 6_000 } else { 60_000 };
    let rt = runtime();
    let store = MemoryStore::new();
    let manifest = rt.block_on(backup(&store, items));
    println!(
        "restore of {} one-unit items ({} files) into a new table of {PARTITIONS} partitions at {TABLE_WCU:.0} WCU/s",
        manifest.item_count,
        manifest.files.len()
    );
    println!(
        "{:>8} {:>10} {:>9} {:>12} {:>14} {:>11} {:>15} {:>13}",
        "workers",
        "budget",
        "seconds",
        "WCU/s",
        "items/s/worker",
        "of allowed",
        "throttled/min",
        "unprocessed"
    );
    for (workers, budget) in [(1, true), (4, true), (16, true), (4, false), (16, false)] {
        let run = rt.block_on(restore_on(
            &store,
            &manifest,
            workers,
            budget,
            CapacitySpec::writes(PARTITIONS, TABLE_WCU),
        ));
        assert_eq!(
            run.restored as u64, manifest.item_count,
            "every item written"
        );
        let allowed = TABLE_WCU * run.seconds + TABLE_WCU;
        let per_worker =
            run.per_worker.iter().sum::<u64>() as f64 / f64::from(workers) / run.seconds;
        println!(
            "{:>8} {:>10} {:>9.1} {:>12.0} {:>14.0} {:>10.1}% {:>15.0} {:>13}",
            workers,
            if budget {
                format!("{:.0}", TABLE_WCU / f64::from(workers))
            } else {
                "none".to_string()
            },
            run.seconds,
            run.units as f64 / run.seconds,
            per_worker,
            100.0 * run.units as f64 / allowed,
            run.throttled_requests as f64 / run.seconds * 60.0,
            run.unprocessed,
        );
    }
    // What one worker writes when the table is no limit: decoding and batching, in process
    // (the SDK's requests, a few milliseconds each, overlap 8 at a time and are not counted).
    let unlimited = CapacitySpec::writes(1000, 1_000_000.0);
    let run = rt.block_on(restore_on(&store, &manifest, 1, false, unlimited));
    assert_eq!(
        run.restored as u64, manifest.item_count,
        "every item written"
    );
    println!(
        "one worker, table no limit: {:.0} items/s ({:.1} s)",
        run.per_worker[0] as f64 / run.seconds,
        run.seconds
    );
}

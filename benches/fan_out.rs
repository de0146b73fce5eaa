//! Fan-out benchmark: what one worker reaches against a table that answers like DynamoDB, what
//! several workers sharing one job reach together, and what agreeing on one manifest costs.
//!
//! - `segments`: one worker (a child process pinned to one CPU, as a Lambda of 1,769 MB has one
//!   vCPU) backs up synthetic `studentData` items (`dynamodb-json` + zstd, the fastest path)
//!   from a source whose 1 MB pages each take 50–150 ms, as DynamoDB's do, into a discarding
//!   store. MB/s against the number of segments: latency-bound while it grows with them, CPU-bound
//!   once the CPU is busy all the time.
//! - `workers`: N workers side by side in one process (both cores) share one job through one
//!   store: the plan, N shares of the segments, N results, the manifest written by the last. The
//!   aggregate MB/s against N, with a fixed number of segments per worker.
//! - `merge`: the last worker of a job of W workers (each having written 16 files) lists W
//!   results, reads and merges them and writes the manifest: its time and the manifest's size.
//!
//!   cargo bench --bench fan_out                # full run (a few minutes)
//!   cargo bench --bench fan_out -- --smoke     # quick run used by CI to keep this working
//!
//! MB = 10^6 bytes of encoded (uncompressed) output.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use ddb_backup::backup::pipeline::{Leg, LegOutcome};
use ddb_backup::model::fan_out::{Shard, WorkerResult, FAN_OUT_VERSION};
use ddb_backup::model::job::JobDefaults;
use ddb_backup::model::manifest::{FileEntry, Layout};
use ddb_backup::source::seed::SyntheticSource;
use ddb_backup::source::{Page, PageRequest, ScanError, TableInfo, TableSource};
use ddb_backup::store::{MemoryStore, ObjectMeta, ObjectStore};
use ddb_backup::{Backup, BackupJob, Tuning};

#[global_allocator]
static ALLOCATOR: ddb_backup::runtime::allocator::Allocator =
    ddb_backup::runtime::allocator::Allocator;

/// Students per page: about 1.05 MB of DynamoDB JSON, a full Scan page (DynamoDB stops at 1 MB).
const PAGE_ITEMS: u64 = 2000;

/// A table that answers like DynamoDB: every page takes 50–150 ms (spread evenly, the same
/// sequence every run) before the synthetic source hands it out.
struct Latent {
    inner: SyntheticSource,
    pages: std::sync::atomic::AtomicU64,
}

impl Latent {
    fn new(items: u64) -> Latent {
        Latent {
            inner: SyntheticSource::prerendered("studentData", items, PAGE_ITEMS, 8),
            pages: Default::default(),
        }
    }
}

#[async_trait]
impl TableSource for Latent {
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError> {
        self.inner.describe(table).await
    }

    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError> {
        let n = self
            .pages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let spread = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        tokio::time::sleep(Duration::from_millis(50 + spread % 101)).await;
        self.inner.scan_page(request).await
    }
}

fn job(segments: u32, workers: u32) -> BackupJob {
    BackupJob::parse(
        &format!(
            r#"{{"table":"studentData","bucket":"bench-bucket","job_id":"bench","compression":"zstd","segments":{segments},"workers":{workers}}}"#
        ),
        &JobDefaults {
            max_workers: ddb_backup::model::job::MAX_WORKERS,
            ..JobDefaults::default()
        },
    )
    .expect("job")
}

fn tuning(segments_at_once: usize) -> Tuning {
    Tuning {
        max_concurrent_segments: segments_at_once,
        ..Tuning::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    ddb_backup::runtime::allocator::tune();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--child") {
        let segments = args[1].parse().expect("segments");
        let pages = args[2].parse().expect("pages");
        one_worker(segments, pages);
        return;
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let pages_per_segment: u64 = if smoke { 2 } else { 30 };

    println!("(a) one worker on one CPU, pages of {PAGE_ITEMS} items (~1.05 MB) taking 50-150 ms:");
    println!(
        "{:>8} {:>9} {:>7} {:>7} {:>9} {:>10}",
        "segments", "MB", "secs", "MB/s", "CPU busy", "MB/CPU-s"
    );
    let counts: &[u32] = if smoke {
        &[1, 4]
    } else {
        &[1, 2, 4, 8, 16, 32, 64]
    };
    for &segments in counts {
        let exe = std::env::current_exe().expect("own path");
        let mut command = Command::new("taskset");
        command.args(["-c", "0"]).arg(&exe);
        command.args([
            "--child",
            &segments.to_string(),
            &pages_per_segment.to_string(),
        ]);
        let out = command.output().expect("run the one-CPU child (taskset)");
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }

    let per_worker: u32 = 4;
    println!(
        "\n(b) N workers side by side sharing one job, {per_worker} segments each, same source, both cores:"
    );
    println!(
        "{:>8} {:>9} {:>7} {:>7} {:>11} {:>9} {:>7}",
        "workers", "MB", "secs", "MB/s", "MB/s/worker", "CPU busy", "stored"
    );
    let workers: &[u32] = if smoke { &[1, 2] } else { &[1, 2, 4, 8] };
    for &n in workers {
        side_by_side(n, per_worker, pages_per_segment);
    }

    println!("\n(c) the last worker's merge: list W results of 16 files each, read, merge, write the manifest:");
    println!(
        "{:>8} {:>8} {:>9} {:>12}",
        "workers", "files", "ms", "manifest MB"
    );
    let sizes: &[u32] = if smoke { &[10] } else { &[10, 100, 1000] };
    for &w in sizes {
        merge(w);
    }
    item_sizes();
}

/// How the table's size (what DynamoDB bills reads by and `TableSizeBytes` reports) relates to
/// the bytes the worker receives and encodes (DynamoDB JSON), for this benchmark's items.
fn item_sizes() {
    runtime().block_on(async {
        let source = SyntheticSource::new("studentData", PAGE_ITEMS, PAGE_ITEMS);
        let request = PageRequest {
            table: "studentData".into(),
            segment: 0,
            total_segments: 1,
            exclusive_start_key: None,
            consistent_read: false,
            limit: None,
            wire_items: false,
        };
        let page = source.scan_page(&request).await.expect("page");
        let ddb_backup::source::PageItems::Decoded(items) = page.items else {
            panic!("decoded items were asked for");
        };
        let stored: usize = items.iter().map(ddb_backup::readback::restore::item_size).sum();
        let json: usize = items
            .iter()
            .map(|item| {
                let mut map = Vec::new();
                ddb_backup::codec::encode::write_item_map(item, &mut map).expect("encodes");
                map.len()
            })
            .sum();
        println!(
            "\nitem sizes: {:.0} bytes in DynamoDB (what reads are billed by), {:.0} bytes as Scan sends it: {:.2} wire bytes per table byte",
            stored as f64 / items.len() as f64,
            json as f64 / items.len() as f64,
            json as f64 / stored as f64
        );
    });
}

/// (a): one worker, `segments` segments of `pages` pages each, on the CPU the parent pinned.
fn one_worker(segments: u32, pages: u64) {
    let items = u64::from(segments) * pages * PAGE_ITEMS;
    runtime().block_on(async {
        let store = MemoryStore::discarding();
        let backup = Backup::new(
            Arc::new(Latent::new(items)),
            Arc::new(store.clone()),
            tuning(segments as usize),
        );
        let job = job(segments, 1);
        let cpu0 = process_cpu_secs();
        let t0 = Instant::now();
        let manifest = backup.run(&job).await.expect("backup");
        let secs = t0.elapsed().as_secs_f64();
        let cpu = process_cpu_secs() - cpu0;
        assert_eq!(manifest.item_count, items);
        let mb = manifest.uncompressed_bytes as f64 / 1e6;
        println!(
            "{:>8} {:>9.0} {:>7.2} {:>7.1} {:>8.0}% {:>10.1}",
            segments,
            mb,
            secs,
            mb / secs,
            100.0 * cpu / secs,
            mb / cpu
        );
    });
}

/// (b): `workers` workers of one job, each with its own segments, started together.
fn side_by_side(workers: u32, per_worker: u32, pages: u64) {
    let segments = workers * per_worker;
    let items = u64::from(segments) * pages * PAGE_ITEMS;
    runtime().block_on(async {
        let store = MemoryStore::discarding();
        let source = Arc::new(Latent::new(items));
        let job = job(segments, workers);
        let cpu0 = process_cpu_secs();
        let t0 = Instant::now();
        let planner = Backup::new(source.clone(), Arc::new(store.clone()), tuning(4));
        let plan = planner.plan_fan_out(&job, 1000).await.expect("plan");
        assert_eq!(plan.workers, workers);
        let legs: Vec<_> = (0..workers)
            .map(|w| {
                let backup = Backup::new(
                    source.clone(),
                    Arc::new(store.clone()),
                    tuning(per_worker as usize),
                );
                let job = job.clone();
                tokio::spawn(async move {
                    let shard = (workers > 1).then(|| Shard::new(w, workers).expect("shard"));
                    let leg = Leg {
                        shard,
                        ..Leg::default()
                    };
                    backup.run_leg(&job, leg).await.expect("leg")
                })
            })
            .collect();
        let mut manifests = Vec::new();
        for leg in legs {
            if let LegOutcome::Complete(manifest) = leg.await.expect("worker") {
                manifests.push(manifest);
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = process_cpu_secs() - cpu0;
        assert_eq!(manifests.len(), 1, "one manifest");
        assert_eq!(manifests[0].item_count, items);
        let mb = manifests[0].uncompressed_bytes as f64 / 1e6;
        println!(
            "{:>8} {:>9.0} {:>7.2} {:>7.1} {:>11.1} {:>8.0}% {:>6.1}%",
            workers,
            mb,
            secs,
            mb / secs,
            mb / secs / f64::from(workers),
            100.0 * cpu / secs,
            100.0 * manifests[0].bytes as f64 / manifests[0].uncompressed_bytes as f64
        );
    });
}

/// (c): W−1 results recorded, then the last worker (an empty share) records its own and merges.
fn merge(workers: u32) {
    runtime().block_on(async {
        let store = MemoryStore::new();
        let source = Arc::new(SyntheticSource::new("studentData", 0, PAGE_ITEMS));
        let job = job(workers, workers);
        let backup = Backup::new(source, Arc::new(store.clone()), tuning(1));
        backup.plan_fan_out(&job, 1000).await.expect("plan");
        let layout = Layout::new(&job);
        let meta = ObjectMeta {
            content_type: "application/json",
            content_encoding: None,
            records: None,
            retained: false,
        };
        for w in 0..workers - 1 {
            let result = WorkerResult {
                version: FAN_OUT_VERSION,
                job_id: "bench".into(),
                worker: w,
                started_at: "2026-12-04T02:00:00.000Z".into(),
                finished_at: "2026-12-04T02:10:00.000Z".into(),
                elapsed_ms: 600_000,
                legs: 1,
                pages: 10_000,
                items: 40_000_000,
                consumed_read_capacity: 1_310_720.0,
                files: (0..16)
                    .map(|f| FileEntry {
                        key: layout.data_key(w, f),
                        segment: w,
                        worker: w,
                        item_count: 2_500_000,
                        bytes: 268_435_456,
                        uncompressed_bytes: 671_088_640,
                        sha256: "ab".repeat(32),
                        columns: None,
                    })
                    .collect(),
            };
            let body = serde_json::to_vec_pretty(&result).expect("result");
            store
                .put_object(&layout.result_key(w), Bytes::from(body), &meta)
                .await
                .expect("put");
        }
        let leg = Leg {
            shard: Some(Shard::new(workers - 1, workers).expect("shard")),
            ..Leg::default()
        };
        let t0 = Instant::now();
        let outcome = backup.run_leg(&job, leg).await.expect("last worker");
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let LegOutcome::Complete(manifest) = outcome else {
            panic!("the last worker writes the manifest");
        };
        let size = store
            .get(&layout.manifest_key())
            .await
            .expect("manifest")
            .len();
        println!(
            "{:>8} {:>8} {:>9.1} {:>12.2}",
            workers,
            manifest.files.len(),
            ms,
            size as f64 / 1e6
        );
    });
}

fn process_cpu_secs() -> f64 {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass and has no other effects.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

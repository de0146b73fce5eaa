//! Reading at a table's limit: what share of the read rate a table allows a backup holds once
//! the table throttles, against the read twin (`source::twin`) through the real SDK client (its
//! retries, backoff and retry quota included) and the real paging loop (`scan_segment`) and
//! read budget.
//!
//! Each worker is one worker Lambda of a shared job: its own SDK client and retry quota, its
//! own read budget (the job's split evenly, or none), its share of the planned segments, 16 at
//! once. The twin bills every item as 64 KiB, pages take 10 ms + 15 ms per MiB, and every case
//! starts with the table's burst spent (a busy table). It runs in paused time: the figures are
//! of the model, not of this machine, and come out the same on any.
//!
//!   cargo bench --bench at_limit                # full run (a few minutes)
//!   cargo bench --bench at_limit -- --smoke     # quick run used by CI to keep this working
//!
//! "before" is the read budget as it was: segments started in key order, the rate halved at a
//! throttle and regaining 5 % of the budget a second, and with no budget, no pacing but the
//! SDK's backoff. "after" is the read budget as it ships: segments started spread over the key
//! space, paced at what the table accepts once it throttles, a partition's throttle slowing
//! only its segment. Both use today's paging loop. "% of allowed" is the
//! units read over what the table allowed in that time (its rate, or the job's budget if lower,
//! plus the one second a busy table has in hand).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ddb_backup::backup::fan_out::planned_segments;
use ddb_backup::model::fan_out::{workers_for, Shard, ON_DEMAND_READ_UNITS};
use ddb_backup::source::budget::{ReadBudget, ReadPacing};
use ddb_backup::source::capacity::CapacitySpec;
use ddb_backup::source::twin::{Billing, ReadTwin, TwinSpec};
use ddb_backup::source::{
    auto_segments, scan_segment, spread_order, DynamoDbSource, PageRequest, TableSource,
};
use futures::StreamExt;
use tokio::time::Instant;

/// Bytes each twin item is billed as.
const ITEM_BYTES: u64 = 64 * 1024;
/// Segments a worker reads at once (`DDB_BACKUP_CONCURRENCY`'s default).
const SEGMENTS_AT_ONCE: usize = 16;
/// Workers a job may have (`DDB_BACKUP_MAX_WORKERS`'s default).
const MAX_WORKERS: u32 = 100;

/// One case of the bench.
struct Case {
    name: &'static str,
    billing: Billing,
    partitions: usize,
    table_rate: f64,
    /// The job's read budget, split among its workers; `None`: none.
    budget: Option<f64>,
    /// Workers; `None`: the default rule.
    workers: Option<u32>,
    /// Other traffic beside the backup, in read units a second.
    other: f64,
    /// Share of the items under one partition-key value.
    hot: f64,
}

/// What one run of a case measured.
struct Measured {
    workers: u32,
    allowed: f64,
    seconds: f64,
    units: f64,
    throttled_per_min: f64,
    other_kept: Option<f64>,
    /// Segments whose scan failed: a page throttled through all the SDK's attempts and the
    /// paging loop's own (the leg fails, and the queue brings it back).
    failed: usize,
    /// For a hot key range: the hot partition's units a second while it was read, and the
    /// shortest time the table and that partition allow.
    hot: Option<(f64, f64)>,
}

impl Measured {
    fn share(&self) -> f64 {
        self.units / ((self.seconds + 1.0) * self.allowed)
    }
}

/// The read budget as it was: halve at a throttle (debounced 1 s), regain 5 % of the limit a
/// second, never below 5 %, half a second saved up.
struct Aimd {
    limit: f64,
    /// The job's segments: the old budget sized pages to a share of all of them.
    segments: u32,
    state: Mutex<(f64, f64, Instant, Option<Instant>)>, // balance, rate, updated, last throttle
}

impl Aimd {
    fn new(limit: f64, segments: u32) -> Self {
        Aimd {
            limit,
            segments,
            state: Mutex::new((0.0, limit, Instant::now(), None)),
        }
    }

    fn refill(&self, state: &mut (f64, f64, Instant, Option<Instant>), now: Instant) {
        let elapsed = now.duration_since(state.2).as_secs_f64();
        state.2 = now;
        if state.1 < self.limit {
            state.1 = (state.1 + self.limit * 0.05 * elapsed).min(self.limit);
        }
        state.0 = (state.0 + state.1 * elapsed).min(state.1 * 0.5);
    }
}

#[async_trait]
impl ReadPacing for Aimd {
    async fn acquire(&self, _: f64) {
        loop {
            let wait = {
                let mut state = self.state.lock().expect("lock");
                self.refill(&mut state, Instant::now());
                if state.0 >= 0.0 {
                    return;
                }
                Duration::from_secs_f64((-state.0 / state.1).clamp(0.001, 60.0))
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn consumed(&self, units: f64, _: f64) {
        let mut state = self.state.lock().expect("lock");
        self.refill(&mut state, Instant::now());
        state.0 -= units;
    }

    fn throttled(&self) {
        let now = Instant::now();
        let mut state = self.state.lock().expect("lock");
        self.refill(&mut state, now);
        if state
            .3
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        state.3 = Some(now);
        state.1 = (state.1 / 2.0).max(self.limit * 0.05);
        state.0 = state.0.min(0.0);
    }

    fn page_limit(&self, units_per_item: f64) -> Option<i32> {
        if !(units_per_item.is_finite() && units_per_item > 0.0) {
            return None;
        }
        let segments = self.segments;
        let rate = {
            let mut state = self.state.lock().expect("lock");
            self.refill(&mut state, Instant::now());
            state.1
        };
        Some((rate / f64::from(segments.max(1)) / units_per_item).clamp(1.0, 10_000.0) as i32)
    }
}

/// No pacing at all: what a job without a budget did.
struct Unpaced;

#[async_trait]
impl ReadPacing for Unpaced {
    async fn acquire(&self, _: f64) {}
    fn consumed(&self, _: f64, _: f64) {}
    fn throttled(&self) {}
    fn page_limit(&self, _: f64) -> Option<i32> {
        None
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Policy {
    Before,
    After,
}

/// A worker's pacing: `segments` of the job, `at_once` of them read together by this worker.
fn pacer(policy: Policy, budget: Option<f64>, segments: u32, at_once: u32) -> Arc<dyn ReadPacing> {
    match (policy, budget) {
        (Policy::Before, Some(b)) => Arc::new(Aimd::new(b, segments)),
        (Policy::Before, None) => Arc::new(Unpaced),
        (Policy::After, Some(b)) => Arc::new(ReadBudget::new(b).shared_by(at_once)),
        (Policy::After, None) => Arc::new(ReadBudget::unlimited().shared_by(at_once)),
    }
}

async fn run(case: &Case, policy: Policy, seconds: f64, run_id: usize) -> Measured {
    let allowed = case.budget.unwrap_or(f64::INFINITY).min(case.table_rate);
    // Sized to take `seconds` at the allowed rate: eventually consistent, 8 units an item.
    let units_per_item = ITEM_BYTES as f64 / 4096.0 / 2.0;
    let items = (allowed * seconds / units_per_item) as u64;
    let spec = TwinSpec {
        table: "twin".into(),
        items,
        item_bytes: ITEM_BYTES,
        hot_items: (items as f64 * case.hot) as u64,
        capacity: CapacitySpec::reads(case.partitions, case.table_rate),
        billing: case.billing,
        latency: Duration::from_millis(10),
        latency_per_mib: Duration::from_millis(15),
    };
    let twin = ReadTwin::new(spec);
    let retry = ddb_backup::aws::retry_config(ddb_backup::aws::DEFAULT_MAX_ATTEMPTS);
    let describe = DynamoDbSource::new(twin.client(retry.clone(), "describe"));
    let info = describe.describe("twin").await.expect("describe");
    let read_units = match (case.budget, case.billing) {
        (Some(b), _) => b,
        (None, Billing::Provisioned) => case.table_rate,
        (None, Billing::OnDemand) => ON_DEMAND_READ_UNITS,
    };
    let workers = case
        .workers
        .unwrap_or_else(|| workers_for(info.size_bytes, read_units, MAX_WORKERS));
    let segments = planned_segments(auto_segments(&info, 32), workers, SEGMENTS_AT_ONCE as u32);

    let start = Instant::now();
    let other = (case.other > 0.0).then(|| {
        tokio::spawn(
            twin.clone()
                .other_traffic(case.other, Duration::from_secs_f64(seconds * 3.0)),
        )
    });
    let hot_partition = twin.hot_partition();
    let trace = std::env::var("AT_LIMIT_TRACE").is_ok().then(|| {
        let twin = twin.clone();
        tokio::spawn(async move {
            let mut last = twin.partition_units();
            let mut last_throttled = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = twin.partition_units();
                let per: Vec<String> = now
                    .iter()
                    .zip(&last)
                    .map(|(a, b)| format!("{:.0}", a - b))
                    .collect();
                let throttled = twin.stats.throttled();
                eprintln!(
                    "t={:.0} {} throttled {}",
                    start.elapsed().as_secs_f64(),
                    per.join(" "),
                    throttled - last_throttled
                );
                last = now;
                last_throttled = throttled;
            }
        })
    });
    let hot_done: Arc<Mutex<Option<Instant>>> = Arc::default();
    let failed: Arc<Mutex<usize>> = Arc::default();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let shard = Shard::new(worker, workers).expect("shard");
        let source = Arc::new(DynamoDbSource::new(
            twin.client(retry.clone(), &format!("run{run_id}-worker{worker}")),
        ));
        let at_once = shard.segments(segments).len().min(SEGMENTS_AT_ONCE) as u32;
        let pace = pacer(
            policy,
            case.budget.map(|b| b / f64::from(workers)),
            segments,
            at_once,
        );
        let hot_done = hot_done.clone();
        let failed = failed.clone();
        let twin = twin.clone();
        tasks.push(tokio::spawn(async move {
            // The read budget as it was started segments in their natural order.
            let order: Vec<u32> = match policy {
                Policy::Before => shard.segments(segments).collect(),
                Policy::After => spread_order(shard.segments(segments)),
            };
            futures::stream::iter(order)
                .map(|segment| {
                    let source = source.clone();
                    let pace = pace.clone();
                    let hot_done = hot_done.clone();
                    let failed = failed.clone();
                    let twin = twin.clone();
                    async move {
                        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
                        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
                        let request = PageRequest {
                            table: "twin".into(),
                            segment,
                            total_segments: segments,
                            exclusive_start_key: None,
                            consistent_read: false,
                            limit: None,
                            wire_items: true,
                        };
                        let before = twin.partition_units()[hot_partition];
                        if scan_segment(source.as_ref(), request, tx, None, pace.as_ref())
                            .await
                            .is_err()
                        {
                            *failed.lock().expect("lock") += 1;
                        }
                        drain.await.expect("drain");
                        // The segment that read the hot key range ends when it is read.
                        if twin.partition_units()[hot_partition] - before > 1000.0 {
                            let mut done = hot_done.lock().expect("lock");
                            *done = Some(done.map_or(Instant::now(), |d| d.max(Instant::now())));
                        }
                    }
                })
                .buffer_unordered(SEGMENTS_AT_ONCE)
                .collect::<Vec<()>>()
                .await;
        }));
    }
    for task in tasks {
        task.await.expect("worker");
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(trace) = trace {
        trace.abort();
    }
    if let Some(other) = other {
        other.abort();
    }
    let units = twin.stats.units();
    let other_kept = (case.other > 0.0).then(|| {
        twin.stats.other_served_milli.load(Ordering::Relaxed) as f64
            / twin
                .stats
                .other_offered_milli
                .load(Ordering::Relaxed)
                .max(1) as f64
    });
    let hot = (case.hot > 0.0).then(|| {
        let hot_units = twin.partition_units()[hot_partition];
        let hot_seconds = hot_done
            .lock()
            .expect("lock")
            .map_or(elapsed, |d| d.duration_since(start).as_secs_f64());
        let shortest =
            (units / allowed).max(hot_units / ddb_backup::source::capacity::PARTITION_RCU);
        (hot_units / hot_seconds, shortest)
    });
    let failed = *failed.lock().expect("lock");
    Measured {
        workers,
        allowed,
        seconds: elapsed,
        units,
        throttled_per_min: twin.stats.throttled() as f64 / (elapsed / 60.0),
        other_kept,
        failed,
        hot,
    }
}

fn cases() -> Vec<Case> {
    let provisioned = Case {
        name: "",
        billing: Billing::Provisioned,
        partitions: 8,
        table_rate: 12_000.0,
        budget: Some(12_000.0),
        workers: Some(1),
        other: 0.0,
        hot: 0.0,
    };
    vec![
        Case {
            name: "1 worker, budget = the table's 12,000",
            ..provisioned
        },
        Case {
            name: "4 workers, budget = the table's 12,000",
            workers: Some(4),
            ..provisioned
        },
        Case {
            name: "16 workers, budget = the table's 12,000",
            workers: Some(16),
            ..provisioned
        },
        Case {
            name: "no budget, provisioned 12,000",
            budget: None,
            workers: None,
            ..provisioned
        },
        Case {
            name: "on demand, new table: 12,000",
            billing: Billing::OnDemand,
            partitions: 4,
            budget: None,
            workers: None,
            ..provisioned
        },
        Case {
            name: "on demand, default ceiling: 40,000",
            billing: Billing::OnDemand,
            partitions: 14,
            table_rate: 40_000.0,
            budget: None,
            workers: None,
            ..provisioned
        },
        Case {
            name: "5 % budget beside 95 % other traffic",
            partitions: 4,
            table_rate: 10_000.0,
            budget: Some(500.0),
            workers: None,
            other: 9_500.0,
            ..provisioned
        },
        Case {
            name: "a fifth of the items under one key",
            budget: None,
            workers: None,
            hot: 0.2,
            ..provisioned
        },
    ]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    // `--seconds N` and `--case TEXT` (cases whose name contains it) for a closer look.
    let seconds = value("--seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 5.0 } else { 150.0 });
    let only = value("--case");
    println!(
        "reading at the limit: {} s of reading at the allowed rate per case, items billed as {} KiB, paused time",
        seconds,
        ITEM_BYTES / 1024
    );
    println!(
        "| case | workers | allowed RCU/s | before: % of allowed | before: throttled/min | after: % of allowed | after: throttled/min | notes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut run_id = 0;
    for case in cases()
        .into_iter()
        .filter(|c| only.is_none_or(|o| c.name.contains(o.as_str())))
    {
        let mut results = Vec::new();
        for policy in [Policy::Before, Policy::After] {
            run_id += 1;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("runtime");
            let wall = std::time::Instant::now();
            let measured = runtime.block_on(run(&case, policy, seconds, run_id));
            eprintln!(
                "{} ({}): {:.1} s of table time in {:.1} s",
                case.name,
                if policy == Policy::Before {
                    "before"
                } else {
                    "after"
                },
                measured.seconds,
                wall.elapsed().as_secs_f64()
            );
            results.push(measured);
        }
        let notes = |m: &Measured| {
            let mut notes = Vec::new();
            if m.failed > 0 {
                notes.push(format!(
                    "{} segments failed, a page throttled past every retry",
                    m.failed
                ));
            }
            if let Some(kept) = m.other_kept {
                notes.push(format!("other traffic kept {:.1} %", kept * 100.0));
            }
            if let Some((hot_rate, shortest)) = m.hot {
                notes.push(format!(
                    "hot partition {:.0} RCU/s ({:.0} % of 3,000); {:.0} % of the shortest time",
                    hot_rate,
                    hot_rate / 30.0,
                    shortest / m.seconds * 100.0
                ));
            }
            notes.join("; ")
        };
        // A run with a failed segment did not read the whole table: no share to speak of.
        let share = |m: &Measured| {
            if m.failed > 0 {
                "failed".to_string()
            } else {
                format!("{:.1} %", m.share() * 100.0)
            }
        };
        let (before, after) = (&results[0], &results[1]);
        println!(
            "| {} | {} | {:.0} | {} | {:.0} | {} | {:.0} | before: {}; after: {} |",
            case.name,
            after.workers,
            after.allowed,
            share(before),
            before.throttled_per_min,
            share(after),
            after.throttled_per_min,
            notes(before),
            notes(after),
        );
    }
}

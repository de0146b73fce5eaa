//! One backup shared by several workers. The first delivery of a job fixes a [`Plan`] (how many
//! workers, how many scan segments) and queues one shard message per worker; each worker reads
//! its [`Shard`] of the segments, records a [`WorkerResult`], and the worker that finds every
//! result present merges them into the one manifest. These are the documents they exchange
//! through the backup's prefix; the rules that decide the numbers live here too, free of I/O.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::model::manifest::FileEntry;

/// Version of the plan, result and failure documents.
pub const FAN_OUT_VERSION: u32 = 1;

/// Table bytes planned per worker when a job does not say how many workers: at the ~33 MB/s of
/// table one Lambda reads (network-bound, docs/scaling.md), 10 GiB is under six minutes of one
/// invocation, so a table of up to `DDB_BACKUP_MAX_WORKERS` × 10 GiB finishes inside one
/// 15-minute window when the table can serve them all.
pub const BYTES_PER_WORKER: u64 = 10 * 1024 * 1024 * 1024;

/// Read units per second one worker consumes at full speed (eventually consistent, 8 KiB each:
/// ~33 MB/s of table): more workers than the table's read capacity feeds only wait on throttling.
pub const READ_UNITS_PER_WORKER: f64 = 4000.0;

/// The share of the read rate a table allows that a job holds once the table throttles, as
/// measured against DynamoDB's capacity twin (`cargo bench --bench at_limit`, docs/scaling.md):
/// the lowest of its cases, a hot key range aside. Workers beyond what this share feeds would
/// only wait on throttling.
pub const READ_SHARE_AT_LIMIT: f64 = 0.96;

/// An on-demand table's default ceiling on read request units per second (a per-table quota
/// that AWS raises on request).
pub const ON_DEMAND_READ_UNITS: f64 = 40_000.0;

/// Workers for a table of `table_bytes` (DynamoDB's `TableSizeBytes`, refreshed about every six
/// hours) that can serve `read_units` per second (the job's read budget, the provisioned
/// capacity, or [`ON_DEMAND_READ_UNITS`]): one per [`BYTES_PER_WORKER`] begun, no more than
/// the share of the reads a job holds feeds ([`READ_SHARE_AT_LIMIT`] of them,
/// [`READ_UNITS_PER_WORKER`] each), at least 1, at most `max_workers`.
pub fn workers_for(table_bytes: Option<i64>, read_units: f64, max_workers: u32) -> u32 {
    let bytes = table_bytes.unwrap_or(0).max(0) as u64;
    let by_size = bytes.div_ceil(BYTES_PER_WORKER);
    let by_reads = (read_units * READ_SHARE_AT_LIMIT / READ_UNITS_PER_WORKER)
        .ceil()
        .max(1.0) as u64;
    by_size
        .min(by_reads)
        .min(u64::from(max_workers.max(1)))
        .max(1) as u32
}

/// One worker's share of a fanned-out job: worker `worker` (0-based) of `workers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This worker, from 0.
    pub worker: u32,
    /// All workers of the job.
    pub workers: u32,
}

impl Shard {
    /// Worker `worker` of `workers`, or why not.
    pub fn new(worker: u32, workers: u32) -> Result<Shard, String> {
        if workers == 0 || worker >= workers {
            return Err(format!(
                "worker {worker} does not exist in a job of {workers} workers (workers count from 0)"
            ));
        }
        Ok(Shard { worker, workers })
    }

    /// The segments this worker scans out of `total`: `[w·T/W, (w+1)·T/W)`. The shares of all
    /// workers are disjoint, cover every segment, and differ in size by at most one.
    pub fn segments(&self, total: u32) -> Range<u32> {
        let bound =
            |w: u32| (u64::from(w) * u64::from(total) / u64::from(self.workers.max(1))) as u32;
        bound(self.worker)..bound(self.worker + 1)
    }
}

/// What the first delivery of a fanned-out job fixed, stored once at `plan.json` (the first
/// writer wins), so that a redelivery queues the same shards whatever the table reports by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Schema version ([`FAN_OUT_VERSION`]).
    pub version: u32,
    /// The job.
    pub job_id: String,
    /// Workers sharing the scan.
    pub workers: u32,
    /// Scan segments in all.
    pub segments: u32,
    /// When the plan was made (RFC 3339): the backup's start.
    pub planned_at: String,
}

/// What one worker stored once it had read its share, at `results/worker-{w:04}.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Schema version ([`FAN_OUT_VERSION`]).
    pub version: u32,
    /// The job.
    pub job_id: String,
    /// The worker, from 0.
    pub worker: u32,
    /// When its first leg started (RFC 3339).
    pub started_at: String,
    /// When it finished (RFC 3339).
    pub finished_at: String,
    /// Working time of its legs.
    pub elapsed_ms: u64,
    /// Invocations it took.
    pub legs: u32,
    /// Scan pages read.
    pub pages: u64,
    /// Items read.
    pub items: u64,
    /// Read capacity consumed.
    pub consumed_read_capacity: f64,
    /// The files it wrote.
    pub files: Vec<FileEntry>,
}

/// Why a fanned-out job failed, at `failed.json`, written once by the first worker that failed
/// for good. Its presence stops the other workers and keeps the manifest from being written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// Schema version ([`FAN_OUT_VERSION`]).
    pub version: u32,
    /// The job.
    pub job_id: String,
    /// The worker that failed; none when the job failed before or while it was shared out.
    pub worker: Option<u32>,
    /// The stage that failed.
    pub stage: String,
    /// The error.
    pub error: String,
    /// When (RFC 3339).
    pub failed_at: String,
    /// Who wrote it (unique to the invocation), so that a write whose reply was lost is
    /// recognised as this writer's own; empty in records of older versions.
    #[serde(default)]
    pub writer: String,
    /// When an operator's redrive resumed the job (RFC 3339): a resolved failure stops no
    /// worker, and the next failure is recorded over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
}

impl FailureRecord {
    /// Whether the failure still stands: recorded and not resolved by a redrive. A record that
    /// does not parse stands (it was not written by a worker that could resolve it).
    pub fn stands(body: &[u8]) -> bool {
        serde_json::from_slice::<FailureRecord>(body).map_or(true, |r| r.resolved_at.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_disjoint_cover_every_segment_and_differ_by_at_most_one() {
        for workers in 1..=40u32 {
            for total in workers..=130 {
                let shares: Vec<_> = (0..workers)
                    .map(|w| Shard::new(w, workers).unwrap().segments(total))
                    .collect();
                assert_eq!(shares[0].start, 0);
                assert_eq!(shares[workers as usize - 1].end, total);
                for pair in shares.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "{workers} of {total}");
                }
                let sizes: Vec<_> = shares.iter().map(|r| r.len()).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(
                    *min >= 1 && max - min <= 1,
                    "{workers} of {total}: {sizes:?}"
                );
            }
        }
        assert_eq!(Shard::new(2, 4).unwrap().segments(8), 4..6);
    }

    #[test]
    fn a_worker_outside_the_job_is_refused() {
        assert!(Shard::new(4, 4).is_err());
        assert!(Shard::new(0, 0).is_err());
        assert!(Shard::new(3, 4).is_ok());
    }

    #[test]
    fn workers_grow_with_the_table_and_stop_at_the_ceiling_or_what_the_reads_feed() {
        const GIB: i64 = 1024 * 1024 * 1024;
        let plenty = 1e9;
        assert_eq!(workers_for(None, plenty, 100), 1);
        assert_eq!(workers_for(Some(0), plenty, 100), 1);
        assert_eq!(workers_for(Some(10 * GIB), plenty, 100), 1);
        assert_eq!(workers_for(Some(10 * GIB + 1), plenty, 100), 2);
        assert_eq!(workers_for(Some(100 * GIB), plenty, 100), 10);
        assert_eq!(workers_for(Some(1024 * GIB), plenty, 100), 100);
        assert_eq!(workers_for(Some(1024 * GIB), plenty, 40), 40);
        assert_eq!(workers_for(Some(-5), plenty, 100), 1);
        // An on-demand table at its default ceiling feeds ten workers; a small budget, one.
        assert_eq!(workers_for(Some(1024 * GIB), ON_DEMAND_READ_UNITS, 100), 10);
        // 96 % of 160,000 units a second feeds 38.4 workers.
        assert_eq!(workers_for(Some(1024 * GIB), 160_000.0, 100), 39);
        assert_eq!(workers_for(Some(1024 * GIB), 500.0, 100), 1);
    }
}

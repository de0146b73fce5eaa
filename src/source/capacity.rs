//! DynamoDB's capacity, as a twin for tests and benches: what a table lets through per second,
//! so that a restore (and a backup) can be measured against the limit a real table sets
//! instead of against a store that never says no.
//!
//! As DynamoDB documents it: each partition serves at most 1,000 write units and 3,000 read
//! units a second, whatever the table's capacity; the table serves its provisioned rate (or its
//! on-demand ceiling), and keeps up to 300 seconds of unused capacity as burst. A request the
//! buckets cannot serve is throttled: `ProvisionedThroughputExceededException`, or for
//! `BatchWriteItem` the items it could not write, returned unprocessed.

use std::hash::{Hash, Hasher};

use tokio::time::Instant;

/// Write units per second one partition serves.
pub const PARTITION_WCU: f64 = 1000.0;
/// Read units per second one partition serves.
pub const PARTITION_RCU: f64 = 3000.0;
/// Seconds of unused table capacity DynamoDB keeps as burst.
pub const BURST_SECONDS: f64 = 300.0;

/// A token bucket: `rate` units a second, holding at most `capacity`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket of `rate` units a second holding `capacity`, starting with `tokens`.
    pub fn new(rate: f64, capacity: f64, tokens: f64) -> Self {
        TokenBucket {
            rate,
            capacity: capacity.max(rate.min(1.0)),
            tokens: tokens.min(capacity),
            last: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Units available now.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    fn spend(&mut self, units: f64) {
        self.tokens -= units;
    }
}

/// Read units a request that read `bytes` of items consumes, as DynamoDB bills a Scan or Query:
/// the bytes of all the items it read together, rounded up to 4 KiB units (at least one),
/// halved when the read is eventually consistent.
pub fn read_units(bytes: u64, consistent: bool) -> f64 {
    let units = bytes.div_ceil(4096).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

/// A stable 64-bit hash of a partition-key value: where the key sits in the table's key space.
/// Partitions and parallel Scan segments are both ranges of it, as in DynamoDB.
pub fn key_hash(value: &[u8]) -> u64 {
    // FNV-1a, then a finalizer that spreads similar keys over the whole range.
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    for byte in value {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// The start of range `index` of `of` equal ranges of the key space (the end of the last one is
/// `u64::MAX` inclusive, returned as `None`).
pub fn range_start(index: u64, of: u64) -> Option<u64> {
    let of = of.max(1);
    (index < of).then(|| ((u128::from(index) << 64) / u128::from(of)) as u64)
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// The partition the request reads (DynamoDB's `KeyRangeThroughputExceeded`).
    Partition,
    /// The table's rate: provisioned, or the on-demand ceiling.
    Table,
}

/// The shape of a twin table's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacitySpec {
    /// Partitions the keys hash to.
    pub partitions: usize,
    /// Units a second each partition serves ([`PARTITION_WCU`] or [`PARTITION_RCU`]).
    pub partition_rate: f64,
    /// Units a second the table serves: provisioned, or the on-demand ceiling.
    pub table_rate: f64,
    /// Seconds of unused table capacity kept as burst ([`BURST_SECONDS`]).
    pub burst_seconds: f64,
    /// Start with the burst full (a table idle for five minutes) instead of empty (a new one).
    pub start_with_burst: bool,
}

impl CapacitySpec {
    /// The write side of a table of `partitions` partitions and `table_rate` WCU/s, created
    /// just now (no burst saved yet).
    pub fn writes(partitions: usize, table_rate: f64) -> Self {
        CapacitySpec {
            partitions: partitions.max(1),
            partition_rate: PARTITION_WCU,
            table_rate,
            burst_seconds: BURST_SECONDS,
            start_with_burst: false,
        }
    }

    /// The read side of a provisioned table of `partitions` partitions and `table_rate` RCU/s
    /// that has been busy (no burst saved).
    pub fn reads(partitions: usize, table_rate: f64) -> Self {
        CapacitySpec {
            partition_rate: PARTITION_RCU,
            ..CapacitySpec::writes(partitions, table_rate)
        }
    }

    /// The rate the table allows when every partition is used evenly.
    pub fn allowed_rate(&self) -> f64 {
        self.table_rate
            .min(self.partition_rate * self.partitions as f64)
    }
}

/// A table's capacity: one bucket per partition and one for the table.
#[derive(Debug, Clone)]
pub struct Capacity {
    spec: CapacitySpec,
    partitions: Vec<TokenBucket>,
    table: TokenBucket,
}

impl Capacity {
    /// The capacity `spec` describes, from now.
    pub fn new(spec: CapacitySpec) -> Self {
        let partition = TokenBucket::new(
            spec.partition_rate,
            spec.partition_rate,
            spec.partition_rate,
        );
        let burst = spec.table_rate * spec.burst_seconds.max(1.0);
        // A new table starts with one second's worth; an idle one with its burst.
        let start = if spec.start_with_burst {
            burst
        } else {
            spec.table_rate
        };
        Capacity {
            spec,
            partitions: vec![partition; spec.partitions.max(1)],
            table: TokenBucket::new(spec.table_rate, burst, start),
        }
    }

    /// What it was made from.
    pub fn spec(&self) -> &CapacitySpec {
        &self.spec
    }

    /// The partition a key (its partition-key attribute, in any stable form) hashes to.
    pub fn partition_of(&self, key: &impl Hash) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % self.partitions.len() as u64) as usize
    }

    /// The partition that holds the keys at `hash` ([`key_hash`]): partitions split the key
    /// space into equal ranges.
    pub fn partition_of_hash(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.partitions.len() as u128) >> 64) as usize
    }

    /// Whether a read may start on `partition` now. DynamoDB charges a Scan what it read only
    /// once it has read it, so a read is let in while the partition and the table have any
    /// capacity left, and its cost ([`Capacity::charge`]) may leave them in debt, which the
    /// next reads wait out.
    pub fn admit_read(&mut self, partition: usize, now: Instant) -> Result<(), Throttled> {
        let index = partition % self.partitions.len();
        // The table's limit first: when both are spent, it is the one every reader must heed.
        if self.table.available(now) <= 0.0 {
            Err(Throttled::Table)
        } else if self.partitions[index].available(now) <= 0.0 {
            Err(Throttled::Partition)
        } else {
            Ok(())
        }
    }

    /// Charges `units` to `partition` and the table, into debt if need be.
    pub fn charge(&mut self, partition: usize, units: f64, now: Instant) {
        let index = partition % self.partitions.len();
        self.partitions[index].available(now);
        self.partitions[index].spend(units);
        self.table.available(now);
        self.table.spend(units);
    }

    /// Spends `units` on `partition` and the table if both have them; `false` (throttled)
    /// otherwise, spending nothing.
    pub fn try_spend(&mut self, partition: usize, units: f64, now: Instant) -> bool {
        let index = partition % self.partitions.len();
        let fits_partition = self.partitions[index].available(now) >= units;
        let fits_table = self.table.available(now) >= units;
        if fits_partition && fits_table {
            self.partitions[index].spend(units);
            self.table.spend(units);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_partition_serves_its_rate_and_the_table_its_own_with_saved_burst() {
        // One partition, a table provisioned above it: the partition is the limit.
        let mut one = Capacity::new(CapacitySpec::writes(1, 5000.0));
        let now = Instant::now();
        assert!(one.try_spend(0, 1000.0, now));
        assert!(
            !one.try_spend(0, 1.0, now),
            "the partition's second is spent"
        );
        assert!(one.try_spend(0, 500.0, now + Duration::from_millis(500)));
        assert_eq!(one.spec().allowed_rate(), 1000.0);

        // Four partitions at 2,000 WCU/s: the table is the limit; idle, it saves burst.
        let mut spec = CapacitySpec::writes(4, 2000.0);
        let mut table = Capacity::new(spec);
        let now = Instant::now();
        let spent = (0..4).filter(|p| table.try_spend(*p, 600.0, now)).count();
        assert_eq!(spent, 3, "2,000 units this second, not 2,400");
        assert_eq!(spec.allowed_rate(), 2000.0);
        spec.start_with_burst = true;
        let mut idle = Capacity::new(spec);
        let spent: f64 = (0..100)
            .map(|i| i % 4)
            .filter(|p| idle.try_spend(*p, 900.0, now))
            .map(|_| 900.0)
            .sum();
        assert_eq!(spent, 3600.0, "burst, but never past a partition's second");
    }

    #[test]
    fn keys_spread_over_the_partitions() {
        let table = Capacity::new(CapacitySpec::writes(8, 8000.0));
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            counts[table.partition_of(&format!("id-{i}"))] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}

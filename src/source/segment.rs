//! The paging loop every source shares: one segment of a parallel Scan, page by page, paced by
//! the read budget and stopped at a deadline.

use tokio::sync::mpsc;

use std::time::Duration;

use super::budget::ReadPacing;
use super::pace::Pace;
use super::{PageItems, PageRequest, ScanError, TableSource};
use crate::model::table::TableInfo;
use crate::model::Item;

/// Bytes of table per segment when choosing the segment count.
pub const BYTES_PER_SEGMENT: i64 = 128 * 1024 * 1024;
/// Assumed average item size when DynamoDB reports an item count but no size.
pub const ASSUMED_ITEM_BYTES: i64 = 1024;
/// Segments used when the table reports neither size nor count (statistics are refreshed only
/// about every six hours, so a freshly loaded table reports zero).
pub const SEGMENTS_WITHOUT_STATISTICS: u32 = 4;

/// The segment count for a job that names none: one segment per 128 MiB of table (by
/// `TableSizeBytes`, else `ItemCount` × 1 KiB), at least 1 and at most `max`; 4 (capped at `max`)
/// when the table reports neither, since its statistics may simply be stale.
pub fn auto_segments(info: &TableInfo, max: u32) -> u32 {
    let max = max.max(1);
    let size = match (info.size_bytes, info.item_count) {
        (Some(bytes), _) if bytes > 0 => bytes,
        (_, Some(count)) if count > 0 => count.saturating_mul(ASSUMED_ITEM_BYTES),
        _ => return SEGMENTS_WITHOUT_STATISTICS.min(max),
    };
    let wanted = (size + BYTES_PER_SEGMENT - 1) / BYTES_PER_SEGMENT;
    u32::try_from(wanted).unwrap_or(u32::MAX).clamp(1, max)
}

/// `segments` in the order to start them when fewer can be read at once: each segment is a
/// range of the key space and partitions are ranges of it too, so reading segments in their
/// natural order would leave the partitions of the last ones idle until the first ones are done.
/// The order is van der Corput's (positions bit-reversed): however many are started, they are
/// spread evenly over the key space.
pub fn spread_order(segments: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut segments: Vec<u32> = segments.into_iter().collect();
    segments.sort_unstable();
    let bits = usize::BITS - segments.len().saturating_sub(1).leading_zeros();
    let mut order: Vec<(u32, u32)> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                (i as u32)
                    .reverse_bits()
                    .checked_shr(32 - bits)
                    .unwrap_or(0),
                *s,
            )
        })
        .collect();
    order.sort_unstable();
    order.into_iter().map(|(_, s)| s).collect()
}

/// A page the SDK gave up on because DynamoDB kept throttling it is read again this many times,
/// after 1, 2, 4, 8 and 8 s, before the scan fails: a throttle says "slower", not "stop", and a
/// failed leg would lose what it read since its checkpoint.
const THROTTLED_PAGE_RETRIES: u32 = 5;

/// Read units a full 1 MB Scan page costs.
fn full_page_units(consistent: bool) -> f64 {
    super::capacity::read_units(1024 * 1024, consistent)
}

/// How a segment's scan ended. Each end is its own variant, so "done" can never be confused with
/// "stopped early".
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentEnd {
    /// DynamoDB returned the segment's last page.
    Done,
    /// Stopped at the deadline; the next leg resumes from this key.
    Paused {
        /// DynamoDB's `LastEvaluatedKey` of the last page read.
        resume_key: Item,
    },
    /// Whoever consumed the pages went away (it failed, and reports why); the rest is unread.
    ConsumerGone,
}

/// What one segment's scan read.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// Pages read.
    pub pages: u64,
    /// Items read.
    pub items: u64,
    /// Read capacity consumed.
    pub consumed_capacity: f64,
    /// How the scan ended.
    pub end: SegmentEnd,
    /// Whether DynamoDB throttled this segment (the budget slowed down).
    pub throttled: bool,
}

/// Reads the pages of one segment into `pages`, in order, from `request.exclusive_start_key`.
/// With a `deadline`, stops after the first page that ends past it and returns the key to resume
/// from; at least one page is read per call, so a resumed job always makes progress. Waits for
/// the worker's `budget` before every page, charges what the page consumed, and sizes pages to
/// about a second of the segment's share. A throttle of the table slows the budget (every
/// segment); a throttle of this segment's partition slows this segment alone. Stops early with
/// [`SegmentEnd::ConsumerGone`] when the receiver is gone.
pub async fn scan_segment(
    source: &dyn TableSource,
    mut request: PageRequest,
    pages: mpsc::Sender<PageItems>,
    deadline: Option<tokio::time::Instant>,
    budget: &dyn ReadPacing,
) -> Result<SegmentScan, ScanError> {
    // This segment's own pace, learned when its key range throttles.
    let partition = Pace::unlimited();
    let mut refused_in_a_row = 0;
    let mut last_page_units = 0.0;
    let mut stats = SegmentScan {
        pages: 0,
        items: 0,
        consumed_capacity: 0.0,
        end: SegmentEnd::Done,
        throttled: false,
    };
    loop {
        let per_item = stats.consumed_capacity / stats.items.max(1) as f64;
        if let Some(limit) = budget.page_limit(per_item) {
            request.limit = Some(limit);
        }
        // What the page will cost: about what the last one did; a full page at first, so that
        // segments starting together do not all read a megabyte at once.
        let expected = match (stats.pages, request.limit) {
            (0, _) => full_page_units(request.consistent_read),
            (_, Some(limit)) => {
                (per_item * f64::from(limit)).min(full_page_units(request.consistent_read))
            }
            (_, None) => last_page_units,
        };
        budget.acquire(expected).await;
        partition.acquire(0.0).await;
        let page = match source.scan_page(&request).await {
            Ok(page) => page,
            Err(err) if err.is_throttle() && refused_in_a_row < THROTTLED_PAGE_RETRIES => {
                budget.consumed(0.0, expected);
                // Past the deadline, the next leg reads it again instead.
                if let Some(key) = request.exclusive_start_key.clone() {
                    if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        stats.end = SegmentEnd::Paused { resume_key: key };
                        return Ok(stats);
                    }
                }
                // Which limit refused it is lost with the SDK's error: slow both down.
                stats.throttled = true;
                budget.throttled();
                partition.throttled();
                tokio::time::sleep(Duration::from_secs(1 << refused_in_a_row.min(3))).await;
                refused_in_a_row += 1;
                continue;
            }
            Err(err) => return Err(err),
        };
        refused_in_a_row = 0;
        budget.consumed(page.consumed_capacity, expected);
        partition.consumed(page.consumed_capacity);
        last_page_units = page.consumed_capacity;
        if page.throttles.table > 0 {
            budget.throttled();
            stats.throttled = true;
        }
        if page.throttles.partition > 0 {
            partition.throttled();
            stats.throttled = true;
        }
        stats.pages += 1;
        stats.items += page.items.len() as u64;
        stats.consumed_capacity += page.consumed_capacity;
        if !page.items.is_empty() && pages.send(page.items).await.is_err() {
            stats.end = SegmentEnd::ConsumerGone;
            return Ok(stats);
        }
        match page.last_evaluated_key {
            Some(key) if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) => {
                stats.end = SegmentEnd::Paused { resume_key: key };
                return Ok(stats);
            }
            Some(key) => request.exclusive_start_key = Some(key),
            None => {
                stats.end = SegmentEnd::Done;
                return Ok(stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::source::budget::ReadBudget;
    use crate::source::MemorySource;

    fn unlimited() -> ReadBudget {
        ReadBudget::unlimited()
    }

    fn info(size: Option<i64>, count: Option<i64>) -> TableInfo {
        let mut info = MemorySource::new("t", "id", Vec::new(), 1).table_info();
        info.size_bytes = size;
        info.item_count = count;
        info
    }

    #[test]
    fn segments_start_spread_over_the_key_space() {
        assert_eq!(spread_order(0..8), vec![0, 4, 2, 6, 1, 5, 3, 7]);
        assert_eq!(spread_order([9]), vec![9]);
        assert!(spread_order([]).is_empty());
        // Whatever the count, the first quarter started spans the whole range.
        for n in [5u32, 23, 64, 100] {
            let order = spread_order(10..10 + n);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (10..10 + n).collect::<Vec<_>>(), "a permutation");
            let first: Vec<u32> = order[..(n as usize).div_ceil(4)].to_vec();
            let (low, high) = (first.iter().min().unwrap(), first.iter().max().unwrap());
            assert!(*low < 10 + n / 4 && *high >= 10 + n / 2, "{n}: {first:?}");
        }
    }

    #[test]
    fn auto_segments_follow_the_documented_rule() {
        assert_eq!(
            auto_segments(&info(Some(0), Some(0)), 32),
            4,
            "no statistics"
        );
        assert_eq!(auto_segments(&info(None, None), 2), 2, "capped by max");
        assert_eq!(auto_segments(&info(Some(1), None), 32), 1);
        assert_eq!(auto_segments(&info(Some(BYTES_PER_SEGMENT), None), 32), 1);
        assert_eq!(
            auto_segments(&info(Some(BYTES_PER_SEGMENT + 1), None), 32),
            2
        );
        assert_eq!(
            auto_segments(&info(Some(100 * BYTES_PER_SEGMENT), None), 32),
            32
        );
        // Size missing (moto always reports 0): estimated from the count at 1 KiB per item.
        assert_eq!(auto_segments(&info(Some(0), Some(300_000)), 32), 3);
    }

    /// A memory table of `count` items keyed `id` = 0, 1, 2…, ten items a page.
    fn table(count: u32) -> MemorySource {
        let items: Vec<Item> = (0..count)
            .map(|i| {
                HashMap::from([(
                    "id".to_string(),
                    aws_sdk_dynamodb::types::AttributeValue::S(i.to_string()),
                )])
            })
            .collect();
        MemorySource::new("t", "id", items, 10)
    }

    /// The first page of `segment` of `total`, decoded.
    fn request(segment: u32, total: u32) -> PageRequest {
        PageRequest {
            table: "t".into(),
            segment,
            total_segments: total,
            exclusive_start_key: None,
            consistent_read: false,
            limit: None,
            wire_items: false,
        }
    }

    #[tokio::test]
    async fn segments_of_a_memory_table_cover_every_item_once() {
        let source = table(103);
        let mut seen = Vec::new();
        for segment in 0..4 {
            let (tx, mut rx) = mpsc::channel(100);
            let stats = scan_segment(&source, request(segment, 4), tx, None, &unlimited())
                .await
                .unwrap();
            while let Some(page) = rx.recv().await {
                let PageItems::Decoded(page) = page else {
                    panic!("decoded items were asked for");
                };
                seen.extend(page);
            }
            assert!(stats.pages >= 2);
        }
        assert_eq!(seen.len(), 103);
        let mut ids: Vec<_> = seen
            .iter()
            .map(|i| i["id"].as_s().unwrap().parse::<u32>().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, (0..103).collect::<Vec<_>>());
    }

    /// A memory table whose pages report throttles, and whose first `refusals` requests fail as
    /// if the SDK had given up on a throttled page.
    struct Throttling {
        inner: MemorySource,
        throttles: crate::source::PageThrottles,
        refusals: std::sync::atomic::AtomicU32,
    }

    #[async_trait::async_trait]
    impl TableSource for Throttling {
        async fn describe(&self, table: &str) -> Result<TableInfo, ScanError> {
            self.inner.describe(table).await
        }

        async fn scan_page(&self, request: &PageRequest) -> Result<crate::source::Page, ScanError> {
            use std::sync::atomic::Ordering;
            if self
                .refusals
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(ScanError::request(
                    "Scan",
                    "t",
                    crate::aws::FailureKind::Throttled,
                    "ProvisionedThroughputExceededException",
                ));
            }
            let mut page = self.inner.scan_page(request).await?;
            page.throttles = self.throttles;
            Ok(page)
        }
    }

    async fn scan_all(source: &Throttling, budget: &ReadBudget) -> Result<u64, ScanError> {
        let (tx, mut rx) = mpsc::channel::<PageItems>(100);
        let drain = tokio::spawn(async move {
            let mut items = 0;
            while let Some(page) = rx.recv().await {
                items += page.len() as u64;
            }
            items
        });
        scan_segment(source, request(0, 1), tx, None, budget).await?;
        Ok(drain.await.unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_partitions_throttle_slows_its_segment_and_a_tables_throttle_the_whole_budget() {
        let throttling = |by_table: u32, by_partition: u32| Throttling {
            inner: table(100),
            throttles: crate::source::PageThrottles {
                table: by_table,
                partition: by_partition,
            },
            refusals: 0.into(),
        };
        let budget = ReadBudget::new(1000.0);
        assert_eq!(scan_all(&throttling(0, 1), &budget).await.unwrap(), 100);
        assert_eq!(
            budget.throttles(),
            0,
            "a hot key range is not the table's limit"
        );
        assert_eq!(budget.current_rate(), Some(1000.0));
        assert_eq!(scan_all(&throttling(1, 0), &budget).await.unwrap(), 100);
        assert!(budget.throttles() >= 1);
        assert!(budget.current_rate().unwrap() < 1000.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_page_the_sdk_gave_up_on_for_throttling_is_read_again_five_times() {
        let source = Throttling {
            inner: table(100),
            throttles: Default::default(),
            refusals: THROTTLED_PAGE_RETRIES.into(),
        };
        let budget = ReadBudget::unlimited();
        let start = tokio::time::Instant::now();
        assert_eq!(scan_all(&source, &budget).await.unwrap(), 100, "every item");
        assert_eq!(start.elapsed(), Duration::from_secs(1 + 2 + 4 + 8 + 8));

        source.refusals.store(
            THROTTLED_PAGE_RETRIES + 1,
            std::sync::atomic::Ordering::SeqCst,
        );
        let err = scan_all(&source, &budget).await.unwrap_err();
        assert!(err.is_throttle(), "{err}");
    }

    #[tokio::test]
    async fn a_scan_whose_consumer_is_gone_does_not_report_the_segment_done() {
        let source = table(30);
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let stats = scan_segment(&source, request(0, 1), tx, None, &unlimited())
            .await
            .unwrap();
        assert_eq!(stats.end, SegmentEnd::ConsumerGone);
        assert_eq!(stats.pages, 1, "stops at the first page nobody takes");
    }
}

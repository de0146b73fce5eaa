//! The paging loop every source shares: one segment of a parallel Scan, page by page, paced by
//! the read budget and stopped at a deadline.

use tokio::sync::mpsc;

use super::budget::ReadBudget;
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
/// from; at least one page is read per call, so a resumed job always makes progress. With a
/// `budget`, waits for it before every page, charges what the page consumed, sizes pages to about
/// a second of the segment's share, and slows the job down when DynamoDB throttles. Stops early
/// with [`SegmentEnd::ConsumerGone`] when the receiver is gone.
pub async fn scan_segment(
    source: &dyn TableSource,
    mut request: PageRequest,
    pages: mpsc::Sender<PageItems>,
    deadline: Option<tokio::time::Instant>,
    budget: Option<&ReadBudget>,
) -> Result<SegmentScan, ScanError> {
    let mut stats = SegmentScan {
        pages: 0,
        items: 0,
        consumed_capacity: 0.0,
        end: SegmentEnd::Done,
        throttled: false,
    };
    loop {
        if let Some(budget) = budget {
            budget.acquire().await;
            let per_item = stats.consumed_capacity / stats.items.max(1) as f64;
            if let Some(limit) = budget.page_limit(request.total_segments, per_item) {
                request.limit = Some(limit);
            }
        }
        let throttles_before = source.throttle_count();
        let page = source.scan_page(&request).await?;
        if let Some(budget) = budget {
            budget.consumed(page.consumed_capacity);
            if source.throttle_count() > throttles_before {
                budget.throttled();
                stats.throttled = true;
            }
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
    use crate::source::MemorySource;

    fn info(size: Option<i64>, count: Option<i64>) -> TableInfo {
        let mut info = MemorySource::new("t", "id", Vec::new(), 1).table_info();
        info.size_bytes = size;
        info.item_count = count;
        info
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
            let stats = scan_segment(&source, request(segment, 4), tx, None, None)
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

    #[tokio::test]
    async fn a_scan_whose_consumer_is_gone_does_not_report_the_segment_done() {
        let source = table(30);
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let stats = scan_segment(&source, request(0, 1), tx, None, None)
            .await
            .unwrap();
        assert_eq!(stats.end, SegmentEnd::ConsumerGone);
        assert_eq!(stats.pages, 1, "stops at the first page nobody takes");
    }
}

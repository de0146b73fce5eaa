//! The read budget: how fast a job's scan segments read, shared by every segment of a worker so
//! a nightly backup cannot starve the live table. It works from what DynamoDB says each page
//! cost (`ConsumedCapacity`), so it behaves the same on provisioned and on-demand tables: at most
//! the job's budget, and once the table throttles, at what the table accepted in the last
//! second, growing back until it throttles again ([`Pace`]). A throttle of one partition
//! (a hot key range) slows only the segment reading it ([`super::segment`]).

use async_trait::async_trait;

use super::pace::Pace;

/// Unused budget kept for later, in seconds: an idle spell is no licence to burst.
const SAVED_UP_SECS: f64 = 0.5;

/// How a scan's pages are paced: the read budget in production; the benches measure other
/// policies against it through the same loop.
#[async_trait]
pub trait ReadPacing: Send + Sync {
    /// Waits until a page expected to cost `expected` read units may be read, and spends them.
    async fn acquire(&self, expected: f64);
    /// The page acquired for `expected` consumed `units`.
    fn consumed(&self, units: f64, expected: f64);
    /// DynamoDB refused a page for the table's rate (not one partition's).
    fn throttled(&self);
    /// Items per Scan page so that one page costs about a second of a segment's share, given
    /// what an item cost so far (`units_per_item`); `None`: DynamoDB's own 1 MB pages.
    fn page_limit(&self, units_per_item: f64) -> Option<i32>;
}

/// The read budget of one worker: a ceiling in read units per second (the job's budget, split
/// among its workers) or none, and the table's pace once it throttles.
#[derive(Debug)]
pub struct ReadBudget {
    pace: Pace,
    /// Segments reading at once, sharing the pace.
    segments: u32,
}

impl ReadBudget {
    /// At most `rcu_per_sec`.
    pub fn new(rcu_per_sec: f64) -> ReadBudget {
        ReadBudget {
            // A job that starts with a second's burst on every worker would spend the
            // table's own second of slack, and throttle from then on.
            pace: Pace::new(rcu_per_sec).starting_empty(SAVED_UP_SECS),
            segments: 1,
        }
    }

    /// As fast as the table serves, paced only once it throttles.
    pub fn unlimited() -> ReadBudget {
        ReadBudget {
            pace: Pace::unlimited(),
            segments: 1,
        }
    }

    /// Shared by `segments` reading at once: each page is sized to a second of its share.
    pub fn shared_by(mut self, segments: u32) -> Self {
        self.segments = segments.max(1);
        self
    }

    /// The configured ceiling, if any.
    pub fn limit(&self) -> Option<f64> {
        self.pace.ceiling()
    }

    /// The rate in force now: the ceiling, or less after throttling; `None` while nothing
    /// limits it.
    pub fn current_rate(&self) -> Option<f64> {
        self.pace.rate()
    }

    /// Throttles seen (debounced).
    pub fn throttles(&self) -> u64 {
        self.pace.throttles()
    }
}

#[async_trait]
impl ReadPacing for ReadBudget {
    async fn acquire(&self, expected: f64) {
        self.pace.acquire(expected).await;
    }

    fn consumed(&self, units: f64, expected: f64) {
        self.pace.settle(units, expected);
    }

    fn throttled(&self) {
        self.pace.throttled();
    }

    fn page_limit(&self, units_per_item: f64) -> Option<i32> {
        if !(units_per_item.is_finite() && units_per_item > 0.0) {
            return None;
        }
        let share = self.current_rate()? / f64::from(self.segments);
        Some((share / units_per_item).clamp(1.0, 10_000.0) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::Instant;

    /// `consumers` tasks reading pages of `page_cost` as fast as the budget allows for `secs`.
    async fn drain(budget: Arc<ReadBudget>, consumers: usize, page_cost: f64, secs: u64) -> f64 {
        let until = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..consumers {
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                let mut used = 0.0;
                loop {
                    budget.acquire(0.0).await;
                    if Instant::now() >= until {
                        return used;
                    }
                    budget.consumed(page_cost, 0.0);
                    used += page_cost;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        let mut total = 0.0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    }

    #[tokio::test(start_paused = true)]
    async fn eight_segments_together_stay_within_ten_percent_of_the_budget() {
        let budget = Arc::new(ReadBudget::new(100.0));
        let used = drain(budget, 8, 12.5, 60).await;
        let rate = used / 60.0;
        assert!(
            (90.0..=110.0).contains(&rate),
            "{rate} RCU/s for a budget of 100"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pages_bigger_than_a_second_of_budget_still_average_out() {
        let budget = Arc::new(ReadBudget::new(10.0));
        let used = drain(budget, 2, 64.0, 120).await;
        let rate = used / 120.0;
        assert!(
            (9.0..=11.0).contains(&rate),
            "{rate} RCU/s for a budget of 10"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_paces_at_what_the_table_took_then_it_grows_back_to_the_ceiling() {
        let budget = Arc::new(ReadBudget::new(100.0));
        // The table took 60 units/s of the 100 allowed, then refused.
        for _ in 0..10 {
            budget.consumed(6.0, 0.0);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        budget.throttled();
        budget.throttled(); // the same refusal, seen by another segment
        assert_eq!(budget.throttles(), 1);
        let rate = budget.current_rate().unwrap();
        assert!((50.0..=60.0).contains(&rate), "{rate}");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.current_rate(), Some(100.0), "back at the ceiling");
        assert_eq!(ReadBudget::unlimited().page_limit(0.5), None);
    }

    #[test]
    fn page_limits_follow_the_cost_of_an_item() {
        let budget = ReadBudget::new(40.0).shared_by(4);
        assert_eq!(budget.page_limit(0.0), None);
        // 10 RCU/s per segment at 0.5 RCU per item: 20 items a page.
        assert_eq!(budget.page_limit(0.5), Some(20));
        assert_eq!(budget.page_limit(1000.0), Some(1));
    }
}

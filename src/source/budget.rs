//! The read budget: a ceiling on read capacity units per second for a whole job, shared by every
//! segment, so a nightly backup cannot starve the live table. It works from what DynamoDB says
//! each page cost (`ConsumedCapacity`), so it behaves the same on provisioned and on-demand
//! tables. On throttling it halves its rate and then recovers step by step (AIMD), which slows the
//! whole job, not just the request the SDK retries.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// After a throttle, the rate grows back by this share of the limit per second.
const RECOVERY_PER_SEC: f64 = 0.05;
/// The rate never drops below this share of the limit.
const FLOOR: f64 = 0.05;
/// Unused budget kept for later, in seconds of the current rate.
const SAVED_UP_SECS: f64 = 0.5;
/// Throttles closer together than this count once (segments see the same burst).
const THROTTLE_DEBOUNCE: Duration = Duration::from_secs(1);

/// A token bucket in read capacity units that may go into debt: a page's cost is known only after
/// it is read, so the next page waits until the debt is paid.
#[derive(Debug)]
pub struct ReadBudget {
    limit: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    balance: f64,
    rate: f64,
    updated: Instant,
    last_throttle: Option<Instant>,
    throttles: u64,
}

impl ReadBudget {
    /// A budget of `rcu_per_sec` (must be positive).
    pub fn new(rcu_per_sec: f64) -> ReadBudget {
        ReadBudget {
            limit: rcu_per_sec,
            state: Mutex::new(State {
                balance: 0.0,
                rate: rcu_per_sec,
                updated: Instant::now(),
                last_throttle: None,
                throttles: 0,
            }),
        }
    }

    /// The configured ceiling.
    pub fn limit(&self) -> f64 {
        self.limit
    }

    /// The rate in force now (below the limit after throttling).
    pub fn current_rate(&self) -> f64 {
        let mut state = self.lock();
        self.refill(&mut state, Instant::now());
        state.rate
    }

    /// Throttles seen (after debouncing).
    pub fn throttles(&self) -> u64 {
        self.lock().throttles
    }

    /// Waits until the budget allows another request.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.lock();
                self.refill(&mut state, Instant::now());
                if state.balance >= 0.0 {
                    return;
                }
                // At least a millisecond: a debt of a rounding error must not spin.
                Duration::from_secs_f64((-state.balance / state.rate).clamp(0.001, 60.0))
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Charges what a request consumed.
    pub fn consumed(&self, units: f64) {
        if units.is_finite() && units > 0.0 {
            let mut state = self.lock();
            self.refill(&mut state, Instant::now());
            state.balance -= units;
        }
    }

    /// DynamoDB throttled a request: halve the rate (not below 5 % of the limit).
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        self.refill(&mut state, now);
        if state
            .last_throttle
            .is_some_and(|t| now.duration_since(t) < THROTTLE_DEBOUNCE)
        {
            return;
        }
        state.last_throttle = Some(now);
        state.throttles += 1;
        state.rate = (state.rate / 2.0).max(self.limit * FLOOR);
        state.balance = state.balance.min(0.0);
    }

    /// Items per Scan page so that one page costs about a second of this segment's share of the
    /// budget, given what an item cost so far; `None` before anything is known.
    pub fn page_limit(&self, segments: u32, units_per_item: f64) -> Option<i32> {
        if !(units_per_item.is_finite() && units_per_item > 0.0) {
            return None;
        }
        let share = self.current_rate() / f64::from(segments.max(1));
        Some((share / units_per_item).clamp(1.0, 10_000.0) as i32)
    }

    fn refill(&self, state: &mut State, now: Instant) {
        let elapsed = now.duration_since(state.updated).as_secs_f64();
        state.updated = now;
        if state.rate < self.limit {
            state.rate = (state.rate + self.limit * RECOVERY_PER_SEC * elapsed).min(self.limit);
        }
        // At most half a second of unused budget is saved up, so an idle spell is no licence to
        // burst.
        state.balance = (state.balance + state.rate * elapsed).min(state.rate * SAVED_UP_SECS);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// `consumers` tasks reading pages of `page_cost` as fast as the budget allows for `secs`.
    async fn drain(budget: Arc<ReadBudget>, consumers: usize, page_cost: f64, secs: u64) -> f64 {
        let until = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for _ in 0..consumers {
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                let mut used = 0.0;
                loop {
                    budget.acquire().await;
                    if Instant::now() >= until {
                        return used;
                    }
                    budget.consumed(page_cost);
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
    async fn throttling_halves_the_rate_then_it_recovers() {
        let budget = ReadBudget::new(100.0);
        budget.throttled();
        budget.throttled(); // the same burst, seen by another segment
        assert_eq!(budget.throttles(), 1);
        assert!((budget.current_rate() - 50.0).abs() < 1.0);
        tokio::time::advance(Duration::from_secs(2)).await;
        budget.throttled();
        assert!(budget.current_rate() < 35.0, "{}", budget.current_rate());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(budget.current_rate(), 100.0, "recovered after 30 s");
    }

    #[test]
    fn page_limits_follow_the_cost_of_an_item() {
        let budget = ReadBudget::new(40.0);
        assert_eq!(budget.page_limit(4, 0.0), None);
        // 10 RCU/s per segment at 0.5 RCU per item: 20 items a page.
        assert_eq!(budget.page_limit(4, 0.5), Some(20));
        assert_eq!(budget.page_limit(4, 1000.0), Some(1));
    }
}

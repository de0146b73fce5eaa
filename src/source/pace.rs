//! Pacing at a table's limit, for reads and writes alike: at most a ceiling (a job's budget),
//! and once the table throttles, at what it accepted in the last second, growing back until it
//! throttles again. Pacing at what the table takes, instead of leaving each request to back off
//! on its own, holds a job near the table's limit: requests waiting out exponential backoffs
//! leave capacity unused, and halving the rate at each throttle leaves more (docs/scaling.md).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// After a throttle, the pace grows back by this share of the first pace learned, a second.
/// Growth by a fixed amount, not a factor, is what makes independent pacers sharing one table
/// converge to equal shares, as TCP's do.
const RECOVERY_PER_SEC: f64 = 0.05;
/// With no throttle for this long, the pace doubles every second until the table throttles.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// A throttle sets the pace to this share of what it was, or to what the table accepted in the
/// last second if that is less.
const AFTER_THROTTLE: f64 = 0.9;
/// Throttles closer together than this count once (concurrent requests see the same refusal).
const DEBOUNCE: Duration = Duration::from_secs(1);
/// Never slower than this many units a second.
const SLOWEST: f64 = 1.0;

/// Drops what the table accepted more than a second before `now`.
fn forget_before(state: &mut State, now: Instant) {
    while let Some(&(at, old)) = state.accepted.front() {
        if now.duration_since(at) <= Duration::from_secs(1) {
            break;
        }
        state.accepted.pop_front();
        state.accepted_sum -= old;
    }
    if state.accepted.is_empty() {
        state.accepted_sum = 0.0;
    }
}

/// One pace: a token bucket whose rate is the ceiling, or what the table was found to accept.
/// Shared by every request it paces.
#[derive(Debug)]
pub struct Pace {
    ceiling: Option<f64>,
    /// Seconds of unused pace saved up at most.
    saved_secs: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    updated: Instant,
    /// The table's pace at its last throttle (`None`: it has not throttled).
    learned: Option<f64>,
    /// The first pace learned: the unit of additive growth.
    first_learned: f64,
    last_throttle: Option<Instant>,
    throttles: u64,
    /// Units the table accepted, by when, over the last second.
    accepted: VecDeque<(Instant, f64)>,
    accepted_sum: f64,
}

impl Pace {
    /// At most `rate` units a second (one second of it may be saved up), and less once the
    /// table throttles.
    pub fn new(rate: f64) -> Self {
        Self::with_ceiling(Some(rate.max(SLOWEST)))
    }

    /// No ceiling but what the table accepts.
    pub fn unlimited() -> Self {
        Self::with_ceiling(None)
    }

    fn with_ceiling(ceiling: Option<f64>) -> Self {
        Pace {
            ceiling,
            saved_secs: 1.0,
            state: Mutex::new(State {
                tokens: ceiling.unwrap_or(0.0),
                updated: Instant::now(),
                learned: None,
                first_learned: 0.0,
                last_throttle: None,
                throttles: 0,
                accepted: VecDeque::new(),
                accepted_sum: 0.0,
            }),
        }
    }

    /// Starting with nothing saved up, and saving at most `secs` of unused pace: requests
    /// wait their turn instead of spending a second's worth at once.
    pub fn starting_empty(mut self, secs: f64) -> Self {
        self.lock().tokens = 0.0;
        self.saved_secs = secs.clamp(0.0, 1.0);
        self
    }

    /// The ceiling it was made with.
    pub fn ceiling(&self) -> Option<f64> {
        self.ceiling
    }

    /// The rate in force now; `None` while nothing limits it.
    pub fn rate(&self) -> Option<f64> {
        self.rate_at(&self.lock(), Instant::now())
    }

    /// Throttles seen (debounced).
    pub fn throttles(&self) -> u64 {
        self.lock().throttles
    }

    /// Waits until `units` may be spent, and spends them. More than a second's worth waits for
    /// a full second and then drives the bucket into debt, so the average rate still holds.
    /// `acquire(0.0)` waits only for a debt to be paid (a read whose cost [`Pace::consumed`]
    /// charges once known).
    pub async fn acquire(&self, units: f64) {
        loop {
            let wait = {
                let mut state = self.lock();
                let now = Instant::now();
                let Some(rate) = self.refill(&mut state, now) else {
                    return;
                };
                let needed = units.min(rate * self.saved_secs);
                if state.tokens >= needed {
                    state.tokens -= units;
                    return;
                }
                // At least a millisecond: a debt of a rounding error must not spin. At most a
                // second: a pace growing back pays the debt sooner than the rate of now says.
                Duration::from_secs_f64(((needed - state.tokens) / rate).clamp(0.001, 1.0))
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The table accepted `units`: they count toward the pace learned at the next throttle.
    pub fn accepted(&self, units: f64) {
        if !(units.is_finite() && units > 0.0) {
            return;
        }
        let mut state = self.lock();
        let now = Instant::now();
        state.accepted.push_back((now, units));
        state.accepted_sum += units;
        forget_before(&mut state, now);
    }

    /// A request the table accepted consumed `units`, known only now (a read): charged to the
    /// bucket, into debt if need be, and counted as accepted.
    pub fn consumed(&self, units: f64) {
        self.settle(units, 0.0);
    }

    /// A request acquired for `expected` units consumed `units`: the difference is charged (or
    /// given back), and `units` counted as accepted.
    pub fn settle(&self, units: f64, expected: f64) {
        let units = if units.is_finite() {
            units.max(0.0)
        } else {
            0.0
        };
        {
            let mut state = self.lock();
            let now = Instant::now();
            if self.refill(&mut state, now).is_some() {
                state.tokens -= units - expected;
            }
        }
        self.accepted(units);
    }

    /// The table refused a request: pace at a little under what it accepted in the last second.
    pub fn throttled(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        if state
            .last_throttle
            .is_some_and(|t| now.duration_since(t) < DEBOUNCE)
        {
            return;
        }
        forget_before(&mut state, now);
        if state.accepted_sum <= 0.0 {
            // Nothing went through lately (a table refusing everything at first): nothing to
            // learn a pace from; the requests' own backoff waits instead.
            return;
        }
        state.throttles += 1;
        // The rate between the first and the last request accepted in the last second, when
        // they are a quarter of a second apart at least; else the last second's sum (a pace
        // learned low grows back).
        let accepted = match (state.accepted.front(), state.accepted.back()) {
            (Some(&(first, first_units)), Some(&(last, _)))
                if last.duration_since(first) >= Duration::from_millis(250) =>
            {
                (state.accepted_sum - first_units) / last.duration_since(first).as_secs_f64()
            }
            _ => state.accepted_sum,
        };
        // A step down from the pace in force, and never above what the table took: the first
        // throttle finds the table's pace, later ones keep to it.
        let current = self.rate_at(&state, now).unwrap_or(f64::INFINITY);
        let learned = (current * AFTER_THROTTLE).min(accepted).max(SLOWEST);
        if state.learned.is_none() {
            state.first_learned = learned;
        }
        state.learned = Some(learned);
        state.last_throttle = Some(now);
        // What was saved up is spent: the table just said so.
        state.tokens = state.tokens.min(0.0);
        state.updated = now;
    }

    /// The rate in force: the ceiling, or the table's pace once learned (growing back since the
    /// last throttle), whichever is lower.
    fn rate_at(&self, state: &State, now: Instant) -> Option<f64> {
        let learned = state.learned.map(|rate| {
            let since = state
                .last_throttle
                .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
            // Slowly at first, near the limit just found; then, with no throttle for a while
            // (the others are done, or the table grew), doubling every second.
            let probe = (since - PROBE_AFTER.as_secs_f64()).clamp(0.0, 60.0);
            (rate + state.first_learned * RECOVERY_PER_SEC * since) * probe.exp2()
        });
        match (self.ceiling, learned) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .map(|r| r.max(SLOWEST))
    }

    /// Adds what accrued since the last look (at most `saved_secs` worth saved up); the rate.
    fn refill(&self, state: &mut State, now: Instant) -> Option<f64> {
        let rate = self.rate_at(state, now)?;
        let elapsed = now.duration_since(state.updated).as_secs_f64();
        state.tokens = (state.tokens + elapsed * rate).min(rate * self.saved_secs);
        state.updated = now;
        Some(rate)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unpaced_until_a_throttle_then_what_the_table_took_then_doubling_after_quiet() {
        let pace = Pace::unlimited();
        assert_eq!(pace.rate(), None);
        pace.acquire(1e9).await;
        for _ in 0..10 {
            pace.consumed(100.0);
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        pace.throttled();
        let learned = pace.rate().unwrap();
        assert!((880.0..=1000.0).contains(&learned), "{learned}");
        pace.throttled(); // the same refusal, seen by another request
        assert_eq!(pace.throttles(), 1);
        tokio::time::advance(Duration::from_secs(3)).await;
        let grown = pace.rate().unwrap();
        assert!(
            grown > learned * 3.0,
            "{grown} after 3 s without a throttle"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_ceiling_holds_the_average_whatever_the_request_size() {
        let pace = Pace::new(100.0);
        let start = Instant::now();
        let mut spent = 0.0;
        while Instant::now() - start < Duration::from_secs(60) {
            pace.acquire(0.0).await;
            pace.consumed(64.0);
            spent += 64.0;
        }
        let rate = spent / 60.0;
        assert!((95.0..=110.0).contains(&rate), "{rate} units/s for 100");
    }
}

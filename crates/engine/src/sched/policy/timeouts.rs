//! Attempt time limits: the fixed or percentage rule, the running median it takes a
//! percentage of, and the longer limit an in-process attempt gets.
//!
//! Owns the attempt durations seen so far. Does not own the attempts, nor decide what a
//! timeout leads to (the facade stops the worker and reroutes the chunk).

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    time::{Duration, Instant},
};

use crate::sched::TimeoutSpec;

/// The default least limit of a percentage timeout (`--task-timeout-floor`).
pub const DEFAULT_TIMEOUT_FLOOR: Duration = Duration::from_secs(10);
/// A percentage timeout before there is a median to take a percentage of.
pub const FIRST_CHUNKS_LIMIT: Duration = Duration::from_secs(60);
/// The default deadline for a new worker's hello (`--start-timeout`): a worker links
/// libgdal and is ready in ~50 ms here, so 10 s is a wide margin on a loaded machine.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

/// An in-process attempt may take this many time limits, and at least
/// `INPROC_LIMIT_FLOOR`, before the run gives up on it: a chunk that timed out on a worker
/// may be slow for a reason, but a thread cannot be killed, so a hang must end somewhere.
pub const INPROC_LIMIT_FACTOR: u32 = 10;
pub const INPROC_LIMIT_FLOOR: Duration = Duration::from_secs(60);

/// How long a worker whose channel closed may take to exit by itself before it is killed.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// The limit of an in-process attempt when a worker attempt's is `limit`.
pub fn inproc_limit(limit: Duration) -> Duration {
    (limit * INPROC_LIMIT_FACTOR).max(INPROC_LIMIT_FLOOR)
}

/// The per-attempt time limit, from the configured rule and the durations so far.
#[derive(Debug)]
pub struct Timeouts {
    spec: Option<TimeoutSpec>,
    floor: Duration,
    durations: RunningMedian,
}

impl Timeouts {
    pub fn new(spec: Option<TimeoutSpec>, floor: Duration) -> Timeouts {
        Timeouts {
            spec,
            floor,
            durations: RunningMedian::default(),
        }
    }

    /// A successful worker attempt took `d`.
    pub fn record(&mut self, d: Duration) {
        self.durations.push(d);
    }

    /// The median duration of the worker attempts that succeeded so far.
    pub fn median(&self) -> Option<Duration> {
        self.durations.median()
    }

    /// The current per-attempt limit, or `None` without a timeout.
    pub fn limit(&self) -> Option<Duration> {
        match self.spec? {
            TimeoutSpec::Fixed(d) => Some(d),
            TimeoutSpec::PercentOfMedian(p) => {
                // No median yet: a stalled first chunk must still end somewhere. As soon as
                // one attempt finished, its duration is the median: a hanging chunk then
                // waits a percentage of it (held up by the floor, which keeps one fast
                // sample from making the limit tight), not the start-of-run limit.
                let Some(med) = self.durations.median() else {
                    return Some(self.floor.max(FIRST_CHUNKS_LIMIT));
                };
                // Never below the floor, so that fast chunks cannot make a limit too tight
                // for an ordinary hiccup (and never below 1 ms, so that no-op chunks cannot
                // time everything out).
                Some(
                    med.mul_f64(p / 100.0)
                        .max(self.floor)
                        .max(Duration::from_millis(1)),
                )
            }
        }
    }

    /// Whether an attempt started at `since` has run out of time at `now`.
    pub fn expired(&self, since: Instant, now: Instant) -> bool {
        self.limit().is_some_and(|l| now >= since + l)
    }
}

/// The median of attempt durations, O(log n) per sample: two heaps, the lower half as a
/// max-heap and the upper half as a min-heap.
#[derive(Debug, Default)]
pub struct RunningMedian {
    low: BinaryHeap<Duration>,
    high: BinaryHeap<Reverse<Duration>>,
}

impl RunningMedian {
    pub fn push(&mut self, d: Duration) {
        if self.low.peek().is_none_or(|&m| d <= m) {
            self.low.push(d);
        } else {
            self.high.push(Reverse(d));
        }
        if self.low.len() > self.high.len() + 1 {
            let v = self.low.pop().expect("non-empty");
            self.high.push(Reverse(v));
        } else if self.high.len() > self.low.len() {
            let Reverse(v) = self.high.pop().expect("non-empty");
            self.low.push(v);
        }
    }

    pub fn len(&self) -> usize {
        self.low.len() + self.high.len()
    }

    /// The upper median for an even count.
    pub fn median(&self) -> Option<Duration> {
        if self.len().is_multiple_of(2) {
            self.high.peek().map(|r| r.0)
        } else {
            self.low.peek().copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn running_median_matches_sorting() {
        let mut m = RunningMedian::default();
        assert!(m.len() == 0 && m.median().is_none());
        let mut all = Vec::new();
        let mut x = 12345u64;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = Duration::from_micros(x % 10_000);
            m.push(d);
            all.push(d);
            all.sort();
            assert_eq!(m.median(), Some(all[all.len() / 2]));
        }
    }

    #[test]
    fn no_spec_no_limit() {
        let mut t = Timeouts::new(None, ms(10));
        t.record(ms(5));
        assert_eq!(t.limit(), None);
        let t0 = Instant::now();
        assert!(!t.expired(t0, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn fixed_limit_ignores_durations() {
        let mut t = Timeouts::new(Some(TimeoutSpec::Fixed(ms(100))), ms(10_000));
        for d in [1, 2, 3, 4] {
            t.record(ms(d));
        }
        assert_eq!(t.limit(), Some(ms(100)));
        let t0 = Instant::now();
        assert!(!t.expired(t0, t0 + ms(99)));
        assert!(t.expired(t0, t0 + ms(100)));
    }

    #[test]
    fn percentage_waits_for_one_sample_then_follows_the_median() {
        let mut t = Timeouts::new(Some(TimeoutSpec::PercentOfMedian(200.0)), ms(0));
        assert_eq!(t.limit(), Some(FIRST_CHUNKS_LIMIT));
        t.record(ms(100));
        assert_eq!(t.limit(), Some(ms(200)));
        t.record(ms(300));
        assert_eq!(t.limit(), Some(ms(600)));
        t.record(ms(200));
        assert_eq!(t.limit(), Some(ms(400)));
        // The floor holds the limit up; and a larger floor replaces the first-chunks limit.
        let mut t = Timeouts::new(Some(TimeoutSpec::PercentOfMedian(200.0)), ms(90_000));
        assert_eq!(t.limit(), Some(ms(90_000)));
        for _ in 0..3 {
            t.record(ms(10));
        }
        assert_eq!(t.limit(), Some(ms(90_000)));
    }

    #[test]
    fn percentage_never_goes_below_a_millisecond() {
        let mut t = Timeouts::new(Some(TimeoutSpec::PercentOfMedian(1.0)), Duration::ZERO);
        for _ in 0..3 {
            t.record(Duration::ZERO);
        }
        assert_eq!(t.limit(), Some(ms(1)));
    }

    #[test]
    fn in_process_limit_is_ten_limits_at_least_a_minute() {
        assert_eq!(inproc_limit(ms(100)), INPROC_LIMIT_FLOOR);
        assert_eq!(
            inproc_limit(Duration::from_secs(30)),
            Duration::from_secs(300)
        );
    }
}

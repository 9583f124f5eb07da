//! Restart backoff: how long a lane waits before its next worker after consecutive deaths.
//! The first restart is immediate, then `base * 2^n` up to `max`, spread by +-20 % jitter.
//!
//! Owns the per-lane schedule (`BackoffIter`) and the run's seeded jitter source (`Jitter`).
//! Does not decide whether a death counts (a recycle does not) nor carry out the wait.
//!
//! The jitter source is one per run, not one per lane: the draws are shared by all lanes in
//! the order restarts happen, so a seed reproduces a whole run's delays.

use std::time::Duration;

/// The nominal restart delays of one lane, one per consecutive death: as an iterator,
/// `next()` counts a death and yields the delay after it. `reset()` when the lane finishes
/// a chunk.
#[derive(Debug, Clone)]
pub struct BackoffIter {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl BackoffIter {
    pub fn new(base: Duration, max: Duration) -> BackoffIter {
        BackoffIter {
            base,
            max,
            failures: 0,
        }
    }

    /// Deaths since the lane last finished a chunk.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The lane finished a chunk: the next death restarts at once again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The delay for the deaths counted so far, without counting another (a deliberate stop
    /// restarts after the lane's current delay).
    pub fn current(&self) -> Duration {
        if self.failures <= 1 {
            return Duration::ZERO;
        }
        self.base
            .saturating_mul(1 << (self.failures - 2).min(16))
            .min(self.max)
    }
}

impl Iterator for BackoffIter {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        Some(self.current())
    }
}

/// Deterministic jitter (xorshift, no I/O): a factor in [0.8, 1.2) per delay.
#[derive(Debug, Clone)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter { state: seed | 1 }
    }

    /// `nominal` spread by the next draw; a zero delay stays zero and draws nothing.
    pub fn spread(&mut self, nominal: Duration) -> Duration {
        if nominal.is_zero() {
            return Duration::ZERO;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let j = 0.8 + 0.4 * ((self.state >> 11) as f64 / (1u64 << 53) as f64);
        nominal.mul_f64(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_up_to_the_cap() {
        let it = BackoffIter::new(ms(25), ms(150));
        let got: Vec<Duration> = it.take(7).collect();
        assert_eq!(
            got,
            vec![ms(0), ms(25), ms(50), ms(100), ms(150), ms(150), ms(150)]
        );
    }

    #[test]
    fn current_does_not_count_and_reset_starts_over() {
        let mut it = BackoffIter::new(ms(10), ms(1_000));
        assert_eq!(it.current(), Duration::ZERO);
        it.next();
        it.next();
        it.next();
        assert_eq!(it.failures(), 3);
        assert_eq!(it.current(), ms(20));
        assert_eq!(it.current(), ms(20));
        it.reset();
        assert_eq!(it.failures(), 0);
        assert_eq!(it.next(), Some(Duration::ZERO));
    }

    #[test]
    fn many_deaths_neither_overflow_nor_pass_the_cap() {
        let mut it = BackoffIter::new(Duration::from_secs(1), Duration::from_secs(2));
        let last = it.by_ref().take(100_000).last();
        assert_eq!(last, Some(Duration::from_secs(2)));
    }

    #[test]
    fn jitter_stays_within_twenty_percent_and_is_seeded() {
        let (mut a, mut b) = (Jitter::new(7), Jitter::new(7));
        for _ in 0..1_000 {
            let d = a.spread(ms(1_000));
            assert!(d >= ms(800) && d < ms(1_200), "{d:?}");
            assert_eq!(d, b.spread(ms(1_000)));
        }
        let mut c = Jitter::new(8);
        let spread: Vec<Duration> = (0..4).map(|_| c.spread(ms(1_000))).collect();
        let same: Vec<Duration> = (0..4).map(|_| a.spread(ms(1_000))).collect();
        assert_ne!(spread, same);
    }

    #[test]
    fn a_zero_delay_draws_nothing() {
        let (mut a, mut b) = (Jitter::new(3), Jitter::new(3));
        assert_eq!(a.spread(Duration::ZERO), Duration::ZERO);
        assert_eq!(a.spread(ms(100)), b.spread(ms(100)));
    }
}

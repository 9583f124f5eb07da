//! Admission: whether new attempts may be handed out now (available memory against
//! `--min-free-memory`, measured by the supervisor), and how long dispatch has been held.
//!
//! Owns the open/closed flag and the time spent closed. Does not measure memory, and does
//! not hold back anything already running.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Admission {
    open: bool,
    closed_since: Option<Instant>,
    waited: Duration,
}

impl Admission {
    pub fn new(open: bool, now: Instant) -> Admission {
        Admission {
            open,
            closed_since: (!open).then_some(now),
            waited: Duration::ZERO,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Admission opens or closes at `now`; the same state again changes nothing.
    pub fn set(&mut self, open: bool, now: Instant) {
        if open && !self.open {
            if let Some(t) = self.closed_since.take() {
                self.waited += now.saturating_duration_since(t);
            }
        } else if !open && self.open {
            self.closed_since = Some(now);
        }
        self.open = open;
    }

    /// Time dispatch has been held so far, the current closed stretch included.
    pub fn waited(&self, now: Instant) -> Duration {
        self.waited
            + self
                .closed_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn open_from_the_start_has_waited_nothing() {
        let t0 = Instant::now();
        let a = Admission::new(true, t0);
        assert!(a.is_open());
        assert_eq!(a.waited(t0 + ms(500)), Duration::ZERO);
    }

    #[test]
    fn closed_stretches_add_up() {
        let t0 = Instant::now();
        let mut a = Admission::new(false, t0);
        assert!(!a.is_open());
        assert_eq!(a.waited(t0 + ms(30)), ms(30));
        a.set(true, t0 + ms(100));
        assert!(a.is_open());
        assert_eq!(a.waited(t0 + ms(1_000)), ms(100));
        a.set(false, t0 + ms(1_000));
        // Closing again while closed does not restart the stretch.
        a.set(false, t0 + ms(1_200));
        assert_eq!(a.waited(t0 + ms(1_250)), ms(350));
        a.set(true, t0 + ms(1_300));
        // Opening while open changes nothing.
        a.set(true, t0 + ms(2_000));
        assert_eq!(a.waited(t0 + ms(5_000)), ms(400));
    }
}

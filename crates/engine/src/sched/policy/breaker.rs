//! The breaker: when failures say the run cannot succeed, end it with a `FatalReason`
//! instead of restarting workers forever.
//!
//! Owns the in-a-row counters (start failures, start timeouts, idle deaths, quarantined plan
//! chunks) and their limits. Does not classify deaths (the facade tells it what kind of
//! death it saw), nor count quarantined parts per plan chunk (the chunk table does).

use std::time::Duration;

use crate::sched::{FailureCause, FatalReason, SchedConfig};

/// One worker death, as the breaker needs to see it.
#[derive(Debug)]
pub struct Death<'a> {
    /// The cause the report records (`StartTimeout` counts as a start timeout).
    pub cause: &'a FailureCause,
    /// The worker never said hello.
    pub before_ready: bool,
    /// It held no chunk: an infrastructure death (idle, starting, stopped while idle).
    pub idle: bool,
    /// Its last stderr line, for the message.
    pub last_words: Option<&'a str>,
}

#[derive(Debug)]
pub struct Breaker {
    max_start_failures: u32,
    max_start_timeouts: u32,
    max_idle_deaths: u32,
    max_quarantines_in_row: u32,
    start_timeout: Duration,
    start_failures_in_row: u32,
    start_timeouts_in_row: u32,
    idle_deaths_since_progress: u32,
    quarantines_in_row: u32,
}

impl Breaker {
    pub fn new(cfg: &SchedConfig) -> Breaker {
        Breaker {
            max_start_failures: cfg.max_start_failures,
            max_start_timeouts: cfg.max_start_timeouts,
            max_idle_deaths: cfg.max_idle_deaths,
            max_quarantines_in_row: cfg.max_quarantines_in_row,
            start_timeout: cfg.start_timeout,
            start_failures_in_row: 0,
            start_timeouts_in_row: 0,
            idle_deaths_since_progress: 0,
            quarantines_in_row: 0,
        }
    }

    /// A worker said hello: starting works.
    pub fn worker_ready(&mut self) {
        self.start_failures_in_row = 0;
        self.start_timeouts_in_row = 0;
    }

    /// An attempt succeeded: the workers can compute.
    pub fn progress(&mut self) {
        self.idle_deaths_since_progress = 0;
        self.quarantines_in_row = 0;
    }

    /// A worker died; `Some` when that ends the run.
    pub fn worker_died(&mut self, death: Death<'_>) -> Option<FatalReason> {
        if death.before_ready {
            self.start_failures_in_row += 1;
        }
        if *death.cause == FailureCause::StartTimeout {
            self.start_timeouts_in_row += 1;
        }
        if death.idle {
            self.idle_deaths_since_progress += 1;
        }
        if self.start_failures_in_row >= self.max_start_failures {
            return Some(FatalReason::StartFailures {
                in_row: self.start_failures_in_row,
                last: death.cause.clone(),
                last_words: death.last_words.map(str::to_string),
            });
        }
        if self.start_timeouts_in_row >= self.max_start_timeouts {
            return Some(FatalReason::StartTimeouts {
                in_row: self.start_timeouts_in_row,
                limit: self.start_timeout,
            });
        }
        if self.idle_deaths_since_progress >= self.max_idle_deaths {
            return Some(FatalReason::IdleDeaths {
                deaths: self.idle_deaths_since_progress,
                last: death.cause.clone(),
            });
        }
        None
    }

    /// A plan chunk had its first part quarantined (further parts of the same plan chunk
    /// are not counted again); `Some` when that ends the run.
    pub fn quarantined(&mut self, cause: Option<&FailureCause>) -> Option<FatalReason> {
        self.quarantines_in_row += 1;
        (self.quarantines_in_row >= self.max_quarantines_in_row).then(|| FatalReason::Quarantines {
            in_row: self.quarantines_in_row,
            cause: cause.cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        let mut cfg = SchedConfig::new(2, 1, 3);
        cfg.max_start_failures = 3;
        cfg.max_start_timeouts = 2;
        cfg.max_idle_deaths = 4;
        cfg.max_quarantines_in_row = 3;
        Breaker::new(&cfg)
    }

    fn segv() -> FailureCause {
        FailureCause::Signal {
            signal: 11,
            name: "SIGSEGV".into(),
        }
    }

    fn starting_death(cause: &FailureCause) -> Death<'_> {
        Death {
            cause,
            before_ready: true,
            idle: true,
            last_words: Some("cannot load libgdal"),
        }
    }

    #[test]
    fn start_failures_in_a_row_trip_it() {
        let mut b = breaker();
        let c = FailureCause::ExitCode { code: 127 };
        assert_eq!(b.worker_died(starting_death(&c)), None);
        assert_eq!(b.worker_died(starting_death(&c)), None);
        let why = b.worker_died(starting_death(&c)).expect("third in a row");
        assert!(matches!(why, FatalReason::StartFailures { in_row: 3, .. }));
        assert_eq!(
            why.to_string(),
            "workers cannot start: 3 in a row died before they were ready \
             (last one exited with code 127; its last words: cannot load libgdal)"
        );
    }

    #[test]
    fn a_ready_worker_starts_the_count_over() {
        let mut b = breaker();
        let c = FailureCause::ExitCode { code: 1 };
        // Not counted as idle, so that only the start-failure count is under test.
        let d = || Death {
            cause: &c,
            before_ready: true,
            idle: false,
            last_words: None,
        };
        for _ in 0..2 {
            assert_eq!(b.worker_died(d()), None);
        }
        b.worker_ready();
        for _ in 0..2 {
            assert_eq!(b.worker_died(d()), None);
        }
    }

    #[test]
    fn the_second_start_timeout_in_a_row_trips_it() {
        let mut b = breaker();
        let c = FailureCause::StartTimeout;
        assert_eq!(b.worker_died(starting_death(&c)), None);
        let why = b.worker_died(starting_death(&c)).expect("second in a row");
        assert!(matches!(why, FatalReason::StartTimeouts { in_row: 2, .. }));
        assert!(
            why.to_string().contains("did not say hello within 10s"),
            "{why}"
        );
    }

    #[test]
    fn idle_deaths_trip_it_unless_a_chunk_finishes() {
        let mut b = breaker();
        let c = segv();
        let idle = || Death {
            cause: &c,
            before_ready: false,
            idle: true,
            last_words: None,
        };
        for _ in 0..3 {
            assert_eq!(b.worker_died(idle()), None);
        }
        b.progress();
        for _ in 0..3 {
            assert_eq!(b.worker_died(idle()), None);
        }
        let why = b.worker_died(idle()).expect("fourth since progress");
        assert_eq!(
            why,
            FatalReason::IdleDeaths {
                deaths: 4,
                last: segv()
            }
        );
    }

    #[test]
    fn deaths_with_a_chunk_do_not_count() {
        let mut b = breaker();
        let c = segv();
        for _ in 0..100 {
            let busy = Death {
                cause: &c,
                before_ready: false,
                idle: false,
                last_words: None,
            };
            assert_eq!(b.worker_died(busy), None);
        }
    }

    #[test]
    fn quarantines_in_a_row_trip_it_and_progress_resets_them() {
        let mut b = breaker();
        let c = segv();
        assert_eq!(b.quarantined(Some(&c)), None);
        assert_eq!(b.quarantined(Some(&c)), None);
        b.progress();
        assert_eq!(b.quarantined(Some(&c)), None);
        assert_eq!(b.quarantined(None), None);
        let why = b.quarantined(None).expect("third in a row");
        assert_eq!(
            why.to_string(),
            "3 chunks in a row were quarantined with none done in between: \
             the workers cannot compute this input (unknown cause)"
        );
        let mut b = breaker();
        b.quarantined(Some(&c));
        b.quarantined(Some(&c));
        let why = b.quarantined(Some(&c)).expect("third in a row");
        assert!(why.to_string().ends_with("(killed by SIGSEGV)"), "{why}");
    }
}

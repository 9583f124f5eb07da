//! The breaker: when failures say the run cannot succeed, end it with a `FatalReason`
//! instead of restarting workers forever.
//!
//! Owns the in-a-row counters (start failures, start timeouts, idle deaths, quarantined plan
//! chunks, plan chunks whose first attempt died) and their limits. Does not classify deaths
//! (the facade tells it what kind of death it saw), nor count quarantined parts per plan
//! chunk (the chunk table does), nor decide when parts failed alike (the facade's `fail`).
//!
//! Systematic failure: a kernel that crashes on every chunk (or hangs, or a fault injected
//! on every chunk) would otherwise be retried, bisected and quarantined chunk by chunk, a
//! worker restart per attempt. Its evidence is that the *first* attempts of distinct plan
//! chunks die with none done in between: retries and parts of a chunk known to fail are
//! expected to die and are not evidence (they run last, behind healthy work, so at the end
//! of a run they die in a row whatever the cause); a chunk that succeeds anywhere proves
//! the computation works and starts the count over.

use std::{collections::BTreeSet, time::Duration};

use protocol::{FaultKind, TaskId};

use crate::sched::{Culprit, FailureCause, FatalReason, SchedConfig};

/// An attempt on a worker that died (crashed, or was stopped after a timeout).
#[derive(Debug)]
pub struct AttemptDeath<'a> {
    /// Its plan chunk.
    pub root: TaskId,
    /// The first attempt of a plan chunk (not a retry, not a part).
    pub first_of_plan_chunk: bool,
    pub cause: &'a FailureCause,
    /// The fault injected on this attempt.
    pub fault: Option<FaultKind>,
}

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
    /// The plan's chunk count: a smaller plan needs all of its chunks dying.
    plan_chunks: u32,
    max_dying_chunks: u32,
    suspect: String,
    /// Plan chunks whose first attempt died since the last success.
    dying: BTreeSet<TaskId>,
    /// Attempts that died since the last success.
    deaths: u32,
    /// The last one's cause and fault, and the last words heard from a dead worker.
    last: Option<(FailureCause, Option<FaultKind>)>,
    last_words: Option<String>,
}

impl Breaker {
    /// The breaker for a plan of `plan_chunks` chunks.
    pub fn new(cfg: &SchedConfig, plan_chunks: usize) -> Breaker {
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
            plan_chunks: plan_chunks as u32,
            max_dying_chunks: cfg.max_dying_chunks.max(1),
            suspect: cfg.suspect.clone(),
            dying: BTreeSet::new(),
            deaths: 0,
            last: None,
            last_words: None,
        }
    }

    /// A worker process is gone; its last stderr line names the next death's cause.
    pub fn heard(&mut self, last_words: Option<&str>) {
        self.last_words = last_words.map(str::to_string);
    }

    /// An attempt on a worker died; `Some` when the first attempts of enough distinct plan
    /// chunks died with none done in between.
    pub fn attempt_died(&mut self, d: AttemptDeath<'_>) -> Option<FatalReason> {
        self.deaths += 1;
        self.last = Some((d.cause.clone(), d.fault));
        if d.first_of_plan_chunk {
            self.dying.insert(d.root);
        }
        (self.dying.len() as u32 >= self.max_dying_chunks).then(|| self.systematic())
    }

    /// Bisection found every part of a dead chunk failing like it, twice over, and is about
    /// to quarantine them: `Some` when that is so for a plan too small to trip
    /// `attempt_died` (each of its chunks died at its first attempt, none done since).
    pub fn parts_fail_alike(&mut self) -> Option<FatalReason> {
        let needed = self.plan_chunks.min(self.max_dying_chunks).max(1);
        (self.dying.len() as u32 >= needed).then(|| self.systematic())
    }

    fn systematic(&self) -> FatalReason {
        let (cause, fault) = self
            .last
            .clone()
            .unwrap_or((FailureCause::Disconnected, None));
        FatalReason::SystematicDeaths {
            chunks: self.dying.len() as u32,
            deaths: self.deaths,
            cause,
            culprit: match fault {
                Some(k) => Culprit::InjectedFault(k),
                None => Culprit::Computation(self.suspect.clone()),
            },
            last_words: self.last_words.clone(),
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
        self.dying.clear();
        self.deaths = 0;
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
        Breaker::new(&cfg, 10)
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

    fn died<'a>(root: u32, first: bool, cause: &'a FailureCause) -> AttemptDeath<'a> {
        AttemptDeath {
            root: TaskId(root),
            first_of_plan_chunk: first,
            cause,
            fault: None,
        }
    }

    #[test]
    fn first_attempts_of_distinct_plan_chunks_trip_it() {
        let mut cfg = SchedConfig::new(2, 1, 3);
        cfg.max_dying_chunks = 3;
        cfg.suspect = "the kernel libk.so".into();
        let mut b = Breaker::new(&cfg, 10);
        let c = segv();
        b.heard(Some("segfault in k_run"));
        // The same plan chunk again, retries and parts: no evidence.
        assert_eq!(b.attempt_died(died(0, true, &c)), None);
        assert_eq!(b.attempt_died(died(0, true, &c)), None);
        assert_eq!(b.attempt_died(died(0, false, &c)), None);
        assert_eq!(b.attempt_died(died(5, false, &c)), None);
        assert_eq!(b.attempt_died(died(1, true, &c)), None);
        let why = b.attempt_died(died(2, true, &c)).expect("third plan chunk");
        assert_eq!(
            why.to_string(),
            "the kernel libk.so fails on every chunk: the first attempts of 3 chunks died \
             with none done in between (6 attempts died, the last one killed by SIGSEGV; its \
             last words: segfault in k_run)"
        );
    }

    #[test]
    fn a_success_starts_the_systematic_count_over_and_a_fault_is_named() {
        let mut cfg = SchedConfig::new(2, 1, 3);
        cfg.max_dying_chunks = 2;
        let mut b = Breaker::new(&cfg, 10);
        let c = FailureCause::ExitCode { code: 42 };
        assert_eq!(b.attempt_died(died(0, true, &c)), None);
        b.progress();
        assert_eq!(b.attempt_died(died(1, true, &c)), None);
        let d = AttemptDeath {
            fault: Some(FaultKind::Exit),
            ..died(2, true, &c)
        };
        let why = b.attempt_died(d).expect("two since the success");
        assert!(
            why.to_string().starts_with(
                "the fault injected with --inject-fault exit: the first attempts of 2 chunks"
            ),
            "{why}"
        );
    }

    #[test]
    fn parts_failing_alike_trip_it_only_when_every_plan_chunk_died() {
        let mut cfg = SchedConfig::new(2, 1, 3);
        cfg.max_dying_chunks = 4;
        let c = segv();
        let mut b = Breaker::new(&cfg, 2);
        b.attempt_died(died(0, true, &c));
        assert_eq!(b.parts_fail_alike(), None, "chunk 1 has not died");
        b.attempt_died(died(1, true, &c));
        assert!(b.parts_fail_alike().is_some());
        // A large plan needs the full count.
        let mut b = Breaker::new(&cfg, 100);
        b.attempt_died(died(0, true, &c));
        b.attempt_died(died(1, true, &c));
        assert_eq!(b.parts_fail_alike(), None);
    }
}

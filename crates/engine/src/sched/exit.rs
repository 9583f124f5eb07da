//! Exits: a worker process is gone. `on_exit` settles its attempt and slot (`settle_exit`),
//! records the death, asks the breaker, and `restart`s the lane at once or after a jittered
//! backoff, or retires it; `spawn` starts a lane's next incarnation.
//!
//! Does not decide to stop a worker (`stop`, `tick`) nor what a failed attempt leads to
//! (`fail`: the attempt an exit ends is handed there). The backoff and breaker rules
//! themselves live in `policy`.
//!
//! A worker that dies holding a part of a chunk split for crashes is restarted at once and
//! its lane's backoff is left alone: bisection expects that part to kill its worker, so the
//! death is the part's, not the infrastructure's (the part is quarantined or split; the
//! breaker bounds how many such deaths a run may take). Backoff is for deaths with no
//! chunk to blame: idle or starting workers, and a plan chunk's own attempts (it may be the
//! machine, not the chunk, until its parts say otherwise).

use std::time::{Duration, Instant};

use crate::observe::RunEvent;

use super::{
    policy::breaker::Death, Executor, ExitInfo, FailureCause, SchedAction, Scheduler, SplitReason,
    WorkerKey, WorkerState,
};

impl Scheduler {
    /// A worker process is gone: settle its attempt and slot, record the death, ask the
    /// breaker, and restart the lane (at once or after a backoff) or retire it.
    pub(super) fn on_exit(
        &mut self,
        key: WorkerKey,
        exit: ExitInfo,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some(st) = self.lanes.current(key).cloned() else {
            return;
        };
        self.breaker
            .heard(exit.stderr_tail.last().map(String::as_str));
        let Some((cause, death)) = self.settle_exit(key, st, &exit, now, out) else {
            return;
        };
        let ms = self.history.ms(now);
        let mut pid = None;
        if let Some(r) = self.history.worker_mut(key) {
            r.exited_ms = Some(ms);
            r.cause = Some(cause.clone());
            r.stderr_tail = exit.stderr_tail.clone();
            pid = r.pid;
        }
        // Recycled, or killed for losing a speculative race: stopped on purpose, no death.
        let deliberate = matches!(
            cause,
            FailureCause::Recycled | FailureCause::Superseded { .. }
        );
        self.history.note(
            now,
            RunEvent::WorkerExited {
                worker: key.id.0,
                gen: key.gen,
                pid,
                cause: Some(cause.clone()),
                deliberate,
                stderr_tail: exit.stderr_tail.clone(),
            },
        );
        if deliberate {
            tracing::debug!(worker = key.id.0, gen = key.gen, "recycled worker exited");
        } else {
            tracing::info!(worker = key.id.0, gen = key.gen, cause = %cause.summary(), "worker died");
        }
        if self.done {
            // The attempt's failure ended the run (the breaker): no restart.
            return;
        }
        let on_part = death.on_part;
        let death = Death {
            cause: &cause,
            before_ready: death.before_ready,
            idle: death.idle,
            last_words: exit.stderr_tail.last().map(String::as_str),
        };
        if let Some(why) = self.breaker.worker_died(death) {
            return self.fatal(why, out);
        }
        let why = if deliberate {
            Restart::Deliberate
        } else if on_part {
            Restart::PartDied
        } else {
            Restart::Died
        };
        self.restart(key, why, now, out);
    }

    /// The exit's effect on the lane's attempt and slot; the cause to record and what kind
    /// of death it was, or `None` when the lane was not alive.
    fn settle_exit(
        &mut self,
        key: WorkerKey,
        st: WorkerState,
        exit: &ExitInfo,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) -> Option<(FailureCause, DeathKind)> {
        let observed = FailureCause::from_exit(exit);
        match st {
            WorkerState::Busy {
                pid,
                task,
                attempt,
                slot,
                since,
                ..
            } => {
                // The process is gone: nothing can write the slot any more.
                self.slots.give_back(slot);
                let on_part = self.is_crash_part(task);
                let executor = Executor::worker(key, pid);
                self.fail_attempt(
                    (task, attempt),
                    executor,
                    (since, now),
                    observed.clone(),
                    out,
                );
                Some((observed, DeathKind::working(on_part)))
            }
            WorkerState::Stopping {
                cause,
                slot,
                deferred,
                kill_at,
                pid,
                ..
            } => {
                if let Some(slot) = slot {
                    self.slots.give_back(slot);
                }
                // What we decided (timeout, garbage...) explains the death better than the
                // signal we sent; but an out-of-memory death is still that, and a closed
                // channel followed by a death we did not cause is that death.
                let we_killed = kill_at.is_none();
                let cause = match (&cause, &observed) {
                    (_, FailureCause::OverMemory { .. }) => observed,
                    (FailureCause::Disconnected, _) if !we_killed => observed,
                    _ => cause,
                };
                let mut on_part = false;
                if let Some((task, attempt, since)) = deferred {
                    on_part = self.is_crash_part(task);
                    let executor = Executor::worker(key, pid.unwrap_or(0));
                    self.fail_attempt((task, attempt), executor, (since, now), cause.clone(), out);
                }
                // A worker stopped while it held no chunk (start timeout, closed channel while
                // idle) is an infrastructure death, like one that dies on its own.
                let idle = slot.is_none() && cause != FailureCause::Recycled;
                Some((
                    cause,
                    DeathKind {
                        // Only a worker stopped before its hello has no pid.
                        before_ready: idle && pid.is_none(),
                        idle,
                        on_part,
                    },
                ))
            }
            WorkerState::Starting { .. } => Some((
                observed,
                DeathKind {
                    before_ready: true,
                    idle: true,
                    on_part: false,
                },
            )),
            WorkerState::Idle { .. } => Some((
                observed,
                DeathKind {
                    before_ready: false,
                    idle: true,
                    on_part: false,
                },
            )),
            WorkerState::Backoff { .. } | WorkerState::Retired => None,
        }
    }

    /// After a worker's exit: a new incarnation now or after the lane's backoff, or none if
    /// no chunk needs a worker any more.
    fn restart(&mut self, key: WorkerKey, why: Restart, now: Instant, out: &mut Vec<SchedAction>) {
        if self.all_assigned() {
            self.lanes.get_mut(key.id).state = WorkerState::Retired;
            return;
        }
        let deliberate = why == Restart::Deliberate;
        let lane = self.lanes.get_mut(key.id);
        let nominal = match why {
            Restart::Deliberate => lane.backoff.current(),
            Restart::PartDied => {
                self.counters.restarts += 1;
                Duration::ZERO
            }
            Restart::Died => {
                self.counters.restarts += 1;
                lane.backoff.next().unwrap_or_default()
            }
        };
        let failures = lane.backoff.failures();
        let delay = self.jitter.spread(nominal);
        let next = WorkerKey {
            id: key.id,
            gen: key.gen + 1,
        };
        self.history.note(
            now,
            RunEvent::WorkerRestart {
                worker: key.id.0,
                gen: next.gen,
                delay_ms: delay.as_millis() as u64,
                deliberate,
            },
        );
        if delay.is_zero() {
            tracing::debug!(
                worker = key.id.0,
                gen = next.gen,
                failures,
                "restarting worker"
            );
            self.spawn(next, now, out);
        } else {
            tracing::info!(
                worker = key.id.0,
                gen = next.gen,
                failures,
                delay_ms = delay.as_millis() as u64,
                "restarting worker after a backoff"
            );
            self.lanes.get_mut(key.id).state = WorkerState::Backoff {
                gen: next.gen,
                until: now + delay,
            };
        }
    }

    pub(super) fn spawn(&mut self, key: WorkerKey, now: Instant, out: &mut Vec<SchedAction>) {
        self.lanes.starting(key, now);
        self.history.worker_spawned(key, now);
        out.push(SchedAction::Spawn { key });
    }

    /// `task` is a part of a chunk split because it kept killing workers.
    fn is_crash_part(&self, task: protocol::TaskId) -> bool {
        self.chunks
            .get(task)
            .parent
            .is_some_and(|p| self.chunks.get(p).split == Some(SplitReason::Crashes))
    }
}

/// Why a lane restarts, which says how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Restart {
    /// Stopped on purpose (recycled): after the lane's current delay, counting nothing.
    Deliberate,
    /// Died holding a part of a chunk split for crashes: at once (see the module doc).
    PartDied,
    /// Any other death: the lane's next backoff delay.
    Died,
}

/// What kind of death a worker exit was, for the breaker and the restart.
#[derive(Debug, Clone, Copy)]
struct DeathKind {
    before_ready: bool,
    idle: bool,
    /// It held a part of a chunk split for crashes.
    on_part: bool,
}

impl DeathKind {
    /// Died holding a chunk.
    fn working(on_part: bool) -> DeathKind {
        DeathKind {
            before_ready: false,
            idle: false,
            on_part,
        }
    }
}

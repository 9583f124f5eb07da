//! Deadlines: on each `Tick`, ends the run if an in-process attempt is far past the limit,
//! kills a worker that did not say hello in time, stops a busy worker past the task
//! timeout, escalates a stop whose grace is over to KILL, and restarts a lane whose backoff
//! is over.
//!
//! Does not compute deadlines (`next_deadline` in the facade and `policy::timeouts` do) nor
//! carry out the stops and restarts it asks for (`stop`, `exit`).

use std::time::Instant;

use crate::observe::RunEvent;

use super::{
    policy::timeouts::inproc_limit, FailureCause, FatalReason, SchedAction, Scheduler, Sig,
    WorkerKey, WorkerState,
};

impl Scheduler {
    pub(super) fn on_tick(&mut self, now: Instant, out: &mut Vec<SchedAction>) {
        let limit = self.time_limit();
        // A thread cannot be killed: an in-process attempt far past the limit ends the run
        // rather than hang it. (With --in-process, the limit is for workers only: none here.)
        if let (Some(l), true) = (limit, self.cfg.workers > 0) {
            let hung = self
                .inproc
                .running()
                .find(|r| now >= r.since + inproc_limit(l))
                .map(|r| r.task);
            if let Some(task) = hung {
                let why = FatalReason::InProcessHang {
                    task,
                    limit: inproc_limit(l),
                };
                return self.fatal(why, out);
            }
        }
        for id in self.lanes.ids().collect::<Vec<_>>() {
            match self.lanes.get(id).state.clone() {
                WorkerState::Starting { gen, since } if now >= since + self.cfg.start_timeout => {
                    tracing::info!(
                        worker = id.0,
                        "worker did not say hello within {:?}: killing it",
                        self.cfg.start_timeout
                    );
                    self.stop_worker(
                        WorkerKey { id, gen },
                        FailureCause::StartTimeout,
                        Sig::Kill,
                        now,
                        out,
                    );
                }
                WorkerState::Busy {
                    gen,
                    since,
                    task,
                    attempt,
                    ..
                } if self.timeouts.expired(since, now) => {
                    self.counters.timeouts += 1;
                    let after_ms = (now - since).as_millis() as u64;
                    self.history.note(
                        now,
                        RunEvent::ChunkTimedOut {
                            task: task.0,
                            attempt: attempt.0,
                            worker: id.0,
                            gen,
                            after_ms,
                        },
                    );
                    tracing::info!(
                        worker = id.0,
                        after_ms,
                        limit_ms = limit.map_or(0, |l| l.as_millis() as u64),
                        "task timeout: stopping the worker"
                    );
                    self.stop_worker(
                        WorkerKey { id, gen },
                        FailureCause::Timeout { after_ms },
                        Sig::Term,
                        now,
                        out,
                    );
                }
                WorkerState::Stopping {
                    gen,
                    kill_at: Some(at),
                    ..
                } if now >= at => {
                    tracing::debug!(
                        worker = id.0,
                        gen,
                        "worker did not exit in time: killing it"
                    );
                    out.push(SchedAction::Signal {
                        key: WorkerKey { id, gen },
                        sig: Sig::Kill,
                    });
                    if let WorkerState::Stopping { kill_at, .. } = &mut self.lanes.get_mut(id).state
                    {
                        *kill_at = None;
                    }
                }
                WorkerState::Backoff { gen, until } if now >= until => {
                    if self.all_assigned() {
                        self.lanes.get_mut(id).state = WorkerState::Retired;
                    } else {
                        self.spawn(WorkerKey { id, gen }, now, out);
                    }
                }
                _ => {}
            }
        }
    }
}

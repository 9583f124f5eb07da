//! Stopping workers on purpose: `stop_worker` for garbage, a closed channel, a start or task
//! timeout (TERM then KILL after a grace, or KILL at once; a closed channel waits a moment
//! for the exit status first); recycling one over its soft memory limit once it is idle
//! (`on_soft_limit`, `after_idle`); and retiring lanes no chunk needs any more.
//!
//! Does not settle what a process's exit means for its attempt and slot, nor restart the
//! lane (`exit`); does not notice deadlines (`tick`).

use std::time::Instant;

use crate::observe::RunEvent;

use super::{
    policy::timeouts::DISCONNECT_GRACE, Executor, FailureCause, SchedAction, Scheduler, Sig,
    WorkerId, WorkerKey, WorkerState,
};

impl Scheduler {
    /// Stop a worker on purpose (garbage, disconnect, timeout): its chunk's attempt fails now,
    /// but its slot stays held until the process has exited.
    pub(super) fn stop_worker(
        &mut self,
        key: WorkerKey,
        cause: FailureCause,
        sig: Sig,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some(st) = self.lanes.current(key).cloned() else {
            return;
        };
        // A closed channel is classified by the exit status that follows: give the process a
        // moment to finish dying on its own before we kill it (and mask its real cause).
        let defer = cause == FailureCause::Disconnected;
        let (pid, slot, deferred) = match st {
            WorkerState::Busy {
                pid,
                task,
                attempt,
                slot,
                since,
                ..
            } => {
                if defer {
                    (Some(pid), Some(slot), Some((task, attempt, since)))
                } else {
                    let executor = Executor::worker(key, pid);
                    self.fail_attempt((task, attempt), executor, (since, now), cause.clone(), out);
                    (Some(pid), Some(slot), None)
                }
            }
            WorkerState::Idle { pid, .. } => (Some(pid), None, None),
            WorkerState::Starting { .. } => (None, None, None),
            // Already stopping: escalate to KILL if asked.
            WorkerState::Stopping { .. } => {
                if sig == Sig::Kill && !defer {
                    tracing::debug!(worker = key.id.0, gen = key.gen, cause = %cause.summary(), "stopping worker: killing it now");
                    out.push(SchedAction::Signal {
                        key,
                        sig: Sig::Kill,
                    });
                    if let WorkerState::Stopping { kill_at, .. } =
                        &mut self.lanes.get_mut(key.id).state
                    {
                        *kill_at = None;
                    }
                }
                return;
            }
            WorkerState::Backoff { .. } | WorkerState::Retired => return,
        };
        tracing::info!(
            worker = key.id.0,
            gen = key.gen,
            cause = %cause.summary(),
            signal = ?(!defer).then_some(&sig),
            "stopping worker"
        );
        let kill_at = if defer {
            Some(now + DISCONNECT_GRACE)
        } else {
            out.push(SchedAction::Signal {
                key,
                sig: sig.clone(),
            });
            match sig {
                Sig::Term => Some(now + self.cfg.kill_grace),
                Sig::Kill => None,
            }
        };
        self.lanes.get_mut(key.id).state = WorkerState::Stopping {
            gen: key.gen,
            pid,
            cause,
            kill_at,
            slot,
            deferred,
        };
    }

    pub(super) fn on_soft_limit(
        &mut self,
        key: WorkerKey,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        match self.lanes.current(key) {
            Some(WorkerState::Busy { .. }) => {
                tracing::debug!(
                    worker = key.id.0,
                    "over the soft memory limit: recycling after its chunk"
                );
                self.lanes.get_mut(key.id).recycle = true;
            }
            Some(WorkerState::Idle { .. }) => {
                self.lanes.get_mut(key.id).recycle = true;
                self.after_idle(key, now, out);
            }
            _ => {}
        }
    }

    /// A worker has just become idle: recycle it, retire it, or leave it for `pump`.
    pub(super) fn after_idle(&mut self, key: WorkerKey, now: Instant, out: &mut Vec<SchedAction>) {
        let lane = self.lanes.get_mut(key.id);
        if lane.recycle {
            lane.recycle = false;
            let pid = match lane.state {
                WorkerState::Idle { pid, .. } => Some(pid),
                _ => None,
            };
            lane.state = WorkerState::Stopping {
                gen: key.gen,
                pid,
                cause: FailureCause::Recycled,
                kill_at: Some(now + self.cfg.kill_grace),
                slot: None,
                deferred: None,
            };
            let last_task = lane.last_task;
            self.counters.recycles += 1;
            if let Some(r) = self.history.worker_mut(key) {
                r.recycled = true;
            }
            if let Some(t) = last_task {
                self.history.recycled_after(t);
            }
            self.history.note(
                now,
                RunEvent::WorkerRecycled {
                    worker: key.id.0,
                    gen: key.gen,
                },
            );
            tracing::info!(
                worker = key.id.0,
                gen = key.gen,
                "recycling worker (soft memory limit)"
            );
            out.push(SchedAction::Shutdown { key });
        } else if self.all_assigned() {
            self.retire(key.id, out);
        }
    }

    pub(super) fn retire(&mut self, id: WorkerId, out: &mut Vec<SchedAction>) {
        let lane = self.lanes.get_mut(id);
        if let WorkerState::Idle { gen, .. } | WorkerState::Starting { gen, .. } = lane.state {
            out.push(SchedAction::Shutdown {
                key: WorkerKey { id, gen },
            });
        }
        if let WorkerState::Idle { .. }
        | WorkerState::Starting { .. }
        | WorkerState::Backoff { .. } = lane.state
        {
            tracing::debug!(worker = id.0, "no work left for the lane: retiring it");
            lane.state = WorkerState::Retired;
        }
    }
}

//! Dispatch: handing chunks out. `pump` gives queued chunks to free in-process lanes and to
//! idle workers (within `max_busy`, while admission is open, one free slot each), with the
//! fault to inject, and with nothing queued lets `speculate` back up long attempts;
//! `on_ready` turns a worker that said hello into an idle one (or retires it when no chunk
//! needs it); `busy_with` matches a worker's reply to the attempt it was
//! given (any other reply is late); and `all_assigned` answers whether any chunk still
//! needs a worker.
//!
//! Does not decide what an attempt's end leads to (`done`, `fail`), stop or restart a
//! worker (`stop`, `exit`), or change admission (the facade's `handle` records it; this
//! only reads it).

use std::time::Instant;

use protocol::{Attempt, FaultKind, SlotId, TaskId};

use crate::observe::RunEvent;

use super::{lanes::InProcessAttempt, Executor, SchedAction, Scheduler, WorkerKey, WorkerState};

impl Scheduler {
    /// Hands out work: in-process lanes first (their queue holds chunks that timed out),
    /// then idle workers. Each needs a free slot.
    pub(super) fn pump(&mut self, now: Instant, out: &mut Vec<SchedAction>) {
        if !self.admission.is_open() {
            return;
        }
        let inproc_only = self.cfg.workers == 0;
        for lane in 0..self.inproc.len() as u32 {
            if !self.inproc.is_free(lane) {
                continue;
            }
            let Some(task) = self.chunks.next_for_lane(inproc_only) else {
                break;
            };
            let Some(slot) = self.slots.take() else {
                return;
            };
            let attempt = self.chunks.start_in_process(task, lane);
            self.inproc.start(
                lane,
                InProcessAttempt {
                    task,
                    attempt,
                    slot,
                    since: now,
                },
            );
            self.history.note(
                now,
                RunEvent::ChunkDispatched {
                    task: task.0,
                    attempt: attempt.0,
                    executor: Executor::InProcess { lane },
                    fault: None,
                    speculative: false,
                },
            );
            out.push(SchedAction::RunInProcess {
                lane,
                task,
                attempt,
                slot,
            });
        }
        // A worker whose attempt's fate waits for its exit status still counts as busy: its
        // chunk comes back to the front of the queue in a moment and must find the spare free.
        let mut busy = self.lanes.with_attempt() as u32;
        for id in self.lanes.ids().collect::<Vec<_>>() {
            if busy >= self.cfg.max_busy {
                break;
            }
            let lane = self.lanes.get(id);
            let WorkerState::Idle { gen, pid } = lane.state else {
                continue;
            };
            if lane.recycle {
                continue;
            }
            let Some(task) = self.chunks.next_pending() else {
                // Nothing queued: idle workers may back up attempts that run long.
                return self.speculate(now, busy, out);
            };
            let Some(slot) = self.slots.take() else {
                return;
            };
            let attempt = self.chunks.start_on_worker(task, id);
            let key = WorkerKey { id, gen };
            self.lanes.get_mut(id).state = WorkerState::Busy {
                gen,
                pid,
                task,
                attempt,
                slot,
                since: now,
            };
            let fault = self.fault_for(task, attempt);
            busy += 1;
            self.history.note(
                now,
                RunEvent::ChunkDispatched {
                    task: task.0,
                    attempt: attempt.0,
                    executor: Executor::worker(key, pid),
                    fault,
                    speculative: false,
                },
            );
            out.push(SchedAction::Dispatch {
                key,
                task,
                attempt,
                slot,
                fault,
            });
        }
        // No idle worker took a backup: one the plan did not need may start for it.
        self.speculate(now, busy, out);
    }

    pub(super) fn on_ready(
        &mut self,
        key: WorkerKey,
        pid: u32,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        if !matches!(self.lanes.current(key), Some(WorkerState::Starting { .. })) {
            return;
        }
        self.lanes.get_mut(key.id).state = WorkerState::Idle { gen: key.gen, pid };
        self.breaker.worker_ready();
        let t = self.history.ms(now);
        if let Some(r) = self.history.worker_mut(key) {
            r.pid = Some(pid);
            r.ready_ms = Some(t);
        }
        self.history.note(
            now,
            RunEvent::WorkerReady {
                worker: key.id.0,
                gen: key.gen,
                pid,
            },
        );
        tracing::debug!(worker = key.id.0, gen = key.gen, pid, "worker ready");
        if self.chunks.pending_is_empty() && self.all_assigned() {
            self.retire(key.id, out);
        }
    }

    /// The worker's pid, slot and start time if it is busy with exactly this attempt; any
    /// other reply is late (a killed or timed-out worker's) and only counted.
    pub(super) fn busy_with(
        &mut self,
        key: WorkerKey,
        task: TaskId,
        attempt: Attempt,
    ) -> Option<(u32, SlotId, Instant)> {
        match self.lanes.current(key) {
            Some(&WorkerState::Busy {
                pid,
                task: t,
                attempt: a,
                slot,
                since,
                ..
            }) if t == task && a == attempt => {
                debug_assert!(self.chunks.runs_on(task, key.id));
                Some((pid, slot, since))
            }
            _ => {
                self.counters.late_replies += 1;
                tracing::debug!(
                    worker = key.id.0,
                    gen = key.gen,
                    task = task.0,
                    attempt = attempt.0,
                    "late reply ignored"
                );
                None
            }
        }
    }

    /// Every chunk is beyond needing a worker.
    pub(super) fn all_assigned(&self) -> bool {
        // A chunk is on a worker exactly while that worker holds its attempt: O(workers),
        // not O(chunks), on the per-chunk path.
        self.chunks.none_waiting_for_workers() && self.lanes.with_attempt() == 0
    }

    /// The fault injected on this attempt, if any. A fault targets a plan chunk's region:
    /// the parts of a split chunk inherit it.
    pub(super) fn fault_for(&self, task: TaskId, attempt: Attempt) -> Option<FaultKind> {
        let root = self.chunks.get(task).root;
        self.cfg
            .faults
            .iter()
            .find(|f| f.fires(root.0, attempt.0))
            .map(|f| f.kind)
    }
}

//! Speculative backups (MapReduce's backup tasks): with nothing queued for the workers and a
//! worker idle, `speculate` starts a second attempt of the attempt that has run longest past
//! the threshold (`policy::speculation`); when one of the pair finishes first, `supersede`
//! kills the other's worker.
//!
//! Slots: each attempt of a pair computes into its own slot, handed out like any other, so
//! the loser can never write into the winner's output. The loser's slot stays held (its lane
//! `Stopping`) until its process has exited, as for any stopped worker: the same rule keeps
//! the slot ring's ownership whichever attempt wins.
//!
//! Exactly once: the chunk's state names both lanes (`ChunkState::OnWorker { backup }`);
//! the first success writes the chunk, the other attempt is then moot (`AttemptEnd::Moot`)
//! and only recorded. A failure of one of the pair while the other runs is recorded and
//! decides nothing: the survivor's end does. A chunk gets one backup at most, so a chunk
//! that hangs in every attempt still ends by its timeouts, then splits or is quarantined.
//!
//! Does not decide when a backup is due (the policy does) nor what a failed pair leads to
//! (`fail`).

use std::time::{Duration, Instant};

use protocol::{Attempt, TaskId};

use crate::observe::RunEvent;

use super::{
    Executor, FailureCause, SchedAction, Scheduler, Sig, WorkerId, WorkerKey, WorkerState,
};

/// An attempt that may be backed up: its chunk, attempt number and start.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    task: TaskId,
    attempt: Attempt,
    since: Instant,
}

impl Scheduler {
    /// The threshold past which a running attempt is backed up, now; `None` when
    /// speculation is off or the time limit comes first.
    fn speculation_threshold(&self) -> Option<Duration> {
        self.speculation
            .threshold(self.timeouts.median(), self.time_limit())
    }

    /// Nothing is queued for the workers: gives idle workers (within `max_busy`, one free
    /// slot each) backups of the attempts past the threshold, the longest running first.
    pub(super) fn speculate(&mut self, now: Instant, mut busy: u32, out: &mut Vec<SchedAction>) {
        if !self.chunks.none_waiting_for_workers() {
            return;
        }
        let Some(threshold) = self.speculation_threshold() else {
            return;
        };
        while busy < self.cfg.max_busy {
            let Some(c) = self.backup_candidate(now, threshold) else {
                return;
            };
            let Some((key, pid)) = self.idle_worker() else {
                // A worker the plan's chunks did not need is started for it: its backup
                // goes out once it is ready.
                if let Some(id) = self.startable_lane() {
                    tracing::debug!(
                        worker = id.0,
                        task = c.task.0,
                        "starting a worker for a speculative backup"
                    );
                    self.start_unstarted(id, now, out);
                }
                return;
            };
            let Some(slot) = self.slots.take() else {
                return;
            };
            let attempt = self.chunks.start_backup(c.task, key.id);
            self.lanes.get_mut(key.id).state = WorkerState::Busy {
                gen: key.gen,
                pid,
                task: c.task,
                attempt,
                slot,
                since: now,
            };
            busy += 1;
            self.counters.speculative += 1;
            let fault = self.fault_for(c.task, attempt);
            let after_ms = (now - c.since).as_millis() as u64;
            tracing::info!(
                task = c.task.0,
                attempt = attempt.0,
                behind = c.attempt.0,
                worker = key.id.0,
                after_ms,
                threshold_ms = threshold.as_millis() as u64,
                "chunk runs long with a worker idle: starting a speculative backup"
            );
            self.history.note(
                now,
                RunEvent::Speculative {
                    task: c.task.0,
                    attempt: attempt.0,
                    behind: c.attempt.0,
                    worker: key.id.0,
                    gen: key.gen,
                    after_ms,
                    threshold_ms: threshold.as_millis() as u64,
                },
            );
            self.history.note(
                now,
                RunEvent::ChunkDispatched {
                    task: c.task.0,
                    attempt: attempt.0,
                    executor: Executor::worker(key, pid),
                    fault,
                    speculative: true,
                },
            );
            out.push(SchedAction::Dispatch {
                key,
                task: c.task,
                attempt,
                slot,
                fault,
            });
        }
    }

    /// When the next backup is due, if a worker could take it then (admission open, idle,
    /// within `max_busy`, a free slot, nothing queued: what `pump` and `speculate` ask, or a
    /// due deadline would wake the supervisor for nothing, again and again); `None`
    /// otherwise: the event that changes one of those comes first and is followed by a
    /// `pump`.
    pub(super) fn speculation_deadline(&self) -> Option<Instant> {
        let can_take = self.admission.is_open()
            && self.chunks.none_waiting_for_workers()
            && self.slots.free() > 0
            && (self.lanes.with_attempt() as u32) < self.cfg.max_busy
            && (self.idle_worker().is_some() || self.startable_lane().is_some());
        if !can_take {
            return None;
        }
        let threshold = self.speculation_threshold()?;
        self.candidates().map(|c| c.since + threshold).min()
    }

    /// The first idle worker that is not to be recycled.
    fn idle_worker(&self) -> Option<(WorkerKey, u32)> {
        self.lanes.ids().find_map(|id| {
            let lane = self.lanes.get(id);
            match lane.state {
                WorkerState::Idle { gen, pid } if !lane.recycle => {
                    Some((WorkerKey { id, gen }, pid))
                }
                _ => None,
            }
        })
    }

    /// Attempts on workers whose chunk may get a backup.
    fn candidates(&self) -> impl Iterator<Item = Candidate> + '_ {
        self.lanes.iter().filter_map(|l| match l.state {
            WorkerState::Busy {
                task,
                attempt,
                since,
                ..
            } if self.chunks.may_back_up(task) => Some(Candidate {
                task,
                attempt,
                since,
            }),
            _ => None,
        })
    }

    /// The longest-running candidate past `threshold` at `now`.
    fn backup_candidate(&self, now: Instant, threshold: Duration) -> Option<Candidate> {
        self.candidates()
            .filter(|c| now >= c.since + threshold)
            .min_by_key(|c| c.since)
    }

    /// Attempt `winner` of `task` finished first: the other attempt, on lane `loser`, is
    /// recorded as superseded and its worker killed. Its slot stays held until the process
    /// has exited (its lane is `Stopping`); its lane restarts, if work is left, as after a
    /// recycle. A loser whose end is already deferred (its channel closed) is left to that
    /// end, which finds the chunk moved on and only records it.
    pub(super) fn supersede(
        &mut self,
        loser: WorkerId,
        task: TaskId,
        winner: Attempt,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let WorkerState::Busy {
            gen,
            pid,
            task: t,
            attempt,
            slot,
            since,
        } = self.lanes.get(loser).state
        else {
            return;
        };
        debug_assert_eq!(t, task);
        let cause = FailureCause::Superseded { by: winner.0 };
        let record = self.attempt_record(
            task,
            attempt,
            Executor::worker(WorkerKey { id: loser, gen }, pid),
            (since, now),
            Err(cause.clone()),
        );
        self.history.attempt_ended(task, record);
        if self.chunks.get(task).backup == Some(winner) {
            self.counters.speculative_wins += 1;
        }
        tracing::info!(
            task = task.0,
            winner = winner.0,
            loser = attempt.0,
            worker = loser.0,
            "the other attempt finished first: killing the loser's worker"
        );
        let key = WorkerKey { id: loser, gen };
        out.push(SchedAction::Signal {
            key,
            sig: Sig::Kill,
        });
        self.lanes.get_mut(loser).state = WorkerState::Stopping {
            gen,
            pid: Some(pid),
            cause,
            kill_at: None,
            slot: Some(slot),
            deferred: None,
        };
    }
}

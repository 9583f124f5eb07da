//! Failure: a worker's `TaskFailed` and every other failed attempt (handed here by `done`,
//! `stop` and `exit`), and the chunk's next step: retry on a worker, run in process, ask the
//! job to split it (and take its `Split` answer), or quarantine it. A failed attempt of a
//! speculative pair whose other attempt runs on is only recorded: the survivor's end decides.
//!
//! Does not stop or restart the worker that failed (`stop`, `exit`), and keeps no rule of
//! its own for when the run must end: the breaker (`policy`) says, the facade's `fatal` ends
//! it.
//!
//! Bisection of a chunk that kills workers is breadth first (from its second failure on,
//! its retries and parts queue behind the healthy chunks) and stops where the evidence
//! does. The rule: a part that
//! died like its parent (the same signal, exit code or kind of failure) waits for its
//! siblings' first attempts. If one of them did not die like the parent, the failure is
//! local and the part is split further (down to the job's blocks, exact as before). If all
//! of them died alike, the failure is spread over the parent: the parts are split once more
//! (marked `alike`), and when a generation of parts of an `alike` part dies alike again,
//! they are quarantined whole. Two generations, not one, because one halving can cut along
//! a line fault (a bad column crosses both halves of a split across it); the next split of
//! a near-square part crosses the other axis and finds the line. A chunk failing on every
//! block thus costs its attempts plus 2 + 4 deaths, whatever its number of blocks. Read
//! errors are not under this rule: they kill no worker, so they are bisected exactly.

use std::time::Instant;

use protocol::{Attempt, TaskId};

use crate::observe::RunEvent;

use super::{
    chunks::{AttemptEnd, ChunkState},
    policy::breaker::AttemptDeath,
    Executor, FailureCause, SchedAction, Scheduler, SplitReason, WorkerKey, WorkerState,
};

impl Scheduler {
    pub(super) fn on_task_failed(
        &mut self,
        key: WorkerKey,
        task: TaskId,
        attempt: Attempt,
        error: String,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some((pid, slot, since)) = self.busy_with(key, task, attempt) else {
            return;
        };
        // The process lives on and has answered: nothing writes the slot any more.
        self.slots.give_back(slot);
        self.fail_attempt(
            (task, attempt),
            Executor::worker(key, pid),
            (since, now),
            FailureCause::WorkerError { error },
            out,
        );
        self.lanes.get_mut(key.id).state = WorkerState::Idle { gen: key.gen, pid };
        self.after_idle(key, now, out);
    }

    /// Records a failed attempt (`attempt` of `task`, on `executor`, from `since` to `now`)
    /// and decides the chunk's next step.
    pub(super) fn fail_attempt(
        &mut self,
        (task, attempt): (TaskId, Attempt),
        executor: Executor,
        (since, now): (Instant, Instant),
        cause: FailureCause,
        out: &mut Vec<SchedAction>,
    ) {
        let record = self.attempt_record(task, attempt, executor, (since, now), Err(cause.clone()));
        let record_fault = record.fault;
        self.history.attempt_ended(task, record);
        let end = match executor {
            Executor::Worker { worker, .. } => self.chunks.attempt_ends_on(task, worker),
            Executor::InProcess { .. } => AttemptEnd::Last,
        };
        if end == AttemptEnd::Moot {
            // The loser of a speculative pair whose end was deferred: the chunk moved on.
            return;
        }
        let in_process = matches!(executor, Executor::InProcess { .. });
        if !in_process && cause.is_death() && !self.runs_in_process_next(task, &cause) {
            let entry = self.chunks.get(task);
            let death = AttemptDeath {
                root: entry.root,
                first_of_plan_chunk: entry.root == task && attempt.0 == 1,
                cause: &cause,
                fault: record_fault,
            };
            if let Some(why) = self.breaker.attempt_died(death) {
                return self.fatal(why, out);
            }
        }
        self.chunks.attempt_failed(task, cause, in_process);
        if let AttemptEnd::OtherRuns(other) = end {
            tracing::info!(
                task = task.0,
                attempt = attempt.0,
                running_on = other.0,
                "attempt failed while the chunk's other attempt runs on: its end decides"
            );
            return;
        }
        if self.held_for_siblings(task, now, out) {
            return;
        }
        self.after_failure(task, now, out);
        self.release_siblings(task, now, out);
    }

    /// A part's attempt ended otherwise than dying like its parent: its siblings held for
    /// its verdict are split further (the failure is local).
    pub(super) fn release_siblings(
        &mut self,
        task: TaskId,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let held: Vec<TaskId> = self
            .chunks
            .siblings(task)
            .filter(|&s| self.chunks.get(s).state == ChunkState::Held)
            .collect();
        for s in held {
            tracing::debug!(
                task = s.0,
                sibling = task.0,
                "failure is local: splitting further"
            );
            self.after_failure(s, now, out);
        }
    }

    /// Applies the bisection rule (module doc) to a part whose last attempt just failed:
    /// `true` when it is held for its siblings or decided with them.
    fn held_for_siblings(
        &mut self,
        task: TaskId,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) -> bool {
        if !self.died_like_parent(task) {
            return false;
        }
        let mut alike = vec![task];
        for s in self.chunks.siblings(task).collect::<Vec<_>>() {
            let sib = self.chunks.get(s);
            if sib.state == ChunkState::Held {
                alike.push(s);
            } else if sib.tries == 0 {
                // Its first attempt has not ended: wait for it.
                self.chunks.get_mut(task).state = ChunkState::Held;
                return true;
            } else {
                return false;
            }
        }
        let parent = self.chunks.get(task).parent.expect("a part");
        let cause = self
            .chunks
            .get(task)
            .last_failure
            .as_ref()
            .map(|f| f.cause.summary());
        if self.chunks.get(parent).alike {
            if let Some(why) = self.breaker.parts_fail_alike() {
                self.fatal(why, out);
                return true;
            }
            tracing::info!(
                task = parent.0,
                parts = alike.len(),
                cause = %cause.unwrap_or_default(),
                "every part died like its parent, twice over: quarantining them without splitting further"
            );
            for t in alike {
                self.quarantine(t, now, out);
            }
        } else {
            tracing::info!(
                task = parent.0,
                parts = alike.len(),
                cause = %cause.unwrap_or_default(),
                "every part died like its parent: splitting them once more"
            );
            for t in alike {
                self.chunks.get_mut(t).alike = true;
                self.after_failure(t, now, out);
            }
        }
        true
    }

    /// `task` is a part of a chunk split for crashes, out of attempts, and its last attempt
    /// died like its parent's last one (and is not bound for an in-process lane).
    fn died_like_parent(&self, task: TaskId) -> bool {
        let entry = self.chunks.get(task);
        let Some(parent) = entry.parent.map(|p| self.chunks.get(p)) else {
            return false;
        };
        let (Some(mine), Some(theirs)) = (&entry.last_failure, &parent.last_failure) else {
            return false;
        };
        parent.split == Some(SplitReason::Crashes)
            && entry.tries >= entry.max_attempts
            && !mine.in_process
            && !self.runs_in_process_next(task, &mine.cause)
            && mine.cause.fails_like(&theirs.cause)
    }

    /// The seed design's rule, asked before anything else on a failure: a chunk whose worker
    /// timed out runs in process next, unless it crashed a worker (it could take the
    /// coordinator down) or there is no in-process lane.
    fn runs_in_process_next(&self, task: TaskId, cause: &FailureCause) -> bool {
        matches!(cause, FailureCause::Timeout { .. })
            && !self.chunks.get(task).crashed_a_worker
            && self.inproc.len() > 0
    }

    /// A chunk's last attempt failed: retry it, run it in process, split it or quarantine it.
    pub(super) fn after_failure(&mut self, task: TaskId, now: Instant, out: &mut Vec<SchedAction>) {
        let entry = self.chunks.get(task);
        let Some(last) = entry.last_failure.clone() else {
            return;
        };
        let attempt = entry.tries;
        let splittable = self.cfg.can_split && !entry.leaf;
        let max_attempts = entry.max_attempts;
        let cause = &last.cause;
        if self.runs_in_process_next(task, cause) {
            // The seed design's rule: a chunk whose worker timed out runs in process. A
            // chunk that crashed a worker never does: it could take the coordinator down.
            // With no in-process lane (a plug-in kernel that must never be loaded into the
            // coordinator), a timeout is a failure like any other: retried on a fresh
            // worker, then split or quarantined below.
            tracing::info!(
                task = task.0,
                attempt,
                "chunk timed out on a worker: running it in process"
            );
            self.chunks.queue_in_process(task, false);
            self.note_retry(task, attempt, true, now);
        } else if cause.is_read_error() && splittable {
            // A read error is the data's, not the process's: retrying the same window would
            // fail the same way, its parts may not.
            tracing::info!(task = task.0, cause = %cause.summary(), "chunk cannot be read: splitting it");
            self.ask_split(task, SplitReason::ReadError, out);
        } else if attempt >= max_attempts {
            if splittable {
                tracing::info!(
                    task = task.0,
                    attempts = attempt,
                    cause = %cause.summary(),
                    "chunk keeps failing: splitting it before quarantining anything"
                );
                self.ask_split(task, SplitReason::Crashes, out);
            } else {
                self.quarantine(task, now, out);
            }
        } else if last.in_process {
            tracing::info!(task = task.0, attempt, cause = %cause.summary(), "retrying chunk in process");
            self.chunks.queue_in_process(task, true);
            self.note_retry(task, attempt, true, now);
        } else {
            tracing::info!(task = task.0, attempt, cause = %cause.summary(), "retrying chunk");
            // After its first failure, first in line: a warm spare takes a crashed worker's
            // chunk at once (one crash may be bad luck). After more, a chunk that may be
            // bisected waits behind the healthy chunks with its parts (breadth first), so
            // that they never wait for it.
            let behind = self.cfg.can_split && attempt >= 2;
            self.chunks.retry(task, behind);
            self.note_retry(task, attempt, false, now);
        }
    }

    fn note_retry(&mut self, task: TaskId, tries: u32, in_process: bool, now: Instant) {
        self.history.note(
            now,
            RunEvent::ChunkRetried {
                task: task.0,
                next_attempt: tries + 1,
                in_process,
            },
        );
    }

    fn ask_split(&mut self, task: TaskId, reason: SplitReason, out: &mut Vec<SchedAction>) {
        self.chunks.ask_split(task, reason);
        out.push(SchedAction::Split { task });
    }

    /// The job's answer to `Split`: the chunk ends as split and its parts join the front of
    /// the queue, or it is a leaf and its failure is decided again as such.
    pub(super) fn on_split(
        &mut self,
        task: TaskId,
        children: u32,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some(reason) = self.chunks.split_answered(task) else {
            return;
        };
        if children == 0 {
            tracing::debug!(task = task.0, "chunk cannot be split");
            self.chunks.get_mut(task).leaf = true;
            return self.after_failure(task, now, out);
        }
        self.counters.splits += 1;
        let first = self.chunks.split(task, reason, children);
        self.history.add_chunks(children);
        self.history.note(
            now,
            RunEvent::ChunkSplit {
                task: task.0,
                reason,
                first,
                parts: children,
            },
        );
        tracing::info!(
            task = task.0,
            ?reason,
            children = ?(first..first + children).collect::<Vec<_>>(),
            "split chunk"
        );
    }

    fn quarantine(&mut self, task: TaskId, now: Instant, out: &mut Vec<SchedAction>) {
        let first_of_root = self.chunks.quarantine(task);
        out.push(SchedAction::Write { task, slot: None });
        let entry = self.chunks.get(task);
        let root = entry.root;
        let cause = entry.last_failure.as_ref().map(|f| f.cause.clone());
        self.history.note(
            now,
            RunEvent::ChunkQuarantined {
                task: task.0,
                cause: cause.clone(),
            },
        );
        tracing::warn!(
            task = task.0,
            root = root.0,
            cause = %cause.as_ref().map(FailureCause::summary).unwrap_or_default(),
            "chunk quarantined"
        );
        // The breaker counts plan chunks: one bisected into many quarantined parts is one.
        if !first_of_root {
            return;
        }
        if let Some(why) = self.breaker.quarantined(cause.as_ref()) {
            self.fatal(why, out);
        }
    }
}

//! Failure: a worker's `TaskFailed` and every other failed attempt (handed here by `done`,
//! `stop` and `exit`), and the chunk's next step: retry on a worker, run in process, ask the
//! job to split it (and take its `Split` answer), or quarantine it.
//!
//! Does not stop or restart the worker that failed (`stop`, `exit`), and keeps no rule of
//! its own for when the run must end: the breaker (`policy`) says, the facade's `fatal` ends
//! it.

use std::time::Instant;

use protocol::{Attempt, TaskId};

use crate::observe::RunEvent;

use super::{
    AttemptRecord, Executor, FailureCause, SchedAction, Scheduler, SplitReason, WorkerKey,
    WorkerState,
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
            task,
            attempt,
            Executor::worker(key, pid),
            since,
            FailureCause::WorkerError { error },
            now,
            out,
        );
        self.lanes.get_mut(key.id).state = WorkerState::Idle { gen: key.gen, pid };
        self.after_idle(key, now, out);
    }

    /// Records a failed attempt and decides the chunk's next step.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fail_attempt(
        &mut self,
        task: TaskId,
        attempt: Attempt,
        executor: Executor,
        since: Instant,
        cause: FailureCause,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let record = AttemptRecord {
            attempt: attempt.0,
            executor,
            started_ms: self.history.ms(since),
            ended_ms: self.history.ms(now),
            stats: None,
            failure: Some(cause.clone()),
            fault: self.fault_for(task, attempt),
            recycled_after: false,
        };
        self.history.attempt_ended(task, record);
        let in_process = matches!(executor, Executor::InProcess { .. });
        self.chunks.attempt_failed(task, cause, in_process);
        self.after_failure(task, now, out);
    }

    /// A chunk's last attempt failed: retry it, run it in process, split it or quarantine it.
    fn after_failure(&mut self, task: TaskId, now: Instant, out: &mut Vec<SchedAction>) {
        let entry = self.chunks.get(task);
        let Some(last) = entry.last_failure.clone() else {
            return;
        };
        let attempt = entry.tries;
        let splittable = self.cfg.can_split && !entry.leaf;
        let crashed = entry.crashed_a_worker;
        let max_attempts = entry.max_attempts;
        let cause = &last.cause;
        let has_lanes = self.inproc.len() > 0;
        if matches!(cause, FailureCause::Timeout { .. }) && !crashed && has_lanes {
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
            self.chunks.retry(task);
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

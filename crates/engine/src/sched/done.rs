//! Success: a worker's `TaskDone` (the first of a speculative pair to finish wins, and
//! `speculate` stops the other), an in-process lane's `InProcessDone` (its failures go on
//! to `fail`), and the writer's `Written`, which frees the chunk's slot and, once every chunk
//! has ended, retires the lanes and finishes the run.
//!
//! Does not hand out the next chunk (`dispatch`, via the facade's pump after each event) nor
//! decide anything about a failed attempt (`fail`).

use std::time::Instant;

use protocol::{Attempt, SlotId, TaskId, TaskStats};

use crate::observe::RunEvent;

use super::{
    chunks::{AttemptEnd, ChunkState},
    AttemptRecord, ChunkOutcome, Executor, FailureCause, SchedAction, Scheduler, WorkerKey,
    WorkerState,
};

impl Scheduler {
    pub(super) fn on_done(
        &mut self,
        key: WorkerKey,
        task: TaskId,
        attempt: Attempt,
        stats: TaskStats,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some((pid, slot, since)) = self.busy_with(key, task, attempt) else {
            return;
        };
        self.timeouts.record(now - since);
        let executor = Executor::worker(key, pid);
        let record = self.attempt_record(task, attempt, executor, (since, now), Ok(stats));
        // The first of a speculative pair to finish is kept; the other is stopped.
        let end = self.chunks.attempt_ends_on(task, key.id);
        self.attempt_succeeded(task, record, (slot, ChunkOutcome::Done), now, out);
        if let AttemptEnd::OtherRuns(loser) = end {
            self.supersede(loser, task, attempt, now, out);
        }
        let lane = self.lanes.get_mut(key.id);
        lane.backoff.reset();
        lane.last_task = Some(task);
        lane.state = WorkerState::Idle { gen: key.gen, pid };
        if let Some(r) = self.history.worker_mut(key) {
            r.chunks += 1;
        }
        self.after_idle(key, now, out);
    }

    pub(super) fn on_inproc_done(
        &mut self,
        lane: u32,
        task: TaskId,
        attempt: Attempt,
        result: Result<TaskStats, String>,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        if self.chunks.get(task).state != (ChunkState::InProcess { lane }) {
            return;
        }
        let Some(run) = self.inproc.finish(lane, task, attempt) else {
            return;
        };
        let executor = Executor::InProcess { lane };
        match result {
            Ok(stats) => {
                let mut record =
                    self.attempt_record(task, attempt, executor, (run.since, now), Ok(stats));
                // No fault is injected in process.
                record.fault = None;
                let into = (run.slot, ChunkOutcome::DoneInProcess);
                self.attempt_succeeded(task, record, into, now, out);
            }
            Err(error) => {
                self.slots.give_back(run.slot);
                let cause = FailureCause::InProcessError { error };
                self.fail_attempt((task, attempt), executor, (run.since, now), cause, out);
            }
        }
    }

    pub(super) fn on_written(&mut self, task: TaskId, now: Instant, out: &mut Vec<SchedAction>) {
        let Some(slot) = self.chunks.written(task) else {
            return;
        };
        self.history
            .note(now, RunEvent::ChunkWritten { task: task.0 });
        if let Some(slot) = slot {
            self.slots.give_back(slot);
        }
        if self.chunks.all_finished() {
            self.done = true;
            for id in self.lanes.ids().collect::<Vec<_>>() {
                self.retire(id, out);
            }
            out.push(SchedAction::Finished);
        }
    }

    /// A successful attempt: record it and hand the chunk's slot to the writer. A part's
    /// success also says its held siblings' failure is local.
    fn attempt_succeeded(
        &mut self,
        task: TaskId,
        record: AttemptRecord,
        (slot, outcome): (SlotId, ChunkOutcome),
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        self.history.attempt_ended(task, record);
        self.chunks.attempt_succeeded(task, slot, outcome);
        out.push(SchedAction::Write {
            task,
            slot: Some(slot),
        });
        // A chunk made progress: the breaker's counters start over.
        self.breaker.progress();
        self.release_siblings(task, now, out);
    }
}

//! The chunk table: each chunk's place in its lifecycle, the queues of chunks waiting for a
//! worker or an in-process lane, and the facts the retry rule needs (tries, last failure,
//! whether it crashed a worker, its plan chunk, its split).
//!
//! Owns chunk state and queues. Does not own an attempt in flight: a running chunk only
//! names the lane that runs it, and that lane holds the attempt (one record, not two). Does
//! not keep attempt records for the report (`history`) nor decide what a failure leads to
//! (the facade).

use std::collections::VecDeque;

use protocol::{Attempt, SlotId, TaskId};

use super::{ChunkOutcome, FailureCause, SplitReason, WorkerId};

#[derive(Debug, Clone, PartialEq)]
pub enum ChunkState {
    Pending,
    PendingInProcess,
    /// Running on a worker lane; the attempt is that lane's (`WorkerState::Busy`, or
    /// `Stopping` with its fate deferred). `backup`: a speculative second attempt runs on
    /// that lane at the same time (the first of the two to finish is kept).
    OnWorker {
        worker: WorkerId,
        backup: Option<WorkerId>,
    },
    /// Running on an in-process lane; the attempt is that lane's.
    InProcess {
        lane: u32,
    },
    Writing {
        slot: Option<SlotId>,
        outcome: ChunkOutcome,
    },
    /// A part of a chunk split for crashes whose attempt died like its parent: waiting for
    /// its siblings' first attempts, which say whether the failure is local (a sibling
    /// succeeds: split this part further) or spread over the parent (all die alike).
    Held,
    /// `Split` was asked for; waiting for the job's answer.
    Splitting {
        reason: SplitReason,
    },
    Finished(ChunkOutcome),
}

/// How a chunk's last attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct LastFailure {
    pub cause: FailureCause,
    pub in_process: bool,
}

/// What an attempt's end on a worker leaves of its chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptEnd {
    /// It was the chunk's only attempt in flight: its end decides the chunk's next step.
    Last,
    /// The other attempt of a speculative pair runs on, on this lane.
    OtherRuns(WorkerId),
    /// The chunk no longer runs it: it lost a speculative race and the chunk moved on.
    Moot,
}

#[derive(Debug, Clone)]
pub struct ChunkEntry {
    pub state: ChunkState,
    /// Attempts ended so far (the next one is `tries + 1`).
    pub tries: u32,
    pub last_failure: Option<LastFailure>,
    pub crashed_a_worker: bool,
    /// The chunk this one was split from.
    pub parent: Option<TaskId>,
    /// The plan chunk it descends from (itself for a plan chunk): faults target it, and the
    /// breaker counts quarantines per plan chunk.
    pub root: TaskId,
    /// Attempts before it is split or quarantined: one for the parts of a chunk that kept
    /// crashing workers, so that bisecting a poisoned region costs few crashes.
    pub max_attempts: u32,
    /// The job said it cannot be split.
    pub leaf: bool,
    /// Of a plan chunk: how many of its parts (or itself) were quarantined.
    pub quarantined_parts: u32,
    pub split: Option<SplitReason>,
    /// Of a split chunk: its parts' ids.
    pub parts: std::ops::Range<u32>,
    /// Of a part: it and all its siblings died like their parent (one generation of
    /// evidence that the failure is spread over the region, not local).
    pub alike: bool,
    /// The attempt number of its speculative backup, once one was started (at most one per
    /// chunk, so that a chunk hanging in every attempt still ends by timeouts).
    pub backup: Option<Attempt>,
}

impl ChunkEntry {
    fn new(root: TaskId, max_attempts: u32) -> ChunkEntry {
        ChunkEntry {
            state: ChunkState::Pending,
            tries: 0,
            last_failure: None,
            crashed_a_worker: false,
            parent: None,
            root,
            max_attempts,
            leaf: false,
            quarantined_parts: 0,
            split: None,
            parts: 0..0,
            alike: false,
            backup: None,
        }
    }
}

#[derive(Debug)]
pub struct ChunkTable {
    entries: Vec<ChunkEntry>,
    /// Waiting for a worker (or, with no workers, a lane).
    pending: VecDeque<TaskId>,
    /// Waiting for an in-process lane (timed out on a worker, or failed in process).
    pending_inproc: VecDeque<TaskId>,
    /// Chunks that ended (written, or split).
    finished: usize,
    /// Chunks waiting for the job's answer to `Split`.
    splitting: usize,
}

impl ChunkTable {
    /// `n` plan chunks, all pending in order, each allowed `max_attempts`.
    pub fn new(n: usize, max_attempts: u32) -> ChunkTable {
        ChunkTable {
            entries: (0..n as u32)
                .map(|t| ChunkEntry::new(TaskId(t), max_attempts))
                .collect(),
            pending: (0..n as u32).map(TaskId).collect(),
            pending_inproc: VecDeque::new(),
            finished: 0,
            splitting: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, task: TaskId) -> &ChunkEntry {
        &self.entries[task.0 as usize]
    }

    pub fn get_mut(&mut self, task: TaskId) -> &mut ChunkEntry {
        &mut self.entries[task.0 as usize]
    }

    pub fn finished(&self) -> usize {
        self.finished
    }

    pub fn all_finished(&self) -> bool {
        self.finished == self.entries.len()
    }

    /// Nothing waits in the worker queue nor for a split answer (chunks in process may).
    pub fn none_waiting_for_workers(&self) -> bool {
        self.pending.is_empty() && self.splitting == 0
    }

    pub fn pending_is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Chunks queued for a worker.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The next chunk for a worker.
    pub fn next_pending(&self) -> Option<TaskId> {
        self.pending.front().copied()
    }

    /// The next chunk for an in-process lane: the in-process queue first, then, with no
    /// workers at all, the worker queue.
    pub fn next_for_lane(&self, inproc_only: bool) -> Option<TaskId> {
        if !self.pending_inproc.is_empty() {
            self.pending_inproc.front().copied()
        } else if inproc_only {
            self.pending.front().copied()
        } else {
            None
        }
    }

    /// The attempt number the next start of `task` gets.
    fn next_attempt(&self, task: TaskId) -> Attempt {
        Attempt(self.get(task).tries + 1)
    }

    /// Takes `task` (the front of a queue, from `next_for_lane`) to in-process lane `lane`.
    pub fn start_in_process(&mut self, task: TaskId, lane: u32) -> Attempt {
        if !self.pending_inproc.is_empty() {
            self.pending_inproc.pop_front();
        } else {
            self.pending.pop_front();
        }
        self.get_mut(task).state = ChunkState::InProcess { lane };
        self.next_attempt(task)
    }

    /// Takes `task` (the front of the worker queue) to worker lane `worker`.
    pub fn start_on_worker(&mut self, task: TaskId, worker: WorkerId) -> Attempt {
        self.pending.pop_front();
        self.get_mut(task).state = ChunkState::OnWorker {
            worker,
            backup: None,
        };
        self.next_attempt(task)
    }

    /// Whether `task` may get a speculative backup: one attempt runs, on a worker; it has
    /// had no backup before nor crashed a worker (a crash's retries and parts keep their
    /// bisection's accounting, one attempt at a time); and the backup is within its attempts.
    pub fn may_back_up(&self, task: TaskId) -> bool {
        let e = self.get(task);
        matches!(e.state, ChunkState::OnWorker { backup: None, .. })
            && e.backup.is_none()
            && !e.crashed_a_worker
            && e.tries + 2 <= e.max_attempts
    }

    /// Starts a speculative backup of `task` (which `may_back_up`) on lane `worker`, beside
    /// its running attempt: the backup's attempt number.
    pub fn start_backup(&mut self, task: TaskId, worker: WorkerId) -> Attempt {
        // One attempt runs and has not ended: the backup's number comes after it.
        let attempt = Attempt(self.get(task).tries + 2);
        let e = self.get_mut(task);
        if let ChunkState::OnWorker { backup, .. } = &mut e.state {
            *backup = Some(worker);
        }
        e.backup = Some(attempt);
        attempt
    }

    /// Whether `task` runs an attempt on lane `worker`.
    pub fn runs_on(&self, task: TaskId, worker: WorkerId) -> bool {
        matches!(self.get(task).state, ChunkState::OnWorker { worker: w, backup: b }
            if w == worker || b == Some(worker))
    }

    /// The attempt of `task` on lane `worker` has ended: what else of the chunk runs.
    pub fn attempt_ends_on(&mut self, task: TaskId, worker: WorkerId) -> AttemptEnd {
        let e = self.get_mut(task);
        let ChunkState::OnWorker { worker: w, backup } = e.state else {
            return AttemptEnd::Moot;
        };
        let other = match backup {
            Some(b) if w == worker => b,
            Some(b) if b == worker => w,
            None if w == worker => return AttemptEnd::Last,
            _ => return AttemptEnd::Moot,
        };
        e.state = ChunkState::OnWorker {
            worker: other,
            backup: None,
        };
        AttemptEnd::OtherRuns(other)
    }

    /// An attempt of `task` failed: note it for the retry rule.
    pub fn attempt_failed(&mut self, task: TaskId, cause: FailureCause, in_process: bool) {
        let e = self.get_mut(task);
        e.tries += 1;
        e.crashed_a_worker |= cause.is_crash();
        e.last_failure = Some(LastFailure { cause, in_process });
    }

    /// An attempt of `task` succeeded into `slot`: it waits for the writer.
    pub fn attempt_succeeded(&mut self, task: TaskId, slot: SlotId, outcome: ChunkOutcome) {
        let e = self.get_mut(task);
        e.tries += 1;
        e.state = ChunkState::Writing {
            slot: Some(slot),
            outcome,
        };
    }

    /// Back in the worker queue: first in line, or last (`behind`: behind the healthy
    /// chunks, as a chunk under bisection is).
    pub fn retry(&mut self, task: TaskId, behind: bool) {
        self.get_mut(task).state = ChunkState::Pending;
        if behind {
            self.pending.push_back(task);
        } else {
            self.pending.push_front(task);
        }
    }

    /// The other parts of the chunk `task` was split from (none for a plan chunk).
    pub fn siblings(&self, task: TaskId) -> impl Iterator<Item = TaskId> {
        let parts = match self.get(task).parent {
            Some(p) => self.get(p).parts.clone(),
            None => 0..0,
        };
        parts.map(TaskId).filter(move |&t| t != task)
    }

    /// Into the in-process queue: first in line (a retry) or last (a chunk that timed out).
    pub fn queue_in_process(&mut self, task: TaskId, first: bool) {
        self.get_mut(task).state = ChunkState::PendingInProcess;
        if first {
            self.pending_inproc.push_front(task);
        } else {
            self.pending_inproc.push_back(task);
        }
    }

    pub fn ask_split(&mut self, task: TaskId, reason: SplitReason) {
        self.get_mut(task).state = ChunkState::Splitting { reason };
        self.splitting += 1;
    }

    /// The job's answer to `Split` for a chunk that waits for one: the reason it was asked
    /// for, or `None` for a stray answer.
    pub fn split_answered(&mut self, task: TaskId) -> Option<SplitReason> {
        let ChunkState::Splitting { reason } = self.entries.get(task.0 as usize)?.state else {
            return None;
        };
        self.splitting -= 1;
        Some(reason)
    }

    /// `task` ends as split into `children` parts, which join the back of their queue in
    /// order (breadth first: the chunks queued before them go first). Returns the first
    /// part's id.
    pub fn split(&mut self, task: TaskId, reason: SplitReason, children: u32) -> u32 {
        let entry = self.get_mut(task);
        entry.state = ChunkState::Finished(ChunkOutcome::Split);
        entry.split = Some(reason);
        let (root, crashed) = (entry.root, entry.crashed_a_worker);
        // The parts of a chunk that failed in process (after a timeout) stay in process:
        // the workers may be gone by now, and they would likely time out again.
        let in_process = entry.last_failure.as_ref().is_some_and(|f| f.in_process);
        let max_attempts = match reason {
            SplitReason::Crashes => 1,
            SplitReason::ReadError => entry.max_attempts,
        };
        self.finished += 1;
        let first = self.entries.len() as u32;
        self.get_mut(task).parts = first..first + children;
        for _ in 0..children {
            let mut child = ChunkEntry::new(root, max_attempts);
            child.parent = Some(task);
            // A part of a chunk that crashed a worker is never run in process either.
            child.crashed_a_worker = crashed;
            self.entries.push(child);
        }
        for t in first..first + children {
            if in_process {
                self.queue_in_process(TaskId(t), false);
            } else {
                self.pending.push_back(TaskId(t));
            }
        }
        first
    }

    /// `task` is given up: nodata is written for it. Returns whether it is the first part
    /// of its plan chunk to be quarantined.
    pub fn quarantine(&mut self, task: TaskId) -> bool {
        let root = self.get(task).root;
        self.get_mut(task).state = ChunkState::Writing {
            slot: None,
            outcome: ChunkOutcome::Quarantined,
        };
        let parts = &mut self.get_mut(root).quarantined_parts;
        *parts += 1;
        *parts == 1
    }

    /// The writer is done with `task`: it is finished. Returns the slot it held (if any)
    /// when it was waiting for the writer, `None` for a stray event.
    pub fn written(&mut self, task: TaskId) -> Option<Option<SlotId>> {
        let entry = self.get_mut(task);
        let ChunkState::Writing { slot, outcome } = entry.state else {
            return None;
        };
        entry.state = ChunkState::Finished(outcome);
        self.finished += 1;
        Some(slot)
    }

    pub fn outcome(&self, task: TaskId) -> Option<ChunkOutcome> {
        match self.get(task).state {
            ChunkState::Finished(o) => Some(o),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segv() -> FailureCause {
        FailureCause::Signal {
            signal: 11,
            name: "SIGSEGV".into(),
        }
    }

    #[test]
    fn attempts_count_up_and_a_retry_goes_first() {
        let mut c = ChunkTable::new(3, 3);
        assert_eq!(c.next_pending(), Some(TaskId(0)));
        assert_eq!(c.start_on_worker(TaskId(0), WorkerId(0)), Attempt(1));
        c.attempt_failed(TaskId(0), segv(), false);
        assert!(c.get(TaskId(0)).crashed_a_worker);
        c.retry(TaskId(0), false);
        assert_eq!(c.next_pending(), Some(TaskId(0)));
        assert_eq!(c.start_on_worker(TaskId(0), WorkerId(1)), Attempt(2));
        assert_eq!(c.next_pending(), Some(TaskId(1)));
        // Behind the healthy chunks (breadth first).
        c.attempt_failed(TaskId(0), segv(), false);
        c.retry(TaskId(0), true);
        for t in [1, 2, 0] {
            assert_eq!(c.next_pending(), Some(TaskId(t)));
            c.start_on_worker(TaskId(t), WorkerId(0));
        }
    }

    #[test]
    fn lanes_take_the_in_process_queue_first() {
        let mut c = ChunkTable::new(2, 3);
        assert_eq!(c.next_for_lane(false), None);
        assert_eq!(c.next_for_lane(true), Some(TaskId(0)));
        c.start_on_worker(TaskId(0), WorkerId(0));
        c.attempt_failed(TaskId(0), FailureCause::Timeout { after_ms: 5 }, false);
        c.queue_in_process(TaskId(0), false);
        assert_eq!(c.next_for_lane(false), Some(TaskId(0)));
        assert_eq!(c.start_in_process(TaskId(0), 0), Attempt(2));
        assert_eq!(c.get(TaskId(0)).state, ChunkState::InProcess { lane: 0 });
        // The worker queue was left alone.
        assert_eq!(c.next_pending(), Some(TaskId(1)));
    }

    #[test]
    fn a_split_ends_the_chunk_and_queues_its_parts_last_in_order() {
        let mut c = ChunkTable::new(2, 3);
        c.start_on_worker(TaskId(0), WorkerId(0));
        c.attempt_failed(TaskId(0), segv(), false);
        c.ask_split(TaskId(0), SplitReason::Crashes);
        assert!(!c.none_waiting_for_workers());
        assert_eq!(c.split_answered(TaskId(0)), Some(SplitReason::Crashes));
        assert_eq!(c.split(TaskId(0), SplitReason::Crashes, 2), 2);
        assert_eq!(
            c.split_answered(TaskId(0)),
            None,
            "a second answer is stray"
        );
        assert_eq!(c.outcome(TaskId(0)), Some(ChunkOutcome::Split));
        assert_eq!(c.len(), 4);
        assert_eq!(c.finished(), 1);
        for t in [2, 3] {
            let part = c.get(TaskId(t));
            assert_eq!(
                (part.parent, part.root, part.max_attempts),
                (Some(TaskId(0)), TaskId(0), 1)
            );
            assert!(part.crashed_a_worker);
        }
        assert_eq!(c.get(TaskId(0)).parts, 2..4);
        assert_eq!(c.siblings(TaskId(2)).collect::<Vec<_>>(), vec![TaskId(3)]);
        assert_eq!(c.siblings(TaskId(1)).count(), 0, "a plan chunk has none");
        // Chunk 1 was queued before the parts.
        assert_eq!(c.next_pending(), Some(TaskId(1)));
        c.start_on_worker(TaskId(1), WorkerId(1));
        assert_eq!(c.next_pending(), Some(TaskId(2)));
        c.start_on_worker(TaskId(2), WorkerId(0));
        assert_eq!(c.next_pending(), Some(TaskId(3)));
    }

    #[test]
    fn quarantines_count_once_per_plan_chunk_and_written_finishes() {
        let mut c = ChunkTable::new(1, 1);
        c.start_on_worker(TaskId(0), WorkerId(0));
        c.attempt_failed(
            TaskId(0),
            FailureCause::WorkerError { error: "x".into() },
            false,
        );
        c.ask_split(TaskId(0), SplitReason::ReadError);
        c.split_answered(TaskId(0));
        c.split(TaskId(0), SplitReason::ReadError, 2);
        assert!(c.quarantine(TaskId(1)));
        assert!(!c.quarantine(TaskId(2)));
        assert_eq!(c.written(TaskId(1)), Some(None));
        assert_eq!(c.written(TaskId(1)), None, "written twice");
        assert!(!c.all_finished());
        assert_eq!(c.written(TaskId(2)), Some(None));
        assert!(c.all_finished());
    }
}

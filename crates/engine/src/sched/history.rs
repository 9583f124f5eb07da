//! What the report shows of the run: one record per attempt and per worker incarnation,
//! and the counters. Written as decisions are made, never read to make one.
//!
//! Owns the records, the run's start (to stamp them in milliseconds) and the observer that
//! is told each decision as a [`RunEvent`] when it is made (the event stream, the progress
//! bar). Does not own the chunks' or workers' current state: the chunk and lane tables do.

use std::time::Instant;

use protocol::{FaultKind, TaskId, TaskStats};
use serde::{Deserialize, Serialize};

use crate::observe::{Observer, RunEvent};

use super::{Executor, FailureCause, WorkerId, WorkerKey};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub executor: Executor,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub stats: Option<TaskStats>,
    pub failure: Option<FailureCause>,
    pub fault: Option<FaultKind>,
    /// The worker was recycled (soft memory limit) right after this attempt.
    pub recycled_after: bool,
    /// A speculative backup, started while another attempt of the chunk still ran.
    #[serde(default)]
    pub speculative: bool,
}

/// Per-incarnation facts for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRecord {
    pub worker: WorkerId,
    pub gen: u32,
    pub pid: Option<u32>,
    pub spawned_ms: u64,
    pub ready_ms: Option<u64>,
    pub exited_ms: Option<u64>,
    pub chunks: u32,
    pub cause: Option<FailureCause>,
    pub recycled: bool,
    /// The worker's last stderr lines when it exited.
    pub stderr_tail: Vec<String>,
}

/// Counters for the report and the summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchedCounters {
    pub restarts: u32,
    pub late_replies: u32,
    pub timeouts: u32,
    pub recycles: u32,
    pub splits: u32,
    /// Speculative backup attempts started, and those that finished first.
    #[serde(default)]
    pub speculative: u32,
    #[serde(default)]
    pub speculative_wins: u32,
}

pub struct History {
    start: Instant,
    observer: Option<Observer>,
    /// Per chunk, in task order.
    attempts: Vec<Vec<AttemptRecord>>,
    workers: Vec<WorkerRecord>,
}

impl History {
    pub fn new(chunks: usize, start: Instant) -> History {
        History {
            start,
            observer: None,
            attempts: vec![Vec::new(); chunks],
            workers: Vec::new(),
        }
    }

    /// Who is told each event from now on.
    pub fn observe(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// Tells the observer, if any, that `event` happened at `now`.
    pub fn note(&mut self, now: Instant, event: RunEvent) {
        let ms = self.ms(now);
        if let Some(o) = &mut self.observer {
            o(ms, &event);
        }
    }

    /// Milliseconds since the run started.
    pub fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    /// `n` more chunks (the parts of a split one).
    pub fn add_chunks(&mut self, n: u32) {
        self.attempts
            .extend(std::iter::repeat_with(Vec::new).take(n as usize));
    }

    pub fn attempts(&self, task: TaskId) -> &[AttemptRecord] {
        &self.attempts[task.0 as usize]
    }

    pub fn attempt_ended(&mut self, task: TaskId, record: AttemptRecord) {
        let event = match (&record.stats, &record.failure) {
            (Some(stats), _) => RunEvent::ChunkDone {
                task: task.0,
                attempt: record.attempt,
                executor: record.executor,
                started_ms: record.started_ms,
                ended_ms: record.ended_ms,
                stats: *stats,
                speculative: record.speculative,
            },
            (None, failure) => RunEvent::ChunkFailed {
                task: task.0,
                attempt: record.attempt,
                executor: record.executor,
                started_ms: record.started_ms,
                ended_ms: record.ended_ms,
                cause: failure.clone().unwrap_or(FailureCause::Disconnected),
                fault: record.fault,
                speculative: record.speculative,
            },
        };
        if let Some(o) = &mut self.observer {
            o(record.ended_ms, &event);
            if record.stats.is_some_and(|s| s.fallback_read) {
                let fallback = RunEvent::ChunkReadFallback {
                    task: task.0,
                    attempt: record.attempt,
                };
                o(record.ended_ms, &fallback);
            }
        }
        self.attempts[task.0 as usize].push(record);
    }

    /// The worker that ran `task`'s last attempt was recycled right after it.
    pub fn recycled_after(&mut self, task: TaskId) {
        if let Some(a) = self.attempts[task.0 as usize].last_mut() {
            a.recycled_after = true;
        }
    }

    pub fn worker_spawned(&mut self, key: WorkerKey, now: Instant) {
        self.note(
            now,
            RunEvent::WorkerSpawned {
                worker: key.id.0,
                gen: key.gen,
            },
        );
        let spawned_ms = self.ms(now);
        self.workers.push(WorkerRecord {
            worker: key.id,
            gen: key.gen,
            pid: None,
            spawned_ms,
            ready_ms: None,
            exited_ms: None,
            chunks: 0,
            cause: None,
            recycled: false,
            stderr_tail: Vec::new(),
        });
    }

    pub fn workers(&self) -> &[WorkerRecord] {
        &self.workers
    }

    pub fn worker_mut(&mut self, key: WorkerKey) -> Option<&mut WorkerRecord> {
        self.workers
            .iter_mut()
            .rev()
            .find(|r| r.worker == key.id && r.gen == key.gen)
    }
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("start", &self.start)
            .field("observed", &self.observer.is_some())
            .field("attempts", &self.attempts)
            .field("workers", &self.workers)
            .finish()
    }
}

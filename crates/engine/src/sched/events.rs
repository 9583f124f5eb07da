//! The scheduler's vocabulary: ids, the events fed in, the actions handed out, and the
//! causes they carry. Every other part of the scheduler imports from here, and so do the
//! supervisor, the report and the tests.
//!
//! Owns no state and makes no decision: what an event leads to is decided in the facade
//! (`mod.rs`) and the policies.

use std::{fmt, time::Duration};

use protocol::{Attempt, FaultKind, SlotId, TaskId, TaskStats};
use serde::{Deserialize, Serialize};

use super::policy::timeouts::{INPROC_LIMIT_FACTOR, INPROC_LIMIT_FLOOR};

/// A worker lane: the n-th process of the pool, restarted in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId(pub u32);

/// One incarnation of a lane. Events from an older incarnation are stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkerKey {
    pub id: WorkerId,
    pub gen: u32,
}

/// How long an attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum TimeoutSpec {
    Fixed(Duration),
    /// A percentage of the median attempt time so far, never below the floor
    /// (`SchedConfig::timeout_floor`); until an attempt has finished, the larger of the
    /// floor and `FIRST_CHUNKS_LIMIT`.
    PercentOfMedian(f64),
}

/// How a process ended, as the supervisor observed it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The allocator or GDAL said it ran out of memory (from the worker's stderr).
    pub out_of_memory: bool,
    /// The worker's last stderr lines.
    pub stderr_tail: Vec<String>,
}

/// Why an attempt failed (or a worker died).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureCause {
    Signal {
        signal: i32,
        name: String,
    },
    ExitCode {
        code: i32,
    },
    Timeout {
        after_ms: u64,
    },
    Garbage {
        detail: String,
    },
    OverMemory {
        detail: String,
    },
    Disconnected,
    /// The worker answered that it could not compute the chunk (e.g. a GDAL read error).
    WorkerError {
        error: String,
    },
    /// The in-process executor failed.
    InProcessError {
        error: String,
    },
    /// The worker did not become ready in time.
    StartTimeout,
    /// The worker was stopped on purpose (soft memory limit, end of run).
    Recycled,
    /// A speculative pair's loser: attempt `by` of the same chunk finished first, and this
    /// one's worker was killed (its output, in its own slot, is never read).
    Superseded {
        by: u32,
    },
    Interrupted,
}

/// Why a chunk was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitReason {
    /// It could not be read or computed (a GDAL error): its parts are tried at once.
    ReadError,
    /// It took workers down on every attempt: rather than quarantine all of it, its parts
    /// are tried, each once (a crash bisects again), so the crashes stay bounded.
    Crashes,
}

impl FailureCause {
    /// Whether the chunk itself could not be read or computed (the process lived on).
    pub(crate) fn is_read_error(&self) -> bool {
        matches!(
            self,
            FailureCause::WorkerError { .. } | FailureCause::InProcessError { .. }
        )
    }

    /// Whether a chunk whose attempt ended this way took a worker down with it.
    pub(crate) fn is_crash(&self) -> bool {
        matches!(
            self,
            FailureCause::Signal { .. }
                | FailureCause::ExitCode { .. }
                | FailureCause::Garbage { .. }
                | FailureCause::OverMemory { .. }
                | FailureCause::Disconnected
        )
    }

    /// Whether the attempt took its worker process with it: a crash, or a timeout (the
    /// worker is stopped). The systematic-failure breaker counts these.
    pub(crate) fn is_death(&self) -> bool {
        self.is_crash() || matches!(self, FailureCause::Timeout { .. })
    }

    /// Whether two failures are the same failure: the same kind and, for a signal or an
    /// exit code, the same one (a timeout's duration, a message's text do not matter).
    pub(crate) fn fails_like(&self, other: &FailureCause) -> bool {
        match (self, other) {
            (FailureCause::Signal { signal: a, .. }, FailureCause::Signal { signal: b, .. }) => {
                a == b
            }
            (FailureCause::ExitCode { code: a }, FailureCause::ExitCode { code: b }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }

    pub fn from_exit(exit: &ExitInfo) -> FailureCause {
        if exit.out_of_memory {
            let detail = match exit.signal {
                Some(s) => format!("killed by {} after an allocation failed", signal_name(s)),
                None => format!(
                    "exited with code {} after an allocation failed",
                    exit.code.unwrap_or(-1)
                ),
            };
            return FailureCause::OverMemory { detail };
        }
        match (exit.signal, exit.code) {
            (Some(s), _) => FailureCause::Signal {
                signal: s,
                name: signal_name(s),
            },
            (None, Some(c)) => FailureCause::ExitCode { code: c },
            (None, None) => FailureCause::Disconnected,
        }
    }

    pub fn summary(&self) -> String {
        match self {
            FailureCause::Signal { name, .. } => format!("killed by {name}"),
            FailureCause::ExitCode { code } => format!("exited with code {code}"),
            FailureCause::Timeout { after_ms } => format!("timed out after {after_ms} ms"),
            FailureCause::Garbage { detail } => format!("sent garbage ({detail})"),
            FailureCause::OverMemory { detail } => format!("over memory ({detail})"),
            FailureCause::Disconnected => "closed its channel".into(),
            FailureCause::WorkerError { error } => format!("worker error: {error}"),
            FailureCause::InProcessError { error } => format!("in-process error: {error}"),
            FailureCause::StartTimeout => "did not become ready in time".into(),
            FailureCause::Recycled => "recycled".into(),
            FailureCause::Superseded { by } => format!("stopped: attempt {by} finished first"),
            FailureCause::Interrupted => "interrupted".into(),
        }
    }
}

pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Executor {
    Worker { worker: WorkerId, pid: u32 },
    InProcess { lane: u32 },
}

impl Executor {
    /// The process `pid` of lane `key.id`.
    pub fn worker(key: WorkerKey, pid: u32) -> Executor {
        Executor::Worker {
            worker: key.id,
            pid,
        }
    }
}

/// The final result of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkOutcome {
    Done,
    DoneInProcess,
    Quarantined,
    /// Split into child chunks, which end on their own; this chunk writes nothing.
    Split,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchedEvent {
    WorkerReady {
        key: WorkerKey,
        pid: u32,
    },
    TaskDone {
        key: WorkerKey,
        task: TaskId,
        attempt: Attempt,
        stats: TaskStats,
    },
    TaskFailed {
        key: WorkerKey,
        task: TaskId,
        attempt: Attempt,
        error: String,
    },
    Garbage {
        key: WorkerKey,
        detail: String,
    },
    Disconnected {
        key: WorkerKey,
    },
    WorkerExited {
        key: WorkerKey,
        exit: ExitInfo,
    },
    /// The soft memory limit: recycle after the current chunk.
    OverSoftLimit {
        key: WorkerKey,
    },
    /// Admission opens or closes (available memory against `--min-free-memory`).
    Admission {
        open: bool,
    },
    InProcessDone {
        lane: u32,
        task: TaskId,
        attempt: Attempt,
        result: Result<TaskStats, String>,
    },
    Written {
        task: TaskId,
    },
    /// The job's answer to `SchedAction::Split`: it appended `children` chunks (ids after
    /// the last task's), or 0 when the chunk cannot be split.
    Split {
        task: TaskId,
        children: u32,
    },
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchedAction {
    Spawn {
        key: WorkerKey,
    },
    Dispatch {
        key: WorkerKey,
        task: TaskId,
        attempt: Attempt,
        slot: SlotId,
        fault: Option<FaultKind>,
    },
    /// Signal the worker's process group.
    Signal {
        key: WorkerKey,
        sig: Sig,
    },
    /// Ask politely: send the shutdown message.
    Shutdown {
        key: WorkerKey,
    },
    RunInProcess {
        lane: u32,
        task: TaskId,
        attempt: Attempt,
        slot: SlotId,
    },
    /// Write the chunk's output from `slot`, or nodata when `None` (quarantined).
    Write {
        task: TaskId,
        slot: Option<SlotId>,
    },
    /// Split the chunk into parts and answer with `SchedEvent::Split` before anything else.
    Split {
        task: TaskId,
    },
    /// Every chunk is written.
    Finished,
    /// The run cannot go on.
    Fatal(FatalReason),
}

/// Why the run cannot go on. Its `Display` is the message the user reads.
#[derive(Debug, Clone, PartialEq)]
pub enum FatalReason {
    /// Workers in a row died before they were ready.
    StartFailures {
        in_row: u32,
        last: FailureCause,
        /// The last worker's last stderr line.
        last_words: Option<String>,
    },
    /// Workers in a row were killed for not saying hello within `limit`.
    StartTimeouts { in_row: u32, limit: Duration },
    /// Workers died idle (or starting) with no chunk finished in between.
    IdleDeaths { deaths: u32, last: FailureCause },
    /// Plan chunks were quarantined in a row with none done in between.
    Quarantines {
        in_row: u32,
        /// The last quarantined chunk's last failure.
        cause: Option<FailureCause>,
    },
    /// An in-process attempt ran past `limit`; a thread cannot be stopped.
    InProcessHang { task: TaskId, limit: Duration },
    /// The first attempts of distinct plan chunks kept dying with none done in between: the
    /// computation fails on every chunk, so bisecting and quarantining would only take long
    /// to write an output of nodata.
    SystematicDeaths {
        /// Plan chunks whose first attempt died since the last attempt that succeeded.
        chunks: u32,
        /// Attempts that died since then (retries and parts included).
        deaths: u32,
        /// The last death's cause.
        cause: FailureCause,
        /// What failed: the fault injected on the last dead attempt, or what computes a
        /// chunk (`SchedConfig::suspect`).
        culprit: Culprit,
        /// The last dead worker's last stderr line.
        last_words: Option<String>,
    },
}

/// What the systematic-failure breaker blames.
#[derive(Debug, Clone, PartialEq)]
pub enum Culprit {
    /// `--inject-fault` asked for it.
    InjectedFault(FaultKind),
    /// What computes a chunk, as the job names it (the kernel, the reader of the input).
    Computation(String),
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Culprit::InjectedFault(k) => {
                write!(f, "the fault injected with --inject-fault {}", k.name())
            }
            Culprit::Computation(what) => write!(f, "{what} fails on every chunk"),
        }
    }
}

impl fmt::Display for FatalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FatalReason::StartFailures {
                in_row,
                last,
                last_words,
            } => {
                write!(
                    f,
                    "workers cannot start: {in_row} in a row died before they were ready (last one {}",
                    last.summary()
                )?;
                if let Some(l) = last_words {
                    write!(f, "; its last words: {l}")?;
                }
                write!(f, ")")
            }
            FatalReason::StartTimeouts { in_row, limit } => write!(
                f,
                "workers cannot start: {in_row} in a row did not say hello within {limit:?} (--start-timeout); is '--worker-bin' the blocksum worker?"
            ),
            FatalReason::IdleDeaths { deaths, last } => write!(
                f,
                "workers keep dying before they can work: {deaths} deaths with no chunk finished in between (last one {})",
                last.summary()
            ),
            // The chunk's own cause: GDAL's text or the signal, whether or not a report is
            // written.
            FatalReason::Quarantines { in_row, cause } => write!(
                f,
                "{in_row} chunks in a row were quarantined with none done in between: the workers cannot compute this input ({})",
                cause
                    .as_ref()
                    .map_or_else(|| "unknown cause".to_string(), FailureCause::summary)
            ),
            FatalReason::InProcessHang { task, limit } => write!(
                f,
                "chunk {task} did not finish in process within {} s (max(time limit x {INPROC_LIMIT_FACTOR}, {} s)); an in-process run cannot be stopped, so the run ends",
                limit.as_secs(),
                INPROC_LIMIT_FLOOR.as_secs()
            ),
            FatalReason::SystematicDeaths {
                chunks,
                deaths,
                cause,
                culprit,
                last_words,
            } => {
                write!(
                    f,
                    "{culprit}: the first attempts of {chunks} chunks died with none done in between ({deaths} attempts died, the last one {}",
                    cause.summary()
                )?;
                if let Some(l) = last_words {
                    write!(f, "; its last words: {l}")?;
                }
                write!(f, ")")
            }
        }
    }
}

impl std::error::Error for FatalReason {}

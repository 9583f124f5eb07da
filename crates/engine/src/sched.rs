//! The scheduling decisions, as a state machine with no I/O: events in, actions out.
//!
//! It owns the lifecycles of chunks and workers, the free slots, the retry budget, the
//! timeout rule, restart backoff and the breaker. It never touches a process, a channel, a
//! clock or a file: the supervisor feeds it events stamped with `now` and carries out the
//! actions it returns, so every rule here is tested without a single process.
//!
//! Promise kept here: every chunk ends exactly once, done by a worker, done in process,
//! quarantined, or split into child chunks that each keep the same promise; never lost,
//! never written twice.
//!
//! Splitting is asked for, not computed here: the scheduler knows no windows. When a chunk
//! fails to read, or would be quarantined, it returns `Split { task }`; the job answers
//! `SchedEvent::Split { task, children }` with the number of child chunks it appended (their
//! ids follow the last task's), or 0 when the chunk cannot be split (a leaf).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use protocol::{Attempt, FaultKind, FaultSpec, SlotId, TaskId, TaskStats};
use serde::Serialize;

/// A worker lane: the n-th process of the pool, restarted in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct WorkerId(pub u32);

/// One incarnation of a lane. Events from an older incarnation are stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct WorkerKey {
    pub id: WorkerId,
    pub gen: u32,
}

/// How long an attempt may take.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum TimeoutSpec {
    Fixed(Duration),
    /// A percentage of the median attempt time so far, never below the floor
    /// (`SchedConfig::timeout_floor`); until three attempts have finished, the larger of the
    /// floor and `FIRST_CHUNKS_LIMIT`.
    PercentOfMedian(f64),
}

/// The default least limit of a percentage timeout (`--task-timeout-floor`).
pub const DEFAULT_TIMEOUT_FLOOR: Duration = Duration::from_secs(10);
/// A percentage timeout before there is a median to take a percentage of.
pub const FIRST_CHUNKS_LIMIT: Duration = Duration::from_secs(60);
/// The default deadline for a new worker's hello (`--start-timeout`): a worker links
/// libgdal and is ready in ~50 ms here, so 10 s is a wide margin on a loaded machine.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SchedConfig {
    /// Worker processes kept alive (lanes).
    pub workers: u32,
    /// At most this many of them busy at once: the rest are warm spares, ready to take a
    /// crashed worker's chunk at once while it restarts.
    pub max_busy: u32,
    /// In-process executor threads: every chunk's home with no workers, the timeout
    /// fallback otherwise.
    pub lanes: u32,
    pub slots: u32,
    pub max_attempts: u32,
    pub timeout: Option<TimeoutSpec>,
    /// The least limit a percentage timeout gives.
    pub timeout_floor: Duration,
    pub kill_grace: Duration,
    /// Deadline for a spawned worker to say hello.
    pub start_timeout: Duration,
    /// Restart backoff: first restart at once, then `base * 2^n` up to `max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Breaker: consecutive workers that die before they are ready.
    pub max_start_failures: u32,
    /// Breaker: consecutive workers killed for not saying hello within `start_timeout`
    /// (each has already cost that long: a second one in a row ends the run).
    pub max_start_timeouts: u32,
    /// Breaker: workers that die idle (or starting) with no chunk finished in between.
    pub max_idle_deaths: u32,
    /// Breaker: chunks quarantined in a row with none done in between.
    pub max_quarantines_in_row: u32,
    pub faults: Vec<FaultSpec>,
    /// The job can split a chunk into smaller ones: a failing chunk is split (bisected)
    /// before anything is quarantined, so that only the parts that really fail are.
    pub can_split: bool,
    pub jitter_seed: u64,
    /// Admission at the start (`--min-free-memory`); `Admission` events change it.
    pub admission_open: bool,
}

impl SchedConfig {
    pub fn new(workers: u32, lanes: u32, slots: u32) -> SchedConfig {
        SchedConfig {
            workers,
            max_busy: workers,
            lanes,
            slots,
            max_attempts: 3,
            timeout: None,
            timeout_floor: DEFAULT_TIMEOUT_FLOOR,
            kill_grace: Duration::from_millis(500),
            start_timeout: DEFAULT_START_TIMEOUT,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_secs(2),
            max_start_failures: 5,
            max_start_timeouts: 2,
            max_idle_deaths: 12,
            max_quarantines_in_row: 8,
            faults: Vec::new(),
            can_split: false,
            jitter_seed: 0x9e37_79b9_7f4a_7c15,
            admission_open: true,
        }
    }
}

/// How a process ended, as the supervisor observed it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The allocator or GDAL said it ran out of memory (from the worker's stderr).
    pub out_of_memory: bool,
    /// The worker's last stderr lines.
    pub stderr_tail: Vec<String>,
}

/// Why an attempt failed (or a worker died).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    Interrupted,
}

/// Why a chunk was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    fn is_read_error(&self) -> bool {
        matches!(
            self,
            FailureCause::WorkerError { .. } | FailureCause::InProcessError { .. }
        )
    }

    /// Whether a chunk whose attempt ended this way took a worker down with it.
    fn is_crash(&self) -> bool {
        matches!(
            self,
            FailureCause::Signal { .. }
                | FailureCause::ExitCode { .. }
                | FailureCause::Garbage { .. }
                | FailureCause::OverMemory { .. }
                | FailureCause::Disconnected
        )
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
            FailureCause::Interrupted => "interrupted".into(),
        }
    }
}

pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Executor {
    Worker { worker: WorkerId, pid: u32 },
    InProcess { lane: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
}

/// The final result of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkOutcome {
    Done,
    DoneInProcess,
    Quarantined,
    /// Split into child chunks, which end on their own; this chunk writes nothing.
    Split,
}

#[derive(Debug, Clone, PartialEq)]
enum ChunkState {
    Pending,
    PendingInProcess,
    OnWorker {
        key: WorkerKey,
        attempt: Attempt,
        slot: SlotId,
    },
    InProcess {
        lane: u32,
        attempt: Attempt,
        slot: SlotId,
    },
    Writing {
        slot: Option<SlotId>,
        outcome: ChunkOutcome,
    },
    /// `Split` was asked for; waiting for the job's answer.
    Splitting {
        reason: SplitReason,
    },
    Finished(ChunkOutcome),
}

#[derive(Debug, Clone)]
struct ChunkEntry {
    state: ChunkState,
    attempts: Vec<AttemptRecord>,
    crashed_a_worker: bool,
    /// The chunk this one was split from.
    parent: Option<TaskId>,
    /// The plan chunk it descends from (itself for a plan chunk): faults target it, and the
    /// breaker counts quarantines per plan chunk.
    root: TaskId,
    /// Attempts before it is split or quarantined: one for the parts of a chunk that kept
    /// crashing workers, so that bisecting a poisoned region costs few crashes.
    max_attempts: u32,
    /// The job said it cannot be split.
    leaf: bool,
    /// Of a plan chunk: how many of its parts (or itself) were quarantined.
    quarantined_parts: u32,
    split: Option<SplitReason>,
}

impl ChunkEntry {
    fn new(root: TaskId, max_attempts: u32) -> ChunkEntry {
        ChunkEntry {
            state: ChunkState::Pending,
            attempts: Vec::new(),
            crashed_a_worker: false,
            parent: None,
            root,
            max_attempts,
            leaf: false,
            quarantined_parts: 0,
            split: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkerState {
    /// Spawn asked for; waiting for hello.
    Starting {
        gen: u32,
        since: Instant,
    },
    Idle {
        gen: u32,
        pid: u32,
    },
    Busy {
        gen: u32,
        pid: u32,
        task: TaskId,
        attempt: Attempt,
        slot: SlotId,
        since: Instant,
    },
    /// Told to stop (or killed); its slot, if any, is held until it has exited.
    Stopping {
        gen: u32,
        pid: Option<u32>,
        cause: FailureCause,
        kill_at: Option<Instant>,
        slot: Option<SlotId>,
        /// An attempt whose failure is decided when the exit status is known (a closed
        /// channel is usually a crash whose signal arrives a moment later).
        deferred: Option<(TaskId, Attempt, Instant)>,
    },
    /// Waiting out a restart backoff.
    Backoff {
        gen: u32,
        until: Instant,
    },
    /// Not coming back (end of run).
    Retired,
}

/// Per-incarnation facts for the report.
#[derive(Debug, Clone, Serialize)]
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

/// The median of attempt durations, O(log n) per sample: two heaps, the lower half as a
/// max-heap and the upper half as a min-heap.
#[derive(Debug, Default)]
struct RunningMedian {
    low: std::collections::BinaryHeap<Duration>,
    high: std::collections::BinaryHeap<std::cmp::Reverse<Duration>>,
}

impl RunningMedian {
    fn push(&mut self, d: Duration) {
        if self.low.peek().is_none_or(|&m| d <= m) {
            self.low.push(d);
        } else {
            self.high.push(std::cmp::Reverse(d));
        }
        if self.low.len() > self.high.len() + 1 {
            let v = self.low.pop().expect("non-empty");
            self.high.push(std::cmp::Reverse(v));
        } else if self.high.len() > self.low.len() {
            let std::cmp::Reverse(v) = self.high.pop().expect("non-empty");
            self.low.push(v);
        }
    }

    fn len(&self) -> usize {
        self.low.len() + self.high.len()
    }

    fn median(&self) -> Option<Duration> {
        if self.len().is_multiple_of(2) {
            self.high.peek().map(|r| r.0)
        } else {
            self.low.peek().copied()
        }
    }
}

/// An in-process attempt may take this many time limits, and at least
/// `INPROC_LIMIT_FLOOR`, before the run gives up on it: a chunk that timed out on a worker
/// may be slow for a reason, but a thread cannot be killed, so a hang must end somewhere.
const INPROC_LIMIT_FACTOR: u32 = 10;
const INPROC_LIMIT_FLOOR: Duration = Duration::from_secs(60);

fn inproc_limit(limit: Duration) -> Duration {
    (limit * INPROC_LIMIT_FACTOR).max(INPROC_LIMIT_FLOOR)
}

/// How long a worker whose channel closed may take to exit by itself before it is killed.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

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
    Fatal(String),
}

/// Counters for the report and the summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SchedCounters {
    pub restarts: u32,
    pub late_replies: u32,
    pub timeouts: u32,
    pub recycles: u32,
    pub splits: u32,
}

pub struct Scheduler {
    cfg: SchedConfig,
    start: Instant,
    chunks: Vec<ChunkEntry>,
    pending: VecDeque<TaskId>,
    pending_inproc: VecDeque<TaskId>,
    free_slots: Vec<SlotId>,
    workers: Vec<WorkerState>,
    /// Per lane: recycle after the current chunk.
    recycle: Vec<bool>,
    /// Per lane: deaths since its last finished chunk (drives backoff).
    lane_failures: Vec<u32>,
    /// Per in-process lane: the chunk it runs and since when.
    lanes_busy: Vec<Option<(TaskId, Instant)>>,
    records: Vec<WorkerRecord>,
    durations: RunningMedian,
    finished: usize,
    start_failures_in_row: u32,
    /// Workers killed in a row for not saying hello in time.
    start_timeouts_in_row: u32,
    idle_deaths_since_progress: u32,
    quarantines_in_row: u32,
    last_death: Option<FailureCause>,
    rng: u64,
    done: bool,
    /// Per lane: the chunk its current incarnation finished last.
    last_task: Vec<Option<TaskId>>,
    /// Chunks waiting for the job's answer to `Split`.
    splitting: usize,
    admission_open: bool,
    closed_since: Option<Instant>,
    admission_wait: Duration,
    pub counters: SchedCounters,
}

impl Scheduler {
    /// A scheduler for `chunks` chunks; returns the first actions (spawn the pool, start
    /// in-process work).
    pub fn new(cfg: SchedConfig, chunks: usize, now: Instant) -> (Scheduler, Vec<SchedAction>) {
        let mut s = Scheduler {
            start: now,
            chunks: (0..chunks as u32)
                .map(|t| ChunkEntry::new(TaskId(t), cfg.max_attempts))
                .collect(),
            pending: (0..chunks as u32).map(TaskId).collect(),
            pending_inproc: VecDeque::new(),
            free_slots: (0..cfg.slots).rev().map(SlotId).collect(),
            workers: vec![WorkerState::Retired; cfg.workers as usize],
            recycle: vec![false; cfg.workers as usize],
            lane_failures: vec![0; cfg.workers as usize],
            lanes_busy: vec![None; cfg.lanes as usize],
            records: Vec::new(),
            durations: RunningMedian::default(),
            finished: 0,
            start_failures_in_row: 0,
            start_timeouts_in_row: 0,
            idle_deaths_since_progress: 0,
            quarantines_in_row: 0,
            last_death: None,
            rng: cfg.jitter_seed | 1,
            done: false,
            last_task: vec![None; cfg.workers as usize],
            splitting: 0,
            admission_open: cfg.admission_open,
            closed_since: (!cfg.admission_open).then_some(now),
            admission_wait: Duration::ZERO,
            counters: SchedCounters::default(),
            cfg,
        };
        let mut out = Vec::new();
        if chunks == 0 {
            s.done = true;
            out.push(SchedAction::Finished);
            return (s, out);
        }
        for i in 0..s.cfg.workers {
            s.spawn(WorkerId(i), 0, now, &mut out);
        }
        s.pump(now, &mut out);
        (s, out)
    }

    fn ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    fn spawn(&mut self, id: WorkerId, gen: u32, now: Instant, out: &mut Vec<SchedAction>) {
        self.workers[id.0 as usize] = WorkerState::Starting { gen, since: now };
        // A recycle request belongs to the incarnation it was made for.
        self.recycle[id.0 as usize] = false;
        self.last_task[id.0 as usize] = None;
        self.records.push(WorkerRecord {
            worker: id,
            gen,
            pid: None,
            spawned_ms: self.ms(now),
            ready_ms: None,
            exited_ms: None,
            chunks: 0,
            cause: None,
            recycled: false,
            stderr_tail: Vec::new(),
        });
        out.push(SchedAction::Spawn {
            key: WorkerKey { id, gen },
        });
    }

    fn record_mut(&mut self, key: WorkerKey) -> Option<&mut WorkerRecord> {
        self.records
            .iter_mut()
            .rev()
            .find(|r| r.worker == key.id && r.gen == key.gen)
    }

    fn gen_of(state: &WorkerState) -> Option<u32> {
        match state {
            WorkerState::Starting { gen, .. }
            | WorkerState::Idle { gen, .. }
            | WorkerState::Busy { gen, .. }
            | WorkerState::Stopping { gen, .. }
            | WorkerState::Backoff { gen, .. } => Some(*gen),
            WorkerState::Retired => None,
        }
    }

    /// The lane's state if `key` is its current incarnation.
    fn current(&self, key: WorkerKey) -> Option<&WorkerState> {
        let st = self.workers.get(key.id.0 as usize)?;
        match st {
            WorkerState::Backoff { .. } | WorkerState::Retired => None,
            _ if Self::gen_of(st) == Some(key.gen) => Some(st),
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn worker_state(&self, id: WorkerId) -> &WorkerState {
        &self.workers[id.0 as usize]
    }

    pub fn attempts(&self, task: TaskId) -> &[AttemptRecord] {
        &self.chunks[task.0 as usize].attempts
    }

    pub fn outcome(&self, task: TaskId) -> Option<ChunkOutcome> {
        match self.chunks[task.0 as usize].state {
            ChunkState::Finished(o) => Some(o),
            _ => None,
        }
    }

    pub fn worker_records(&self) -> &[WorkerRecord] {
        &self.records
    }

    /// Records a worker's exit after the run has ended (for the report only: no decision).
    /// `deliberate`: the coordinator stopped it (a spare or a finished worker at the end):
    /// that is no death, whatever signal it took.
    pub fn record_exit(&mut self, key: WorkerKey, exit: &ExitInfo, now: Instant, deliberate: bool) {
        let ms = self.ms(now);
        if let Some(r) = self.record_mut(key) {
            if r.exited_ms.is_none() {
                r.exited_ms = Some(ms);
                r.stderr_tail = exit.stderr_tail.clone();
                // A clean exit at the end of the run is no failure: no cause.
                if exit.code != Some(0) && !deliberate {
                    r.cause = Some(FailureCause::from_exit(exit));
                }
            }
        }
    }

    /// Time dispatch has been held by admission so far.
    pub fn admission_wait(&self, now: Instant) -> Duration {
        self.admission_wait
            + self
                .closed_since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    pub fn admission_open(&self) -> bool {
        self.admission_open
    }

    pub fn finished(&self) -> usize {
        self.finished
    }

    /// Chunks known so far: the plan's, then the parts of split chunks.
    pub fn tasks(&self) -> usize {
        self.chunks.len()
    }

    /// The chunk `task` was split from.
    pub fn parent(&self, task: TaskId) -> Option<TaskId> {
        self.chunks[task.0 as usize].parent
    }

    /// Why `task` was split, if it was.
    pub fn split_reason(&self, task: TaskId) -> Option<SplitReason> {
        self.chunks[task.0 as usize].split
    }

    /// The current per-attempt time limit.
    pub fn time_limit(&self) -> Option<Duration> {
        match self.cfg.timeout? {
            TimeoutSpec::Fixed(d) => Some(d),
            TimeoutSpec::PercentOfMedian(p) => {
                let floor = self.cfg.timeout_floor;
                if self.durations.len() < 3 {
                    // No median yet: a stalled first chunk must still end somewhere.
                    return Some(floor.max(FIRST_CHUNKS_LIMIT));
                }
                let med = self.durations.median()?;
                // Never below the floor, so that fast chunks cannot make a limit too tight
                // for an ordinary hiccup.
                // (and never below 1 ms, so that no-op chunks cannot time everything out).
                Some(
                    med.mul_f64(p / 100.0)
                        .max(floor)
                        .max(Duration::from_millis(1)),
                )
            }
        }
    }

    /// The earliest instant at which a `Tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let limit = self.time_limit();
        self.workers
            .iter()
            .filter_map(|w| match w {
                WorkerState::Starting { since, .. } => Some(*since + self.cfg.start_timeout),
                WorkerState::Busy { since, .. } => limit.map(|l| *since + l),
                WorkerState::Stopping { kill_at, .. } => *kill_at,
                WorkerState::Backoff { until, .. } => Some(*until),
                _ => None,
            })
            .chain(
                self.lanes_busy
                    .iter()
                    .flatten()
                    .filter(|_| self.cfg.workers > 0)
                    .filter_map(|(_, since)| limit.map(|l| *since + inproc_limit(l))),
            )
            .min()
    }

    pub fn handle(&mut self, now: Instant, ev: SchedEvent) -> Vec<SchedAction> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match ev {
            SchedEvent::WorkerReady { key, pid } => self.on_ready(key, pid, now, &mut out),
            SchedEvent::TaskDone {
                key,
                task,
                attempt,
                stats,
            } => self.on_done(key, task, attempt, stats, now, &mut out),
            SchedEvent::TaskFailed {
                key,
                task,
                attempt,
                error,
            } => self.on_task_failed(key, task, attempt, error, now, &mut out),
            SchedEvent::Garbage { key, detail } => self.stop_worker(
                key,
                FailureCause::Garbage { detail },
                Sig::Kill,
                now,
                &mut out,
            ),
            SchedEvent::Disconnected { key } => {
                self.stop_worker(key, FailureCause::Disconnected, Sig::Kill, now, &mut out)
            }
            SchedEvent::WorkerExited { key, exit } => self.on_exit(key, exit, now, &mut out),
            SchedEvent::OverSoftLimit { key } => self.on_soft_limit(key, now, &mut out),
            SchedEvent::Admission { open } => {
                if open && !self.admission_open {
                    if let Some(t) = self.closed_since.take() {
                        self.admission_wait += now.saturating_duration_since(t);
                    }
                } else if !open && self.admission_open {
                    self.closed_since = Some(now);
                }
                self.admission_open = open;
            }
            SchedEvent::InProcessDone {
                lane,
                task,
                attempt,
                result,
            } => self.on_inproc_done(lane, task, attempt, result, now, &mut out),
            SchedEvent::Written { task } => self.on_written(task, &mut out),
            SchedEvent::Split { task, children } => self.on_split(task, children, &mut out),
            SchedEvent::Tick => self.on_tick(now, &mut out),
        }
        if !self.done {
            self.pump(now, &mut out);
        }
        // Nothing follows a fatal decision.
        if let Some(i) = out.iter().position(|a| matches!(a, SchedAction::Fatal(_))) {
            out.truncate(i + 1);
        }
        out
    }

    fn on_ready(&mut self, key: WorkerKey, pid: u32, now: Instant, out: &mut Vec<SchedAction>) {
        if !matches!(self.current(key), Some(WorkerState::Starting { .. })) {
            return;
        }
        self.workers[key.id.0 as usize] = WorkerState::Idle { gen: key.gen, pid };
        self.start_failures_in_row = 0;
        self.start_timeouts_in_row = 0;
        let t = self.ms(now);
        if let Some(r) = self.record_mut(key) {
            r.pid = Some(pid);
            r.ready_ms = Some(t);
        }
        if self.pending.is_empty() && self.all_assigned() {
            self.retire(key.id, out);
        }
    }

    /// Every chunk is beyond needing a worker.
    fn all_assigned(&self) -> bool {
        // A chunk is on a worker exactly while that worker is busy with it, or stopping with
        // its attempt's fate deferred: O(workers), not O(chunks), on the per-chunk path.
        self.pending.is_empty()
            && self.splitting == 0
            && self.workers.iter().all(|w| {
                !matches!(
                    w,
                    WorkerState::Busy { .. }
                        | WorkerState::Stopping {
                            deferred: Some(_),
                            ..
                        }
                )
            })
    }

    /// The worker's pid, slot and start time if it is busy with exactly this attempt; any
    /// other reply is late (a killed or timed-out worker's) and only counted.
    fn busy_with(
        &mut self,
        key: WorkerKey,
        task: TaskId,
        attempt: Attempt,
    ) -> Option<(u32, SlotId, Instant)> {
        match self.current(key) {
            Some(&WorkerState::Busy {
                pid,
                task: t,
                attempt: a,
                slot,
                since,
                ..
            }) if t == task && a == attempt => Some((pid, slot, since)),
            _ => {
                self.counters.late_replies += 1;
                None
            }
        }
    }

    /// A successful attempt: record it and hand the chunk's slot to the writer.
    fn attempt_succeeded(
        &mut self,
        task: TaskId,
        record: AttemptRecord,
        slot: SlotId,
        outcome: ChunkOutcome,
        out: &mut Vec<SchedAction>,
    ) {
        let entry = &mut self.chunks[task.0 as usize];
        entry.attempts.push(record);
        entry.state = ChunkState::Writing {
            slot: Some(slot),
            outcome,
        };
        out.push(SchedAction::Write {
            task,
            slot: Some(slot),
        });
        self.progress();
    }

    /// The fault injected on this attempt, if any. A fault targets a plan chunk's region:
    /// the parts of a split chunk inherit it.
    fn fault_for(&self, task: TaskId, attempt: Attempt) -> Option<FaultKind> {
        let root = self.chunks[task.0 as usize].root;
        self.cfg
            .faults
            .iter()
            .find(|f| f.fires(root.0, attempt.0))
            .map(|f| f.kind)
    }

    fn on_done(
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
        self.durations_insert(now - since);
        let record = AttemptRecord {
            attempt: attempt.0,
            executor: Executor::Worker {
                worker: key.id,
                pid,
            },
            started_ms: self.ms(since),
            ended_ms: self.ms(now),
            stats: Some(stats),
            failure: None,
            fault: self.fault_for(task, attempt),
            recycled_after: false,
        };
        self.attempt_succeeded(task, record, slot, ChunkOutcome::Done, out);
        self.lane_failures[key.id.0 as usize] = 0;
        if let Some(r) = self.record_mut(key) {
            r.chunks += 1;
        }
        self.last_task[key.id.0 as usize] = Some(task);
        self.workers[key.id.0 as usize] = WorkerState::Idle { gen: key.gen, pid };
        self.after_idle(key, now, out);
    }

    fn durations_insert(&mut self, d: Duration) {
        self.durations.push(d);
    }

    /// A chunk made progress: the breaker's counters start over.
    fn progress(&mut self) {
        self.idle_deaths_since_progress = 0;
        self.quarantines_in_row = 0;
    }

    /// A worker has just become idle: recycle it, retire it, or leave it for `pump`.
    fn after_idle(&mut self, key: WorkerKey, now: Instant, out: &mut Vec<SchedAction>) {
        let i = key.id.0 as usize;
        if self.recycle[i] {
            self.recycle[i] = false;
            self.counters.recycles += 1;
            if let Some(r) = self.record_mut(key) {
                r.recycled = true;
            }
            if let Some(t) = self.last_task[i] {
                if let Some(a) = self.chunks[t.0 as usize].attempts.last_mut() {
                    a.recycled_after = true;
                }
            }
            let pid = match self.workers[i] {
                WorkerState::Idle { pid, .. } => Some(pid),
                _ => None,
            };
            self.workers[i] = WorkerState::Stopping {
                gen: key.gen,
                pid,
                cause: FailureCause::Recycled,
                kill_at: Some(now + self.cfg.kill_grace),
                slot: None,
                deferred: None,
            };
            out.push(SchedAction::Shutdown { key });
        } else if self.all_assigned() {
            self.retire(key.id, out);
        }
    }

    fn retire(&mut self, id: WorkerId, out: &mut Vec<SchedAction>) {
        let i = id.0 as usize;
        if let WorkerState::Idle { gen, .. } | WorkerState::Starting { gen, .. } = self.workers[i] {
            out.push(SchedAction::Shutdown {
                key: WorkerKey { id, gen },
            });
        }
        if let WorkerState::Idle { .. }
        | WorkerState::Starting { .. }
        | WorkerState::Backoff { .. } = self.workers[i]
        {
            self.workers[i] = WorkerState::Retired;
        }
    }

    fn on_task_failed(
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
        self.free_slots.push(slot);
        self.fail_attempt(
            task,
            attempt,
            Executor::Worker {
                worker: key.id,
                pid,
            },
            since,
            FailureCause::WorkerError { error },
            now,
            out,
        );
        self.workers[key.id.0 as usize] = WorkerState::Idle { gen: key.gen, pid };
        self.after_idle(key, now, out);
    }

    /// Records a failed attempt and decides the chunk's next step.
    #[allow(clippy::too_many_arguments)]
    fn fail_attempt(
        &mut self,
        task: TaskId,
        attempt: Attempt,
        executor: Executor,
        since: Instant,
        cause: FailureCause,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let started_ms = self.ms(since);
        let ended_ms = self.ms(now);
        let fault = self.fault_for(task, attempt);
        let entry = &mut self.chunks[task.0 as usize];
        entry.crashed_a_worker |= cause.is_crash();
        entry.attempts.push(AttemptRecord {
            attempt: attempt.0,
            executor,
            started_ms,
            ended_ms,
            stats: None,
            failure: Some(cause),
            fault,
            recycled_after: false,
        });
        self.after_failure(task, out);
    }

    /// A chunk's last attempt failed: retry it, run it in process, split it or quarantine it.
    fn after_failure(&mut self, task: TaskId, out: &mut Vec<SchedAction>) {
        let can_split = self.cfg.can_split;
        let entry = &mut self.chunks[task.0 as usize];
        let Some(last) = entry.attempts.last() else {
            return;
        };
        let attempt = last.attempt;
        let executor = last.executor;
        let cause = last.failure.clone().unwrap_or(FailureCause::Disconnected);
        let timed_out = matches!(cause, FailureCause::Timeout { .. });
        let splittable = can_split && !entry.leaf;
        if timed_out && !entry.crashed_a_worker {
            // The seed design's rule: a chunk whose worker timed out runs in process. A
            // chunk that crashed a worker never does: it could take the coordinator down.
            entry.state = ChunkState::PendingInProcess;
            self.pending_inproc.push_back(task);
        } else if cause.is_read_error() && splittable {
            // A read error is the data's, not the process's: retrying the same window would
            // fail the same way, its parts may not.
            self.ask_split(task, SplitReason::ReadError, out);
        } else if attempt >= entry.max_attempts {
            if splittable {
                tracing::info!(
                    task = task.0,
                    attempts = attempt,
                    cause = %cause.summary(),
                    "chunk keeps failing: splitting it before quarantining anything"
                );
                self.ask_split(task, SplitReason::Crashes, out);
            } else {
                self.quarantine(task, out);
            }
        } else if matches!(executor, Executor::InProcess { .. }) {
            entry.state = ChunkState::PendingInProcess;
            self.pending_inproc.push_front(task);
        } else {
            entry.state = ChunkState::Pending;
            self.pending.push_front(task);
        }
    }

    fn ask_split(&mut self, task: TaskId, reason: SplitReason, out: &mut Vec<SchedAction>) {
        self.chunks[task.0 as usize].state = ChunkState::Splitting { reason };
        self.splitting += 1;
        out.push(SchedAction::Split { task });
    }

    /// The job's answer to `Split`: the chunk ends as split and its parts join the front of
    /// the queue, or it is a leaf and its failure is decided again as such.
    fn on_split(&mut self, task: TaskId, children: u32, out: &mut Vec<SchedAction>) {
        let Some(entry) = self.chunks.get_mut(task.0 as usize) else {
            return;
        };
        let ChunkState::Splitting { reason } = entry.state else {
            return;
        };
        self.splitting -= 1;
        if children == 0 {
            entry.leaf = true;
            return self.after_failure(task, out);
        }
        entry.state = ChunkState::Finished(ChunkOutcome::Split);
        entry.split = Some(reason);
        let (root, crashed) = (entry.root, entry.crashed_a_worker);
        // The parts of a chunk that failed in process (after a timeout) stay in process:
        // the workers may be gone by now, and they would likely time out again.
        let in_process = entry
            .attempts
            .last()
            .is_some_and(|a| matches!(a.executor, Executor::InProcess { .. }));
        let max_attempts = match reason {
            SplitReason::Crashes => 1,
            SplitReason::ReadError => entry.max_attempts,
        };
        self.finished += 1;
        self.counters.splits += 1;
        let first = self.chunks.len() as u32;
        tracing::info!(
            task = task.0,
            ?reason,
            children = ?(first..first + children).collect::<Vec<_>>(),
            "split chunk"
        );
        for _ in 0..children {
            let mut child = ChunkEntry::new(root, max_attempts);
            child.parent = Some(task);
            // A part of a chunk that crashed a worker is never run in process either.
            child.crashed_a_worker = crashed;
            self.chunks.push(child);
        }
        // The parts go first, in order: the region is finished before the queue moves on.
        for t in (first..first + children).rev() {
            if in_process {
                self.chunks[t as usize].state = ChunkState::PendingInProcess;
                self.pending_inproc.push_front(TaskId(t));
            } else {
                self.pending.push_front(TaskId(t));
            }
        }
    }

    fn quarantine(&mut self, task: TaskId, out: &mut Vec<SchedAction>) {
        let root = self.chunks[task.0 as usize].root;
        self.chunks[task.0 as usize].state = ChunkState::Writing {
            slot: None,
            outcome: ChunkOutcome::Quarantined,
        };
        out.push(SchedAction::Write { task, slot: None });
        let cause = self.chunks[task.0 as usize]
            .attempts
            .last()
            .and_then(|a| a.failure.as_ref())
            .map(|c| c.summary())
            .unwrap_or_default();
        tracing::warn!(task = task.0, root = root.0, %cause, "chunk quarantined");
        // The breaker counts plan chunks: one bisected into many quarantined parts is one.
        let parts = &mut self.chunks[root.0 as usize].quarantined_parts;
        *parts += 1;
        if *parts > 1 {
            return;
        }
        self.quarantines_in_row += 1;
        if self.quarantines_in_row >= self.cfg.max_quarantines_in_row {
            self.fatal(
                format!(
                    "{} chunks in a row were quarantined with none done in between: the workers cannot compute this input ({})",
                    self.quarantines_in_row,
                    // The chunk's own cause: GDAL's text or the signal, whether or not a
                    // report is written.
                    if cause.is_empty() { "unknown cause".to_string() } else { cause }
                ),
                out,
            );
        }
    }

    fn fatal(&mut self, why: String, out: &mut Vec<SchedAction>) {
        if !self.done {
            self.done = true;
            out.push(SchedAction::Fatal(why));
        }
    }

    /// Stop a worker on purpose (garbage, disconnect, timeout): its chunk's attempt fails now,
    /// but its slot stays held until the process has exited.
    fn stop_worker(
        &mut self,
        key: WorkerKey,
        cause: FailureCause,
        sig: Sig,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some(st) = self.current(key).cloned() else {
            return;
        };
        let i = key.id.0 as usize;
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
                    self.fail_attempt(
                        task,
                        attempt,
                        Executor::Worker {
                            worker: key.id,
                            pid,
                        },
                        since,
                        cause.clone(),
                        now,
                        out,
                    );
                    (Some(pid), Some(slot), None)
                }
            }
            WorkerState::Idle { pid, .. } => (Some(pid), None, None),
            WorkerState::Starting { .. } => (None, None, None),
            // Already stopping: escalate to KILL if asked.
            WorkerState::Stopping {
                pid,
                cause: c,
                slot,
                deferred,
                ..
            } => {
                if sig == Sig::Kill && !defer {
                    out.push(SchedAction::Signal {
                        key,
                        sig: Sig::Kill,
                    });
                    self.workers[i] = WorkerState::Stopping {
                        gen: key.gen,
                        pid,
                        cause: c,
                        kill_at: None,
                        slot,
                        deferred,
                    };
                }
                return;
            }
            WorkerState::Backoff { .. } | WorkerState::Retired => return,
        };
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
        self.workers[i] = WorkerState::Stopping {
            gen: key.gen,
            pid,
            cause,
            kill_at,
            slot,
            deferred,
        };
    }

    fn on_exit(
        &mut self,
        key: WorkerKey,
        exit: ExitInfo,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some(st) = self.current(key).cloned() else {
            return;
        };
        let i = key.id.0 as usize;
        let observed = FailureCause::from_exit(&exit);
        let (cause, counts_for_breaker) = match st {
            WorkerState::Busy {
                pid,
                task,
                attempt,
                slot,
                since,
                ..
            } => {
                // The process is gone: nothing can write the slot any more.
                self.free_slots.push(slot);
                self.last_death = Some(observed.clone());
                self.fail_attempt(
                    task,
                    attempt,
                    Executor::Worker {
                        worker: key.id,
                        pid,
                    },
                    since,
                    observed.clone(),
                    now,
                    out,
                );
                (observed, false)
            }
            WorkerState::Stopping {
                cause,
                slot,
                deferred,
                kill_at,
                pid,
                ..
            } => {
                if let Some(slot) = slot {
                    self.free_slots.push(slot);
                }
                // What we decided (timeout, garbage...) explains the death better than the
                // signal we sent; but an out-of-memory death is still that, and a closed
                // channel followed by a death we did not cause is that death.
                let we_killed = kill_at.is_none();
                let cause = match (&cause, &observed) {
                    (_, FailureCause::OverMemory { .. }) => observed,
                    (FailureCause::Disconnected, _) if !we_killed => observed,
                    _ => cause,
                };
                self.last_death = Some(cause.clone());
                if let Some((task, attempt, since)) = deferred {
                    let executor = Executor::Worker {
                        worker: key.id,
                        pid: pid.unwrap_or(0),
                    };
                    self.fail_attempt(task, attempt, executor, since, cause.clone(), now, out);
                }
                // A worker stopped while it held no chunk (start timeout, closed channel while
                // idle) is an infrastructure death, like one that dies on its own.
                let infra = slot.is_none() && cause != FailureCause::Recycled;
                if infra && self.record_mut(key).is_some_and(|r| r.ready_ms.is_none()) {
                    self.start_failures_in_row += 1;
                }
                if cause == FailureCause::StartTimeout {
                    self.start_timeouts_in_row += 1;
                }
                (cause, infra)
            }
            WorkerState::Starting { .. } => {
                self.start_failures_in_row += 1;
                (observed, true)
            }
            WorkerState::Idle { .. } => (observed, true),
            WorkerState::Backoff { .. } | WorkerState::Retired => return,
        };
        let ms = self.ms(now);
        if let Some(r) = self.record_mut(key) {
            r.exited_ms = Some(ms);
            r.cause = Some(cause.clone());
            r.stderr_tail = exit.stderr_tail.clone();
        }
        let deliberate = matches!(cause, FailureCause::Recycled);
        if !deliberate {
            self.last_death = Some(cause.clone());
        }
        if counts_for_breaker {
            self.idle_deaths_since_progress += 1;
        }
        if self.start_failures_in_row >= self.cfg.max_start_failures {
            let tail = exit
                .stderr_tail
                .last()
                .map(|l| format!("; its last words: {l}"))
                .unwrap_or_default();
            return self.fatal(
                format!(
                    "workers cannot start: {} in a row died before they were ready (last one {}{tail})",
                    self.start_failures_in_row,
                    cause.summary()
                ),
                out,
            );
        }
        if self.start_timeouts_in_row >= self.cfg.max_start_timeouts {
            return self.fatal(
                format!(
                    "workers cannot start: {} in a row did not say hello within {:?} (--start-timeout); is '--worker-bin' the blocksum worker?",
                    self.start_timeouts_in_row, self.cfg.start_timeout
                ),
                out,
            );
        }
        if self.idle_deaths_since_progress >= self.cfg.max_idle_deaths {
            return self.fatal(
                format!(
                    "workers keep dying before they can work: {} deaths with no chunk finished in between (last one {})",
                    self.idle_deaths_since_progress,
                    cause.summary()
                ),
                out,
            );
        }
        if self.all_assigned() {
            self.workers[i] = WorkerState::Retired;
            return;
        }
        if !deliberate {
            self.lane_failures[i] += 1;
            self.counters.restarts += 1;
        }
        let delay = self.backoff(self.lane_failures[i]);
        if delay.is_zero() {
            self.spawn(key.id, key.gen + 1, now, out);
        } else {
            self.workers[i] = WorkerState::Backoff {
                gen: key.gen + 1,
                until: now + delay,
            };
        }
    }

    /// Restart delay after `failures` consecutive deaths of a lane: none for the first,
    /// then exponential with +-20 % jitter, capped.
    fn backoff(&mut self, failures: u32) -> Duration {
        if failures <= 1 {
            return Duration::ZERO;
        }
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1 << (failures - 2).min(16));
        let capped = exp.min(self.cfg.backoff_max);
        // xorshift: deterministic jitter, no I/O.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let j = 0.8 + 0.4 * ((self.rng >> 11) as f64 / (1u64 << 53) as f64);
        capped.mul_f64(j)
    }

    fn on_soft_limit(&mut self, key: WorkerKey, now: Instant, out: &mut Vec<SchedAction>) {
        match self.current(key) {
            Some(WorkerState::Busy { .. }) => self.recycle[key.id.0 as usize] = true,
            Some(WorkerState::Idle { .. }) => {
                self.recycle[key.id.0 as usize] = true;
                self.after_idle(key, now, out);
            }
            _ => {}
        }
    }

    fn on_inproc_done(
        &mut self,
        lane: u32,
        task: TaskId,
        attempt: Attempt,
        result: Result<TaskStats, String>,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let ChunkState::InProcess {
            lane: l,
            attempt: a,
            slot,
        } = self.chunks[task.0 as usize].state.clone()
        else {
            return;
        };
        if l != lane || a != attempt {
            return;
        }
        let since = self.lanes_busy[lane as usize]
            .take()
            .map_or(now, |(_, t)| t);
        match result {
            Ok(stats) => {
                let record = AttemptRecord {
                    attempt: attempt.0,
                    executor: Executor::InProcess { lane },
                    started_ms: self.ms(since),
                    ended_ms: self.ms(now),
                    stats: Some(stats),
                    failure: None,
                    fault: None,
                    recycled_after: false,
                };
                self.attempt_succeeded(task, record, slot, ChunkOutcome::DoneInProcess, out);
            }
            Err(error) => {
                self.free_slots.push(slot);
                self.fail_attempt(
                    task,
                    attempt,
                    Executor::InProcess { lane },
                    since,
                    FailureCause::InProcessError { error },
                    now,
                    out,
                );
            }
        }
    }

    fn on_written(&mut self, task: TaskId, out: &mut Vec<SchedAction>) {
        let entry = &mut self.chunks[task.0 as usize];
        let ChunkState::Writing { slot, outcome } = entry.state else {
            return;
        };
        entry.state = ChunkState::Finished(outcome);
        if let Some(slot) = slot {
            self.free_slots.push(slot);
        }
        self.finished += 1;
        if self.finished == self.chunks.len() {
            self.done = true;
            for i in 0..self.workers.len() {
                self.retire(WorkerId(i as u32), out);
            }
            out.push(SchedAction::Finished);
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<SchedAction>) {
        let limit = self.time_limit();
        // A thread cannot be killed: an in-process attempt far past the limit ends the run
        // rather than hang it. (With --in-process, the limit is for workers only: none here.)
        if let (Some(l), true) = (limit, self.cfg.workers > 0) {
            for (task, since) in self.lanes_busy.iter().flatten() {
                if now >= *since + inproc_limit(l) {
                    let why = format!(
                        "chunk {task} did not finish in process within {} s (max(time limit x {INPROC_LIMIT_FACTOR}, {} s)); an in-process run cannot be stopped, so the run ends",
                        inproc_limit(l).as_secs(),
                        INPROC_LIMIT_FLOOR.as_secs()
                    );
                    return self.fatal(why, out);
                }
            }
        }
        for i in 0..self.workers.len() {
            let id = WorkerId(i as u32);
            match self.workers[i].clone() {
                WorkerState::Starting { gen, since } if now >= since + self.cfg.start_timeout => {
                    tracing::info!(
                        worker = i,
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
                WorkerState::Busy { gen, since, .. } if limit.is_some_and(|l| now >= since + l) => {
                    self.counters.timeouts += 1;
                    let after_ms = (now - since).as_millis() as u64;
                    tracing::info!(
                        worker = i,
                        after_ms,
                        limit_ms = limit.map_or(0, |l| l.as_millis() as u64),
                        "task timeout: stopping the worker; its chunk runs in process"
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
                    pid,
                    cause,
                    kill_at: Some(at),
                    slot,
                    deferred,
                } if now >= at => {
                    out.push(SchedAction::Signal {
                        key: WorkerKey { id, gen },
                        sig: Sig::Kill,
                    });
                    self.workers[i] = WorkerState::Stopping {
                        gen,
                        pid,
                        cause,
                        kill_at: None,
                        slot,
                        deferred,
                    };
                }
                WorkerState::Backoff { gen, until } if now >= until => {
                    if self.all_assigned() {
                        self.workers[i] = WorkerState::Retired;
                    } else {
                        self.spawn(id, gen, now, out);
                    }
                }
                _ => {}
            }
        }
    }

    /// Hands out work: in-process lanes first (their queue holds chunks that timed out),
    /// then idle workers. Each needs a free slot.
    fn pump(&mut self, now: Instant, out: &mut Vec<SchedAction>) {
        if !self.admission_open {
            return;
        }
        let inproc_only = self.cfg.workers == 0;
        for lane in 0..self.lanes_busy.len() {
            if self.lanes_busy[lane].is_some() {
                continue;
            }
            let next = if !self.pending_inproc.is_empty() {
                self.pending_inproc.front().copied()
            } else if inproc_only {
                self.pending.front().copied()
            } else {
                None
            };
            let Some(task) = next else { break };
            let Some(slot) = self.free_slots.pop() else {
                return;
            };
            if !self.pending_inproc.is_empty() {
                self.pending_inproc.pop_front();
            } else {
                self.pending.pop_front();
            }
            let attempt = Attempt(self.chunks[task.0 as usize].attempts.len() as u32 + 1);
            self.chunks[task.0 as usize].state = ChunkState::InProcess {
                lane: lane as u32,
                attempt,
                slot,
            };
            self.lanes_busy[lane] = Some((task, now));
            out.push(SchedAction::RunInProcess {
                lane: lane as u32,
                task,
                attempt,
                slot,
            });
        }
        // A worker whose attempt's fate waits for its exit status still counts as busy: its
        // chunk comes back to the front of the queue in a moment and must find the spare free.
        let mut busy = self
            .workers
            .iter()
            .filter(|w| {
                matches!(
                    w,
                    WorkerState::Busy { .. }
                        | WorkerState::Stopping {
                            deferred: Some(_),
                            ..
                        }
                )
            })
            .count() as u32;
        for i in 0..self.workers.len() {
            if busy >= self.cfg.max_busy {
                break;
            }
            let WorkerState::Idle { gen, pid } = self.workers[i] else {
                continue;
            };
            if self.recycle[i] {
                continue;
            }
            let Some(&task) = self.pending.front() else {
                break;
            };
            let Some(slot) = self.free_slots.pop() else {
                return;
            };
            self.pending.pop_front();
            let attempt = Attempt(self.chunks[task.0 as usize].attempts.len() as u32 + 1);
            let key = WorkerKey {
                id: WorkerId(i as u32),
                gen,
            };
            self.chunks[task.0 as usize].state = ChunkState::OnWorker { key, attempt, slot };
            self.workers[i] = WorkerState::Busy {
                gen,
                pid,
                task,
                attempt,
                slot,
                since: now,
            };
            let fault = self.fault_for(task, attempt);
            busy += 1;
            out.push(SchedAction::Dispatch {
                key,
                task,
                attempt,
                slot,
                fault,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_process_attempt_far_past_the_limit_ends_the_run() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut cfg = SchedConfig::new(1, 1, 3);
        cfg.timeout = Some(TimeoutSpec::Fixed(Duration::from_millis(100)));
        let (mut s, _) = Scheduler::new(cfg, 1, t0);
        let key = WorkerKey {
            id: WorkerId(0),
            gen: 0,
        };
        let acts = s.handle(ms(1), SchedEvent::WorkerReady { key, pid: 42 });
        assert!(matches!(acts[0], SchedAction::Dispatch { .. }));
        // The worker times out: TERM, and the chunk runs in process.
        let acts = s.handle(ms(101), SchedEvent::Tick);
        assert!(
            acts.contains(&SchedAction::Signal {
                key,
                sig: Sig::Term
            }),
            "{acts:?}"
        );
        assert!(
            acts.iter()
                .any(|a| matches!(a, SchedAction::RunInProcess { .. })),
            "{acts:?}"
        );
        // The in-process attempt hangs: a minute later the run ends instead of hanging.
        assert!(s.next_deadline().is_some_and(|d| d <= ms(101 + 60_000)));
        let acts = s.handle(ms(30_000), SchedEvent::Tick);
        assert!(
            !acts.iter().any(|a| matches!(a, SchedAction::Fatal(_))),
            "{acts:?}"
        );
        let acts = s.handle(ms(60_102), SchedEvent::Tick);
        assert!(
            acts.iter()
                .any(|a| matches!(a, SchedAction::Fatal(w) if w.contains("in process"))),
            "{acts:?}"
        );
    }

    #[test]
    fn a_warm_spare_takes_a_crashed_workers_chunk_at_once() {
        let t0 = Instant::now();
        let mut cfg = SchedConfig::new(3, 1, 5);
        cfg.max_busy = 2;
        let (mut s, _) = Scheduler::new(cfg, 10, t0);
        let keys: Vec<WorkerKey> = (0..3)
            .map(|i| WorkerKey {
                id: WorkerId(i),
                gen: 0,
            })
            .collect();
        let mut dispatched = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            for a in s.handle(
                t0,
                SchedEvent::WorkerReady {
                    key: *k,
                    pid: 100 + i as u32,
                },
            ) {
                if let SchedAction::Dispatch { key, task, .. } = a {
                    dispatched.push((key, task));
                }
            }
        }
        // Two busy at most: the third process waits as a spare.
        assert_eq!(dispatched.len(), 2, "{dispatched:?}");
        let (victim, task) = dispatched[0];
        // As the pool reports a crash: the channel closes first, then the exit status comes.
        // The spare must not take another chunk in between: the crashed one comes first.
        let acts = s.handle(t0, SchedEvent::Disconnected { key: victim });
        assert!(
            !acts
                .iter()
                .any(|a| matches!(a, SchedAction::Dispatch { .. })),
            "{acts:?}"
        );
        let exit = ExitInfo {
            signal: Some(9),
            ..ExitInfo::default()
        };
        let acts = s.handle(
            t0 + Duration::from_millis(2),
            SchedEvent::WorkerExited { key: victim, exit },
        );
        // In the same step: the chunk goes to the spare, and the dead lane restarts.
        let retry = acts.iter().find_map(|a| match a {
            SchedAction::Dispatch {
                key,
                task: t,
                attempt,
                ..
            } if *t == task => Some((*key, *attempt)),
            _ => None,
        });
        let (spare, attempt) = retry.expect("the spare took the chunk");
        assert_ne!(spare, victim);
        assert_eq!(attempt, Attempt(2));
        assert!(
            acts.contains(&SchedAction::Spawn {
                key: WorkerKey {
                    id: victim.id,
                    gen: 1
                }
            }),
            "{acts:?}"
        );
    }

    #[test]
    fn running_median_matches_sorting() {
        let mut m = RunningMedian::default();
        let mut all = Vec::new();
        let mut x = 12345u64;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = Duration::from_micros(x % 10_000);
            m.push(d);
            all.push(d);
            all.sort();
            assert_eq!(m.median(), Some(all[all.len() / 2]));
        }
    }
}

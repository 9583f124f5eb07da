//! The scheduling decisions, as a state machine with no I/O: events in, actions out.
//!
//! `Scheduler` is a facade: it routes each event to the part that owns the state it
//! changes and turns their answers into actions. The parts:
//!
//! - `events`: the vocabulary (ids, events, actions, causes) every part and caller imports;
//! - `chunks`: the chunk table (lifecycle, queues, the facts the retry rule needs);
//! - `lanes`: the worker lanes and in-process lanes, which hold the attempts in flight;
//! - `slots`: the free result slots;
//! - `history`: attempt and worker records and counters, for the report only;
//! - `policy`: backoff, breaker, timeouts and admission, each a small tested rule.
//!
//! It never touches a process, a channel, a clock or a file: the supervisor feeds it events
//! stamped with `now` and carries out the actions it returns, so every rule here is tested
//! without a single process. It logs each supervision decision where it is made, so that
//! `-v` tells the story the report tells.
//!
//! Promise kept here: every chunk ends exactly once, done by a worker, done in process,
//! quarantined, or split into child chunks that each keep the same promise; never lost,
//! never written twice.
//!
//! Splitting is asked for, not computed here: the scheduler knows no windows. When a chunk
//! fails to read, or would be quarantined, it returns `Split { task }`; the job answers
//! `SchedEvent::Split { task, children }` with the number of child chunks it appended (their
//! ids follow the last task's), or 0 when the chunk cannot be split (a leaf).

mod chunks;
mod events;
mod history;
mod lanes;
mod policy;
mod slots;

use std::time::{Duration, Instant};

use protocol::{Attempt, FaultKind, FaultSpec, SlotId, TaskId, TaskStats};

use self::{
    chunks::{ChunkState, ChunkTable},
    history::History,
    lanes::{InProcessAttempt, InProcessLanes, LaneTable},
    policy::{
        admission::Admission,
        backoff::Jitter,
        breaker::{Breaker, Death},
        timeouts::{inproc_limit, Timeouts, DISCONNECT_GRACE},
    },
    slots::SlotPool,
};
pub use self::{
    events::{
        signal_name, ChunkOutcome, Executor, ExitInfo, FailureCause, FatalReason, SchedAction,
        SchedEvent, Sig, SplitReason, TimeoutSpec, WorkerId, WorkerKey,
    },
    history::{AttemptRecord, SchedCounters, WorkerRecord},
    lanes::WorkerState,
    policy::timeouts::{DEFAULT_START_TIMEOUT, DEFAULT_TIMEOUT_FLOOR, FIRST_CHUNKS_LIMIT},
};

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

pub struct Scheduler {
    cfg: SchedConfig,
    chunks: ChunkTable,
    lanes: LaneTable,
    inproc: InProcessLanes,
    slots: SlotPool,
    history: History,
    timeouts: Timeouts,
    breaker: Breaker,
    jitter: Jitter,
    admission: Admission,
    done: bool,
    pub counters: SchedCounters,
}

impl Scheduler {
    /// A scheduler for `chunks` chunks; returns the first actions (spawn the pool, start
    /// in-process work).
    pub fn new(cfg: SchedConfig, chunks: usize, now: Instant) -> (Scheduler, Vec<SchedAction>) {
        let mut s = Scheduler {
            chunks: ChunkTable::new(chunks, cfg.max_attempts),
            lanes: LaneTable::new(cfg.workers, cfg.backoff_base, cfg.backoff_max),
            inproc: InProcessLanes::new(cfg.lanes),
            slots: SlotPool::new(cfg.slots),
            history: History::new(chunks, now),
            timeouts: Timeouts::new(cfg.timeout, cfg.timeout_floor),
            breaker: Breaker::new(&cfg),
            jitter: Jitter::new(cfg.jitter_seed),
            admission: Admission::new(cfg.admission_open, now),
            done: false,
            counters: SchedCounters::default(),
            cfg,
        };
        let mut out = Vec::new();
        if chunks == 0 {
            s.done = true;
            out.push(SchedAction::Finished);
            return (s, out);
        }
        for id in s.lanes.ids().collect::<Vec<_>>() {
            s.spawn(WorkerKey { id, gen: 0 }, now, &mut out);
        }
        s.pump(now, &mut out);
        (s, out)
    }

    // -----------------------------------------------------------------------------------
    // Queries.

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn worker_state(&self, id: WorkerId) -> &WorkerState {
        &self.lanes.get(id).state
    }

    pub fn attempts(&self, task: TaskId) -> &[AttemptRecord] {
        self.history.attempts(task)
    }

    pub fn outcome(&self, task: TaskId) -> Option<ChunkOutcome> {
        self.chunks.outcome(task)
    }

    pub fn worker_records(&self) -> &[WorkerRecord] {
        self.history.workers()
    }

    /// Time dispatch has been held by admission so far.
    pub fn admission_wait(&self, now: Instant) -> Duration {
        self.admission.waited(now)
    }

    pub fn admission_open(&self) -> bool {
        self.admission.is_open()
    }

    pub fn finished(&self) -> usize {
        self.chunks.finished()
    }

    /// Chunks known so far: the plan's, then the parts of split chunks.
    pub fn tasks(&self) -> usize {
        self.chunks.len()
    }

    /// The chunk `task` was split from.
    pub fn parent(&self, task: TaskId) -> Option<TaskId> {
        self.chunks.get(task).parent
    }

    /// Why `task` was split, if it was.
    pub fn split_reason(&self, task: TaskId) -> Option<SplitReason> {
        self.chunks.get(task).split
    }

    /// The current per-attempt time limit.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeouts.limit()
    }

    /// The earliest instant at which a `Tick` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let limit = self.time_limit();
        self.lanes
            .iter()
            .filter_map(|l| match &l.state {
                WorkerState::Starting { since, .. } => Some(*since + self.cfg.start_timeout),
                WorkerState::Busy { since, .. } => limit.map(|l| *since + l),
                WorkerState::Stopping { kill_at, .. } => *kill_at,
                WorkerState::Backoff { until, .. } => Some(*until),
                _ => None,
            })
            .chain(
                self.inproc
                    .running()
                    .filter(|_| self.cfg.workers > 0)
                    .filter_map(|r| limit.map(|l| r.since + inproc_limit(l))),
            )
            .min()
    }

    /// Records a worker's exit after the run has ended (for the report only: no decision).
    /// `deliberate`: the coordinator stopped it (a spare or a finished worker at the end):
    /// that is no death, whatever signal it took.
    pub fn record_exit(&mut self, key: WorkerKey, exit: &ExitInfo, now: Instant, deliberate: bool) {
        let ms = self.history.ms(now);
        if let Some(r) = self.history.worker_mut(key) {
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

    // -----------------------------------------------------------------------------------
    // Events.

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
                if open != self.admission.is_open() {
                    tracing::info!(open, "admission changed");
                }
                self.admission.set(open, now);
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
        tracing::debug!(worker = key.id.0, gen = key.gen, pid, "worker ready");
        if self.chunks.pending_is_empty() && self.all_assigned() {
            self.retire(key.id, out);
        }
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
        self.timeouts.record(now - since);
        let record = AttemptRecord {
            attempt: attempt.0,
            executor: Executor::Worker {
                worker: key.id,
                pid,
            },
            started_ms: self.history.ms(since),
            ended_ms: self.history.ms(now),
            stats: Some(stats),
            failure: None,
            fault: self.fault_for(task, attempt),
            recycled_after: false,
        };
        self.attempt_succeeded(task, record, slot, ChunkOutcome::Done, out);
        let lane = self.lanes.get_mut(key.id);
        lane.backoff.reset();
        lane.last_task = Some(task);
        lane.state = WorkerState::Idle { gen: key.gen, pid };
        if let Some(r) = self.history.worker_mut(key) {
            r.chunks += 1;
        }
        self.after_idle(key, now, out);
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
        // The process lives on and has answered: nothing writes the slot any more.
        self.slots.give_back(slot);
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
        self.lanes.get_mut(key.id).state = WorkerState::Idle { gen: key.gen, pid };
        self.after_idle(key, now, out);
    }

    fn on_soft_limit(&mut self, key: WorkerKey, now: Instant, out: &mut Vec<SchedAction>) {
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

    fn on_inproc_done(
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
                let record = AttemptRecord {
                    attempt: attempt.0,
                    executor,
                    started_ms: self.history.ms(run.since),
                    ended_ms: self.history.ms(now),
                    stats: Some(stats),
                    failure: None,
                    fault: None,
                    recycled_after: false,
                };
                self.attempt_succeeded(task, record, run.slot, ChunkOutcome::DoneInProcess, out);
            }
            Err(error) => {
                self.slots.give_back(run.slot);
                let cause = FailureCause::InProcessError { error };
                self.fail_attempt(task, attempt, executor, run.since, cause, now, out);
            }
        }
    }

    fn on_written(&mut self, task: TaskId, out: &mut Vec<SchedAction>) {
        let Some(slot) = self.chunks.written(task) else {
            return;
        };
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

    /// The job's answer to `Split`: the chunk ends as split and its parts join the front of
    /// the queue, or it is a leaf and its failure is decided again as such.
    fn on_split(&mut self, task: TaskId, children: u32, out: &mut Vec<SchedAction>) {
        let Some(reason) = self.chunks.split_answered(task) else {
            return;
        };
        if children == 0 {
            tracing::debug!(task = task.0, "chunk cannot be split");
            self.chunks.get_mut(task).leaf = true;
            return self.after_failure(task, out);
        }
        self.counters.splits += 1;
        let first = self.chunks.split(task, reason, children);
        self.history.add_chunks(children);
        tracing::info!(
            task = task.0,
            ?reason,
            children = ?(first..first + children).collect::<Vec<_>>(),
            "split chunk"
        );
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<SchedAction>) {
        let limit = self.time_limit();
        // A thread cannot be killed: an in-process attempt far past the limit ends the run
        // rather than hang it. (With --in-process, the limit is for workers only: none here.)
        if let (Some(l), true) = (limit, self.cfg.workers > 0) {
            let hung = self
                .inproc
                .running()
                .find(|r| now >= r.since + inproc_limit(l))
                .map(|r| r.task);
            if let Some(task) = hung {
                let why = FatalReason::InProcessHang {
                    task,
                    limit: inproc_limit(l),
                };
                return self.fatal(why, out);
            }
        }
        for id in self.lanes.ids().collect::<Vec<_>>() {
            match self.lanes.get(id).state.clone() {
                WorkerState::Starting { gen, since } if now >= since + self.cfg.start_timeout => {
                    tracing::info!(
                        worker = id.0,
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
                WorkerState::Busy { gen, since, .. } if self.timeouts.expired(since, now) => {
                    self.counters.timeouts += 1;
                    let after_ms = (now - since).as_millis() as u64;
                    tracing::info!(
                        worker = id.0,
                        after_ms,
                        limit_ms = limit.map_or(0, |l| l.as_millis() as u64),
                        "task timeout: stopping the worker"
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
                    kill_at: Some(at),
                    ..
                } if now >= at => {
                    tracing::debug!(
                        worker = id.0,
                        gen,
                        "worker did not exit in time: killing it"
                    );
                    out.push(SchedAction::Signal {
                        key: WorkerKey { id, gen },
                        sig: Sig::Kill,
                    });
                    if let WorkerState::Stopping { kill_at, .. } = &mut self.lanes.get_mut(id).state
                    {
                        *kill_at = None;
                    }
                }
                WorkerState::Backoff { gen, until } if now >= until => {
                    if self.all_assigned() {
                        self.lanes.get_mut(id).state = WorkerState::Retired;
                    } else {
                        self.spawn(WorkerKey { id, gen }, now, out);
                    }
                }
                _ => {}
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Worker lifecycle.

    fn spawn(&mut self, key: WorkerKey, now: Instant, out: &mut Vec<SchedAction>) {
        self.lanes.starting(key, now);
        self.history.worker_spawned(key, now);
        out.push(SchedAction::Spawn { key });
    }

    /// The worker's pid, slot and start time if it is busy with exactly this attempt; any
    /// other reply is late (a killed or timed-out worker's) and only counted.
    fn busy_with(
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
                debug_assert_eq!(
                    self.chunks.get(task).state,
                    ChunkState::OnWorker { worker: key.id }
                );
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

    /// A worker has just become idle: recycle it, retire it, or leave it for `pump`.
    fn after_idle(&mut self, key: WorkerKey, now: Instant, out: &mut Vec<SchedAction>) {
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

    fn retire(&mut self, id: WorkerId, out: &mut Vec<SchedAction>) {
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

    /// Every chunk is beyond needing a worker.
    fn all_assigned(&self) -> bool {
        // A chunk is on a worker exactly while that worker holds its attempt: O(workers),
        // not O(chunks), on the per-chunk path.
        self.chunks.none_waiting_for_workers() && self.lanes.with_attempt() == 0
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
                    let executor = Executor::Worker {
                        worker: key.id,
                        pid,
                    };
                    self.fail_attempt(task, attempt, executor, since, cause.clone(), now, out);
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

    /// A worker process is gone: settle its attempt and slot, record the death, ask the
    /// breaker, and restart the lane (at once or after a backoff) or retire it.
    fn on_exit(
        &mut self,
        key: WorkerKey,
        exit: ExitInfo,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        let Some(st) = self.lanes.current(key).cloned() else {
            return;
        };
        let Some((cause, death)) = self.settle_exit(key, st, &exit, now, out) else {
            return;
        };
        let ms = self.history.ms(now);
        if let Some(r) = self.history.worker_mut(key) {
            r.exited_ms = Some(ms);
            r.cause = Some(cause.clone());
            r.stderr_tail = exit.stderr_tail.clone();
        }
        let deliberate = matches!(cause, FailureCause::Recycled);
        if deliberate {
            tracing::debug!(worker = key.id.0, gen = key.gen, "recycled worker exited");
        } else {
            tracing::info!(worker = key.id.0, gen = key.gen, cause = %cause.summary(), "worker died");
        }
        let death = Death {
            cause: &cause,
            before_ready: death.before_ready,
            idle: death.idle,
            last_words: exit.stderr_tail.last().map(String::as_str),
        };
        if let Some(why) = self.breaker.worker_died(death) {
            return self.fatal(why, out);
        }
        self.restart(key, deliberate, now, out);
    }

    /// The exit's effect on the lane's attempt and slot; the cause to record and what kind
    /// of death it was, or `None` when the lane was not alive.
    fn settle_exit(
        &mut self,
        key: WorkerKey,
        st: WorkerState,
        exit: &ExitInfo,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) -> Option<(FailureCause, DeathKind)> {
        let observed = FailureCause::from_exit(exit);
        match st {
            WorkerState::Busy {
                pid,
                task,
                attempt,
                slot,
                since,
                ..
            } => {
                // The process is gone: nothing can write the slot any more.
                self.slots.give_back(slot);
                let executor = Executor::Worker {
                    worker: key.id,
                    pid,
                };
                self.fail_attempt(task, attempt, executor, since, observed.clone(), now, out);
                Some((observed, DeathKind::WORKING))
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
                    self.slots.give_back(slot);
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
                if let Some((task, attempt, since)) = deferred {
                    let executor = Executor::Worker {
                        worker: key.id,
                        pid: pid.unwrap_or(0),
                    };
                    self.fail_attempt(task, attempt, executor, since, cause.clone(), now, out);
                }
                // A worker stopped while it held no chunk (start timeout, closed channel while
                // idle) is an infrastructure death, like one that dies on its own.
                let idle = slot.is_none() && cause != FailureCause::Recycled;
                Some((
                    cause,
                    DeathKind {
                        // Only a worker stopped before its hello has no pid.
                        before_ready: idle && pid.is_none(),
                        idle,
                    },
                ))
            }
            WorkerState::Starting { .. } => Some((
                observed,
                DeathKind {
                    before_ready: true,
                    idle: true,
                },
            )),
            WorkerState::Idle { .. } => Some((
                observed,
                DeathKind {
                    before_ready: false,
                    idle: true,
                },
            )),
            WorkerState::Backoff { .. } | WorkerState::Retired => None,
        }
    }

    /// After a worker's exit: a new incarnation now or after the lane's backoff, or none if
    /// no chunk needs a worker any more.
    fn restart(
        &mut self,
        key: WorkerKey,
        deliberate: bool,
        now: Instant,
        out: &mut Vec<SchedAction>,
    ) {
        if self.all_assigned() {
            self.lanes.get_mut(key.id).state = WorkerState::Retired;
            return;
        }
        let lane = self.lanes.get_mut(key.id);
        let nominal = if deliberate {
            lane.backoff.current()
        } else {
            self.counters.restarts += 1;
            lane.backoff.next().unwrap_or_default()
        };
        let failures = lane.backoff.failures();
        let delay = self.jitter.spread(nominal);
        let next = WorkerKey {
            id: key.id,
            gen: key.gen + 1,
        };
        if delay.is_zero() {
            tracing::debug!(
                worker = key.id.0,
                gen = next.gen,
                failures,
                "restarting worker"
            );
            self.spawn(next, now, out);
        } else {
            tracing::info!(
                worker = key.id.0,
                gen = next.gen,
                failures,
                delay_ms = delay.as_millis() as u64,
                "restarting worker after a backoff"
            );
            self.lanes.get_mut(key.id).state = WorkerState::Backoff {
                gen: next.gen,
                until: now + delay,
            };
        }
    }

    // -----------------------------------------------------------------------------------
    // Chunk lifecycle.

    /// The fault injected on this attempt, if any. A fault targets a plan chunk's region:
    /// the parts of a split chunk inherit it.
    fn fault_for(&self, task: TaskId, attempt: Attempt) -> Option<FaultKind> {
        let root = self.chunks.get(task).root;
        self.cfg
            .faults
            .iter()
            .find(|f| f.fires(root.0, attempt.0))
            .map(|f| f.kind)
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
        self.history.attempt_ended(task, record);
        self.chunks.attempt_succeeded(task, slot, outcome);
        out.push(SchedAction::Write {
            task,
            slot: Some(slot),
        });
        // A chunk made progress: the breaker's counters start over.
        self.breaker.progress();
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
        self.after_failure(task, out);
    }

    /// A chunk's last attempt failed: retry it, run it in process, split it or quarantine it.
    fn after_failure(&mut self, task: TaskId, out: &mut Vec<SchedAction>) {
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
                self.quarantine(task, out);
            }
        } else if last.in_process {
            tracing::info!(task = task.0, attempt, cause = %cause.summary(), "retrying chunk in process");
            self.chunks.queue_in_process(task, true);
        } else {
            tracing::info!(task = task.0, attempt, cause = %cause.summary(), "retrying chunk");
            self.chunks.retry(task);
        }
    }

    fn ask_split(&mut self, task: TaskId, reason: SplitReason, out: &mut Vec<SchedAction>) {
        self.chunks.ask_split(task, reason);
        out.push(SchedAction::Split { task });
    }

    fn quarantine(&mut self, task: TaskId, out: &mut Vec<SchedAction>) {
        let first_of_root = self.chunks.quarantine(task);
        out.push(SchedAction::Write { task, slot: None });
        let entry = self.chunks.get(task);
        let root = entry.root;
        let cause = entry.last_failure.as_ref().map(|f| f.cause.clone());
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

    fn fatal(&mut self, why: FatalReason, out: &mut Vec<SchedAction>) {
        if !self.done {
            // Info, not error: the supervisor reports the reason itself, once.
            tracing::info!(%why, "the run cannot go on");
            self.done = true;
            out.push(SchedAction::Fatal(why));
        }
    }

    /// Hands out work: in-process lanes first (their queue holds chunks that timed out),
    /// then idle workers. Each needs a free slot.
    fn pump(&mut self, now: Instant, out: &mut Vec<SchedAction>) {
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
                break;
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

/// What kind of death a worker exit was, for the breaker.
#[derive(Debug, Clone, Copy)]
struct DeathKind {
    before_ready: bool,
    idle: bool,
}

impl DeathKind {
    /// Died holding a chunk.
    const WORKING: DeathKind = DeathKind {
        before_ready: false,
        idle: false,
    };
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
            acts.iter().any(
                |a| matches!(a, SchedAction::Fatal(w) if w.to_string().contains("in process"))
            ),
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
}

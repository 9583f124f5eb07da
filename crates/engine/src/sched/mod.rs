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
//! - `policy`: backoff, breaker, timeouts, speculation and admission, each a small tested
//!   rule.
//!
//! Its own methods are split by verb, each file a further `impl Scheduler`:
//!
//! - `dispatch`: handing chunks to lanes and idle workers, a worker's hello, late replies;
//! - `done`: a successful attempt, and the written chunk that frees its slot;
//! - `fail`: a failed attempt and the chunk's next step (retry, in process, split, quarantine);
//! - `speculate`: backup attempts of long-running chunks on idle workers, and the loser's stop;
//! - `stop`: stopping, recycling and retiring workers on purpose;
//! - `exit`: a worker process gone, and its lane's restart after a backoff;
//! - `tick`: deadlines (start timeout, task timeout, kill grace, backoff, in-process hang).
//!
//! This file keeps the config, the state, `new`, the routing in `handle`, the queries and
//! `fatal`.
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

mod dispatch;
mod done;
mod exit;
mod fail;
mod speculate;
mod stop;
mod tick;

use std::time::{Duration, Instant};

use protocol::{FaultSpec, TaskId};

use crate::observe::{Observer, RunEvent};

use self::{
    chunks::ChunkTable,
    history::History,
    lanes::{InProcessLanes, LaneTable},
    policy::{
        admission::Admission,
        backoff::Jitter,
        breaker::Breaker,
        speculation::Speculation,
        timeouts::{inproc_limit, Timeouts},
    },
    slots::SlotPool,
};
pub use self::{
    events::{
        signal_name, ChunkOutcome, Culprit, Executor, ExitInfo, FailureCause, FatalReason,
        SchedAction, SchedEvent, Sig, SplitReason, TimeoutSpec, WorkerId, WorkerKey,
    },
    history::{AttemptRecord, SchedCounters, WorkerRecord},
    lanes::WorkerState,
    policy::{
        speculation::{SpeculationSpec, DEFAULT_SPECULATION_FACTOR, DEFAULT_SPECULATION_FLOOR},
        timeouts::{DEFAULT_START_TIMEOUT, DEFAULT_TIMEOUT_FLOOR, FIRST_CHUNKS_LIMIT},
    },
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
    /// Speculative backup attempts of long-running chunks on idle workers. Off here (the
    /// engine's tests drive attempts one at a time); the coordinator turns it on.
    pub speculation: SpeculationSpec,
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
    /// Breaker: plan chunks whose first attempt died (crash or timeout) with none done in
    /// between: the failure follows the run from chunk to chunk, so it is the computation's,
    /// not a chunk's. A plan of fewer chunks trips it when all of them died and bisection
    /// found their parts failing alike down to the depth it stops at.
    pub max_dying_chunks: u32,
    /// What computes a chunk, for the breaker's message (e.g. "the kernel in libk.so").
    pub suspect: String,
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
            speculation: SpeculationSpec::Off,
            kill_grace: Duration::from_millis(500),
            start_timeout: DEFAULT_START_TIMEOUT,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_secs(2),
            max_start_failures: 5,
            max_start_timeouts: 2,
            max_idle_deaths: 12,
            max_quarantines_in_row: 8,
            max_dying_chunks: 4,
            suspect: "the kernel (or the reader of the input)".into(),
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
    speculation: Speculation,
    breaker: Breaker,
    jitter: Jitter,
    admission: Admission,
    done: bool,
    /// Lanes not started yet: the warm spares (lanes from `max_busy` on), and the workers
    /// beyond the plan's chunks. They start once the pool is busy (`start_waiting_lanes`).
    unstarted: Vec<WorkerId>,
    pub counters: SchedCounters,
}

impl Scheduler {
    /// A scheduler for `chunks` chunks; returns the first actions (spawn the pool, start
    /// in-process work).
    pub fn new(cfg: SchedConfig, chunks: usize, now: Instant) -> (Scheduler, Vec<SchedAction>) {
        Scheduler::observed(cfg, chunks, now, None)
    }

    /// As [`Scheduler::new`], telling `observer` every decision from the first spawn on (the
    /// event stream, the progress bar): the scheduler itself stays free of I/O.
    pub fn observed(
        cfg: SchedConfig,
        chunks: usize,
        now: Instant,
        observer: Option<Observer>,
    ) -> (Scheduler, Vec<SchedAction>) {
        let mut history = History::new(chunks, now);
        if let Some(o) = observer {
            history.observe(o);
        }
        let mut s = Scheduler {
            chunks: ChunkTable::new(chunks, cfg.max_attempts),
            lanes: LaneTable::new(cfg.workers, cfg.backoff_base, cfg.backoff_max),
            inproc: InProcessLanes::new(cfg.lanes),
            slots: SlotPool::new(cfg.slots),
            history,
            timeouts: Timeouts::new(cfg.timeout, cfg.timeout_floor),
            speculation: Speculation::new(cfg.speculation),
            breaker: Breaker::new(&cfg, chunks),
            jitter: Jitter::new(cfg.jitter_seed),
            admission: Admission::new(cfg.admission_open, now),
            done: false,
            unstarted: Vec::new(),
            counters: SchedCounters::default(),
            cfg,
        };
        let mut out = Vec::new();
        if chunks == 0 {
            s.done = true;
            out.push(SchedAction::Finished);
            return (s, out);
        }
        // No more workers than chunks at first: a worker without a chunk only costs its
        // start-up (and CPU the others need).
        let first = (s.cfg.max_busy as usize).min(chunks);
        s.unstarted = s.lanes.ids().skip(first).collect();
        for id in s.lanes.ids().take(first).collect::<Vec<_>>() {
            s.spawn(WorkerKey { id, gen: 0 }, now, &mut out);
        }
        if first < s.cfg.max_busy as usize {
            tracing::info!(
                chunks,
                workers = s.cfg.max_busy,
                "fewer chunks than workers: starting {first} worker(s); the others start only if chunks wait for them"
            );
        }
        s.pump(now, &mut out);
        (s, out)
    }

    /// Starts the lanes not started yet (see `unstarted`) once a worker is ready and more
    /// chunks wait than the workers starting will take: their start-up never delays the
    /// pool's first worker or its first chunk, and a run whose workers take all its chunks
    /// (a one-chunk raster) starts none. (A speculative backup starts one of them when it
    /// needs it: `speculate`.)
    fn start_waiting_lanes(&mut self, now: Instant, out: &mut Vec<SchedAction>) {
        if self.unstarted.is_empty() || self.chunks.pending_is_empty() {
            return;
        }
        let (mut ready, mut starting) = (false, 0);
        for l in self.lanes.iter() {
            match l.state {
                WorkerState::Idle { .. } | WorkerState::Busy { .. } => ready = true,
                WorkerState::Starting { .. } => starting += 1,
                _ => {}
            }
        }
        if !ready || self.chunks.pending_len() <= starting {
            return;
        }
        let waiting = std::mem::take(&mut self.unstarted);
        tracing::debug!(
            lanes = waiting.len(),
            "a worker is ready and chunks wait: starting the warm spares (and the workers not started yet)"
        );
        for id in waiting {
            self.start_unstarted(id, now, out);
        }
    }

    /// Starts lane `id` if it never ran.
    fn start_unstarted(&mut self, id: WorkerId, now: Instant, out: &mut Vec<SchedAction>) {
        self.unstarted.retain(|&u| u != id);
        if self.lanes.get(id).state == WorkerState::Retired {
            self.spawn(WorkerKey { id, gen: 0 }, now, out);
        }
    }

    /// A lane within `max_busy` that never ran (a worker the plan's chunks did not need).
    fn startable_lane(&self) -> Option<WorkerId> {
        self.unstarted
            .iter()
            .copied()
            .find(|id| id.0 < self.cfg.max_busy)
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

    /// Whether a written chunk may wait to be reported: a slot is free (so dispatch does not
    /// wait for one) and a worker holds an attempt (so the run cannot finish before its end,
    /// which is reported anyway). A `Written` then changes no decision until the next event.
    pub fn writes_can_wait(&self) -> bool {
        self.slots.free() > 0 && self.lanes.with_attempt() > 0
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
            .chain(self.speculation_deadline())
            .min()
    }

    /// Records a worker's exit after the run has ended (for the report only: no decision).
    /// `deliberate`: the coordinator stopped it (a spare or a finished worker at the end):
    /// that is no death, whatever signal it took.
    pub fn record_exit(&mut self, key: WorkerKey, exit: &ExitInfo, now: Instant, deliberate: bool) {
        // A live lane's exit goes on to `on_exit`, which tells the event with the cause the
        // scheduler decided (a timeout rather than the TERM that ended it): not twice.
        let decided_later = !self.done
            && matches!(
                self.lanes.current(key),
                Some(s) if !matches!(s, WorkerState::Backoff { .. } | WorkerState::Retired)
            );
        // The loser of a speculative race killed as the run ended: say so, not "no cause".
        let superseded = match self.lanes.current(key) {
            Some(WorkerState::Stopping {
                cause: c @ FailureCause::Superseded { .. },
                ..
            }) => Some(c.clone()),
            _ => None,
        };
        let deliberate = deliberate || superseded.is_some();
        let ms = self.history.ms(now);
        // A worker being stopped for a failure (a timeout) when the run ended keeps that
        // cause, whoever ended it: the decision was made before.
        let decided = match self.lanes.current(key) {
            Some(WorkerState::Stopping { cause, .. })
                if self.done
                    && !matches!(
                        cause,
                        FailureCause::Recycled | FailureCause::Superseded { .. }
                    ) =>
            {
                Some(cause.clone())
            }
            _ => None,
        };
        // Then its exit is that death, not the end of the run's deliberate stop.
        let deliberate = deliberate && decided.is_none();
        let mut noted = None;
        if let Some(r) = self.history.worker_mut(key) {
            if r.exited_ms.is_none() {
                r.exited_ms = Some(ms);
                r.stderr_tail = exit.stderr_tail.clone();
                // A clean exit at the end of the run is no failure: no cause.
                if let Some(c) = superseded.clone().or(decided) {
                    r.cause = Some(c);
                } else if exit.code != Some(0) && !deliberate {
                    r.cause = Some(FailureCause::from_exit(exit));
                }
                noted = Some(RunEvent::WorkerExited {
                    worker: key.id.0,
                    gen: key.gen,
                    pid: r.pid,
                    cause: r.cause.clone(),
                    deliberate,
                    stderr_tail: exit.stderr_tail.clone(),
                });
            }
        }
        if let (Some(e), false) = (noted, decided_later) {
            self.history.note(now, e);
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
                    self.history.note(now, RunEvent::Admission { open });
                }
                self.admission.set(open, now);
            }
            SchedEvent::InProcessDone {
                lane,
                task,
                attempt,
                result,
            } => self.on_inproc_done(lane, task, attempt, result, now, &mut out),
            SchedEvent::Written { task } => self.on_written(task, now, &mut out),
            SchedEvent::Split { task, children } => self.on_split(task, children, now, &mut out),
            SchedEvent::Tick => self.on_tick(now, &mut out),
        }
        if !self.done {
            self.pump(now, &mut out);
            self.start_waiting_lanes(now, &mut out);
        }
        // Nothing follows a fatal decision.
        if let Some(i) = out.iter().position(|a| matches!(a, SchedAction::Fatal(_))) {
            out.truncate(i + 1);
        }
        out
    }

    /// The report's record of `task`'s attempt `attempt`, run by `executor` over `span`
    /// (start, end): its stats, or why it failed.
    fn attempt_record(
        &self,
        task: TaskId,
        attempt: protocol::Attempt,
        executor: Executor,
        (since, now): (Instant, Instant),
        result: Result<protocol::TaskStats, FailureCause>,
    ) -> AttemptRecord {
        let (stats, failure) = match result {
            Ok(s) => (Some(s), None),
            Err(c) => (None, Some(c)),
        };
        AttemptRecord {
            attempt: attempt.0,
            executor,
            started_ms: self.history.ms(since),
            ended_ms: self.history.ms(now),
            stats,
            failure,
            fault: self.fault_for(task, attempt),
            recycled_after: false,
            speculative: self.chunks.get(task).backup == Some(attempt),
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
}

#[cfg(test)]
mod tests {
    use protocol::Attempt;

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

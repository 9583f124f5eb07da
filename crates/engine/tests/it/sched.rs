//! Drives the scheduler state machine with events and a fake clock: no processes, no
//! threads, no sleeps. A small model of the world (worker processes, in-process lanes, the
//! shared slots, the writer) carries out the actions the scheduler returns and checks the
//! invariants on every step:
//!
//! - a slot is never handed out while something may still write it (a worker that was
//!   dispatched into it and has neither answered nor exited, a lane, or the writer);
//! - a worker is spawned only once its previous incarnation has exited, with `gen + 1`;
//! - work is dispatched only to live, ready, idle workers, with the next attempt number;
//! - every chunk is written exactly once, and `Finished` comes after the last write;
//! - a split chunk is never written, each of its parts is, once.
//!
//! Geometry for splitting is one-dimensional: plan chunk `t` covers blocks `t*B..(t+1)*B`,
//! a split halves a chunk's range of blocks, a chunk of one block is a leaf. Misbehaviour is
//! set per block, so the parts of a chunk that holds a bad block misbehave too.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use crate::{key, stats};
use engine::sched::*;
use protocol::{Attempt, SlotId, TaskId, TaskStats};

const SIGKILL: i32 = 9;
const SIGSEGV: i32 = 11;
const SIGTERM: i32 = 15;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn killed_by(sig: i32) -> ExitInfo {
    ExitInfo {
        signal: Some(sig),
        ..ExitInfo::default()
    }
}

fn exited(code: i32) -> ExitInfo {
    ExitInfo {
        code: Some(code),
        ..ExitInfo::default()
    }
}

fn segv() -> FailureCause {
    FailureCause::Signal {
        signal: SIGSEGV,
        name: "SIGSEGV".into(),
    }
}

/// A config with the knobs the tests care about.
fn config(workers: u32, lanes: u32, slots: u32) -> SchedConfig {
    SchedConfig::new(workers, lanes, slots)
}

/// Deterministic xorshift64* so that "random" orders are reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

// ---------------------------------------------------------------------------------------
// Action filters.

fn spawns(acts: &[SchedAction]) -> Vec<WorkerKey> {
    acts.iter()
        .filter_map(|a| match a {
            SchedAction::Spawn { key } => Some(*key),
            _ => None,
        })
        .collect()
}

fn dispatches(acts: &[SchedAction]) -> Vec<(WorkerKey, TaskId, Attempt, SlotId)> {
    acts.iter()
        .filter_map(|a| match a {
            SchedAction::Dispatch {
                key,
                task,
                attempt,
                slot,
                ..
            } => Some((*key, *task, *attempt, *slot)),
            _ => None,
        })
        .collect()
}

fn in_process_runs(acts: &[SchedAction]) -> Vec<(u32, TaskId, Attempt, SlotId)> {
    acts.iter()
        .filter_map(|a| match a {
            SchedAction::RunInProcess {
                lane,
                task,
                attempt,
                slot,
            } => Some((*lane, *task, *attempt, *slot)),
            _ => None,
        })
        .collect()
}

fn signals(acts: &[SchedAction]) -> Vec<(WorkerKey, Sig)> {
    acts.iter()
        .filter_map(|a| match a {
            SchedAction::Signal { key, sig } => Some((*key, sig.clone())),
            _ => None,
        })
        .collect()
}

fn shutdowns(acts: &[SchedAction]) -> Vec<WorkerKey> {
    acts.iter()
        .filter_map(|a| match a {
            SchedAction::Shutdown { key } => Some(*key),
            _ => None,
        })
        .collect()
}

fn writes(acts: &[SchedAction]) -> Vec<(TaskId, Option<SlotId>)> {
    acts.iter()
        .filter_map(|a| match a {
            SchedAction::Write { task, slot } => Some((*task, *slot)),
            _ => None,
        })
        .collect()
}

fn fatal(acts: &[SchedAction]) -> Option<String> {
    acts.iter().find_map(|a| match a {
        SchedAction::Fatal(why) => Some(why.to_string()),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------
// The model of the world.

/// Who may write a slot right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotUse {
    /// Dispatched into; the process has neither answered nor exited.
    Worker { key: WorkerKey, task: TaskId },
    /// An in-process lane is computing into it.
    Lane { lane: u32, task: TaskId },
    /// Holds a finished result the scheduler accepted; a `Write` must follow.
    Result { task: TaskId },
    /// The writer is reading it.
    Writing { task: TaskId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Job {
    task: TaskId,
    attempt: Attempt,
    slot: SlotId,
}

/// One worker process (one incarnation of a lane).
#[derive(Debug, Clone)]
struct Proc {
    key: WorkerKey,
    pid: u32,
    ready: bool,
    alive: bool,
    job: Option<Job>,
    shutdown: bool,
    signals: Vec<Sig>,
}

impl Proc {
    fn stopping(&self) -> bool {
        self.shutdown || !self.signals.is_empty()
    }
}

/// What a worker does with a given chunk, in the automatic driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehave {
    /// The process dies with SIGSEGV.
    Crash,
    /// The worker answers `Failed`.
    Fail,
    /// The worker never answers (only a timeout ends the attempt).
    Hang,
}

struct World {
    s: Scheduler,
    t0: Instant,
    now: Instant,
    slots: u32,
    lanes_n: u32,
    procs: Vec<Proc>,
    lanes: BTreeMap<u32, Job>,
    slot_use: HashMap<SlotId, SlotUse>,
    /// Writes asked for and not yet reported written.
    pending_writes: Vec<(TaskId, Option<SlotId>)>,
    write_count: Vec<u32>,
    /// Every action ever returned, in order.
    log: Vec<SchedAction>,
    /// Chunks whose result the scheduler accepted (worker or in process).
    completions: u32,
    finished: bool,
    fatal: Option<String>,
    /// Keyed by block: with one block per chunk, the plan chunk's id.
    misbehave: HashMap<TaskId, Misbehave>,
    next_pid: u32,
    /// Per task: its range of blocks.
    ranges: Vec<(u32, u32)>,
    split_parents: HashSet<TaskId>,
    /// Speculation is on: a chunk may get one backup attempt beside a running one.
    speculation: bool,
    /// Chunks that got their backup.
    backed_up: HashSet<TaskId>,
}

impl World {
    fn new(cfg: SchedConfig, chunks: usize) -> (World, Vec<SchedAction>) {
        World::with_blocks(cfg, chunks, 1)
    }

    /// A world whose plan chunks are `blocks` blocks each.
    fn with_blocks(cfg: SchedConfig, chunks: usize, blocks: u32) -> (World, Vec<SchedAction>) {
        let t0 = Instant::now();
        let slots = cfg.slots;
        let lanes_n = cfg.lanes;
        let speculation = cfg.speculation != SpeculationSpec::Off;
        let (s, first) = Scheduler::new(cfg, chunks, t0);
        let mut w = World {
            s,
            t0,
            now: t0,
            slots,
            lanes_n,
            procs: Vec::new(),
            lanes: BTreeMap::new(),
            slot_use: HashMap::new(),
            pending_writes: Vec::new(),
            write_count: vec![0; chunks],
            log: Vec::new(),
            completions: 0,
            finished: false,
            fatal: None,
            misbehave: HashMap::new(),
            next_pid: 1000,
            ranges: (0..chunks as u32)
                .map(|t| (t * blocks, (t + 1) * blocks))
                .collect(),
            split_parents: HashSet::new(),
            speculation,
            backed_up: HashSet::new(),
        };
        w.apply(&first);
        (w, first)
    }

    /// Moves the fake clock to `t0 + n` ms.
    fn at(&mut self, n: u64) {
        self.at_instant(self.t0 + ms(n));
    }

    fn at_instant(&mut self, t: Instant) {
        assert!(t >= self.now, "the fake clock must not go backwards");
        self.now = t;
    }

    fn t(&self, n: u64) -> Instant {
        self.t0 + ms(n)
    }

    fn proc_mut(&mut self, key: WorkerKey) -> Option<&mut Proc> {
        self.procs.iter_mut().find(|p| p.key == key)
    }

    fn proc(&self, key: WorkerKey) -> &Proc {
        self.procs
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no process {key:?}"))
    }

    /// The latest incarnation spawned for lane `id`.
    fn latest(&self, id: u32) -> WorkerKey {
        self.procs
            .iter()
            .rev()
            .find(|p| p.key.id == WorkerId(id))
            .unwrap_or_else(|| panic!("lane {id} never spawned"))
            .key
    }

    fn pid(&self, key: WorkerKey) -> u32 {
        self.proc(key).pid
    }

    fn chunks(&self) -> usize {
        self.write_count.len()
    }

    /// Hands an event to the scheduler, updates the model for the event, then carries out
    /// the actions.
    fn send(&mut self, ev: SchedEvent) -> Vec<SchedAction> {
        let watched = match &ev {
            SchedEvent::TaskDone { task, .. }
            | SchedEvent::TaskFailed { task, .. }
            | SchedEvent::InProcessDone { task, .. } => Some(*task),
            _ => None,
        };
        let before = watched.map(|t| self.s.attempts(t).len());
        let acts = self.s.handle(self.now, ev.clone());
        let accepted = match (watched, before) {
            (Some(t), Some(n)) => self.s.attempts(t).len() > n,
            _ => false,
        };
        self.observe(&ev, accepted);
        self.apply(&acts);
        let mut all = acts.clone();
        // The job answers a split at once, as the supervisor does.
        for a in &acts {
            if let SchedAction::Split { task } = a {
                let children = self.split(*task);
                all.extend(self.send(SchedEvent::Split {
                    task: *task,
                    children,
                }));
            }
        }
        all
    }

    /// The job's side of a split: halve the range of blocks, or 0 for a single block.
    fn split(&mut self, task: TaskId) -> u32 {
        let (lo, hi) = self.ranges[task.0 as usize];
        if hi - lo <= 1 {
            return 0;
        }
        self.split_parents.insert(task);
        let mid = lo + (hi - lo) / 2;
        self.ranges.extend([(lo, mid), (mid, hi)]);
        self.write_count.extend([0, 0]);
        2
    }

    /// How the chunk misbehaves: as its worst block does.
    fn misbehaviour(&self, task: TaskId) -> Option<Misbehave> {
        let (lo, hi) = self.ranges[task.0 as usize];
        let all: Vec<Misbehave> = (lo..hi)
            .filter_map(|b| self.misbehave.get(&TaskId(b)).copied())
            .collect();
        all.iter()
            .find(|m| **m == Misbehave::Crash)
            .or(all.first())
            .copied()
    }

    /// The world's side of an event: what the process, lane or writer did.
    fn observe(&mut self, ev: &SchedEvent, accepted: bool) {
        match ev {
            SchedEvent::WorkerReady { key, .. } => {
                if let Some(p) = self.proc_mut(*key) {
                    p.ready = true;
                }
            }
            SchedEvent::TaskDone {
                key, task, attempt, ..
            }
            | SchedEvent::TaskFailed {
                key, task, attempt, ..
            } => {
                let done = matches!(ev, SchedEvent::TaskDone { .. });
                let job = self.proc_mut(*key).and_then(|p| match p.job {
                    Some(j) if j.task == *task && j.attempt == *attempt => p.job.take(),
                    _ => None,
                });
                if !accepted {
                    // Ignored: the scheduler still counts the slot as the process's until it
                    // exits, and so does the model.
                    return;
                }
                let job = job.expect("an accepted reply must match the worker's job");
                assert_eq!(
                    self.slot_use.get(&job.slot),
                    Some(&SlotUse::Worker {
                        key: *key,
                        task: *task
                    })
                );
                if done {
                    self.slot_use
                        .insert(job.slot, SlotUse::Result { task: *task });
                    self.completions += 1;
                } else {
                    self.slot_use.remove(&job.slot);
                }
            }
            SchedEvent::WorkerExited { key, .. } => {
                if let Some(p) = self.proc_mut(*key) {
                    p.alive = false;
                    p.job = None;
                }
                // The process is gone: nothing of it can write a slot any more.
                self.slot_use
                    .retain(|_, u| !matches!(u, SlotUse::Worker { key: k, .. } if k == key));
            }
            SchedEvent::InProcessDone {
                lane, task, result, ..
            } => {
                let job = self.lanes.remove(lane);
                if !accepted {
                    return;
                }
                let job = job.expect("an accepted in-process result must match a lane's job");
                assert_eq!(job.task, *task);
                if result.is_ok() {
                    self.slot_use
                        .insert(job.slot, SlotUse::Result { task: *task });
                    self.completions += 1;
                } else {
                    self.slot_use.remove(&job.slot);
                }
            }
            SchedEvent::Written { task } => {
                let i = self
                    .pending_writes
                    .iter()
                    .position(|(t, _)| t == task)
                    .unwrap_or_else(|| panic!("Written for {task:?} that was never asked for"));
                let (_, slot) = self.pending_writes.remove(i);
                if let Some(slot) = slot {
                    assert_eq!(
                        self.slot_use.remove(&slot),
                        Some(SlotUse::Writing { task: *task })
                    );
                }
            }
            SchedEvent::Garbage { .. }
            | SchedEvent::Split { .. }
            | SchedEvent::Disconnected { .. }
            | SchedEvent::OverSoftLimit { .. }
            | SchedEvent::Admission { .. }
            | SchedEvent::Tick => {}
        }
    }

    fn take_slot(&mut self, slot: SlotId, by: SlotUse) {
        assert!(slot.0 < self.slots, "slot {slot:?} out of range");
        if let Some(holder) = self.slot_use.get(&slot) {
            panic!(
                "slot {slot:?} handed to {by:?} while still held by {holder:?} (at {} ms)",
                (self.now - self.t0).as_millis()
            );
        }
        self.slot_use.insert(slot, by);
    }

    /// The next attempt's number: after those that ended and the one still running.
    fn next_attempt(&self, task: TaskId) -> Attempt {
        Attempt(self.s.attempts(task).len() as u32 + self.running(task) + 1)
    }

    /// Attempts of `task` running on a healthy worker or a lane.
    fn running(&self, task: TaskId) -> u32 {
        let on_workers = self
            .procs
            .iter()
            .filter(|p| p.alive && !p.stopping() && p.job.is_some_and(|j| j.task == task))
            .count();
        let on_lanes = self.lanes.values().filter(|j| j.task == task).count();
        (on_workers + on_lanes) as u32
    }

    /// Carries out actions, checking each against the model.
    fn apply(&mut self, acts: &[SchedAction]) {
        for a in acts {
            self.log.push(a.clone());
            assert!(
                !self.finished && self.fatal.is_none(),
                "action after the end of the run: {a:?}"
            );
            match a {
                SchedAction::Spawn { key } => self.spawn(*key),
                SchedAction::Dispatch {
                    key,
                    task,
                    attempt,
                    slot,
                    ..
                } => self.dispatch(*key, *task, *attempt, *slot),
                SchedAction::RunInProcess {
                    lane,
                    task,
                    attempt,
                    slot,
                } => self.run_in_process(*lane, *task, *attempt, *slot),
                SchedAction::Signal { key, sig } => {
                    let p = self
                        .proc_mut(*key)
                        .unwrap_or_else(|| panic!("signal to unknown {key:?}"));
                    assert!(p.alive, "signal to a dead process {key:?}");
                    p.signals.push(sig.clone());
                }
                SchedAction::Shutdown { key } => {
                    let p = self
                        .proc_mut(*key)
                        .unwrap_or_else(|| panic!("shutdown of unknown {key:?}"));
                    assert!(p.alive, "shutdown of a dead process {key:?}");
                    p.shutdown = true;
                }
                SchedAction::Write { task, slot } => self.write(*task, *slot),
                SchedAction::Split { task } => {
                    assert_eq!(self.write_count[task.0 as usize], 0, "split after a write");
                    assert!(!self.split_parents.contains(task), "{task:?} split twice");
                }
                SchedAction::Finished => {
                    assert!(self.pending_writes.is_empty());
                    self.assert_each_written_once();
                    assert!(self.s.is_done());
                    self.finished = true;
                }
                SchedAction::Fatal(why) => {
                    assert!(self.s.is_done());
                    self.fatal = Some(why.to_string());
                }
            }
        }
    }

    /// A worker spawned: a new one, or the next generation of a dead one.
    fn spawn(&mut self, key: WorkerKey) {
        let prev = self.procs.iter().rev().find(|p| p.key.id == key.id);
        match prev {
            Some(p) => {
                assert!(!p.alive, "{key:?} spawned while {:?} is alive", p.key);
                assert_eq!(key.gen, p.key.gen + 1, "generations go up by one");
            }
            None => assert_eq!(key.gen, 0),
        }
        assert!(key.id.0 < 1_000);
        self.next_pid += 1;
        self.procs.push(Proc {
            key,
            pid: self.next_pid,
            ready: false,
            alive: true,
            job: None,
            shutdown: false,
            signals: Vec::new(),
        });
    }

    /// A chunk sent to a ready, idle worker, with the attempt number it is owed.
    fn dispatch(&mut self, key: WorkerKey, task: TaskId, attempt: Attempt, slot: SlotId) {
        let p = self.proc(key);
        assert!(
            p.alive && p.ready && p.job.is_none() && !p.stopping(),
            "dispatch of {task:?} to a worker that cannot take it: {p:?}"
        );
        assert_eq!(attempt, self.next_attempt(task));
        self.assert_not_running_or_backup(task);
        self.take_slot(slot, SlotUse::Worker { key, task });
        let job = Job {
            task,
            attempt,
            slot,
        };
        self.proc_mut(key).expect("checked above").job = Some(job);
    }

    /// A chunk run on a free in-process lane.
    fn run_in_process(&mut self, lane: u32, task: TaskId, attempt: Attempt, slot: SlotId) {
        assert!(lane < self.lanes_n, "lane {lane} does not exist");
        assert!(!self.lanes.contains_key(&lane), "lane {lane} is busy");
        assert_eq!(attempt, self.next_attempt(task));
        self.assert_not_running(task);
        self.take_slot(slot, SlotUse::Lane { lane, task });
        self.lanes.insert(
            lane,
            Job {
                task,
                attempt,
                slot,
            },
        );
    }

    /// A chunk's output written, once, from the slot that holds its result.
    fn write(&mut self, task: TaskId, slot: Option<SlotId>) {
        assert!(
            !self.split_parents.contains(&task),
            "{task:?} written after a split"
        );
        let n = &mut self.write_count[task.0 as usize];
        *n += 1;
        assert_eq!(*n, 1, "{task:?} written twice");
        if let Some(at) = slot {
            assert_eq!(
                self.slot_use.get(&at),
                Some(&SlotUse::Result { task }),
                "write of {task:?} from a slot that does not hold its result"
            );
            self.slot_use.insert(at, SlotUse::Writing { task });
        }
        self.pending_writes.push((task, slot));
    }

    /// A chunk dispatched to a worker: not running elsewhere, or (with speculation) its one
    /// backup beside exactly one running attempt on a worker.
    fn assert_not_running_or_backup(&mut self, task: TaskId) {
        if self.speculation
            && self.running(task) == 1
            && !self.lanes.values().any(|j| j.task == task)
        {
            assert!(self.backed_up.insert(task), "{task:?} backed up twice");
            return;
        }
        self.assert_not_running(task);
    }

    /// A chunk being (re)started must not be running on a healthy worker or a lane.
    fn assert_not_running(&self, task: TaskId) {
        for p in &self.procs {
            if p.alive && !p.stopping() {
                assert!(
                    p.job.is_none_or(|j| j.task != task),
                    "{task:?} started again while {:?} still runs it",
                    p.key
                );
            }
        }
        for (lane, j) in &self.lanes {
            assert_ne!(
                j.task, task,
                "{task:?} started again while lane {lane} runs it"
            );
        }
    }

    // -- events, by name ----------------------------------------------------------------

    fn ready(&mut self, id: u32) -> Vec<SchedAction> {
        let key = self.latest(id);
        self.ready_key(key)
    }

    fn ready_key(&mut self, key: WorkerKey) -> Vec<SchedAction> {
        let pid = self.pid(key);
        self.send(SchedEvent::WorkerReady { key, pid })
    }

    fn job(&self, key: WorkerKey) -> Job {
        self.proc(key)
            .job
            .unwrap_or_else(|| panic!("{key:?} has no job"))
    }

    /// The latest worker of lane `id` answers `Done` for its job.
    fn done(&mut self, id: u32) -> Vec<SchedAction> {
        let key = self.latest(id);
        self.done_key(key)
    }

    fn done_key(&mut self, key: WorkerKey) -> Vec<SchedAction> {
        let j = self.job(key);
        self.send(SchedEvent::TaskDone {
            key,
            task: j.task,
            attempt: j.attempt,
            stats: stats(),
        })
    }

    fn fail(&mut self, id: u32, error: &str) -> Vec<SchedAction> {
        let key = self.latest(id);
        let j = self.job(key);
        self.send(SchedEvent::TaskFailed {
            key,
            task: j.task,
            attempt: j.attempt,
            error: error.into(),
        })
    }

    /// The latest process of lane `id` exits.
    fn exit(&mut self, id: u32, exit: ExitInfo) -> Vec<SchedAction> {
        let key = self.latest(id);
        self.exit_key(key, exit)
    }

    fn exit_key(&mut self, key: WorkerKey, exit: ExitInfo) -> Vec<SchedAction> {
        assert!(self.proc(key).alive, "{key:?} already exited");
        self.send(SchedEvent::WorkerExited { key, exit })
    }

    fn lane_done(&mut self, lane: u32, result: Result<TaskStats, String>) -> Vec<SchedAction> {
        let j = *self
            .lanes
            .get(&lane)
            .unwrap_or_else(|| panic!("lane {lane} is idle"));
        self.send(SchedEvent::InProcessDone {
            lane,
            task: j.task,
            attempt: j.attempt,
            result,
        })
    }

    fn written(&mut self, task: TaskId) -> Vec<SchedAction> {
        // The supervisor reads a write late when the scheduler says writes can wait: then
        // the write must change no decision.
        let could_wait = self.s.writes_can_wait();
        let acts = self.send(SchedEvent::Written { task });
        assert!(
            !could_wait || acts.is_empty(),
            "a write that could wait led to {acts:?}"
        );
        acts
    }

    fn write_all(&mut self) -> Vec<SchedAction> {
        let mut out = Vec::new();
        while let Some(&(task, _)) = self.pending_writes.first() {
            out.extend(self.written(task));
        }
        out
    }

    fn tick(&mut self) -> Vec<SchedAction> {
        self.send(SchedEvent::Tick)
    }

    /// If lane `id` waits out a backoff, moves the clock to its end and ticks (which must
    /// spawn it). Returns the key of the lane's current incarnation.
    fn through_backoff(&mut self, id: u32) -> WorkerKey {
        if let WorkerState::Backoff { gen, until } = self.s.worker_state(WorkerId(id)).clone() {
            self.at_instant(until);
            let acts = self.tick();
            assert!(spawns(&acts).contains(&key(id, gen)), "{acts:?}");
        }
        self.latest(id)
    }

    /// A live process that is not being stopped, picked at random.
    fn random_live(&self, rng: &mut Rng, ready_only: bool) -> Option<WorkerKey> {
        let live: Vec<WorkerKey> = self
            .procs
            .iter()
            .filter(|p| p.alive && !p.stopping() && (p.ready || !ready_only))
            .map(|p| p.key)
            .collect();
        (!live.is_empty()).then(|| live[rng.below(live.len())])
    }

    // -- the automatic driver -----------------------------------------------------------

    /// One natural thing happens, 1 ms later: a Tick if a deadline is due, else a random
    /// one of: a process says hello, answers its job (or misbehaves), exits after being
    /// told to; a lane finishes; the writer finishes a write. With nothing to do, jumps to
    /// the next deadline. Returns false when the world is stuck.
    fn step(&mut self, rng: &mut Rng) -> bool {
        #[derive(Clone, Copy)]
        enum Choice {
            Ready(WorkerKey),
            Reply(WorkerKey),
            Exit(WorkerKey),
            Lane(u32),
            Write(usize),
        }
        self.now += ms(1);
        if self.s.next_deadline().is_some_and(|d| d <= self.now) {
            self.tick();
            return true;
        }
        let mut choices = Vec::new();
        for p in self.procs.iter().filter(|p| p.alive) {
            if p.stopping() {
                choices.push(Choice::Exit(p.key));
            } else if !p.ready {
                choices.push(Choice::Ready(p.key));
            } else if p
                .job
                .is_some_and(|j| self.misbehaviour(j.task) != Some(Misbehave::Hang))
            {
                choices.push(Choice::Reply(p.key));
            }
        }
        choices.extend(self.lanes.keys().map(|&l| Choice::Lane(l)));
        choices.extend((0..self.pending_writes.len()).map(Choice::Write));
        if choices.is_empty() {
            return match self.s.next_deadline() {
                Some(d) => {
                    self.now = self.now.max(d);
                    self.tick();
                    true
                }
                None => false,
            };
        }
        match choices[rng.below(choices.len())] {
            Choice::Ready(k) => {
                self.ready_key(k);
            }
            Choice::Reply(k) => {
                let j = self.job(k);
                match self.misbehaviour(j.task) {
                    Some(Misbehave::Crash) => {
                        self.exit_key(k, killed_by(SIGSEGV));
                    }
                    Some(Misbehave::Fail) => {
                        self.send(SchedEvent::TaskFailed {
                            key: k,
                            task: j.task,
                            attempt: j.attempt,
                            error: "cannot read block".into(),
                        });
                    }
                    None | Some(Misbehave::Hang) => {
                        self.done_key(k);
                    }
                }
            }
            Choice::Exit(k) => {
                let p = self.proc(k);
                let exit = match p.signals.last() {
                    Some(Sig::Kill) => killed_by(SIGKILL),
                    Some(Sig::Term) => killed_by(SIGTERM),
                    None => exited(0),
                };
                self.exit_key(k, exit);
            }
            Choice::Lane(l) => {
                // In process, a crashing block computes (the model has no process to
                // crash), a failing one fails.
                let (lo, hi) = self.ranges[self.lanes[&l].task.0 as usize];
                let fails =
                    (lo..hi).any(|b| self.misbehave.get(&TaskId(b)) == Some(&Misbehave::Fail));
                let result = if fails {
                    Err("cannot read block".into())
                } else {
                    Ok(stats())
                };
                self.lane_done(l, result);
            }
            Choice::Write(i) => {
                let task = self.pending_writes[i].0;
                self.written(task);
            }
        }
        true
    }

    /// Runs the automatic driver until `Finished` or `Fatal`; panics if stuck.
    fn run_to_end(&mut self, rng: &mut Rng) {
        for _ in 0..100_000 {
            if self.finished || self.fatal.is_some() {
                return;
            }
            if !self.step(rng) {
                let mut ids: Vec<WorkerId> = self.procs.iter().map(|p| p.key.id).collect();
                ids.dedup();
                let states: Vec<WorkerState> = ids
                    .into_iter()
                    .map(|id| self.s.worker_state(id).clone())
                    .collect();
                panic!(
                    "stuck with nothing to do: finished {} of {}, workers {states:?}",
                    self.s.finished(),
                    self.chunks()
                );
            }
        }
        panic!("the run did not end in 100000 steps");
    }

    fn assert_finished(&self) {
        assert!(self.finished, "not finished (fatal: {:?})", self.fatal);
        assert!(self.fatal.is_none());
        assert_eq!(self.s.finished(), self.chunks());
        assert_eq!(self.s.tasks(), self.chunks());
        self.assert_each_written_once();
    }

    /// Every chunk ended exactly once: a split one never written (its outcome `Split`), any
    /// other written once.
    fn assert_each_written_once(&self) {
        for (t, &n) in self.write_count.iter().enumerate() {
            let task = TaskId(t as u32);
            if self.split_parents.contains(&task) {
                assert_eq!(n, 0, "{task:?} was split and written");
                assert_eq!(self.s.outcome(task), Some(ChunkOutcome::Split));
            } else {
                assert_eq!(n, 1, "{task:?} written {n} times");
            }
        }
    }

    fn outcomes(&self) -> Vec<Option<ChunkOutcome>> {
        (0..self.chunks() as u32)
            .map(|t| self.s.outcome(TaskId(t)))
            .collect()
    }

    fn all_log<T>(&self, f: impl Fn(&[SchedAction]) -> Vec<T>) -> Vec<T> {
        f(&self.log)
    }
}

// ---------------------------------------------------------------------------------------
// 1. Happy path.

#[test]
fn happy_path_two_workers_step_by_step() {
    let (mut w, first) = World::new(config(2, 1, 4), 10);
    assert_eq!(
        first,
        vec![
            SchedAction::Spawn { key: key(0, 0) },
            SchedAction::Spawn { key: key(1, 0) }
        ]
    );
    assert!(!w.s.is_done());
    // Workers are starting: the start deadline is the next thing to watch.
    assert_eq!(w.s.next_deadline(), Some(w.t(10_000)));

    w.at(1);
    let a = w.ready(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 0), TaskId(0), Attempt(1), SlotId(0))]
    );
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Busy {
            task: TaskId(0),
            ..
        }
    ));
    w.at(2);
    let a = w.ready(1);
    assert_eq!(
        dispatches(&a),
        vec![(key(1, 0), TaskId(1), Attempt(1), SlotId(1))]
    );
    // No timeout configured, nobody starting: nothing to wake up for.
    assert_eq!(w.s.next_deadline(), None);

    w.at(10);
    let a = w.done(0);
    assert_eq!(writes(&a), vec![(TaskId(0), Some(SlotId(0)))]);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 0), TaskId(2), Attempt(1), SlotId(2))]
    );
    // Chunk 0 is being written, not finished yet.
    assert_eq!(w.s.outcome(TaskId(0)), None);
    let a = w.written(TaskId(0));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(w.s.outcome(TaskId(0)), Some(ChunkOutcome::Done));

    let mut rng = Rng::new(1);
    w.run_to_end(&mut rng);
    w.assert_finished();
    assert!(w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)));
    for t in 0..10 {
        let att = w.s.attempts(TaskId(t));
        assert_eq!(att.len(), 1);
        assert_eq!(att[0].attempt, 1);
        assert!(att[0].failure.is_none());
        assert_eq!(att[0].stats, Some(stats()));
        assert!(matches!(att[0].executor, Executor::Worker { .. }));
    }
    assert_eq!(w.all_log(dispatches).len(), 10);
    assert_eq!(w.all_log(spawns).len(), 2);
    assert!(w.all_log(in_process_runs).is_empty());
    assert!(w.all_log(signals).is_empty());
    let recs = w.s.worker_records();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs.iter().map(|r| r.chunks).sum::<u32>(), 10);
    assert!(recs.iter().all(|r| r.ready_ms.is_some() && !r.recycled));
    assert_eq!(w.s.counters.restarts, 0);
    assert_eq!(w.s.counters.late_replies, 0);
    // Both workers were told to go home.
    let mut sd = w.all_log(shutdowns);
    sd.sort_by_key(|k| k.id);
    assert_eq!(sd, vec![key(0, 0), key(1, 0)]);
    // After the end, the scheduler is silent.
    assert!(w.s.handle(w.now + ms(5), SchedEvent::Tick).is_empty());
}

#[test]
fn happy_path_many_orders_and_tight_slots() {
    for seed in 0..40 {
        for slots in [1, 2, 3, 6] {
            let (mut w, _) = World::new(config(2, 1, slots), 10);
            let mut rng = Rng::new(seed);
            w.run_to_end(&mut rng);
            w.assert_finished();
            assert!(
                w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)),
                "seed {seed} slots {slots}"
            );
            assert_eq!(w.all_log(dispatches).len(), 10);
            assert_eq!(w.all_log(spawns).len(), 2);
        }
    }
}

#[test]
fn no_chunks_finishes_at_once() {
    let (w, first) = World::new(config(3, 1, 5), 0);
    assert_eq!(first, vec![SchedAction::Finished]);
    assert!(w.s.is_done());
    assert!(w.procs.is_empty());
}

#[test]
fn workers_are_retired_when_nothing_is_left_for_them() {
    // 3 workers, 2 chunks: the third would have nothing to do and is never started. The
    // first is kept while a chunk is still on a worker (it may crash and need another); a
    // worker is let go once every chunk is past needing one, and the rest at the end.
    let (mut w, first) = World::new(config(3, 1, 6), 2);
    assert_eq!(spawns(&first), vec![key(0, 0), key(1, 0)]);
    w.ready(0);
    let a = w.ready(1);
    assert!(spawns(&a).is_empty(), "{a:?}");
    assert_eq!(w.s.worker_state(WorkerId(2)), &WorkerState::Retired);
    let a = w.done(0);
    assert!(shutdowns(&a).is_empty(), "{a:?}");
    let a = w.done(1);
    assert_eq!(shutdowns(&a), vec![key(1, 0)]);
    assert_eq!(w.s.worker_state(WorkerId(1)), &WorkerState::Retired);
    // Its exit is expected and changes nothing.
    let a = w.exit(1, exited(0));
    assert!(a.is_empty(), "{a:?}");
    let a = w.write_all();
    assert_eq!(
        a,
        vec![
            SchedAction::Shutdown { key: key(0, 0) },
            SchedAction::Finished
        ]
    );
    w.assert_finished();
    assert_eq!(w.s.counters.restarts, 0);
}

#[test]
fn the_lanes_not_started_start_only_when_more_chunks_wait_than_workers_start() {
    // 2 workers and a spare, 1 chunk: one worker starts, and nothing else while it holds
    // the chunk, nor when its crash puts the chunk back (its own restart takes it).
    let (mut w, first) = World::new(
        SchedConfig {
            max_busy: 2,
            ..config(3, 1, 6)
        },
        1,
    );
    assert_eq!(spawns(&first), vec![key(0, 0)]);
    let a = w.ready(0);
    assert!(spawns(&a).is_empty(), "{a:?}");
    let a = w.exit(0, killed_by(SIGSEGV));
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    w.run_to_end(&mut Rng::new(7));
    w.assert_finished();
    assert!(w.procs.iter().all(|p| p.key.id == WorkerId(0)));
    // 2 workers and a spare, 3 chunks: both workers start; once one is ready with more
    // chunks queued than workers starting, the spare starts.
    let (mut w, first) = World::new(
        SchedConfig {
            max_busy: 2,
            ..config(3, 1, 6)
        },
        3,
    );
    assert_eq!(spawns(&first), vec![key(0, 0), key(1, 0)]);
    let a = w.ready(0);
    assert_eq!(spawns(&a), vec![key(2, 0)]);
    w.run_to_end(&mut Rng::new(8));
    w.assert_finished();
}

// ---------------------------------------------------------------------------------------
// 2. In process only.

#[test]
fn in_process_only() {
    for lanes in [1, 2] {
        for seed in 0..10 {
            let (mut w, first) = World::new(config(0, lanes, lanes + 2), 10);
            let runs = in_process_runs(&first);
            assert_eq!(runs.len(), lanes as usize);
            for (i, (lane, task, attempt, _)) in runs.iter().enumerate() {
                assert_eq!(*lane, i as u32);
                assert_eq!(*task, TaskId(i as u32));
                assert_eq!(*attempt, Attempt(1));
            }
            assert!(spawns(&first).is_empty());
            assert_eq!(w.s.next_deadline(), None);
            let mut rng = Rng::new(seed);
            w.run_to_end(&mut rng);
            w.assert_finished();
            assert!(w
                .outcomes()
                .iter()
                .all(|o| *o == Some(ChunkOutcome::DoneInProcess)));
            for t in 0..10 {
                let att = w.s.attempts(TaskId(t));
                assert_eq!(att.len(), 1);
                assert!(matches!(att[0].executor, Executor::InProcess { .. }));
            }
            assert!(w.all_log(spawns).is_empty());
            assert!(w.all_log(dispatches).is_empty());
            assert_eq!(w.all_log(in_process_runs).len(), 10);
        }
    }
}

#[test]
fn in_process_error_is_retried_in_process_then_quarantined() {
    let (mut w, first) = World::new(config(0, 1, 3), 2);
    assert_eq!(
        in_process_runs(&first),
        vec![(0, TaskId(0), Attempt(1), SlotId(0))]
    );
    w.at(5);
    for n in 1..=3 {
        let a = w.lane_done(0, Err("GDAL read failed".into()));
        let att = w.s.attempts(TaskId(0));
        assert_eq!(att.len(), n);
        assert_eq!(
            att[n - 1].failure,
            Some(FailureCause::InProcessError {
                error: "GDAL read failed".into()
            })
        );
        if n < 3 {
            // Back in process, first in line.
            assert_eq!(
                in_process_runs(&a),
                vec![(0, TaskId(0), Attempt(n as u32 + 1), SlotId(0))]
            );
        } else {
            assert_eq!(writes(&a), vec![(TaskId(0), None)]);
            assert_eq!(
                in_process_runs(&a),
                vec![(0, TaskId(1), Attempt(1), SlotId(0))]
            );
        }
    }
    w.run_to_end(&mut Rng::new(3));
    w.assert_finished();
    assert_eq!(
        w.outcomes(),
        vec![
            Some(ChunkOutcome::Quarantined),
            Some(ChunkOutcome::DoneInProcess)
        ]
    );
}

// ---------------------------------------------------------------------------------------
// 3. Crash.

#[test]
fn crash_is_recorded_and_the_chunk_goes_to_a_fresh_worker() {
    let (mut w, _) = World::new(config(1, 1, 3), 3);
    w.at(1);
    w.ready(0);
    w.at(5);
    let a = w.done(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 0), TaskId(1), Attempt(1), SlotId(1))]
    );
    let pid0 = w.pid(key(0, 0));

    w.at(12);
    let a = w.exit(0, killed_by(SIGSEGV));
    assert_eq!(a, vec![SchedAction::Spawn { key: key(0, 1) }]);
    let att = w.s.attempts(TaskId(1));
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].attempt, 1);
    assert_eq!(att[0].failure, Some(segv()));
    assert_eq!(
        att[0].executor,
        Executor::Worker {
            worker: WorkerId(0),
            pid: pid0
        }
    );
    assert_eq!((att[0].started_ms, att[0].ended_ms), (5, 12));
    assert!(att[0].stats.is_none());
    assert_eq!(w.s.counters.restarts, 1);
    let rec = &w.s.worker_records()[0];
    assert_eq!((rec.gen, rec.exited_ms), (0, Some(12)));
    assert_eq!(rec.cause, Some(segv()));
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Starting { gen: 1, .. }
    ));

    w.at(13);
    let a = w.ready(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 1), TaskId(1), Attempt(2), SlotId(1))]
    );
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.all_log(in_process_runs).is_empty());
    assert!(w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)));
    let att = w.s.attempts(TaskId(1));
    assert_eq!(att.len(), 2);
    assert!(att[1].failure.is_none());
}

#[test]
fn exit_causes_are_classified() {
    assert_eq!(FailureCause::from_exit(&killed_by(SIGSEGV)), segv());
    assert_eq!(
        FailureCause::from_exit(&exited(42)),
        FailureCause::ExitCode { code: 42 }
    );
    assert_eq!(
        FailureCause::from_exit(&ExitInfo::default()),
        FailureCause::Disconnected
    );
    let oom = ExitInfo {
        signal: Some(SIGKILL),
        out_of_memory: true,
        ..ExitInfo::default()
    };
    assert!(matches!(
        FailureCause::from_exit(&oom),
        FailureCause::OverMemory { detail } if detail.contains("SIGKILL")
    ));
    assert_eq!(signal_name(SIGSEGV), "SIGSEGV");
    assert_eq!(segv().summary(), "killed by SIGSEGV");
}

// ---------------------------------------------------------------------------------------
// 4. Quarantine.

#[test]
fn a_chunk_that_always_crashes_is_quarantined() {
    for seed in 0..20 {
        let (mut w, _) = World::new(config(2, 1, 5), 6);
        w.misbehave.insert(TaskId(3), Misbehave::Crash);
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        let att = w.s.attempts(TaskId(3));
        assert_eq!(att.len(), 3, "seed {seed}");
        for (i, a) in att.iter().enumerate() {
            assert_eq!(a.attempt, i as u32 + 1);
            assert_eq!(a.failure, Some(segv()));
            assert!(matches!(a.executor, Executor::Worker { .. }));
        }
        assert_eq!(
            w.all_log(writes)
                .into_iter()
                .filter(|(t, _)| *t == TaskId(3))
                .collect::<Vec<_>>(),
            vec![(TaskId(3), None)]
        );
        for t in 0..6 {
            let want = if t == 3 {
                ChunkOutcome::Quarantined
            } else {
                ChunkOutcome::Done
            };
            assert_eq!(w.s.outcome(TaskId(t)), Some(want), "seed {seed}");
        }
        assert!(w.all_log(in_process_runs).is_empty());
        // The last crash restarts nobody if nothing is left for workers by then.
        assert!((2..=3).contains(&w.s.counters.restarts), "seed {seed}");
    }
}

#[test]
fn a_chunk_that_crashed_a_worker_and_then_timed_out_stays_on_workers() {
    let mut cfg = config(1, 1, 3);
    cfg.timeout = Some(TimeoutSpec::Fixed(ms(100)));
    cfg.kill_grace = ms(50);
    let (mut w, _) = World::new(cfg, 2);
    w.ready(0);
    w.at(10);
    let a = w.exit(0, killed_by(SIGSEGV));
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    w.at(11);
    let a = w.ready(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 1), TaskId(0), Attempt(2), SlotId(0))]
    );
    w.at(111);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 1), Sig::Term)]);
    assert!(in_process_runs(&a).is_empty(), "{a:?}");
    assert_eq!(
        w.s.attempts(TaskId(0))[1].failure,
        Some(FailureCause::Timeout { after_ms: 100 })
    );
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.all_log(in_process_runs).is_empty());
    assert_eq!(w.s.outcome(TaskId(0)), Some(ChunkOutcome::Done));
    assert_eq!(w.s.attempts(TaskId(0)).len(), 3);
}

#[test]
fn a_chunk_that_crashed_a_worker_and_times_out_on_its_last_attempt_is_quarantined() {
    let mut cfg = config(1, 1, 3);
    cfg.timeout = Some(TimeoutSpec::Fixed(ms(100)));
    cfg.max_attempts = 2;
    let (mut w, _) = World::new(cfg, 2);
    w.ready(0);
    w.exit(0, exited(3));
    w.at(1);
    w.ready(0);
    w.at(101);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 1), Sig::Term)]);
    assert_eq!(writes(&a), vec![(TaskId(0), None)]);
    assert!(in_process_runs(&a).is_empty());
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert_eq!(
        w.outcomes(),
        vec![Some(ChunkOutcome::Quarantined), Some(ChunkOutcome::Done)]
    );
}

#[test]
fn quarantines_in_a_row_are_fatal() {
    let mut cfg = config(2, 1, 4);
    cfg.max_attempts = 1;
    cfg.max_quarantines_in_row = 4;
    // The systematic-deaths breaker would trip first: this is the quarantine breaker's test.
    cfg.max_dying_chunks = 100;
    let (mut w, _) = World::new(cfg, 10);
    for t in 0..10 {
        w.misbehave.insert(TaskId(t), Misbehave::Crash);
    }
    w.run_to_end(&mut Rng::new(5));
    let why = w.fatal.clone().expect("fatal");
    assert!(why.contains("4 chunks in a row were quarantined"), "{why}");
    assert!(why.contains("killed by SIGSEGV"), "{why}");
    assert!(!w.finished);
}

// ---------------------------------------------------------------------------------------
// 5. Fixed timeout.

/// At the fixed limit (100 ms) worker 0 gets SIGTERM, its chunk goes to lane 0 as attempt
/// 2, the timeout is counted and recorded, and the kill is due after the grace (150 ms).
fn timeout_terms_worker_0_and_runs_task_0_in_process(w: &mut World) {
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 0), Sig::Term)]);
    assert_eq!(
        in_process_runs(&a),
        vec![(0, TaskId(0), Attempt(2), SlotId(2))]
    );
    assert_eq!(w.s.counters.timeouts, 1);
    let att = w.s.attempts(TaskId(0));
    assert_eq!(att.len(), 1);
    assert_eq!(
        att[0].failure,
        Some(FailureCause::Timeout { after_ms: 100 })
    );
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Stopping {
            slot: Some(SlotId(0)),
            kill_at: Some(_),
            ..
        }
    ));
    // Kill is due at 150, worker 1's own deadline at 160.
    assert_eq!(w.s.next_deadline(), Some(w.t(150)));
}

#[test]
fn fixed_timeout_terms_then_kills_and_runs_the_chunk_in_process() {
    let mut cfg = config(2, 1, 3);
    cfg.timeout = Some(TimeoutSpec::Fixed(ms(100)));
    cfg.kill_grace = ms(50);
    let (mut w, _) = World::new(cfg, 3);
    let a = w.ready(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 0), TaskId(0), Attempt(1), SlotId(0))]
    );
    assert_eq!(w.s.time_limit(), Some(ms(100)));
    // Worker 1 is still starting: its start deadline is later than the busy one.
    assert_eq!(w.s.next_deadline(), Some(w.t(100)));
    w.at(60);
    let a = w.ready(1);
    assert_eq!(
        dispatches(&a),
        vec![(key(1, 0), TaskId(1), Attempt(1), SlotId(1))]
    );
    assert_eq!(w.s.next_deadline(), Some(w.t(100)));

    w.at(99);
    assert!(w.tick().is_empty());

    w.at(100);
    timeout_terms_worker_0_and_runs_task_0_in_process(&mut w);

    // Worker 1 finishes; no slot is free (slot 0 is still the stopped worker's).
    w.at(120);
    let a = w.done(1);
    assert_eq!(writes(&a), vec![(TaskId(1), Some(SlotId(1)))]);
    assert!(dispatches(&a).is_empty(), "{a:?}");
    w.at(121);
    let a = w.written(TaskId(1));
    assert_eq!(
        dispatches(&a),
        vec![(key(1, 0), TaskId(2), Attempt(1), SlotId(1))]
    );

    w.at(149);
    assert!(w.tick().is_empty());
    w.at(150);
    let a = w.tick();
    assert_eq!(
        a,
        vec![SchedAction::Signal {
            key: key(0, 0),
            sig: Sig::Kill
        }]
    );
    assert_eq!(w.s.next_deadline(), Some(w.t(221)));

    // The killed worker's answer comes in late: ignored, counted.
    w.at(151);
    let a = w.send(SchedEvent::TaskDone {
        key: key(0, 0),
        task: TaskId(0),
        attempt: Attempt(1),
        stats: stats(),
    });
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(w.s.counters.late_replies, 1);
    assert_eq!(w.s.attempts(TaskId(0)).len(), 1);

    w.at(160);
    let a = w.lane_done(0, Ok(stats()));
    assert_eq!(writes(&a), vec![(TaskId(0), Some(SlotId(2)))]);
    w.at(161);
    let a = w.written(TaskId(0));
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(w.s.outcome(TaskId(0)), Some(ChunkOutcome::DoneInProcess));

    // Only the exit frees slot 0 and brings the lane back.
    w.at(170);
    let a = w.exit(0, killed_by(SIGKILL));
    assert_eq!(a, vec![SchedAction::Spawn { key: key(0, 1) }]);
    let rec = &w.s.worker_records()[0];
    assert_eq!(rec.cause, Some(FailureCause::Timeout { after_ms: 100 }));

    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert_eq!(
        w.outcomes(),
        vec![
            Some(ChunkOutcome::DoneInProcess),
            Some(ChunkOutcome::Done),
            Some(ChunkOutcome::Done)
        ]
    );
    assert_eq!(w.write_count, vec![1, 1, 1]);
    let att = w.s.attempts(TaskId(0));
    assert_eq!(att.len(), 2);
    assert_eq!(att[1].executor, Executor::InProcess { lane: 0 });
}

#[test]
fn a_slow_worker_that_answers_during_the_grace_period_is_still_ignored() {
    let mut cfg = config(1, 1, 3);
    cfg.timeout = Some(TimeoutSpec::Fixed(ms(100)));
    let (mut w, _) = World::new(cfg, 1);
    w.ready(0);
    w.at(100);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 0), Sig::Term)]);
    assert_eq!(in_process_runs(&a).len(), 1);
    // Answers after TERM, before the KILL.
    w.at(101);
    assert!(w.done(0).is_empty());
    assert_eq!(w.s.counters.late_replies, 1);
    w.at(102);
    let a = w.exit(0, exited(0));
    // Nothing left for a worker: the lane is not restarted.
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(w.s.worker_state(WorkerId(0)), &WorkerState::Retired);
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert_eq!(w.write_count, vec![1]);
    assert_eq!(w.s.outcome(TaskId(0)), Some(ChunkOutcome::DoneInProcess));
}

#[test]
fn timeouts_under_random_orders_keep_every_invariant() {
    // Workers answer after a random number of 1 ms steps; with a 3 ms limit many time out.
    let mut timeouts = 0;
    for seed in 0..30 {
        let mut cfg = config(3, 1, 6);
        cfg.timeout = Some(TimeoutSpec::Fixed(ms(3)));
        cfg.kill_grace = ms(2);
        let (mut w, _) = World::new(cfg, 12);
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        timeouts += w.s.counters.timeouts;
        assert!(w
            .outcomes()
            .iter()
            .all(|o| matches!(o, Some(ChunkOutcome::Done | ChunkOutcome::DoneInProcess))));
    }
    // The test is about timeouts: make sure it saw some.
    assert!(timeouts > 0, "no attempt timed out in any seed");
}

#[test]
fn with_no_in_process_lane_a_timed_out_chunk_is_retried_on_a_fresh_worker_then_quarantined() {
    // A plug-in kernel is never loaded into the coordinator: no lanes. A timeout is then a
    // failure like a crash: a fresh worker retries, the last attempt quarantines.
    let mut cfg = config(1, 0, 2);
    cfg.timeout = Some(TimeoutSpec::Fixed(ms(100)));
    cfg.kill_grace = ms(50);
    cfg.max_attempts = 2;
    let (mut w, _) = World::new(cfg, 2);
    let a = w.ready(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 0), TaskId(0), Attempt(1), SlotId(0))]
    );
    w.at(100);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 0), Sig::Term)]);
    assert!(in_process_runs(&a).is_empty(), "{a:?}");
    w.at(110);
    let a = w.exit(0, killed_by(SIGTERM));
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    w.at(120);
    let a = w.ready_key(key(0, 1));
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 1), TaskId(0), Attempt(2), SlotId(0))]
    );
    w.at(220);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 1), Sig::Term)]);
    assert_eq!(writes(&a), vec![(TaskId(0), None)]);
    assert!(in_process_runs(&a).is_empty(), "{a:?}");
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.all_log(in_process_runs).is_empty());
    assert_eq!(
        w.outcomes(),
        vec![Some(ChunkOutcome::Quarantined), Some(ChunkOutcome::Done)]
    );
    let att = w.s.attempts(TaskId(0));
    assert_eq!(att.len(), 2);
    assert!(att
        .iter()
        .all(|a| matches!(a.failure, Some(FailureCause::Timeout { .. }))));
}

#[test]
fn with_no_in_process_lane_hanging_blocks_are_bisected_and_quarantined_alone() {
    for seed in 0..20 {
        let mut cfg = config(2, 0, 4);
        cfg.timeout = Some(TimeoutSpec::Fixed(ms(20)));
        cfg.kill_grace = ms(2);
        cfg.can_split = true;
        let (mut w, _) = World::with_blocks(cfg, 4, 4);
        w.misbehave.insert(TaskId(6), Misbehave::Hang);
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        w.assert_each_written_once();
        assert!(w.all_log(in_process_runs).is_empty(), "seed {seed}");
        let quarantined: Vec<(u32, u32)> = (0..w.s.tasks() as u32)
            .filter(|&t| w.s.outcome(TaskId(t)) == Some(ChunkOutcome::Quarantined))
            .map(|t| w.ranges[t as usize])
            .collect();
        assert_eq!(quarantined, vec![(6, 7)], "seed {seed}");
    }
}

// ---------------------------------------------------------------------------------------
// 6. Relative timeout.

#[test]
fn percent_of_median_timeout() {
    let mut cfg = config(2, 1, 5);
    cfg.timeout = Some(TimeoutSpec::PercentOfMedian(500.0));
    cfg.timeout_floor = Duration::ZERO;
    let (mut w, _) = World::new(cfg, 6);
    w.ready(0);
    w.ready(1);
    // No median yet: the first chunks get the generous first-chunks limit.
    assert_eq!(w.s.time_limit(), Some(FIRST_CHUNKS_LIMIT));
    assert_eq!(w.s.next_deadline(), Some(w.t(60_000)));

    w.at(10);
    w.done(0); // 10 ms, the median of one; chunk 2 to worker 0
    assert_eq!(w.s.time_limit(), Some(ms(50)));
    // Worker 1, busy with chunk 1 since 0, gets five times the median as soon as one chunk
    // has finished: it is due at 50 ms, not at the first-chunks limit.
    assert_eq!(w.s.next_deadline(), Some(w.t(50)));
    w.at(30);
    let a = w.done(0); // 20 ms: samples 10, 20, upper median 20
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 0), TaskId(3), Attempt(1), SlotId(3))]
    );
    w.write_all();
    assert_eq!(w.s.time_limit(), Some(ms(100)));
    assert_eq!(w.s.next_deadline(), Some(w.t(100)));
    w.at(99);
    assert!(w.tick().is_empty());
    w.at(100);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(1, 0), Sig::Term)]);
    let runs = in_process_runs(&a);
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].0, runs[0].1, runs[0].2),
        (0, TaskId(1), Attempt(2))
    );
    assert_eq!(
        w.s.attempts(TaskId(1))[0].failure,
        Some(FailureCause::Timeout { after_ms: 100 })
    );

    // Worker 0, busy since 30, gets exactly five times the median.
    assert_eq!(w.s.next_deadline(), Some(w.t(130)));
    w.at(129);
    assert!(w.tick().is_empty());
    w.at(130);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 0), Sig::Term)]);
    assert_eq!(
        w.s.attempts(TaskId(3))[0].failure,
        Some(FailureCause::Timeout { after_ms: 100 })
    );
    assert_eq!(w.s.counters.timeouts, 2);

    w.run_to_end(&mut Rng::new(9));
    w.assert_finished();
    assert_eq!(w.s.outcome(TaskId(1)), Some(ChunkOutcome::DoneInProcess));
    assert_eq!(w.s.outcome(TaskId(3)), Some(ChunkOutcome::DoneInProcess));
}

#[test]
fn percent_of_median_never_goes_below_a_millisecond() {
    let mut cfg = config(1, 1, 4);
    cfg.timeout = Some(TimeoutSpec::PercentOfMedian(1.0));
    cfg.timeout_floor = Duration::ZERO;
    let (mut w, _) = World::new(cfg, 5);
    w.ready(0);
    for _ in 0..3 {
        w.done(0); // zero-length chunks
    }
    assert_eq!(w.s.time_limit(), Some(ms(1)));
}

#[test]
fn percent_of_median_never_goes_below_the_floor() {
    let mut cfg = config(1, 1, 8);
    cfg.timeout = Some(TimeoutSpec::PercentOfMedian(1000.0));
    cfg.timeout_floor = ms(500);
    let (mut w, _) = World::new(cfg, 8);
    w.ready(0);
    // Before the first chunk: the larger of the floor and the first-chunks limit.
    assert_eq!(w.s.time_limit(), Some(FIRST_CHUNKS_LIMIT));
    for i in 1..=3 {
        w.at(10 * i);
        w.done(0); // 10 ms chunks: 10 x median = 100 ms, below the floor
    }
    assert_eq!(w.s.time_limit(), Some(ms(500)));
    for i in 4..=6 {
        w.at(30 + 100 * (i - 3));
        w.done(0); // 100 ms chunks: median 100 ms (of 10, 10, 10, 100, 100, 100)
    }
    assert_eq!(w.s.time_limit(), Some(ms(1000)));
}

#[test]
fn workers_that_never_say_hello_end_the_run_at_the_second_start_timeout() {
    let (mut w, _) = World::new(config(2, 1, 4), 4);
    w.at(10_000);
    let a = w.tick();
    assert_eq!(
        signals(&a),
        vec![(key(0, 0), Sig::Kill), (key(1, 0), Sig::Kill)]
    );
    w.exit(
        0,
        ExitInfo {
            signal: Some(9),
            ..ExitInfo::default()
        },
    );
    assert!(w.fatal.is_none());
    w.exit(
        1,
        ExitInfo {
            signal: Some(9),
            ..ExitInfo::default()
        },
    );
    let why = w.fatal.clone().expect("the breaker trips");
    assert!(why.contains("did not say hello"), "{why}");
}

// ---------------------------------------------------------------------------------------
// 7. Garbage and disconnects.

#[test]
fn garbage_kills_at_once_and_retries_on_a_worker() {
    let (mut w, _) = World::new(config(2, 1, 3), 3);
    w.ready(0);
    w.ready(1);
    w.at(5);
    let a = w.send(SchedEvent::Garbage {
        key: key(0, 0),
        detail: "bad tag 0xff".into(),
    });
    assert_eq!(signals(&a), vec![(key(0, 0), Sig::Kill)]);
    assert!(dispatches(&a).is_empty());
    assert!(in_process_runs(&a).is_empty());
    assert_eq!(
        w.s.attempts(TaskId(0))[0].failure,
        Some(FailureCause::Garbage {
            detail: "bad tag 0xff".into()
        })
    );
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Stopping {
            kill_at: None,
            slot: Some(SlotId(0)),
            ..
        }
    ));
    // A second bad message changes nothing.
    let a = w.send(SchedEvent::Garbage {
        key: key(0, 0),
        detail: "more".into(),
    });
    assert!(signals(&a).len() <= 1 && dispatches(&a).is_empty());
    assert_eq!(w.s.attempts(TaskId(0)).len(), 1);

    w.at(10);
    let a = w.done(1);
    // Chunk 0 is first in line; slot 0 is still held by the killed worker.
    assert_eq!(
        dispatches(&a),
        vec![(key(1, 0), TaskId(0), Attempt(2), SlotId(2))]
    );
    w.at(11);
    let a = w.exit(0, killed_by(SIGKILL));
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    assert_eq!(
        w.s.worker_records()[0].cause,
        Some(FailureCause::Garbage {
            detail: "bad tag 0xff".into()
        })
    );
    w.run_to_end(&mut Rng::new(2));
    w.assert_finished();
    assert!(w.all_log(in_process_runs).is_empty());
    assert!(w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)));
}

#[test]
fn disconnect_then_crash_is_recorded_as_the_crash() {
    // A closed channel is judged by the exit status that follows: no signal yet, the slot
    // stays held, and the attempt fails with what the exit says.
    let (mut w, _) = World::new(config(1, 1, 3), 2);
    w.ready(0);
    w.at(10);
    let a = w.send(SchedEvent::Disconnected { key: key(0, 0) });
    assert!(signals(&a).is_empty(), "{a:?}");
    assert!(dispatches(&a).is_empty() && in_process_runs(&a).is_empty());
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Stopping {
            slot: Some(SlotId(0)),
            ..
        }
    ));
    let deadline = w.s.next_deadline().expect("a kill deadline");
    assert!(deadline > w.now, "{deadline:?}");
    w.at(12);
    let a = w.exit(0, killed_by(SIGSEGV));
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    let att = w.s.attempts(TaskId(0));
    assert_eq!(att.len(), 1);
    assert_eq!(att[0].failure, Some(segv()));
    assert_eq!(w.s.worker_records()[0].cause, Some(segv()));
    let a = w.ready(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 1), TaskId(0), Attempt(2), SlotId(0))]
    );
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.all_log(in_process_runs).is_empty());
}

#[test]
fn disconnected_worker_that_does_not_exit_is_killed() {
    let (mut w, _) = World::new(config(1, 1, 3), 2);
    w.ready(0);
    w.send(SchedEvent::Disconnected { key: key(0, 0) });
    let deadline = w.s.next_deadline().expect("a kill deadline");
    w.at_instant(deadline - ms(1));
    assert!(w.tick().is_empty());
    w.at_instant(deadline);
    let a = w.tick();
    assert_eq!(
        a,
        vec![SchedAction::Signal {
            key: key(0, 0),
            sig: Sig::Kill
        }]
    );
    let a = w.exit(0, killed_by(SIGKILL));
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    assert_eq!(
        w.s.attempts(TaskId(0))[0].failure,
        Some(FailureCause::Disconnected)
    );
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.all_log(in_process_runs).is_empty());
    assert_eq!(w.s.attempts(TaskId(0)).len(), 2);
}

#[test]
fn mixed_faults_keep_every_invariant() {
    // Random crashes, worker errors, kills, garbage, disconnects, stray ticks and timeouts,
    // breakers out of the way: every run must end with every chunk written exactly once.
    for seed in 0..400 {
        let mut rng = Rng::new(seed);
        let workers = 1 + rng.below(4) as u32;
        let mut cfg = config(workers, 1, workers + 1 + rng.below(3) as u32);
        cfg.max_attempts = 4;
        cfg.max_quarantines_in_row = 1_000;
        cfg.max_idle_deaths = 1_000;
        cfg.max_start_failures = 1_000;
        cfg.max_dying_chunks = 1_000;
        cfg.kill_grace = ms(3);
        cfg.start_timeout = ms(50);
        cfg.timeout = Some(if rng.chance(50) {
            TimeoutSpec::Fixed(ms(2 + rng.below(6) as u64))
        } else {
            TimeoutSpec::PercentOfMedian(300.0)
        });
        let n = 5 + rng.below(20);
        let (mut w, _) = World::new(cfg, n);
        for t in 0..n as u32 {
            match rng.below(10) {
                0 => {
                    w.misbehave.insert(TaskId(t), Misbehave::Crash);
                }
                1 => {
                    w.misbehave.insert(TaskId(t), Misbehave::Fail);
                }
                _ => {}
            }
        }
        for _ in 0..100_000 {
            if w.finished || w.fatal.is_some() {
                break;
            }
            if rng.chance(5) {
                if let Some(k) = w.random_live(&mut rng, false) {
                    w.now += ms(1);
                    let ev = match rng.below(4) {
                        0 => SchedEvent::WorkerExited {
                            key: k,
                            exit: killed_by(SIGKILL),
                        },
                        1 => SchedEvent::Garbage {
                            key: k,
                            detail: "bad frame".into(),
                        },
                        2 => SchedEvent::Disconnected { key: k },
                        _ => SchedEvent::Tick,
                    };
                    w.send(ev);
                    continue;
                }
            }
            assert!(w.step(&mut rng), "stuck (seed {seed})");
        }
        assert!(w.fatal.is_none(), "seed {seed}: {:?}", w.fatal);
        w.assert_finished();
        for t in 0..n as u32 {
            let att = w.s.attempts(TaskId(t));
            let last = att.last().expect("every chunk was attempted");
            for (i, a) in att.iter().enumerate() {
                assert_eq!(a.attempt, i as u32 + 1);
                assert_eq!(
                    a.failure.is_none(),
                    i + 1 == att.len() && last.stats.is_some()
                );
            }
            match w.s.outcome(TaskId(t)) {
                Some(ChunkOutcome::Done) => {
                    assert!(matches!(last.executor, Executor::Worker { .. }));
                    assert!(last.stats.is_some());
                }
                Some(ChunkOutcome::DoneInProcess) => {
                    assert!(matches!(last.executor, Executor::InProcess { .. }));
                    assert!(last.stats.is_some());
                }
                Some(ChunkOutcome::Quarantined) => {
                    assert!(last.failure.is_some() && last.attempt >= 4, "seed {seed}");
                }
                Some(ChunkOutcome::Split) => panic!("seed {seed}: split without can_split"),
                None => panic!("seed {seed}: chunk {t} not finished"),
            }
            if !w.misbehave.contains_key(&TaskId(t)) {
                assert!(att
                    .iter()
                    .all(|a| !matches!(a.failure, Some(FailureCause::WorkerError { .. }))));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 8. Restart storms and the breaker.

#[test]
fn workers_that_cannot_start_are_fatal() {
    let (mut w, _) = World::new(config(1, 1, 3), 4);
    for n in 1..=5 {
        let k = w.through_backoff(0);
        assert_eq!(k, key(0, n - 1));
        w.now += ms(1);
        let exit = ExitInfo {
            code: Some(127),
            stderr_tail: vec!["error while loading shared libraries: libgdal.so".into()],
            ..ExitInfo::default()
        };
        let a = w.exit(0, exit);
        if n < 5 {
            assert!(fatal(&a).is_none(), "fatal after {n}: {a:?}");
        } else {
            let why = fatal(&a).expect("fatal after 5 start failures");
            assert!(why.contains("workers cannot start"), "{why}");
            assert!(why.contains("5 in a row"), "{why}");
            assert!(why.contains("exited with code 127"), "{why}");
            assert!(why.contains("libgdal.so"), "{why}");
            assert!(spawns(&a).is_empty());
        }
    }
    assert!(w.s.is_done());
    // Silent afterwards.
    w.now += ms(10_000);
    assert!(w.tick().is_empty());
}

#[test]
fn start_failures_that_are_not_in_a_row_are_not_fatal() {
    let (mut w, _) = World::new(config(1, 1, 3), 4);
    for _ in 0..3 {
        for _ in 0..4 {
            w.through_backoff(0);
            w.now += ms(1);
            assert!(fatal(&w.exit(0, exited(1))).is_none());
        }
        // One worker starts and finishes a chunk.
        w.through_backoff(0);
        w.ready(0);
        w.done(0);
        w.exit(0, killed_by(SIGKILL));
        w.through_backoff(0);
    }
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
}

/// Two workers, one slot: worker 0 holds the slot, worker 1 can only idle.
fn one_slot_world() -> World {
    let (mut w, _) = World::new(config(2, 1, 1), 2);
    let a = w.ready(0);
    assert_eq!(dispatches(&a).len(), 1);
    w
}

/// Lane 1 comes up, says hello, idles, and is killed.
fn idle_death(w: &mut World) -> Vec<SchedAction> {
    w.through_backoff(1);
    w.now += ms(1);
    let a = w.ready(1);
    assert!(dispatches(&a).is_empty());
    assert!(matches!(
        w.s.worker_state(WorkerId(1)),
        WorkerState::Idle { .. }
    ));
    w.now += ms(1);
    w.exit(1, killed_by(SIGKILL))
}

#[test]
fn workers_dying_idle_with_no_progress_trip_the_breaker() {
    let mut w = one_slot_world();
    for n in 1..=12 {
        let a = idle_death(&mut w);
        if n < 12 {
            assert!(fatal(&a).is_none(), "fatal after {n}");
        } else {
            let why = fatal(&a).expect("fatal after 12 idle deaths");
            assert!(why.contains("workers keep dying"), "{why}");
            assert!(why.contains("12 deaths"), "{why}");
            assert!(why.contains("killed by SIGKILL"), "{why}");
        }
    }
}

#[test]
fn idle_deaths_with_progress_in_between_do_not_trip_the_breaker() {
    let mut w = one_slot_world();
    for _ in 0..11 {
        assert!(fatal(&idle_death(&mut w)).is_none());
    }
    // Progress: chunk 0 done (its write keeps the only slot).
    let a = w.done(0);
    assert_eq!(writes(&a), vec![(TaskId(0), Some(SlotId(0)))]);
    assert!(dispatches(&a).is_empty());
    for _ in 0..11 {
        assert!(fatal(&idle_death(&mut w)).is_none());
    }
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)));
    assert_eq!(w.s.counters.restarts, 22);
}

#[test]
fn chaos_kills_between_completions_never_trip_the_breaker() {
    for seed in 0..25 {
        let mut cfg = config(4, 1, 7);
        cfg.max_attempts = 20;
        let (mut w, _) = World::new(cfg, 60);
        let mut rng = Rng::new(seed);
        let mut seen = 0;
        let mut kills = 0;
        for _ in 0..100_000 {
            if w.finished || w.fatal.is_some() {
                break;
            }
            if w.completions > seen {
                seen = w.completions;
                if rng.chance(80) {
                    if let Some(k) = w.random_live(&mut rng, true) {
                        w.now += ms(1);
                        w.exit_key(k, killed_by(SIGKILL));
                        kills += 1;
                    }
                }
            }
            assert!(w.step(&mut rng), "stuck (seed {seed})");
        }
        assert!(w.fatal.is_none(), "seed {seed}: {:?}", w.fatal);
        w.assert_finished();
        assert!(
            w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)),
            "seed {seed}: {:?}",
            w.outcomes()
        );
        assert!(kills > 20, "seed {seed}: only {kills} kills");
        // A lane whose worker dies when nothing is left for workers is not restarted.
        assert!(w.s.counters.restarts as usize <= kills && w.s.counters.restarts > 20);
    }
}

// ---------------------------------------------------------------------------------------
// 9. Backoff.

#[test]
fn repeated_deaths_of_a_lane_back_off_exponentially() {
    let mut cfg = config(1, 1, 3);
    cfg.max_attempts = 50;
    cfg.backoff_base = ms(25);
    cfg.backoff_max = ms(100);
    let (mut w, _) = World::new(cfg, 2);
    w.ready(0);
    // First death: restarted at once.
    w.at(10);
    let a = w.exit(0, killed_by(SIGSEGV));
    assert_eq!(spawns(&a), vec![key(0, 1)]);

    // Then 25, 50, 100, 100 ... ms, each +-20 %.
    let nominal = [25u64, 50, 100, 100, 100, 100];
    for (i, nom) in nominal.iter().enumerate() {
        w.now += ms(1);
        let a = w.ready(0);
        assert_eq!(dispatches(&a).len(), 1);
        w.now += ms(1);
        let died = w.now;
        let a = w.exit(0, killed_by(SIGSEGV));
        assert!(spawns(&a).is_empty(), "no immediate restart: {a:?}");
        let gen = i as u32 + 2;
        let WorkerState::Backoff { gen: g, until } = w.s.worker_state(WorkerId(0)).clone() else {
            panic!("expected backoff, got {:?}", w.s.worker_state(WorkerId(0)));
        };
        assert_eq!(g, gen);
        let delay = until - died;
        assert!(
            delay >= ms(nom * 8 / 10) && delay < ms(nom * 12 / 10),
            "failure {}: delay {delay:?}, nominal {nom} ms",
            i + 2
        );
        assert_eq!(w.s.next_deadline(), Some(until));
        // Events from the dead incarnation and early ticks do nothing.
        w.at_instant(until - ms(1));
        assert!(w.tick().is_empty());
        assert!(w
            .send(SchedEvent::WorkerReady {
                key: key(0, gen),
                pid: 1
            })
            .is_empty());
        w.at_instant(until);
        let a = w.tick();
        assert_eq!(a, vec![SchedAction::Spawn { key: key(0, gen) }]);
    }
    assert_eq!(w.s.counters.restarts, 7);

    // A finished chunk resets the lane: the next death restarts at once.
    w.now += ms(1);
    w.ready(0);
    w.now += ms(1);
    w.done(0);
    w.now += ms(1);
    let a = w.exit(0, killed_by(SIGSEGV));
    assert_eq!(spawns(&a).len(), 1, "{a:?}");
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert_eq!(w.s.attempts(TaskId(0)).len(), 8);
}

#[test]
fn start_timeout_kills_and_restarts() {
    let mut cfg = config(1, 1, 3);
    cfg.start_timeout = ms(1_000);
    let (mut w, _) = World::new(cfg, 1);
    assert_eq!(w.s.next_deadline(), Some(w.t(1_000)));
    w.at(999);
    assert!(w.tick().is_empty());
    w.at(1_000);
    let a = w.tick();
    assert_eq!(
        a,
        vec![SchedAction::Signal {
            key: key(0, 0),
            sig: Sig::Kill
        }]
    );
    // A late hello from the killed worker is ignored.
    assert!(w.ready(0).is_empty());
    w.at(1_001);
    let a = w.exit(0, killed_by(SIGKILL));
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    assert_eq!(
        w.s.worker_records()[0].cause,
        Some(FailureCause::StartTimeout)
    );
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
}

// ---------------------------------------------------------------------------------------
// 10. Soft memory limit.

#[test]
fn soft_limit_recycles_the_worker_after_its_chunk() {
    let (mut w, _) = World::new(config(1, 1, 3), 3);
    w.ready(0);
    w.at(5);
    let a = w.send(SchedEvent::OverSoftLimit { key: key(0, 0) });
    assert!(a.is_empty(), "{a:?}");
    w.at(10);
    let a = w.done(0);
    assert_eq!(writes(&a), vec![(TaskId(0), Some(SlotId(0)))]);
    assert_eq!(shutdowns(&a), vec![key(0, 0)]);
    assert!(
        dispatches(&a).is_empty(),
        "no new work for a recycled worker"
    );
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Stopping {
            cause: FailureCause::Recycled,
            slot: None,
            ..
        }
    ));
    assert_eq!(w.s.counters.recycles, 1);
    assert!(w.s.worker_records()[0].recycled);

    w.at(20);
    let a = w.exit(0, exited(0));
    assert_eq!(a, vec![SchedAction::Spawn { key: key(0, 1) }]);
    assert_eq!(w.s.counters.restarts, 0, "a recycle is not a restart");
    let rec = &w.s.worker_records()[0];
    assert_eq!(rec.cause, Some(FailureCause::Recycled));
    assert_eq!(rec.chunks, 1);
    w.at(21);
    let a = w.ready(0);
    assert_eq!(
        dispatches(&a),
        vec![(key(0, 1), TaskId(1), Attempt(1), SlotId(1))]
    );
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)));
    assert!(!w.s.worker_records()[1].recycled);
}

#[test]
fn soft_limit_on_an_idle_worker_recycles_it_at_once() {
    let (mut w, _) = World::new(config(2, 1, 1), 2);
    w.ready(0);
    w.ready(1); // idle: the only slot is worker 0's
    let a = w.send(SchedEvent::OverSoftLimit { key: key(1, 0) });
    assert_eq!(a, vec![SchedAction::Shutdown { key: key(1, 0) }]);
    assert!(w.s.worker_records()[1].recycled);
    // It ignores the request: killed after the grace period.
    assert_eq!(w.s.next_deadline(), Some(w.t(500)));
    w.at(500);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(1, 0), Sig::Kill)]);
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
}

#[test]
fn a_recycled_worker_dying_of_oom_is_recorded_as_such() {
    let (mut w, _) = World::new(config(1, 1, 3), 2);
    w.ready(0);
    w.send(SchedEvent::OverSoftLimit { key: key(0, 0) });
    w.done(0);
    let a = w.exit(
        0,
        ExitInfo {
            signal: Some(SIGKILL),
            out_of_memory: true,
            ..ExitInfo::default()
        },
    );
    assert_eq!(spawns(&a), vec![key(0, 1)]);
    assert!(matches!(
        w.s.worker_records()[0].cause,
        Some(FailureCause::OverMemory { .. })
    ));
    assert_eq!(w.s.counters.restarts, 1);
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
}

// ---------------------------------------------------------------------------------------
// 11. Stale events.

#[test]
fn events_from_an_old_generation_are_ignored() {
    let (mut w, _) = World::new(config(1, 1, 3), 2);
    w.ready(0);
    w.at(5);
    w.exit(0, killed_by(SIGSEGV));
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Starting { gen: 1, .. }
    ));
    let old = key(0, 0);
    let late = w.s.counters.late_replies;
    let stale = [
        SchedEvent::WorkerReady { key: old, pid: 7 },
        SchedEvent::TaskDone {
            key: old,
            task: TaskId(0),
            attempt: Attempt(1),
            stats: stats(),
        },
        SchedEvent::TaskFailed {
            key: old,
            task: TaskId(0),
            attempt: Attempt(1),
            error: "x".into(),
        },
        SchedEvent::Garbage {
            key: old,
            detail: "x".into(),
        },
        SchedEvent::Disconnected { key: old },
        SchedEvent::OverSoftLimit { key: old },
        SchedEvent::WorkerExited {
            key: old,
            exit: killed_by(SIGSEGV),
        },
        // A generation from the future, too.
        SchedEvent::WorkerReady {
            key: key(0, 9),
            pid: 7,
        },
    ];
    for ev in stale {
        w.at(6);
        let a = w.s.handle(w.now, ev.clone());
        assert!(a.is_empty(), "{ev:?} gave {a:?}");
    }
    assert_eq!(w.s.counters.late_replies, late + 2);
    assert_eq!(w.s.attempts(TaskId(0)).len(), 1);
    assert!(matches!(
        w.s.worker_state(WorkerId(0)),
        WorkerState::Starting { gen: 1, .. }
    ));
    assert_eq!(w.s.counters.restarts, 1);
    assert!(!w.s.worker_records()[1].recycled);

    // The current incarnation, answering for the wrong attempt, is also late.
    w.ready(0);
    let a = w.send(SchedEvent::TaskDone {
        key: key(0, 1),
        task: TaskId(0),
        attempt: Attempt(1),
        stats: stats(),
    });
    assert!(a.is_empty());
    assert_eq!(w.s.counters.late_replies, late + 3);
    // Or for another chunk.
    let a = w.send(SchedEvent::TaskDone {
        key: key(0, 1),
        task: TaskId(1),
        attempt: Attempt(1),
        stats: stats(),
    });
    assert!(a.is_empty());
    assert_eq!(w.s.counters.late_replies, late + 4);
    // Written for a chunk that is not being written, and a stray in-process result.
    assert!(w
        .s
        .handle(w.now, SchedEvent::Written { task: TaskId(1) })
        .is_empty());
    assert!(w
        .s
        .handle(
            w.now,
            SchedEvent::InProcessDone {
                lane: 0,
                task: TaskId(1),
                attempt: Attempt(1),
                result: Ok(stats())
            }
        )
        .is_empty());
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert!(w.outcomes().iter().all(|o| *o == Some(ChunkOutcome::Done)));
}

// ---------------------------------------------------------------------------------------
// 12. Worker errors.

#[test]
fn worker_errors_are_retried_then_quarantined_and_the_worker_lives_on() {
    let (mut w, _) = World::new(config(1, 1, 3), 3);
    w.ready(0);
    w.done(0);
    for n in 1..=3u32 {
        w.now += ms(1);
        let a = w.fail(0, "cannot read block 7");
        let att = w.s.attempts(TaskId(1));
        assert_eq!(att.len(), n as usize);
        assert_eq!(
            att[n as usize - 1].failure,
            Some(FailureCause::WorkerError {
                error: "cannot read block 7".into()
            })
        );
        assert!(spawns(&a).is_empty() && signals(&a).is_empty());
        if n < 3 {
            // Same worker, same chunk, next attempt.
            assert_eq!(
                dispatches(&a),
                vec![(key(0, 0), TaskId(1), Attempt(n + 1), SlotId(1))]
            );
        } else {
            assert_eq!(writes(&a), vec![(TaskId(1), None)]);
            assert_eq!(
                dispatches(&a),
                vec![(key(0, 0), TaskId(2), Attempt(1), SlotId(1))]
            );
        }
    }
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert_eq!(
        w.outcomes(),
        vec![
            Some(ChunkOutcome::Done),
            Some(ChunkOutcome::Quarantined),
            Some(ChunkOutcome::Done)
        ]
    );
    assert_eq!(w.all_log(spawns), vec![key(0, 0)]);
    assert!(w.all_log(signals).is_empty());
    assert_eq!(w.s.counters.restarts, 0);
    assert_eq!(w.s.worker_records()[0].chunks, 2);
}

#[test]
fn worker_errors_under_random_orders() {
    for seed in 0..20 {
        let (mut w, _) = World::new(config(3, 1, 5), 12);
        w.misbehave.insert(TaskId(4), Misbehave::Fail);
        w.misbehave.insert(TaskId(9), Misbehave::Crash);
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        for t in 0..12 {
            let want = if t == 4 || t == 9 {
                ChunkOutcome::Quarantined
            } else {
                ChunkOutcome::Done
            };
            assert_eq!(w.s.outcome(TaskId(t)), Some(want), "seed {seed}");
        }
        assert!((2..=3).contains(&w.s.counters.restarts), "seed {seed}");
    }
}

// ---------------------------------------------------------------------------------------
// 13. Splitting: only the blocks that really fail are quarantined.

fn split_config(workers: u32, lanes: u32, slots: u32) -> SchedConfig {
    let mut cfg = config(workers, lanes, slots);
    cfg.can_split = true;
    cfg
}

/// The quarantined tasks, as ranges of blocks.
fn quarantined_ranges(w: &World) -> Vec<(u32, u32)> {
    let mut q: Vec<(u32, u32)> = (0..w.chunks() as u32)
        .filter(|&t| w.s.outcome(TaskId(t)) == Some(ChunkOutcome::Quarantined))
        .map(|t| w.ranges[t as usize])
        .collect();
    q.sort();
    q
}

#[test]
fn a_read_error_splits_the_chunk_at_once_and_quarantines_only_the_bad_block() {
    for seed in 0..20 {
        let (mut w, _) = World::with_blocks(split_config(2, 1, 4), 3, 8);
        w.misbehave.insert(TaskId(13), Misbehave::Fail);
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        // Chunk 1 (blocks 8..16) failed once and was split at once, down to block 13.
        assert_eq!(w.s.outcome(TaskId(1)), Some(ChunkOutcome::Split));
        assert_eq!(w.s.attempts(TaskId(1)).len(), 1, "seed {seed}");
        assert_eq!(w.s.split_reason(TaskId(1)), Some(SplitReason::ReadError));
        assert_eq!(quarantined_ranges(&w), vec![(13, 14)], "seed {seed}");
        // 8 -> 4 -> 2 -> 1: three splits on the way to the bad block.
        assert_eq!(w.s.counters.splits, 3, "seed {seed}");
        let leaf = (0..w.chunks() as u32)
            .find(|&t| w.ranges[t as usize] == (13, 14))
            .map(TaskId)
            .unwrap();
        // A leaf's read error is retried (on the same worker) up to the limit.
        let att = w.s.attempts(leaf);
        assert_eq!(att.len(), 3, "seed {seed}");
        assert!(att
            .iter()
            .all(|a| matches!(a.failure, Some(FailureCause::WorkerError { .. }))));
        // Its ancestry is recorded.
        let mut up = leaf;
        let mut depth = 0;
        while let Some(p) = w.s.parent(up) {
            up = p;
            depth += 1;
        }
        assert_eq!((up, depth), (TaskId(1), 3));
        // Every other part and chunk was done, by a worker, once.
        for t in 0..w.chunks() as u32 {
            let o = w.s.outcome(TaskId(t));
            if TaskId(t) != leaf && o != Some(ChunkOutcome::Split) {
                assert_eq!(o, Some(ChunkOutcome::Done), "seed {seed} task {t}");
            }
        }
        assert_eq!(w.s.counters.restarts, 0);
    }
}

#[test]
fn a_leaf_is_treated_as_before() {
    // Chunks of one block: the job answers every split with 0, and a read error is retried
    // up to the limit, then quarantined, as without splitting.
    let (mut w, _) = World::new(split_config(1, 1, 3), 3);
    w.misbehave.insert(TaskId(1), Misbehave::Fail);
    w.run_to_end(&mut Rng::new(1));
    w.assert_finished();
    assert_eq!(
        w.outcomes(),
        vec![
            Some(ChunkOutcome::Done),
            Some(ChunkOutcome::Quarantined),
            Some(ChunkOutcome::Done)
        ]
    );
    assert_eq!(w.s.attempts(TaskId(1)).len(), 3);
    assert_eq!(w.s.tasks(), 3);
}

#[test]
fn a_crashing_block_is_bisected_with_few_crashes_and_never_in_process() {
    for seed in 0..20 {
        let mut cfg = split_config(2, 1, 4);
        cfg.timeout = Some(TimeoutSpec::Fixed(ms(500)));
        let (mut w, _) = World::with_blocks(cfg, 4, 8);
        w.misbehave.insert(TaskId(5), Misbehave::Crash);
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        assert_eq!(quarantined_ranges(&w), vec![(5, 6)], "seed {seed}");
        assert_eq!(w.s.split_reason(TaskId(0)), Some(SplitReason::Crashes));
        // Three attempts for the plan chunk, then one for each part on the way down:
        // (4..8), (4..6), (5..6).
        let crashes: usize = (0..w.chunks() as u32)
            .map(|t| {
                w.s.attempts(TaskId(t))
                    .iter()
                    .filter(|a| a.failure == Some(segv()))
                    .count()
            })
            .sum();
        assert_eq!(crashes, 6, "seed {seed}");
        assert!(w.all_log(in_process_runs).is_empty());
    }
}

#[test]
fn one_plan_chunk_split_into_many_quarantined_parts_does_not_trip_the_breaker() {
    let mut cfg = split_config(2, 1, 4);
    cfg.max_quarantines_in_row = 4;
    let (mut w, _) = World::with_blocks(cfg, 3, 16);
    for b in 16..32 {
        w.misbehave.insert(TaskId(b), Misbehave::Fail);
    }
    w.run_to_end(&mut Rng::new(7));
    w.assert_finished();
    assert_eq!(quarantined_ranges(&w).len(), 16);
    // But a genuinely unreadable input still ends the run.
    let mut cfg = split_config(2, 1, 4);
    cfg.max_quarantines_in_row = 4;
    let (mut w, _) = World::with_blocks(cfg, 10, 2);
    for b in 0..20 {
        w.misbehave.insert(TaskId(b), Misbehave::Fail);
    }
    w.run_to_end(&mut Rng::new(7));
    let why = w.fatal.clone().expect("fatal");
    assert!(why.contains("4 chunks in a row were quarantined"), "{why}");
}

#[test]
fn in_process_read_errors_are_split_too() {
    let (mut w, first) = World::with_blocks(split_config(0, 2, 4), 2, 4);
    assert_eq!(in_process_runs(&first).len(), 2);
    w.misbehave.insert(TaskId(2), Misbehave::Fail);
    w.run_to_end(&mut Rng::new(3));
    w.assert_finished();
    assert_eq!(quarantined_ranges(&w), vec![(2, 3)]);
    assert!(w.all_log(dispatches).is_empty());
    for t in 0..w.chunks() as u32 {
        assert_ne!(w.s.outcome(TaskId(t)), Some(ChunkOutcome::Done));
    }
}

/// Every task ended (only chunks of more than one block split), and a chunk that crashed a
/// worker, or any part of one, never ran in process afterwards.
fn assert_ended_once_and_never_in_process_after_a_crash(w: &World, seed: u64) {
    for t in 0..w.chunks() as u32 {
        let task = TaskId(t);
        match w.s.outcome(task) {
            Some(ChunkOutcome::Split) => {
                let (lo, hi) = w.ranges[t as usize];
                assert!(hi - lo > 1, "seed {seed}: a leaf was split");
            }
            Some(_) => {}
            None => panic!("seed {seed}: task {t} not finished"),
        }
        // A chunk that crashed a worker, and every part of one, never runs in process.
        let att = w.s.attempts(task);
        let mut ancestor_crashed = false;
        let mut up = w.s.parent(task);
        while let Some(u) = up {
            ancestor_crashed |= w.s.attempts(u).iter().any(|a| a.failure == Some(segv()));
            up = w.s.parent(u);
        }
        let from = if ancestor_crashed {
            Some(0)
        } else {
            att.iter().position(|a| a.failure == Some(segv()))
        };
        if let Some(i) = from {
            assert!(
                att[i..]
                    .iter()
                    .all(|a| matches!(a.executor, Executor::Worker { .. })),
                "seed {seed}: task {t} ran in process after a crash"
            );
        }
    }
}

#[test]
fn every_chunk_ends_exactly_once_under_random_splits_and_faults() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let workers = rng.below(4) as u32;
        let lanes = 1 + rng.below(2) as u32;
        let mut cfg = split_config(workers, lanes, workers + lanes + rng.below(3) as u32);
        cfg.max_attempts = 1 + rng.below(3) as u32;
        cfg.max_quarantines_in_row = 1_000;
        cfg.max_idle_deaths = 1_000;
        cfg.max_start_failures = 1_000;
        cfg.max_dying_chunks = 1_000;
        cfg.kill_grace = ms(3);
        cfg.start_timeout = ms(50);
        let chaos = workers > 0 && rng.chance(50);
        if chaos {
            cfg.timeout = Some(TimeoutSpec::Fixed(ms(2 + rng.below(6) as u64)));
        }
        let n = 1 + rng.below(8);
        let blocks = 1 + rng.below(9) as u32;
        let (mut w, _) = World::with_blocks(cfg, n, blocks);
        let mut bad = Vec::new();
        for b in 0..n as u32 * blocks {
            let m = match rng.below(12) {
                0 if workers > 0 => Misbehave::Crash,
                1 => Misbehave::Fail,
                _ => continue,
            };
            w.misbehave.insert(TaskId(b), m);
            bad.push((b, b + 1));
        }
        for _ in 0..200_000 {
            if w.finished || w.fatal.is_some() {
                break;
            }
            if chaos && rng.chance(3) {
                if let Some(k) = w.random_live(&mut rng, false) {
                    w.now += ms(1);
                    let ev = match rng.below(3) {
                        0 => SchedEvent::WorkerExited {
                            key: k,
                            exit: killed_by(SIGKILL),
                        },
                        1 => SchedEvent::Disconnected { key: k },
                        _ => SchedEvent::Tick,
                    };
                    w.send(ev);
                    continue;
                }
            }
            assert!(w.step(&mut rng), "stuck (seed {seed})");
        }
        assert!(w.fatal.is_none(), "seed {seed}: {:?}", w.fatal);
        w.assert_finished();
        let q = quarantined_ranges(&w);
        // Every bad block ends in a quarantined part (but in the model a crashing block
        // that timed out first computes fine in process)...
        for b in bad
            .iter()
            .filter(|b| !chaos || w.misbehave[&TaskId(b.0)] == Misbehave::Fail)
        {
            assert!(
                q.iter().any(|r| r.0 <= b.0 && b.1 <= r.1),
                "seed {seed}: bad block {b:?} not quarantined ({q:?})"
            );
        }
        // ...and without random kills, only the bad blocks do, one block each, except where
        // two generations of parts all crashed alike: those parts are quarantined whole,
        // and each holds a crashing block.
        if !chaos {
            let crashing = |r: &(u32, u32)| {
                (r.0..r.1).any(|b| w.misbehave.get(&TaskId(b)) == Some(&Misbehave::Crash))
            };
            let single: Vec<(u32, u32)> = q.iter().copied().filter(|r| r.1 - r.0 == 1).collect();
            for r in &q {
                assert!(
                    r.1 - r.0 == 1 || crashing(r),
                    "seed {seed}: {r:?} quarantined whole without a crashing block"
                );
            }
            for b in bad
                .iter()
                .filter(|b| !q.iter().any(|r| r.1 - r.0 > 1 && r.0 <= b.0 && b.1 <= r.1))
            {
                assert!(single.contains(b), "seed {seed}: bad block {b:?} ({q:?})");
            }
            assert!(
                single.iter().all(|r| bad.contains(r)),
                "seed {seed}: {q:?} vs {bad:?}"
            );
        }
        assert_ended_once_and_never_in_process_after_a_crash(&w, seed);
    }
}

// ---------------------------------------------------------------------------------------
// Systematic failure: the breaker across chunks, breadth-first bisection, restarts that
// do not back off for a part's death, bisection that stops where the evidence does.

/// Crashes (SIGSEGV attempts) over every task.
fn crashes(w: &World) -> usize {
    (0..w.chunks() as u32)
        .map(|t| {
            w.s.attempts(TaskId(t))
                .iter()
                .filter(|a| a.failure == Some(segv()))
                .count()
        })
        .sum()
}

#[test]
fn a_kernel_that_kills_every_chunk_ends_the_run_after_four_chunks() {
    for seed in 0..20 {
        let (mut w, _) = World::with_blocks(split_config(2, 1, 4), 20, 64);
        for b in 0..20 * 64 {
            w.misbehave.insert(TaskId(b), Misbehave::Crash);
        }
        w.run_to_end(&mut Rng::new(seed));
        let why = w.fatal.clone().expect("the breaker trips");
        assert!(
            why.starts_with("the kernel (or the reader of the input) fails on every chunk: the first attempts of 4 chunks died with none done in between"),
            "{why}"
        );
        assert!(why.contains("the last one killed by SIGSEGV"), "{why}");
        // Four first attempts, plus the retries of the first two: not a bisection.
        assert!(crashes(&w) <= 8, "seed {seed}: {} crashes", crashes(&w));
        assert_eq!(w.s.counters.splits, 0, "seed {seed}");
        assert!(!w.finished);
    }
}

#[test]
fn an_injected_fault_is_named_as_the_cause() {
    let mut cfg = split_config(2, 1, 4);
    cfg.faults = vec!["crash:*".parse().unwrap()];
    let (mut w, _) = World::new(cfg, 10);
    for b in 0..10 {
        w.misbehave.insert(TaskId(b), Misbehave::Crash);
    }
    w.run_to_end(&mut Rng::new(1));
    let why = w.fatal.clone().expect("the breaker trips");
    assert!(
        why.starts_with("the fault injected with --inject-fault crash: "),
        "{why}"
    );
}

#[test]
fn deaths_at_the_end_of_a_run_of_known_bad_chunks_do_not_trip_it() {
    // Four plan chunks crash on every block, between healthy ones: their first attempts die
    // with successes in between, then their retries and parts die in a row at the end,
    // behind the healthy work. None of that is evidence against the computation.
    for seed in 0..20 {
        let (mut w, _) = World::with_blocks(split_config(2, 1, 4), 12, 8);
        for t in [1u32, 4, 7, 10] {
            for b in t * 8..(t + 1) * 8 {
                w.misbehave.insert(TaskId(b), Misbehave::Crash);
            }
        }
        w.run_to_end(&mut Rng::new(seed));
        assert!(w.fatal.is_none(), "seed {seed}: {:?}", w.fatal);
        w.assert_finished();
    }
}

#[test]
fn one_always_crashing_chunk_costs_nine_crashes_whatever_its_blocks() {
    for seed in 0..20 {
        let (mut w, _) = World::with_blocks(split_config(2, 1, 4), 6, 512);
        for b in 2 * 512..3 * 512 {
            w.misbehave.insert(TaskId(b), Misbehave::Crash);
        }
        w.run_to_end(&mut Rng::new(seed));
        assert!(w.fatal.is_none(), "seed {seed}: {:?}", w.fatal);
        w.assert_finished();
        // Three attempts, two halves dying alike, their four halves dying alike: quarantined
        // as quarters, not bisected down to 512 blocks (1023 crashes before).
        assert_eq!(crashes(&w), 3 + 2 + 4, "seed {seed}");
        assert_eq!(
            quarantined_ranges(&w),
            vec![(1024, 1152), (1152, 1280), (1280, 1408), (1408, 1536)],
            "seed {seed}"
        );
        for t in [0u32, 1, 3, 4, 5] {
            assert_eq!(w.s.outcome(TaskId(t)), Some(ChunkOutcome::Done));
        }
    }
}

#[test]
fn healthy_chunks_go_before_a_crashing_chunks_retries_and_parts() {
    for seed in 0..20 {
        let (mut w, _) = World::with_blocks(split_config(2, 1, 4), 8, 4);
        for b in 0..4 {
            w.misbehave.insert(TaskId(b), Misbehave::Crash);
        }
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        let order: Vec<(TaskId, Attempt)> = w
            .all_log(dispatches)
            .into_iter()
            .map(|(_, t, a, _)| (t, a))
            .collect();
        let at = |t: u32, a: u32| order.iter().position(|&x| x == (TaskId(t), Attempt(a)));
        let retry = at(0, 3).expect("chunk 0 is retried twice");
        for t in 1..8 {
            // Every healthy chunk was handed out before chunk 0's third attempt...
            assert!(at(t, 1).unwrap() < retry, "seed {seed}: {order:?}");
        }
        // ...and chunk 0's parts come last.
        assert!(at(8, 1).unwrap() > at(7, 1).unwrap(), "seed {seed}");
    }
}

#[test]
fn a_worker_that_dies_on_a_part_restarts_at_once() {
    let mut cfg = split_config(1, 0, 2);
    cfg.backoff_base = ms(100);
    let (mut w, _) = World::with_blocks(cfg, 1, 4);
    for b in 0..4 {
        w.misbehave.insert(TaskId(b), Misbehave::Crash);
    }
    // The plan chunk's own deaths back off as before: at once, then 100 ms, 200 ms.
    for attempt in 1..=3 {
        let k = w.through_backoff(0);
        w.now += ms(1);
        let a = w.ready_key(k);
        assert_eq!(dispatches(&a)[0].2, Attempt(attempt));
        w.now += ms(1);
        w.exit_key(k, killed_by(SIGSEGV));
    }
    assert!(
        matches!(w.s.worker_state(WorkerId(0)), WorkerState::Backoff { .. }),
        "{:?}",
        w.s.worker_state(WorkerId(0))
    );
    // Its parts' deaths restart the lane at once.
    let k = w.through_backoff(0);
    for part in [1u32, 2] {
        let k = if part == 1 { k } else { w.latest(0) };
        w.now += ms(1);
        let a = w.ready_key(k);
        assert_eq!(dispatches(&a)[0].1, TaskId(part));
        w.now += ms(1);
        let a = w.exit_key(k, killed_by(SIGSEGV));
        assert_eq!(spawns(&a), vec![key(0, k.gen + 1)], "part {part}: {a:?}");
    }
}

#[test]
fn two_bad_blocks_in_both_halves_are_still_found_exactly() {
    // Both halves die like the chunk (one generation alike): split once more, and the next
    // generation localises both blocks; bisection then goes on down to them.
    for seed in 0..20 {
        let (mut w, _) = World::with_blocks(split_config(2, 1, 4), 3, 16);
        for b in [16 + 3, 16 + 12] {
            w.misbehave.insert(TaskId(b), Misbehave::Crash);
        }
        w.run_to_end(&mut Rng::new(seed));
        w.assert_finished();
        assert_eq!(
            quarantined_ranges(&w),
            vec![(19, 20), (28, 29)],
            "seed {seed}"
        );
    }
}

#[test]
fn a_small_plan_whose_every_part_dies_alike_ends_the_run() {
    // Two plan chunks, fewer than the breaker's four: every plan chunk died at its first
    // attempt with none done, and bisection found their parts dying alike twice over.
    let (mut w, _) = World::with_blocks(split_config(2, 1, 4), 2, 64);
    for b in 0..128 {
        w.misbehave.insert(TaskId(b), Misbehave::Crash);
    }
    w.run_to_end(&mut Rng::new(2));
    let why = w.fatal.clone().expect("the breaker trips");
    assert!(
        why.contains("the first attempts of 2 chunks died with none done in between"),
        "{why}"
    );
    assert!(crashes(&w) <= 2 * 9, "{} crashes", crashes(&w));
}

#[test]
fn a_hanging_chunk_gets_the_median_limit_once_another_finished() {
    // A plug-in kernel (no lane) that hangs on chunk 0 of two: chunk 1 finishes, and chunk
    // 0's worker is stopped at the floor of the median's limit, not the start-of-run 60 s.
    let mut cfg = config(2, 0, 4);
    cfg.timeout = Some(TimeoutSpec::PercentOfMedian(1000.0));
    cfg.timeout_floor = ms(2_000);
    let (mut w, _) = World::new(cfg, 2);
    w.ready(0);
    w.ready(1);
    w.at(100);
    w.done(1);
    assert_eq!(w.s.time_limit(), Some(ms(2_000)));
    assert_eq!(w.s.next_deadline(), Some(w.t(2_000)));
    w.at(2_000);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(0, 0), Sig::Term)]);
    assert_eq!(
        w.s.attempts(TaskId(0))[0].failure,
        Some(FailureCause::Timeout { after_ms: 2_000 })
    );
}

// ---------------------------------------------------------------------------------------
// Speculative backups.

/// Two workers, a 1 s floor and 4x the median, a 10x timeout with a 10 s floor (the
/// coordinator's defaults), and one in-process lane.
fn speculation_config(workers: u32, slots: u32) -> SchedConfig {
    let mut cfg = config(workers, 1, slots);
    cfg.speculation = SpeculationSpec::After {
        factor: 4.0,
        floor: ms(1_000),
    };
    cfg.timeout = Some(TimeoutSpec::PercentOfMedian(1000.0));
    cfg.timeout_floor = ms(10_000);
    cfg
}

/// Four chunks on two workers: chunks 0..3 finish in 100 ms each, chunk 3 (on worker 1
/// since 100 ms) does not answer. Returns the world at 200 ms, worker 0 idle.
fn hung_last_chunk(cfg: SchedConfig) -> World {
    let (mut w, _) = World::new(cfg, 4);
    w.ready(0);
    w.ready(1);
    w.at(100);
    w.done(0);
    w.done(1);
    w.at(200);
    let a = w.done(0);
    assert!(dispatches(&a).is_empty(), "nothing queued: {a:?}");
    assert_eq!(w.job(key(1, 0)).task, TaskId(3));
    w
}

fn speculative_dispatch(a: &[SchedAction]) -> (WorkerKey, TaskId, Attempt, SlotId) {
    let d = dispatches(a);
    assert_eq!(d.len(), 1, "{a:?}");
    d[0]
}

#[test]
fn a_hung_last_chunk_gets_a_backup_that_wins_and_the_loser_is_killed() {
    let mut w = hung_last_chunk(speculation_config(2, 5));
    // The median is 100 ms: 4x is below the floor, so the backup is due 1 s after chunk 3
    // started (at 100 ms), long before its time limit (10 s).
    assert_eq!(w.s.next_deadline(), Some(w.t(1_100)));
    w.at(1_099);
    assert!(w.tick().is_empty());
    w.at(1_100);
    let a = w.tick();
    let (k, task, attempt, slot) = speculative_dispatch(&a);
    assert_eq!((k, task, attempt), (key(0, 0), TaskId(3), Attempt(2)));
    let original = w.job(key(1, 0));
    assert_ne!(slot, original.slot, "each attempt has its own slot");
    assert_eq!(w.s.counters.speculative, 1);
    // The backup finishes first: its slot is written, the original's worker killed.
    w.at(1_200);
    let a = w.done(0);
    assert_eq!(writes(&a), vec![(TaskId(3), Some(slot))]);
    assert_eq!(signals(&a), vec![(key(1, 0), Sig::Kill)]);
    assert!(matches!(
        w.s.worker_state(WorkerId(1)),
        WorkerState::Stopping { slot: Some(s), kill_at: None, .. } if *s == original.slot
    ));
    let att = w.s.attempts(TaskId(3));
    assert_eq!(att.len(), 2);
    assert_eq!((att[0].attempt, att[0].speculative), (2, true));
    assert!(att[0].stats.is_some());
    assert_eq!((att[1].attempt, att[1].speculative), (1, false));
    assert_eq!(att[1].failure, Some(FailureCause::Superseded { by: 2 }));
    assert_eq!(w.s.counters.speculative_wins, 1);
    assert_eq!(w.s.counters.timeouts, 0);
    // The killed loser is no death: no restart (nothing left), no backoff.
    w.at(1_201);
    let a = w.exit(1, killed_by(SIGKILL));
    assert!(spawns(&a).is_empty(), "{a:?}");
    w.run_to_end(&mut Rng::new(0));
    w.assert_finished();
    assert_eq!(w.s.outcome(TaskId(3)), Some(ChunkOutcome::Done));
    assert_eq!(w.s.counters.restarts, 0);
    assert_eq!(
        w.s.worker_records()[1].cause,
        Some(FailureCause::Superseded { by: 2 })
    );
}

#[test]
fn the_original_wins_when_it_finishes_first_and_the_backup_is_killed() {
    let mut w = hung_last_chunk(speculation_config(2, 5));
    w.at(1_100);
    let (backup, ..) = speculative_dispatch(&w.tick());
    w.at(1_150);
    let original = w.job(key(1, 0));
    let a = w.done(1);
    assert_eq!(writes(&a), vec![(TaskId(3), Some(original.slot))]);
    assert_eq!(signals(&a), vec![(backup, Sig::Kill)]);
    let att = w.s.attempts(TaskId(3));
    assert_eq!((att[0].attempt, att[0].speculative), (1, false));
    assert_eq!(att[1].failure, Some(FailureCause::Superseded { by: 1 }));
    assert!(att[1].speculative);
    assert_eq!(w.s.counters.speculative_wins, 0);
    // The backup's answer, sent before the kill landed, is late.
    w.at(1_151);
    assert!(w.done_key(backup).is_empty());
    assert_eq!(w.s.counters.late_replies, 1);
    w.run_to_end(&mut Rng::new(1));
    w.assert_finished();
}

#[test]
fn a_chunk_hanging_in_every_attempt_still_times_out_and_runs_in_process() {
    let mut w = hung_last_chunk(speculation_config(2, 5));
    w.at(1_100);
    let (backup, ..) = speculative_dispatch(&w.tick());
    // The original's limit (10 s floor) comes first: it is stopped, but the chunk goes
    // nowhere while its backup runs.
    assert_eq!(w.s.next_deadline(), Some(w.t(10_100)));
    w.at(10_100);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(key(1, 0), Sig::Term)]);
    assert!(in_process_runs(&a).is_empty(), "{a:?}");
    assert_eq!(w.s.counters.timeouts, 1);
    w.at(10_110);
    let a = w.exit(1, killed_by(SIGTERM));
    // The lane restarts (a chunk still needs workers) but gets no second backup.
    assert_eq!(spawns(&a), vec![key(1, 1)]);
    let a = w.ready(1);
    assert!(dispatches(&a).is_empty(), "{a:?}");
    assert_eq!(w.s.next_deadline(), Some(w.t(11_100)));
    // The backup times out in turn: now the chunk runs in process, as without speculation.
    w.at(11_100);
    let a = w.tick();
    assert_eq!(signals(&a), vec![(backup, Sig::Term)]);
    assert_eq!(in_process_runs(&a).len(), 1, "{a:?}");
    assert_eq!(in_process_runs(&a)[0].2, Attempt(3));
    w.run_to_end(&mut Rng::new(2));
    w.assert_finished();
    assert_eq!(w.s.outcome(TaskId(3)), Some(ChunkOutcome::DoneInProcess));
    let causes: Vec<_> =
        w.s.attempts(TaskId(3))
            .iter()
            .map(|a| (a.attempt, a.speculative, a.failure.clone()))
            .collect();
    assert_eq!(
        causes,
        vec![
            (1, false, Some(FailureCause::Timeout { after_ms: 10_000 })),
            (2, true, Some(FailureCause::Timeout { after_ms: 10_000 })),
            (3, false, None),
        ]
    );
}

#[test]
fn without_a_lane_a_chunk_hanging_in_every_attempt_is_quarantined_within_its_attempts() {
    let mut cfg = speculation_config(2, 5);
    cfg.lanes = 0;
    let mut w = hung_last_chunk(cfg);
    for _ in 0..20 {
        if w.finished {
            break;
        }
        // Every attempt of chunk 3 hangs: only deadlines and exits move the run on.
        let next = w.s.next_deadline().expect("a deadline while chunk 3 hangs");
        w.at_instant(next.max(w.now));
        w.tick();
        let stopping: Vec<WorkerKey> = w
            .procs
            .iter()
            .filter(|p| p.alive && p.stopping())
            .map(|p| p.key)
            .collect();
        for k in stopping {
            w.exit_key(k, killed_by(SIGTERM));
        }
        for k in w
            .procs
            .iter()
            .filter(|p| p.alive && !p.ready)
            .map(|p| p.key)
            .collect::<Vec<_>>()
        {
            w.ready_key(k);
        }
        w.write_all();
    }
    w.assert_finished();
    assert_eq!(w.s.outcome(TaskId(3)), Some(ChunkOutcome::Quarantined));
    let att = w.s.attempts(TaskId(3));
    // Three attempts (--max-attempts), one of them the backup, each ended by its timeout.
    assert_eq!(att.len(), 3);
    assert_eq!(att.iter().filter(|a| a.speculative).count(), 1);
    assert!(att
        .iter()
        .all(|a| matches!(a.failure, Some(FailureCause::Timeout { .. }))));
}

#[test]
fn no_backup_without_an_idle_worker_or_while_chunks_are_queued() {
    // One worker: it runs the slow chunk, nobody can back it up.
    let (mut w, _) = World::new(speculation_config(1, 3), 2);
    w.ready(0);
    assert_eq!(
        w.s.next_deadline(),
        Some(w.t(60_000)),
        "the first-chunks limit only"
    );
    w.at(5_000);
    assert!(w.tick().is_empty());
    // Two workers, three chunks: chunk 0 hangs, but chunk 2 waits in the queue until
    // worker 1 is done with chunk 1; a backup comes only after.
    let (mut w, _) = World::new(speculation_config(2, 4), 3);
    w.ready(0);
    w.ready(1);
    w.at(3_000);
    assert!(w.tick().is_empty());
    let a = w.done(1);
    assert_eq!(dispatches(&a)[0].1, TaskId(2));
    w.at(3_100);
    let a = w.done(1);
    // Worker 1 is idle, nothing is queued, chunk 0 runs past 4 x 3 s (a median of 3 s):
    // not yet past 12 s.
    assert!(dispatches(&a).is_empty(), "{a:?}");
    assert_eq!(w.s.next_deadline(), Some(w.t(12_000)));
    w.at(12_000);
    let (k, task, attempt, _) = speculative_dispatch(&w.tick());
    assert_eq!((k, task, attempt), (key(1, 0), TaskId(0), Attempt(2)));
}

#[test]
fn no_backup_deadline_while_admission_holds_dispatch() {
    let mut w = hung_last_chunk(speculation_config(2, 5));
    w.at(300);
    w.send(SchedEvent::Admission { open: false });
    // Only the hung attempt's time limit: a due backup could not be dispatched.
    assert_eq!(w.s.next_deadline(), Some(w.t(10_100)));
    w.at(1_100);
    assert!(w.tick().is_empty());
    w.at(1_200);
    let a = w.send(SchedEvent::Admission { open: true });
    let (k, task, attempt, _) = speculative_dispatch(&a);
    assert_eq!((k, task, attempt), (key(0, 0), TaskId(3), Attempt(2)));
}

#[test]
fn with_no_median_yet_the_floor_alone_decides() {
    // One chunk, two workers: no attempt ever finished, so no median to take 4x of. The
    // second worker, which the one chunk did not need, starts when the backup is due.
    let (mut w, first) = World::new(speculation_config(2, 4), 1);
    assert_eq!(spawns(&first), vec![key(0, 0)]);
    w.ready(0);
    assert_eq!(w.s.next_deadline(), Some(w.t(1_000)));
    w.at(1_000);
    assert_eq!(spawns(&w.tick()), vec![key(1, 0)]);
    let (k, task, attempt, _) = speculative_dispatch(&w.ready(1));
    assert_eq!((k, task, attempt), (key(1, 0), TaskId(0), Attempt(2)));
    w.at(1_050);
    let a = w.done(1);
    assert_eq!(signals(&a), vec![(key(0, 0), Sig::Kill)]);
    w.run_to_end(&mut Rng::new(3));
    w.assert_finished();
}

#[test]
fn a_backup_that_crashes_leaves_the_original_running() {
    let mut w = hung_last_chunk(speculation_config(2, 5));
    w.at(1_100);
    speculative_dispatch(&w.tick());
    w.at(1_150);
    let a = w.exit(0, killed_by(SIGSEGV));
    // Recorded; the chunk is neither retried nor sent in process: the original runs on.
    assert!(
        dispatches(&a).is_empty() && in_process_runs(&a).is_empty(),
        "{a:?}"
    );
    assert_eq!(w.s.attempts(TaskId(3))[0].failure, Some(segv()));
    assert!(w.s.attempts(TaskId(3))[0].speculative);
    // The original answers: it is kept, and nothing is killed.
    w.at(1_300);
    let a = w.done(1);
    assert_eq!(writes(&a).len(), 1);
    assert!(signals(&a).is_empty(), "{a:?}");
    w.run_to_end(&mut Rng::new(4));
    w.assert_finished();
    assert_eq!(w.s.outcome(TaskId(3)), Some(ChunkOutcome::Done));
}

#[test]
fn off_no_backup_ever() {
    let mut cfg = speculation_config(2, 5);
    cfg.speculation = SpeculationSpec::Off;
    let mut w = hung_last_chunk(cfg);
    assert_eq!(w.s.next_deadline(), Some(w.t(10_100)));
    w.at(10_100);
    let a = w.tick();
    assert!(dispatches(&a).is_empty());
    assert_eq!(in_process_runs(&a).len(), 1);
}

#[test]
fn speculation_under_random_orders_and_faults_keeps_every_invariant() {
    // A zero floor and 1x the median: any attempt past the median is backed up whenever a
    // worker idles with nothing queued, so pairs race, crash, time out and lose in every
    // order. Every chunk is still written exactly once, and no slot is shared.
    let mut backups = 0;
    for seed in 0..300 {
        let mut rng = Rng::new(seed);
        let workers = 2 + rng.below(3) as u32;
        let mut cfg = config(
            workers,
            rng.below(2) as u32,
            workers + 1 + rng.below(3) as u32,
        );
        cfg.speculation = SpeculationSpec::After {
            factor: 1.0,
            floor: ms(rng.below(3) as u64),
        };
        cfg.max_quarantines_in_row = 1_000;
        cfg.max_idle_deaths = 1_000;
        cfg.max_dying_chunks = 1_000;
        cfg.kill_grace = ms(3);
        cfg.timeout = Some(TimeoutSpec::PercentOfMedian(1000.0));
        cfg.timeout_floor = ms(20);
        let n = 3 + rng.below(12);
        let (mut w, _) = World::new(cfg, n);
        for t in 0..n as u32 {
            match rng.below(12) {
                0 => {
                    w.misbehave.insert(TaskId(t), Misbehave::Crash);
                }
                1 => {
                    w.misbehave.insert(TaskId(t), Misbehave::Fail);
                }
                2 => {
                    w.misbehave.insert(TaskId(t), Misbehave::Hang);
                }
                _ => {}
            }
        }
        w.run_to_end(&mut rng);
        assert!(w.fatal.is_none(), "seed {seed}: {:?}", w.fatal);
        w.assert_finished();
        backups += w.s.counters.speculative;
        for t in 0..n as u32 {
            let att = w.s.attempts(TaskId(t));
            // Attempt numbers are distinct, and at most one is a backup.
            let mut nums: Vec<u32> = att.iter().map(|a| a.attempt).collect();
            nums.sort();
            nums.dedup();
            assert_eq!(nums.len(), att.len(), "seed {seed}: {att:?}");
            assert!(att.iter().filter(|a| a.speculative).count() <= 1);
            assert!(att.iter().filter(|a| a.stats.is_some()).count() <= 1);
        }
    }
    assert!(
        backups > 100,
        "only {backups} backups: the test must race pairs"
    );
}

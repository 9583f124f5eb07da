//! The supervisor: owns the processes, channels, threads, timers and signals of a run, feeds
//! the scheduler's state machine with events and carries out the actions it returns. It asks
//! the job for each chunk's payload and slot sizes, and hands finished slots to the job's
//! sink; it never looks inside either.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use protocol::{Attempt, FaultKind, SlotId, SlotLayout, TaskId, TaskMsg, ToWorker};
use shm::SlotRing;

use crate::{
    event_loop::{EventLoop, EventSender, Incoming},
    inproc::{ExecutorFactory, LaneTask},
    job::{ChunkSink, Job},
    memory::{self, MemShared, MemState},
    observe::EventLog,
    pool::{self, PoolConfig, PoolEvent, Proc},
    progress::Progress,
    sched::{ExitInfo, SchedAction, SchedConfig, SchedEvent, Scheduler, Sig, WorkerId, WorkerKey},
    sink::{SinkEvent, SinkMsg},
};

mod setup;

use setup::{misfit, pool_config, progress_and_observer, start_threads, Threads};

/// How often a run held by `--min-free-memory` says that it is waiting.
const ADMISSION_NOTICE: Duration = Duration::from_secs(5);

/// Everything the engine needs besides the job: resolved, nothing left to default.
pub struct EngineConfig {
    pub sched: SchedConfig,
    pub layout: SlotLayout,
    /// Chunks in the plan (parts of split chunks come on top).
    pub tasks: usize,
    pub worker_bin: PathBuf,
    /// Environment set for every worker (e.g. its library's cache size).
    pub worker_env: Vec<(String, String)>,
    /// Hard per-worker memory limit (RLIMIT_DATA).
    pub data_limit: Option<u64>,
    /// The job's setup, encoded: sent to every worker, and opened by every lane.
    pub setup: Vec<u8>,
    /// Opens the job's kernel in process (`None`: no in-process lanes).
    pub executor: Option<ExecutorFactory>,
    pub memory_poll: Duration,
    /// Private memory above which a worker is recycled after its chunk.
    pub soft_limit: Option<u64>,
    pub min_free_memory: Option<u64>,
    pub kill_grace: Duration,
    pub progress: bool,
    /// The event stream (`--events`): every decision, sample and admission change.
    pub events: Option<EventLog>,
    /// How worker processes start.
    pub spawn: Spawn,
}

/// How worker processes start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spawn {
    /// Forked by the run's fork server (GDAL loaded once); by exec if it fails.
    ForkServer,
    /// Each one by exec (each loads GDAL).
    Exec,
}

impl Spawn {
    /// `BLOCKSUM_SPAWN=exec` turns the fork server off (to compare, or to rule it out);
    /// anything else, or nothing, keeps it.
    pub fn from_env() -> Spawn {
        match std::env::var("BLOCKSUM_SPAWN").as_deref() {
            Ok("exec") => Spawn::Exec,
            _ => Spawn::ForkServer,
        }
    }
}

/// Why a run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The scheduler gave up (breaker, in-process run far past its limit).
    #[error("{0}")]
    Fatal(String),
    #[error("the worker binary speaks protocol version {theirs}, this coordinator {ours}: build both from the same source")]
    VersionMismatch { theirs: u32, ours: u32 },
    /// The sink failed: the job's error (downcast it to get it back) or the engine's text.
    #[error(transparent)]
    Sink(crate::job::SinkError),
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
    #[error("{0}")]
    Internal(String),
}

/// What a run leaves for the report, whatever its result.
pub struct RunRecord {
    pub sched: Scheduler,
    /// Per task: microseconds the sink took to write it.
    pub write_us: Vec<Option<u64>>,
    pub memory: MemState,
    pub start: Instant,
    /// When the last chunk was written and the sink closed (or the run failed), before the
    /// workers were stopped.
    pub ended: Instant,
}

enum Event<C> {
    Pool(PoolEvent),
    Sink(SinkEvent<C>),
    Sched(SchedEvent),
    Signal(i32),
}

impl<C> Event<C> {
    /// A worker's exit: the event loop hands it out after everything the worker said.
    fn is_exit(&self) -> bool {
        matches!(
            self,
            Event::Pool(PoolEvent::Sched(SchedEvent::WorkerExited { .. }))
                | Event::Sched(SchedEvent::WorkerExited { .. })
        )
    }
}

/// Runs the job to the end: every chunk done, quarantined or split, the sink closed. Workers
/// are stopped and waited for before it returns, whatever happened.
pub fn run<J: Job>(
    job: &mut J,
    sink: J::Sink,
    ring: Arc<SlotRing>,
    cfg: EngineConfig,
) -> (
    Result<<J::Sink as ChunkSink>::Closed, EngineError>,
    RunRecord,
) {
    let start = Instant::now();
    let mem: MemState = Arc::new(Mutex::new(MemShared {
        start: Some(start),
        log: cfg.events.clone(),
        ..MemShared::default()
    }));
    let (progress, observer) = progress_and_observer(&cfg);
    let (sched, first) = Scheduler::observed(cfg.sched.clone(), cfg.tasks, start, Some(observer));
    let record = |sched| RunRecord {
        sched,
        write_us: vec![None; cfg.tasks],
        memory: mem.clone(),
        start,
        ended: Instant::now(),
    };
    if let Some(t) = misfit(job, &cfg) {
        return (
            Err(EngineError::Internal(format!(
                "chunk {t} does not fit the slot layout"
            ))),
            record(sched),
        );
    }
    let Threads {
        mut inbox,
        tx,
        lanes,
        signals,
        sink_tx,
        sink_thread,
    } = match start_threads(&cfg, sink, &ring, &mem) {
        Ok(t) => t,
        Err(e) => return (Err(e), record(sched)),
    };
    let pool_cfg = pool_config(&cfg, &ring);
    let mut sup = Supervisor {
        job,
        sched,
        procs: HashMap::new(),
        pool_cfg,
        _ring: ring,
        sink_tx: Some(sink_tx),
        lanes,
        events: tx,
        mem: mem.clone(),
        write_us: vec![None; cfg.tasks],
        progress,
        stopped: HashSet::new(),
        admission_notice: Instant::now(),
        to_spawn: VecDeque::new(),
        closed: None,
        cfg: &cfg,
    };
    let outcome = sup.run(first, &mut inbox);
    let ended = Instant::now();
    drop(signals);
    sup.progress.finish();
    // Shut everything down whatever happened; on success the workers are already retiring.
    // The fork server forks no more: it exits while the workers do.
    if let Some(fs) = &sup.pool_cfg.fork_server {
        fs.hang_up();
    }
    sup.stop_all(&mut inbox, outcome.is_ok());
    sup.stop_fork_server();
    // The sink's sender is gone: its thread ends (dropping an unclosed sink).
    let _ = sink_thread.join();
    let closed = sup.closed.take();
    let rec = RunRecord {
        sched: sup.sched,
        write_us: sup.write_us,
        memory: mem,
        start,
        ended,
    };
    let result = match (outcome, closed) {
        (Ok(()), Some(c)) => Ok(c),
        (Ok(()), None) => Err(EngineError::Internal("the sink never closed".into())),
        (Err(e), _) => Err(e),
    };
    (result, rec)
}

/// What one event of the supervisor's loop leads to.
enum Next {
    /// The scheduler's actions, to carry out.
    Act(Vec<SchedAction>),
    /// The run is over.
    End,
}

struct Supervisor<'a, J: Job> {
    job: &'a mut J,
    cfg: &'a EngineConfig,
    sched: Scheduler,
    procs: HashMap<WorkerId, (WorkerKey, Proc)>,
    pool_cfg: PoolConfig,
    /// Keeps the ring mapped and its descriptor open for workers spawned later.
    _ring: Arc<SlotRing>,
    sink_tx: Option<mpsc::Sender<SinkMsg<J::Sink>>>,
    lanes: Vec<mpsc::Sender<LaneTask>>,
    events: EventSender<Event<<J::Sink as ChunkSink>::Closed>>,
    mem: MemState,
    write_us: Vec<Option<u64>>,
    progress: Progress,
    /// Workers the supervisor stopped on purpose (retired, or at the end of the run): their
    /// exit, whatever signal it took, is no death.
    stopped: HashSet<WorkerKey>,
    /// When the run last said that admission holds dispatch.
    admission_notice: Instant,
    /// Workers the scheduler started that are not spawned yet: one each turn of the loop,
    /// between events, so that a worker ready early gets its chunk while the others start
    /// (with 50 workers, their forks took ~0.6 s before the first chunk went out).
    to_spawn: VecDeque<WorkerKey>,
    closed: Option<<J::Sink as ChunkSink>::Closed>,
}

impl<J: Job> Supervisor<'_, J> {
    fn run(
        &mut self,
        first: Vec<SchedAction>,
        inbox: &mut EventLoop<Event<<J::Sink as ChunkSink>::Closed>>,
    ) -> Result<(), EngineError> {
        let mut pending = first;
        let mut closing = false;
        loop {
            self.notice_admission();
            self.act(std::mem::take(&mut pending), &mut closing)?;
            if let Some(key) = self.to_spawn.pop_front() {
                self.spawn_now(key);
            }
            let now = Instant::now();
            let due = self.sched.next_deadline();
            // More to spawn: only look at what has come meanwhile.
            let deadline = match self.to_spawn.is_empty() {
                true => due.unwrap_or(now + Duration::from_secs(1)),
                false => now,
            }
            .min(now + Duration::from_secs(1));
            let ev = match inbox.next(deadline, self.sched.writes_can_wait()) {
                Ok(Some(Incoming::Event(ev))) => ev,
                Ok(Some(Incoming::Worker(se))) => Event::Pool(PoolEvent::Sched(se)),
                Ok(None) => {
                    if self.to_spawn.is_empty() || due.is_some_and(|d| d <= Instant::now()) {
                        pending = self.sched.handle(Instant::now(), SchedEvent::Tick);
                    }
                    continue;
                }
                Err(e) => return Err(EngineError::Internal(format!("the event loop: {e}"))),
            };
            pending = match self.on_event(ev, inbox, closing)? {
                Next::Act(actions) => actions,
                Next::End => return Ok(()),
            };
            if self
                .sched
                .next_deadline()
                .is_some_and(|d| d <= Instant::now())
            {
                let more = self.sched.handle(Instant::now(), SchedEvent::Tick);
                pending.extend(more);
            }
        }
    }

    /// Says so, now and then, while dispatch waits for memory: also without a terminal.
    fn notice_admission(&mut self) {
        if !self.sched.admission_open() && self.admission_notice.elapsed() >= ADMISSION_NOTICE {
            self.admission_notice = Instant::now();
            tracing::info!(
                "waiting for free memory: {} MiB available, --min-free-memory {} MiB; {} of {} chunks done",
                memory::available_memory() >> 20,
                self.cfg.min_free_memory.unwrap_or(0) >> 20,
                self.sched.finished(),
                self.sched.tasks()
            );
        }
    }

    /// One event of the loop: the scheduler's actions it leads to, or the end of the run
    /// (the sink closed after the run finished, `closing`).
    fn on_event(
        &mut self,
        ev: Event<<J::Sink as ChunkSink>::Closed>,
        inbox: &mut EventLoop<Event<<J::Sink as ChunkSink>::Closed>>,
        closing: bool,
    ) -> Result<Next, EngineError> {
        let now = Instant::now();
        let actions = match ev {
            Event::Sched(se) => {
                if let SchedEvent::Admission { open } = se {
                    self.progress.waiting(!open);
                    tracing::info!(
                        open,
                        "admission (available memory against --min-free-memory)"
                    );
                    self.admission_notice = now;
                }
                self.sched.handle(now, se)
            }
            Event::Pool(PoolEvent::Sched(se)) => self.on_worker_event(se, now, inbox),
            Event::Pool(PoolEvent::Connected {
                key,
                pid,
                sender,
                receiver,
            }) => {
                if let Some((k, p)) = self.procs.get_mut(&key.id) {
                    if *k == key {
                        p.sender = Some(sender);
                        let mut m = self.mem.lock().unwrap_or_else(|p| p.into_inner());
                        m.live.push((key, pid));
                    }
                }
                let mut actions = self.sched.handle(now, SchedEvent::WorkerReady { key, pid });
                // From here on the event loop reads the worker. A channel it cannot watch
                // is a worker it cannot hear: as good as disconnected.
                if let Err(e) = inbox.add_worker(key, receiver) {
                    tracing::info!(worker = key.id.0, "cannot watch the worker's channel: {e}");
                    actions.extend(self.sched.handle(now, SchedEvent::Disconnected { key }));
                }
                actions
            }
            Event::Pool(PoolEvent::VersionMismatch { theirs, .. }) => {
                return Err(EngineError::VersionMismatch {
                    theirs,
                    ours: protocol::PROTOCOL_VERSION,
                });
            }
            Event::Sink(SinkEvent::Written { task, micros }) => {
                self.write_us[task.0 as usize] = Some(micros);
                self.progress.chunk_done(self.job.chunk(task).weight);
                self.sched.handle(now, SchedEvent::Written { task })
            }
            Event::Sink(SinkEvent::Closed(c)) => {
                self.closed = Some(c);
                if closing {
                    return Ok(Next::End);
                }
                Vec::new()
            }
            Event::Sink(SinkEvent::Failed(why)) => return Err(EngineError::Sink(why)),
            Event::Signal(sig) => {
                return Err(EngineError::Interrupted(crate::interrupt::name(sig)));
            }
        };
        Ok(Next::Act(actions))
    }

    /// Carries out the scheduler's actions: splits answered at once, writes last and in their
    /// order (waking the writer costs microseconds that a worker waiting for its next chunk
    /// need not wait), the sink closed when the run is finished (`closing`).
    fn act(&mut self, actions: Vec<SchedAction>, closing: &mut bool) -> Result<(), EngineError> {
        let mut queue = VecDeque::from(actions);
        let mut writes = Vec::new();
        while let Some(action) = queue.pop_front() {
            match action {
                SchedAction::Write { .. } => writes.push(action),
                // Answered at once: the scheduler waits for it before the chunk moves on.
                SchedAction::Split { task } => {
                    let children = self.split(task);
                    queue.extend(
                        self.sched
                            .handle(Instant::now(), SchedEvent::Split { task, children }),
                    );
                }
                SchedAction::Finished => {
                    for w in writes.drain(..) {
                        self.execute(w);
                    }
                    *closing = true;
                    let quarantined: Vec<TaskId> = (0..self.sched.tasks() as u32)
                        .map(TaskId)
                        .filter(|&t| {
                            self.sched.outcome(t) == Some(crate::sched::ChunkOutcome::Quarantined)
                        })
                        .collect();
                    let close = self.job.close_item(&quarantined);
                    if let Some(w) = &self.sink_tx {
                        let _ = w.send(SinkMsg::Close(close));
                    }
                }
                SchedAction::Fatal(why) => return Err(EngineError::Fatal(why.to_string())),
                other => self.execute(other),
            }
        }
        for w in writes {
            self.execute(w);
        }
        Ok(())
    }

    /// What a worker said or did (an exit, a result), as the scheduler decides on it; a
    /// worker over the soft limit at the end of a chunk is recycled before its next one.
    fn on_worker_event(
        &mut self,
        se: SchedEvent,
        now: Instant,
        inbox: &mut EventLoop<Event<<J::Sink as ChunkSink>::Closed>>,
    ) -> Vec<SchedAction> {
        let mut pending = Vec::new();
        if let SchedEvent::WorkerExited { key, exit } = &se {
            self.forget(*key);
            inbox.silence(*key);
            // Retired lanes are past the scheduler's decisions: keep their exit for the
            // report all the same.
            let deliberate = self.stopped.contains(key);
            self.sched.record_exit(*key, exit, now, deliberate);
        }
        // Check the soft limit at the end of every chunk, not only every poll.
        if let (SchedEvent::TaskDone { key, .. }, Some(soft)) = (&se, self.cfg.soft_limit) {
            if let Some(p) = self.proc_of(*key) {
                if memory::sample(&self.mem, *key, p.pid).is_some_and(|anon| anon > soft) {
                    pending = self
                        .sched
                        .handle(now, SchedEvent::OverSoftLimit { key: *key });
                }
            }
        }
        pending.extend(self.sched.handle(now, se));
        pending
    }

    /// Stops the run's fork server (after its workers: it forks no more).
    fn stop_fork_server(&mut self) {
        if let Some(fs) = self.pool_cfg.fork_server.take() {
            if let Ok(fs) = Arc::try_unwrap(fs) {
                fs.stop();
            }
        }
    }

    /// The process of exactly this incarnation, if it is still alive: events and actions
    /// for an older incarnation of a lane must never reach its successor.
    fn proc_of(&self, key: WorkerKey) -> Option<&Proc> {
        self.procs
            .get(&key.id)
            .and_then(|(k, p)| (*k == key).then_some(p))
    }

    /// A worker process has exited: drop it from the live tables.
    fn forget(&mut self, key: WorkerKey) {
        if self.proc_of(key).is_some() {
            self.procs.remove(&key.id);
        }
        let mut m = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        m.live.retain(|(k, _)| *k != key);
    }

    /// Spawns the worker `key` now; a failure is its exit.
    fn spawn_now(&mut self, key: WorkerKey) {
        match pool::spawn(&self.pool_cfg, key, &self.events, Event::Pool) {
            Ok(proc_) => {
                tracing::debug!(
                    worker = key.id.0,
                    gen = key.gen,
                    pid = proc_.pid,
                    "spawned worker"
                );
                self.procs.insert(key.id, (key, proc_));
            }
            Err(e) => {
                let exit = ExitInfo {
                    stderr_tail: vec![format!("spawn failed: {e}")],
                    ..ExitInfo::default()
                };
                let _ = self
                    .events
                    .send(Event::Sched(SchedEvent::WorkerExited { key, exit }));
            }
        }
    }

    /// A worker still waiting in `to_spawn` is spawned now: what the scheduler does to it
    /// (a signal, a shutdown) then reaches a process, as it expects.
    fn spawn_if_waiting(&mut self, key: WorkerKey) {
        if let Some(i) = self.to_spawn.iter().position(|&k| k == key) {
            self.to_spawn.remove(i);
            self.spawn_now(key);
        }
    }

    fn execute(&mut self, action: SchedAction) {
        match action {
            SchedAction::Spawn { key } => self.to_spawn.push_back(key),
            SchedAction::Dispatch {
                key,
                task,
                attempt,
                slot,
                fault,
            } => {
                let msg = self.task_msg(task, attempt, slot, fault);
                if let Some(p) = self.proc_of(key) {
                    p.send(&ToWorker::Task(msg));
                }
            }
            SchedAction::Signal { key, sig } => {
                self.spawn_if_waiting(key);
                if let Some(p) = self.proc_of(key) {
                    p.signal(sig);
                }
            }
            SchedAction::Shutdown { key } => {
                self.spawn_if_waiting(key);
                self.stopped.insert(key);
                if let Some(p) = self.proc_of(key) {
                    if !p.send(&ToWorker::Shutdown) {
                        p.signal(Sig::Kill);
                    }
                }
            }
            SchedAction::RunInProcess {
                lane,
                task,
                attempt,
                slot,
            } => {
                let c = self.job.chunk(task);
                let t = LaneTask {
                    task,
                    attempt,
                    slot,
                    input_len: c.input_len,
                    output_len: c.output_len,
                    payload: self.job.payload(task),
                };
                match self.lanes.get(lane as usize) {
                    Some(l) => {
                        let _ = l.send(t);
                    }
                    None => {
                        // No lane (the job allows none): the attempt fails at once.
                        let _ = self.events.send(Event::Sched(SchedEvent::InProcessDone {
                            lane,
                            task,
                            attempt,
                            result: Err("this job does not run chunks in process".into()),
                        }));
                    }
                }
            }
            SchedAction::Write { task, slot } => {
                let item = self.job.write_item(task);
                let slot = slot.map(|s| (s, self.job.chunk(task).output_len));
                if let Some(w) = &self.sink_tx {
                    let _ = w.send(SinkMsg::Write { task, item, slot });
                }
            }
            SchedAction::Finished | SchedAction::Fatal(_) | SchedAction::Split { .. } => {
                unreachable!("handled by run")
            }
        }
    }

    fn task_msg(
        &self,
        task: TaskId,
        attempt: Attempt,
        slot: SlotId,
        fault: Option<FaultKind>,
    ) -> TaskMsg {
        let c = self.job.chunk(task);
        TaskMsg {
            task,
            attempt,
            input: self.cfg.layout.input(slot, c.input_len),
            output: self.cfg.layout.output(slot, c.output_len),
            payload: self.job.payload(task),
            fault,
        }
    }

    /// Asks the job to split `task`; its parts get the next task ids.
    fn split(&mut self, task: TaskId) -> u32 {
        let parts = self.job.split(task);
        for _ in 0..parts {
            self.write_us.push(None);
        }
        if parts > 0 {
            // The parent writes nothing; its parts each count as one.
            self.progress.add_chunks(parts as u64 - 1);
        }
        parts
    }

    /// Stops every worker: politely on success (they were told to shut down), otherwise
    /// TERM, then KILL after the grace period or at a second interrupt. Waits for the exits
    /// so that nothing outlives the run.
    fn stop_all(
        &mut self,
        inbox: &mut EventLoop<Event<<J::Sink as ChunkSink>::Closed>>,
        success: bool,
    ) {
        self.sink_tx = None;
        self.lanes.clear();
        // Workers never spawned: the run ended first. Recorded as stopped on purpose.
        for key in std::mem::take(&mut self.to_spawn) {
            let exit = ExitInfo {
                stderr_tail: vec!["not started: the run ended first".into()],
                ..ExitInfo::default()
            };
            self.sched.record_exit(key, &exit, Instant::now(), true);
        }
        if self.procs.is_empty() {
            return;
        }
        if !success {
            for (_, p) in self.procs.values() {
                p.signal(Sig::Term);
            }
        } else {
            for (_, p) in self.procs.values() {
                if !p.send(&ToWorker::Shutdown) {
                    p.signal(Sig::Kill);
                }
            }
        }
        let mut kill_at = Instant::now() + self.cfg.kill_grace;
        let give_up = Instant::now() + self.cfg.kill_grace + Duration::from_secs(5);
        let mut killed = false;
        while !self.procs.is_empty() && Instant::now() < give_up {
            if !killed && Instant::now() >= kill_at {
                for (_, p) in self.procs.values() {
                    p.signal(Sig::Kill);
                }
                killed = true;
            }
            let deadline = kill_at.max(Instant::now() + Duration::from_millis(10));
            match inbox.next(deadline, false) {
                Ok(Some(Incoming::Event(
                    Event::Sched(SchedEvent::WorkerExited { key, exit })
                    | Event::Pool(PoolEvent::Sched(SchedEvent::WorkerExited { key, exit })),
                ))) => {
                    self.forget(key);
                    inbox.silence(key);
                    // Record the exit for the report (the scheduler decides nothing any more).
                    self.sched.record_exit(key, &exit, Instant::now(), true);
                }
                Ok(Some(Incoming::Event(Event::Signal(_)))) => kill_at = Instant::now(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
}

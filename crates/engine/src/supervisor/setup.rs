//! What a run sets up before its loop: the progress observer, the slot-fit check, the
//! threads beside the supervisor's (event loop, lanes, signals, memory sampler, sink), the
//! pool's configuration and its fork server.

use std::sync::{mpsc, Arc};

use protocol::TaskId;
use shm::SlotRing;

use super::{EngineConfig, EngineError, Event, Spawn};
use crate::{
    event_loop::{EventLoop, EventSender},
    fork_server::ForkServer,
    inproc::{self, LaneTask},
    job::{ChunkSink, Job},
    memory::{self, MemState},
    observe::Observer,
    pool::PoolConfig,
    progress::Progress,
    sink::{self, SinkMsg},
};

/// The progress bar, and the scheduler's observer that feeds it and the event stream as
/// decisions are made.
pub(super) fn progress_and_observer(cfg: &EngineConfig) -> (Progress, Observer) {
    let progress = Progress::new(cfg.tasks as u64, cfg.progress);
    let observer: Observer = {
        let (progress, log) = (progress.clone(), cfg.events.clone());
        Box::new(move |ms, ev| {
            progress.on_event(ev);
            if let Some(l) = &log {
                l.emit(ms, ev);
            }
        })
    };
    (progress, observer)
}

/// A chunk that does not fit its slot: a job's mistake, an internal error found before any
/// process starts (a split part is never larger than its parent, so the plan's chunks are
/// all there is to check).
pub(super) fn misfit<J: Job>(job: &J, cfg: &EngineConfig) -> Option<TaskId> {
    (0..cfg.tasks as u32).map(TaskId).find(|&t| {
        let c = job.chunk(t);
        c.input_len > cfg.layout.input_bytes || c.output_len > cfg.layout.output_bytes
    })
}

/// The threads a run has beside the supervisor's: the event loop (its inbox and sender),
/// the in-process lanes, the signal watcher, the memory sampler and the sink.
pub(super) struct Threads<S: ChunkSink> {
    pub(super) inbox: EventLoop<Event<S::Closed>>,
    pub(super) tx: EventSender<Event<S::Closed>>,
    pub(super) lanes: Vec<mpsc::Sender<LaneTask>>,
    pub(super) signals: signal_hook::iterator::Handle,
    pub(super) sink_tx: mpsc::Sender<SinkMsg<S>>,
    pub(super) sink_thread: std::thread::JoinHandle<()>,
}

/// Starts the run's threads, the sink last: once it runs, it owns the job's output, and every
/// path after this ends by dropping its sender and joining it.
pub(super) fn start_threads<S: ChunkSink>(
    cfg: &EngineConfig,
    sink: S,
    ring: &Arc<SlotRing>,
    mem: &MemState,
) -> Result<Threads<S>, EngineError> {
    let internal = |what: &str, e: std::io::Error| EngineError::Internal(format!("{what}: {e}"));
    crate::os::keep_receive_buffers();
    let (inbox, tx) =
        EventLoop::new(Event::is_exit).map_err(|e| internal("starting the event loop", e))?;
    let lanes = match &cfg.executor {
        Some(f) if cfg.sched.lanes > 0 => inproc::start(
            cfg.sched.lanes,
            f.clone(),
            ring.clone(),
            tx.clone(),
            Event::Sched,
        )
        .map_err(|e| internal("starting a lane", e))?,
        _ => Vec::new(),
    };
    let signals = install_signals(tx.clone())?;
    if cfg.sched.workers > 0 || cfg.min_free_memory.is_some() {
        memory::start(
            mem.clone(),
            cfg.memory_poll,
            cfg.soft_limit,
            cfg.min_free_memory,
            tx.clone(),
            Event::Sched,
        )
        .map_err(|e| internal("starting the memory sampler", e))?;
    }
    let (sink_tx, sink_thread) = sink::spawn(sink, ring.clone(), tx.clone(), Event::Sink)
        .map_err(|e| internal("starting the sink thread", e))?;
    Ok(Threads {
        inbox,
        tx,
        lanes,
        signals,
        sink_tx,
        sink_thread,
    })
}

/// How the run's workers start: the pool's configuration, with the run's fork server.
pub(super) fn pool_config(cfg: &EngineConfig, ring: &Arc<SlotRing>) -> PoolConfig {
    let mut pool = PoolConfig {
        worker_bin: cfg.worker_bin.clone(),
        setup: Arc::new(cfg.setup.clone()),
        ring: ring.clone(),
        shm_fd: ring.segment().raw_fd(),
        shm_len: ring.segment().len(),
        data_limit: cfg.data_limit,
        env: cfg.worker_env.clone(),
        fork_server: None,
    };
    pool.fork_server = start_fork_server(cfg, &pool);
    pool
}

/// The run's fork server, if workers start that way (none: each is spawned by exec).
pub(super) fn start_fork_server(cfg: &EngineConfig, pool: &PoolConfig) -> Option<Arc<ForkServer>> {
    if cfg.sched.workers == 0 || cfg.spawn != Spawn::ForkServer {
        return None;
    }
    match ForkServer::for_run(pool) {
        Ok(fs) => Some(Arc::new(fs)),
        Err(e) => {
            tracing::info!("cannot start the fork server: {e}; workers are spawned by exec");
            None
        }
    }
}

/// Wakes the loop on SIGINT, SIGTERM and SIGHUP (the process's actions, `interrupt`, record
/// them too); a signal that came before this run began is delivered to it at once.
pub(super) fn install_signals<C: Send + 'static>(
    tx: EventSender<Event<C>>,
) -> Result<signal_hook::iterator::Handle, EngineError> {
    crate::interrupt::install().map_err(EngineError::Internal)?;
    // A closed terminal (SIGHUP) ends the run like SIGTERM: workers stopped, nothing left.
    let mut signals = signal_hook::iterator::Signals::new(crate::interrupt::SIGNALS)
        .map_err(|e| EngineError::Internal(format!("installing signal handlers: {e}")))?;
    let handle = signals.handle();
    let earlier = crate::interrupt::received_signal();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for s in earlier.into_iter().chain(signals.forever()) {
                if tx.send(Event::Signal(s)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(handle)
}

//! `coordinator bench-dispatch`: the dispatch micro-benchmark, as a second job of the engine.
//! No-op chunks (the worker's `Noop` kernel: it touches the first and last byte of its input
//! region and answers) go through the real machinery (scheduler, supervisor, worker
//! processes, bincode over ipc-channel, the shared ring) into a sink that discards them, to
//! measure what the engine costs per chunk: chunks per second, coordinator CPU per chunk,
//! and the hand-over of a large slot (one worker, one chunk at a time: no pixel is copied,
//! so a 16 MiB slot costs what a 4 KiB one does).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use engine::{
    inproc::ExecutorFactory, sched::SchedConfig, ChunkSink, ChunkSpec, EngineConfig, Job,
};
use protocol::{SlotLayout, TaskId};
use shm::SlotRing;
use worker::{WorkerChunk, WorkerKernel, WorkerSetup};

use crate::error::CoordError;

pub struct BenchConfig<'a> {
    pub input: &'a Path,
    pub worker_bin: &'a Path,
    pub workers: u32,
    pub chunks: u32,
    pub slot_bytes: u64,
    pub handovers: u32,
}

fn cpu_ms() -> f64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| {
            let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
            s(u.user_time()) + s(u.system_time())
        })
        .unwrap_or(0.0)
}

/// `tasks` no-op chunks whose input region is `input_len` bytes.
struct NoopJob {
    input_len: u64,
    payload: Vec<u8>,
}

impl Job for NoopJob {
    type Sink = NullSink;

    fn chunk(&self, _: TaskId) -> ChunkSpec {
        ChunkSpec {
            input_len: self.input_len,
            output_len: 0,
            weight: 0,
        }
    }

    fn payload(&self, _: TaskId) -> Vec<u8> {
        self.payload.clone()
    }

    fn split(&mut self, _: TaskId) -> u32 {
        0
    }

    fn write_item(&self, _: TaskId) {}

    fn close_item(&self, _: &[TaskId]) {}
}

/// Discards every output.
struct NullSink;

impl ChunkSink for NullSink {
    type Item = ();
    type Close = ();
    type Closed = ();
    type Error = std::convert::Infallible;

    fn write(&mut self, _: TaskId, _: (), _: Option<&[u8]>) -> Result<(), Self::Error> {
        Ok(())
    }

    fn close(self, _: ()) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Runs `tasks` no-op chunks through `workers` workers; returns the wall time from the first
/// dispatch (workers started and ready) and the coordinator's CPU in that time.
fn run_noop(
    cfg: &BenchConfig,
    workers: u32,
    tasks: u32,
    input_len: u64,
) -> Result<(Duration, f64), CoordError> {
    let layout = SlotLayout::new(workers + 2, input_len, 0)
        .map_err(|e| CoordError::BadInput(format!("slot size: {e}")))?;
    let ring = SlotRing::create(layout)
        .map_err(|e| CoordError::Resources(format!("creating the shared ring: {e}")))?;
    let setup = protocol::encode(&WorkerSetup::Noop);
    let lane_setup = setup.clone();
    let executor: ExecutorFactory = Arc::new(move || runtime::open::<WorkerKernel>(&lane_setup));
    let mut sc = SchedConfig::new(workers, 1, layout.slots);
    sc.can_split = false;
    let ecfg = EngineConfig {
        sched: sc,
        layout,
        tasks: tasks as usize,
        worker_bin: cfg.worker_bin.to_path_buf(),
        worker_env: Vec::new(),
        data_limit: None,
        setup,
        executor: Some(executor),
        memory_poll: Duration::from_secs(1),
        soft_limit: None,
        min_free_memory: None,
        kill_grace: Duration::from_millis(500),
        progress: false,
        events: None,
        spawn: engine::Spawn::from_env(),
    };
    let mut job = NoopJob {
        input_len,
        payload: protocol::encode(&WorkerChunk::Noop),
    };
    let cpu0 = cpu_ms();
    let (res, rec) = engine::run(&mut job, NullSink, ring, ecfg);
    let cpu = cpu_ms() - cpu0;
    res.map_err(|e| CoordError::Workers(e.to_string()))?;
    // From the first worker ready (spawning and loading libraries is not dispatch) to the
    // last chunk's answer.
    let ready = rec
        .sched
        .worker_records()
        .iter()
        .filter_map(|r| r.ready_ms)
        .min()
        .unwrap_or(0);
    let total = rec.ended.duration_since(rec.start);
    let wall = total.saturating_sub(Duration::from_millis(ready));
    Ok((wall, cpu))
}

pub fn bench_dispatch(cfg: &BenchConfig) -> Result<String, CoordError> {
    if cfg.workers == 0 || cfg.chunks == 0 {
        return Err(CoordError::BadInput(
            "bench-dispatch needs at least one worker and one chunk".into(),
        ));
    }
    crate::raster::inspect(cfg.input)?;
    let t0 = Instant::now();
    let (wall, cpu) = run_noop(cfg, cfg.workers, cfg.chunks, 4096)?;
    let per_s = cfg.chunks as f64 / wall.as_secs_f64().max(1e-9);
    let (full, _) = run_noop(cfg, 1, cfg.handovers, cfg.slot_bytes)?;
    let (page, _) = run_noop(cfg, 1, cfg.handovers, 4096)?;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / cfg.handovers as f64;
    tracing::debug!("bench-dispatch took {:.1} s", t0.elapsed().as_secs_f64());
    Ok(format!(
        "dispatch: {} no-op chunks through {} worker(s) in {:.3} s: {:.0} chunks/s, coordinator CPU {:.1} us/chunk (spawning included)\n\
         hand-over (one worker, {} chunks one at a time, worker reads first+last byte): {:.1} MiB slot {:.1} us/chunk, 4 KiB {:.1} us/chunk\n",
        cfg.chunks,
        cfg.workers,
        wall.as_secs_f64(),
        per_s,
        cpu * 1000.0 / cfg.chunks as f64,
        cfg.handovers,
        cfg.slot_bytes as f64 / (1 << 20) as f64,
        per(full),
        per(page),
    ))
}

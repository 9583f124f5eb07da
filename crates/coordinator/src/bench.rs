//! `coordinator bench-dispatch`: the dispatch micro-benchmark. No-op chunks go through the
//! real machinery (scheduler, worker processes, bincode over ipc-channel, the shared ring)
//! with no GDAL read and no write, to measure what the pool costs per chunk: chunks per
//! second, coordinator CPU per chunk, and the hand-over of a 16 MiB slot (a round trip whose
//! worker reads the slot's first and last byte: no pixel is copied).

use std::{
    path::Path,
    sync::mpsc,
    time::{Duration, Instant},
};

use protocol::{Attempt, Region, TaskId, ToWorker};
use worker::shm::SharedSegment;

use crate::{
    error::CoordError,
    pool::{self, PoolConfig, PoolEvent, Proc},
    sched::{SchedAction, SchedConfig, SchedEvent, Scheduler, WorkerKey},
};

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

fn wrap(e: PoolEvent) -> PoolEvent {
    e
}

pub fn bench_dispatch(cfg: &BenchConfig) -> Result<String, CoordError> {
    if cfg.workers == 0 || cfg.chunks == 0 {
        return Err(CoordError::BadInput(
            "bench-dispatch needs at least one worker and one chunk".into(),
        ));
    }
    crate::raster::inspect(cfg.input)?;
    let slots = cfg.workers + 2;
    let seg = SharedSegment::create(cfg.slot_bytes * slots as u64)
        .map_err(|e| CoordError::Resources(format!("creating the shared ring: {e}")))?;
    let pool_cfg = PoolConfig {
        worker_bin: cfg.worker_bin.to_path_buf(),
        input: cfg.input.to_string_lossy().into_owned(),
        bands: vec![1],
        shm_fd: seg.raw_fd(),
        shm_len: seg.len(),
        data_limit: None,
        env: vec![("GDAL_CACHEMAX".into(), "16".into())],
    };
    let (tx, rx) = mpsc::channel::<PoolEvent>();
    let region = |slot: u32| Region {
        offset: slot as u64 * cfg.slot_bytes,
        len: cfg.slot_bytes,
    };
    let mut procs: Vec<Option<(WorkerKey, Proc)>> = (0..cfg.workers).map(|_| None).collect();

    // Phase 1: throughput of no-op chunks through the scheduler and the pool.
    let now = Instant::now();
    let mut sc = SchedConfig::new(cfg.workers, 0, slots);
    sc.start_timeout = Duration::from_secs(30);
    let (mut sched, mut actions) = Scheduler::new(sc, cfg.chunks as usize, now);
    let mut started: Option<(Instant, f64)> = None;
    let elapsed;
    let cpu;
    'run: loop {
        let mut next = Vec::new();
        for a in actions.drain(..) {
            match a {
                SchedAction::Spawn { key } => {
                    let p = pool::spawn(&pool_cfg, key, &tx, wrap)
                        .map_err(|e| CoordError::Workers(format!("spawning a worker: {e}")))?;
                    procs[key.id.0 as usize] = Some((key, p));
                }
                SchedAction::Dispatch {
                    key,
                    task,
                    attempt,
                    slot,
                    ..
                } => {
                    if started.is_none() {
                        started = Some((Instant::now(), cpu_ms()));
                    }
                    if let Some((_, p)) = &procs[key.id.0 as usize] {
                        p.send(&ToWorker::Echo {
                            task,
                            attempt,
                            region: region(slot.0),
                        });
                    }
                }
                // No writer: the chunk is "written" at once.
                SchedAction::Write { task, .. } => {
                    next.extend(sched.handle(Instant::now(), SchedEvent::Written { task }))
                }
                SchedAction::Finished => {
                    let (t0, c0) = started.unwrap_or((Instant::now(), cpu_ms()));
                    elapsed = t0.elapsed();
                    cpu = cpu_ms() - c0;
                    break 'run;
                }
                SchedAction::Fatal(why) => return Err(CoordError::Workers(why.to_string())),
                SchedAction::Signal { .. }
                | SchedAction::Shutdown { .. }
                | SchedAction::RunInProcess { .. } => {}
                // No windows to split: every chunk is a leaf.
                SchedAction::Split { task } => next
                    .extend(sched.handle(Instant::now(), SchedEvent::Split { task, children: 0 })),
            }
        }
        if !next.is_empty() {
            actions = next;
            continue;
        }
        let ev = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| CoordError::Workers("the benchmark's workers stopped answering".into()))?;
        let now = Instant::now();
        actions = match ev {
            PoolEvent::Connected { key, pid, sender } => {
                if let Some((_, p)) = &mut procs[key.id.0 as usize] {
                    p.sender = Some(sender);
                }
                sched.handle(now, SchedEvent::WorkerReady { key, pid })
            }
            PoolEvent::Sched(se) => sched.handle(now, se),
            PoolEvent::VersionMismatch { .. } => {
                return Err(CoordError::Workers("protocol version mismatch".into()))
            }
        };
    }
    let per_s = cfg.chunks as f64 / elapsed.as_secs_f64();

    // Phase 2: hand-over latency of a full slot vs one page, one worker, sequential.
    let probe = procs[0]
        .as_ref()
        .map(|(k, p)| (*k, p))
        .expect("worker 0 was spawned");
    let lat = |len: u64| -> Result<Duration, CoordError> {
        let mut v = Vec::with_capacity(cfg.handovers as usize);
        for i in 0..cfg.handovers {
            let r = Region { offset: 0, len };
            // SAFETY: the worker only reads the region after our message and answers before
            // we write it again.
            let bytes = unsafe { seg.slice_mut(0..len as usize) };
            bytes[0] = i as u8;
            bytes[len as usize - 1] = 1;
            let t0 = Instant::now();
            probe.1.send(&ToWorker::Echo {
                task: TaskId(i),
                attempt: Attempt(1_000_000),
                region: r,
            });
            loop {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(PoolEvent::Sched(SchedEvent::TaskDone {
                        key, task, stats, ..
                    })) if key == probe.0 && task == TaskId(i) => {
                        if stats.valid_pixels != i as u8 as u64 + 1 {
                            return Err(CoordError::Internal(
                                "the worker read other bytes than we wrote".into(),
                            ));
                        }
                        v.push(t0.elapsed());
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => return Err(CoordError::Workers("no answer to a hand-over".into())),
                }
            }
        }
        v.sort();
        Ok(v[v.len() / 2])
    };
    let full = lat(cfg.slot_bytes)?;
    let page = lat(4096)?;
    for (_, p) in procs.iter().flatten() {
        p.send(&ToWorker::Shutdown);
    }
    Ok(format!(
        "dispatch: {} no-op chunks through {} worker(s) in {:.3} s: {:.0} chunks/s, coordinator CPU {:.1} us/chunk\n\
         hand-over (median of {} round trips, worker reads first+last byte): {:.1} MiB slot {:.1} us, 4 KiB {:.1} us\n",
        cfg.chunks,
        cfg.workers,
        elapsed.as_secs_f64(),
        per_s,
        cpu * 1000.0 / cfg.chunks as f64,
        cfg.handovers,
        cfg.slot_bytes as f64 / (1 << 20) as f64,
        full.as_secs_f64() * 1e6,
        page.as_secs_f64() * 1e6,
    ))
}

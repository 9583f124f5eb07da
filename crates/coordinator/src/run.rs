//! `coordinator resample`: prepare (validate, plan), then supervise the run. The supervisor
//! owns the processes, channels, threads, timers and signals, feeds the scheduler's state
//! machine with events and carries out the actions it returns.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use engine::{
    inproc::ExecutorFactory,
    memory::MemState,
    sched::{ChunkOutcome, SchedConfig, Scheduler, TimeoutSpec},
    ChunkSpec, EngineConfig, EngineError, Job,
};
use protocol::{SlotLayout, TaskId};
use shm::SlotRing;
use worker::{
    exec::{BlockAggChunk, BlockAggSetup},
    KernelSpec, SampleType, Window, WorkerChunk, WorkerKernel, WorkerSetup,
};

pub use engine::memory::{available_memory, total_memory};

use crate::{
    budget::{self, MemoryPlan},
    error::CoordError,
    output,
    plan::{plan, Chunk, Plan},
    raster::{self, BandInfo, RasterInfo},
    report::{ChunkReport, PlanSummary, QuarantinedWindow, Report, Totals, WorkerReport},
    writer::{self, Adjusted, GtiffSink, OutputSpec},
};

/// Defined beside the code that builds it (`cli::resolve`).
pub use crate::cli::ResampleConfig;

/// The validated input and the plan derived from it (shared with `coordinator plan`).
#[derive(Debug, Clone)]
pub struct Prepared {
    pub info: RasterInfo,
    pub bands: Vec<BandInfo>,
    pub sample: SampleType,
    pub out_type: SampleType,
    pub out_nodata: f64,
    pub plan: Plan,
    pub layout: SlotLayout,
    pub lanes: u32,
    pub memory: MemoryPlan,
}

/// Validates the input and the options and plans the run, without starting anything.
pub fn prepare(cfg: &ResampleConfig) -> Result<Prepared, CoordError> {
    if cfg.factor == 0 {
        return Err(CoordError::BadInput("--factor must be at least 1".into()));
    }
    let info = raster::inspect(&cfg.input)?;
    // A factor beyond the raster's sides is fine: the partial-edge rule gives one block.
    let f = cfg.factor as u64;
    let bands = info.select(&cfg.bands)?;
    let sample = raster::common_sample(&bands);
    let out_type = cfg
        .out_type
        .unwrap_or_else(|| raster::default_out_type(cfg.agg, sample));
    // A GeoTIFF holds one nodata value for all bands: the bands' own when they agree (each
    // band is still read with its own), else one no valid result can take (NaN, or the
    // integer type's end that clamping keeps valid values off).
    let shared = bands[0].nodata;
    let agree = bands
        .iter()
        .all(|b| b.nodata.map(f64::to_bits) == shared.map(f64::to_bits));
    let out_nodata = raster::out_nodata(cfg.agg, out_type, if agree { shared } else { None });
    if !agree {
        tracing::info!(
            "the selected bands have different nodata values; the output's nodata is {out_nodata} for all bands"
        );
    }
    let nb = bands.len() as u64;
    // Small rasters still get a few chunks per worker, so that every worker has work.
    let total = info.width * info.height * sample.size() * nb;
    let spread = (total / (4 * cfg.workers.max(1) as u64)).max(1 << 20);
    let target = cfg.chunk_bytes.min(spread);
    let plan = plan(
        info.width,
        info.height,
        info.block,
        f,
        nb,
        sample.size() * nb,
        target,
    );
    for fault in &cfg.faults {
        if let Some(c) = fault.chunk {
            if c as usize >= plan.chunks.len() {
                return Err(CoordError::BadInput(format!(
                    "--inject-fault names chunk {c}, but the plan has {} chunks (0..{})",
                    plan.chunks.len(),
                    plan.chunks.len() - 1
                )));
            }
        }
    }
    // In-process lanes: all the work without workers, one fallback lane with them.
    let lanes = if cfg.workers == 0 {
        cfg.in_process_threads.max(1)
    } else {
        1
    };
    let slots_for = |workers: u32| {
        // A slot per worker and per lane, plus the prefetch so the writer never starves the
        // pool; `chunk_queue` caps the ring.
        let want = workers + lanes + cfg.chunk_prefetch.max(1);
        cfg.chunk_queue.map_or(want, |q| want.min(q.max(lanes + 1)))
    };
    let layout_for = |workers: u32| {
        SlotLayout::new(
            slots_for(workers),
            plan.max_input_bytes(),
            plan.max_output_bytes(),
        )
    };
    layout_for(cfg.workers).map_err(|e| CoordError::BadInput(format!("chunk size: {e}")))?;
    let coordinator_cache = coordinator_cache_bytes(
        &plan,
        out_type,
        bands.len() as u64,
        slots_for(cfg.workers),
        lanes,
        cfg.workers,
    );
    let memory = budget::plan_memory(
        available_memory(),
        cfg.workers,
        if cfg.workers > 0 {
            cfg.spare_workers
        } else {
            0
        },
        cfg.workers_auto,
        cfg.memory_limit,
        cfg.soft_fraction,
        coordinator_cache,
        |w| {
            layout_for(w)
                .map(|l| l.total_bytes())
                .unwrap_or(u64::MAX / 4)
        },
    )
    .map_err(|e| match e {
        // Name the limit's real source: the file's key or the variable, not the flag.
        CoordError::Resources(m) => {
            CoordError::Resources(m.replace("--memory-limit-per-worker", &cfg.memory_limit_from))
        }
        other => other,
    })?;
    if let Some(min) = cfg.min_free_memory {
        let total = total_memory();
        if min > total {
            return Err(CoordError::Resources(format!(
                "--min-free-memory {} MiB is more than this machine's {} MiB of memory: the run would wait forever",
                min >> 20,
                total >> 20
            )));
        }
    }
    let layout =
        layout_for(memory.workers).map_err(|e| CoordError::BadInput(format!("chunk size: {e}")))?;
    if layout.slots < memory.workers + lanes {
        tracing::warn!(
            "queue_sizes.chunk_queue allows {} chunks in flight for {} workers: some will idle",
            layout.slots,
            memory.workers
        );
    }
    Ok(Prepared {
        info,
        bands,
        sample,
        out_type,
        out_nodata,
        plan,
        layout,
        lanes,
        memory,
    })
}

/// Descriptors the coordinator needs besides its workers (input and output files, the
/// ring, GDAL, signals, the in-process lanes), and per worker process (its channel's
/// sockets, the handshake, its stderr pipe): measured ~5 per worker, with margin.
const FDS_BASE: u64 = 48;
const FDS_PER_WORKER: u64 = 8;

/// What a finished run tells `main`.
pub struct RunSummary {
    pub exit_code: i32,
    pub message: String,
}

pub fn resample(cfg: &ResampleConfig) -> Result<RunSummary, CoordError> {
    let prep = prepare(cfg)?;
    output::check_paths(
        &cfg.input,
        &cfg.output,
        cfg.report.as_deref(),
        cfg.overwrite,
    )?;
    let mut staging = output::Staging::lock(&cfg.output)?;
    if prep.memory.workers > 0 && !cfg.worker_bin.is_file() {
        return Err(CoordError::Workers(format!(
            "worker binary not found at '{}' (set --worker-bin or BLOCKSUM_WORKER_BIN)",
            cfg.worker_bin.display()
        )));
    }
    if prep.memory.workers > 0 {
        // Refuse now rather than fail inside a channel's thread halfway through the run.
        let processes = prep.memory.workers + prep.memory.spares;
        let need = FDS_BASE + FDS_PER_WORKER * (processes as u64 + 1);
        crate::os::ensure_nofile(need).map_err(|(have, why)| {
            CoordError::Resources(format!(
                "too few file descriptors: {processes} worker process(es) need about {need}, the limit is {have}{why} (raise it with ulimit -n, or lower --workers)"
            ))
        })?;
    }
    set_block_cache(prep.memory.coordinator - prep.memory.ring - budget::COORDINATOR_BASE);
    let ring = SlotRing::create(prep.layout).map_err(|e| {
        let hint = if e.raw_os_error() == Some(nix::libc::EFBIG) {
            " (the file-size limit, ulimit -f, is below the ring's size: raise it, or lower --chunk-mib or --workers)"
        } else {
            ""
        };
        CoordError::Resources(format!(
            "creating the shared slot ring of {:.1} MiB: {e}{hint}",
            prep.layout.total_bytes() as f64 / (1 << 20) as f64
        ))
    })?;
    let tmp = staging.temp().to_path_buf();
    let spec = OutputSpec {
        path: cfg.output.clone(),
        width: prep.plan.out_width,
        height: prep.plan.out_height,
        bands: prep.bands.clone(),
        out_type: prep.out_type,
        nodata: prep.out_nodata,
        geo_transform: prep.info.geo_transform.map(|g| {
            let f = cfg.factor as f64;
            [g[0], g[1] * f, g[2] * f, g[3], g[4] * f, g[5] * f]
        }),
        projection: prep.info.projection.clone(),
        creation_options: cfg.creation_options.clone(),
    };
    let ds = writer::create(&spec, &tmp)?;
    let sink = GtiffSink::new(ds, spec, tmp);

    let mut job = BlockAggJob::new(cfg, &prep);
    let setup = protocol::encode(&WorkerSetup::BlockAgg(BlockAggSetup {
        input: cfg.input.to_string_lossy().into_owned(),
        bands: prep.bands.iter().map(|b| b.index).collect(),
        decoder: cfg.decoder,
    }));
    let lane_setup = setup.clone();
    let executor: ExecutorFactory = Arc::new(move || runtime::open::<WorkerKernel>(&lane_setup));
    let mut sc = SchedConfig::new(
        prep.memory.workers + prep.memory.spares,
        prep.lanes,
        prep.layout.slots,
    );
    sc.max_busy = prep.memory.workers;
    sc.admission_open = cfg.min_free_memory.is_none_or(|m| available_memory() >= m);
    sc.max_attempts = cfg.max_attempts;
    sc.timeout = cfg.task_timeout;
    sc.timeout_floor = cfg.task_timeout_floor;
    sc.start_timeout = cfg.start_timeout;
    sc.kill_grace = cfg.kill_grace;
    sc.faults = cfg.faults.clone();
    sc.can_split = true;
    let ecfg = EngineConfig {
        sched: sc,
        layout: prep.layout,
        tasks: prep.plan.chunks.len(),
        worker_bin: cfg.worker_bin.clone(),
        worker_env: vec![
            (
                "GDAL_CACHEMAX".into(),
                format!("{}", (prep.memory.gdal_cache >> 20).max(1)),
            ),
            ("GDAL_NUM_THREADS".into(), "1".into()),
            // Which run a worker belongs to, for whoever looks at a process table (the
            // command line carries only the connection and the segment).
            (
                "BLOCKSUM_JOB".into(),
                format!(
                    "resample {} -> {}",
                    cfg.input.display(),
                    cfg.output.display()
                ),
            ),
        ],
        data_limit: prep.memory.limit,
        setup,
        executor: Some(executor),
        memory_poll: cfg.memory_poll,
        soft_limit: prep.memory.soft,
        min_free_memory: cfg.min_free_memory,
        kill_grace: cfg.kill_grace,
        progress: !cfg.quiet,
    };
    let (outcome, rec) = engine::run(&mut job, sink, ring, ecfg);
    let outcome = outcome.map_err(|e| match e {
        EngineError::Fatal(why) => CoordError::Workers(why),
        EngineError::VersionMismatch { theirs, ours } => CoordError::Workers(format!(
            "the worker binary '{}' speaks protocol version {theirs}, this coordinator {ours}: build both from the same source",
            cfg.worker_bin.display()
        )),
        EngineError::Sink(reason) => CoordError::Write {
            path: cfg.output.clone(),
            reason,
        },
        EngineError::Interrupted(name) => CoordError::Interrupted(name),
        EngineError::Internal(why) => CoordError::Internal(why),
    });
    let view = RunView {
        cfg,
        prep: &prep,
        sched: &rec.sched,
        tasks: &job.tasks,
        mem: &rec.memory,
        write_us: &rec.write_us,
        start: rec.start,
        adjusted: outcome.as_ref().cloned().unwrap_or_default(),
    };
    let result = match outcome {
        // The writer closed, reopened and checked the file under its temporary name: move
        // it into place (never over a file that appeared meanwhile, unless --overwrite).
        Ok(_) => staging.commit(cfg.overwrite),
        Err(e) => Err(e),
    };
    let quarantined = view.quarantined();
    let exit_code = match &result {
        Ok(()) if quarantined.is_empty() => protocol::exit::OK,
        Ok(()) => protocol::exit::QUARANTINED,
        Err(e) => e.exit_code(),
    };
    let report = view.report(exit_code, &result, &quarantined);
    // The lock is held until the output is in place and the report written.
    if let Some(path) = &cfg.report {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|text| output::write_report(path, &text).map_err(|e| e.to_string()));
        if let Err(reason) = written {
            match &result {
                // The output is committed and complete; the report is not: exit 4 says so.
                Ok(()) => {
                    return Err(CoordError::ReportWrite {
                        output: cfg.output.clone(),
                        path: path.clone(),
                        reason,
                    })
                }
                // The run's own failure is the one to report.
                Err(_) => tracing::error!("writing the report '{}': {reason}", path.display()),
            }
        }
    }
    drop(staging);
    result?;
    let t = &report.totals;
    let mut message = format!(
        "wrote {} ({}x{}, {} band(s), {}): {} chunks in {:.2} s ({:.0} MiB/s), {} worker(s), {} restart(s)",
        cfg.output.display(),
        prep.plan.out_width,
        prep.plan.out_height,
        prep.bands.len(),
        prep.out_type,
        t.chunks,
        t.wall_ms as f64 / 1000.0,
        t.input_mib_per_s,
        prep.memory.workers,
        t.counters.restarts,
    );
    if t.done_in_process > 0 && prep.memory.workers > 0 {
        message.push_str(&format!(
            ", {} chunk(s) run in process after a timeout",
            t.done_in_process
        ));
    }
    if !t.deaths_by_cause.is_empty() {
        let causes: Vec<String> = t
            .deaths_by_cause
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        message.push_str(&format!("; worker deaths: {}", causes.join(", ")));
    }
    for (i, a) in t.adjusted_by_band.iter().enumerate() {
        if a.clamped + a.moved_off_nodata > 0 {
            let b = prep.bands[i].index;
            message.push_str(&format!(
                "\nwarning: band {b}: {} valid pixel(s) clamped into {}'s range and {} moved one step off the nodata value {}, so that none reads as nodata (a wider --ot keeps them exact)",
                a.clamped, prep.out_type, a.moved_off_nodata, prep.out_nodata
            ));
        }
    }
    if !quarantined.is_empty() {
        message.push('\n');
        message.push_str(&view.quarantine_warning(&quarantined));
    }
    Ok(RunSummary { exit_code, message })
}

/// The block-aggregation job as the engine sees it: the plan's chunks, then the parts of
/// split ones, each with its kernel payload and slot sizes.
struct BlockAggJob {
    tasks: Vec<Chunk>,
    plan: Plan,
    kernel: KernelSpec,
    bands: u64,
    metadata: Vec<(String, String)>,
}

impl BlockAggJob {
    fn new(cfg: &ResampleConfig, prep: &Prepared) -> BlockAggJob {
        BlockAggJob {
            tasks: prep.plan.chunks.clone(),
            plan: prep.plan.clone(),
            kernel: KernelSpec {
                agg: cfg.agg,
                factor: cfg.factor,
                sample: prep.sample,
                // Empty blocks come back as NaN; the writer turns them into the output's
                // nodata, so that it can tell them from a valid value equal to nodata.
                out_nodata: f64::NAN,
            },
            bands: prep.bands.len() as u64,
            metadata: vec![
                ("BLOCKSUM_AGG".to_string(), cfg.agg.name().to_string()),
                ("BLOCKSUM_FACTOR".to_string(), cfg.factor.to_string()),
            ],
        }
    }
}

impl Job for BlockAggJob {
    type Sink = GtiffSink;

    fn chunk(&self, task: TaskId) -> ChunkSpec {
        let c = &self.tasks[task.0 as usize];
        let input_len = c.window.pixels() * self.plan.pixel_bytes;
        ChunkSpec {
            input_len,
            output_len: c.out.pixels() * 8 * self.bands,
            payload: protocol::encode(&WorkerChunk::BlockAgg(BlockAggChunk {
                window: c.window,
                kernel: self.kernel,
            })),
            weight: input_len,
        }
    }

    /// Splits chunk `task` in two along the file's block grid.
    fn split(&mut self, task: TaskId) -> u32 {
        let parent = self.tasks[task.0 as usize];
        let first = TaskId(self.tasks.len() as u32);
        let Some(parts) = self.plan.split(&parent, first) else {
            return 0;
        };
        for p in parts {
            tracing::debug!(
                task = task.0,
                part = p.id.0,
                window = ?p.window,
                "part of a split chunk"
            );
            self.tasks.push(p);
        }
        parts.len() as u32
    }

    fn write_item(&self, task: TaskId) -> Window {
        self.tasks[task.0 as usize].out
    }

    fn close_item(&self, quarantined: &[TaskId]) -> Vec<(String, String)> {
        // `ID:x,y,w,h:x,y,w,h` (input window, output window) for each quarantined chunk.
        let q: Vec<String> = quarantined
            .iter()
            .map(|t| {
                let c = &self.tasks[t.0 as usize];
                let (w, o) = (c.window, c.out);
                format!(
                    "{t}:{},{},{},{}:{},{},{},{}",
                    w.x, w.y, w.w, w.h, o.x, o.y, o.w, o.h
                )
            })
            .collect();
        let mut md = self.metadata.clone();
        if !q.is_empty() {
            md.push(("BLOCKSUM_QUARANTINED_CHUNKS".to_string(), q.join(";")));
        }
        md
    }
}

/// A finished run, as the report and the summary read it.
struct RunView<'a> {
    cfg: &'a ResampleConfig,
    prep: &'a Prepared,
    sched: &'a Scheduler,
    tasks: &'a [Chunk],
    mem: &'a MemState,
    write_us: &'a [Option<u64>],
    start: Instant,
    adjusted: Vec<Adjusted>,
}

impl RunView<'_> {
    /// Quarantined chunks (the exact windows: parts of split chunks), by task id.
    fn quarantined(&self) -> Vec<u32> {
        (0..self.sched.tasks() as u32)
            .filter(|&t| self.sched.outcome(protocol::TaskId(t)) == Some(ChunkOutcome::Quarantined))
            .collect()
    }

    /// The last failure of a quarantined chunk: GDAL's text or the signal.
    fn quarantine_cause(&self, task: u32) -> String {
        self.sched
            .attempts(protocol::TaskId(task))
            .iter()
            .rev()
            .find_map(|a| a.failure.as_ref())
            .map(|c| c.summary())
            .unwrap_or_else(|| "unknown cause".into())
    }

    /// The closing warning: which windows are nodata, and the first cause.
    fn quarantine_warning(&self, quarantined: &[u32]) -> String {
        const SHOWN: usize = 4;
        let mut windows: Vec<String> = quarantined
            .iter()
            .take(SHOWN)
            .map(|&t| {
                let c = &self.tasks[t as usize];
                let (w, o) = (c.window, c.out);
                format!(
                    "chunk {t}: input {},{} {}x{}, output {},{} {}x{}",
                    w.x, w.y, w.w, w.h, o.x, o.y, o.w, o.h
                )
            })
            .collect();
        if quarantined.len() > SHOWN {
            windows.push(format!("and {} more", quarantined.len() - SHOWN));
        }
        let more = if self.cfg.report.is_some() {
            "; the report has every attempt"
        } else {
            ""
        };
        format!(
            "warning: {} window(s) quarantined ({}): their output pixels are nodata; first cause: {}{more}",
            quarantined.len(),
            windows.join("; "),
            self.quarantine_cause(quarantined[0]),
        )
    }

    fn report(
        &self,
        exit_code: i32,
        result: &Result<(), CoordError>,
        quarantined: &[u32],
    ) -> Report {
        let plan = &self.prep.plan;
        let chunks: Vec<ChunkReport> = self
            .tasks
            .iter()
            .map(|c| ChunkReport {
                id: c.id.0,
                parent: self.sched.parent(c.id).map(|p| p.0),
                window: [c.window.x, c.window.y, c.window.w, c.window.h],
                out_window: [c.out.x, c.out.y, c.out.w, c.out.h],
                outcome: self.sched.outcome(c.id),
                split: self.sched.split_reason(c.id),
                attempts: self.sched.attempts(c.id).to_vec(),
                write_us: self.write_us[c.id.0 as usize],
            })
            .collect();
        let quarantined_windows: Vec<QuarantinedWindow> = quarantined
            .iter()
            .map(|&t| {
                let c = &self.tasks[t as usize];
                QuarantinedWindow {
                    id: t,
                    window: [c.window.x, c.window.y, c.window.w, c.window.h],
                    out_window: [c.out.x, c.out.y, c.out.w, c.out.h],
                    cause: self.quarantine_cause(t),
                }
            })
            .collect();
        let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        let workers: Vec<WorkerReport> = self
            .sched
            .worker_records()
            .iter()
            .map(|r| WorkerReport {
                worker: r.worker,
                incarnation: r.gen,
                pid: r.pid,
                spawned_ms: r.spawned_ms,
                ready_ms: r.ready_ms,
                exited_ms: r.exited_ms,
                chunks: r.chunks,
                recycled: r.recycled,
                cause: r.cause.clone(),
                memory: mem
                    .peaks
                    .get(&(r.worker.0, r.gen))
                    .copied()
                    .unwrap_or_default(),
                stderr_tail: r.stderr_tail.clone(),
            })
            .collect();
        let mut deaths = std::collections::BTreeMap::new();
        for w in &workers {
            if let Some(c) = &w.cause {
                let k = match c {
                    engine::sched::FailureCause::Signal { name, .. } => format!("killed by {name}"),
                    engine::sched::FailureCause::Recycled => continue,
                    other => serde_json::to_value(other)
                        .ok()
                        .and_then(|v| {
                            v.get("kind")
                                .and_then(|k| k.as_str())
                                .map(|s| s.replace('_', " "))
                        })
                        .unwrap_or_default(),
                };
                if result.is_ok()
                    && exit_code == 0
                    && matches!(c, engine::sched::FailureCause::ExitCode { code: 0 })
                {
                    continue;
                }
                *deaths.entry(k).or_insert(0) += 1;
            }
        }
        let wall_ms = self.start.elapsed().as_millis() as u64;
        let input_bytes = plan.width * plan.height * plan.pixel_bytes;
        let count = |o: ChunkOutcome| chunks.iter().filter(|c| c.outcome == Some(o)).count();
        let totals = Totals {
            chunks: plan.chunks.len(),
            done: count(ChunkOutcome::Done),
            done_in_process: count(ChunkOutcome::DoneInProcess),
            native_reads: chunks
                .iter()
                .flat_map(|c| &c.attempts)
                .filter(|a| a.stats.is_some_and(|s| s.native_read))
                .count(),
            quarantined: quarantined.to_vec(),
            quarantined_windows,
            tasks: self.tasks.len(),
            split: count(ChunkOutcome::Split),
            workers_spawned: workers.len(),
            counters: self.sched.counters.clone(),
            deaths_by_cause: deaths,
            wall_ms,
            input_mib_per_s: input_bytes as f64
                / (1 << 20) as f64
                / (wall_ms.max(1) as f64 / 1000.0),
            coordinator_peak_rss_bytes: engine::os::proc_status_kb(None, &["VmHWM"])
                .map(|v| v[0])
                .unwrap_or(0),
            admission_wait_ms: self.sched.admission_wait(Instant::now()).as_millis() as u64,
            coordinator_cpu_ms: nix::sys::resource::getrusage(
                nix::sys::resource::UsageWho::RUSAGE_SELF,
            )
            .map(|u| {
                let ms = |t: nix::sys::time::TimeVal| {
                    t.tv_sec() as u64 * 1000 + t.tv_usec() as u64 / 1000
                };
                ms(u.user_time()) + ms(u.system_time())
            })
            .unwrap_or(0),
            adjusted_by_band: self.adjusted.clone(),
        };
        Report {
            tool: "blocksum coordinator".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            status: match result {
                Ok(()) if quarantined.is_empty() => "ok".into(),
                Ok(()) => "completed with quarantined chunks".into(),
                Err(e) => format!("failed: {e}"),
            },
            exit_code,
            input: self.cfg.input.display().to_string(),
            output: self.cfg.output.display().to_string(),
            options: serde_json::json!({
                "factor": self.cfg.factor,
                "agg": self.cfg.agg.name(),
                "decoder": self.cfg.decoder.name(),
                "bands": self.prep.bands.iter().map(|b| b.index).collect::<Vec<_>>(),
                "sample_type": self.prep.sample.gdal_name(),
                "output_type": self.prep.out_type.gdal_name(),
                "output_nodata": if self.prep.out_nodata.is_nan() { serde_json::Value::String("nan".into()) } else { serde_json::json!(self.prep.out_nodata) },
                "workers": self.prep.memory.workers,
                "memory": {
                    "limit_per_worker": self.prep.memory.limit,
                    "limit_is_auto": self.prep.memory.limit_is_auto,
                    "soft_limit": self.prep.memory.soft,
                    "gdal_cache_per_worker": self.prep.memory.gdal_cache,
                    "ring": self.prep.memory.ring,
                    "coordinator_expected": self.prep.memory.coordinator,
                    "total_expected": self.prep.memory.total,
                    "available": self.prep.memory.available,
                    "min_free_memory": self.cfg.min_free_memory,
                },
                "max_attempts": self.cfg.max_attempts,
                "task_timeout": match self.cfg.task_timeout {
                    None => "none".to_string(),
                    Some(TimeoutSpec::Fixed(d)) => format!("{} ms", d.as_millis()),
                    Some(TimeoutSpec::PercentOfMedian(p)) => format!("{p}% of the median chunk time"),
                },
                                "faults": self.cfg.faults.iter().map(|f| format!("{}:{}:{}", f.kind, f.chunk.map(|c| c.to_string()).unwrap_or("*".into()), f.times.map(|t| t.to_string()).unwrap_or_default())).collect::<Vec<_>>(),
            }),
            plan: PlanSummary::new(plan, self.prep.layout.slots, self.prep.layout.slot_bytes()),
            chunks,
            workers,
            totals,
        }
    }
}

/// For `plan`: a human-readable description.
pub fn describe(prep: &Prepared, cfg: &ResampleConfig) -> String {
    let p = &prep.plan;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut s = String::new();
    s.push_str(&format!(
        "input        {} ({}x{}, {} band(s) selected, {}, block {}x{})\n",
        prep.info.path.display(),
        p.width,
        p.height,
        prep.bands.len(),
        prep.sample,
        prep.info.block.0,
        prep.info.block.1
    ));
    s.push_str(&format!(
        "output       {}x{} {} ({} of {}x{} blocks), nodata {}\n",
        p.out_width,
        p.out_height,
        prep.out_type,
        cfg.agg.name(),
        p.factor,
        p.factor,
        prep.out_nodata
    ));
    s.push_str(&format!(
        "chunks       {} of {}x{} pixels ({:.1} MiB each)\n",
        p.chunks.len(),
        p.chunk_w,
        p.chunk_h,
        mib(p.max_input_bytes())
    ));
    s.push_str(&format!(
        "workers      {}{}\n",
        prep.memory.workers,
        if prep.memory.workers == 0 {
            format!(" (in process, {} thread(s))", prep.lanes)
        } else {
            String::new()
        }
    ));
    s.push_str(&format!(
        "slots        {} x {:.1} MiB = {:.1} MiB of shared memory in flight\n",
        prep.layout.slots,
        mib(prep.layout.slot_bytes()),
        mib(prep.layout.total_bytes())
    ));
    s.push_str(&prep.memory.describe());
    s
}

/// The coordinator's GDAL block cache: enough for two rows of output tiles and the chunks
/// in flight (so a tile is complete before it is evicted and compressed), plus the read
/// cache of the in-process lanes; not GDAL's 5 % of RAM, so the coordinator's memory does
/// not grow with the output.
pub fn coordinator_cache_bytes(
    p: &Plan,
    out_type: SampleType,
    bands: u64,
    slots: u32,
    lanes: u32,
    workers: u32,
) -> u64 {
    let tile_row = p.out_width * 256 * out_type.size() * bands;
    let in_flight = slots as u64 * p.max_output_bytes();
    let reading = if workers == 0 {
        lanes as u64 * (64 << 20)
    } else {
        0
    };
    (2 * tile_row + in_flight).clamp(8 << 20, 256 << 20) + reading
}

fn set_block_cache(bytes: u64) {
    // SAFETY: GDALSetCacheMax64 only stores a number; it is safe to call at any time.
    unsafe { gdal_sys::GDALSetCacheMax64(bytes as i64) };
}

/// Where the worker binary is by default: beside the running coordinator.
pub fn default_worker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("worker")))
        .unwrap_or_else(|| Path::new("worker").to_path_buf())
}

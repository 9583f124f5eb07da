//! `coordinator resample` and `coordinator map`: the job's side of a run. Submodules by
//! verb: `prepare` (validate the input and the options, plan, the memory arithmetic),
//! `job` (the job as the engine sees it: chunk sizes and payloads, splits, the sink's
//! items), `view` (the finished run read back: the report and the closing warnings). This
//! module wires them to the engine and the output staging (`crate::output`): check, lock,
//! run, commit, report.

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
    map::{MapChunk, MapSetup},
    KernelSpec, SampleType, Window, WorkerChunk, WorkerKernel, WorkerSetup,
};

pub use engine::memory::{available_memory, total_memory};

use crate::{
    budget::{self, MemoryPlan},
    error::CoordError,
    fidelity, output,
    plan::{plan, Chunk, Plan},
    raster::{self, BandInfo, RasterInfo},
    report::{ChunkReport, PlanSummary, QuarantinedWindow, Report, Totals, WorkerReport},
    writer::{self, Adjusted, GtiffSink, OutputSpec},
};

/// Defined beside the code that builds it (`cli::resolve`).
pub use crate::cli::{MapSpec, ResampleConfig};

mod job;
mod prepare;
mod view;

use job::BlockAggJob;
pub use prepare::{coordinator_cache_bytes, describe, prepare, Prepared};
use view::RunView;

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
    crate::os::set_gdal_cache(
        prep.memory.coordinator - prep.memory.ring - budget::COORDINATOR_BASE,
    );
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
        bands: out_bands(cfg, &prep),
        out_type: prep.out_type,
        nodata: prep.out_nodata,
        geo_transform: prep.info.geo_transform.map(|g| {
            let f = cfg.factor as f64;
            [g[0], g[1] * f, g[2] * f, g[3], g[4] * f, g[5] * f]
        }),
        projection: prep.info.projection.clone(),
        creation_options: cfg.creation_options.clone(),
        band_meta: match &cfg.map {
            None => prep
                .bands
                .iter()
                .map(|b| fidelity::out_meta(cfg.agg, prep.out_type, b, prep.unscale))
                .collect(),
            Some(_) => Vec::new(),
        },
        area_or_point: prep.info.area_or_point.clone(),
    };
    let ds = writer::create(&spec, &tmp)?;
    let sink = GtiffSink::new(ds, spec, tmp);

    let mut job = BlockAggJob::new(cfg, &prep);
    let input = cfg.input.to_string_lossy().into_owned();
    let bands: Vec<u32> = prep.bands.iter().map(|b| b.index).collect();
    let setup = match &cfg.map {
        None => protocol::encode(&WorkerSetup::BlockAgg(BlockAggSetup {
            input,
            bands,
            decoder: cfg.decoder,
            ignore_mask: cfg.ignore_mask,
            unscale: prep.unscale,
        })),
        Some(m) => {
            let ms = MapSetup {
                input,
                bands,
                factor: cfg.factor,
                out_bands: m.out_bands,
                args: m.args.clone(),
                lib: m.lib.as_ref().map(|l| l.to_string_lossy().into_owned()),
                raster_size: (prep.info.width, prep.info.height),
            };
            // The rule for `map`: the standard worker (a library to load) takes its own
            // setup enum; a Rust kernel's binary (no library) serves `MapSetup` itself.
            if ms.lib.is_some() {
                protocol::encode(&WorkerSetup::Map(ms))
            } else {
                protocol::encode(&ms)
            }
        }
    };
    // A plug-in is loaded into the coordinator only when the user asks for it (`lanes` is
    // then non-zero); a Rust kernel's binary never runs here (`resolve_map` refuses it).
    let executor: Option<ExecutorFactory> = (prep.lanes > 0).then(|| {
        let lane_setup = setup.clone();
        let f: ExecutorFactory = Arc::new(move || runtime::open::<WorkerKernel>(&lane_setup));
        f
    });
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
                    "{} {} -> {}",
                    if cfg.map.is_some() { "map" } else { "resample" },
                    cfg.input.display(),
                    cfg.output.display()
                ),
            ),
        ],
        data_limit: prep.memory.limit,
        setup,
        executor,
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
            .and_then(|text| {
                output::write_report(path, &text, cfg.overwrite).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        "a file appeared there during the run and was not replaced (pass --overwrite to replace it)".to_string()
                    } else {
                        e.to_string()
                    }
                })
            });
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
        prep.plan.bands,
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
            let b = prep.bands.get(i).map_or(i as u32 + 1, |b| b.index);
            message.push_str(&format!(
                "\nwarning: band {b}: {} valid pixel(s) clamped into {}'s range and {} moved one step off the nodata value {}, so that none reads as nodata (a wider --ot keeps them exact)",
                a.clamped, prep.out_type, a.moved_off_nodata, prep.out_nodata.unwrap_or(f64::NAN)
            ));
        }
    }
    if !quarantined.is_empty() {
        message.push('\n');
        message.push_str(&view.quarantine_warning(&quarantined));
    }
    Ok(RunSummary { exit_code, message })
}

/// The output's bands: the selected input bands for `resample`, `out_bands` unnamed
/// Float64 planes for `map`.
fn out_bands(cfg: &ResampleConfig, prep: &Prepared) -> Vec<BandInfo> {
    match &cfg.map {
        None => prep.bands.clone(),
        Some(m) => (1..=m.out_bands)
            .map(|index| BandInfo {
                index,
                sample: SampleType::F64,
                nodata: None,
                description: String::new(),
                masked: false,
                meta: Default::default(),
            })
            .collect(),
    }
}

/// How the report and the metadata name a map kernel: its library's or binary's file name.
fn kernel_name(cfg: &ResampleConfig, m: &MapSpec) -> String {
    let path = m.lib.as_deref().unwrap_or(&cfg.worker_bin);
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One pixel: the per-pixel arithmetic of the slot sizes.
fn unit_window() -> Window {
    Window {
        x: 0,
        y: 0,
        w: 1,
        h: 1,
    }
}

/// Where the worker binary is by default: beside the running coordinator.
pub fn default_worker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("worker")))
        .unwrap_or_else(|| Path::new("worker").to_path_buf())
}

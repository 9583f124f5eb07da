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
    exec::{BlockAggChunk, BlockAggInput, BlockAggSetup},
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
    stdio::eline,
    writer::{self, Adjusted, GtiffSink, OutputSpec},
};

/// Defined beside the code that builds it (`cli::resolve`).
pub use crate::cli::{MapSpec, ResampleConfig};

mod batch;
mod durable;
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
    if cfg.batch.is_some() {
        return batch::resample_batch(cfg);
    }
    // Every path of the command line against every other, before anything is read.
    let sides = side_paths(cfg);
    output::check_distinct(&cfg.input, &cfg.output, &sides)?;
    let prep = prepare(cfg)?;
    // The journal: OUTPUT.journal for a whole run, OUTPUT.shards/shard-I-of-N.journal for
    // a shard (which writes no GeoTIFF: `merge` does). The lock is on what the run writes.
    let jpath = durable::journal_path(cfg)?;
    let range = durable::range(cfg, &prep.plan);
    let lock_target = match cfg.shard {
        None => cfg.output.clone(),
        Some(_) => jpath.clone(),
    };
    let journal_there = std::fs::symlink_metadata(&jpath).is_ok();
    // --resume continues a run that left a journal or committed its output: that run's
    // output, report and page may be there (judged under the lock).
    let continuing = cfg.resume
        && cfg.shard.is_none()
        && (journal_there || std::fs::symlink_metadata(&cfg.output).is_ok());
    output::check_paths(
        &cfg.input,
        &lock_target,
        cfg.report
            .as_deref()
            .map(|p| output::SidePath::new("--report", p)),
        // An earlier journal is judged under the lock (`durable::open`), with a message
        // naming --resume; a shard's "output" is its journal. With --resume, an existing
        // output is judged under the lock too (`durable::already_committed`).
        cfg.overwrite || continuing || (journal_there && (cfg.resume || cfg.shard.is_some())),
    )?;
    // The page is refused up front like the report (exists, directory, the input...).
    output::check_paths(
        &cfg.input,
        &cfg.output,
        cfg.report_html
            .as_deref()
            .map(|p| output::SidePath::new("--report-html", p)),
        cfg.overwrite || continuing,
    )?;
    let mut staging = output::Staging::lock(&lock_target)?;
    let events = cfg
        .events
        .as_deref()
        .map(|p| crate::events::open(p, cfg.overwrite, &cfg.input, &cfg.output))
        .transpose()?;
    if cfg.resume && cfg.shard.is_none() {
        let digest = job::plan_digest(cfg, &prep);
        if let Some(message) = durable::already_committed(&cfg.output, &jpath, &digest)? {
            return Ok(RunSummary {
                exit_code: protocol::exit::OK,
                message,
            });
        }
    }
    let earlier = durable::existing(&jpath)?;
    // A run killed between its commit and removing its journal left a complete output and a
    // complete journal: --resume may then replace the output with the same result.
    let replace = durable::may_replace(cfg, earlier.as_ref(), range);
    if cfg.shard.is_none() && !replace && std::fs::symlink_metadata(&cfg.output).is_ok() {
        return Err(CoordError::OutputExists(cfg.output.clone()));
    }
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
    let mut job = BlockAggJob::new(cfg, &prep);
    let header = crate::journal::Header {
        identity: durable::identity(cfg, &prep)?,
        output: durable::output_header(&spec, job.close_item(&[])),
        shard: cfg.shard.map(|s| (s.index, s.count)),
        range,
    };
    let mut gtiff = match cfg.shard {
        None => {
            let ds = writer::create(&spec, &tmp)?;
            if let Some((tw, th)) = prep.plan.whole_tiles {
                // The plan read the tile size from the creation options; GTiff may round it.
                let made = ds.rasterband(1).map(|b| b.block_size()).ok();
                if made != Some((tw as usize, th as usize)) {
                    tracing::warn!(
                        "the output's tiles are {made:?}, not the {tw}x{th} the chunks were planned for: output tiles may be compressed more than once"
                    );
                }
            }
            Some(GtiffSink::new(ds, spec, tmp))
        }
        Some(_) => None,
    };
    let opened = durable::open(cfg, &jpath, &cfg.output, earlier, &header)?;
    let resumed = opened.earlier.as_ref().map_or(0, |e| e.records.len());
    if let Some(scan) = &opened.earlier {
        if let Some(g) = &mut gtiff {
            durable::replay(&jpath, scan, g)?;
        }
        tracing::info!(
            "resuming from '{}': {resumed} chunk(s) journaled",
            jpath.display()
        );
    }
    durable::keep_todo(&mut job, &prep.plan, range, opened.earlier.as_ref());
    let jstats = Arc::new(std::sync::Mutex::new(crate::journal::JournalStats {
        path: jpath.display().to_string(),
        resumed_chunks: resumed,
        ..Default::default()
    }));
    let sink = durable::JournaledSink {
        out: gtiff,
        journal: opened.writer,
        stats: jstats.clone(),
    };
    let input = cfg.input.to_string_lossy().into_owned();
    let bands: Vec<u32> = prep.bands.iter().map(|b| b.index).collect();
    let setup = match &cfg.map {
        None => protocol::encode(&WorkerSetup::BlockAgg(BlockAggSetup {
            inputs: vec![BlockAggInput {
                path: input,
                bands,
                unscale: prep.unscale,
            }],
            decoder: cfg.decoder,
            ignore_mask: cfg.ignore_mask,
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
    let ecfg = engine_config(
        cfg,
        &prep.memory,
        prep.lanes,
        prep.layout,
        job.tasks.len(),
        (setup, executor),
        format!(
            "{} {} -> {}",
            if cfg.map.is_some() { "map" } else { "resample" },
            cfg.input.display(),
            cfg.output.display()
        ),
        events.clone(),
    );
    if let Some(log) = &events {
        let summary = PlanSummary::new(&prep.plan, prep.layout.slots, prep.layout.slot_bytes());
        log.emit(
            0,
            &crate::events::plan_event(&summary, &cfg.input, &cfg.output, prep.memory.workers),
        );
    }
    let (outcome, rec) = engine::run(&mut job, sink, ring, ecfg);
    let outcome = outcome.map_err(|e| engine_error(cfg, &cfg.output, e));
    let view = RunView {
        cfg,
        prep: &prep,
        sched: &rec.sched,
        tasks: &job.tasks,
        plan_ids: &job.plan_ids,
        mem: &rec.memory,
        write_us: &rec.write_us,
        start: rec.start,
        adjusted: outcome.as_ref().cloned().unwrap_or_default(),
        journal: Some(jstats.lock().unwrap_or_else(|p| p.into_inner()).clone()),
    };
    let mut finished = crate::cog::Finished::default();
    let quarantined = view.quarantined();
    let base = crate::cog::BaseRun {
        input: prep.sample,
        out_type: prep.out_type,
        input_pixels: prep.info.width * prep.info.height,
        quarantined: !quarantined.is_empty(),
    };
    let result = match (outcome, cfg.shard) {
        // The writer closed, reopened and checked the file under its temporary name: add
        // the pyramid and make the COG (`cog`), then move it into place (never over a file
        // that appeared meanwhile, unless --overwrite), then drop the journal, which the
        // output now stands for.
        (Ok(_), None) => crate::cog::finish(cfg, base, &mut staging)
            .and_then(|f| {
                finished = f;
                staging.commit(replace)
            })
            .map(|()| durable::remove(&jpath)),
        // A shard's product is its journal, synced at close.
        (Ok(_), Some(_)) => Ok(()),
        (Err(e), _) => Err(e),
    };
    if let (Some(log), Ok(())) = (&events, &result) {
        log.emit(
            rec.start.elapsed().as_millis() as u64,
            &engine::observe::RunEvent::Commit {
                output: cfg.output.display().to_string(),
            },
        );
    }
    // A committed output took the journal's place; a failed run (or a shard with quarantined
    // chunks, which merge will name) keeps it for --resume.
    if result.is_err() || (cfg.shard.is_some() && !quarantined.is_empty()) {
        let kept = jstats.lock().map_or(0, |s| s.appended_chunks as usize) + resumed;
        if kept == 0 && cfg.shard.is_none() {
            // Nothing to resume: a journal would only make the next run ask for --resume.
            let _ = std::fs::remove_file(&jpath);
        } else if kept > 0 {
            tracing::warn!(
                "the journal '{}' keeps {kept} finished chunk(s): rerun with --resume to compute only the rest",
                jpath.display()
            );
        }
    }
    let exit_code = match &result {
        Ok(()) if quarantined.is_empty() && finished.quarantined == 0 => protocol::exit::OK,
        Ok(()) => protocol::exit::QUARANTINED,
        Err(e) => e.exit_code(),
    };
    let report = view.report(exit_code, &result, &quarantined);
    if let Some(log) = &events {
        log.emit(
            report.totals.wall_ms,
            &engine::observe::RunEvent::RunEnd {
                status: serde_json::to_value(report.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                exit_code,
                error: report.error.clone(),
                wall_ms: report.totals.wall_ms,
            },
        );
    }
    // The side outputs: the HTML page, and whether the event stream was written whole.
    let mut side: Vec<(&'static str, PathBuf, String)> = Vec::new();
    if let Some(path) = &cfg.report_html {
        if let Err(e) = output::write_report(path, &crate::html::render(&report), cfg.overwrite) {
            side.push(("--report-html", path.clone(), e.to_string()));
        }
    }
    if let (Some(log), Some(path)) = (&events, &cfg.events) {
        if let Some(e) = log.error() {
            side.push(("--events", path.clone(), e));
        }
    }
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
                        flag: "--report",
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
    if let Some((flag, path, reason)) = side.into_iter().next() {
        match &result {
            // The output is complete; a side file is not: exit 4 says so.
            Ok(()) => {
                return Err(CoordError::ReportWrite {
                    output: cfg.output.clone(),
                    flag,
                    path,
                    reason,
                })
            }
            Err(_) => tracing::error!("writing '{}': {reason}", path.display()),
        }
    }
    result?;
    let t = &report.totals;
    if let Some(s) = cfg.shard {
        let mut message = format!(
            "wrote shard {}/{} of {} (chunks {}..{} of {}) to {}: {} chunk(s) computed in {:.2} s, {} worker(s)",
            s.index,
            s.count,
            cfg.output.display(),
            range.0,
            range.1,
            prep.plan.chunks.len(),
            jpath.display(),
            job.plan_ids.len(),
            t.wall_ms as f64 / 1000.0,
            prep.memory.workers,
        );
        if resumed > 0 {
            message.push_str(&format!(", {resumed} resumed from the journal"));
        }
        if !quarantined.is_empty() {
            message.push('\n');
            message.push_str(&view.quarantine_warning(&quarantined));
        }
        return Ok(RunSummary { exit_code, message });
    }
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
    if resumed > 0 {
        message.push_str(&format!(", {resumed} chunk(s) resumed from the journal"));
    }
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
    message.push_str(&finished.describe());
    if !quarantined.is_empty() {
        message.push('\n');
        message.push_str(&view.quarantine_warning(&quarantined));
    }
    Ok(RunSummary { exit_code, message })
}

/// The run's side files, each with its flag.
fn side_paths(cfg: &ResampleConfig) -> Vec<output::SidePath<'_>> {
    [
        ("--report", &cfg.report),
        ("--report-html", &cfg.report_html),
        ("--events", &cfg.events),
    ]
    .into_iter()
    .filter_map(|(flag, p)| p.as_deref().map(|p| output::SidePath::new(flag, p)))
    .collect()
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

/// The engine's configuration from the run's options, its memory plan and layout: what a
/// single run and a batch share. `job` names the run in each worker's environment
/// (`BLOCKSUM_JOB`), for whoever looks at a process table (the command line carries only the
/// connection and the segment).
#[allow(clippy::too_many_arguments)]
fn engine_config(
    cfg: &ResampleConfig,
    memory: &budget::MemoryPlan,
    lanes: u32,
    layout: SlotLayout,
    tasks: usize,
    (setup, executor): (Vec<u8>, Option<ExecutorFactory>),
    job: String,
    events: Option<engine::observe::EventLog>,
) -> EngineConfig {
    let mut sc = SchedConfig::new(memory.workers + memory.spares, lanes, layout.slots);
    sc.max_busy = memory.workers;
    sc.admission_open = cfg.min_free_memory.is_none_or(|m| available_memory() >= m);
    sc.max_attempts = cfg.max_attempts;
    sc.timeout = cfg.task_timeout;
    sc.timeout_floor = cfg.task_timeout_floor;
    sc.start_timeout = cfg.start_timeout;
    sc.kill_grace = cfg.kill_grace;
    sc.faults = cfg.faults.clone();
    sc.can_split = true;
    sc.suspect = suspect(cfg);
    EngineConfig {
        sched: sc,
        layout,
        tasks,
        worker_bin: cfg.worker_bin.clone(),
        worker_env: vec![
            (
                "GDAL_CACHEMAX".into(),
                format!("{}", (memory.gdal_cache >> 20).max(1)),
            ),
            ("GDAL_NUM_THREADS".into(), "1".into()),
            ("BLOCKSUM_JOB".into(), job),
        ],
        data_limit: memory.limit,
        setup,
        executor,
        memory_poll: cfg.memory_poll,
        soft_limit: memory.soft,
        min_free_memory: cfg.min_free_memory,
        kill_grace: cfg.kill_grace,
        progress: !cfg.quiet,
        events,
    }
}

/// What computes a chunk, for the systematic-failure breaker's message: the user's kernel
/// for `map`, the reader of the input for `resample` (the built-in kernels are the tested
/// part; a crash there on every chunk is GDAL's or the decoder's on this input).
fn suspect(cfg: &ResampleConfig) -> String {
    let name = |p: &std::path::Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    match &cfg.map {
        Some(m) => match &m.lib {
            Some(lib) => format!("the kernel {}", name(lib)),
            None => format!("the kernel worker {}", name(&cfg.worker_bin)),
        },
        None if cfg.batch.is_some() => "reading the inputs".into(),
        None => format!("reading the input {}", name(&cfg.input)),
    }
}

/// The engine's error as the run's: a sink failure is a write failure of `output`.
fn engine_error(cfg: &ResampleConfig, output: &std::path::Path, e: EngineError) -> CoordError {
    match e {
        EngineError::Fatal(why) => CoordError::Workers(why),
        EngineError::VersionMismatch { theirs, ours } => CoordError::Workers(format!(
            "the worker binary '{}' speaks protocol version {theirs}, this coordinator {ours}: build both from the same source",
            cfg.worker_bin.display()
        )),
        EngineError::Sink(reason) => CoordError::Write {
            path: output.to_path_buf(),
            reason,
        },
        EngineError::Interrupted(name) => CoordError::Interrupted(name),
        EngineError::Internal(why) => CoordError::Internal(why),
    }
}

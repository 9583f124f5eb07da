//! One input to one output, as typed phases: [`Prepared`] (`prepare`), [`Staged`] (paths
//! checked, the output locked, the earlier journal read), the pool brought up
//! (`pool::bring_up`), [`Journaled`] (the staged GeoTIFF created, the journal opened, the
//! earlier chunks replayed), [`Ran`] (the engine's outcome), then finished: the output
//! committed (`commit`), the report and the side files written (`report`), the summary.

use std::sync::Mutex;

use super::*;
use crate::{grid::Mapping, journal::JournalStats, pyramid::BaseGrid};
use engine::observe::{EventLog, RunEvent};

/// The run's lock is held, its journal's place known and what is there read.
pub(super) struct Staged {
    staging: output::Staging,
    events: Option<EventLog>,
    jpath: PathBuf,
    /// The earlier journal, the plan chunks this run owns, and whether the commit may
    /// replace an existing output.
    earlier: durable::Earlier,
    /// The report and the page may replace files of their names: `--overwrite`, or
    /// `--resume` over the interrupted run's.
    replace_side: (bool, bool),
}

/// What staging found: a run to do, or (`--resume` over this plan's committed output)
/// nothing.
pub(super) enum Stage {
    Run(Box<Staged>),
    Done(RunSummary),
}

/// The journal opened and the job left with the chunks it has to compute (its sink goes
/// to the engine).
struct Journaled {
    job: BlockAggJob,
    stats: Arc<Mutex<JournalStats>>,
    /// Chunks taken from the earlier run's journal.
    resumed: usize,
}

/// What the engine left.
struct Ran {
    outcome: Result<Vec<Adjusted>, CoordError>,
    rec: engine::RunRecord,
}

/// Runs one input to one output.
pub(super) fn run(one: OneRun<'_>) -> Result<RunSummary, CoordError> {
    let cfg = one.cfg;
    // Every path of the command line against every other, before anything is read.
    output::check_distinct(&one.io.input, &one.io.output, &side_paths(cfg))?;
    // The workers' fork server loads GDAL while this process looks at the input; a run
    // that stops before its pool takes it ends it.
    if cfg.pool.workers > 0
        && cfg.pool.worker_bin.is_file()
        && engine::Spawn::from_env() == engine::Spawn::ForkServer
    {
        let env = vec![("BLOCKSUM_JOB".into(), job_name(one))];
        // The default worker binary's kernel is built in here: the fork server is this
        // process forked (GDAL loaded already), not that binary executed (another load).
        match cfg.pool.worker_bin == default_worker_bin() {
            true => engine::fork_server::prestart_forked(&cfg.pool.worker_bin, env, serve_forks),
            false => engine::fork_server::prestart(&cfg.pool.worker_bin, env),
        }
    }
    let _unused = Prestarted;
    let mut prep = prepare(cfg, &one.io.input)?;
    let mut staged = match stage(one, &mut prep)? {
        Stage::Run(s) => s,
        Stage::Done(summary) => return Ok(summary),
    };
    let ring = bring_up(cfg, Pool::of(&prep), 0)?;
    let (mut journaled, sink) = open_journal(one, &prep, &mut staged)?;
    let ran = run_engine(one, &prep, &staged, (&mut journaled, sink), ring);
    finish(one, &prep, &mut staged, &journaled, ran)
}

/// Checks the paths, takes the lock, opens the event stream, and reads what an earlier run
/// left: its journal, or (`--resume`) its committed output.
/// With `--resume`, `prep` takes the earlier journal's chunk grid (`durable::adopt_grid`).
pub(super) fn stage(one: OneRun<'_>, prep: &mut Prepared) -> Result<Stage, CoordError> {
    let cfg = one.cfg;
    // The journal: OUTPUT.journal for a whole run, OUTPUT.shards/shard-I-of-N.journal for
    // a shard (which writes no GeoTIFF: `merge` does). The lock is on what the run writes.
    let jpath = durable::journal_path(one)?;
    let lock_target = match cfg.durability.shard {
        None => one.io.output.clone(),
        Some(_) => jpath.clone(),
    };
    let journal_there = std::fs::symlink_metadata(&jpath).is_ok();
    // --resume continues a run that left a journal or committed its output: that run's
    // output, report and page may be there (judged under the lock).
    let continuing = cfg.durability.resume
        && cfg.durability.shard.is_none()
        && (journal_there || std::fs::symlink_metadata(&one.io.output).is_ok());
    // A --resume run's report, page and event stream replace the interrupted run's: those of
    // a run it continues, or files this tool wrote for a run on OUTPUT (a run stopped before
    // its first chunk leaves no journal). Anything else only with --overwrite.
    let resumes = |p: &Path| {
        cfg.durability.resume
            && (continuing || journal_there || output::side_file_of(p, &one.io.output))
    };
    let replace = |p: &Path| cfg.output.overwrite || resumes(p);
    let replace_side = (
        cfg.observe.report.as_deref().is_some_and(replace),
        cfg.observe.report_html.as_deref().is_some_and(replace),
    );
    output::check_paths(
        &one.io.input,
        &lock_target,
        cfg.observe
            .report
            .as_deref()
            .map(|p| output::SidePath::new("--report", p).replacing(resumes(p))),
        // An earlier journal is judged under the lock (`durable::open`), with a message
        // naming --resume; a shard's "output" is its journal. With --resume, an existing
        // output is judged under the lock too (`durable::already_committed`).
        cfg.output.overwrite
            || continuing
            || (journal_there && (cfg.durability.resume || cfg.durability.shard.is_some())),
    )?;
    // The page is refused up front like the report (exists, directory, the input...).
    output::check_paths(
        &one.io.input,
        &one.io.output,
        cfg.observe
            .report_html
            .as_deref()
            .map(|p| output::SidePath::new("--report-html", p).replacing(resumes(p))),
        cfg.output.overwrite || continuing,
    )?;
    let staging = output::Staging::lock(&lock_target)?;
    if cfg.durability.resume && cfg.durability.shard.is_none() {
        let digest = job::plan_digest(one, prep);
        if let Some(message) = durable::already_committed(&one.io.output, &jpath, &digest)? {
            return Ok(Stage::Done(RunSummary {
                exit_code: protocol::exit::OK,
                message,
            }));
        }
    }
    // After that check: a retry of a committed run leaves the stream as it was.
    let events = cfg
        .observe
        .events
        .as_deref()
        .map(|p| crate::events::open(p, replace(p), &one.io.input, &one.io.output))
        .transpose()?;
    let earlier = durable::earlier(one, prep, &jpath)?;
    Ok(Stage::Run(Box::new(Staged {
        staging,
        events,
        jpath,
        earlier,
        replace_side,
    })))
}

/// Creates the staged GeoTIFF (not for a shard), opens the journal (continuing the earlier
/// one with `--resume`), replays its chunks, and keeps in the job the chunks left to do.
fn open_journal(
    one: OneRun<'_>,
    prep: &Prepared,
    staged: &mut Staged,
) -> Result<(Journaled, durable::JournaledSink), CoordError> {
    let cfg = one.cfg;
    let spec = durable::output_spec(one, prep);
    let jpath = &staged.jpath;
    let mut gtiff = match cfg.durability.shard {
        None => Some(
            create_staged(prep, spec.clone(), staged.staging.temp().to_path_buf())?
                .writeback(cfg.output.format == crate::cog::OutputFormat::GTiff),
        ),
        Some(_) => None,
    };
    let (earlier, range) = (staged.earlier.scan.take(), staged.earlier.range);
    let (job, opened) = durable::journal_job(one, prep, (jpath, &spec), earlier, range)?;
    let resumed = opened.earlier.as_ref().map_or(0, |e| e.records.len());
    if let (Some(scan), Some(g)) = (&opened.earlier, &mut gtiff) {
        durable::replay(jpath, scan, g)?;
    }
    let stats = Arc::new(Mutex::new(JournalStats {
        path: jpath.display().to_string(),
        resumed_chunks: resumed,
        ..Default::default()
    }));
    let sink = durable::JournaledSink {
        output: one.io.output.clone(),
        out: gtiff,
        journal: opened.writer,
        stats: stats.clone(),
    };
    let journaled = Journaled {
        job,
        stats,
        resumed,
    };
    Ok((journaled, sink))
}

/// The output GeoTIFF under its temporary name, checked against the tiles the chunks were
/// planned for.
fn create_staged(prep: &Prepared, spec: OutputSpec, tmp: PathBuf) -> Result<GtiffSink, CoordError> {
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
    Ok(GtiffSink::new(ds, spec, tmp))
}

/// Ends the fork server started ahead of the run if the run did not take it.
struct Prestarted;

impl Drop for Prestarted {
    fn drop(&mut self) {
        engine::fork_server::discard_prestarted();
    }
}

/// The fork server forked from this process: the built-in worker's (`worker::WorkerKernel`,
/// what the `worker` binary runs), its workers named `worker` as that binary's are. GDAL's
/// error handler goes back to GDAL's own (messages on stderr), as in that binary.
fn serve_forks(control: std::os::fd::OwnedFd) -> ! {
    gdal::config::remove_error_handler();
    runtime::serve_forked::<worker::WorkerKernel>(control, c"worker")
}

/// The run's name in each worker's environment (`BLOCKSUM_JOB`).
fn job_name(one: OneRun<'_>) -> String {
    let cfg = one.cfg;
    format!(
        "{} {} -> {}",
        cfg.job.kernel.command(),
        one.io.input.display(),
        one.io.output.display()
    )
}

/// Runs the job on the pool.
fn run_engine(
    one: OneRun<'_>,
    prep: &Prepared,
    staged: &Staged,
    (journaled, sink): (&mut Journaled, durable::JournaledSink),
    ring: Arc<SlotRing>,
) -> Ran {
    let cfg = one.cfg;
    let ecfg = engine_config(
        cfg,
        Pool::of(prep),
        journaled.job.tasks.len(),
        worker_setup(one, prep),
        job_name(one),
        staged.events.clone(),
    );
    if let Some(log) = &staged.events {
        let summary = PlanSummary::new(&prep.plan, prep.layout.slots, prep.layout.slot_bytes());
        log.emit(
            0,
            &crate::events::plan_event(
                &summary,
                &one.io.input,
                &one.io.output,
                prep.memory.workers,
            ),
        );
    }
    let (outcome, rec) = engine::run(&mut journaled.job, sink, ring, ecfg);
    Ran {
        outcome: outcome.map_err(|e| engine_error(cfg, &one.io.output, e)),
        rec,
    }
}

/// The workers' setup: the block aggregation of this input, or the user's kernel.
fn worker_setup(one: OneRun<'_>, prep: &Prepared) -> Vec<u8> {
    let cfg = one.cfg;
    let input = one.io.input.to_string_lossy().into_owned();
    let bands: Vec<u32> = prep.bands.iter().map(|b| b.index).collect();
    let Kernel::Map(m) = &cfg.job.kernel else {
        return protocol::encode(&WorkerSetup::BlockAgg(BlockAggSetup {
            inputs: vec![BlockAggInput {
                path: input,
                bands,
                unscale: prep.unscale,
            }],
            decoder: cfg.job.decoder,
            ignore_mask: cfg.job.ignore_mask,
        }));
    };
    let ms = MapSetup {
        input,
        bands,
        // `prepare` refuses a map kernel on a target grid: its plan is of blocks.
        factor: prep.plan.mapping.factor().unwrap_or(1) as u32,
        out_bands: m.out_bands,
        args: m.args.clone(),
        lib: m.lib.as_ref().map(|l| l.to_string_lossy().into_owned()),
        raster_size: (prep.info.width, prep.info.height),
    };
    // The rule for `map`: the standard worker (a library to load) takes its own setup enum;
    // a Rust kernel's binary (no library) serves `MapSetup` itself.
    if ms.lib.is_some() {
        protocol::encode(&WorkerSetup::Map(ms))
    } else {
        protocol::encode(&ms)
    }
}

/// Commits the output, writes the report and the side files, and says what was done.
fn finish(
    one: OneRun<'_>,
    prep: &Prepared,
    staged: &mut Staged,
    journaled: &Journaled,
    ran: Ran,
) -> Result<RunSummary, CoordError> {
    let cfg = one.cfg;
    let view = RunView {
        one,
        prep,
        sched: &ran.rec.sched,
        tasks: &journaled.job.tasks,
        plan_ids: &journaled.job.plan_ids,
        mem: &ran.rec.memory,
        write_us: &ran.rec.write_us,
        start: ran.rec.start,
        adjusted: ran.outcome.as_ref().cloned().unwrap_or_default(),
        journal: Some(
            journaled
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        ),
    };
    let quarantined = view.quarantined();
    let (result, finished) = commit(one, prep, staged, ran.outcome, !quarantined.is_empty());
    if let (Some(log), Ok(())) = (&staged.events, &result) {
        log.emit(
            ran.rec.start.elapsed().as_millis() as u64,
            &RunEvent::Commit {
                output: one.io.output.display().to_string(),
            },
        );
    }
    keep_or_drop_journal(cfg, staged, journaled, &result, !quarantined.is_empty());
    let exit_code = match &result {
        Ok(()) if quarantined.is_empty() && finished.quarantined == 0 => protocol::exit::OK,
        Ok(()) => protocol::exit::QUARANTINED,
        Err(e) => e.exit_code(),
    };
    let report = view.report(exit_code, &result, &quarantined);
    let side = (staged.events.as_ref(), staged.replace_side);
    view::write_report_files(one, side, &report, &result)?;
    result?;
    let message = message(one, prep, staged, journaled, &view, &report, &finished);
    Ok(RunSummary { exit_code, message })
}

/// Adds the pyramid and makes the COG (`cog`), then moves the output into place (never over
/// a file that appeared meanwhile, unless --overwrite) and drops the journal, which the
/// output now stands for. A shard's product is its journal, synced at close.
fn commit(
    one: OneRun<'_>,
    prep: &Prepared,
    staged: &mut Staged,
    outcome: Result<Vec<Adjusted>, CoordError>,
    quarantined: bool,
) -> (Result<(), CoordError>, crate::cog::Finished) {
    let cfg = one.cfg;
    let mut finished = crate::cog::Finished::default();
    let base = crate::cog::BaseRun {
        input: prep.sample,
        out_type: prep.out_type,
        input_pixels: prep.info.width * prep.info.height,
        grid: match &prep.plan.mapping {
            Mapping::Factor { .. } => BaseGrid::Factor,
            Mapping::Cells { target } if target.covers((prep.info.width, prep.info.height)) => {
                BaseGrid::Cells
            }
            Mapping::Cells { .. } => BaseGrid::Cropped,
        },
        quarantined,
        agg: cfg.job.kernel.agg(),
    };
    let run_level = |level: &crate::cog::LevelSpec| {
        resample(&one.level(level)).map(|s| (s.exit_code, s.message))
    };
    let result = match (outcome, cfg.durability.shard) {
        // The writer closed, reopened and checked the file under its temporary name.
        (Ok(_), None) => crate::cog::finish(one, base, &mut staged.staging, &run_level)
            .and_then(|f| {
                finished = f;
                staged.staging.commit(staged.earlier.replace)
            })
            .map(|()| durable::remove(&staged.jpath)),
        (Ok(_), Some(_)) => Ok(()),
        (Err(e), _) => Err(e),
    };
    (result, finished)
}

/// A committed output took the journal's place; a failed run (or a shard with quarantined
/// chunks, which merge will name) keeps it for --resume, unless it holds nothing.
fn keep_or_drop_journal(
    cfg: &RunConfig,
    staged: &Staged,
    journaled: &Journaled,
    result: &Result<(), CoordError>,
    quarantined: bool,
) {
    if !(result.is_err() || (cfg.durability.shard.is_some() && quarantined)) {
        return;
    }
    let appended = journaled.stats.lock().map_or(0, |s| s.appended_chunks);
    let kept = appended as usize + journaled.resumed;
    if kept == 0 && cfg.durability.shard.is_none() {
        // Nothing to resume: a journal would only make the next run ask for --resume.
        let _ = std::fs::remove_file(&staged.jpath);
    } else if kept > 0 {
        tracing::warn!(
            "the journal '{}' keeps {kept} finished chunk(s): rerun with --resume to compute only the rest",
            staged.jpath.display()
        );
    }
}

/// The summary: the line of what was written, then its warnings.
fn message(
    one: OneRun<'_>,
    prep: &Prepared,
    staged: &Staged,
    journaled: &Journaled,
    view: &RunView<'_>,
    report: &Report,
    finished: &crate::cog::Finished,
) -> String {
    let cfg = one.cfg;
    let t = &report.totals;
    let quarantined = &t.quarantined;
    let resumed = journaled.resumed;
    let computed = journaled.job.plan_ids.len();
    // The chunks' time and rate; the pyramid and the COG copy tell theirs on their own lines
    // (the whole run's, where the chunks took next to nothing: all resumed).
    let wall = t.wall_ms.max(1) as f64 / 1000.0;
    let secs = match wall - finished.pyramid_secs - finished.cog_secs {
        s if s >= 0.05 => s,
        _ => wall,
    };
    let rate = t.input_mib_per_s * wall / secs;
    let workers = prep.memory.workers;
    let mut message = match cfg.durability.shard {
        Some(s) => format!(
            "{}: {computed} chunk(s) computed in {secs:.2} s, {workers} worker(s){}",
            summary::head(
                &one.io.output,
                prep,
                Some((s, staged.earlier.range, &staged.jpath))
            ),
            summary::resumed(resumed, true),
        ),
        None => format!(
            "{} in {secs:.2} s ({rate:.0} MiB/s), {workers} worker(s), {} restart(s){}{}",
            summary::head(&one.io.output, prep, None),
            t.counters.restarts,
            summary::resumed(resumed, false),
            view.closing_notes(t, finished),
        ),
    };
    if !quarantined.is_empty() {
        message.push('\n');
        message.push_str(&view.quarantine_warning(quarantined));
    }
    message
}

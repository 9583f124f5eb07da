//! `coordinator resample IN1 IN2 ... --out-dir DIR` (or `--inputs LIST`): several rasters on
//! one pool. Workers are spawned once and serve every input (each keeps a few inputs open,
//! `worker::cache`); chunks run one input after the other, and each output is committed as
//! soon as its last chunk is written (`sink`), under the same staging rules as a single
//! run: checked paths, a lock per output, a temporary name, no clobbering without
//! `--overwrite`.
//!
//! One input's failure does not lose the others: an input that does not open, an output that
//! exists or cannot be written, is reported on its own line and the rest of the batch goes
//! on. The batch's exit code: 0 when every output was written complete; 5 when every output
//! was written and some had quarantined chunks; 8 (`protocol::exit::PARTIAL`) when some
//! inputs failed and others were written; when none was written, the first failure's own
//! code. A failure of the run itself (workers, memory, an interrupt) gets its usual code,
//! and outputs committed before it stay (they are complete).
//!
//! One report for the batch (`--report`): a section per input (its options, plan, chunks
//! under their local ids as a single run would number them, fate) and the pool's workers
//! and totals once.
//!
//! Modules: `job` (the engine's view: one task list over the inputs), `sink` (the writer
//! that journals each chunk and commits each output when complete), `resume` (`--resume`
//! and `--shard` per output: its journal, what is left to compute).

use std::sync::Mutex;

use super::*;
use crate::{
    error::SideFileError,
    report::{BatchReport, InputReport, RunStatus},
};
use std::path::Path;

mod job;
mod resume;
mod sink;

use super::prepare::asked;
use job::BatchJob;
use sink::{BatchSink, Fates, OutputFate, Pending};

/// An input ready to run: its index in the batch, its input and output, plan, job and
/// pending output.
type Ready = (usize, Io, Prepared, BlockAggJob, Pending);

/// Runs `batch`, the target of `cfg`.
pub fn resample_batch(
    cfg: &RunConfig,
    batch: &crate::cli::BatchSpec,
) -> Result<RunSummary, CoordError> {
    out_dir_ready(&batch.out_dir)?;
    let replace_report = cfg.output.overwrite || report_resumes(cfg, batch);
    let (fates, ready) = stage(cfg, batch)?;
    let start = (Instant::now(), replace_report);
    if ready.is_empty() {
        let fates = Mutex::new(fates);
        return finish(cfg, batch, &[], None, fates, start);
    }
    let (memory, lanes, layout) = plan_pool(cfg, &ready)?;
    check_faults(cfg, &ready)?;
    let pool = Pool {
        memory: &memory,
        lanes,
        layout,
    };
    let ring = bring_up(cfg, pool, ready.len())?;
    let (mut job, order, preps, setup, outputs) = assemble(cfg, ready);
    let fates: Fates = Arc::new(Mutex::new(fates));
    let mut sink = BatchSink::new(outputs, order.clone(), fates.clone(), cfg.output.overwrite);
    sink.finish_ready();
    // `--events` is refused for batches (cli::resolve).
    let ecfg = engine_config(
        cfg,
        pool,
        job.plan_len(),
        setup,
        format!(
            "resample batch of {} input(s) -> {}",
            order.len(),
            batch.out_dir.display()
        ),
        None,
    );
    let (outcome, rec) = engine::run(&mut job, sink, ring, ecfg);
    let run_error = outcome.err().map(|e| engine_error(cfg, &batch.out_dir, e));
    let fates = Arc::try_unwrap(fates).unwrap_or_else(|a| {
        Mutex::new(std::mem::take(
            &mut *a.lock().unwrap_or_else(|p| p.into_inner()),
        ))
    });
    let ran = Ran {
        job: &job,
        order: &order,
        preps: &preps,
        rec: &rec,
        memory: &memory,
        layout,
        error: run_error,
    };
    finish(cfg, batch, &preps, Some(ran), fates, start)
}

/// `--resume` over the interrupted batch's report (`output::side_file_of`): the report may
/// replace it without `--overwrite`.
fn report_resumes(cfg: &RunConfig, batch: &crate::cli::BatchSpec) -> bool {
    let report = cfg.observe.report.as_deref();
    cfg.durability.resume && report.is_some_and(|p| output::side_file_of(p, &batch.out_dir))
}

/// `--out-dir` is a directory, made here when its parent is one.
fn out_dir_ready(out_dir: &Path) -> Result<(), CoordError> {
    match std::fs::symlink_metadata(out_dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(CoordError::Write {
            path: out_dir.to_path_buf(),
            reason: "--out-dir names something that is not a directory".into(),
        }),
        Err(_) => {
            let parent = output::parent_dir(out_dir);
            if !parent.is_dir() {
                return Err(CoordError::OutputDirMissing(parent));
            }
            std::fs::create_dir(out_dir).map_err(|source| CoordError::OutputDirNotWritable {
                path: out_dir.to_path_buf(),
                step: "creating it",
                source,
            })
        }
    }
}

/// Per input: its input and output (the batch's faults are checked by `check_faults`, not
/// against one input's plan), then what a single run would check before starting, its lock
/// and its journal. A failure here is that input's, but for the batch's report path.
fn stage(
    cfg: &RunConfig,
    batch: &crate::cli::BatchSpec,
) -> Result<(Vec<OutputFate>, Vec<Ready>), CoordError> {
    let n = batch.inputs.len();
    let mut fates: Vec<OutputFate> = (0..n).map(|_| OutputFate::Waiting).collect();
    let resumes = report_resumes(cfg, batch);
    let mut ready: Vec<Ready> = Vec::new();
    for (k, input) in batch.inputs.iter().enumerate() {
        let io = Io {
            input: input.clone(),
            output: batch.output_for(input),
        };
        let one = cfg.one(&io);
        let checked = resume::Place::of(one).and_then(|t| {
            let report = cfg
                .observe
                .report
                .as_deref()
                .map(|p| output::SidePath::new("--report", p).replacing(resumes));
            output::check_paths(&io.input, &t.lock, report, t.may_exist).map(|()| t)
        });
        if let Err(e @ CoordError::ReportPath { .. }) = checked {
            // The report is the batch's: refuse the whole command line.
            return Err(e);
        }
        let res = checked
            .and_then(|t| prepare(cfg, &io.input).map(|p| (t, p)))
            .and_then(|(t, mut p)| resume::begin(one, &mut p, t).map(|b| (p, b)));
        match res {
            Ok((_, resume::Begun::Kept)) => fates[k] = OutputFate::Kept,
            Ok((p, resume::Begun::Run { job, pending })) => ready.push((k, io, p, *job, *pending)),
            Err(e) => {
                eline(&format!("error: {}: {e}", input.display()));
                fates[k] = OutputFate::Failed(e);
            }
        }
    }
    Ok((fates, ready))
}

/// The pool is sized by the input that needs the largest slots; the ring holds the largest
/// window and output of any input.
fn plan_pool(
    cfg: &RunConfig,
    ready: &[Ready],
) -> Result<(MemoryPlan, u32, SlotLayout), CoordError> {
    let lead = (0..ready.len())
        .max_by_key(|&i| ready[i].2.layout.slot_bytes())
        .unwrap_or(0);
    let max_in = ready
        .iter()
        .map(|r| r.2.plan.max_input_bytes())
        .max()
        .unwrap_or(0);
    let max_out = ready
        .iter()
        .map(|r| r.2.plan.max_output_bytes())
        .max()
        .unwrap_or(0);
    let layout = SlotLayout::new(ready[lead].2.layout.slots, max_in, max_out)
        .map_err(|e| CoordError::BadInput(format!("chunk size: {e}")))?;
    let lp = &ready[lead].2;
    let cache = coordinator_cache_bytes(
        &lp.plan,
        lp.out_type,
        lp.plan.bands,
        layout.slots,
        lp.lanes,
        cfg.pool.workers,
    );
    let memory = budget::plan_memory(
        available_memory(),
        asked(cfg),
        cfg.pool.memory_limit,
        cfg.pool.soft_fraction,
        cache,
        |_| layout.total_bytes(),
    )?;
    Ok((memory, lp.lanes, layout))
}

/// `--inject-fault` names chunks among those this run computes (with --resume or --shard,
/// fewer than the plans'), numbered one input after the other.
fn check_faults(cfg: &RunConfig, ready: &[Ready]) -> Result<(), CoordError> {
    let total_plan: usize = ready.iter().map(|r| r.3.tasks.len()).sum();
    for f in &cfg.pool.faults {
        if let Some(c) = f.chunk {
            if c as usize >= total_plan {
                return Err(CoordError::BadInput(format!(
                    "--inject-fault names chunk {c}, but the batch has {total_plan} chunks to compute (0..{}: the inputs' plans one after the other)",
                    total_plan.saturating_sub(1)
                )));
            }
        }
    }
    Ok(())
}

/// The batch's job, each setup index's input index, config and plan, the workers' setup
/// (every input, in setup order), and the pending outputs.
type Assembled = (
    BatchJob,
    Vec<usize>,
    Vec<(Io, Prepared)>,
    Vec<u8>,
    Vec<Option<Pending>>,
);

fn assemble(cfg: &RunConfig, ready: Vec<Ready>) -> Assembled {
    let mut jobs = Vec::new();
    let mut inputs = Vec::new();
    let mut outputs: Vec<Option<Pending>> = Vec::new();
    let mut order = Vec::new();
    let mut preps = Vec::new();
    for (setup_index, (k, io, p, mut j, pending)) in ready.into_iter().enumerate() {
        j.input = setup_index as u32;
        outputs.push(Some(pending));
        inputs.push(BlockAggInput {
            path: io.input.to_string_lossy().into_owned(),
            bands: p.bands.iter().map(|b| b.index).collect(),
            unscale: p.unscale,
        });
        jobs.push(j);
        order.push(k);
        preps.push((io, p));
    }
    let setup = protocol::encode(&WorkerSetup::BlockAgg(BlockAggSetup {
        inputs,
        decoder: cfg.job.decoder,
        ignore_mask: cfg.job.ignore_mask,
    }));
    (BatchJob::new(jobs), order, preps, setup, outputs)
}

/// What the engine left: enough for the report.
struct Ran<'a> {
    job: &'a BatchJob,
    /// Input index of each setup index.
    order: &'a [usize],
    preps: &'a [(Io, Prepared)],
    rec: &'a engine::RunRecord,
    memory: &'a MemoryPlan,
    layout: SlotLayout,
    error: Option<CoordError>,
}

/// Per-input fates to exit code, summary and report.
fn finish(
    cfg: &RunConfig,
    batch: &crate::cli::BatchSpec,
    preps: &[(Io, Prepared)],
    ran: Option<Ran<'_>>,
    fates: Mutex<Vec<OutputFate>>,
    (start, replace_report): (Instant, bool),
) -> Result<RunSummary, CoordError> {
    let fates = fates.into_inner().unwrap_or_else(|p| p.into_inner());
    let run_error = ran.as_ref().and_then(|r| r.error.as_ref());
    let written = fates
        .iter()
        .filter(|f| matches!(f, OutputFate::Committed { .. } | OutputFate::Kept))
        .count();
    let exit_code = exit_code(&fates, run_error, written);
    // The report: per input, then the pool's.
    let mut sections = Vec::new();
    let mut lines = Vec::new();
    let mut opened_total = 0;
    let global = ran.as_ref().map(|r| pool_report(cfg, r, exit_code, start));
    for (k, input) in batch.inputs.iter().enumerate() {
        let fate = &fates[k];
        let mut section = section(input, &batch.output_for(input), fate, run_error);
        let setup_index = ran
            .as_ref()
            .and_then(|r| r.order.iter().position(|&o| o == k));
        if let (Some(r), Some(s)) = (&ran, setup_index) {
            let (io, p) = &r.preps[s];
            fill_section(&mut section, r, s as u32, cfg.one(io), p, start);
            opened_total += section.opened_inputs;
        }
        lines.extend(fate_line(
            cfg,
            batch,
            preps,
            (input, fate),
            setup_index,
            &section,
        ));
        sections.push(section);
    }
    let failed = batch.inputs.len() - written;
    let mut message = lines.join("\n");
    if !message.is_empty() {
        message.push('\n');
    }
    let (workers_n, restarts) = match (&global, &ran) {
        (Some(g), Some(r)) => (r.memory.workers, g.totals.counters.restarts),
        _ => (0, 0),
    };
    message.push_str(&format!(
        "batch: {written} of {} output(s) written in {:.2} s into {}, {} failed; {workers_n} worker(s), {restarts} restart(s), {opened_total} input open(s) in workers",
        batch.inputs.len(),
        start.elapsed().as_secs_f64(),
        batch.out_dir.display(),
        failed,
    ));
    if let Some(path) = &cfg.observe.report {
        let (workers, totals) = match global {
            Some(g) => (g.workers, Some(g.totals)),
            None => (Vec::new(), None),
        };
        let report = BatchReport {
            tool: "blocksum coordinator".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            status: match exit_code {
                protocol::exit::OK => RunStatus::Ok,
                protocol::exit::QUARANTINED => RunStatus::CompletedWithQuarantinedChunks,
                _ => RunStatus::Failed,
            },
            exit_code,
            error: run_error.map(|e| e.to_string()),
            out_dir: batch.out_dir.display().to_string(),
            inputs: sections,
            workers,
            totals,
            opened_inputs: opened_total,
        };
        write_report(batch, (path, replace_report), &report, written)?;
    }
    if let Some(e) = run_error {
        say_run_error(e, written, failed);
    }
    Ok(RunSummary { exit_code, message })
}

/// The summary line of one input's fate (a failure is said on stderr here, unless it was a
/// refusal before the run, said when found).
fn fate_line(
    cfg: &RunConfig,
    batch: &crate::cli::BatchSpec,
    preps: &[(Io, Prepared)],
    (input, fate): (&Path, &OutputFate),
    setup_index: Option<usize>,
    section: &InputReport,
) -> Option<String> {
    match fate {
        OutputFate::Kept => Some(format!(
            "kept {}: committed by the interrupted run (--resume), nothing recomputed",
            batch.output_for(input).display()
        )),
        OutputFate::Committed {
            quarantined,
            resumed,
            ..
        } => {
            let (io, p) = &preps[setup_index.unwrap_or(0)];
            Some(committed_line(
                cfg.one(io),
                p,
                quarantined,
                *resumed,
                section,
            ))
        }
        OutputFate::Failed(e) => {
            if setup_index.is_some() {
                eline(&format!("error: {}: {e}", input.display()));
            }
            None
        }
        OutputFate::Waiting => None,
    }
}

/// The run's own failure, one line; an interrupt names the outputs committed before it,
/// which stay complete.
fn say_run_error(e: &CoordError, written: usize, failed: usize) {
    let text = match e {
        CoordError::Interrupted(sig) if written > 0 => format!(
            "interrupted by {sig}: {written} output(s) committed before it stay complete (named below), the other {failed} not written"
        ),
        e => e.to_string(),
    };
    eline(&format!("error: {text}"));
}

/// An output the run did not complete shares the run's failure (or, with none, is a bug).
fn not_reached(run_error: Option<&CoordError>) -> (i32, String) {
    match run_error {
        Some(e) => (
            e.exit_code(),
            format!("not written: the run ended first: {e}"),
        ),
        None => (
            protocol::exit::INTERNAL,
            "not written, yet the run ended without an error".to_string(),
        ),
    }
}

/// The batch's exit code (the module's doc says the rule).
fn exit_code(fates: &[OutputFate], run_error: Option<&CoordError>, written: usize) -> i32 {
    let quarantined_any = fates
        .iter()
        .any(|f| matches!(f, OutputFate::Committed { quarantined, .. } if !quarantined.is_empty()));
    let first_failure = fates.iter().find_map(|f| match f {
        OutputFate::Failed(e) => Some(e.exit_code()),
        OutputFate::Waiting => Some(not_reached(run_error).0),
        OutputFate::Committed { .. } | OutputFate::Kept => None,
    });
    match (run_error, first_failure) {
        (Some(e), _) => e.exit_code(),
        (None, None) if quarantined_any => protocol::exit::QUARANTINED,
        (None, None) => protocol::exit::OK,
        (None, Some(_)) if written > 0 => protocol::exit::PARTIAL,
        (None, Some(code)) => code,
    }
}

/// The pool's part of the report: its workers and the batch's totals.
fn pool_report(cfg: &RunConfig, r: &Ran<'_>, exit_code: i32, start: Instant) -> Report {
    let all = r.job.all_tasks();
    let lead = &r.preps[0];
    let view = RunView {
        one: cfg.one(&lead.0),
        prep: &lead.1,
        sched: &r.rec.sched,
        tasks: &all,
        mem: &r.rec.memory,
        write_us: &r.rec.write_us,
        start,
        adjusted: Vec::new(),
        plan_ids: &[],
        journal: None,
    };
    let res = match &r.error {
        Some(e) => Err(CoordError::Internal(e.to_string())),
        None => Ok(()),
    };
    let q = view.quarantined();
    let mut rep = view.report(exit_code, &res, &q);
    rep.totals.chunks = r.job.plan_len();
    let bytes: u64 = r
        .preps
        .iter()
        .map(|(_, p)| p.plan.width * p.plan.height * p.plan.pixel_bytes)
        .sum();
    rep.totals.input_mib_per_s =
        bytes as f64 / (1 << 20) as f64 / (rep.totals.wall_ms.max(1) as f64 / 1000.0);
    rep
}

/// One input's section of the report, from its fate (`fill_section` adds what the run did).
fn section(
    input: &Path,
    output: &Path,
    fate: &OutputFate,
    run_error: Option<&CoordError>,
) -> InputReport {
    let (status, code, error) = match fate {
        OutputFate::Committed { quarantined, .. } if quarantined.is_empty() => {
            (RunStatus::Ok, protocol::exit::OK, None)
        }
        OutputFate::Kept => (RunStatus::Ok, protocol::exit::OK, None),
        OutputFate::Committed { .. } => (
            RunStatus::CompletedWithQuarantinedChunks,
            protocol::exit::QUARANTINED,
            None,
        ),
        OutputFate::Failed(e) => (RunStatus::Failed, e.exit_code(), Some(e.to_string())),
        OutputFate::Waiting => {
            let (code, why) = not_reached(run_error);
            (RunStatus::Failed, code, Some(why))
        }
    };
    InputReport {
        input: input.display().to_string(),
        output: output.display().to_string(),
        status,
        exit_code: code,
        error,
        options: None,
        plan: None,
        first_task: None,
        chunks: Vec::new(),
        quarantined_windows: Vec::new(),
        adjusted_by_band: match fate {
            OutputFate::Committed { adjusted, .. } => adjusted.clone(),
            _ => Vec::new(),
        },
        opened_inputs: 0,
    }
}

/// The summary line of a committed output, with its warnings.
fn committed_line(
    one: OneRun<'_>,
    p: &Prepared,
    quarantined: &[TaskId],
    resumed: usize,
    section: &InputReport,
) -> String {
    let shard_dir = crate::shard::dir_for(&one.io.output);
    let shard = one
        .cfg
        .durability
        .shard
        .map(|s| (s, crate::shard::range(&p.plan, s), shard_dir.as_path()));
    let mut line = summary::head(&one.io.output, p, shard);
    line.push_str(&summary::resumed(
        resumed,
        one.cfg.durability.shard.is_some(),
    ));
    if !quarantined.is_empty() {
        line.push_str(&format!(
            "; warning: {} window(s) quarantined, their pixels are nodata (exit 5 for this input; the file's BLOCKSUM_QUARANTINED_CHUNKS names them)",
            quarantined.len()
        ));
    }
    for (i, a) in section.adjusted_by_band.iter().enumerate() {
        if a.clamped + a.moved_off_nodata > 0 {
            line.push_str(&format!(
                "; warning: band {}: {} valid pixel(s) clamped and {} moved off nodata",
                i + 1,
                a.clamped,
                a.moved_off_nodata
            ));
        }
    }
    line
}

/// Writes the batch's report. Failing to, after every output was written complete, is exit
/// 4; otherwise the batch's own outcome is the one reported.
fn write_report(
    batch: &crate::cli::BatchSpec,
    (path, replace): (&Path, bool),
    report: &BatchReport,
    written: usize,
) -> Result<(), CoordError> {
    let written_report = serde_json::to_string_pretty(report)
        .map_err(SideFileError::from)
        .and_then(|text| Ok(output::write_report(path, &text, replace)?));
    if let Err(source) = written_report {
        if written > 0 && report.exit_code == protocol::exit::OK {
            return Err(CoordError::ReportWrite {
                output: batch.out_dir.clone(),
                flag: "--report",
                path: path.to_path_buf(),
                source,
            });
        }
        tracing::error!("writing the report '{}': {source}", path.display());
    }
    Ok(())
}

/// One input's options, plan and chunks, read from the run.
fn fill_section(
    s: &mut InputReport,
    r: &Ran<'_>,
    setup_index: u32,
    one: OneRun<'_>,
    p: &Prepared,
    start: Instant,
) {
    let sched = &r.rec.sched;
    let view = RunView {
        one,
        prep: p,
        sched,
        tasks: &[],
        mem: &r.rec.memory,
        write_us: &r.rec.write_us,
        start,
        adjusted: Vec::new(),
        plan_ids: &[],
        journal: None,
    };
    s.options = Some(view.options());
    s.plan = Some(PlanSummary::new(
        &p.plan,
        r.layout.slots,
        r.layout.slot_bytes(),
    ));
    let tasks = r.job.tasks_of(setup_index);
    s.first_task = tasks.first().map(|t| t.0);
    let local_of = |t: TaskId| r.job.owner.get(t.0 as usize).map(|o| o.1 .0);
    for t in tasks {
        let (_, chunk) = r.job.local(t);
        let attempts = sched.attempts(t).to_vec();
        s.opened_inputs += attempts
            .iter()
            .filter_map(|a| a.stats)
            .map(|st| st.opened_inputs as u64)
            .sum::<u64>();
        let outcome = sched.outcome(t);
        if outcome == Some(ChunkOutcome::Quarantined) {
            let cause = sched
                .attempts(t)
                .iter()
                .rev()
                .find_map(|a| a.failure.as_ref())
                .map(|c| c.summary())
                .unwrap_or_else(|| "unknown cause".into());
            s.quarantined_windows.push(QuarantinedWindow {
                id: chunk.id.0,
                window: [
                    chunk.window.x,
                    chunk.window.y,
                    chunk.window.w,
                    chunk.window.h,
                ],
                out_window: [chunk.out.x, chunk.out.y, chunk.out.w, chunk.out.h],
                cause,
            });
        }
        s.chunks.push(ChunkReport {
            id: chunk.id.0,
            plan_id: super::view::plan_id(&r.job.inputs[setup_index as usize].plan_ids, chunk.id.0),
            parent: sched.parent(t).and_then(local_of),
            window: [
                chunk.window.x,
                chunk.window.y,
                chunk.window.w,
                chunk.window.h,
            ],
            out_window: [chunk.out.x, chunk.out.y, chunk.out.w, chunk.out.h],
            outcome,
            split: sched.split_reason(t),
            attempts,
            write_us: r.rec.write_us.get(t.0 as usize).copied().flatten(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::exit;

    fn committed(quarantined: Vec<u32>) -> OutputFate {
        OutputFate::Committed {
            adjusted: Vec::new(),
            quarantined: quarantined.into_iter().map(TaskId).collect(),
            resumed: 0,
        }
    }

    fn failed() -> OutputFate {
        OutputFate::Failed(CoordError::OutputExists("o.tif".into()))
    }

    /// The module's rule: 0, 5 when some output has quarantined chunks, 8 when some failed
    /// and some were written, the first failure's code when none was, the run's own error
    /// above all.
    #[test]
    fn the_batch_exit_code_follows_the_rule() {
        let run_failed = CoordError::Interrupted("SIGINT");
        assert_eq!(
            exit_code(&[committed(vec![]), OutputFate::Kept], None, 1),
            exit::OK
        );
        assert_eq!(
            exit_code(&[committed(vec![]), committed(vec![3])], None, 2),
            exit::QUARANTINED
        );
        assert_eq!(
            exit_code(&[committed(vec![]), failed()], None, 1),
            exit::PARTIAL
        );
        assert_eq!(exit_code(&[failed(), failed()], None, 0), exit::OUTPUT);
        assert_eq!(
            exit_code(
                &[committed(vec![]), OutputFate::Waiting],
                Some(&run_failed),
                1
            ),
            run_failed.exit_code()
        );
        // An output left waiting without a run error is this tool's fault, never success.
        assert_eq!(exit_code(&[OutputFate::Waiting], None, 0), exit::INTERNAL);
    }
}

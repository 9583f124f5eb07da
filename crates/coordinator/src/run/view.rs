//! A finished run read back: which windows were quarantined and why, the closing warning,
//! and the JSON report.

use super::*;
use crate::{
    error::SideFileError,
    report::{KernelOptions, MemoryOptions, ReportOptions, RunStatus},
};

/// A finished run, as the report and the summary read it.
pub(super) struct RunView<'a> {
    pub(super) one: OneRun<'a>,
    pub(super) prep: &'a Prepared,
    pub(super) sched: &'a Scheduler,
    pub(super) tasks: &'a [Chunk],
    /// The plan chunk id of each of the first tasks (`BlockAggJob::plan_ids`).
    pub(super) plan_ids: &'a [u32],
    pub(super) mem: &'a MemState,
    pub(super) write_us: &'a [Option<u64>],
    pub(super) start: Instant,
    pub(super) adjusted: Vec<Adjusted>,
    pub(super) journal: Option<crate::journal::JournalStats>,
}

impl RunView<'_> {
    /// Quarantined chunks (the exact windows: parts of split chunks), by task id.
    pub(super) fn quarantined(&self) -> Vec<u32> {
        (0..self.sched.tasks() as u32)
            .filter(|&t| self.sched.outcome(protocol::TaskId(t)) == Some(ChunkOutcome::Quarantined))
            .collect()
    }

    /// The last failure of a quarantined chunk: GDAL's text or the signal.
    pub(super) fn quarantine_cause(&self, task: u32) -> String {
        self.sched
            .attempts(protocol::TaskId(task))
            .iter()
            .rev()
            .find_map(|a| a.failure.as_ref())
            .map(|c| c.summary())
            .unwrap_or_else(|| "unknown cause".into())
    }

    /// The closing warning: which windows are nodata, and the first cause.
    pub(super) fn quarantine_warning(&self, quarantined: &[u32]) -> String {
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
        let more = if self.one.cfg.observe.report.is_some() {
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

    pub(super) fn options(&self) -> ReportOptions {
        let (cfg, prep) = (self.one.cfg, self.prep);
        let m = &prep.memory;
        ReportOptions {
            factor: prep.plan.mapping.factor().map(|f| f as u32),
            target_grid: match &prep.plan.mapping {
                Mapping::Cells { .. } => Some(prep.plan.mapping.describe()),
                Mapping::Factor { .. } => None,
            },
            agg: cfg.job.kernel.agg().map(|a| a.name().to_string()),
            decoder: cfg.job.decoder.name().to_string(),
            kernel: match &cfg.job.kernel {
                Kernel::BlockAgg(_) => None,
                Kernel::Map(k) => Some(KernelOptions {
                    name: kernel_name(cfg, k),
                    library: k.lib.as_ref().map(|l| l.display().to_string()),
                    args: k.args.iter().map(|(a, v)| format!("{a}={v}")).collect(),
                    out_bands: k.out_bands,
                    in_process_fallback: k.in_process_fallback,
                }),
            },
            bands: prep.bands.iter().map(|b| b.index).collect(),
            sample_type: prep.sample.gdal_name().into(),
            output_type: prep.out_type.gdal_name().into(),
            output_nodata: match prep.out_nodata {
                None => serde_json::Value::Null,
                Some(v) if v.is_nan() => serde_json::Value::String("nan".into()),
                Some(v) => serde_json::json!(v),
            },
            workers: m.workers,
            memory: MemoryOptions {
                limit_per_worker: m.limit,
                limit_is_auto: m.limit_is_auto,
                soft_limit: m.soft,
                gdal_cache_per_worker: m.gdal_cache,
                ring: m.ring,
                coordinator_expected: m.coordinator,
                total_expected: m.total,
                available: m.available,
                min_free_memory: cfg.pool.min_free_memory,
            },
            max_attempts: cfg.pool.max_attempts,
            task_timeout: match cfg.pool.task_timeout {
                None => "none".to_string(),
                Some(TimeoutSpec::Fixed(d)) => format!("{} ms", d.as_millis()),
                Some(TimeoutSpec::PercentOfMedian(p)) => {
                    format!("{p}% of the median chunk time")
                }
            },
            speculation: match cfg.pool.speculation {
                SpeculationSpec::Off => "off".to_string(),
                SpeculationSpec::After { factor, floor } => format!(
                    "{factor}x the median chunk time, at least {} ms",
                    floor.as_millis()
                ),
            },
            faults: self
                .one
                .faults()
                .iter()
                .map(|f| {
                    format!(
                        "{}:{}:{}",
                        f.kind,
                        f.chunk.map(|c| c.to_string()).unwrap_or("*".into()),
                        f.times.map(|t| t.to_string()).unwrap_or_default()
                    )
                })
                .collect(),
        }
    }

    /// Each worker process the run had: its life, its chunks, its memory.
    fn workers(&self) -> Vec<WorkerReport> {
        let mem = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        self.sched
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
                memory_samples: mem
                    .samples
                    .get(&(r.worker.0, r.gen))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect()
    }

    pub(super) fn report(
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
                plan_id: plan_id(self.plan_ids, c.id.0),
                parent: self.sched.parent(c.id).map(|p| p.0),
                window: [c.window.x, c.window.y, c.window.w, c.window.h],
                out_window: [c.out.x, c.out.y, c.out.w, c.out.h],
                outcome: self.sched.outcome(c.id),
                split: self.sched.split_reason(c.id),
                attempts: self.sched.attempts(c.id).to_vec(),
                write_us: self.write_us.get(c.id.0 as usize).copied().flatten(),
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
        let workers = self.workers();
        let deaths = deaths_by_cause(&workers, exit_code, result);
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
            fallback_reads: chunks
                .iter()
                .flat_map(|c| &c.attempts)
                .filter(|a| a.stats.is_some_and(|s| s.fallback_read))
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
                Ok(()) if quarantined.is_empty() => RunStatus::Ok,
                Ok(()) => RunStatus::CompletedWithQuarantinedChunks,
                Err(_) => RunStatus::Failed,
            },
            error: result.as_ref().err().map(|e| e.to_string()),
            exit_code,
            input: self.one.io.input.display().to_string(),
            output: self.one.io.output.display().to_string(),
            options: self.options(),
            plan: PlanSummary::new(plan, self.prep.layout.slots, self.prep.layout.slot_bytes()),
            chunks,
            workers,
            totals,
            journal: self.journal.clone(),
        }
    }
}

/// Worker deaths by cause, as the summary counts them: recycling is no death, nor a clean
/// exit of a run that succeeded.
fn deaths_by_cause(
    workers: &[WorkerReport],
    exit_code: i32,
    result: &Result<(), CoordError>,
) -> std::collections::BTreeMap<String, u32> {
    let mut deaths = std::collections::BTreeMap::new();
    for w in workers {
        if let Some(c) = &w.cause {
            let k = match c {
                engine::sched::FailureCause::Signal { name, .. } => format!("killed by {name}"),
                // Recycled, or a speculative race's loser: stopped on purpose.
                engine::sched::FailureCause::Recycled
                | engine::sched::FailureCause::Superseded { .. } => continue,
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
    deaths
}

/// A chunk's `plan_id` in the report, by the report's rule (`report::ChunkReport`): its id in
/// the whole plan where that differs from its id in this run (`plan_ids` holds the plan id
/// of each of the run's first tasks); none for the parts of a split chunk.
pub(super) fn plan_id(plan_ids: &[u32], id: u32) -> Option<u32> {
    plan_ids.get(id as usize).copied().filter(|&p| p != id)
}

impl RunView<'_> {
    /// The notes after a single run's summary line: chunks run in process after a
    /// timeout, worker deaths, pixels adjusted to fit the output type, the pyramid and COG.
    pub(super) fn closing_notes(&self, t: &Totals, finished: &crate::cog::Finished) -> String {
        let prep = self.prep;
        let mut message = String::new();
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
        message
    }
}

/// A single run's last words: the `run_end` event, the HTML page, the JSON report. The
/// run's lock is still held. A side file that cannot be written after a complete output is
/// exit 4 (`ReportWrite`); after a failed run, the run's own failure is the one reported.
/// `replace`: the report and the page may replace files of their names (`--overwrite`, or
/// the interrupted run's under `--resume`).
pub(super) fn write_report_files(
    one: OneRun<'_>,
    (events, replace): (Option<&engine::observe::EventLog>, (bool, bool)),
    report: &Report,
    result: &Result<(), CoordError>,
) -> Result<(), CoordError> {
    let cfg = one.cfg;
    if let Some(log) = events {
        log.emit(
            report.totals.wall_ms,
            &engine::observe::RunEvent::RunEnd {
                status: serde_json::to_value(report.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                exit_code: report.exit_code,
                error: report.error.clone(),
                wall_ms: report.totals.wall_ms,
            },
        );
    }
    // The side outputs: the HTML page, and whether the event stream was written whole.
    let mut side: Vec<(&'static str, PathBuf, SideFileError)> = Vec::new();
    if let Some(path) = &cfg.observe.report_html {
        if let Err(e) = output::write_report(path, &crate::html::render(report), replace.1) {
            side.push(("--report-html", path.clone(), e.into()));
        }
    }
    if let (Some(log), Some(path)) = (events, &cfg.observe.events) {
        if let Some(e) = log.error() {
            side.push(("--events", path.clone(), SideFileError::Stream(e)));
        }
    }
    if let Some(path) = &cfg.observe.report {
        if let Err(e) = write_json(path, report, replace.0) {
            side.insert(0, ("--report", path.clone(), e));
        }
    }
    if result.is_err() {
        // The run's own failure is the one to report.
        for (_, path, reason) in &side {
            tracing::error!("writing '{}': {reason}", path.display());
        }
        return Ok(());
    }
    match side.into_iter().next() {
        // The output is committed and complete; a side file is not: exit 4 says so.
        Some((flag, path, source)) => Err(CoordError::ReportWrite {
            output: one.io.output.clone(),
            flag,
            path,
            source,
        }),
        None => Ok(()),
    }
}

/// The JSON report at `path`.
fn write_json(path: &Path, report: &Report, overwrite: bool) -> Result<(), SideFileError> {
    let text = serde_json::to_string_pretty(report)?;
    output::write_report(path, &text, overwrite).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            SideFileError::Appeared
        } else {
            e.into()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_id_is_named_only_where_it_differs_from_the_chunk_id() {
        // A whole run: task i is plan chunk i.
        assert_eq!(plan_id(&[0, 1, 2], 1), None);
        // A resumed run or a shard: task 1 is plan chunk 7.
        assert_eq!(plan_id(&[5, 7], 1), Some(7));
        // The parts of a split chunk (after the first tasks) have none.
        assert_eq!(plan_id(&[5, 7], 2), None);
    }
}

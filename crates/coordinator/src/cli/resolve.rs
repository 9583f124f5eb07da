//! Resolution: the parsed command line and the layered settings become the run's config,
//! a [`RunConfig`] of parts (`config`), with no option left to default. Checks that need more
//! than one value (bands given twice, faults without workers, more spares than workers) live
//! here.

use worker::SampleType;

use super::{
    config::{
        Durability, JobConfig, Kernel, MapSpec, Observation, OutputConfig, PoolConfig, RunConfig,
        Target,
    },
    creation::CreationOptions,
    schema::{AggArg, Cli, FormatArg, JobArgs, MapArgs, PlanArgs, ResampleArgs},
    settings::{self, Setting, Settings, Source, Workers, DEFAULT_KILL_GRACE},
};
use crate::{
    cog::{self, OutputFormat},
    error::CoordError,
    grid::{GridRequest, TargetRequest},
    sched::SpeculationSpec,
};

/// The output grid the options give: exactly one of `--factor` and a target grid (`--tr`
/// with `--te`/`--tap`, or `--like`).
fn grid_request(job: &JobArgs) -> Result<GridRequest, CoordError> {
    let usage = |m: &str| Err(CoordError::Usage(m.into()));
    let target = !job.tr.is_empty() || !job.te.is_empty() || job.tap || job.like.is_some();
    match (job.factor, target) {
        (Some(_), true) => {
            return usage("--factor and --tr/--te/--tap/--like both give the output grid: give one")
        }
        (Some(f), false) => return Ok(GridRequest::Factor(f)),
        (None, false) => {
            return usage("no output grid: give --factor F, --tr XRES YRES or --like REF")
        }
        (None, true) => {}
    }
    if job.like.is_some() && (!job.tr.is_empty() || !job.te.is_empty() || job.tap) {
        return usage(
            "--like takes the whole grid from REF: it cannot be combined with --tr, --te or --tap",
        );
    }
    if job.like.is_none() && job.tr.is_empty() {
        return usage("--te and --tap need --tr XRES YRES");
    }
    Ok(GridRequest::Target(TargetRequest {
        tr: (job.tr.len() == 2).then(|| (job.tr[0], job.tr[1])),
        te: (job.te.len() == 4).then(|| [job.te[0], job.te[1], job.te[2], job.te[3]]),
        tap: job.tap,
        like: job.like.clone(),
    }))
}

/// The layered settings of a `plan` or `resample` command line (`--in-process` included).
pub fn job_settings(cli: &Cli, job: &JobArgs) -> Result<Settings, CoordError> {
    let mut st = settings::settings(cli.config.as_deref(), &job.pool)?;
    if job.in_process {
        st.workers = Setting {
            value: Workers::N(0),
            source: Source::Flag,
        };
    }
    Ok(st)
}

/// GDAL creation options the output gets unless the command line sets the key.
const DEFAULT_CREATION_OPTIONS: [(&str, &str); 5] = [
    ("TILED", "YES"),
    ("COMPRESS", "DEFLATE"),
    ("BIGTIFF", "IF_SAFER"),
    ("NUM_THREADS", "ALL_CPUS"),
    // Level 1 compresses the Float64 output about 4x faster than the default 6 for a few
    // percent more bytes: the writer then keeps up with the readers.
    ("ZLEVEL", "1"),
];

/// `co` and the default creation options whose key it does not set.
pub fn with_default_creation_options(co: CreationOptions) -> CreationOptions {
    co.with_defaults(&DEFAULT_CREATION_OPTIONS)
}

/// What a batch of several inputs cannot do yet.
fn refuse_for_batch(r: &ResampleArgs) -> Result<(), CoordError> {
    let unsupported = [
        (r.pyramid, "--pyramid"),
        (r.run.format == FormatArg::Cog, "--of COG"),
        (r.run.events.is_some(), "--events"),
        (r.run.report_html.is_some(), "--report-html"),
    ];
    match unsupported.iter().find(|(on, _)| *on) {
        Some((_, flag)) => Err(CoordError::Usage(format!(
            "{flag} is not available for a batch of several inputs yet: run each input on its own"
        ))),
        None => Ok(()),
    }
}

/// The busy workers, and whether memory may lower them (`--workers auto`).
fn workers(st: &Settings) -> (u32, bool) {
    match st.workers.value {
        Workers::Auto => (settings::default_threads(), true),
        Workers::N(n) => {
            if n > settings::cpus() {
                tracing::warn!(
                    "--workers {n} is more than the {} CPUs here: honoured",
                    settings::cpus()
                );
            }
            (n, false)
        }
    }
}

/// The checks that need more than one value: bands given twice, faults without workers,
/// more spares than workers (lowered, with a warning). Returns the spare workers.
fn check_job(job: &JobArgs, st: &Settings, workers: u32) -> Result<u32, CoordError> {
    for (i, b) in job.bands.iter().enumerate() {
        if job.bands[..i].contains(b) {
            return Err(CoordError::Usage(format!(
                "--band {b} is given twice: each band is written once"
            )));
        }
    }
    if workers == 0 && !job.faults.is_empty() {
        return Err(CoordError::Usage(
            "--inject-fault needs worker processes: it cannot be used with --workers 0 or --in-process".into(),
        ));
    }
    let mut spare_workers = st.spare_workers.value;
    if workers > 0 && spare_workers > workers {
        tracing::warn!(
            "{} {spare_workers} is more than the {workers} worker(s): using {workers} (a spare only takes over a crashed worker's chunk)",
            settings::SPARE_WORKERS.source_name(&st.spare_workers.source)
        );
        spare_workers = workers;
    }
    Ok(spare_workers)
}

/// Builds the resolved config for `resample` (and, through [`resolve_map`], `map`).
pub fn resolve(
    cli: &Cli,
    job: &JobArgs,
    r: &ResampleArgs,
) -> Result<(RunConfig, Settings), CoordError> {
    let target = super::batch::resolve_target(r)?;
    if let Target::Batch(_) = target {
        refuse_for_batch(r)?;
    }
    build(cli, job, Some(r), target)
}

/// Builds the resolved config for `plan`: a run of its INPUT, with the defaults of what only
/// a run that writes sets.
pub fn resolve_plan(cli: &Cli, p: &PlanArgs) -> Result<(RunConfig, Settings), CoordError> {
    let (mut cfg, st) = build(cli, &p.job, None, Target::Plan(p.input.clone()))?;
    cfg.job.decoder = p.decoder.into();
    Ok((cfg, st))
}

/// The config of `target`: `r` is `resample`'s or `map`'s arguments, `None` for `plan`.
fn build(
    cli: &Cli,
    job: &JobArgs,
    r: Option<&ResampleArgs>,
    target: Target,
) -> Result<(RunConfig, Settings), CoordError> {
    let st = job_settings(cli, job)?;
    let workers = workers(&st);
    let co = CreationOptions::parse(
        r.map(|r| r.run.creation_options.clone())
            .unwrap_or_default(),
    )?;
    let pool = pool_config(job, r, &st, workers)?;
    let pyramid = r.is_some_and(|r| r.pyramid);
    let (format, co) = cog::resolve_format(
        r.is_some_and(|r| r.run.format == FormatArg::Cog),
        pyramid,
        co,
    )?;
    let job_cfg = JobConfig {
        grid: grid_request(job)?,
        kernel: Kernel::BlockAgg(job.agg.into()),
        bands: job.bands.clone(),
        out_type: job.ot,
        ignore_mask: job.ignore_mask,
        decoder: r.map(|r| r.decoder.into()).unwrap_or_default(),
    };
    let output = OutputConfig {
        format,
        pyramid,
        creation_options: with_default_creation_options(co),
        overwrite: r.is_some_and(|r| r.run.overwrite),
    };
    let durability = Durability {
        resume: r.is_some_and(|r| r.run.resume),
        shard: match r {
            Some(r) => {
                crate::shard::resolve(r.run.shard, r.run.shards, &|k| std::env::var(k).ok())?
            }
            None => None,
        },
    };
    if durability.shard.is_some()
        && (output.pyramid || matches!(output.format, OutputFormat::Cog { .. }))
    {
        return Err(CoordError::Usage(
            "--shard writes a journal for `merge`, which writes a GeoTIFF without overviews: --pyramid and --of COG are not available with --shard".into(),
        ));
    }
    let observe = Observation {
        report: r.and_then(|r| r.run.report.clone()),
        report_html: r.and_then(|r| r.run.report_html.clone()),
        events: r.and_then(|r| r.run.events.clone()),
        quiet: cli.quiet,
    };
    let cfg = RunConfig {
        target,
        job: job_cfg,
        pool,
        output,
        durability,
        observe,
    };
    Ok((cfg, st))
}

/// The pool's part: the layered settings, the checks that need more than one value, and
/// the run's own flags (worker binary, kill grace).
fn pool_config(
    job: &JobArgs,
    r: Option<&ResampleArgs>,
    st: &Settings,
    (workers, workers_auto): (u32, bool),
) -> Result<PoolConfig, CoordError> {
    let spare_workers = check_job(job, st, workers)?;
    Ok(PoolConfig {
        workers,
        workers_auto,
        spare_workers,
        in_process_threads: settings::default_threads(),
        worker_bin: r
            .and_then(|r| r.run.worker_bin.clone())
            .unwrap_or_else(crate::run::default_worker_bin),
        max_attempts: st.max_attempts.value,
        task_timeout: st.task_timeout.value,
        task_timeout_floor: st.task_timeout_floor.value,
        speculation: match st.speculation.value {
            settings::Speculate::Off => SpeculationSpec::Off,
            settings::Speculate::Factor(factor) => SpeculationSpec::After {
                factor,
                floor: st.speculation_floor.value,
            },
        },
        start_timeout: st.start_timeout.value,
        kill_grace: r
            .and_then(|r| r.run.kill_grace)
            .unwrap_or(DEFAULT_KILL_GRACE),
        faults: job.faults.clone(),
        memory_limit: st.memory_limit_per_worker.value,
        memory_limit_from: settings::MEMORY_LIMIT.source_name(&st.memory_limit_per_worker.source),
        soft_fraction: st.memory_soft_fraction.value,
        memory_poll: st.memory_poll.value,
        min_free_memory: st.min_free_memory.value,
        chunk_prefetch: st.chunk_prefetch.value,
        chunk_queue: st.chunk_queue.value,
        // `--chunk-mib` is positive and finite (its parser says so).
        chunk_bytes: (job.chunk_mib * (1 << 20) as f64) as u64,
    })
}

/// Builds the resolved config for `map`: the options it shares with `resample`, resolved
/// the same way, and its kernel.
pub fn resolve_map(cli: &Cli, m: &MapArgs) -> Result<(RunConfig, Settings), CoordError> {
    if m.kernel_lib.is_none() && m.run.worker_bin.is_none() {
        return Err(CoordError::Usage(
            "map needs a kernel: --kernel-lib PATH.so (a C ABI library), or --worker-bin PATH (a Rust kernel's worker binary)".into(),
        ));
    }
    if m.kernel_lib.is_none() && m.in_process_fallback {
        return Err(CoordError::Usage(
            "--in-process-fallback needs --kernel-lib: a Rust kernel's own binary cannot run inside the coordinator".into(),
        ));
    }
    if let Some(lib) = &m.kernel_lib {
        if !lib.is_file() {
            return Err(CoordError::BadInput(format!(
                "--kernel-lib '{}' is not a file",
                lib.display()
            )));
        }
    }
    let job = JobArgs {
        factor: Some(m.factor),
        tr: Vec::new(),
        te: Vec::new(),
        tap: false,
        like: None,
        // The clap struct needs one; the run's kernel is the map's, set below.
        agg: AggArg::Sum,
        bands: m.bands.clone(),
        ot: Some(SampleType::F64),
        chunk_mib: m.chunk_mib,
        in_process: false,
        ignore_mask: false,
        faults: m.faults.clone(),
        pool: m.pool.clone(),
    };
    let r = ResampleArgs {
        job: job.clone(),
        paths: vec![m.input.clone(), m.output.clone()],
        out_dir: None,
        inputs: None,
        run: m.run.clone(),
        // `map` reads through GDAL: its kernels get f64 windows with a validity mask.
        decoder: super::schema::DecoderArg::Gdal,
        pyramid: false,
    };
    let (mut cfg, st) = resolve(cli, &job, &r)?;
    if cfg.pool.workers == 0 && !m.in_process_fallback {
        return Err(CoordError::Usage(
            "map loads the kernel in worker processes only: --workers 0 needs --in-process-fallback (the coordinator then loads it, and a crash in it ends the run)".into(),
        ));
    }
    // The library is resolved now: a worker's working directory is not ours to rely on.
    let lib =
        match &m.kernel_lib {
            Some(l) => Some(std::fs::canonicalize(l).map_err(|e| {
                CoordError::BadInput(format!("--kernel-lib '{}': {e}", l.display()))
            })?),
            None => None,
        };
    cfg.job.kernel = Kernel::Map(MapSpec {
        lib,
        args: m.kernel_args.clone(),
        out_bands: m.out_bands,
        in_process_fallback: m.in_process_fallback,
    });
    Ok((cfg, st))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use clap::Parser;
    use worker::Agg;

    use super::*;
    use crate::cli::{Command, Io};

    fn resolved(args: &[&str]) -> RunConfig {
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Resample(r) = &cli.command else {
            panic!("not resample: {args:?}")
        };
        resolve(&cli, &r.job, r).unwrap().0
    }

    #[test]
    fn a_level_keeps_the_work_and_drops_what_the_base_run_owns() {
        let cfg = resolved(&[
            "coordinator",
            "--workers",
            "3",
            "resample",
            "in.tif",
            "out.tif",
            "-f",
            "4",
            "--agg",
            "max",
            "--band",
            "2",
            "--report",
            "r.json",
            "--report-html",
            "r.html",
            "--events",
            "e.jsonl",
            "--overwrite",
            "--resume",
            "--pyramid",
            "--inject-fault",
            "crash:1",
            "--co",
            "BLOCKXSIZE=128",
        ]);
        let level = crate::cog::LevelSpec {
            grid: GridRequest::Factor(8),
            output: PathBuf::from("x2.tif"),
            creation_options: CreationOptions::of(&["TILED=YES"]),
        };
        let Target::Single(io) = &cfg.target else {
            panic!("not a single run: {:?}", cfg.target)
        };
        let l = cfg.one(io).level(&level);
        // The same work: input, kernel, bands, pool.
        let Target::Single(lio) = &l.target else {
            panic!("a level is a single run: {:?}", l.target)
        };
        assert_eq!(lio.input, io.input);
        assert_eq!(l.job.kernel.agg(), Some(Agg::Max));
        assert_eq!(l.job.bands, vec![2]);
        assert_eq!(l.pool.workers, cfg.pool.workers);
        assert_eq!(l.pool.worker_bin, cfg.pool.worker_bin);
        // At the level's factor, into its scratch file.
        assert_eq!(
            (&l.job.grid, lio.output.as_path()),
            (&GridRequest::Factor(8), Path::new("x2.tif"))
        );
        assert_eq!(l.output.creation_options, level.creation_options);
        // Nothing the base run owns.
        assert!(
            l.observe.report.is_none()
                && l.observe.report_html.is_none()
                && l.observe.events.is_none()
        );
        assert!(!l.output.overwrite && !l.durability.resume && !l.output.pyramid);
        assert!(l.pool.faults.is_empty() && l.durability.shard.is_none());
        assert_eq!(l.output.format, OutputFormat::GTiff);
        assert_eq!(
            lio,
            &Io {
                input: PathBuf::from("in.tif"),
                output: PathBuf::from("x2.tif")
            }
        );
    }

    #[test]
    fn map_runs_its_kernel_and_resample_aggregates() {
        let cfg = resolved(&["coordinator", "resample", "in.tif", "out.tif", "-f", "2"]);
        assert!(matches!(cfg.job.kernel, Kernel::BlockAgg(Agg::Sum)));
        assert_eq!(cfg.job.kernel.command(), "resample");
        let lib = tempfile::NamedTempFile::new().unwrap();
        let cli = Cli::try_parse_from([
            "coordinator",
            "map",
            "in.tif",
            "out.tif",
            "--kernel-lib",
            lib.path().to_str().unwrap(),
        ])
        .unwrap();
        let Command::Map(m) = &cli.command else {
            panic!("not map")
        };
        let (cfg, _) = resolve_map(&cli, m).unwrap();
        let Kernel::Map(spec) = &cfg.job.kernel else {
            panic!("map resolved to {:?}", cfg.job.kernel)
        };
        assert_eq!(cfg.job.kernel.agg(), None);
        assert_eq!(cfg.job.kernel.command(), "map");
        assert!(spec.lib.is_some());
    }
}

//! Resolution: the parsed command line and the layered settings become the run's config,
//! [`ResampleConfig`], with no option left to default. Checks that need more than one value
//! (bands given twice, faults without workers, more spares than workers) live here.

use std::{path::PathBuf, time::Duration};

use protocol::FaultSpec;
use worker::{Agg, Decoder, SampleType};

use super::{
    creation::CreationOptions,
    schema::{AggArg, Cli, FormatArg, JobArgs, MapArgs, ResampleArgs},
    settings::{self, Setting, Settings, Source, Workers, DEFAULT_KILL_GRACE},
};
use crate::{
    cog::{self, OutputFormat},
    error::CoordError,
    grid::{GridRequest, TargetRequest},
    sched::{SpeculationSpec, TimeoutSpec},
};

/// Everything `resample` needs, resolved: no option left to default.
#[derive(Debug, Clone)]
pub struct ResampleConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    /// The output grid: F x F blocks, or a target grid.
    pub grid: GridRequest,
    /// What the workers compute over each chunk.
    pub kernel: Kernel,
    pub bands: Vec<u32>,
    pub out_type: Option<SampleType>,
    pub chunk_bytes: u64,
    /// 0: in-process only.
    pub workers: u32,
    /// `--workers auto`: memory may lower `workers`.
    pub workers_auto: bool,
    /// Warm spare worker processes beside the busy ones (pool only).
    pub spare_workers: u32,
    pub in_process_threads: u32,
    pub report: Option<PathBuf>,
    /// `--report-html`: the report as a page.
    pub report_html: Option<PathBuf>,
    /// `--events`: the event stream (`-`: stdout).
    pub events: Option<PathBuf>,
    pub overwrite: bool,
    pub creation_options: CreationOptions,
    pub worker_bin: PathBuf,
    pub max_attempts: u32,
    pub task_timeout: Option<TimeoutSpec>,
    /// The least limit a percentage `task_timeout` gives.
    pub task_timeout_floor: Duration,
    /// Speculative backup attempts of long-running chunks (`--speculation`,
    /// `--speculation-floor`).
    pub speculation: SpeculationSpec,
    /// Deadline for a new worker's hello.
    pub start_timeout: Duration,
    pub kill_grace: Duration,
    pub faults: Vec<FaultSpec>,
    /// Hard per-worker limit (RLIMIT_DATA).
    pub memory_limit: Option<u64>,
    /// Where `memory_limit` came from, as messages name it (flag, variable, or file and key).
    pub memory_limit_from: String,
    pub soft_fraction: f64,
    pub memory_poll: Duration,
    /// Admission: no dispatch while available memory is below this.
    pub min_free_memory: Option<u64>,
    /// Slots beyond one per worker and lane.
    pub chunk_prefetch: u32,
    /// Upper bound on the slot ring (the seed's `queue_sizes.chunk_queue`).
    pub chunk_queue: Option<u32>,
    pub quiet: bool,
    /// Which decoder the kernels read pixels with.
    pub decoder: Decoder,
    /// GTiff or COG (with the COG driver's options; `creation_options` are then the staged
    /// GTiff's).
    pub format: OutputFormat,
    /// `--pyramid`: exact aggregate overviews (`crate::cog`).
    pub pyramid: bool,
    /// `resample IN1 IN2 ... --out-dir DIR`: several inputs on one pool (`input` and
    /// `output` are then set per input by the batch run).
    pub batch: Option<super::BatchSpec>,
    /// `--resume`: continue from the journal of an earlier run.
    pub resume: bool,
    /// `--shard`: this run is one shard, writing a journal for `merge`.
    pub shard: Option<crate::shard::Shard>,
    /// `--ignore-mask`: GDAL mask bands do not make pixels invalid.
    pub ignore_mask: bool,
}

impl ResampleConfig {
    /// The run of one overview level (`cog::LevelSpec`): this run's input, kernel, pool and
    /// limits at another factor, into a scratch file; no report, page, event stream, journal
    /// to resume, pyramid or COG (the base run owns those), no injected fault (they name the
    /// base run's chunks). Every field is named, so that a new one is decided here.
    pub fn for_level(&self, level: &crate::cog::LevelSpec) -> ResampleConfig {
        ResampleConfig {
            input: self.input.clone(),
            output: level.output.clone(),
            grid: level.grid.clone(),
            kernel: self.kernel.clone(),
            bands: self.bands.clone(),
            out_type: self.out_type,
            chunk_bytes: self.chunk_bytes,
            workers: self.workers,
            workers_auto: self.workers_auto,
            spare_workers: self.spare_workers,
            in_process_threads: self.in_process_threads,
            report: None,
            report_html: None,
            events: None,
            overwrite: false,
            creation_options: level.creation_options.clone(),
            worker_bin: self.worker_bin.clone(),
            max_attempts: self.max_attempts,
            task_timeout: self.task_timeout,
            task_timeout_floor: self.task_timeout_floor,
            speculation: self.speculation,
            start_timeout: self.start_timeout,
            kill_grace: self.kill_grace,
            faults: Vec::new(),
            memory_limit: self.memory_limit,
            memory_limit_from: self.memory_limit_from.clone(),
            soft_fraction: self.soft_fraction,
            memory_poll: self.memory_poll,
            min_free_memory: self.min_free_memory,
            chunk_prefetch: self.chunk_prefetch,
            chunk_queue: self.chunk_queue,
            quiet: self.quiet,
            decoder: self.decoder,
            format: OutputFormat::GTiff,
            pyramid: false,
            batch: None,
            resume: false,
            shard: None,
            ignore_mask: self.ignore_mask,
        }
    }
}

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

/// What the workers compute over each chunk: the workers' side has the same two
/// (`worker::WorkerSetup::{BlockAgg, Map}`).
#[derive(Debug, Clone)]
pub enum Kernel {
    /// `resample`: each output pixel aggregates a block of input pixels.
    BlockAgg(Agg),
    /// `map`: the user's kernel, over each chunk's window.
    Map(MapSpec),
}

impl Kernel {
    /// The command that runs this kernel, as the journal's identity and the workers'
    /// environment name it.
    pub fn command(&self) -> &'static str {
        match self {
            Kernel::BlockAgg(_) => "resample",
            Kernel::Map(_) => "map",
        }
    }

    /// The aggregation, for a block aggregation.
    pub fn agg(&self) -> Option<Agg> {
        match self {
            Kernel::BlockAgg(agg) => Some(*agg),
            Kernel::Map(_) => None,
        }
    }
}

/// What `map` adds to a run: the user's kernel and its output.
#[derive(Debug, Clone)]
pub struct MapSpec {
    /// The C ABI library; `None`: `worker_bin` is a Rust kernel's own worker binary.
    pub lib: Option<PathBuf>,
    pub args: Vec<(String, String)>,
    pub out_bands: u32,
    /// The coordinator may load the kernel (`--in-process-fallback`).
    pub in_process_fallback: bool,
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

/// Builds the resolved config for `resample` (and for `plan`, with defaults for the rest).
pub fn resolve(
    cli: &Cli,
    job: &JobArgs,
    r: Option<&ResampleArgs>,
) -> Result<(ResampleConfig, Settings), CoordError> {
    let (input, output, batch) = match r.map(super::batch::resolve_target).transpose()? {
        Some(super::batch::ResampleTarget::Single { input, output }) => (input, output, None),
        Some(super::batch::ResampleTarget::Batch(b)) => (PathBuf::new(), PathBuf::new(), Some(b)),
        // `plan` and `map` set INPUT (clap requires it).
        None => (job.input.clone().unwrap_or_default(), PathBuf::new(), None),
    };
    if let (Some(_), Some(r)) = (&batch, r) {
        refuse_for_batch(r)?;
    }
    let st = job_settings(cli, job)?;
    let (workers, workers_auto) = workers(&st);
    let co = CreationOptions::parse(
        r.map(|r| r.run.creation_options.clone())
            .unwrap_or_default(),
    )?;
    let spare_workers = check_job(job, &st, workers)?;
    let pyramid = r.is_some_and(|r| r.pyramid);
    let (format, co) = cog::resolve_format(
        r.is_some_and(|r| r.run.format == FormatArg::Cog),
        pyramid,
        co,
    )?;
    let co = with_default_creation_options(co);
    let cfg = ResampleConfig {
        input,
        output,
        grid: grid_request(job)?,
        kernel: Kernel::BlockAgg(job.agg.into()),
        bands: job.bands.clone(),
        out_type: job.ot,
        // `--chunk-mib` is positive and finite (its parser says so).
        chunk_bytes: (job.chunk_mib * (1 << 20) as f64) as u64,
        workers,
        workers_auto,
        in_process_threads: settings::default_threads(),
        report: r.and_then(|r| r.run.report.clone()),
        report_html: r.and_then(|r| r.run.report_html.clone()),
        events: r.and_then(|r| r.run.events.clone()),
        overwrite: r.is_some_and(|r| r.run.overwrite),
        creation_options: co,
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
        spare_workers,
        chunk_queue: st.chunk_queue.value,
        quiet: cli.quiet,
        decoder: r.map(|r| r.decoder.into()).unwrap_or_default(),
        format,
        pyramid,
        batch,
        resume: r.is_some_and(|r| r.run.resume),
        shard: match r {
            Some(r) => {
                crate::shard::resolve(r.run.shard, r.run.shards, &|k| std::env::var(k).ok())?
            }
            None => None,
        },
        ignore_mask: job.ignore_mask,
    };
    if cfg.shard.is_some() && (cfg.pyramid || matches!(cfg.format, OutputFormat::Cog { .. })) {
        return Err(CoordError::Usage(
            "--shard writes a journal for `merge`, which writes a GeoTIFF without overviews: --pyramid and --of COG are not available with --shard".into(),
        ));
    }
    Ok((cfg, st))
}

/// Builds the resolved config for `map`: the options it shares with `resample`, resolved
/// the same way, and its kernel.
pub fn resolve_map(cli: &Cli, m: &MapArgs) -> Result<(ResampleConfig, Settings), CoordError> {
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
        input: Some(m.input.clone()),
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
    let (mut cfg, st) = resolve(cli, &job, Some(&r))?;
    if cfg.workers == 0 && !m.in_process_fallback {
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
    cfg.kernel = Kernel::Map(MapSpec {
        lib,
        args: m.kernel_args.clone(),
        out_bands: m.out_bands,
        in_process_fallback: m.in_process_fallback,
    });
    Ok((cfg, st))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::cli::Command;

    fn resolved(args: &[&str]) -> ResampleConfig {
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Resample(r) = &cli.command else {
            panic!("not resample: {args:?}")
        };
        resolve(&cli, &r.job, Some(r)).unwrap().0
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
        let l = cfg.for_level(&level);
        // The same work: input, kernel, bands, pool.
        assert_eq!(l.input, cfg.input);
        assert_eq!(l.kernel.agg(), Some(Agg::Max));
        assert_eq!(l.bands, vec![2]);
        assert_eq!(l.workers, cfg.workers);
        assert_eq!(l.worker_bin, cfg.worker_bin);
        // At the level's factor, into its scratch file.
        assert_eq!(
            (&l.grid, l.output.as_path()),
            (&GridRequest::Factor(8), Path::new("x2.tif"))
        );
        assert_eq!(l.creation_options, level.creation_options);
        // Nothing the base run owns.
        assert!(l.report.is_none() && l.report_html.is_none() && l.events.is_none());
        assert!(!l.overwrite && !l.resume && !l.pyramid);
        assert!(l.faults.is_empty() && l.batch.is_none() && l.shard.is_none());
        assert_eq!(l.format, OutputFormat::GTiff);
    }

    #[test]
    fn map_runs_its_kernel_and_resample_aggregates() {
        let cfg = resolved(&["coordinator", "resample", "in.tif", "out.tif", "-f", "2"]);
        assert!(matches!(cfg.kernel, Kernel::BlockAgg(Agg::Sum)));
        assert_eq!(cfg.kernel.command(), "resample");
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
        let Kernel::Map(spec) = &cfg.kernel else {
            panic!("map resolved to {:?}", cfg.kernel)
        };
        assert_eq!(cfg.kernel.agg(), None);
        assert_eq!(cfg.kernel.command(), "map");
        assert!(spec.lib.is_some());
    }
}

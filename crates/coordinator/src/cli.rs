//! The command line (clap derive) and its resolution into one config struct.

use std::path::PathBuf;

use std::time::Duration;

use clap::{parser::ValueSource, ArgMatches, Args, Parser, Subcommand, ValueEnum};
use protocol::{Agg, FaultSpec, SampleType};

use crate::{
    config::{self, Setting, Source},
    error::CoordError,
    run::ResampleConfig,
    sched::TimeoutSpec,
    units,
};

const EXAMPLES: &str = "\
Examples:
  coordinator synth demo.tif --width 2048 --height 2048
  coordinator plan demo.tif --factor 8
  coordinator --workers 4 resample demo.tif out.tif --factor 8 --report run.json
  coordinator resample demo.tif ref.tif --factor 8 --in-process
  coordinator resample demo.tif mean.tif --factor 10 --agg mean --band 1 --ot Float32
  coordinator --workers 2 resample demo.tif out.tif -f 8 --overwrite --inject-fault crash:3:1 --report run.json

Logs go to stderr, filtered by BLOCKSUM_LOG (e.g. BLOCKSUM_LOG=debug); -v and -q adjust.
Exit codes: 0 ok, 2 usage, 3 bad input, 4 output problem, 5 chunks quarantined,
6 workers cannot be kept alive, 7 memory or descriptor limits cannot be met, 130 interrupted.";

#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about = "Block-aggregate huge rasters through a supervised pool of worker processes", after_help = EXAMPLES)]
pub struct Cli {
    /// Worker processes: a number, or `auto` (one fewer than the CPUs, at least 1). 0 runs in process.
    #[arg(long, global = true, env = "BLOCKSUM_WORKERS", value_parser = parse_workers, allow_negative_numbers = true)]
    pub workers: Option<Workers>,
    /// TOML config file with the seed's `[resampling.multiprocessing]` keys; layered as
    /// defaults < file < environment < flags (`coordinator config` shows the result).
    #[arg(long, global = true, env = "BLOCKSUM_CONFIG")]
    pub config: Option<PathBuf>,
    /// More logging (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors; no progress bar, no summary.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Auto,
    N(u32),
}

fn parse_workers(s: &str) -> Result<Workers, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Workers::Auto);
    }
    s.parse::<u32>()
        .map(Workers::N)
        .map_err(|_| format!("'{s}' is not a number of workers (a whole number, or auto)"))
}

/// A whole number >= `min`, with a message that says so (clap names the option).
fn whole(s: &str, min: u32) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(format!("'{s}' is not a whole number >= {min}")),
    }
}

fn parse_factor(s: &str) -> Result<u32, String> {
    // 0 parses here and is refused with the bad-input code, as before.
    whole(s, 0)
}

fn parse_band(s: &str) -> Result<u32, String> {
    whole(s, 1).map_err(|_| format!("'{s}' is not a band number (1, 2, ...)"))
}

fn parse_count(s: &str) -> Result<u32, String> {
    whole(s, 0)
}

fn parse_attempts(s: &str) -> Result<u32, String> {
    whole(s, 1)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resample INPUT into OUTPUT by aggregating F x F blocks.
    #[command(after_help = EXAMPLES)]
    Resample(ResampleArgs),
    /// Print the chunk plan (chunks, slots, memory arithmetic) without running anything.
    #[command(
        after_help = "Examples:\n  coordinator plan demo.tif --factor 8\n  coordinator --workers 8 plan demo.tif -f 8 --memory-limit-per-worker 512MiB --chunks\n  coordinator plan demo.tif -f 8 --json"
    )]
    Plan(PlanArgs),
    /// Write a realistic demo raster (Float32, tiled, DEFLATE, EPSG:4326, with nodata).
    #[command(
        after_help = "Examples:\n  coordinator synth demo.tif --width 2048 --height 2048\n  coordinator synth big.tif --width 32768 --height 32768 --seed 7"
    )]
    Synth(SynthArgs),
    /// Print the resolved configuration and where each value came from.
    #[command(
        after_help = "Examples:\n  coordinator config\n  coordinator --config blocksum.toml config\n  BLOCKSUM_MEMORY_LIMIT_PER_WORKER=1GiB coordinator --config blocksum.toml --workers 4 config"
    )]
    Config(PoolArgs),
    /// Benchmark the pool itself: no-op chunks through real workers (chunks/s, coordinator
    /// CPU per chunk) and the hand-over of a slot. INPUT is any raster (workers open it).
    #[command(
        after_help = "Examples:\n  coordinator --workers 2 bench-dispatch demo.tif\n  coordinator --workers 4 bench-dispatch demo.tif --chunks 50000 --slot-mib 64"
    )]
    BenchDispatch(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Any raster GDAL opens (the workers open it at start, and read nothing).
    pub input: PathBuf,
    /// No-op chunks to push through the pool.
    #[arg(long, default_value_t = 200_000)]
    pub chunks: u32,
    /// Slot size for the hand-over measurement, in MiB.
    #[arg(long, default_value_t = 16)]
    pub slot_mib: u64,
    /// Round trips for the hand-over median.
    #[arg(long, default_value_t = 2000)]
    pub handovers: u32,
    /// The worker binary. Default: `worker` beside this program.
    #[arg(long, env = "BLOCKSUM_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AggArg {
    Sum,
    Mean,
    Min,
    Max,
    Count,
}

impl From<AggArg> for Agg {
    fn from(a: AggArg) -> Agg {
        match a {
            AggArg::Sum => Agg::Sum,
            AggArg::Mean => Agg::Mean,
            AggArg::Min => Agg::Min,
            AggArg::Max => Agg::Max,
            AggArg::Count => Agg::Count,
        }
    }
}

/// Options shared by `plan` and `resample`.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// The raster to read (anything GDAL opens).
    pub input: PathBuf,
    /// Block size F: each output pixel aggregates F x F input pixels.
    #[arg(long, short = 'f', value_parser = parse_factor, allow_negative_numbers = true)]
    pub factor: u32,
    /// Aggregation of the valid (not nodata, not NaN) pixels of a block.
    #[arg(long, value_enum, default_value = "sum")]
    pub agg: AggArg,
    /// Band to process (1-based; repeat for several). Default: all bands.
    #[arg(long = "band", short = 'b', value_parser = parse_band, allow_negative_numbers = true)]
    pub bands: Vec<u32>,
    /// Output data type (Byte, Int16, UInt16, Int32, UInt32, Float32, Float64). Default: one
    /// that cannot overflow (sum: Float64; mean: Float32 for Float32 input, else Float64;
    /// min/max: the input type; count: UInt32).
    #[arg(long, value_parser = parse_ot)]
    pub ot: Option<SampleType>,
    /// Largest input bytes per chunk, in MiB (windows follow the file's block grid, so
    /// chunks are often somewhat smaller).
    #[arg(long, default_value_t = 16.0, value_parser = parse_positive, allow_negative_numbers = true)]
    pub chunk_mib: f64,
    /// Run every chunk inside the coordinator (same as --workers 0).
    #[arg(long)]
    pub in_process: bool,
    /// Make a worker misbehave: KIND:CHUNK[:TIMES], KIND one of crash, segv, exit, hang,
    /// slow, garbage, oom, leak; CHUNK a chunk index (or *); TIMES the attempts it fires on.
    #[arg(long = "inject-fault", value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
    #[command(flatten)]
    pub pool: PoolArgs,
}

fn parse_ot(s: &str) -> Result<SampleType, String> {
    SampleType::from_gdal_name(s).ok_or_else(|| {
        format!("unknown type '{s}' (Byte, Int16, UInt16, Int32, UInt32, Float32, Float64)")
    })
}

fn parse_fault(s: &str) -> Result<FaultSpec, String> {
    s.parse()
        .map_err(|e: protocol::fault::FaultParseError| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct ResampleArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Where to write the GeoTIFF (written under a temporary name, renamed when complete).
    pub output: PathBuf,
    /// Write a JSON report: the plan, every chunk and attempt, every worker, totals.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// GDAL creation option KEY=VALUE (repeatable). Default: TILED=YES COMPRESS=DEFLATE ZLEVEL=1 BIGTIFF=IF_SAFER NUM_THREADS=ALL_CPUS.
    #[arg(long = "co")]
    pub creation_options: Vec<String>,
    /// The worker binary. Default: `worker` beside this program.
    #[arg(long, env = "BLOCKSUM_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Grace between TERM and KILL when stopping a worker.
    #[arg(long, default_value = "500ms", value_parser = units::parse_duration, allow_hyphen_values = true)]
    pub kill_grace: std::time::Duration,
}

/// Pool, memory and retry options: flags over environment over the config file.
#[derive(Debug, Clone, Default, Args)]
pub struct PoolArgs {
    /// Attempts per chunk before it is quarantined [default: 3].
    #[arg(long, env = "BLOCKSUM_MAX_ATTEMPTS", value_parser = parse_attempts, allow_negative_numbers = true)]
    pub max_attempts: Option<u32>,
    /// Time limit per attempt: 500ms, 30s, 2m; a percentage of the median chunk time (500%),
    /// never below --task-timeout-floor; or none [default: 1000%].
    #[arg(long, env = "BLOCKSUM_TASK_TIMEOUT", value_parser = units::parse_timeout_arg, allow_hyphen_values = true)]
    pub task_timeout: Option<units::TimeoutArg>,
    /// The least limit a percentage --task-timeout gives; also the limit until three chunks
    /// have finished, when it is above 60s [default: 10s].
    #[arg(long, env = "BLOCKSUM_TASK_TIMEOUT_FLOOR", value_parser = units::parse_duration, allow_hyphen_values = true)]
    pub task_timeout_floor: Option<Duration>,
    /// How long a new worker may take to say hello before it is killed (and counts toward
    /// the restart breaker) [default: 10s].
    #[arg(long, env = "BLOCKSUM_START_TIMEOUT", value_parser = units::parse_duration, allow_hyphen_values = true)]
    pub start_timeout: Option<Duration>,
    /// Hard memory limit per worker, enforced by the kernel (RLIMIT_DATA): 512MiB, 2GiB...
    /// [default: (80 % of available memory - slot ring) / workers].
    #[arg(long, env = "BLOCKSUM_MEMORY_LIMIT_PER_WORKER", value_parser = units::parse_size, allow_hyphen_values = true)]
    pub memory_limit_per_worker: Option<u64>,
    /// Fraction of the limit of private memory (RssAnon) above which a worker is recycled
    /// after its chunk [default: 0.8].
    #[arg(long, env = "BLOCKSUM_SOFT_FRACTION", value_parser = parse_fraction, allow_negative_numbers = true)]
    pub soft_fraction: Option<f64>,
    /// How often worker memory and free memory are sampled [default: 100ms].
    #[arg(long, env = "BLOCKSUM_MEMORY_POLL", value_parser = units::parse_duration, allow_hyphen_values = true)]
    pub memory_poll: Option<std::time::Duration>,
    /// Do not dispatch a chunk while the machine has less available memory than this: the
    /// run waits (like GNU parallel's --memfree).
    #[arg(long, env = "BLOCKSUM_MIN_FREE_MEMORY", value_parser = units::parse_size, allow_hyphen_values = true)]
    pub min_free_memory: Option<u64>,
    /// Slots beyond one per worker: finished chunks waiting for the writer [default: 2].
    #[arg(long, env = "BLOCKSUM_CHUNK_PREFETCH", value_parser = parse_count, allow_negative_numbers = true)]
    pub chunk_prefetch: Option<u32>,
    /// Warm spare worker processes, started and idle, that take over a crashed worker's
    /// chunk at once while it restarts [default: 1].
    #[arg(long, env = "BLOCKSUM_SPARE_WORKERS", value_parser = parse_count, allow_negative_numbers = true)]
    pub spare_workers: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub job: JobArgs,
    /// Also list every chunk (id, input window, output window).
    #[arg(long)]
    pub chunks: bool,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SynthArgs {
    /// Where to write the GeoTIFF.
    pub output: PathBuf,
    /// Width in pixels.
    #[arg(long, default_value_t = 8192)]
    pub width: u64,
    /// Height in pixels.
    #[arg(long, default_value_t = 8192)]
    pub height: u64,
    /// Seed of the noise and of the field's phase: the same seed gives the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("'{s}' is not a fraction in (0, 1] (e.g. 0.8)")),
    }
}

fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// The default `--task-timeout`: ten times the median chunk time, never below the floor
/// (`--task-timeout-floor`, 10 s). A stopped or hung worker cannot stall the run, and a
/// slow but healthy chunk is far from the limit.
pub const DEFAULT_TASK_TIMEOUT: TimeoutSpec = TimeoutSpec::PercentOfMedian(1000.0);

/// `--workers` as resolved: auto, or a number (0: in process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkersSetting {
    Auto,
    N(u32),
}

impl std::fmt::Display for WorkersSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkersSetting::Auto => write!(
                f,
                "auto (min(CPUs - 1, what memory allows) = up to {})",
                cpus().saturating_sub(1).max(1)
            ),
            WorkersSetting::N(0) => f.write_str("0 (in process)"),
            WorkersSetting::N(n) => write!(f, "{n}"),
        }
    }
}

/// Every layered setting with its source: what `coordinator config` prints.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_file: Option<PathBuf>,
    pub workers: Setting<WorkersSetting>,
    pub max_attempts: Setting<u32>,
    pub task_timeout: Setting<Option<TimeoutSpec>>,
    pub task_timeout_floor: Setting<Duration>,
    pub start_timeout: Setting<Duration>,
    pub memory_limit: Setting<Option<u64>>,
    pub soft_fraction: Setting<f64>,
    pub memory_poll: Setting<Duration>,
    pub min_free_memory: Setting<Option<u64>>,
    pub chunk_prefetch: Setting<u32>,
    pub spare_workers: Setting<u32>,
    pub chunk_queue: Setting<Option<u32>>,
    pub result_queue: Setting<Option<u32>>,
}

fn source_of(m: Option<&ArgMatches>, id: &str, env: &'static str) -> Source {
    match m.and_then(|m| m.value_source(id)) {
        Some(ValueSource::EnvVariable) => Source::Env(env),
        Some(ValueSource::CommandLine) => Source::Flag,
        _ => Source::Default,
    }
}

/// Layers defaults < config file < environment < flags.
pub fn settings(
    cli: &Cli,
    matches: &ArgMatches,
    pool: &PoolArgs,
    in_process: bool,
) -> Result<Settings, CoordError> {
    // Global arguments are visible in the subcommand's matches too.
    let m = matches.subcommand().map(|(_, m)| m).or(Some(matches));
    let file = match &cli.config {
        Some(p) => Some((p.clone(), config::load(p)?)),
        None => None,
    };
    let fsrc = || Source::File(file.as_ref().map(|(p, _)| p.clone()).unwrap_or_default());
    let fm = file.as_ref().map(|(_, r)| &r.resampling.multiprocessing);
    let size = |s: &Option<config::SizeValue>| {
        s.as_ref()
            .map(|v| v.bytes().expect("validated by config::load"))
    };

    let mut workers = Setting::default(WorkersSetting::Auto);
    if let Some(fm) = fm {
        workers.layer(fm.max_workers.map(WorkersSetting::N), fsrc());
        if fm.enabled == Some(false) {
            workers.layer(Some(WorkersSetting::N(0)), fsrc());
        }
    }
    let w = cli.workers.map(|w| match w {
        Workers::Auto => WorkersSetting::Auto,
        Workers::N(n) => WorkersSetting::N(n),
    });
    workers.layer(w, source_of(m, "workers", "BLOCKSUM_WORKERS"));
    if in_process {
        workers.layer(Some(WorkersSetting::N(0)), Source::Flag);
    }

    let mut max_attempts = Setting::default(3);
    max_attempts.layer(fm.and_then(|f| f.max_attempts), fsrc());
    max_attempts.layer(
        pool.max_attempts,
        source_of(m, "max_attempts", "BLOCKSUM_MAX_ATTEMPTS"),
    );

    let mut task_timeout = Setting::default(Some(DEFAULT_TASK_TIMEOUT));
    task_timeout.layer(
        fm.and_then(|f| {
            f.task_timeout
                .as_deref()
                .map(|t| units::parse_timeout_arg(t).expect("validated").0)
        }),
        fsrc(),
    );
    task_timeout.layer(
        pool.task_timeout.map(|t| t.0),
        source_of(m, "task_timeout", "BLOCKSUM_TASK_TIMEOUT"),
    );

    let duration = |s: &Option<String>| {
        s.as_deref()
            .map(|d| units::parse_duration(d).expect("validated"))
    };
    let mut task_timeout_floor = Setting::default(crate::sched::DEFAULT_TIMEOUT_FLOOR);
    task_timeout_floor.layer(fm.and_then(|f| duration(&f.task_timeout_floor)), fsrc());
    task_timeout_floor.layer(
        pool.task_timeout_floor,
        source_of(m, "task_timeout_floor", "BLOCKSUM_TASK_TIMEOUT_FLOOR"),
    );

    let mut start_timeout = Setting::default(crate::sched::DEFAULT_START_TIMEOUT);
    start_timeout.layer(fm.and_then(|f| duration(&f.start_timeout)), fsrc());
    start_timeout.layer(
        pool.start_timeout,
        source_of(m, "start_timeout", "BLOCKSUM_START_TIMEOUT"),
    );

    let mut memory_limit = Setting::default(None);
    memory_limit.layer(
        fm.and_then(|f| size(&f.memory_limit_per_worker)).map(Some),
        fsrc(),
    );
    memory_limit.layer(
        pool.memory_limit_per_worker.map(Some),
        source_of(
            m,
            "memory_limit_per_worker",
            "BLOCKSUM_MEMORY_LIMIT_PER_WORKER",
        ),
    );

    let mut soft_fraction = Setting::default(0.8);
    soft_fraction.layer(fm.and_then(|f| f.memory_soft_fraction), fsrc());
    soft_fraction.layer(
        pool.soft_fraction,
        source_of(m, "soft_fraction", "BLOCKSUM_SOFT_FRACTION"),
    );
    if !(soft_fraction.value > 0.0 && soft_fraction.value <= 1.0) {
        return Err(CoordError::BadInput(format!(
            "{} {} is not in (0, 1]",
            soft_fraction
                .source
                .name("--soft-fraction", "memory_soft_fraction"),
            soft_fraction.value
        )));
    }

    let mut memory_poll = Setting::default(Duration::from_millis(100));
    memory_poll.layer(
        fm.and_then(|f| {
            f.memory_poll
                .as_deref()
                .map(|d| units::parse_duration(d).expect("validated"))
        }),
        fsrc(),
    );
    memory_poll.layer(
        pool.memory_poll,
        source_of(m, "memory_poll", "BLOCKSUM_MEMORY_POLL"),
    );

    let mut min_free_memory = Setting::default(None);
    min_free_memory.layer(fm.and_then(|f| size(&f.min_free_memory)).map(Some), fsrc());
    min_free_memory.layer(
        pool.min_free_memory.map(Some),
        source_of(m, "min_free_memory", "BLOCKSUM_MIN_FREE_MEMORY"),
    );

    let mut chunk_prefetch = Setting::default(2);
    chunk_prefetch.layer(fm.and_then(|f| f.chunk_prefetch), fsrc());
    chunk_prefetch.layer(
        pool.chunk_prefetch,
        source_of(m, "chunk_prefetch", "BLOCKSUM_CHUNK_PREFETCH"),
    );

    let mut spare_workers = Setting::default(1);
    spare_workers.layer(fm.and_then(|f| f.spare_workers), fsrc());
    spare_workers.layer(
        pool.spare_workers,
        source_of(m, "spare_workers", "BLOCKSUM_SPARE_WORKERS"),
    );

    let mut chunk_queue = Setting::default(None);
    chunk_queue.layer(fm.and_then(|f| f.queue_sizes.chunk_queue).map(Some), fsrc());
    let mut result_queue = Setting::default(None);
    result_queue.layer(
        fm.and_then(|f| f.queue_sizes.result_queue).map(Some),
        fsrc(),
    );

    Ok(Settings {
        config_file: cli.config.clone(),
        workers,
        max_attempts,
        task_timeout,
        task_timeout_floor,
        start_timeout,
        memory_limit,
        soft_fraction,
        memory_poll,
        min_free_memory,
        chunk_prefetch,
        spare_workers,
        chunk_queue,
        result_queue,
    })
}

impl Settings {
    /// The text `coordinator config` prints.
    pub fn describe(&self) -> String {
        let size = |v: Option<u64>, none: &str| {
            v.map(|b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
                .unwrap_or(none.to_string())
        };
        let rows: Vec<(&str, String, &Source)> = vec![
            (
                "workers",
                self.workers.value.to_string(),
                &self.workers.source,
            ),
            (
                "max_attempts",
                self.max_attempts.value.to_string(),
                &self.max_attempts.source,
            ),
            (
                "task_timeout",
                match self.task_timeout.value {
                    None => "none".into(),
                    Some(TimeoutSpec::Fixed(d)) => format!("{d:?}"),
                    Some(TimeoutSpec::PercentOfMedian(p)) => {
                        format!("{p}% of the median chunk time, at least the floor")
                    }
                },
                &self.task_timeout.source,
            ),
            (
                "task_timeout_floor",
                format!("{:?}", self.task_timeout_floor.value),
                &self.task_timeout_floor.source,
            ),
            (
                "start_timeout",
                format!("{:?}", self.start_timeout.value),
                &self.start_timeout.source,
            ),
            (
                "memory_limit_per_worker",
                size(
                    self.memory_limit.value,
                    "auto ((80 % of available - slot ring) / workers)",
                ),
                &self.memory_limit.source,
            ),
            (
                "memory_soft_fraction",
                self.soft_fraction.value.to_string(),
                &self.soft_fraction.source,
            ),
            (
                "memory_poll",
                format!("{:?}", self.memory_poll.value),
                &self.memory_poll.source,
            ),
            (
                "min_free_memory",
                size(self.min_free_memory.value, "none"),
                &self.min_free_memory.source,
            ),
            (
                "chunk_prefetch",
                self.chunk_prefetch.value.to_string(),
                &self.chunk_prefetch.source,
            ),
            (
                "spare_workers",
                self.spare_workers.value.to_string(),
                &self.spare_workers.source,
            ),
            (
                "queue_sizes.chunk_queue",
                self.chunk_queue
                    .value
                    .map(|v| format!("{v} (caps the slot ring)"))
                    .unwrap_or("none".into()),
                &self.chunk_queue.source,
            ),
            (
                "queue_sizes.result_queue",
                self.result_queue
                    .value
                    .map(|v| format!("{v} (bounded by the slot ring already)"))
                    .unwrap_or("none".into()),
                &self.result_queue.source,
            ),
        ];
        let mut out = match &self.config_file {
            Some(p) => format!("config file: {}\n", p.display()),
            None => "config file: none\n".to_string(),
        };
        for (k, v, s) in rows {
            out.push_str(&format!("{k:<26} {v:<50} ({s})\n"));
        }
        out
    }
}

fn chunk_bytes(mib: f64) -> Result<u64, CoordError> {
    if !(mib.is_finite() && mib > 0.0) {
        return Err(CoordError::BadInput(
            "--chunk-mib must be a positive number".into(),
        ));
    }
    Ok((mib * (1 << 20) as f64) as u64)
}

/// Builds the resolved config for `resample` (and for `plan`, with defaults for the rest).
pub fn resolve(
    cli: &Cli,
    matches: &ArgMatches,
    job: &JobArgs,
    r: Option<&ResampleArgs>,
) -> Result<(ResampleConfig, Settings), CoordError> {
    let st = settings(cli, matches, &job.pool, job.in_process)?;
    let (workers, workers_auto) = match st.workers.value {
        WorkersSetting::Auto => (cpus().saturating_sub(1).max(1), true),
        WorkersSetting::N(n) => {
            if n > cpus() {
                tracing::warn!(
                    "--workers {n} is more than the {} CPUs here: honoured",
                    cpus()
                );
            }
            (n, false)
        }
    };
    let mut co = r.map(|r| r.creation_options.clone()).unwrap_or_default();
    for c in &co {
        if !c.contains('=') {
            return Err(CoordError::Usage(format!("--co '{c}' is not KEY=VALUE")));
        }
    }
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
            st.spare_workers.source.name("--spare-workers", "spare_workers")
        );
        spare_workers = workers;
    }
    for (k, v) in [
        ("TILED", "YES"),
        ("COMPRESS", "DEFLATE"),
        ("BIGTIFF", "IF_SAFER"),
        ("NUM_THREADS", "ALL_CPUS"),
        // Level 1 compresses the Float64 output about 4x faster than the default 6 for a few
        // percent more bytes: the writer then keeps up with the readers.
        ("ZLEVEL", "1"),
    ] {
        if !co.iter().any(|c| {
            c.split('=')
                .next()
                .is_some_and(|x| x.eq_ignore_ascii_case(k))
        }) {
            co.push(format!("{k}={v}"));
        }
    }
    let cfg = ResampleConfig {
        input: job.input.clone(),
        output: r.map(|r| r.output.clone()).unwrap_or_default(),
        factor: job.factor,
        agg: job.agg.into(),
        bands: job.bands.clone(),
        out_type: job.ot,
        chunk_bytes: chunk_bytes(job.chunk_mib)?,
        workers,
        workers_auto,
        in_process_threads: cpus().saturating_sub(1).max(1),
        report: r.and_then(|r| r.report.clone()),
        overwrite: r.is_some_and(|r| r.overwrite),
        creation_options: co,
        worker_bin: r
            .and_then(|r| r.worker_bin.clone())
            .unwrap_or_else(crate::run::default_worker_bin),
        max_attempts: st.max_attempts.value,
        task_timeout: st.task_timeout.value,
        task_timeout_floor: st.task_timeout_floor.value,
        start_timeout: st.start_timeout.value,
        kill_grace: r
            .map(|r| r.kill_grace)
            .unwrap_or(Duration::from_millis(500)),
        faults: job.faults.clone(),
        memory_limit: st.memory_limit.value,
        memory_limit_from: st
            .memory_limit
            .source
            .name("--memory-limit-per-worker", "memory_limit_per_worker"),
        soft_fraction: st.soft_fraction.value,
        memory_poll: st.memory_poll.value,
        min_free_memory: st.min_free_memory.value,
        chunk_prefetch: st.chunk_prefetch.value,
        spare_workers,
        chunk_queue: st.chunk_queue.value,
        progress: true,
        quiet: cli.quiet,
    };
    Ok((cfg, st))
}

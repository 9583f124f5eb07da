//! The command line (clap derive) and its resolution into one config struct.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use protocol::{Agg, FaultSpec, SampleType};

use crate::{error::CoordError, run::ResampleConfig, units};

const EXAMPLES: &str = "\
Examples:
  coordinator synth demo.tif --width 8192 --height 8192
  coordinator plan demo.tif --factor 8
  coordinator --workers 4 resample demo.tif out.tif --factor 8 --report run.json
  coordinator resample demo.tif out.tif --factor 8 --in-process
  coordinator resample in.tif out.tif --factor 10 --agg mean --band 1 --band 3 --ot Float32
  coordinator resample demo.tif out.tif --factor 8 --inject-fault crash:3:1 --report run.json

Logs go to stderr, filtered by BLOCKSUM_LOG (e.g. BLOCKSUM_LOG=debug); -v and -q adjust.
Exit codes: 0 ok, 2 usage, 3 bad input, 4 output problem, 5 chunks quarantined,
6 workers cannot be kept alive, 7 memory limits cannot be met, 130 interrupted.";

#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about = "Block-aggregate huge rasters through a supervised pool of worker processes", after_help = EXAMPLES)]
pub struct Cli {
    /// Worker processes: a number, or `auto` (one fewer than the CPUs, at least 1). 0 runs in process.
    #[arg(long, global = true, env = "BLOCKSUM_WORKERS", value_parser = parse_workers)]
    pub workers: Option<Workers>,
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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resample INPUT into OUTPUT by aggregating F x F blocks.
    #[command(after_help = EXAMPLES)]
    Resample(ResampleArgs),
    /// Print the chunk plan (chunks, slots, bytes in flight) without running anything.
    Plan(PlanArgs),
    /// Write a realistic demo raster (Float32, tiled, DEFLATE, EPSG:4326, with nodata).
    Synth(SynthArgs),
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
    #[arg(long, short = 'f')]
    pub factor: u32,
    /// Aggregation of the valid (not nodata, not NaN) pixels of a block.
    #[arg(long, value_enum, default_value = "sum")]
    pub agg: AggArg,
    /// Band to process (1-based; repeat for several). Default: all bands.
    #[arg(long = "band", short = 'b')]
    pub bands: Vec<u32>,
    /// Output data type (Byte, Int16, UInt16, Int32, UInt32, Float32, Float64). Default: one
    /// that cannot overflow (sum: Float64; mean: Float32 for Float32 input, else Float64;
    /// min/max: the input type; count: UInt32).
    #[arg(long, value_parser = parse_ot)]
    pub ot: Option<SampleType>,
    /// Target input bytes per chunk, in MiB.
    #[arg(long, default_value_t = 16.0)]
    pub chunk_mib: f64,
    /// Run every chunk inside the coordinator (same as --workers 0).
    #[arg(long)]
    pub in_process: bool,
    /// Make a worker misbehave: KIND:CHUNK[:TIMES], KIND one of crash, segv, exit, hang,
    /// slow, garbage, oom, leak; CHUNK a chunk index (or *); TIMES the attempts it fires on.
    #[arg(long = "inject-fault", value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
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
    /// GDAL creation option KEY=VALUE (repeatable). Default: TILED=YES COMPRESS=DEFLATE BIGTIFF=IF_SAFER NUM_THREADS=ALL_CPUS.
    #[arg(long = "co")]
    pub creation_options: Vec<String>,
    /// The worker binary. Default: `worker` beside this program.
    #[arg(long, env = "BLOCKSUM_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Attempts per chunk before it is quarantined.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Time limit per attempt: 500ms, 30s, 2m, or a percentage of the median chunk time (500%).
    #[arg(long, value_parser = units::parse_timeout)]
    pub task_timeout: Option<crate::sched::TimeoutSpec>,
    /// Grace between TERM and KILL when stopping a worker.
    #[arg(long, default_value = "500ms", value_parser = units::parse_duration)]
    pub kill_grace: std::time::Duration,
    /// Hard memory limit per worker (RLIMIT_DATA): 512MiB, 2GiB...
    #[arg(long, value_parser = units::parse_size)]
    pub memory_limit_per_worker: Option<u64>,
    /// Fraction of the limit at which a worker is recycled after its chunk.
    #[arg(long, default_value_t = 0.8)]
    pub soft_fraction: f64,
    /// How often worker memory is sampled.
    #[arg(long, default_value = "100ms", value_parser = units::parse_duration)]
    pub memory_poll: std::time::Duration,
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
    pub output: PathBuf,
    #[arg(long, default_value_t = 8192)]
    pub width: u64,
    #[arg(long, default_value_t = 8192)]
    pub height: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub overwrite: bool,
}

fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Resolves the worker count: `--in-process` wins, then `--workers`, then auto.
pub fn resolve_workers(w: Option<Workers>, in_process: bool) -> u32 {
    if in_process {
        return 0;
    }
    match w {
        Some(Workers::N(n)) => {
            if n > cpus() {
                tracing::warn!(
                    "--workers {n} is more than the {} CPUs here: honoured",
                    cpus()
                );
            }
            n
        }
        Some(Workers::Auto) | None => cpus().saturating_sub(1).max(1),
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
    workers: Option<Workers>,
    quiet: bool,
    job: &JobArgs,
    r: Option<&ResampleArgs>,
) -> Result<ResampleConfig, CoordError> {
    let workers = resolve_workers(workers, job.in_process);
    let mut co = r.map(|r| r.creation_options.clone()).unwrap_or_default();
    for c in &co {
        if !c.contains('=') {
            return Err(CoordError::BadInput(format!("--co '{c}' is not KEY=VALUE")));
        }
    }
    for (k, v) in [
        ("TILED", "YES"),
        ("COMPRESS", "DEFLATE"),
        ("BIGTIFF", "IF_SAFER"),
    ] {
        if !co.iter().any(|c| {
            c.split('=')
                .next()
                .is_some_and(|x| x.eq_ignore_ascii_case(k))
        }) {
            co.push(format!("{k}={v}"));
        }
    }
    if let Some(r) = r {
        if !(r.soft_fraction > 0.0 && r.soft_fraction <= 1.0) {
            return Err(CoordError::BadInput(
                "--soft-fraction must be in (0, 1]".into(),
            ));
        }
    }
    Ok(ResampleConfig {
        input: job.input.clone(),
        output: r.map(|r| r.output.clone()).unwrap_or_default(),
        factor: job.factor,
        agg: job.agg.into(),
        bands: job.bands.clone(),
        out_type: job.ot,
        chunk_bytes: chunk_bytes(job.chunk_mib)?,
        workers,
        in_process_threads: cpus().saturating_sub(1).max(1),
        report: r.and_then(|r| r.report.clone()),
        overwrite: r.is_some_and(|r| r.overwrite),
        creation_options: co,
        worker_bin: r
            .and_then(|r| r.worker_bin.clone())
            .unwrap_or_else(crate::run::default_worker_bin),
        max_attempts: r.map(|r| r.max_attempts).unwrap_or(3),
        task_timeout: r.and_then(|r| r.task_timeout),
        kill_grace: r
            .map(|r| r.kill_grace)
            .unwrap_or(std::time::Duration::from_millis(500)),
        faults: job.faults.clone(),
        memory_limit: r.and_then(|r| r.memory_limit_per_worker),
        soft_fraction: r.map(|r| r.soft_fraction).unwrap_or(0.8),
        memory_poll: r
            .map(|r| r.memory_poll)
            .unwrap_or(std::time::Duration::from_millis(100)),
        gdal_cache: 64 << 20,
        progress: true,
        quiet,
    })
}

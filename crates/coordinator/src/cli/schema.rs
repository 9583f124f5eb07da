//! The clap schema: commands, their arguments and the per-value parsers of the options that
//! are not layered. The layered options (flag, environment, config file) are rows of
//! [`super::settings`](mod@super::settings)'s table and reach clap through [`PoolArgs`] and `--workers`; turning
//! all of it into the run's config is [`super::resolve`](mod@super::resolve)'s job.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use protocol::FaultSpec;
use worker::{Agg, Decoder, SampleType};

use super::settings::{self, PoolArgs, Workers, DEFAULT_KILL_GRACE, WORKERS};
use crate::units;

pub const EXAMPLES: &str = "\
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
    // Env, parser and help come from the settings table's row; the flag is declared here
    // because it is global (before or after the subcommand).
    #[arg(long, global = true, env = WORKERS.env, value_parser = WORKERS.parse, allow_hyphen_values = true, value_name = WORKERS.meta, help = WORKERS.help_text())]
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

fn parse_factor(s: &str) -> Result<u32, String> {
    // 0 parses here and is refused with the bad-input code, as before.
    settings::whole(s, 0)
}

fn parse_band(s: &str) -> Result<u32, String> {
    settings::whole(s, 1).map_err(|_| format!("'{s}' is not a band number (1, 2, ...)"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resample INPUT into OUTPUT by aggregating F x F blocks.
    #[command(after_help = EXAMPLES)]
    Resample(ResampleArgs),
    /// Print the chunk plan (chunks, slots, memory arithmetic) without running anything.
    #[command(
        after_help = "Examples:\n  coordinator plan demo.tif --factor 8\n  coordinator --workers 8 plan demo.tif -f 8 --memory-limit-per-worker 512MiB --chunks\n  coordinator plan demo.tif -f 8 --json\n  coordinator plan demo.tif -f 8 --decoder gdal"
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
    /// Run your own kernel over INPUT into OUTPUT (Float64, nodata NaN): a C ABI shared
    /// library (`--kernel-lib`, see include/blocksum_kernel.h) loaded by worker processes
    /// only, or a Rust worker binary built on `runtime::serve` (`--worker-bin`). A crash,
    /// hang or runaway allocation in the kernel kills a worker, never the run.
    #[command(after_help = MAP_EXAMPLES)]
    Map(MapArgs),
}

pub const MAP_EXAMPLES: &str = "\
Examples:
  coordinator --workers 2 map demo.tif range.tif --worker-bin \"$(command -v block-range-worker)\" --factor 4

A C kernel: build a shared library that exports blocksum_kernel_v1 (include/blocksum_kernel.h;
examples in examples/c-kernels) and pass it with --kernel-lib ./libk.so [--kernel-arg K=V]...
The library is loaded by worker processes only; --in-process-fallback lets the coordinator
load it too (to run chunks whose worker timed out, or everything with --workers 0). A
--worker-bin without --kernel-lib is a Rust kernel's own binary (runtime::serve::<K>() with
K::Setup = worker::map::MapSetup): it is sent the bare MapSetup, not the standard worker's.";

/// `coordinator map`: the options of `resample` that apply to any kernel, and the kernel's.
#[derive(Debug, Clone, Args)]
pub struct MapArgs {
    /// The raster to read (anything GDAL opens).
    pub input: PathBuf,
    /// Where to write the GeoTIFF (Float64, nodata NaN; written under a temporary name,
    /// renamed when complete).
    pub output: PathBuf,
    /// A shared library exporting `blocksum_kernel_v1` (include/blocksum_kernel.h).
    #[arg(long)]
    pub kernel_lib: Option<PathBuf>,
    /// A parameter for the kernel, KEY=VALUE (repeatable; passed in order).
    #[arg(long = "kernel-arg", value_parser = parse_kernel_arg)]
    pub kernel_args: Vec<(String, String)>,
    /// Output bands the kernel fills.
    #[arg(long, default_value_t = 1, value_parser = parse_band)]
    pub out_bands: u32,
    /// Block size F: the output is ceil(W/F) x ceil(H/F); chunks are multiples of F.
    #[arg(long, short = 'f', default_value_t = 1, value_parser = parse_factor, allow_negative_numbers = true)]
    pub factor: u32,
    /// Band to read (1-based; repeat for several, in the order the kernel sees them).
    /// Default: all bands.
    #[arg(long = "band", short = 'b', value_parser = parse_band, allow_negative_numbers = true)]
    pub bands: Vec<u32>,
    /// Largest input bytes per chunk, in MiB (as f64 samples plus the mask: 9 bytes per
    /// sample).
    #[arg(long, default_value_t = 16.0, value_parser = parse_positive, allow_negative_numbers = true)]
    pub chunk_mib: f64,
    /// Let the coordinator load the kernel too: chunks whose worker timed out then run in
    /// process (as for resample), and `--workers 0` is allowed. Off by default: a plug-in's
    /// crash would take the coordinator down.
    #[arg(long)]
    pub in_process_fallback: bool,
    /// Make a worker misbehave (as for resample): KIND:CHUNK or KIND:CHUNK:TIMES.
    #[arg(long = "inject-fault", value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
    #[command(flatten)]
    pub pool: PoolArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_kernel_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not KEY=VALUE")),
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DecoderArg {
    Auto,
    Native,
    Gdal,
}

impl From<DecoderArg> for Decoder {
    fn from(d: DecoderArg) -> Decoder {
        match d {
            DecoderArg::Auto => Decoder::Auto,
            DecoderArg::Native => Decoder::Native,
            DecoderArg::Gdal => Decoder::Gdal,
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
    /// Make a worker misbehave: KIND:CHUNK or KIND:CHUNK:TIMES, KIND one of crash, segv, exit, hang,
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
    /// Pixel decoder: native (this tool's own, for local GeoTIFFs with no compression, DEFLATE
    /// or ZSTD; an error on anything else), gdal, or auto (native where it applies, else GDAL).
    #[arg(long, value_enum, default_value = "auto")]
    pub decoder: DecoderArg,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The options of a run that writes an output (`resample` and `map` alike).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Write a JSON report: the plan, every chunk and attempt, every worker, totals.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Replace OUTPUT (and the report) if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// GDAL creation option KEY=VALUE (repeatable). Default: TILED=YES COMPRESS=DEFLATE ZLEVEL=1 BIGTIFF=IF_SAFER NUM_THREADS=ALL_CPUS.
    #[arg(long = "co")]
    pub creation_options: Vec<String>,
    /// The worker binary. Default: `worker` beside this program. For `map` without
    /// --kernel-lib: a Rust kernel's own binary (`fn main() { runtime::serve::<MyKernel>() }`).
    #[arg(long, env = "BLOCKSUM_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    // Help text built here so that the default is written once, in `DEFAULT_KILL_GRACE`.
    #[arg(long, value_parser = units::parse_duration, allow_hyphen_values = true, help = format!("Grace between TERM and KILL when stopping a worker [default: {DEFAULT_KILL_GRACE:?}]"))]
    pub kill_grace: Option<Duration>,
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
    /// The decoder `resample --decoder` would be given: the plan says which one will read
    /// the pixels, and why.
    #[arg(long, value_enum, default_value = "auto")]
    pub decoder: DecoderArg,
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

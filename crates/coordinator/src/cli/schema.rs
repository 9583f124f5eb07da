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
  coordinator --workers 2 resample demo.tif ref.tif --factor 4 --out-dir sums --report batch.json
  coordinator --workers 2 resample demo.tif out.tif -f 8 --overwrite --inject-fault crash:3:1 --report run.json

Logs go to stderr, filtered by BLOCKSUM_LOG (e.g. BLOCKSUM_LOG=debug); -v and -q adjust.
Exit codes: 0 ok, 1 internal error (a bug), 2 usage, 3 bad input, 4 output problem,
5 chunks quarantined, 6 workers cannot be kept alive, 7 memory or descriptor limits cannot be
met, 8 a batch where some inputs failed, 130 interrupted.";

#[derive(Debug, Parser)]
#[command(name = "coordinator", version, about = "Block-aggregate huge rasters through a supervised pool of worker processes", after_help = EXAMPLES)]
pub struct Cli {
    // Env, parser and help come from the settings table's row; the flag is declared here
    // because it is global (before or after the subcommand).
    #[arg(long, global = true, env = WORKERS.env, value_parser = WORKERS.parse, allow_hyphen_values = true, value_name = WORKERS.meta, help = WORKERS.help_text())]
    pub workers: Option<Workers>,
    /// Config file, YAML (.yml, .yaml) or TOML (.toml; another name: TOML, else YAML), e.g.
    /// the application's whole `config.yml`: its `resampling.multiprocessing` section is read
    /// (the seed's keys and ours; other sections are ignored); layered as defaults < file <
    /// environment < flags (`coordinator config` shows the result).
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
    // 0 parses here and is refused with the bad-input code, as before; the message of a
    // value that does not parse asks for what is accepted in the end.
    settings::whole(s, 0).map_err(|_| format!("'{s}' is not a whole number >= 1"))
}

fn parse_band(s: &str) -> Result<u32, String> {
    settings::whole(s, 1).map_err(|_| format!("'{s}' is not a band number (1, 2, ...)"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resample INPUT into OUTPUT by aggregating F x F blocks; or several inputs on one
    /// pool, each into DIR under its own file name (`resample IN1 IN2 ... --out-dir DIR`).
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
        after_help = "Examples:\n  coordinator config\n  coordinator --config blocksum.toml config\n  coordinator --config config.yml config\n  BLOCKSUM_MEMORY_LIMIT_PER_WORKER=1GiB coordinator --config blocksum.toml --workers 4 config"
    )]
    Config(PoolArgs),
    /// Benchmark the pool itself: no-op chunks through real workers (chunks/s, coordinator
    /// CPU per chunk) and the hand-over of a slot. INPUT is any raster (workers open it).
    #[command(
        after_help = "Examples:\n  coordinator --workers 2 bench-dispatch demo.tif\n  coordinator --workers 4 bench-dispatch demo.tif --chunks 50000 --slot-mib 64"
    )]
    BenchDispatch(BenchArgs),
    /// Benchmark the one writer alone: synthetic finished chunks (the sums a resample of a
    /// `synth` raster produces) fed to the real GeoTIFF sink; prints its serial time per
    /// chunk and how many workers it keeps fed.
    #[command(after_help = "Examples:
  coordinator bench-writer bench-writer.tif --overwrite --side 4096
  coordinator bench-writer bench-writer.tif --overwrite --side 4096 --co NUM_THREADS=1")]
    BenchWriter(BenchWriterArgs),
    /// Run your own kernel over INPUT into OUTPUT (Float64, nodata NaN): a C ABI shared
    /// library (`--kernel-lib`, see include/blocksum_kernel.h) loaded by worker processes
    /// only, or a Rust worker binary built on `runtime::serve` (`--worker-bin`). A crash,
    /// hang or runaway allocation in the kernel kills a worker, never the run.
    #[command(after_help = MAP_EXAMPLES)]
    Map(MapArgs),
    /// Turn a run's JSON report (`--report`) into one self-contained HTML page: task-stream
    /// timeline, worker memory, throughput, totals.
    #[command(
        after_help = "Examples:\n  coordinator --workers 2 resample demo.tif out.tif -f 8 --report run.json\n  coordinator report run.json --html run.html\n  coordinator report run.json --html run.html --overwrite"
    )]
    Report(ReportArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(
        after_help = "Examples:\n  coordinator completions bash > coordinator.bash\n  coordinator completions zsh > _coordinator\n  coordinator completions fish > coordinator.fish\n\nThen source coordinator.bash (or install it in /etc/bash_completion.d/), put _coordinator in a\ndirectory of zsh's $fpath, or coordinator.fish in ~/.config/fish/completions/."
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout.
    #[command(
        after_help = "Examples:\n  coordinator man > coordinator.1\n\nRead it with man ./coordinator.1"
    )]
    Man,
    /// Assemble OUTPUT from the journals its shards (`--shard I/N`) left in OUTPUT.shards/:
    /// refuses, naming them, if any shard or chunk is missing.
    #[command(
        after_help = "Examples:\n  coordinator resample demo.tif out.tif -f 8 --shard 0/2\n  coordinator resample demo.tif out.tif -f 8 --shard 1/2\n  coordinator merge out.tif"
    )]
    Merge(MergeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A report written by `--report`.
    pub report: PathBuf,
    /// Where to write the page.
    #[arg(long)]
    pub html: PathBuf,
    /// Replace the page if it exists.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    pub shell: Shell,
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

#[derive(Debug, Clone, Args)]
pub struct BenchWriterArgs {
    /// Where to write the benchmark's GeoTIFF.
    pub output: PathBuf,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Side of the simulated square Float32 input (tiled 256), in pixels.
    #[arg(long, default_value_t = 32768)]
    pub side: u64,
    /// Block size F.
    #[arg(long, short = 'f', default_value_t = 8, value_parser = parse_factor)]
    pub factor: u32,
    /// Chunk size in MiB of input, as `resample --chunk-mib`.
    #[arg(long, default_value_t = 16.0, value_parser = parse_positive)]
    pub chunk_mib: f64,
    /// Output data type.
    #[arg(long, default_value = "Float64", value_parser = parse_ot)]
    pub ot: SampleType,
    /// GDAL creation option KEY=VALUE (repeatable), over the same defaults as `resample`.
    #[arg(long = "co")]
    pub creation_options: Vec<String>,
    /// Distinct synthetic chunk outputs, cycled over the output's windows.
    #[arg(long, default_value_t = 16)]
    pub distinct: usize,
    /// Input a native worker decodes per second, in GiB, for the ceiling in workers.
    #[arg(long, default_value_t = 0.9, value_parser = parse_positive)]
    pub worker_gibps: f64,
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
    /// Block size F: each output pixel aggregates F x F input pixels (the same as --tr of F
    /// input pixels on the input's origin).
    #[arg(long, short = 'f', value_parser = parse_factor, allow_negative_numbers = true)]
    pub factor: Option<u32>,
    /// Target resolution XRES YRES in the input's CRS units: each cell aggregates the input
    /// pixels it overlaps, each weighted by the fraction of its area inside the cell.
    #[arg(long, num_args = 2, value_names = ["XRES", "YRES"], value_parser = parse_positive, allow_negative_numbers = true)]
    pub tr: Vec<f64>,
    /// Target extent XMIN YMIN XMAX YMAX (with --tr). Default: the input's bounds, extended
    /// right and down to whole cells.
    #[arg(long, num_args = 4, value_names = ["XMIN", "YMIN", "XMAX", "YMAX"], value_parser = parse_finite, allow_negative_numbers = true)]
    pub te: Vec<f64>,
    /// Align the extent's edges on multiples of the resolution (with --tr), outward.
    #[arg(long)]
    pub tap: bool,
    /// Take the target grid (size, transform, CRS) from REF, any raster GDAL opens; its CRS
    /// must be the input's (this tool never reprojects).
    #[arg(long, value_name = "REF")]
    pub like: Option<PathBuf>,
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
    /// Count pixels that the input's GDAL mask (a per-dataset or per-band mask, an alpha
    /// band, a .msk sidecar) marks invalid as valid. Default: they are invalid, as for GDAL's
    /// own tools.
    #[arg(long)]
    pub ignore_mask: bool,
    /// Make a worker misbehave: KIND:CHUNK or KIND:CHUNK:TIMES, KIND one of crash, segv, exit, hang,
    /// slow, garbage, oom, leak; CHUNK a chunk index (or *); TIMES the attempts it fires on.
    #[arg(long = "inject-fault", value_parser = parse_fault)]
    pub faults: Vec<FaultSpec>,
    #[command(flatten)]
    pub pool: PoolArgs,
}

fn parse_ot(s: &str) -> Result<SampleType, String> {
    match SampleType::from_gdal_name(s) {
        // GDAL 3.6 writes signed bytes only as Byte with PIXELTYPE=SIGNEDBYTE, a view that
        // its own conversions treat as unsigned: not an output type here.
        Some(SampleType::I8) => Err(format!(
            "'{s}' output is not supported (GDAL 3.6 has no Int8 type to write): Int16 holds every Int8 value"
        )),
        Some(t) => Ok(t),
        None => Err(format!(
            "unknown type '{s}' (Byte, Int16, UInt16, Int32, UInt32, Float32, Float64)"
        )),
    }
}

fn parse_fault(s: &str) -> Result<FaultSpec, String> {
    s.parse()
        .map_err(|e: protocol::fault::FaultParseError| e.to_string())
}

#[derive(Debug, Clone, Args)]
pub struct ResampleArgs {
    /// INPUT OUTPUT: the raster to read (anything GDAL opens) and where to write the
    /// GeoTIFF (written under a temporary name, renamed when complete). With --out-dir:
    /// the inputs, each written to DIR under its own file name.
    #[arg(value_name = "INPUT OUTPUT | INPUTS")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
    /// A batch: every positional argument is an input, each written to DIR under its own
    /// file name (two inputs with the same name are refused), all on one pool of workers.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// A batch's inputs from a file, one path per line (blank lines and lines starting with
    /// # are skipped; relative paths are from the current directory); needs --out-dir.
    #[arg(long, value_name = "LIST")]
    pub inputs: Option<PathBuf>,
    /// Pixel decoder: native (this tool's own, for local GeoTIFFs with no compression, DEFLATE
    /// or ZSTD; an error on anything else), gdal, or auto (native where it applies, else GDAL).
    #[arg(long, value_enum, default_value = "auto")]
    pub decoder: DecoderArg,
    /// Add exact overviews: each level is the same aggregation at twice the previous level's
    /// factor (a sum of sums, a min of mins, a mean over all valid pixels, a count of
    /// counts; not a GDAL resampling), halving until the smaller side fits one tile. Costs
    /// one more read of the input per level.
    #[arg(long)]
    pub pyramid: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `--of`: the output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FormatArg {
    /// A tiled GeoTIFF (`--co` goes to GDAL's GTiff driver).
    #[default]
    #[value(name = "GTiff", alias = "gtiff")]
    GTiff,
    /// A Cloud Optimized GeoTIFF (`--co` goes to GDAL's COG driver).
    #[value(name = "COG", alias = "cog")]
    Cog,
}

/// The options of a run that writes an output (`resample` and `map` alike).
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Write a JSON report: the plan, every chunk and attempt, every worker, totals.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the report as one self-contained HTML page too: a task-stream timeline (a row
    /// per worker incarnation, a bar per attempt), worker memory, throughput and totals.
    #[arg(long)]
    pub report_html: Option<PathBuf>,
    /// Stream every event as it happens as JSON lines (`-`: stdout): plan, workers spawned,
    /// ready, dead, recycled; chunks dispatched, done, failed, retried, timed out, split,
    /// quarantined; memory samples, admission, commit. Schema: docs/events.md.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Replace OUTPUT (and the report) if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// GDAL creation option KEY=VALUE (repeatable), for the driver of --of. Default for GTiff:
    /// TILED=YES COMPRESS=DEFLATE ZLEVEL=1 BIGTIFF=IF_SAFER NUM_THREADS=ALL_CPUS; for COG:
    /// COMPRESS=DEFLATE LEVEL=1 BIGTIFF=IF_SAFER NUM_THREADS=ALL_CPUS (and OVERVIEWS=NONE
    /// without --pyramid).
    #[arg(long = "co")]
    pub creation_options: Vec<String>,
    /// Output format: GTiff, or COG (a Cloud Optimized GeoTIFF: the GTiff is written, then
    /// copied by GDAL's COG driver before it is moved into place).
    #[arg(long = "of", value_enum, default_value = "GTiff")]
    pub format: FormatArg,
    /// The worker binary. Default: `worker` beside this program. For `map` without
    /// --kernel-lib: a Rust kernel's own binary (`fn main() { runtime::serve::<MyKernel>() }`).
    #[arg(long, env = "BLOCKSUM_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    // Help text built here so that the default is written once, in `DEFAULT_KILL_GRACE`.
    #[arg(long, value_parser = units::parse_duration, allow_hyphen_values = true, help = format!("Grace between TERM and KILL when stopping a worker [default: {DEFAULT_KILL_GRACE:?}]"))]
    pub kill_grace: Option<Duration>,
    /// Continue an interrupted run from its journal (OUTPUT.journal, or the shard's in
    /// OUTPUT.shards/): journaled chunks are not computed again. With no journal, the run
    /// starts from the beginning.
    #[arg(long)]
    pub resume: bool,
    /// Run only shard I of N (I/N, 0 <= I < N: a band of rows of chunks) into a journal in
    /// OUTPUT.shards/, for `coordinator merge OUTPUT`; or auto: I (and N) from an array job's
    /// environment (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX).
    // Hyphen values reach the parser, whose error names the flag (`--shard -1/2`).
    #[arg(long, value_parser = crate::shard::parse_shard, allow_hyphen_values = true)]
    pub shard: Option<crate::shard::ShardArg>,
    /// N for --shard auto where the engine does not say it (Kubernetes, AWS Batch; with Slurm
    /// it makes the array task id itself the shard index).
    #[arg(long, value_parser = parse_shards, allow_negative_numbers = true)]
    pub shards: Option<u32>,
}

fn parse_shards(s: &str) -> Result<u32, String> {
    settings::whole(s, 1).map_err(|_| format!("'{s}' is not a number of shards (1, 2, ...)"))
}

/// `coordinator merge`: the shards' journals into one output.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// The output the shards were run for: their journals are in OUTPUT.shards/.
    pub output: PathBuf,
    /// Write OUTPUT as a VRT over one GeoTIFF per shard (OUTPUT.shards/shard-I-of-N.tif)
    /// instead of one GeoTIFF.
    #[arg(long)]
    pub vrt: bool,
    /// Replace OUTPUT if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Keep OUTPUT.shards/ after a successful merge (by default it is removed).
    #[arg(long)]
    pub keep_shards: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The raster to read (anything GDAL opens).
    pub input: PathBuf,
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

fn parse_finite(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("'{s}' is not a number")),
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("'{s}' is not a positive number")),
    }
}

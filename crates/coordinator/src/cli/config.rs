//! The run's config, [`RunConfig`], as parts: what is read and written ([`Target`]), what is
//! computed ([`JobConfig`]), the pool that computes it ([`PoolConfig`]), how the output is
//! written ([`OutputConfig`]), what survives a kill ([`Durability`]) and what is said about
//! the run ([`Observation`]). `resolve` builds it with no option left to default; nothing in
//! it is a placeholder. One output's run of it (a single run, one input of a batch) is a
//! [`OneRun`]; an overview level is a run of its own, built from the base run's parts and a
//! [`LevelSpec`] ([`OneRun::level`]).

use std::{path::PathBuf, time::Duration};

use protocol::FaultSpec;
use worker::{Agg, Decoder, SampleType};

use super::{BatchSpec, CreationOptions};
use crate::{
    cog::{LevelSpec, OutputFormat},
    grid::GridRequest,
    sched::{SpeculationSpec, TimeoutSpec},
    shard::Shard,
};

/// Everything a `resample`, `map` or `plan` command does, resolved.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub job: JobConfig,
    pub pool: PoolConfig,
    pub output: OutputConfig,
    pub durability: Durability,
    pub observe: Observation,
}

/// What the run reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `resample INPUT OUTPUT`, `map INPUT OUTPUT`.
    Single(Io),
    /// `resample IN1 IN2 ... --out-dir DIR` (or `--inputs LIST`): several inputs on one pool.
    Batch(BatchSpec),
    /// `plan INPUT`: what a run of INPUT would do; nothing is written.
    Plan(PathBuf),
}

/// One input and the output it is written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Io {
    pub input: PathBuf,
    pub output: PathBuf,
}

/// What the workers compute, and from which pixels.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The output grid: F x F blocks, or a target grid.
    pub grid: GridRequest,
    /// What the workers compute over each chunk.
    pub kernel: Kernel,
    pub bands: Vec<u32>,
    pub out_type: Option<SampleType>,
    /// `--ignore-mask`: GDAL mask bands do not make pixels invalid.
    pub ignore_mask: bool,
    /// Which decoder the kernels read pixels with.
    pub decoder: Decoder,
}

/// The pool the chunks run on: its processes, their supervision and their memory.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// 0: in-process only.
    pub workers: u32,
    /// `--workers auto`: memory may lower `workers`.
    pub workers_auto: bool,
    /// Warm spare worker processes beside the busy ones (pool only).
    pub spare_workers: u32,
    pub in_process_threads: u32,
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
    /// `--inject-fault`: they name the chunks of the whole run (a batch numbers its inputs'
    /// chunks one input after the other), see [`OneRun::faults`].
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
    /// The input bytes a chunk aims at (`--chunk-mib`).
    pub chunk_bytes: u64,
}

/// How the output is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputConfig {
    /// GTiff or COG (with the COG driver's options; `creation_options` are then the staged
    /// GTiff's).
    pub format: OutputFormat,
    /// `--pyramid`: exact aggregate overviews (`crate::cog`).
    pub pyramid: bool,
    pub creation_options: CreationOptions,
    pub overwrite: bool,
}

/// What of the run survives a kill.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durability {
    /// `--resume`: continue from the journal of an earlier run.
    pub resume: bool,
    /// `--shard`: this run is one shard, writing a journal for `merge`.
    pub shard: Option<Shard>,
}

/// What is said about the run, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub report: Option<PathBuf>,
    /// `--report-html`: the report as a page.
    pub report_html: Option<PathBuf>,
    /// `--events`: the event stream (`-`: stdout).
    pub events: Option<PathBuf>,
    pub quiet: bool,
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

impl RunConfig {
    /// The run of one output: `io` is the single run's target, or one input of the batch.
    pub fn one<'a>(&'a self, io: &'a Io) -> OneRun<'a> {
        OneRun { cfg: self, io }
    }

    /// The faults a plan of one input is checked against and its report names: the run's,
    /// none for one input of a batch (the batch's faults number the chunks of all its
    /// inputs, and it checks them itself).
    pub fn input_faults(&self) -> &[FaultSpec] {
        match self.target {
            Target::Batch(_) => &[],
            Target::Single(_) | Target::Plan(_) => &self.pool.faults,
        }
    }
}

/// One output's run: the run's config and the input and output of this run (the single
/// run's own, or one input of a batch).
#[derive(Debug, Clone, Copy)]
pub struct OneRun<'a> {
    pub cfg: &'a RunConfig,
    pub io: &'a Io,
}

impl OneRun<'_> {
    /// The faults this output's chunks are checked against ([`RunConfig::input_faults`]).
    pub fn faults(&self) -> &[FaultSpec] {
        self.cfg.input_faults()
    }

    /// The run of one overview level (`cog::LevelSpec`): this run's input, job and pool at
    /// the level's grid, into its scratch file with its creation options; no report, page,
    /// event stream, journal to resume, shard, pyramid or COG (the base run owns those), no
    /// injected fault (they name the base run's chunks).
    pub fn level(&self, level: &LevelSpec) -> RunConfig {
        let base = self.cfg;
        RunConfig {
            target: Target::Single(Io {
                input: self.io.input.clone(),
                output: level.output.clone(),
            }),
            job: JobConfig {
                grid: level.grid.clone(),
                ..base.job.clone()
            },
            pool: PoolConfig {
                faults: Vec::new(),
                ..base.pool.clone()
            },
            output: OutputConfig {
                format: OutputFormat::GTiff,
                pyramid: false,
                creation_options: level.creation_options.clone(),
                overwrite: false,
            },
            durability: Durability::default(),
            observe: Observation {
                quiet: base.observe.quiet,
                ..Observation::default()
            },
        }
    }
}

//! `coordinator resample` and `coordinator map`: the job's side of a run, as phases.
//! `prepare` (validate the input and the options, plan, the memory arithmetic); `single`
//! (one input: staged, pool up, journaled, ran, committed and reported, each a function);
//! `batch` (several inputs on one pool, through the same pool bring-up, journal, report
//! rule and summary line); `pool` (bringing the pool up: checks, GDAL cache, the slot ring,
//! the engine's configuration); `durable` (the journal, resume, the output's spec); `job`
//! (the job as the engine sees it: chunk sizes and payloads, splits, the sink's items);
//! `view` (the finished run read back: the report and the closing warnings); `summary`
//! (the line a run prints of each output).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use engine::{
    inproc::ExecutorFactory,
    memory::MemState,
    sched::{ChunkOutcome, SchedConfig, Scheduler, SpeculationSpec, TimeoutSpec},
    ChunkSpec, EngineConfig, EngineError, Job,
};
use protocol::{SlotLayout, TaskId};
use shm::SlotRing;
use worker::{
    exec::{BlockAggChunk, BlockAggInput, BlockAggSetup},
    map::{MapChunk, MapSetup},
    Footprint, KernelSpec, SampleType, Window, WorkerChunk, WorkerKernel, WorkerSetup,
};

pub use engine::memory::{available_memory, total_memory};

use crate::{
    budget::{self, MemoryPlan},
    error::CoordError,
    fidelity,
    grid::{self, GridRequest, Mapping},
    output,
    plan::{plan, plan_cells, Chunk, Plan},
    raster::{self, BandInfo, RasterInfo},
    report::{ChunkReport, PlanSummary, QuarantinedWindow, Report, Totals, WorkerReport},
    stdio::eline,
    writer::{self, Adjusted, GtiffSink, OutputSpec},
};

/// Defined beside the code that builds it (`cli::resolve`).
pub use crate::cli::{Io, Kernel, MapSpec, OneRun, RunConfig, Target};

mod batch;
mod durable;
mod job;
mod pool;
mod prepare;
mod single;
mod summary;
mod view;

use job::BlockAggJob;
use pool::{bring_up, engine_config, engine_error, Pool};
pub use prepare::{coordinator_cache_bytes, describe, prepare, Prepared};
use view::RunView;

/// What a finished run tells `main`.
pub struct RunSummary {
    pub exit_code: i32,
    pub message: String,
}

/// Runs `resample` or `map`: a batch of several inputs (`batch`), or one input through the
/// phases of `single`.
pub fn resample(cfg: &RunConfig) -> Result<RunSummary, CoordError> {
    match &cfg.target {
        Target::Single(io) => single::run(cfg.one(io)),
        Target::Batch(batch) => batch::resample_batch(cfg, batch),
        Target::Plan(_) => Err(CoordError::Internal(
            "`plan` writes nothing: it has no run".into(),
        )),
    }
}

/// The run's side files, each with its flag.
fn side_paths(cfg: &RunConfig) -> Vec<output::SidePath<'_>> {
    [
        ("--report", &cfg.observe.report),
        ("--report-html", &cfg.observe.report_html),
        ("--events", &cfg.observe.events),
    ]
    .into_iter()
    .filter_map(|(flag, p)| p.as_deref().map(|p| output::SidePath::new(flag, p)))
    .collect()
}

/// The output's bands: the selected input bands for `resample`, `out_bands` unnamed
/// Float64 planes for `map`.
fn out_bands(cfg: &RunConfig, prep: &Prepared) -> Vec<BandInfo> {
    match &cfg.job.kernel {
        Kernel::BlockAgg(_) => prep.bands.clone(),
        Kernel::Map(m) => (1..=m.out_bands)
            .map(|index| BandInfo {
                index,
                sample: SampleType::F64,
                nodata: None,
                description: String::new(),
                masked: false,
                meta: Default::default(),
            })
            .collect(),
    }
}

/// How the report and the metadata name a map kernel: its library's or binary's file name.
fn kernel_name(cfg: &RunConfig, m: &MapSpec) -> String {
    let path = m.lib.as_deref().unwrap_or(&cfg.pool.worker_bin);
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One pixel: the per-pixel arithmetic of the slot sizes.
fn unit_window() -> Window {
    Window {
        x: 0,
        y: 0,
        w: 1,
        h: 1,
    }
}

/// Where the worker binary is by default: beside the running coordinator.
pub fn default_worker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("worker")))
        .unwrap_or_else(|| Path::new("worker").to_path_buf())
}

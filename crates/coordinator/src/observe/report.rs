//! The JSON run report (`--report PATH`): the plan, every chunk with every attempt, every
//! worker incarnation with its memory peaks and cause of death, and totals.

use engine::memory::{MemPeak, MemSample};
use serde::{Deserialize, Serialize};

use crate::{
    plan::Plan,
    sched::{AttemptRecord, ChunkOutcome, FailureCause, SchedCounters, SplitReason, WorkerId},
};

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub status: RunStatus,
    /// The run's error, one line, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub exit_code: i32,
    pub input: String,
    pub output: String,
    pub options: ReportOptions,
    pub plan: PlanSummary,
    pub chunks: Vec<ChunkReport>,
    pub workers: Vec<WorkerReport>,
    pub totals: Totals,
    /// The chunk journal: chunks resumed from an earlier run, what this run appended.
    #[serde(default)]
    pub journal: Option<crate::journal::JournalStats>,
}

/// One input's section of the batch report.
#[derive(Debug, Serialize, Deserialize)]
pub struct InputReport {
    pub input: String,
    pub output: String,
    pub status: RunStatus,
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Absent for an input refused before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<ReportOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSummary>,
    /// The engine's task id of this input's chunk 0 (fault injection and the engine's logs
    /// number the batch's chunks one input after the other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_task: Option<u32>,
    /// Chunks under their local ids, as a single run of this input numbers them.
    pub chunks: Vec<ChunkReport>,
    pub quarantined_windows: Vec<QuarantinedWindow>,
    pub adjusted_by_band: Vec<crate::writer::Adjusted>,
    /// Chunk attempts that opened this input in a worker rather than finding it open.
    pub opened_inputs: u64,
}

/// The report of a batch (`resample IN1 IN2 ... --out-dir DIR --report PATH`): a section per
/// input, the pool's workers and totals once.
#[derive(Debug, Serialize, Deserialize)]
pub struct BatchReport {
    pub tool: String,
    pub version: String,
    pub status: RunStatus,
    pub exit_code: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub out_dir: String,
    pub inputs: Vec<InputReport>,
    /// The pool's workers, over the whole batch.
    pub workers: Vec<WorkerReport>,
    /// Over the whole batch (chunk ids here are the engine's task ids).
    pub totals: Option<Totals>,
    /// Inputs opened by workers and lanes, over the batch (each process keeps a few open).
    pub opened_inputs: u64,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Ok,
    CompletedWithQuarantinedChunks,
    Failed,
}

/// The options that decided the run, resolved.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReportOptions {
    /// `--factor`, or the factor a target grid is; `None` on a target grid of cells.
    pub factor: Option<u32>,
    /// The target grid of cells, in words (`None` for blocks).
    #[serde(default)]
    pub target_grid: Option<String>,
    /// The aggregation (`resample`), or `None` for `map`.
    pub agg: Option<String>,
    /// `--decoder`: auto, native or gdal.
    pub decoder: String,
    /// The user's kernel (`map`).
    pub kernel: Option<KernelOptions>,
    pub bands: Vec<u32>,
    pub sample_type: String,
    pub output_type: String,
    /// A number, "nan", or null: no nodata declared (no block can be empty).
    pub output_nodata: serde_json::Value,
    pub workers: u32,
    pub memory: MemoryOptions,
    pub max_attempts: u32,
    /// "none", "N ms", or "P% of the median chunk time".
    pub task_timeout: String,
    /// Speculative backups: "off", or "Kx the median chunk time, at least N ms".
    #[serde(default)]
    pub speculation: String,
    /// `KIND:CHUNK:TIMES` as given.
    pub faults: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KernelOptions {
    /// The library's or the binary's file name.
    pub name: String,
    pub library: Option<String>,
    pub args: Vec<String>,
    pub out_bands: u32,
    pub in_process_fallback: bool,
}

/// The memory arithmetic the run used (bytes).
#[derive(Debug, Serialize, Deserialize)]
pub struct MemoryOptions {
    pub limit_per_worker: Option<u64>,
    pub limit_is_auto: bool,
    pub soft_limit: Option<u64>,
    pub gdal_cache_per_worker: u64,
    pub ring: u64,
    pub coordinator_expected: u64,
    pub total_expected: u64,
    pub available: u64,
    pub min_free_memory: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlanSummary {
    pub width: u64,
    pub height: u64,
    /// F for blocks; `None` on a target grid of cells (`target`).
    pub factor: Option<u64>,
    #[serde(default)]
    pub target: Option<crate::grid::TargetGrid>,
    pub out_width: u64,
    pub out_height: u64,
    pub chunk_width: u64,
    pub chunk_height: u64,
    pub chunks: usize,
    pub slots: u32,
    pub slot_bytes: u64,
    pub bytes_in_flight: u64,
    /// Input bytes of one pixel across the bands (a chunk's input is its window's pixels
    /// times this).
    #[serde(default)]
    pub pixel_bytes: u64,
}

impl PlanSummary {
    pub fn new(plan: &Plan, slots: u32, slot_bytes: u64) -> PlanSummary {
        PlanSummary {
            width: plan.width,
            height: plan.height,
            factor: plan.mapping.factor(),
            target: match &plan.mapping {
                crate::grid::Mapping::Cells { target } => Some(*target),
                crate::grid::Mapping::Factor { .. } => None,
            },
            out_width: plan.out_width,
            out_height: plan.out_height,
            chunk_width: plan.chunk_w,
            chunk_height: plan.chunk_h,
            chunks: plan.chunks.len(),
            slots,
            slot_bytes,
            bytes_in_flight: slots as u64 * slot_bytes,
            pixel_bytes: plan.pixel_bytes,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChunkReport {
    pub id: u32,
    /// Its id in the whole plan, where that differs from `id` (a resumed run or a shard runs
    /// a subset of the plan, numbered from 0); none for the parts of a split chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<u32>,
    /// The chunk this one is a part of (split), or none for a plan chunk.
    pub parent: Option<u32>,
    pub window: [u64; 4],
    pub out_window: [u64; 4],
    pub outcome: Option<ChunkOutcome>,
    /// Why it was split, when its outcome is `split`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitReason>,
    pub attempts: Vec<AttemptRecord>,
    pub write_us: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerReport {
    pub worker: WorkerId,
    pub incarnation: u32,
    pub pid: Option<u32>,
    pub spawned_ms: u64,
    pub ready_ms: Option<u64>,
    pub exited_ms: Option<u64>,
    pub chunks: u32,
    pub recycled: bool,
    pub cause: Option<FailureCause>,
    #[serde(flatten)]
    pub memory: MemPeak,
    pub stderr_tail: Vec<String>,
    /// The sampler's readings over the run (`--memory-poll`), thinned to at most
    /// `engine::memory::MAX_SAMPLES`.
    #[serde(default)]
    pub memory_samples: Vec<MemSample>,
}

/// A window whose output pixels are nodata: `x, y, w, h` in input and output pixels.
#[derive(Debug, Serialize, Deserialize)]
pub struct QuarantinedWindow {
    pub id: u32,
    pub window: [u64; 4],
    pub out_window: [u64; 4],
    /// Its last failure: GDAL's text, the signal, ...
    pub cause: String,
}

#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Totals {
    /// Chunks of the plan.
    pub chunks: usize,
    /// Chunks run: the plan's and the parts of split ones.
    pub tasks: usize,
    pub done: usize,
    pub done_in_process: usize,
    /// Successful attempts whose input the native decoder read (the others: GDAL).
    #[serde(default)]
    pub native_reads: usize,
    /// Successful attempts whose input the native decoder could not read and GDAL read
    /// instead (`--decoder auto`'s per-chunk fallback; a `chunk_read_fallback` event each).
    #[serde(default)]
    pub fallback_reads: usize,
    /// Chunks split into parts (they write nothing themselves).
    pub split: usize,
    /// Ids of the quarantined chunks (leaves: exact windows).
    pub quarantined: Vec<u32>,
    pub quarantined_windows: Vec<QuarantinedWindow>,
    pub workers_spawned: usize,
    #[serde(flatten)]
    pub counters: SchedCounters,
    pub deaths_by_cause: std::collections::BTreeMap<String, u32>,
    pub wall_ms: u64,
    pub input_mib_per_s: f64,
    pub coordinator_peak_rss_bytes: u64,
    /// Time dispatch was held because available memory was under `--min-free-memory`.
    pub admission_wait_ms: u64,
    /// User + system CPU of the coordinator process itself (writer and in-process lanes included).
    pub coordinator_cpu_ms: u64,
    /// Per output band: valid values the output type could not hold (clamped into its
    /// range, or moved one step off the nodata value).
    pub adjusted_by_band: Vec<crate::writer::Adjusted>,
}

//! The JSON run report (`--report PATH`): the plan, every chunk with every attempt, every
//! worker incarnation with its memory peaks and cause of death, and totals.

use engine::memory::MemPeak;
use serde::{Deserialize, Serialize};

use crate::{
    plan::Plan,
    sched::{AttemptRecord, ChunkOutcome, FailureCause, SchedCounters, SplitReason, WorkerId},
};

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub status: String,
    pub exit_code: i32,
    pub input: String,
    pub output: String,
    pub options: serde_json::Value,
    pub plan: PlanSummary,
    pub chunks: Vec<ChunkReport>,
    pub workers: Vec<WorkerReport>,
    pub totals: Totals,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlanSummary {
    pub width: u64,
    pub height: u64,
    pub factor: u64,
    pub out_width: u64,
    pub out_height: u64,
    pub chunk_width: u64,
    pub chunk_height: u64,
    pub chunks: usize,
    pub slots: u32,
    pub slot_bytes: u64,
    pub bytes_in_flight: u64,
}

impl PlanSummary {
    pub fn new(plan: &Plan, slots: u32, slot_bytes: u64) -> PlanSummary {
        PlanSummary {
            width: plan.width,
            height: plan.height,
            factor: plan.factor,
            out_width: plan.out_width,
            out_height: plan.out_height,
            chunk_width: plan.chunk_w,
            chunk_height: plan.chunk_h,
            chunks: plan.chunks.len(),
            slots,
            slot_bytes,
            bytes_in_flight: slots as u64 * slot_bytes,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChunkReport {
    pub id: u32,
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

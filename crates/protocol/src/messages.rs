//! Control messages. Small and fixed-size-ish: windows, regions, ids and timings.

use serde::{Deserialize, Serialize};

use crate::{
    fault::FaultKind,
    layout::Region,
    types::{Attempt, KernelSpec, TaskId, Window},
};

/// What a worker is told at start (on its command line, see [`WorkerArgs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// Name of the coordinator's one-shot IPC server.
    pub connect: String,
    /// File descriptor number of the inherited shared segment.
    pub shm_fd: i32,
    /// Length of the shared segment in bytes.
    pub shm_len: u64,
    /// The raster the worker reads windows from.
    pub input: String,
    /// 1-based band numbers to read, in order.
    pub bands: Vec<u32>,
}

/// Coordinator to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    Task(TaskMsg),
    /// Finish: exit 0 at once.
    Shutdown,
}

/// One chunk to compute: read `window` of every band into `input`, aggregate into `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMsg {
    pub task: TaskId,
    pub attempt: Attempt,
    pub window: Window,
    pub input: Region,
    pub output: Region,
    pub kernel: KernelSpec,
    /// Injected fault for this attempt (testing aid), if any.
    pub fault: Option<FaultKind>,
}

/// Worker to coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// First message after connecting.
    Hello { version: u32, pid: u32 },
    /// The chunk's output is in its output region.
    Done {
        task: TaskId,
        attempt: Attempt,
        stats: TaskStats,
    },
    /// The chunk could not be computed (GDAL read error, bad region): the worker lives on.
    Failed {
        task: TaskId,
        attempt: Attempt,
        error: String,
    },
}

/// Timings a worker measured for one chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    pub read_us: u64,
    pub compute_us: u64,
    /// Number of valid (not nodata, not NaN) input pixels seen.
    pub valid_pixels: u64,
}

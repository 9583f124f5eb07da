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
    /// No-op task for the dispatch benchmark: touch the first and last byte of `region`
    /// (proving the worker sees the coordinator's bytes without a copy) and answer `Done`.
    Echo {
        task: TaskId,
        attempt: Attempt,
        region: Region,
    },
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

impl WorkerArgs {
    /// The worker's command line, in the form [`WorkerArgs::parse`] reads.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "--connect".to_string(),
            self.connect.clone(),
            "--shm-fd".to_string(),
            self.shm_fd.to_string(),
            "--shm-len".to_string(),
            self.shm_len.to_string(),
            "--input".to_string(),
            self.input.clone(),
        ];
        for b in &self.bands {
            v.push("--band".to_string());
            v.push(b.to_string());
        }
        v
    }

    /// Parses the worker's command line (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<WorkerArgs, String> {
        let mut connect = None;
        let mut shm_fd = None;
        let mut shm_len = None;
        let mut input = None;
        let mut bands = Vec::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--connect" => connect = Some(value()?),
                "--shm-fd" => {
                    shm_fd = Some(value()?.parse().map_err(|_| "--shm-fd is not a number")?)
                }
                "--shm-len" => {
                    shm_len = Some(value()?.parse().map_err(|_| "--shm-len is not a number")?)
                }
                "--input" => input = Some(value()?),
                "--band" => bands.push(value()?.parse().map_err(|_| "--band is not a number")?),
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        Ok(WorkerArgs {
            connect: connect.ok_or("missing --connect")?,
            shm_fd: shm_fd.ok_or("missing --shm-fd")?,
            shm_len: shm_len.ok_or("missing --shm-len")?,
            input: input.ok_or("missing --input")?,
            bands,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_args_round_trip() {
        let a = WorkerArgs {
            connect: "srv".into(),
            shm_fd: 3,
            shm_len: 1 << 30,
            input: "in put.tif".into(),
            bands: vec![1, 3],
        };
        assert_eq!(WorkerArgs::parse(a.to_args()).unwrap(), a);
        assert!(WorkerArgs::parse(vec!["--bogus".into()]).is_err());
        assert!(WorkerArgs::parse(vec!["--shm-fd".into()]).is_err());
    }
}

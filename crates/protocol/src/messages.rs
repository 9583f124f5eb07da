//! The envelope: what travels between the coordinator and a worker, whatever the job. Job
//! data (a kernel's setup, a chunk's parameters) rides inside as opaque, codec-encoded
//! bytes; shared memory travels as descriptors ([`Region`]), never as the bytes themselves.
//!
//! The conversation: the worker connects and says `Hello` (version, pid); the coordinator
//! sends `Setup` once; the worker answers `Ready` (or `SetupFailed` and exits); then `Task`
//! after `Task`, each answered by `Done` or `Failed`; `Shutdown` ends it.

use serde::{Deserialize, Serialize};

use crate::{
    fault::FaultKind,
    layout::Region,
    types::{Attempt, TaskId},
};

/// A worker's command line: only how to reach the coordinator and the shared segment.
/// Everything else arrives as the `Setup` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerArgs {
    /// Name of the coordinator's one-shot IPC server.
    pub connect: String,
    /// File descriptor number of the inherited shared segment.
    pub shm_fd: i32,
    /// Length of the shared segment in bytes.
    pub shm_len: u64,
}

/// Coordinator to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// The job's per-process setup (its kernel decodes it), sent once after `Hello`.
    Setup(Vec<u8>),
    Task(TaskMsg),
    /// Finish: exit 0 at once.
    Shutdown,
}

/// One chunk to compute: the job's `payload` describes it; `input` and `output` are the
/// slot's regions of the shared segment, given to this worker alone until it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMsg {
    pub task: TaskId,
    pub attempt: Attempt,
    pub input: Region,
    pub output: Region,
    pub payload: Vec<u8>,
    /// Injected fault for this attempt (testing aid), if any.
    pub fault: Option<FaultKind>,
}

/// Worker to coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// First message after connecting.
    Hello { version: u32, pid: u32 },
    /// The setup worked: ready for tasks.
    Ready,
    /// The setup failed (the input does not open, a plug-in does not load): the worker exits.
    SetupFailed { error: String },
    /// The chunk's output is in its output region.
    Done {
        task: TaskId,
        attempt: Attempt,
        stats: TaskStats,
    },
    /// The chunk could not be computed (a read error, a bad region): the worker lives on.
    Failed {
        task: TaskId,
        attempt: Attempt,
        error: String,
    },
}

/// What a kernel measured for one chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    pub read_us: u64,
    pub compute_us: u64,
    /// Items the kernel counted as valid (for block aggregation: input pixels that are not
    /// nodata and not NaN).
    pub valid_pixels: u64,
    /// The kernel read its input with its own native decoder rather than GDAL (the report
    /// counts these; a kernel that reads nothing leaves it false).
    #[serde(default)]
    pub native_read: bool,
    /// The kernel's first read path failed on this chunk and it read the input again by
    /// its fallback (block aggregation under `--decoder auto`: the native decoder, then
    /// GDAL). The report counts these and the event stream names them.
    #[serde(default)]
    pub fallback_read: bool,
    /// Inputs the kernel opened for this chunk (or since its last answer): 0 when its cache
    /// of open datasets already held the chunk's input. The report sums them.
    #[serde(default)]
    pub opened_inputs: u32,
}

impl WorkerArgs {
    /// The worker's command line, in the form [`WorkerArgs::parse`] reads.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--connect".to_string(),
            self.connect.clone(),
            "--shm-fd".to_string(),
            self.shm_fd.to_string(),
            "--shm-len".to_string(),
            self.shm_len.to_string(),
        ]
    }

    /// Parses the worker's command line (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<WorkerArgs, String> {
        let mut connect = None;
        let mut shm_fd = None;
        let mut shm_len = None;
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
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        Ok(WorkerArgs {
            connect: connect.ok_or("missing --connect")?,
            shm_fd: shm_fd.ok_or("missing --shm-fd")?,
            shm_len: shm_len.ok_or("missing --shm-len")?,
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
        };
        assert_eq!(WorkerArgs::parse(a.to_args()).unwrap(), a);
        assert!(WorkerArgs::parse(vec!["--bogus".into()]).is_err());
        assert!(WorkerArgs::parse(vec!["--shm-fd".into()]).is_err());
    }
}

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

/// The fork server's command line (`worker --fork-server FD`): the control socket it takes
/// fork requests on. The fork server is started for one run, with the environment its
/// workers share (`BLOCKSUM_JOB`, which `/proc/PID/environ` then shows for each of them);
/// the rest comes with each request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkServerArgs {
    /// File descriptor number of the inherited control socket (SOCK_SEQPACKET).
    pub control_fd: i32,
}

/// What a worker binary was started as: a worker, or the fork server that forks workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerCommand {
    Worker(WorkerArgs),
    ForkServer(ForkServerArgs),
}

/// Coordinator to fork server, one per control-socket message: fork one worker. Two
/// descriptors travel beside it: the write end of the pipe that is the worker's stderr,
/// then the shared segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForkRequest {
    /// Name of the coordinator's one-shot IPC server the worker connects to.
    pub connect: String,
    /// Length of the shared segment in bytes.
    pub shm_len: u64,
    /// Hard memory limit (RLIMIT_DATA) the worker runs under, in bytes.
    pub data_limit: Option<u64>,
    /// Environment set in the worker (the run's; a fork server started ahead of its run
    /// has only part of it).
    pub env: Vec<(String, String)>,
}

/// Fork server to coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromForkServer {
    /// First message: the template has loaded what every worker loads, and takes requests.
    Ready { version: u32 },
    /// A worker is running: `pid` is a child of the coordinator (reparented to it), so the
    /// coordinator waits for it and reads its exit status as for a spawned worker.
    Forked { pid: u32 },
    /// The fork failed (the coordinator spawns that worker itself).
    Failed { error: String },
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

impl ForkServerArgs {
    pub const FLAG: &'static str = "--fork-server";

    /// The fork server's command line, in the form [`WorkerCommand::parse`] reads.
    pub fn to_args(&self) -> Vec<String> {
        vec![Self::FLAG.to_string(), self.control_fd.to_string()]
    }
}

impl WorkerCommand {
    /// Parses a worker binary's command line (without the program name): a fork server's
    /// if it starts with `--fork-server`, a worker's otherwise.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<WorkerCommand, String> {
        let args: Vec<String> = args.into_iter().collect();
        match args.as_slice() {
            [flag, fd] if flag == ForkServerArgs::FLAG => {
                Ok(WorkerCommand::ForkServer(ForkServerArgs {
                    control_fd: fd.parse().map_err(|_| "--fork-server is not a number")?,
                }))
            }
            [flag, ..] if flag == ForkServerArgs::FLAG => {
                Err("--fork-server takes one value and nothing else".into())
            }
            _ => WorkerArgs::parse(args).map(WorkerCommand::Worker),
        }
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
        assert_eq!(
            WorkerCommand::parse(a.to_args()).unwrap(),
            WorkerCommand::Worker(a.clone())
        );
        let f = ForkServerArgs { control_fd: 5 };
        assert_eq!(
            WorkerCommand::parse(f.to_args()).unwrap(),
            WorkerCommand::ForkServer(f)
        );
        assert!(WorkerCommand::parse(vec!["--fork-server".into()]).is_err());
        assert!(WorkerCommand::parse(vec!["--fork-server".into(), "x".into()]).is_err());
    }
}

//! The worker process: map the shared ring, open the raster, connect to the coordinator,
//! say hello with the protocol version, then compute chunks until told to stop or until the
//! coordinator goes away (channel closed). The parent-death signal is set by the coordinator
//! between fork and exec, so even a SIGKILLed coordinator takes its workers with it.

use std::path::Path;

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcSender};
use protocol::{decode, encode, FromWorker, TaskMsg, ToWorker, WorkerArgs, PROTOCOL_VERSION};

use crate::{exec::ChunkRunner, fault, shm::SharedSegment};

/// What the worker sends the coordinator's one-shot server: the channel the coordinator
/// sends on, and the one it receives from.
pub type Bootstrap = (IpcBytesSender, IpcBytesReceiver);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("mapping the shared segment: {0}")]
    Shm(#[source] std::io::Error),
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    #[error("connecting to the coordinator: {0}")]
    Connect(String),
    #[error("the coordinator sent a message that does not decode: {0}")]
    Garbage(#[from] protocol::CodecError),
}

/// Environment variable that makes the worker claim another protocol version (testing aid
/// for the handshake check).
pub const FAKE_VERSION_ENV: &str = "BLOCKSUM_WORKER_FAKE_PROTOCOL_VERSION";

pub fn run(args: WorkerArgs) -> Result<(), WorkerError> {
    // SAFETY: the coordinator passes this descriptor to us alone, dup'ed for this process.
    let seg = unsafe { SharedSegment::from_inherited_fd(args.shm_fd, args.shm_len) }
        .map_err(WorkerError::Shm)?;
    let runner = ChunkRunner::open(Path::new(&args.input), &args.bands)?;

    let bootstrap: IpcSender<Bootstrap> = IpcSender::connect(args.connect.clone())
        .map_err(|e| WorkerError::Connect(e.to_string()))?;
    let (to_worker_tx, to_worker_rx) =
        ipc::bytes_channel().map_err(|e| WorkerError::Connect(e.to_string()))?;
    let (from_worker_tx, from_worker_rx) =
        ipc::bytes_channel().map_err(|e| WorkerError::Connect(e.to_string()))?;
    bootstrap
        .send((to_worker_tx, from_worker_rx))
        .map_err(|e| WorkerError::Connect(e.to_string()))?;
    let version = std::env::var(FAKE_VERSION_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PROTOCOL_VERSION);
    let hello = FromWorker::Hello {
        version,
        pid: std::process::id(),
    };
    if from_worker_tx.send(&encode(&hello)).is_err() {
        return Ok(());
    }

    loop {
        // A closed channel means the coordinator is gone: exit quietly.
        let Ok(bytes) = to_worker_rx.recv() else {
            return Ok(());
        };
        match decode::<ToWorker>(&bytes)? {
            ToWorker::Shutdown => return Ok(()),
            ToWorker::Echo {
                task,
                attempt,
                region,
            } => {
                let reply = match seg.check(region, 1) {
                    Ok(r) if !r.is_empty() => {
                        // SAFETY: the coordinator does not write the region until we answer.
                        let bytes = unsafe { seg.slice(r) };
                        let touched = bytes[0] as u64 + bytes[bytes.len() - 1] as u64;
                        FromWorker::Done {
                            task,
                            attempt,
                            stats: protocol::TaskStats {
                                valid_pixels: touched,
                                ..Default::default()
                            },
                        }
                    }
                    Ok(_) => FromWorker::Done {
                        task,
                        attempt,
                        stats: Default::default(),
                    },
                    Err(e) => FromWorker::Failed {
                        task,
                        attempt,
                        error: e.to_string(),
                    },
                };
                if from_worker_tx.send(&encode(&reply)).is_err() {
                    return Ok(());
                }
            }
            ToWorker::Task(task) => {
                let reply = handle(&seg, &runner, &task, &from_worker_tx);
                if from_worker_tx.send(&encode(&reply)).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

fn handle(
    seg: &SharedSegment,
    runner: &ChunkRunner,
    task: &TaskMsg,
    reply: &IpcBytesSender,
) -> FromWorker {
    let _span =
        tracing::debug_span!("task", task = task.task.0, attempt = task.attempt.0).entered();
    if let Some(kind) = task.fault {
        fault::inject(kind, reply);
    }
    let failed = |error: String| FromWorker::Failed {
        task: task.task,
        attempt: task.attempt,
        error,
    };
    let align = task.kernel.sample.size();
    let (inr, outr) = match (seg.check(task.input, align), seg.check(task.output, 8)) {
        (Ok(i), Ok(o)) if i.end <= o.start || o.end <= i.start => (i, o),
        (Err(e), _) | (_, Err(e)) => return failed(e.to_string()),
        _ => return failed("input and output regions overlap".into()),
    };
    // SAFETY: the two ranges are disjoint (checked above) and the coordinator hands this
    // slot to this worker alone until we answer.
    let (input, output) = unsafe { (seg.slice_mut(inr), seg.slice_mut(outr)) };
    match runner.run(task, input, output) {
        Ok(stats) => FromWorker::Done {
            task: task.task,
            attempt: task.attempt,
            stats,
        },
        Err(e) => failed(e.to_string()),
    }
}

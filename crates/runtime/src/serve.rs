//! The worker process: map the shared ring (inaccessible but for the regions of the task
//! being run: see `shm::WorkerSegment`), connect to the coordinator, say hello with the
//! protocol version, receive the setup and open the kernel, then compute chunks until told
//! to stop or until the coordinator goes away (channel closed). The parent-death signal is
//! set by the coordinator between fork and exec (or by the fork server's child, see
//! `fork_server`), so even a SIGKILLed coordinator takes its workers with it. Started with
//! `--fork-server`, the same binary is the fork server, and each worker it forks returns
//! here to run as a spawned one would.

use std::process::ExitCode;

use ipc_channel::ipc::{self, IpcBytesSender, IpcSender};
use protocol::{
    decode, encode, Bootstrap, FromWorker, TaskMsg, ToWorker, WorkerArgs, WorkerCommand,
    PROTOCOL_VERSION,
};
use shm::{TaskMemoryError, WorkerSegment};

use crate::{fault, fork_server::Role, ChunkKernel, Executor, Slot};

/// Environment variable that makes the worker claim another protocol version (testing aid
/// for the handshake check).
pub const FAKE_VERSION_ENV: &str = "BLOCKSUM_WORKER_FAKE_PROTOCOL_VERSION";

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("mapping the shared segment: {0}")]
    Shm(#[source] std::io::Error),
    #[error("connecting to the coordinator: {0}")]
    Connect(String),
    #[error("the coordinator sent a message that does not decode: {0}")]
    Garbage(#[from] protocol::CodecError),
    #[error("setup: {0}")]
    Setup(String),
    #[error("after task {task}: {source}")]
    Isolation {
        task: u32,
        #[source]
        source: TaskMemoryError,
    },
}

/// The whole worker process for kernel `K`: a worker binary's `main` is this one line.
/// Logs go to stderr (the coordinator keeps the last lines for its report), filtered by
/// `BLOCKSUM_LOG`.
pub fn serve<K: ChunkKernel + Send + 'static>() -> ExitCode {
    use tracing_subscriber::util::SubscriberInitExt;
    worker_log().init();
    let args = match WorkerCommand::parse(std::env::args().skip(1)) {
        Ok(WorkerCommand::Worker(a)) => a,
        Ok(WorkerCommand::ForkServer(f)) => match crate::fork_server::serve_forks::<K>(f) {
            // At once: nothing to flush, and GDAL's exit handlers (its driver registry torn
            // down) would only make the coordinator wait for the end of its run.
            Role::Ended(code) => crate::os::exit_now(code),
            // A forked worker: from here on exactly a spawned one.
            Role::Worker(a) => a,
        },
        Err(e) => {
            eprintln!("worker: {e} (this program is started by `coordinator`, not by hand)");
            return ExitCode::from(protocol::exit::worker::SETUP as u8);
        }
    };
    run_worker::<K>(args)
}

/// A worker's logging as [`serve`] sets it up: to stderr, plain, filtered by `BLOCKSUM_LOG`
/// (default `warn`).
pub(crate) fn worker_log() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BLOCKSUM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .finish()
}

/// The worker's life once started, by exec or by a fork server; ends the process.
pub(crate) fn run_worker<K: ChunkKernel + Send + 'static>(args: WorkerArgs) -> ! {
    match run(args, crate::open::<K>) {
        // Done (told to stop, or the coordinator is gone): its answers are sent and its
        // kernel dropped (inputs closed). C exit handlers (GDAL's registry torn down) would
        // only hold up the end of the run: with 50 workers on 2 CPUs, ~0.5 s of it.
        Ok(()) => crate::os::exit_now(0),
        Err(e) => {
            eprintln!("worker: {e}");
            crate::os::exit_now(protocol::exit::worker::SETUP)
        }
    }
}

type Opener = fn(&[u8]) -> Result<Box<dyn Executor>, crate::KernelError>;

fn run(args: WorkerArgs, open: Opener) -> Result<(), ServeError> {
    let fd = crate::os::inherited_fd(args.shm_fd).map_err(ServeError::Shm)?;
    let mut seg = WorkerSegment::from_fd(fd, args.shm_len).map_err(ServeError::Shm)?;
    if let Err(e) = crate::os::watch_ring(seg.addresses(), false) {
        // The guard pages still stop a wild write; only the message naming them is lost.
        tracing::warn!("cannot install the SIGSEGV handler that names guard pages: {e}");
    }

    let bootstrap: IpcSender<Bootstrap> =
        IpcSender::connect(args.connect.clone()).map_err(|e| ServeError::Connect(e.to_string()))?;
    let (to_worker_tx, to_worker_rx) =
        ipc::bytes_channel().map_err(|e| ServeError::Connect(e.to_string()))?;
    let (from_worker_tx, from_worker_rx) =
        ipc::bytes_channel().map_err(|e| ServeError::Connect(e.to_string()))?;
    bootstrap
        .send((to_worker_tx, from_worker_rx))
        .map_err(|e| ServeError::Connect(e.to_string()))?;
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

    // The setup comes first, once.
    let Ok(bytes) = to_worker_rx.recv() else {
        return Ok(());
    };
    let mut exec = match decode::<ToWorker>(&bytes)? {
        ToWorker::Setup(setup) => match open(&setup) {
            Ok(e) => e,
            Err(e) => {
                let _ = from_worker_tx.send(&encode(&FromWorker::SetupFailed {
                    error: e.to_string(),
                }));
                return Err(ServeError::Setup(e.to_string()));
            }
        },
        ToWorker::Shutdown => return Ok(()),
        ToWorker::Task(_) => return Err(ServeError::Setup("a task came before the setup".into())),
    };
    if from_worker_tx.send(&encode(&FromWorker::Ready)).is_err() {
        return Ok(());
    }

    loop {
        // A closed channel means the coordinator is gone: exit quietly.
        let Ok(bytes) = to_worker_rx.recv() else {
            return Ok(());
        };
        match decode::<ToWorker>(&bytes)? {
            ToWorker::Shutdown => return Ok(()),
            ToWorker::Setup(_) => return Err(ServeError::Setup("a second setup".into())),
            ToWorker::Task(task) => {
                let reply = handle(&mut seg, exec.as_mut(), &task, &from_worker_tx)?;
                if from_worker_tx.send(&encode(&reply)).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Runs one task in its own two regions of the ring (nothing else of it is accessible) and
/// answers. A canary overwritten past a region's end fails the attempt whatever the kernel
/// answered; protections that cannot be restored end the worker.
fn handle(
    seg: &mut WorkerSegment,
    exec: &mut dyn Executor,
    task: &TaskMsg,
    reply: &IpcBytesSender,
) -> Result<FromWorker, ServeError> {
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
    let mut mem = match seg.open_task(task.input, task.output) {
        Ok(m) => m,
        Err(e @ TaskMemoryError::Protect(_)) => {
            return Err(ServeError::Isolation {
                task: task.task.0,
                source: e,
            })
        }
        Err(e) => return Ok(failed(e.to_string())),
    };
    crate::os::note_task(Some((task.task.0, task.attempt.0, mem.addresses())));
    let (input, output) = mem.regions();
    let result = exec.run(&task.payload, Slot { input, output });
    let closed = mem.close();
    crate::os::note_task(None);
    Ok(match (closed, result) {
        (Err(e @ TaskMemoryError::Protect(_)), _) => {
            return Err(ServeError::Isolation {
                task: task.task.0,
                source: e,
            })
        }
        (Err(wild), _) => failed(wild.to_string()),
        (Ok(()), Ok(stats)) => FromWorker::Done {
            task: task.task,
            attempt: task.attempt,
            stats,
        },
        (Ok(()), Err(e)) => failed(e.to_string()),
    })
}

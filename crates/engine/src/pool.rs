//! Worker processes: start (forked by the run's fork server, or spawned by exec when there
//! is none or it failed) with the handshake (hello, then the job's setup, then ready),
//! turn what they say into scheduler events, send them tasks, signal them. Per worker, one
//! thread runs the handshake and hands the channel to the supervisor's event loop (which
//! reads it from then on), one waits for its exit, one keeps the tail of its stderr.
//! Spawning happens on the caller's thread, which must live as long as the workers (the
//! parent-death signal is tied to it).

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
};

use ipc_channel::ipc::{IpcBytesSender, IpcOneShotServer, IpcReceiver};
use nix::sys::signal::Signal;
use protocol::{decode, encode, FromWorker, ToWorker, WorkerArgs, PROTOCOL_VERSION};

use crate::{
    event_loop::EventSender,
    fork_server::ForkServer,
    os::{self, ChildSetup},
    sched::{ExitInfo, SchedEvent, Sig, WorkerKey},
    wire::{Bootstrap, WireBytes},
};

/// Lines of a worker's stderr kept for the report.
const STDERR_TAIL: usize = 20;

/// What the pool tells the supervisor.
pub enum PoolEvent {
    Sched(SchedEvent),
    /// Handshake done: the channel to send tasks on, and the one the event loop reads.
    Connected {
        key: WorkerKey,
        pid: u32,
        sender: IpcBytesSender,
        receiver: IpcReceiver<WireBytes>,
    },
    /// The worker speaks another protocol version: fatal for the run.
    VersionMismatch {
        key: WorkerKey,
        theirs: u32,
    },
}

#[derive(Clone)]
pub struct PoolConfig {
    pub worker_bin: PathBuf,
    /// The job's setup, sent to every worker after its hello.
    pub setup: Arc<Vec<u8>>,
    /// The shared slot ring: its segment's descriptor goes to each worker.
    pub ring: Arc<shm::SlotRing>,
    pub shm_fd: i32,
    pub shm_len: u64,
    pub data_limit: Option<u64>,
    pub env: Vec<(String, String)>,
    /// Forks workers when it answers (else they are spawned by exec).
    pub fork_server: Option<Arc<ForkServer>>,
}

/// A live (or dying) worker process as the supervisor sees it.
pub struct Proc {
    pub pid: u32,
    pub sender: Option<IpcBytesSender>,
}

impl Proc {
    /// Sends a message; a failure means the worker is dying, which its exit event reports.
    pub fn send(&self, msg: &ToWorker) -> bool {
        match &self.sender {
            Some(s) => s.send(&encode(msg)).is_ok(),
            None => false,
        }
    }

    pub fn signal(&self, sig: Sig) {
        os::signal_group(
            self.pid,
            match sig {
                Sig::Term => Signal::SIGTERM,
                Sig::Kill => Signal::SIGKILL,
            },
        );
    }
}

/// A worker process just started, by either path.
struct Started {
    pid: u32,
    stderr: Box<dyn std::io::Read + Send>,
    waiter: Waiter,
}

/// How a worker's exit is waited for.
enum Waiter {
    /// Spawned by exec: std's handle.
    Spawned(std::process::Child),
    /// Forked by the fork server: a child of this process by its pid.
    Forked(u32),
}

impl Waiter {
    /// Blocks until the worker ends: its exit code, or the signal that killed it.
    fn wait(self) -> std::io::Result<(Option<i32>, Option<i32>)> {
        use std::os::unix::process::ExitStatusExt;
        match self {
            Waiter::Spawned(mut c) => c.wait().map(|s| (s.code(), s.signal())),
            Waiter::Forked(pid) => os::wait_pid(pid),
        }
    }
}

/// Starts the worker that connects to `name`: forked by the fork server when there is one
/// and it answers, else spawned by exec.
fn start(cfg: &PoolConfig, key: WorkerKey, name: &str) -> std::io::Result<Started> {
    if let Some(fs) = &cfg.fork_server {
        let req = protocol::ForkRequest {
            connect: name.to_string(),
            shm_len: cfg.shm_len,
            data_limit: cfg.data_limit,
            env: cfg.env.clone(),
        };
        match fs.fork(&req, cfg.ring.segment().fd()) {
            Ok((pid, stderr)) => {
                return Ok(Started {
                    pid,
                    stderr: Box::new(std::fs::File::from(stderr)),
                    waiter: Waiter::Forked(pid),
                })
            }
            Err(crate::fork_server::ForkError::Broken) => {}
            Err(e) => tracing::info!(worker = key.id.0, "{e}: this worker is spawned by exec"),
        }
    }
    let args = WorkerArgs {
        connect: name.to_string(),
        shm_fd: cfg.shm_fd,
        shm_len: cfg.shm_len,
    };
    let mut cmd = Command::new(&cfg.worker_bin);
    cmd.args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A crashing worker must not spend half a second symbolizing a backtrace.
        .env("RUST_BACKTRACE", "0");
    for (k, v) in &cfg.env {
        cmd.env(k, v);
    }
    os::prepare(
        &mut cmd,
        ChildSetup {
            inherit: cfg.shm_fd,
            data_limit: cfg.data_limit,
        },
    );
    let mut child = cmd.spawn()?;
    Ok(Started {
        pid: child.id(),
        stderr: Box::new(child.stderr.take().expect("stderr is piped")),
        waiter: Waiter::Spawned(child),
    })
}

/// The last lines of a worker's stderr, shared by the thread that reads them and the one
/// that reports its exit.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// Spawns the worker `key`, wiring its events into `events`.
pub fn spawn<E: Send + 'static>(
    cfg: &PoolConfig,
    key: WorkerKey,
    events: &EventSender<E>,
    wrap: fn(PoolEvent) -> E,
) -> std::io::Result<Proc> {
    let (server, name) = IpcOneShotServer::<Bootstrap>::new()?;
    let Started {
        pid,
        stderr,
        waiter,
    } = start(cfg, key, &name)?;
    let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
    let stderr_thread = keep_stderr_tail(key, pid, stderr, tail.clone())?;
    // The handshake thread drops `recv_done` when it ends; the wait thread waits for that, so
    // everything the handshake reports (and the channel it hands over) comes before the exit.
    // After the handshake, the event loop reads the worker's last words before its exit.
    let (recv_done_tx, recv_done) = mpsc::channel::<()>();
    let ev = events.clone();
    thread::Builder::new()
        .name(format!("w{}-wait", key.id.0))
        .spawn(move || {
            let status = waiter.wait();
            // stderr reaches EOF once the process is gone; its last lines explain the death.
            let _ = stderr_thread.join();
            // A worker that died before connecting leaves the handshake blocked in accept():
            // connecting to the server ourselves unblocks it.
            os::poke_server(&name);
            let _ = recv_done.recv_timeout(std::time::Duration::from_secs(2));
            let exit = exit_info(status, &tail);
            let _ = ev.send(wrap(PoolEvent::Sched(SchedEvent::WorkerExited {
                key,
                exit,
            })));
        })?;
    let ev = events.clone();
    let setup = cfg.setup.clone();
    thread::Builder::new()
        .name(format!("w{}-start", key.id.0))
        .spawn(move || {
            let _recv_done = recv_done_tx;
            handshake(server, key, pid, &setup, &|e| {
                let _ = ev.send(wrap(e));
            })
        })?;
    Ok(Proc { pid, sender: None })
}

/// A thread that keeps the last [`STDERR_TAIL`] lines of the worker's stderr in `tail` (and
/// logs each at debug level) until the stream ends with the process.
fn keep_stderr_tail(
    key: WorkerKey,
    pid: u32,
    stderr: Box<dyn std::io::Read + Send>,
    tail: Tail,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("w{}-stderr", key.id.0))
        .spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tracing::debug!(worker = key.id.0, pid, "stderr: {line}");
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line);
            }
        })
}

/// How the worker ended, with its stderr's last lines.
fn exit_info(status: std::io::Result<(Option<i32>, Option<i32>)>, tail: &Tail) -> ExitInfo {
    let stderr_tail: Vec<String> = tail
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    // Only an abnormal exit can be an out-of-memory death, and only the last words
    // count: an allocation failure is the last thing a dying Rust process prints.
    let abnormal = status.as_ref().map_or(true, |s| *s != (Some(0), None));
    let out_of_memory = abnormal
        && stderr_tail.iter().rev().take(3).any(|l| {
            l.contains("memory allocation of")
                || l.contains("Out of memory")
                || l.contains("out of memory")
        });
    match status {
        Ok((code, signal)) => ExitInfo {
            code,
            signal,
            out_of_memory,
            stderr_tail,
        },
        Err(_) => ExitInfo {
            out_of_memory,
            stderr_tail,
            ..ExitInfo::default()
        },
    }
}

/// The handshake with the worker that connects to `server`: its hello (the protocol
/// version), the job's `setup`, its ready; then the channel goes to the event loop
/// (`PoolEvent::Connected`). A closed channel or garbage is reported through `send`.
fn handshake(
    server: IpcOneShotServer<Bootstrap>,
    key: WorkerKey,
    pid: u32,
    setup: &[u8],
    send: &dyn Fn(PoolEvent),
) {
    let Ok((_boot_rx, (sender, receiver))) = server.accept() else {
        return;
    };
    // One handshake message: a closed channel or garbage is reported here, and the
    // caller gets only a message that decoded.
    let next = |what: &str| -> Option<FromWorker> {
        let se = match receiver.recv().map(|b| decode::<FromWorker>(&b.0)) {
            Ok(Ok(m)) => return Some(m),
            Ok(Err(e)) => SchedEvent::Garbage {
                key,
                detail: format!("{what}: {e}"),
            },
            Err(_) => SchedEvent::Disconnected { key },
        };
        send(PoolEvent::Sched(se));
        None
    };
    let garbage = |what: &str, got: FromWorker| {
        let detail = format!("expected {what}, got {got:?}");
        send(PoolEvent::Sched(SchedEvent::Garbage { key, detail }));
    };
    match next("hello") {
        Some(FromWorker::Hello { version, .. }) if version == PROTOCOL_VERSION => {}
        Some(FromWorker::Hello { version, .. }) => {
            return send(PoolEvent::VersionMismatch {
                key,
                theirs: version,
            })
        }
        Some(other) => return garbage("hello", other),
        None => return,
    }
    // The setup; the worker is ready once its kernel opened. A worker whose setup
    // fails says why and exits: its exit (and its last stderr lines) tell the
    // scheduler it never became ready.
    if sender
        .send(&encode(&ToWorker::Setup(setup.to_vec())))
        .is_err()
    {
        return;
    }
    match next("ready") {
        Some(FromWorker::Ready) => send(PoolEvent::Connected {
            key,
            pid,
            sender,
            receiver,
        }),
        Some(FromWorker::SetupFailed { error }) => {
            tracing::debug!(worker = key.id.0, pid, "setup failed: {error}");
        }
        Some(other) => garbage("ready", other),
        None => {}
    }
}

/// What a worker's message after its handshake means to the scheduler.
pub fn reply_event(key: WorkerKey, bytes: &[u8]) -> SchedEvent {
    match decode::<FromWorker>(bytes) {
        Ok(FromWorker::Done {
            task,
            attempt,
            stats,
        }) => SchedEvent::TaskDone {
            key,
            task,
            attempt,
            stats,
        },
        Ok(FromWorker::Failed {
            task,
            attempt,
            error,
        }) => SchedEvent::TaskFailed {
            key,
            task,
            attempt,
            error,
        },
        Ok(
            other @ (FromWorker::Hello { .. } | FromWorker::Ready | FromWorker::SetupFailed { .. }),
        ) => SchedEvent::Garbage {
            key,
            detail: format!("out of turn: {other:?}"),
        },
        Err(e) => SchedEvent::Garbage {
            key,
            detail: e.to_string(),
        },
    }
}

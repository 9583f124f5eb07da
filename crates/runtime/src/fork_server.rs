//! The fork server (a zygote, as in Chromium and Python's forkserver): one template process
//! of the worker binary that has loaded what every worker loads (the binary's libraries:
//! for the block-aggregation worker, GDAL and its ~100 dependencies; then the kernel's
//! [`ChunkKernel::preload`]: GDAL's drivers), and forks a worker for each request of the
//! coordinator. A fork costs a few milliseconds where an exec with GDAL's load costs ~45.
//!
//! What a forked worker keeps of a spawned one's isolation: its own address space (a copy,
//! shared copy-on-write until either writes), its own process group, memory limit
//! (RLIMIT_DATA, set in the child) and parent-death signal (tied to the coordinator, whose
//! child it is after the double fork: see `os::fork_worker`), its own stderr pipe, and no
//! descriptor but 0-2 and the shared segment. The template opens no dataset and starts no
//! thread: the child of a single-threaded process holds no lock by accident.
//!
//! The conversation, on a SOCK_SEQPACKET control socket: `Ready` once, then for each
//! `ForkRequest` (with the worker's stderr and the shared segment as descriptors) `Forked`
//! or `Failed`. The coordinator hanging up (or dying: the parent-death signal) ends it.

use protocol::{decode, encode, ForkRequest, ForkServerArgs, FromForkServer, WorkerArgs};

use crate::{os, ChunkKernel};

/// The fork server's name in a process table (/proc/PID/comm).
pub(crate) const FORK_SERVER_NAME: &std::ffi::CStr = c"fork-server";

/// What [`serve_forks`] returns to: the fork server's end (its exit code), or a new worker
/// to run.
pub(crate) enum Role {
    Ended(i32),
    Worker(WorkerArgs),
}

/// The fork server's loop for kernel `K`.
pub(crate) fn serve_forks<K: ChunkKernel>(args: ForkServerArgs) -> Role {
    // Named apart from its workers in a process table (`ps`, the tests' scans), first thing;
    // each worker takes the binary's name (its command line's first word: the coordinator
    // starts the fork server through /proc/self/fd, which names it after a number).
    let name = worker_name();
    os::set_name(FORK_SERVER_NAME);
    match os::inherited_fd(args.control_fd) {
        Ok(control) => serve_on::<K>(control, name),
        Err(e) => ended(&format!("the control socket: {e}")),
    }
}

/// The fork server for kernel `K` in a process that was forked, not executed, by a
/// coordinator that has `K` built in (its `engine::fork_server::prestart_forked`): serves
/// fork requests on `control`, and each worker it forks runs as a spawned one would, named
/// `worker_name` in a process table. Never returns: the fork server and each worker end
/// with `_exit`.
pub fn serve_forked<K: ChunkKernel + Send + 'static>(
    control: std::os::fd::OwnedFd,
    worker_name: &std::ffi::CStr,
) -> ! {
    os::set_name(FORK_SERVER_NAME);
    // This process has its coordinator's logging (its filter, maybe colours for a
    // terminal): on this thread, the one a worker runs on, log as a worker binary does.
    let _log = tracing::subscriber::set_default(crate::serve::worker_log());
    match serve_on::<K>(control, worker_name.to_owned()) {
        Role::Ended(code) => os::exit_now(code),
        Role::Worker(args) => crate::serve::run_worker::<K>(args),
    }
}

/// The loop of [`serve_forks`] and [`serve_forked`] on the control socket.
fn serve_on<K: ChunkKernel>(control: std::os::fd::OwnedFd, name: std::ffi::CString) -> Role {
    use std::os::fd::{AsRawFd, IntoRawFd};
    K::preload();
    let reply = |control: &std::os::fd::OwnedFd, msg: &FromForkServer| {
        nix::sys::socket::send(
            control.as_raw_fd(),
            &encode(msg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .is_ok()
    };
    let version = protocol::PROTOCOL_VERSION;
    if !reply(&control, &FromForkServer::Ready { version }) {
        return Role::Ended(0);
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let (len, fds) = match os::recv_with_fds(&control, &mut buf) {
            Ok(Some(got)) => got,
            // The coordinator hung up: its runs are over.
            Ok(None) => return Role::Ended(0),
            Err(e) => return ended(&format!("reading the control socket: {e}")),
        };
        let req = match decode::<ForkRequest>(&buf[..len]) {
            Ok(r) => r,
            Err(e) => {
                let error = format!("the fork request does not decode: {e}");
                if !reply(&control, &FromForkServer::Failed { error }) {
                    return Role::Ended(0);
                }
                continue;
            }
        };
        let mut fds = fds.into_iter();
        let answer = match (fds.next(), fds.next()) {
            (Some(stderr), Some(shm)) => match os::fork_worker(stderr, shm, req.data_limit) {
                Ok(os::Forked::Server(pid)) => FromForkServer::Forked { pid },
                Ok(os::Forked::Worker { shm_fd }) => {
                    // Closed in the worker already (only 0-2 and the segment are open).
                    let _ = control.into_raw_fd();
                    os::set_name(&name);
                    // Single-threaded here: nothing reads the environment meanwhile.
                    for (k, v) in &req.env {
                        std::env::set_var(k, v);
                    }
                    return Role::Worker(WorkerArgs {
                        connect: req.connect,
                        shm_fd,
                        shm_len: req.shm_len,
                    });
                }
                Err(e) => FromForkServer::Failed {
                    error: format!("forking a worker: {e}"),
                },
            },
            _ => FromForkServer::Failed {
                error: "a fork request needs two descriptors: stderr and the segment".into(),
            },
        };
        if !reply(&control, &answer) {
            return Role::Ended(0);
        }
    }
}

/// The worker binary's name for a process table: the last part of the command line's first
/// word, at most 15 bytes (the kernel's limit).
fn worker_name() -> std::ffi::CString {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let base = std::path::Path::new(&arg0)
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    let mut base: Vec<u8> = base.into_iter().filter(|&b| b != 0).take(15).collect();
    if base.is_empty() {
        base = b"worker".to_vec();
    }
    std::ffi::CString::new(base).unwrap_or_default()
}

fn ended(why: &str) -> Role {
    eprintln!("worker: fork server: {why}");
    Role::Ended(protocol::exit::worker::SETUP)
}

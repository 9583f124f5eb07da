//! The worker process's OS specifics, behind a safe interface: taking ownership of the
//! inherited shared-segment descriptor, restoring SIGSEGV's default action for the
//! segfault fault, the SIGSEGV handler that names a fault on a guard page of the ring, and
//! the fork server's double fork (descriptors received with a request, the worker's own
//! process group, limit, parent-death signal and descriptors). Every `unsafe` of the
//! runtime is here.

use std::{
    ffi::{c_int, c_void},
    fmt::{self, Write as _},
    ops::Range,
    os::fd::{FromRawFd, OwnedFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed},
        OnceLock,
    },
};

use nix::{
    libc::siginfo_t,
    sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal},
};

/// Takes the descriptor the coordinator passed to this process on its command line.
pub(crate) fn inherited_fd(fd: i32) -> std::io::Result<OwnedFd> {
    // The descriptor must be open here before it is owned; a wrong number is an error, not
    // a double close later.
    nix::fcntl::fcntl(
        // SAFETY: borrowed only for this call, to check that the descriptor is open.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )?;
    // SAFETY: the coordinator passes this descriptor to this process alone (it clears
    // close-on-exec for it in the child only); it is open (checked) and nothing else here
    // owns or closes it: `serve` takes it once, at start.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Restores SIGSEGV's default action: Rust's runtime handles it to report stack overflows,
/// and an injected segfault must kill the process as a real one would.
pub(crate) fn default_sigsegv() {
    // SAFETY: setting a signal to SIG_DFL installs no handler code.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGSEGV,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
}

/// Where the shared ring lies (start, end), and the used regions of the task being run
/// (input start, end, output start, end) with its task and attempt: what the SIGSEGV handler
/// needs to say that a fault hit a guard page, and where. Zero: nothing.
static RING: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
static TASK: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
static TASK_ID: AtomicU64 = AtomicU64::new(u64::MAX);
/// The handler runs in the coordinator (its in-process lanes), not in a worker.
static IN_PROCESS: AtomicBool = AtomicBool::new(false);
/// The handler that was there before (Rust's stack-overflow check): faults off the ring go
/// back to it.
static PREVIOUS: OnceLock<SigAction> = OnceLock::new();

/// Installs the SIGSEGV handler that names a fault on the ring `ring` (a guard page, or a
/// slot this worker was not given) on stderr before the process dies of it; the
/// coordinator keeps the worker's last stderr lines in its report.
pub(crate) fn watch_ring(ring: Range<usize>, in_process: bool) -> nix::Result<()> {
    IN_PROCESS.store(in_process, Relaxed);
    RING[0].store(ring.start, Relaxed);
    RING[1].store(ring.end, Relaxed);
    let sa = SigAction::new(
        SigHandler::SigAction(on_segv),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK,
        SigSet::empty(),
    );
    // SAFETY: the handler only reads atomics, formats into a stack buffer, calls write(2)
    // and sigaction(2) (async-signal-safe) and returns.
    let old = unsafe { sigaction(Signal::SIGSEGV, &sa) }?;
    let _ = PREVIOUS.set(old);
    Ok(())
}

/// The task now running in `regions` (input, output), or none.
pub(crate) fn note_task(task: Option<(u32, u32, [Range<usize>; 2])>) {
    let (id, [i, o]) = match task {
        Some((t, a, r)) => (((t as u64) << 32) | a as u64, r),
        None => (u64::MAX, [0..0, 0..0]),
    };
    for (slot, v) in TASK.iter().zip([i.start, i.end, o.start, o.end]) {
        slot.store(v, Relaxed);
    }
    TASK_ID.store(id, Relaxed);
}

/// A message in a stack buffer (no allocation in a signal handler).
struct StackText {
    buf: [u8; 320],
    len: usize,
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Where `addr` lies relative to the task's regions: the nearest region's end or start.
fn describe(w: &mut StackText, addr: usize) -> fmt::Result {
    let id = TASK_ID.load(Relaxed);
    let t: [usize; 4] = std::array::from_fn(|k| TASK[k].load(Relaxed));
    if id == u64::MAX {
        return write!(w, "while no task was running");
    }
    let regions = [("input", t[0]..t[1]), ("output", t[2]..t[3])];
    let (name, past, dist) = regions
        .iter()
        .map(|(name, r)| match addr >= r.end {
            true => (*name, true, addr - r.end),
            false => (*name, false, r.start.saturating_sub(addr)),
        })
        .min_by_key(|&(_, _, d)| d)
        .unwrap_or(("output", true, 0));
    let at = if past {
        "past the end"
    } else {
        "before the start"
    };
    write!(
        w,
        "task {} (attempt {}) touched {dist} bytes {at} of its {name} region",
        id >> 32,
        id & 0xffff_ffff
    )
}

extern "C" fn on_segv(_: c_int, info: *mut siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; SIGSEGV fills
    // si_addr.
    let addr = unsafe { (*info).si_addr() } as usize;
    let ring = RING[0].load(Relaxed)..RING[1].load(Relaxed);
    if ring.contains(&addr) {
        let mut w = StackText {
            buf: [0; 320],
            len: 0,
        };
        let _ = match IN_PROCESS.load(Relaxed) {
            true => w.write_str(
                "error: SIGSEGV on a guard page of the shared ring: a kernel running in the \
                 coordinator (an in-process lane) wrote off its slot; the run ends",
            ),
            false => w
                .write_str("worker: SIGSEGV on a guard page of the shared ring: ")
                .and_then(|()| describe(&mut w, addr)),
        };
        let _ = w.write_str("\n");
        let _ = nix::unistd::write(std::io::stderr(), &w.buf[..w.len]);
    }
    // Returning runs the faulting instruction again: off the ring, under the handler that
    // was there before (Rust's, which tells a stack overflow); on it, under the default
    // action, which kills the process with SIGSEGV.
    let back = match (ring.contains(&addr), PREVIOUS.get()) {
        (false, Some(old)) => *old,
        _ => SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
    };
    // SAFETY: sigaction(2) is async-signal-safe; the action is the default or the one
    // that was installed before this handler.
    let _ = unsafe { sigaction(Signal::SIGSEGV, &back) };
}

/// One request read from the fork server's control socket: its bytes and the descriptors
/// that came beside it (owned here, close-on-exec). `None`: the coordinator hung up.
pub(crate) fn recv_with_fds(
    control: &OwnedFd,
    buf: &mut [u8],
) -> std::io::Result<Option<(usize, Vec<OwnedFd>)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            control.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel has just installed these descriptors in this process for
            // this message; nothing else knows their numbers.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if msg.bytes == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((msg.bytes, fds)))
}

/// Which side of [`fork_worker`] this process is on.
pub(crate) enum Forked {
    /// The fork server: the new worker's pid.
    Server(u32),
    /// The new worker, with its stderr and shared segment in place and every other
    /// descriptor closed: the segment's descriptor number.
    Worker { shm_fd: i32 },
}

/// Forks a worker from this fork server, twice so that the worker becomes the
/// coordinator's child: the intermediate process exits at once, and the coordinator, a
/// child subreaper, inherits its child (it then waits for the worker and reads its exit
/// status itself, and the worker's parent-death signal is tied to it). The worker leads its
/// own process group, runs under `data_limit` (RLIMIT_DATA), has `stderr` as its stderr, and
/// keeps `shm` and 0-2 open, nothing else.
pub(crate) fn fork_worker(
    stderr: OwnedFd,
    shm: OwnedFd,
    data_limit: Option<u64>,
) -> std::io::Result<Forked> {
    use nix::unistd::{fork, getpid, getppid, ForkResult};
    let coordinator = getppid();
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the fork server is single-threaded (it starts no thread, and its kernel's
    // `preload` may start none), so the child is a complete copy in which no lock is held
    // by a thread that does not exist there.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            drop(tx);
            let mut pid = [0u8; 4];
            let got = read_full(&rx, &mut pid);
            // The intermediate exits at once: after it is reaped, the worker's parent is
            // the coordinator.
            while let Err(nix::errno::Errno::EINTR) = nix::sys::wait::waitpid(child, None) {}
            match (got, u32::from_ne_bytes(pid)) {
                (true, p) if p > 0 => Ok(Forked::Server(p)),
                _ => Err(std::io::Error::other(
                    "the intermediate process could not fork the worker",
                )),
            }
        }
        ForkResult::Child => {
            drop(rx);
            let mid = getpid();
            // SAFETY: as above: this child is single-threaded too.
            let pid = match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(tx);
                    return become_worker(mid, coordinator, stderr, shm, data_limit);
                }
                Ok(ForkResult::Parent { child }) => child.as_raw() as u32,
                Err(_) => 0,
            };
            let _ = nix::unistd::write(&tx, &pid.to_ne_bytes());
            // SAFETY: _exit ends the intermediate at once, running no exit handler of the
            // fork server (whose state it shares).
            unsafe { nix::libc::_exit(0) }
        }
    }
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> bool {
    loop {
        match nix::unistd::read(fd, buf) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(n) => return n == buf.len(),
            Err(_) => return false,
        }
    }
}

/// The worker's side of [`fork_worker`]: waits until the intermediate `mid` is gone (then
/// its parent is the coordinator), ties its death to the coordinator's, and sets up its own
/// process group, limit and descriptors. Whatever fails ends it at once, as a worker that
/// never said hello (the coordinator sees it exit).
fn become_worker(
    mid: nix::unistd::Pid,
    coordinator: nix::unistd::Pid,
    stderr: OwnedFd,
    shm: OwnedFd,
    data_limit: Option<u64>,
) -> std::io::Result<Forked> {
    use nix::unistd::{getppid, Pid};
    use std::os::fd::IntoRawFd;
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while getppid() == mid {
        if std::time::Instant::now() > give_up {
            die();
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
    let setup = || -> nix::Result<()> {
        nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        if let Some(limit) = data_limit {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_DATA, limit, limit)?;
        }
        nix::unistd::dup2_stderr(&stderr)?;
        Ok(())
    };
    // Reparented elsewhere than to the coordinator (it died, or is no subreaper), or the
    // coordinator died after the reparenting but before the parent-death signal was set:
    // nobody would stop this process.
    if setup().is_err() || getppid() != coordinator {
        die();
    }
    drop(stderr);
    let keep = shm.into_raw_fd();
    // SAFETY: this is the just-forked worker; the fork server's handles are forgotten.
    unsafe { close_all_but(keep) };
    Ok(Forked::Worker { shm_fd: keep })
}

/// Closes every descriptor from 3 up but `keep`: nothing of the fork server's (its control
/// socket, whatever a library opened in it) reaches a worker, and nothing of the
/// coordinator's reaches a fork server forked from it (`engine::os::fork_zygote`).
///
/// # Safety
/// For a just-forked, single-threaded process: no handle to a descriptor other than 0-2 and
/// `keep` may be used or closed again afterwards (the caller forgets them, or the process
/// ends with `_exit`).
pub unsafe fn close_all_but(keep: i32) {
    let keep = keep as nix::libc::c_uint;
    // SAFETY: close_range closes descriptors this process owns; the only ones that stay
    // in use from here are 0-2 and `keep` (the caller's contract above).
    let ranges = unsafe {
        (keep <= 3 || nix::libc::close_range(3, keep - 1, 0) == 0)
            && nix::libc::close_range(keep + 1, nix::libc::c_uint::MAX, 0) == 0
    };
    if !ranges {
        // Before Linux 5.9: one by one, from the list of open ones.
        let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for fd in open.into_iter().filter(|&fd| fd > 2 && fd != keep as i32) {
            // SAFETY: as above.
            unsafe { nix::libc::close(fd) };
        }
    }
}

/// Ends the process at once with `code`, after flushing stderr, running no exit handler.
pub(crate) fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing in this process runs after it.
    unsafe { nix::libc::_exit(code) }
}

/// Ends a half-made worker at once.
fn die() -> ! {
    // SAFETY: _exit ends the process at once, running no exit handler of the fork server.
    unsafe { nix::libc::_exit(protocol::exit::worker::SETUP) }
}

/// Renames this process in a process table; a name that cannot be set is no failure.
pub(crate) fn set_name(name: &std::ffi::CStr) {
    let _ = nix::sys::prctl::set_name(name);
}

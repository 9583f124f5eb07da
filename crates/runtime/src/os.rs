//! The worker process's OS specifics, behind a safe interface: taking ownership of the
//! inherited shared-segment descriptor, restoring SIGSEGV's default action for the
//! segfault fault, and the SIGSEGV handler that names a fault on a guard page of the ring.
//! Every `unsafe` of the runtime is here.

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

//! The Unix-specific and `unsafe` part of supervision, behind a safe interface: what a
//! worker child does between fork and exec, the fork server's plumbing (child subreaper,
//! descriptors sent with a request, waiting for a worker that is no `Child`), signalling
//! process groups, reading /proc and the memory cgroup, descriptor limits, the allocator's
//! thresholds, and ending the process.

use std::{os::unix::process::CommandExt, process::Command};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};

/// Limits and plumbing applied to a worker (or the fork server) between fork and exec.
#[derive(Debug, Clone, Copy)]
pub struct ChildSetup {
    /// The descriptor the child inherits (a worker's shared segment, the fork server's
    /// control socket): made inheritable in the child only.
    pub inherit: i32,
    /// Hard per-worker memory limit (RLIMIT_DATA), in bytes.
    pub data_limit: Option<u64>,
}

/// Arranges for `cmd`'s child to: lead its own process group (signals reach it and anything
/// it starts, and the terminal's Ctrl-C reaches only the coordinator); die with SIGKILL when
/// the thread that spawned it exits (the coordinator spawns from its long-lived main thread);
/// inherit the shared segment (or the fork server's control socket) and no other
/// descriptor above 2; and run under the memory limit.
pub fn prepare(cmd: &mut Command, setup: ChildSetup) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe syscalls (setpgid, prctl, getppid, close_range, fcntl, setrlimit,
    // _exit); it allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The coordinator may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid() != parent {
                nix::libc::_exit(1);
            }
            // Nothing but 0-2 and `inherit` crosses the exec: GDAL opens its files without
            // O_CLOEXEC (the output being written, the coordinator's own handle on the
            // input), and a worker must hold neither. Marked close-on-exec rather than
            // closed, so that std's exec error pipe still works; on a kernel without
            // close_range (before 5.11) they are inherited, as before.
            nix::libc::close_range(
                3,
                nix::libc::c_uint::MAX,
                nix::libc::CLOSE_RANGE_CLOEXEC as _,
            );
            let flags = nix::fcntl::fcntl(
                std::os::fd::BorrowedFd::borrow_raw(setup.inherit),
                nix::fcntl::FcntlArg::F_GETFD,
            )?;
            let flags =
                nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
            nix::fcntl::fcntl(
                std::os::fd::BorrowedFd::borrow_raw(setup.inherit),
                nix::fcntl::FcntlArg::F_SETFD(flags),
            )?;
            if let Some(limit) = setup.data_limit {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_DATA,
                    limit,
                    limit,
                )?;
            }
            Ok(())
        });
    }
}

/// Raises the soft limit of open descriptors to the hard one, as servers do, and checks that
/// `need` fit under it. On failure: the limit there is, and whether it is the hard one.
pub fn ensure_nofile(need: u64) -> Result<(), (u64, &'static str)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Ok(());
    };
    // An unlimited hard limit still stops at the kernel's nr_open (1 Mi by default).
    let target = hard.min(1 << 20);
    let have = if soft < target && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        target
    } else {
        soft
    };
    if have >= need {
        Ok(())
    } else if have >= hard {
        Err((have, " (the hard limit)"))
    } else {
        Err((have, ""))
    }
}

/// Sends `sig` to the process group led by `pid` (each worker leads its own group).
pub fn signal_group(pid: u32, sig: Signal) {
    let _ = killpg(Pid::from_raw(pid as i32), sig);
}

/// Reads `key:` (in kB) from /proc/PID/status, in bytes.
pub fn proc_status_kb(pid: Option<u32>, keys: &[&str]) -> Option<Vec<u64>> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let mut out = vec![0; keys.len()];
    for line in text.lines() {
        for (i, k) in keys.iter().enumerate() {
            if let Some(rest) = line.strip_prefix(k) {
                if let Some(v) = rest.trim_start_matches(':').split_whitespace().next() {
                    out[i] = v.parse::<u64>().unwrap_or(0) * 1024;
                }
            }
        }
    }
    Some(out)
}

/// MemAvailable from /proc/meminfo, in bytes.
pub fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// The memory cgroup's headroom if this process is in a limited one: limit - (usage -
/// inactive file cache), since the kernel reclaims that cache before it kills anything.
/// cgroup v2 (`memory.max`, `memory.current`, `inactive_file`) or v1
/// (`memory.limit_in_bytes`, `memory.usage_in_bytes`, `total_inactive_file`), at the path
/// /proc/self/cgroup names.
pub fn cgroup_headroom() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    let stat = |p: &str, key: &str| {
        std::fs::read_to_string(p).ok().and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
        })
    };
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let (limit, usage, inactive) = if controllers.is_empty() {
            let d = format!("/sys/fs/cgroup{path}");
            (
                read(&format!("{d}/memory.max")),
                read(&format!("{d}/memory.current")),
                stat(&format!("{d}/memory.stat"), "inactive_file "),
            )
        } else if controllers.split(',').any(|c| c == "memory") {
            let d = format!("/sys/fs/cgroup/memory{path}");
            (
                read(&format!("{d}/memory.limit_in_bytes")),
                read(&format!("{d}/memory.usage_in_bytes")),
                stat(&format!("{d}/memory.stat"), "total_inactive_file "),
            )
        } else {
            continue;
        };
        // v2's "max" does not parse; v1's "no limit" is a huge page-rounded number.
        let (Some(limit), Some(usage)) = (limit, usage) else {
            continue;
        };
        if limit >= 1 << 60 {
            continue;
        }
        let used = usage.saturating_sub(inactive.unwrap_or(0));
        return Some(limit.saturating_sub(used));
    }
    None
}

/// Ends the process now with `code`, after flushing stdout and stderr, without running C and
/// C++ exit handlers: GDAL's global destructors must not run while a thread that could not
/// be joined (an in-process chunk, a worker's reader) may still be inside GDAL.
pub fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing in this process runs after it.
    unsafe { nix::libc::_exit(code) }
}

/// Connects to the one-shot server `name` and hangs up at once: unblocks an `accept()` whose
/// worker died before connecting. ipc-channel's own `connect` leaks its socket when the
/// connection fails (the server is already gone after a normal handshake), one descriptor
/// per worker restart; here the socket is owned and always closed.
pub fn poke_server(name: &str) {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return;
    };
    if let Ok(addr) = UnixAddr::new(name) {
        let _ = connect(fd.as_raw_fd(), &addr);
    }
}

/// Keeps the receive buffers of the supervisor's event loop in the heap. ipc-channel reads
/// every message into a fresh buffer as large as a socket's send buffer (~208 KiB by
/// default) and frees it at once; on the main thread (glibc's main arena) that memory went
/// back to the kernel with `brk` and was faulted in again, about three times a chunk
/// (measured: 60,000 `brk` calls for 20,000 no-op chunks, a fifth of the supervisor's CPU).
/// Fixed thresholds above twice that buffer (allocations below go to the heap, whose top
/// is returned only beyond twice that again) end the churn; glibc's dynamic thresholds, which
/// this switches off, would only ever have grown towards such values. Elsewhere than glibc,
/// nothing to do.
pub fn keep_receive_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::sys::socket::{getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType};
        let buf = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .ok()
        .and_then(|fd| getsockopt(&fd, sockopt::SndBuf).ok())
        .unwrap_or(212_992);
        // glibc refuses an mmap threshold above 32 MiB (on 64-bit).
        let mmap = (2 * buf).clamp(1 << 20, 32 << 20);
        // SAFETY: mallopt only changes the allocator's thresholds, under the allocator's own
        // lock; it is safe to call from any thread at any time. A refused value (return 0)
        // leaves glibc's defaults, which are correct, only slower.
        unsafe {
            nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, mmap as nix::libc::c_int);
            nix::libc::mallopt(nix::libc::M_TRIM_THRESHOLD, 2 * mmap as nix::libc::c_int);
        }
    }
}

/// Makes this process a child subreaper: a worker forked by the fork server (double fork,
/// its intermediate parent gone at once) becomes this process's child, so that this
/// process waits for it and its parent-death signal is tied to this process.
pub fn become_subreaper() -> std::io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from)
}

/// Sends `bytes` on the SOCK_SEQPACKET socket `sock` with `fds` beside it (SCM_RIGHTS).
pub fn send_with_fds(
    sock: std::os::fd::BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let iov = [std::io::IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for the child `pid` (a forked worker: no `std::process::Child`) to end: its exit
/// code or the signal that killed it.
pub fn wait_pid(pid: u32) -> std::io::Result<(Option<i32>, Option<i32>)> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(Pid::from_raw(pid as i32), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok((Some(code), None)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok((None, Some(sig as i32))),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a fork server forked from this process (see [`fork_zygote`]) is given.
pub struct Zygote {
    /// Its end of the control socket (the only descriptor above 2 it keeps).
    pub control: std::os::fd::OwnedFd,
    /// The write end of its stderr pipe.
    pub stderr: std::os::fd::OwnedFd,
    /// Environment set in it before it serves (what every worker of the run shares).
    pub env: Vec<(String, String)>,
    /// What it runs: serves fork requests on `control`, never returns.
    pub serve: fn(std::os::fd::OwnedFd) -> !,
}

/// Forks this process into a fork server (a zygote) that runs `z.serve`, instead of
/// executing the worker binary: what this process has loaded (GDAL and its ~100 libraries)
/// is there already, so it is ready at once instead of after another load. The child is set
/// up as an exec'd one would be: its own process group, SIGKILL when the thread that forked
/// it exits, stdin and stdout on /dev/null, `z.stderr` as stderr, no descriptor but 0-2 and
/// `z.control`, every caught signal back to its default (an ignored one stays ignored, as
/// across exec), no signal blocked. Refused when this process runs more than one thread:
/// only the child of a single-threaded process holds no lock by accident. Returns its pid,
/// a child of this process.
pub fn fork_zygote(z: Zygote) -> std::io::Result<u32> {
    use nix::unistd::{fork, ForkResult};
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(std::io::Error::other(format!(
            "this process runs {threads} threads: it cannot fork a fork server"
        )));
    }
    let parent = nix::unistd::getpid();
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: this process is single-threaded (checked above), so the child is a complete
    // copy in which no lock is held by a thread that does not exist there.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => {
            // The child makes itself a group leader too; whichever runs first, the group
            // exists when this returns (a signal to it must not miss the child).
            let _ = nix::unistd::setpgid(child, child);
            Ok(child.as_raw() as u32)
        }
        ForkResult::Child => {
            if zygote_setup(parent, &z, &null).is_err() {
                exit_at_once(protocol::exit::worker::SETUP);
            }
            let Zygote {
                control,
                stderr,
                env,
                serve,
            } = z;
            // Closed already (dup'ed where they are used): their numbers must not be closed
            // again.
            std::mem::forget((null, stderr));
            for (k, v) in env {
                // Single-threaded: nothing reads the environment meanwhile.
                std::env::set_var(k, v);
            }
            // Nothing may unwind into the caller's frames, which belong to the parent.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(control)));
            exit_at_once(protocol::exit::worker::SETUP)
        }
    }
}

/// The zygote's side of [`fork_zygote`], in the child before it serves.
fn zygote_setup(parent: Pid, z: &Zygote, null: &std::fs::File) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    // The parent may have died between fork and prctl: then nobody would kill us.
    if nix::unistd::getppid() != parent {
        return Err(nix::errno::Errno::ESRCH);
    }
    nix::unistd::dup2_stdin(null)?;
    nix::unistd::dup2_stdout(null)?;
    nix::unistd::dup2_stderr(&z.stderr)?;
    // SAFETY: the just-forked, single-threaded zygote; its handles to other descriptors are
    // forgotten or never dropped (it ends with `_exit`).
    unsafe { runtime::os::close_all_but(z.control.as_raw_fd()) };
    default_signals()
}

/// Every caught signal back to its default action and the signal mask emptied: what exec
/// does (ignored signals stay ignored), for a child that is not exec'd.
fn default_signals() -> nix::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow};
    // SAFETY: sigaction with a null new action only reads the current one into `old`; with
    // SIG_DFL it installs the default action, which runs no code of this process.
    unsafe {
        for sig in 1..=nix::libc::SIGRTMAX() {
            if sig == nix::libc::SIGKILL || sig == nix::libc::SIGSTOP {
                continue;
            }
            let mut old: nix::libc::sigaction = std::mem::zeroed();
            if nix::libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != nix::libc::SIG_DFL && old.sa_sigaction != nix::libc::SIG_IGN {
                let mut dfl: nix::libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = nix::libc::SIG_DFL;
                nix::libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Ends a forked child at once, running no exit handler of the parent's.
fn exit_at_once(code: i32) -> ! {
    // SAFETY: _exit ends the process at once; nothing in this process runs after it.
    unsafe { nix::libc::_exit(code) }
}

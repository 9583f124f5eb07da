//! The Unix-specific and `unsafe` part of supervision, behind a safe interface: what a
//! worker child does between fork and exec, signalling process groups, reading /proc and
//! the memory cgroup, descriptor limits, the allocator's thresholds, and ending the process.

use std::{os::unix::process::CommandExt, process::Command};

use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};

/// Limits and plumbing applied to a worker between fork and exec.
#[derive(Debug, Clone, Copy)]
pub struct ChildSetup {
    /// The shared segment's descriptor: made inheritable in the child only.
    pub shm_fd: i32,
    /// Hard per-worker memory limit (RLIMIT_DATA), in bytes.
    pub data_limit: Option<u64>,
}

/// Arranges for `cmd`'s child to: lead its own process group (signals reach it and anything
/// it starts, and the terminal's Ctrl-C reaches only the coordinator); die with SIGKILL when
/// the thread that spawned it exits (the coordinator spawns from its long-lived main thread);
/// inherit the shared segment; and run under the memory limit.
pub fn prepare(cmd: &mut Command, setup: ChildSetup) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe syscalls (setpgid, prctl, getppid, fcntl, setrlimit, _exit); it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The coordinator may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid() != parent {
                nix::libc::_exit(1);
            }
            let flags = nix::fcntl::fcntl(
                std::os::fd::BorrowedFd::borrow_raw(setup.shm_fd),
                nix::fcntl::FcntlArg::F_GETFD,
            )?;
            let flags =
                nix::fcntl::FdFlag::from_bits_truncate(flags) - nix::fcntl::FdFlag::FD_CLOEXEC;
            nix::fcntl::fcntl(
                std::os::fd::BorrowedFd::borrow_raw(setup.shm_fd),
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

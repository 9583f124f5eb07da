//! The worker process's OS specifics, behind a safe interface: taking ownership of the
//! inherited shared-segment descriptor, and restoring SIGSEGV's default action for the
//! segfault fault. Every `unsafe` of the runtime is here.

use std::os::fd::{FromRawFd, OwnedFd};

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

//! The process's interrupt: SIGINT, SIGTERM and SIGHUP, the same way in every command and
//! every phase of one. [`install`] registers one action per signal, once per process, that
//! records which signal came (an atomic store: all it does in signal context). A signal
//! therefore never kills the process in the middle of a step: the supervisor's loop is woken
//! by it and stops the workers, and every long step outside the engine (the COG copy, the
//! pyramid's levels, `merge`, `report`, `synth`) asks [`check`] between blocks or from GDAL's
//! progress callback, then unwinds like any failure, so that its temporary files go and its
//! lock is released. The command exits 130.
//!
//! Installing the actions replaces the default disposition, and also an inherited "ignore"
//! (a shell starts background jobs with SIGINT ignored): the tool handles the three signals
//! itself wherever it runs.
//!
//! `BLOCKSUM_STOP_AT=POINT` (a testing aid, like `--inject-fault`) makes the process stop
//! itself (SIGSTOP) the first time it reaches the checkpoint named POINT, so that a test can
//! send a signal at that exact moment, then SIGCONT; the names are where [`checkpoint`] is
//! called (`merge-copy`, `cog-copy`, `pyramid`, `report`, `synth`).

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc, OnceLock,
};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals that interrupt a command.
pub const SIGNALS: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The last interrupting signal received (0: none).
fn received_flag() -> &'static Arc<AtomicUsize> {
    static FLAG: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicUsize::new(0)))
}

/// A command stopped by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {0}")]
pub struct Interrupted(pub &'static str);

/// Registers the actions for SIGINT, SIGTERM and SIGHUP; later calls do nothing. Called by
/// the binary's `main` before anything else runs, and by [`crate::run`] for other callers.
pub fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            for sig in SIGNALS {
                signal_hook::flag::register_usize(sig, received_flag().clone(), sig as usize)
                    .map_err(|e| format!("installing the {} handler: {e}", name(sig)))?;
            }
            Ok(())
        })
        .clone()
}

/// The name of an interrupting signal.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "SIGINT",
    }
}

/// The number of the signal received, if any.
pub fn received_signal() -> Option<i32> {
    match received_flag().load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig as i32),
    }
}

/// The signal received, if any.
pub fn received() -> Option<Interrupted> {
    received_signal().map(|sig| Interrupted(name(sig)))
}

/// `Err` once a signal came: the caller stops what it does and unwinds.
pub fn check() -> Result<(), Interrupted> {
    received().map_or(Ok(()), Err)
}

/// [`check`] at a named point, where `BLOCKSUM_STOP_AT` may stop the process first.
pub fn checkpoint(point: &str) -> Result<(), Interrupted> {
    static STOP_AT: OnceLock<Option<String>> = OnceLock::new();
    static STOPPED: AtomicBool = AtomicBool::new(false);
    let stop_at = STOP_AT.get_or_init(|| std::env::var("BLOCKSUM_STOP_AT").ok());
    if stop_at.as_deref() == Some(point) && !STOPPED.swap(true, Ordering::SeqCst) {
        tracing::info!("stopping at '{point}' (BLOCKSUM_STOP_AT)");
        // Whatever was sent while stopped is delivered on SIGCONT, before this returns.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSTOP);
    }
    check()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_recorded_and_named() {
        install().unwrap();
        install().unwrap();
        assert_eq!(check(), Ok(()));
        nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
        // signal-hook runs the action in the handler, before raise returns.
        assert_eq!(check(), Err(Interrupted("SIGHUP")));
        assert_eq!(
            checkpoint("nowhere").unwrap_err().to_string(),
            "interrupted by SIGHUP"
        );
    }
}

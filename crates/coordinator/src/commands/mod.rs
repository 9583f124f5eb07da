//! One function per subcommand: what `coordinator COMMAND` does once the command line is
//! parsed and logging is set up (`main.rs`), returning the exit code or the error whose code
//! `main` prints.

mod bench;
mod config;
mod docs;
mod merge;
mod plan;
mod report;
mod resample;
mod synth;

use crate::{
    cli::{Cli, Command},
    error::CoordError,
};

/// Runs `cli`'s command.
pub fn dispatch(cli: &Cli) -> Result<i32, CoordError> {
    // Before any work: started by a process that takes the command with it when it dies (the
    // Python package, BLOCKSUM_PARENT_PID), its death is a SIGTERM here, handled as every
    // signal is (`engine::interrupt`); a parent already gone stops the command now, as that
    // SIGTERM would (exit 130).
    if let Some(parent) = crate::cli::parent_pid(&|k| std::env::var(k).ok())? {
        // Workers (forked or executed) are this run's, not the parent's: they must not
        // take the variable with them into anything they start. Read once, before any thread
        // of the run exists.
        std::env::remove_var(crate::cli::PARENT_PID);
        crate::os::term_with_parent(parent)
            .map_err(|e| CoordError::Internal(format!("following the parent process: {e}")))?;
        engine::interrupt::check()?;
    }
    match &cli.command {
        Command::Resample(r) => resample::resample(cli, r),
        Command::Map(m) => resample::map(cli, m),
        Command::Plan(p) => plan::plan(cli, p),
        Command::BenchDispatch(b) => bench::dispatch(cli, b),
        Command::BenchWriter(b) => bench::writer(b),
        Command::Config(pool) => config::config(cli, pool),
        Command::Report(r) => report::report(cli, r),
        Command::Completions(c) => docs::completions(c),
        Command::Man => docs::man(),
        Command::Merge(m) => merge::merge(cli, m),
        Command::Synth(s) => synth::synth(cli, s),
    }
}

/// Bytes on stdout; lost if stdout is closed.
fn out_bytes(b: &[u8]) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(b);
    let _ = o.flush();
}

/// A JSON value's conversion failing is this tool's fault.
fn internal(e: impl std::fmt::Display) -> CoordError {
    CoordError::Internal(e.to_string())
}

//! The coordinator's expected failures, each with its documented exit code
//! (see `protocol::exit` and the README).

use std::path::PathBuf;

use protocol::exit;

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("input '{0}' does not exist")]
    InputMissing(PathBuf),
    #[error("input '{path}' is not a raster GDAL can read: {reason}")]
    InputNotRaster { path: PathBuf, reason: String },
    #[error("{0}")]
    BadInput(String),
    /// A command line that parses but does not make sense (exit 2, like clap's own errors).
    #[error("{0}")]
    Usage(String),
    #[error("output '{0}' exists (pass --overwrite to replace it)")]
    OutputExists(PathBuf),
    #[error("output directory '{0}' does not exist")]
    OutputDirMissing(PathBuf),
    #[error("output directory '{path}' is not writable: {reason}")]
    OutputDirNotWritable { path: PathBuf, reason: String },
    #[error("output '{path}' is {what}: OUTPUT must name a regular file (--overwrite only ever replaces one)")]
    OutputNotFile { path: PathBuf, what: &'static str },
    #[error("output '{path}' is being written by {holder} (lock file beside it): wait for it, or choose another OUTPUT")]
    OutputLocked { path: PathBuf, holder: String },
    #[error("output '{0}' appeared during the run and was not replaced (pass --overwrite to replace it); the result was discarded")]
    OutputAppeared(PathBuf),
    /// A side file's path (`--report`, `--report-html`, `--events`, `report --html`), named
    /// by its flag.
    #[error("{flag} '{path}' refused: {why}")]
    ReportPath {
        flag: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error(
        "wrote '{output}', but writing {} '{path}' failed: {reason}",
        side_file(flag)
    )]
    ReportWrite {
        output: PathBuf,
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("writing output '{path}': {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("a journal of an interrupted run on '{output}' exists at '{journal}' ({chunks} chunk(s) done): pass --resume to continue it, or --overwrite to discard it and start over")]
    JournalExists {
        journal: PathBuf,
        output: PathBuf,
        chunks: usize,
    },
    #[error("--resume refused: the journal '{journal}' belongs to another plan ({why}); rerun with that run's input and options, or pass --overwrite instead of --resume to start over")]
    JournalMismatch { journal: PathBuf, why: String },
    /// `merge` over shards that are missing, incomplete or of different plans.
    #[error("merge refused: {0}")]
    MergeIncomplete(String),
    #[error("{0}")]
    Workers(String),
    #[error("{0}")]
    Resources(String),
    /// SIGINT, SIGTERM or SIGHUP (`engine::interrupt`): whatever the command was doing, it
    /// unwound and left nothing of its own behind.
    #[error("interrupted by {0}: no output written")]
    Interrupted(&'static str),
    #[error("{0}")]
    Internal(String),
}

impl CoordError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CoordError::InputMissing(_)
            | CoordError::InputNotRaster { .. }
            | CoordError::BadInput(_) => exit::INPUT,
            CoordError::OutputExists(_)
            | CoordError::OutputDirMissing(_)
            | CoordError::OutputDirNotWritable { .. }
            | CoordError::OutputNotFile { .. }
            | CoordError::OutputLocked { .. }
            | CoordError::OutputAppeared(_)
            | CoordError::ReportWrite { .. }
            | CoordError::JournalExists { .. }
            | CoordError::JournalMismatch { .. }
            | CoordError::Write { .. } => exit::OUTPUT,
            CoordError::ReportPath { .. } => exit::USAGE,
            CoordError::MergeIncomplete(_) => exit::INPUT,
            CoordError::Usage(_) => exit::USAGE,
            CoordError::Workers(_) => exit::WORKERS,
            CoordError::Resources(_) => exit::RESOURCES,
            CoordError::Interrupted(_) => exit::INTERRUPTED,
            CoordError::Internal(_) => exit::INTERNAL,
        }
    }
}

/// A side file in words, with the flag that named it.
fn side_file(flag: &str) -> String {
    let what = match flag {
        "--report" => "the report",
        "--report-html" => "the report page",
        "--events" => "the event stream",
        _ => "the file",
    };
    format!("{what} ({flag})")
}

impl From<engine::interrupt::Interrupted> for CoordError {
    fn from(i: engine::interrupt::Interrupted) -> Self {
        CoordError::Interrupted(i.0)
    }
}

//! The coordinator's expected failures, each with its documented exit code
//! (see `protocol::exit` and the README).
//!
//! A failure of the filesystem or of GDAL keeps its error as the `source`, after the step
//! that failed ("writing output 'o.tif': syncing the finished file: {source}"), the sink's
//! too: it crosses the engine boxed (`engine::SinkError`) and comes back as it was. A message
//! composed from several facts (a journal of another plan, a special file as input, a slot
//! the engine could not lease) stays a string.

use std::path::PathBuf;

use gdal::errors::GdalError;
use protocol::exit;

use crate::os::gdal_err::GdalFailure;

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("input '{0}' does not exist")]
    InputMissing(PathBuf),
    /// `reason` is ours, or GDAL's own message from its error state; `source`, where there
    /// is one, the bindings' error of the call.
    #[error("input '{path}' is not a raster GDAL can read: {reason}")]
    InputNotRaster {
        path: PathBuf,
        reason: String,
        #[source]
        source: Option<Box<GdalError>>,
    },
    /// A GDAL call on the input (or on `--like`'s raster) failed at `step`.
    #[error(
        "input '{path}' is not a raster GDAL can read: {}{source}",
        step_prefix(step)
    )]
    InputGdal {
        path: PathBuf,
        step: String,
        #[source]
        source: Box<GdalError>,
    },
    #[error("{0}")]
    BadInput(String),
    /// A command line that parses but does not make sense (exit 2, like clap's own errors).
    #[error("{0}")]
    Usage(String),
    #[error("output '{0}' exists (pass --overwrite to replace it)")]
    OutputExists(PathBuf),
    #[error("output directory '{0}' does not exist")]
    OutputDirMissing(PathBuf),
    #[error(
        "output directory '{path}' is not writable: {}{source}",
        step_prefix(step)
    )]
    OutputDirNotWritable {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
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
        "wrote '{output}', but writing {} '{path}' failed: {source}",
        side_file(flag)
    )]
    ReportWrite {
        output: PathBuf,
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: SideFileError,
    },
    /// A failure composed from several facts, or the engine's own text about its sink.
    #[error("writing output '{path}': {reason}")]
    Write { path: PathBuf, reason: String },
    /// A filesystem call of writing `path` (the output, its lock, journal or scratch files)
    /// failed at `step`.
    #[error("writing output '{path}': {}{source}", step_prefix(step))]
    WriteIo {
        path: PathBuf,
        step: String,
        #[source]
        source: std::io::Error,
    },
    /// A chunk could not be appended to the journal of the output at `path`, or made
    /// durable there (the source names the journal).
    #[error("writing output '{path}': {source}")]
    WriteJournal {
        path: PathBuf,
        #[source]
        source: crate::journal::AppendError,
    },
    /// A GDAL call of writing `path` failed at `step`.
    #[error("writing output '{path}': {}{source}", step_prefix(step))]
    WriteGdal {
        path: PathBuf,
        step: String,
        #[source]
        source: Box<GdalFailure>,
    },
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
            | CoordError::InputGdal { .. }
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
            | CoordError::Write { .. }
            | CoordError::WriteIo { .. }
            | CoordError::WriteJournal { .. }
            | CoordError::WriteGdal { .. } => exit::OUTPUT,
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

impl CoordError {
    /// `step` of writing `path` failed with `source`.
    pub fn write_io(
        path: impl Into<PathBuf>,
        step: impl Into<String>,
        source: std::io::Error,
    ) -> Self {
        CoordError::WriteIo {
            path: path.into(),
            step: step.into(),
            source,
        }
    }

    /// GDAL failed `step` of writing `path`.
    pub fn write_gdal(
        path: impl Into<PathBuf>,
        step: impl Into<String>,
        source: GdalFailure,
    ) -> Self {
        CoordError::WriteGdal {
            path: path.into(),
            step: step.into(),
            source: Box::new(source),
        }
    }

    /// The input is not a raster, for a reason of ours (no GDAL error to keep).
    pub fn not_raster(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        CoordError::InputNotRaster {
            path: path.into(),
            reason: reason.into(),
            source: None,
        }
    }
}

/// Why a side file (`--report`, `--report-html`, `--events`) could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SideFileError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The path was free when the run started; a file appeared there since.
    #[error("a file appeared there during the run and was not replaced (pass --overwrite to replace it)")]
    Appeared,
    /// The event stream's writer failed (its text is the engine's).
    #[error("{0}")]
    Stream(String),
}

/// The step before its cause: "step: ", or nothing when there is no step to name.
fn step_prefix(step: &str) -> String {
    if step.is_empty() {
        String::new()
    } else {
        format!("{step}: ")
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn an_io_failure_reads_as_before_and_keeps_its_cause() {
        let e = CoordError::write_io(
            "o.tif",
            "syncing the finished file",
            std::io::Error::from_raw_os_error(28),
        );
        let cause = std::io::Error::from_raw_os_error(28).to_string();
        assert_eq!(
            e.to_string(),
            format!("writing output 'o.tif': syncing the finished file: {cause}")
        );
        let source = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(source.and_then(std::io::Error::raw_os_error), Some(28));
        assert_eq!(e.exit_code(), exit::OUTPUT);
        // No step: the cause right after the path, as `reason: e.to_string()` read.
        let bare = CoordError::write_io("p.html", "", std::io::Error::other("disk gone"));
        assert_eq!(bare.to_string(), "writing output 'p.html': disk gone");
    }

    #[test]
    fn a_gdal_failure_reads_as_before_and_keeps_the_bindings_error() {
        let call = GdalFailure::Call {
            source: GdalError::BadArgument("x".into()),
            detail: Some("TIFFWriteEncodedTile failed".into()),
        };
        let e = CoordError::write_gdal("o.tif", "flushing the overviews", call);
        assert_eq!(
            e.to_string(),
            "writing output 'o.tif': flushing the overviews: BadArgument: TIFFWriteEncodedTile failed"
        );
        // Boxed (a GDAL error is large): the chain goes on through the box.
        let failure = e
            .source()
            .and_then(|s| s.downcast_ref::<Box<GdalFailure>>());
        let bindings = failure.and_then(|f| f.source());
        assert!(bindings.is_some_and(|b| b.downcast_ref::<GdalError>().is_some()));
        let dir = CoordError::OutputDirNotWritable {
            path: "d".into(),
            step: "creating it",
            source: std::io::Error::other("read-only file system"),
        };
        assert_eq!(
            dir.to_string(),
            "output directory 'd' is not writable: creating it: read-only file system"
        );
    }

    #[test]
    fn a_side_file_failure_reads_as_before() {
        let e = CoordError::ReportWrite {
            output: "o.tif".into(),
            flag: "--report",
            path: "r.json".into(),
            source: SideFileError::Appeared,
        };
        assert_eq!(
            e.to_string(),
            "wrote 'o.tif', but writing the report (--report) 'r.json' failed: a file appeared there during the run and was not replaced (pass --overwrite to replace it)"
        );
        let io = CoordError::ReportWrite {
            output: "o.tif".into(),
            flag: "--report-html",
            path: "r.html".into(),
            source: std::io::Error::other("quota").into(),
        };
        assert!(io.to_string().ends_with("'r.html' failed: quota"));
        assert!(io.source().is_some_and(|s| s.source().is_none()));
    }
}

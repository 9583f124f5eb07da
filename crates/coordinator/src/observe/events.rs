//! `--events FILE` (or `-` for stdout): where the run's event stream goes, and the job's own
//! events in it (the plan first, the commit and the end last). The events themselves and
//! the line format are the engine's (`engine::observe`); the schema is in docs/events.md.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::Path,
};

use engine::observe::{EventLog, RunEvent};

use crate::error::CoordError;

/// Opens the stream: stdout for `-`, else a new file, or an existing one when `overwrite`
/// (`--overwrite`, or the interrupted run's stream under `--resume`), which keeps what it
/// holds until the run writes its first event (a run refused before that, a journal of
/// other options, leaves it as it was). Never the input or the output.
pub fn open(
    path: &Path,
    overwrite: bool,
    input: &Path,
    output: &Path,
) -> Result<EventLog, CoordError> {
    if path.as_os_str() == "-" {
        return Ok(EventLog::new(Box::new(std::io::stdout())));
    }
    let refuse =
        |why: String| CoordError::Usage(format!("--events '{}' refused: {why}", path.display()));
    if path == input || path == output {
        return Err(refuse("it names the input or the output".into()));
    }
    let mut o = OpenOptions::new();
    o.write(true);
    if overwrite {
        o.create(true);
    } else {
        o.create_new(true);
    }
    let f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            refuse("it exists (pass --overwrite to replace it)".into())
        } else {
            refuse(e.to_string())
        }
    })?;
    Ok(EventLog::new(Box::new(Replacing {
        file: f,
        emptied: !overwrite,
    })))
}

/// A file emptied at the first write: what was there stays until the run has something of
/// its own to say.
struct Replacing {
    file: File,
    emptied: bool,
}

impl Write for Replacing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.emptied {
            // Opened at offset 0, nothing written yet: the stream starts at the start.
            self.file.set_len(0)?;
            self.emptied = true;
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The job's plan event: the report's plan summary, with the input and output.
pub fn plan_event(
    summary: &crate::report::PlanSummary,
    input: &Path,
    output: &Path,
    workers: u32,
) -> RunEvent {
    let mut plan = serde_json::to_value(summary).unwrap_or_else(|_| serde_json::json!({}));
    plan["input"] = input.display().to_string().into();
    plan["output"] = output.display().to_string().into();
    plan["workers"] = workers.into();
    RunEvent::Plan { plan }
}

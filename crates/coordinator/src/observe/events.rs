//! `--events FILE` (or `-` for stdout): where the run's event stream goes, and the job's own
//! events in it (the plan first, the commit and the end last). The events themselves and
//! the line format are the engine's (`engine::observe`); the schema is in docs/events.md.

use std::{fs::OpenOptions, path::Path};

use engine::observe::{EventLog, RunEvent};

use crate::error::CoordError;

/// Opens the stream: stdout for `-`, else a new file (an existing one only with
/// `--overwrite`). Never the input or the output.
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
        o.create(true).truncate(true);
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
    Ok(EventLog::new(Box::new(f)))
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

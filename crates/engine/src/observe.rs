//! What a run tells as it goes: the [`RunEvent`]s the scheduler notes at each decision (a
//! worker spawned, ready, dead or recycled; a chunk dispatched, backed up (speculative), done,
//! failed, retried, timed out, split or quarantined; admission), the memory sampler's samples, and the job's own
//! (plan, commit, end), and the [`EventLog`] that streams them as JSON lines
//! (`--events FILE`, schema in docs/events.md).
//!
//! Owns the vocabulary and the line format. Decides nothing: the scheduler notes its
//! decisions through an [`Observer`] (no I/O in the state machine itself), and whoever runs
//! the engine decides where the lines go.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use protocol::{FaultKind, TaskStats};
use serde::{Deserialize, Serialize};

use crate::sched::{Executor, FailureCause, SplitReason};

/// The version of the event schema: bumped when a field changes meaning or goes away
/// (adding an event or a field is no change of version).
pub const EVENTS_VERSION: u32 = 1;

/// One thing that happened in a run. Times (`*_ms`) count from the engine's start, as the
/// report's do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The job's plan, before any worker starts (fields are the job's).
    Plan {
        #[serde(flatten)]
        plan: serde_json::Value,
    },
    /// A worker incarnation was asked for.
    WorkerSpawned { worker: u32, gen: u32 },
    /// It said hello and can take chunks.
    WorkerReady { worker: u32, gen: u32, pid: u32 },
    /// It will be stopped after its chunk (soft memory limit).
    WorkerRecycled { worker: u32, gen: u32 },
    /// The lane gets incarnation `gen` after `delay_ms` (a backoff after deaths in a row);
    /// `deliberate`: after a recycle, not a death (the report counts the others as
    /// restarts).
    WorkerRestart {
        worker: u32,
        gen: u32,
        delay_ms: u64,
        deliberate: bool,
    },
    /// Its process is gone. `cause` is `None` for a clean exit at the end of the run;
    /// `deliberate` when the coordinator stopped it (recycled, retired, end of run).
    WorkerExited {
        worker: u32,
        gen: u32,
        pid: Option<u32>,
        cause: Option<FailureCause>,
        deliberate: bool,
        stderr_tail: Vec<String>,
    },
    /// An attempt started, on a worker or in process. `speculative`: a backup of an
    /// attempt of the same chunk that still runs (a `speculative` event says why).
    ChunkDispatched {
        task: u32,
        attempt: u32,
        executor: Executor,
        fault: Option<FaultKind>,
        #[serde(default)]
        speculative: bool,
    },
    /// A chunk's attempt `behind` has run `after_ms`, past the speculation threshold
    /// (`threshold_ms`), with a worker idle and nothing queued: attempt `attempt` starts on
    /// worker `worker` beside it, and the first of the two to finish is kept.
    Speculative {
        task: u32,
        attempt: u32,
        behind: u32,
        worker: u32,
        gen: u32,
        after_ms: u64,
        threshold_ms: u64,
    },
    /// An attempt succeeded; its output goes to the writer.
    ChunkDone {
        task: u32,
        attempt: u32,
        executor: Executor,
        started_ms: u64,
        ended_ms: u64,
        stats: TaskStats,
        #[serde(default)]
        speculative: bool,
    },
    /// The attempt's kernel could not read the chunk by its first path and read it by its
    /// fallback (`stats.fallback_read`; block aggregation: the native decoder failed, GDAL
    /// read it); noted right after its `ChunkDone`.
    ChunkReadFallback { task: u32, attempt: u32 },
    /// An attempt failed (`cause.kind` is `timeout` for a timed-out one, `superseded` for
    /// the loser of a speculative pair).
    ChunkFailed {
        task: u32,
        attempt: u32,
        executor: Executor,
        started_ms: u64,
        ended_ms: u64,
        cause: FailureCause,
        fault: Option<FaultKind>,
        #[serde(default)]
        speculative: bool,
    },
    /// The attempt ran past the time limit: its worker is being stopped.
    ChunkTimedOut {
        task: u32,
        attempt: u32,
        worker: u32,
        gen: u32,
        after_ms: u64,
    },
    /// After a failure, the chunk is queued again (`in_process`: for an in-process lane).
    ChunkRetried {
        task: u32,
        next_attempt: u32,
        in_process: bool,
    },
    /// The chunk was split into parts `first..first + parts` (ids of new chunks).
    ChunkSplit {
        task: u32,
        reason: SplitReason,
        first: u32,
        parts: u32,
    },
    /// The chunk gave up: its output pixels are nodata.
    ChunkQuarantined {
        task: u32,
        cause: Option<FailureCause>,
    },
    /// The writer has the chunk's output (or its nodata).
    ChunkWritten { task: u32 },
    /// A worker's memory, as the sampler read it.
    MemorySample {
        worker: u32,
        gen: u32,
        pid: u32,
        rss_bytes: u64,
        private_bytes: u64,
    },
    /// Dispatch is held (`open: false`) or released by `--min-free-memory`.
    Admission { open: bool },
    /// The output is complete and in place (the job's).
    Commit { output: String },
    /// The last line: how the run ended (the job's).
    RunEnd {
        status: String,
        exit_code: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        wall_ms: u64,
    },
}

/// One line of the stream: the schema version, the time, the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    pub v: u32,
    pub t_ms: u64,
    #[serde(flatten)]
    pub event: RunEvent,
}

/// Where the scheduler's notes go, stamped with the run's milliseconds.
pub type Observer = Box<dyn FnMut(u64, &RunEvent) + Send>;

struct LogState {
    out: Box<dyn Write + Send>,
    /// The first write error: later events are dropped, the run goes on, and the job
    /// reports it at the end.
    error: Option<String>,
}

/// A JSON-lines stream, shared by the scheduler's observer, the memory sampler and the
/// job; every line is written whole and flushed at once (`tail -f` sees each event as it
/// happens).
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<LogState>>,
}

impl EventLog {
    pub fn new(out: Box<dyn Write + Send>) -> EventLog {
        EventLog {
            inner: Arc::new(Mutex::new(LogState { out, error: None })),
        }
    }

    pub fn emit(&self, t_ms: u64, event: &RunEvent) {
        let mut st = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if st.error.is_some() {
            return;
        }
        let line = EventLine {
            v: EVENTS_VERSION,
            t_ms,
            event: event.clone(),
        };
        let res = serde_json::to_vec(&line)
            .map_err(std::io::Error::other)
            .and_then(|mut text| {
                text.push(b'\n');
                st.out.write_all(&text)?;
                st.out.flush()
            });
        if let Err(e) = res {
            st.error = Some(e.to_string());
        }
    }

    /// The first write error, if any: the stream is incomplete from there on.
    pub fn error(&self) -> Option<String> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .error
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_event_is_one_versioned_line_that_reads_back() {
        let buf = Buf::default();
        let log = EventLog::new(Box::new(buf.clone()));
        let events = [
            RunEvent::WorkerSpawned { worker: 0, gen: 1 },
            RunEvent::ChunkFailed {
                task: 3,
                attempt: 1,
                executor: Executor::Worker {
                    worker: crate::sched::WorkerId(0),
                    pid: 42,
                },
                started_ms: 5,
                ended_ms: 9,
                cause: FailureCause::Signal {
                    signal: 9,
                    name: "SIGKILL".into(),
                },
                fault: Some(FaultKind::Crash),
                speculative: false,
            },
            RunEvent::Plan {
                plan: serde_json::json!({"chunks": 4}),
            },
        ];
        for (i, e) in events.iter().enumerate() {
            log.emit(i as u64, e);
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with(r#"{"v":1,"t_ms":1,"event":"chunk_failed""#));
        for (i, l) in lines.iter().enumerate() {
            let back: EventLine = serde_json::from_str(l).unwrap();
            assert_eq!(back.t_ms, i as u64);
            assert_eq!(back.event, events[i]);
        }
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_is_kept_and_later_events_dropped() {
        let log = EventLog::new(Box::new(Broken));
        log.emit(0, &RunEvent::Admission { open: false });
        log.emit(1, &RunEvent::Admission { open: true });
        assert_eq!(log.error().as_deref(), Some("disk full"));
    }
}

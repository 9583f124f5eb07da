//! The progress bar on stderr, apart from the logs: chunks done, live workers, restarts,
//! quarantined chunks, MiB/s and ETA. indicatif hides it when stderr is not a terminal; `-q`
//! hides it always.
//!
//! Chunks and bytes come from the supervisor as the writer finishes them; workers, restarts
//! and quarantines from the scheduler's events ([`Progress::on_event`]), through the same
//! observer as the event stream.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Instant,
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::observe::RunEvent;

/// What the bar's message says, apart from the count and ETA.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProgressStatus {
    pub bytes: u64,
    /// Worker incarnations that said hello and have not exited.
    pub live: HashSet<(u32, u32)>,
    /// Workers that died (not stopped on purpose).
    pub restarts: u32,
    pub quarantined: u32,
    pub waiting: bool,
}

impl ProgressStatus {
    /// The bar's message after `secs` seconds.
    pub fn message(&self, secs: f64) -> String {
        let mut m = String::new();
        if self.waiting {
            m.push_str("waiting for free memory (--min-free-memory)  ");
        }
        m.push_str(&format!(
            "{} live worker(s)  {} restart(s)  {} quarantined  {:.0} MiB/s",
            self.live.len(),
            self.restarts,
            self.quarantined,
            self.bytes as f64 / (1 << 20) as f64 / secs.max(1e-3)
        ));
        m
    }

    /// Takes in one of the scheduler's events.
    pub fn apply(&mut self, ev: &RunEvent) {
        match ev {
            RunEvent::WorkerReady { worker, gen, .. } => {
                self.live.insert((*worker, *gen));
            }
            RunEvent::WorkerExited {
                worker,
                gen,
                deliberate,
                cause,
                ..
            } => {
                self.live.remove(&(*worker, *gen));
                if !deliberate && cause.is_some() {
                    self.restarts += 1;
                }
            }
            RunEvent::ChunkQuarantined { .. } => self.quarantined += 1,
            RunEvent::Admission { open } => self.waiting = !open,
            _ => {}
        }
    }
}

/// The bar; clones share it (one is the scheduler's observer, one the supervisor's).
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    status: Arc<Mutex<ProgressStatus>>,
    start: Instant,
}

impl Progress {
    pub fn new(chunks: u64, enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let b = ProgressBar::with_draw_target(Some(chunks), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} chunks  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Progress {
            bar,
            status: Arc::new(Mutex::new(ProgressStatus::default())),
            start: Instant::now(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut ProgressStatus)) {
        let mut st = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st);
        if let Some(b) = &self.bar {
            b.set_message(st.message(self.start.elapsed().as_secs_f64()));
        }
    }

    pub fn chunk_done(&mut self, input_bytes: u64) {
        self.update(|s| s.bytes += input_bytes);
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    /// One of the scheduler's events: workers, restarts, quarantines, admission.
    pub fn on_event(&self, ev: &RunEvent) {
        if matches!(
            ev,
            RunEvent::WorkerReady { .. }
                | RunEvent::WorkerExited { .. }
                | RunEvent::ChunkQuarantined { .. }
                | RunEvent::Admission { .. }
        ) {
            self.update(|s| s.apply(ev));
        }
    }

    /// A chunk was split: its parts replace it in the count.
    pub fn add_chunks(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(n);
        }
    }

    /// Shows (or clears) that dispatch waits for free memory.
    pub fn waiting(&mut self, waiting: bool) {
        self.update(|s| s.waiting = waiting);
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::FailureCause;

    #[test]
    fn the_message_counts_live_workers_restarts_and_quarantines() {
        let mut s = ProgressStatus::default();
        let ready = |worker, gen| RunEvent::WorkerReady {
            worker,
            gen,
            pid: 1,
        };
        let exited = |worker, gen, deliberate, cause| RunEvent::WorkerExited {
            worker,
            gen,
            pid: Some(1),
            cause,
            deliberate,
            stderr_tail: vec![],
        };
        s.apply(&ready(0, 0));
        s.apply(&ready(1, 0));
        s.apply(&exited(
            0,
            0,
            false,
            Some(FailureCause::Signal {
                signal: 9,
                name: "SIGKILL".into(),
            }),
        ));
        s.apply(&ready(0, 1));
        s.apply(&exited(1, 0, true, Some(FailureCause::Recycled)));
        s.apply(&RunEvent::ChunkQuarantined {
            task: 3,
            cause: None,
        });
        s.bytes = 10 << 20;
        assert_eq!(
            s.message(2.0),
            "1 live worker(s)  1 restart(s)  1 quarantined  5 MiB/s"
        );
        s.apply(&RunEvent::Admission { open: false });
        assert!(s.message(2.0).starts_with("waiting for free memory"));
    }
}

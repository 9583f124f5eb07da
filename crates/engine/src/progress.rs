//! The progress bar (chunks, MiB/s, ETA) on stderr, apart from the logs. indicatif hides it
//! when stderr is not a terminal; `-q` hides it always.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    bytes: u64,
    start: Instant,
}

impl Progress {
    pub fn new(chunks: u64, enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let b = ProgressBar::with_draw_target(Some(chunks), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} chunks  {msg}  ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Progress {
            bar,
            bytes: 0,
            start: Instant::now(),
        }
    }

    pub fn chunk_done(&mut self, input_bytes: u64) {
        self.bytes += input_bytes;
        if let Some(b) = &self.bar {
            let secs = self.start.elapsed().as_secs_f64().max(1e-3);
            b.set_message(format!(
                "{:.0} MiB/s",
                self.bytes as f64 / (1 << 20) as f64 / secs
            ));
            b.inc(1);
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
        if let Some(b) = &self.bar {
            b.set_message(if waiting {
                "waiting for free memory (--min-free-memory)".to_string()
            } else {
                String::new()
            });
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

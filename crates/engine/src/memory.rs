//! The memory sampler: every `--memory-poll`, read each live worker's /proc status (VmHWM,
//! VmRSS, RssAnon). RssAnon is the worker's private resident memory: the shared slots it
//! touched count in RssShmem, not here. Peaks go to the report; crossing the soft limit
//! becomes an `OverSoftLimit` event (the worker is recycled after its chunk). With
//! `--min-free-memory`, the machine's available memory opens and closes admission. Each
//! sample is also kept as a time series per worker (for the report's memory chart, thinned
//! to at most `MAX_SAMPLES` per worker) and told to the event stream, if any.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    event_loop::EventSender,
    observe::{EventLog, RunEvent},
    os,
    sched::{SchedEvent, WorkerKey},
};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct MemPeak {
    /// Peak resident set (VmHWM), shared slot pages included.
    pub peak_rss_bytes: u64,
    /// Peak private resident memory (RssAnon) seen by the sampler.
    pub peak_private_bytes: u64,
}

/// Samples kept per worker incarnation: past this, every other one is dropped (and the
/// series keeps its shape over the whole run).
pub const MAX_SAMPLES: usize = 2048;

/// One reading of a worker's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemSample {
    /// Milliseconds since the run started.
    pub ms: u64,
    pub rss_bytes: u64,
    pub private_bytes: u64,
}

#[derive(Default)]
pub struct MemShared {
    pub live: Vec<(WorkerKey, u32)>,
    pub peaks: HashMap<(u32, u32), MemPeak>,
    /// Per incarnation, in time order; thinned (see `MAX_SAMPLES`).
    pub samples: HashMap<(u32, u32), Vec<MemSample>>,
    /// The run's start, to stamp samples (none: samples are not kept).
    pub start: Option<std::time::Instant>,
    /// The event stream, told every sample.
    pub log: Option<EventLog>,
}

/// Keeps `s` in `series`, halving the series when it is full.
fn keep(series: &mut Vec<MemSample>, s: MemSample) {
    if series.len() >= MAX_SAMPLES {
        let mut i = 0;
        series.retain(|_| {
            i += 1;
            i % 2 == 1
        });
    }
    series.push(s);
}

pub type MemState = Arc<Mutex<MemShared>>;

/// Samples one pid now.
pub fn sample(state: &MemState, key: WorkerKey, pid: u32) -> Option<u64> {
    // VmHWM for the peak, VmRSS (now) for the series.
    let v = os::proc_status_kb(Some(pid), &["VmHWM", "RssAnon", "VmRSS"])?;
    let rss = v[2];
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    let p = s.peaks.entry((key.id.0, key.gen)).or_default();
    p.peak_rss_bytes = p.peak_rss_bytes.max(v[0]);
    p.peak_private_bytes = p.peak_private_bytes.max(v[1]);
    // A process being reaped reads as all zeros: no point on the chart.
    if let (Some(start), true) = (s.start, rss > 0) {
        let ms = start.elapsed().as_millis() as u64;
        let sample = MemSample {
            ms,
            rss_bytes: rss,
            private_bytes: v[1],
        };
        keep(s.samples.entry((key.id.0, key.gen)).or_default(), sample);
        if let Some(log) = &s.log {
            log.emit(
                ms,
                &RunEvent::MemorySample {
                    worker: key.id.0,
                    gen: key.gen,
                    pid,
                    rss_bytes: rss,
                    private_bytes: v[1],
                },
            );
        }
    }
    Some(v[1])
}

pub fn start<E: Send + 'static>(
    state: MemState,
    poll: Duration,
    soft_limit: Option<u64>,
    min_free: Option<u64>,
    events: EventSender<E>,
    wrap: fn(SchedEvent) -> E,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("memory".into())
        .spawn(move || {
            let mut flagged: std::collections::HashSet<(u32, u32)> = Default::default();
            let mut open = None;
            loop {
                // Admission: hold dispatch while the machine is short of memory.
                if let Some(min) = min_free {
                    let now_open = available_memory() >= min;
                    if open != Some(now_open) {
                        open = Some(now_open);
                        if events
                            .send(wrap(SchedEvent::Admission { open: now_open }))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                let live = state.lock().unwrap_or_else(|p| p.into_inner()).live.clone();
                for (key, pid) in live {
                    let Some(anon) = sample(&state, key, pid) else {
                        continue;
                    };
                    if soft_limit.is_some_and(|l| anon > l) && flagged.insert((key.id.0, key.gen)) {
                        tracing::info!(
                            worker = key.id.0,
                            pid,
                            anon,
                            "over the soft memory limit: recycling after its chunk"
                        );
                        if events
                            .send(wrap(SchedEvent::OverSoftLimit { key }))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                thread::sleep(poll);
            }
        })
        .map(drop)
}

/// Available memory: the kernel's MemAvailable, or the memory cgroup's headroom when that is
/// smaller (in a container the cgroup limit, not the host, decides when the OOM killer acts).
pub fn available_memory() -> u64 {
    let host = match sysinfo::System::new() {
        Ok(mut s) => {
            s.refresh_memory();
            s.available_memory()
        }
        Err(_) => os::meminfo_available().unwrap_or(0),
    };
    match os::cgroup_headroom() {
        Some(h) => host.min(h),
        None => host,
    }
}

/// The machine's memory: available memory can never exceed it.
pub fn total_memory() -> u64 {
    match sysinfo::System::new() {
        Ok(mut s) => {
            s.refresh_memory();
            s.total_memory()
        }
        Err(_) => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_series_is_thinned_not_truncated() {
        let mut series = Vec::new();
        for ms in 0..(MAX_SAMPLES as u64 * 3) {
            keep(
                &mut series,
                MemSample {
                    ms,
                    rss_bytes: ms,
                    private_bytes: ms,
                },
            );
        }
        assert!(series.len() <= MAX_SAMPLES);
        assert_eq!(series[0].ms, 0);
        assert_eq!(series.last().unwrap().ms, MAX_SAMPLES as u64 * 3 - 1);
        assert!(series.windows(2).all(|w| w[0].ms < w[1].ms));
    }
}

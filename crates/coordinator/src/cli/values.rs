//! The settings' values: the types a setting holds beyond numbers and durations
//! (`--workers`, `--speculation`), each row's parser (text in, typed value or a one-line
//! reason out) and how `coordinator config` shows each value. The table itself is
//! `settings`'.

use std::{fmt, time::Duration};

use super::settings::default_threads;
use crate::{sched::TimeoutSpec, units};

/// `--workers` as given: auto, or a number (0: in process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Auto,
    N(u32),
}

impl fmt::Display for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Workers::Auto => write!(
                f,
                "auto (min(CPUs, what memory allows) = up to {})",
                default_threads()
            ),
            Workers::N(0) => f.write_str("0 (in process)"),
            Workers::N(n) => write!(f, "{n}"),
        }
    }
}

/// `--speculation` as given: off, or the multiple of the median chunk time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speculate {
    Off,
    Factor(f64),
}

impl fmt::Display for Speculate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Speculate::Off => f.write_str("off"),
            Speculate::Factor(k) => write!(f, "{k}x the median chunk time, at least the floor"),
        }
    }
}

pub(super) fn parse_speculation(s: &str) -> Result<Speculate, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") || t.eq_ignore_ascii_case("none") {
        return Ok(Speculate::Off);
    }
    match t.trim_end_matches(['x', 'X']).trim().parse::<f64>() {
        Ok(k) if k.is_finite() && k >= 1.0 => Ok(Speculate::Factor(k)),
        _ => Err(format!(
            "'{s}' is not a speculation factor (a number >= 1 such as 4 or 4x, or off)"
        )),
    }
}

pub(super) fn parse_workers(s: &str) -> Result<Workers, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(Workers::Auto);
    }
    s.trim()
        .parse::<u32>()
        .map(Workers::N)
        .map_err(|_| format!("'{s}' is not a number of workers (a whole number, or auto)"))
}

/// A whole number >= `min`, with a message that says so (the caller names the source).
pub fn whole(s: &str, min: u32) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(format!("'{s}' is not a whole number >= {min}")),
    }
}

pub(super) fn parse_attempts(s: &str) -> Result<u32, String> {
    whole(s, 1)
}

pub(super) fn parse_count(s: &str) -> Result<u32, String> {
    whole(s, 0)
}

pub(super) fn parse_some_queue(s: &str) -> Result<Option<u32>, String> {
    whole(s, 1).map(Some)
}

pub(super) fn parse_some_size(s: &str) -> Result<Option<u64>, String> {
    units::parse_size(s).map(Some)
}

pub(super) fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(format!("'{s}' is not a fraction in (0, 1] (e.g. 0.8)")),
    }
}

pub(super) fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

pub(super) fn plain<T: fmt::Display>(v: &T) -> String {
    v.to_string()
}

pub(super) fn show_duration(d: &Duration) -> String {
    format!("{d:?}")
}

pub(super) fn show_timeout(t: &Option<TimeoutSpec>) -> String {
    match t {
        None => "none".into(),
        Some(TimeoutSpec::Fixed(d)) => format!("{d:?}"),
        Some(TimeoutSpec::PercentOfMedian(p)) => {
            format!("{p}% of the median chunk time, at least the floor")
        }
    }
}

pub(super) fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

pub(super) fn show_memory_limit(v: &Option<u64>) -> String {
    v.map(mib)
        .unwrap_or_else(|| "auto ((80 % of available - slot ring) / workers)".into())
}

pub(super) fn show_size_or_none(v: &Option<u64>) -> String {
    v.map(mib).unwrap_or_else(|| "none".into())
}

pub(super) fn show_chunk_queue(v: &Option<u32>) -> String {
    v.map(|v| format!("{v} (caps the slot ring)"))
        .unwrap_or_else(|| "none".into())
}

pub(super) fn show_result_queue(v: &Option<u32>) -> String {
    v.map(|v| format!("{v} (bounded by the slot ring already)"))
        .unwrap_or_else(|| "none".into())
}

//! The layered configuration: built-in defaults < config file (`--config`, TOML with the seed's
//! keys) < environment < flags. Everything is resolved, with where each value came from, before
//! the run starts; `coordinator config` prints it.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{error::CoordError, units};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

impl Source {
    /// How a message names where a value came from: the flag, the variable, or the file
    /// and its key.
    pub fn name(&self, flag: &str, key: &str) -> String {
        match self {
            Source::Flag | Source::Default => flag.to_string(),
            Source::Env(v) => v.to_string(),
            Source::File(p) => format!("{key} in '{}'", p.display()),
        }
    }
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    pub fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }

    /// Replaces the value when `v` is present.
    pub fn layer(&mut self, v: Option<T>, source: Source) {
        if let Some(v) = v {
            self.value = v;
            self.source = source;
        }
    }
}

/// The file's shape: the seed's `[resampling.multiprocessing]` table, plus our own keys.
/// Unknown keys anywhere are an error that names the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoot {
    #[serde(default)]
    pub resampling: FileResampling,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileResampling {
    #[serde(default)]
    pub multiprocessing: FileMultiprocessing,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMultiprocessing {
    /// `false`: run in process.
    pub enabled: Option<bool>,
    /// Worker processes (a number).
    pub max_workers: Option<u32>,
    /// Slots beyond one per worker: chunks finished and waiting for the writer, or about to
    /// be dispatched.
    pub chunk_prefetch: Option<u32>,
    /// Warm spare worker processes.
    pub spare_workers: Option<u32>,
    pub memory_limit_per_worker: Option<SizeValue>,
    pub memory_soft_fraction: Option<f64>,
    pub memory_poll: Option<String>,
    pub min_free_memory: Option<SizeValue>,
    pub max_attempts: Option<u32>,
    pub task_timeout: Option<String>,
    /// The least time limit a percentage `task_timeout` gives.
    pub task_timeout_floor: Option<String>,
    /// How long a new worker may take to say hello.
    pub start_timeout: Option<String>,
    #[serde(default)]
    pub queue_sizes: FileQueueSizes,
}

/// A size in the file: a string with a unit (`"512MiB"`) or a bare number, as a TOML
/// integer or string, meaning MiB (the seed's `memory_limit_per_worker = 512`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Int(i64),
    Text(String),
}

impl SizeValue {
    pub fn bytes(&self) -> Result<u64, String> {
        match self {
            SizeValue::Int(n) if *n > 0 && *n < (1 << 43) => Ok((*n as u64) << 20),
            SizeValue::Int(n) => Err(format!("{n} is not a positive size in MiB")),
            SizeValue::Text(s) => units::parse_size(s),
        }
    }
}

/// The seed's queue sizes. Here one slot ring bounds both queues: they are validated and
/// shown, and cap the ring (`chunk_queue`) and the chunks waiting for the writer
/// (`result_queue`, through the prefetch).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQueueSizes {
    pub chunk_queue: Option<u32>,
    pub result_queue: Option<u32>,
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<FileRoot, CoordError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CoordError::BadInput(format!("config file '{}': {e}", path.display())))?;
    let root: FileRoot = toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_string();
        CoordError::BadInput(format!("config file '{}': {msg}", path.display()))
    })?;
    let m = &root.resampling.multiprocessing;
    let bad = |key: &str, why: String| {
        CoordError::BadInput(format!("config file '{}': {key}: {why}", path.display()))
    };
    if let Some(s) = &m.memory_limit_per_worker {
        s.bytes().map_err(|e| bad("memory_limit_per_worker", e))?;
    }
    if let Some(s) = &m.min_free_memory {
        s.bytes().map_err(|e| bad("min_free_memory", e))?;
    }
    if let Some(s) = &m.task_timeout_floor {
        units::parse_duration(s).map_err(|e| bad("task_timeout_floor", e))?;
    }
    if let Some(s) = &m.start_timeout {
        units::parse_duration(s).map_err(|e| bad("start_timeout", e))?;
    }
    if let Some(s) = &m.memory_poll {
        units::parse_duration(s).map_err(|e| bad("memory_poll", e))?;
    }
    if let Some(s) = &m.task_timeout {
        units::parse_timeout_arg(s).map_err(|e| bad("task_timeout", e))?;
    }
    if let Some(f) = m.memory_soft_fraction {
        if !(f > 0.0 && f <= 1.0) {
            return Err(bad("memory_soft_fraction", format!("{f} is not in (0, 1]")));
        }
    }
    if m.max_attempts == Some(0) {
        return Err(bad("max_attempts", "must be at least 1".into()));
    }
    for (k, v) in [
        ("chunk_queue", m.queue_sizes.chunk_queue),
        ("result_queue", m.queue_sizes.result_queue),
    ] {
        if v == Some(0) {
            return Err(bad(
                &format!("queue_sizes.{k}"),
                "must be at least 1".into(),
            ));
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_keys_parse_and_unknown_keys_are_named() {
        let ok: FileRoot = toml::from_str(
            r#"
[resampling.multiprocessing]
enabled = true
max_workers = 50
chunk_prefetch = 4
memory_limit_per_worker = "512MiB"
[resampling.multiprocessing.queue_sizes]
chunk_queue = 100
result_queue = 50
"#,
        )
        .unwrap();
        assert_eq!(ok.resampling.multiprocessing.max_workers, Some(50));
        let bare: FileRoot =
            toml::from_str("[resampling.multiprocessing]\nmemory_limit_per_worker = 512\nmin_free_memory = \"64\"\n")
                .unwrap();
        let m = &bare.resampling.multiprocessing;
        assert_eq!(
            m.memory_limit_per_worker.as_ref().unwrap().bytes(),
            Ok(512 << 20)
        );
        assert_eq!(m.min_free_memory.as_ref().unwrap().bytes(), Ok(64 << 20));
        let err = toml::from_str::<FileRoot>("[resampling.multiprocessing]\nmax_wrokers = 3\n")
            .unwrap_err();
        assert!(err.message().contains("max_wrokers"), "{}", err.message());
    }
}

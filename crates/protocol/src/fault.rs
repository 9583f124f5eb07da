//! Fault injection: a documented testing and demo aid that makes a worker misbehave on a
//! given chunk, so supervision can be proven by real faults rather than by reading code.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// What the worker does instead of (or on top of) computing the chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FaultKind {
    /// `abort()`: SIGABRT.
    Crash,
    /// A real invalid memory access: SIGSEGV.
    Segv,
    /// `exit(42)` without answering.
    Exit,
    /// Never answers (sleeps forever).
    Hang,
    /// Sleeps for a while (10 s), then answers: a late answer after a timeout.
    Slow,
    /// Writes bytes that are not a message.
    Garbage,
    /// Allocates and touches memory until the allocator or the kernel stops it.
    Oom,
    /// Leaks 64 MiB of touched private memory, then computes the chunk normally.
    Leak,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Crash,
        FaultKind::Segv,
        FaultKind::Exit,
        FaultKind::Hang,
        FaultKind::Slow,
        FaultKind::Garbage,
        FaultKind::Oom,
        FaultKind::Leak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::Segv => "segv",
            FaultKind::Exit => "exit",
            FaultKind::Hang => "hang",
            FaultKind::Slow => "slow",
            FaultKind::Garbage => "garbage",
            FaultKind::Oom => "oom",
            FaultKind::Leak => "leak",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `KIND:CHUNK[:TIMES]` from the command line. `CHUNK` may be `*` for every chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// `None` means every chunk.
    pub chunk: Option<u32>,
    /// Misbehave on the first `times` attempts; `None` means every attempt.
    pub times: Option<u32>,
}

impl FaultSpec {
    /// Whether this fault fires for `chunk` on attempt number `attempt` (1-based).
    pub fn fires(&self, chunk: u32, attempt: u32) -> bool {
        self.chunk.is_none_or(|c| c == chunk) && self.times.is_none_or(|t| attempt <= t)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad fault spec '{spec}': {why} (expected KIND:CHUNK[:TIMES], KIND one of crash, segv, exit, hang, slow, garbage, oom, leak)")]
pub struct FaultParseError {
    spec: String,
    why: &'static str,
}

impl FromStr for FaultSpec {
    type Err = FaultParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| FaultParseError {
            spec: s.to_string(),
            why,
        };
        let mut parts = s.split(':');
        let kind_s = parts.next().unwrap_or_default();
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| k.name() == kind_s)
            .ok_or_else(|| err("unknown kind"))?;
        let chunk = match parts.next() {
            None => return Err(err("missing chunk index")),
            Some("*") => None,
            Some(c) => Some(c.parse().map_err(|_| err("chunk is not a number"))?),
        };
        let times = match parts.next() {
            None => None,
            Some(t) => match t.parse() {
                Ok(0) | Err(_) => return Err(err("times is not a positive number")),
                Ok(n) => Some(n),
            },
        };
        if parts.next().is_some() {
            return Err(err("too many fields"));
        }
        Ok(FaultSpec { kind, chunk, times })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_fires() {
        let f: FaultSpec = "crash:3:1".parse().unwrap();
        assert_eq!(f.kind, FaultKind::Crash);
        assert!(f.fires(3, 1));
        assert!(!f.fires(3, 2));
        assert!(!f.fires(2, 1));
        let g: FaultSpec = "hang:*".parse().unwrap();
        assert!(g.fires(0, 9) && g.fires(7, 1));
        for bad in ["", "boom:1", "crash", "crash:x", "crash:1:0", "crash:1:2:3"] {
            assert!(bad.parse::<FaultSpec>().is_err(), "{bad}");
        }
    }
}

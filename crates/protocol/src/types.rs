//! The ids every message carries: tasks, attempts, slots.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A chunk's index in the plan. Deterministic: the same input and options give the same ids,
/// whatever the run order (so shards and fault injection can name chunks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskId(pub u32);

/// 1-based attempt number of a chunk. Replies are tagged with task and attempt, so a late
/// reply from a killed worker is recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attempt(pub u32);

/// Index of a slot in the shared ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SlotId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

//! The dispatch benchmark's kernel: computes nothing, touches the first and last byte of its
//! input region (proving the worker sees the coordinator's bytes without a copy) and answers.

use protocol::TaskStats;
use runtime::{ChunkKernel, KernelError, Slot};

pub struct Noop;

impl ChunkKernel for Noop {
    type Setup = ();
    type Chunk = ();

    fn open(_: ()) -> Result<Self, KernelError> {
        Ok(Noop)
    }

    fn run(&mut self, _: (), slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        let touched = match (slot.input.first(), slot.input.last()) {
            (Some(a), Some(b)) => *a as u64 + *b as u64,
            _ => 0,
        };
        Ok(TaskStats {
            valid_pixels: touched,
            ..TaskStats::default()
        })
    }
}

//! The block-aggregation kernel as a process serves it: a small cache of open inputs, so
//! that one worker serves every raster of a batch (`coordinator resample IN1 IN2 ...
//! --out-dir DIR`) without being respawned between files, and without reopening a raster
//! for each of its chunks.
//!
//! The setup lists the run's inputs; each chunk names one by index. The first input is
//! opened at setup (so a setup that cannot open it fails, as before batches existed); the
//! others on the first chunk that names them. At most [`CAPACITY`] stay open, the least
//! recently used closed first: chunks arrive in input order, so a worker rarely holds more
//! than the input it finishes and the one it starts.
//!
//! It does not read or aggregate (that is [`crate::exec`]) and does not decide the order
//! of chunks (the engine does).

use std::path::Path;

use protocol::TaskStats;
use runtime::{ChunkKernel, KernelError, Slot};

use crate::exec::{BlockAggChunk, BlockAggSetup, ChunkRunner};

/// Open inputs a process keeps: each holds a GDAL dataset (its block cache is bounded by
/// the worker's `GDAL_CACHEMAX`, shared by all) and, for the native decoder, a file
/// descriptor and the parsed directory.
pub const CAPACITY: usize = 4;

/// The block-aggregation kernel over the run's inputs, with its cache of open ones.
pub struct BlockAggKernel {
    setup: BlockAggSetup,
    /// Most recently used last.
    open: Vec<(u32, ChunkRunner)>,
    /// Opens not yet reported in an answer's stats.
    unreported_opens: u32,
}

impl BlockAggKernel {
    /// The runner for input `index`, opened if the cache does not hold it.
    fn runner(&mut self, index: u32) -> Result<&ChunkRunner, KernelError> {
        if let Some(at) = self.open.iter().position(|(i, _)| *i == index) {
            let hit = self.open.remove(at);
            self.open.push(hit);
        } else {
            let input = self.setup.inputs.get(index as usize).ok_or_else(|| {
                KernelError::new(format!(
                    "the chunk names input {index}, the setup has {}",
                    self.setup.inputs.len()
                ))
            })?;
            let runner =
                ChunkRunner::open(Path::new(&input.path), &input.bands, self.setup.decoder)
                    .map_err(KernelError::new)?;
            self.unreported_opens += 1;
            if self.open.len() >= CAPACITY {
                // Dropping the runner closes its dataset.
                self.open.remove(0);
            }
            self.open.push((index, runner));
        }
        let (_, runner) = self.open.last().expect("pushed above");
        Ok(runner)
    }

    /// Indexes of the inputs held open, least recently used first.
    pub fn cached(&self) -> Vec<u32> {
        self.open.iter().map(|(i, _)| *i).collect()
    }
}

impl ChunkKernel for BlockAggKernel {
    type Setup = BlockAggSetup;
    type Chunk = BlockAggChunk;

    fn open(setup: BlockAggSetup) -> Result<Self, KernelError> {
        if setup.inputs.is_empty() {
            return Err(KernelError::new("the setup lists no input"));
        }
        let mut k = BlockAggKernel {
            setup,
            open: Vec::new(),
            unreported_opens: 0,
        };
        k.runner(0)?;
        Ok(k)
    }

    fn run(&mut self, chunk: BlockAggChunk, slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        let runner = self.runner(chunk.input)?;
        let mut stats = runner
            .run(&chunk, slot.input, slot.output)
            .map_err(KernelError::new)?;
        stats.opened_inputs = std::mem::take(&mut self.unreported_opens);
        Ok(stats)
    }
}

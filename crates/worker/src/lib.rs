//! The block-aggregation job's compute side: its value types, the kernels, GDAL window reads
//! into shared slots, and [`WorkerKernel`], what the `worker` binary serves.
//!
//! The coordinator links this library too: its in-process lanes run the very same kernels
//! through the runtime, so a run without workers and a run through the pool produce the same
//! bytes. This crate does not spawn, schedule or supervise anything, and speaks no protocol
//! (the runtime does).
//!
//! Modules: `types` (windows, sample types, aggregations), `kernel` (the aggregations,
//! proptested against a naive reference; `BlockRows`, the same fed tile by tile), `fused` (block
//! aggregation straight from the native decoder's tiles), `read` (window reads: GDAL's, and the native decoder's for local GeoTIFFs), `choice` (which decoder
//! reads, and why), `exec` (the
//! block-aggregation kernel over one open raster), `cache` (the [`runtime::ChunkKernel`] a process
//! serves: the run's inputs, a few kept open), `noop` (the dispatch benchmark's kernel),
//! `map` (users' own kernels: the `map` job's types, the f64 window read with its validity
//! mask, and C ABI plug-ins loaded in worker processes only), `ffi` (every `unsafe` of the
//! crate: a band's type as the running GDAL names it, the plug-ins' C ABI, the kernel's AVX2
//! row loop).

pub mod cache;
pub mod choice;
pub mod exec;
pub mod ffi;
pub mod fused;
pub mod kernel;
pub mod map;
pub mod noop;
pub mod read;
pub mod types;
pub mod weighted;

use protocol::TaskStats;
use runtime::{ChunkKernel, KernelError, Slot};
use serde::{Deserialize, Serialize};

pub use types::{Agg, Axis, Decoder, Footprint, KernelSpec, SampleType, Window};

/// The kernels the `worker` binary can run; the setup picks one for the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerSetup {
    BlockAgg(exec::BlockAggSetup),
    Noop,
    /// A C ABI plug-in (`MapSetup::lib`).
    Map(map::MapSetup),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkerChunk {
    BlockAgg(exec::BlockAggChunk),
    Noop,
    Map(map::MapChunk),
}

/// What the `worker` binary serves: one of the kernels above, chosen by the setup.
pub enum WorkerKernel {
    BlockAgg(cache::BlockAggKernel),
    Noop(noop::Noop),
    Map(Box<map::PluginKernel>),
}

impl ChunkKernel for WorkerKernel {
    type Setup = WorkerSetup;
    type Chunk = WorkerChunk;

    fn open(setup: WorkerSetup) -> Result<Self, KernelError> {
        Ok(match setup {
            WorkerSetup::BlockAgg(s) => WorkerKernel::BlockAgg(ChunkKernel::open(s)?),
            WorkerSetup::Noop => WorkerKernel::Noop(noop::Noop::open(())?),
            WorkerSetup::Map(s) => WorkerKernel::Map(Box::new(ChunkKernel::open(s)?)),
        })
    }

    /// GDAL's drivers, registered once in the fork server rather than in every worker (no
    /// dataset is opened, no thread started).
    fn preload() {
        gdal::DriverManager::register_all();
        // Registered: the first open in a worker must not register them again.
        gdal::DriverManager::prevent_auto_registration();
    }

    fn run(&mut self, chunk: WorkerChunk, slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        match (self, chunk) {
            (WorkerKernel::BlockAgg(k), WorkerChunk::BlockAgg(c)) => ChunkKernel::run(k, c, slot),
            (WorkerKernel::Noop(k), WorkerChunk::Noop) => k.run((), slot),
            (WorkerKernel::Map(k), WorkerChunk::Map(c)) => ChunkKernel::run(k.as_mut(), c, slot),
            _ => Err(KernelError::new(
                "the chunk is for another kernel than this process's setup",
            )),
        }
    }
}

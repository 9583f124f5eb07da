//! The worker runtime, whatever the job: the [`ChunkKernel`] trait a job implements, the
//! worker process's loop ([`serve`]), and the in-process executor ([`Executor`]), so that a
//! chunk runs through exactly the same code in a worker process and inside the coordinator.
//!
//! A user's kernel is a crate that implements [`ChunkKernel`] and a binary whose `main` is
//! `runtime::serve::<MyKernel>()`. The runtime maps the shared segment, speaks the protocol
//! (hello, setup, tasks), injects test faults, and answers; the kernel only computes.
//!
//! It does not spawn, schedule or supervise anything (that is the engine), and knows nothing
//! of rasters (that is the job).
//!
//! Modules: `serve` (the worker process's loop: connect, hello, setup, tasks),
//! `fork_server` (the same binary as a template that forks workers), `os` (the runtime's
//! only `unsafe`: the inherited descriptor, SIGSEGV's default action, the double fork), [`fault`]
//! (fault injection: misbehave for real, for the tests and the chaos script); this file
//! holds the trait and the `Executor` interface.

pub mod fault;
mod fork_server;
pub mod os;
mod serve;

use serde::de::DeserializeOwned;

pub use fork_server::serve_forked;
pub use protocol::TaskStats;
pub use serve::serve;

/// Why a kernel could not set up or compute a chunk. A failed chunk is retried, split or
/// quarantined by the engine; the process lives on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KernelError(pub String);

impl KernelError {
    pub fn new(msg: impl std::fmt::Display) -> KernelError {
        KernelError(msg.to_string())
    }
}

/// The slot a chunk is computed in: its input region (the kernel may use it as scratch, or
/// read the chunk into it) and its output region (the kernel fills it; the job's sink reads
/// it). Both are shared memory, given to this computation alone.
pub struct Slot<'a> {
    pub input: &'a mut [u8],
    pub output: &'a mut [u8],
}

/// A job's computation, run in worker processes and in process alike.
pub trait ChunkKernel: Sized {
    /// Sent once to every process (decoded with the protocol's codec): what to open.
    type Setup: DeserializeOwned;
    /// Sent with every task: which chunk.
    type Chunk: DeserializeOwned;

    fn open(setup: Self::Setup) -> Result<Self, KernelError>;

    /// Loads, once, in the fork server before it forks any worker, what every process of
    /// this kernel would load at its setup (a library's registry: GDAL's drivers), so that
    /// each forked worker finds it done. It must open no file and start no thread: the
    /// fork server forks from a single thread, and its children share nothing by accident.
    fn preload() {}

    fn run(&mut self, chunk: Self::Chunk, slot: Slot<'_>) -> Result<TaskStats, KernelError>;
}

/// A kernel behind encoded payloads: one interface for both executors (a worker process's
/// loop and an in-process lane).
pub trait Executor: Send {
    fn run(&mut self, payload: &[u8], slot: Slot<'_>) -> Result<TaskStats, KernelError>;
}

struct Typed<K>(K);

impl<K: ChunkKernel + Send> Executor for Typed<K> {
    fn run(&mut self, payload: &[u8], slot: Slot<'_>) -> Result<TaskStats, KernelError> {
        let chunk: K::Chunk = protocol::decode(payload)
            .map_err(|e| KernelError::new(format!("the chunk's payload does not decode: {e}")))?;
        self.0.run(chunk, slot)
    }
}

/// In the coordinator, before its in-process lanes run kernels in the shared ring at
/// `ring` (its address range): a SIGSEGV on the ring (a guard page: a kernel wrote off its
/// slot) is named on stderr before the process dies of it. Faults elsewhere go to the
/// handler that was there before.
pub fn name_guard_faults_in_process(ring: std::ops::Range<usize>) -> std::io::Result<()> {
    os::watch_ring(ring, true).map_err(std::io::Error::from)
}

/// Opens kernel `K` from an encoded setup.
pub fn open<K: ChunkKernel + Send + 'static>(
    setup: &[u8],
) -> Result<Box<dyn Executor>, KernelError> {
    let setup: K::Setup = protocol::decode(setup)
        .map_err(|e| KernelError::new(format!("the setup does not decode: {e}")))?;
    Ok(Box::new(Typed(K::open(setup)?)))
}

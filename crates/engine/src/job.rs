//! What a job gives the engine: how big each chunk's slot regions are and the kernel's
//! payload for it, how to split a failing chunk, and a sink for finished outputs. The engine
//! never looks inside a payload or an output.

use protocol::TaskId;

/// One chunk as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSpec {
    /// Bytes of the slot's input region the kernel may use.
    pub input_len: u64,
    /// Bytes of the slot's output region the kernel fills and the sink reads.
    pub output_len: u64,
    /// Input bytes the chunk stands for (progress and throughput).
    pub weight: u64,
}

/// A job's side of a run: the plan's chunks are tasks `0..plan_len`; parts of split chunks
/// follow, in the order the job appended them.
pub trait Job {
    type Sink: ChunkSink;

    /// The chunk's slot sizes: cheap, asked often.
    fn chunk(&self, task: TaskId) -> ChunkSpec;

    /// The kernel's `Chunk` for `task`, encoded with the protocol's codec: asked once per
    /// attempt.
    fn payload(&self, task: TaskId) -> Vec<u8>;

    /// Splits `task` into parts appended after the last task, and returns how many (0: it
    /// cannot be split, and will be quarantined).
    fn split(&mut self, task: TaskId) -> u32;

    /// What the sink needs to place `task`'s output.
    fn write_item(&self, task: TaskId) -> <Self::Sink as ChunkSink>::Item;

    /// What the sink needs to finish, once every task is written; `quarantined` lists the
    /// tasks whose output is the sink's "nothing" (they were written with no output).
    fn close_item(&self, quarantined: &[TaskId]) -> <Self::Sink as ChunkSink>::Close;
}

/// A sink's failure as it crosses the engine: the job's own error, boxed with its causes
/// (the job may downcast it back), or the engine's text (a slot that cannot be leased, a
/// panic in the sink).
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Takes finished chunks, on a thread of its own, one at a time.
pub trait ChunkSink: Send + 'static {
    type Item: Send + 'static;
    type Close: Send + 'static;
    type Closed: Send + 'static;
    /// Why a write or the close failed, its causes kept.
    type Error: std::error::Error + Send + Sync + 'static;

    /// `output` is the slot's output region, or `None` for a quarantined chunk.
    fn write(
        &mut self,
        task: TaskId,
        item: Self::Item,
        output: Option<&[u8]>,
    ) -> Result<(), Self::Error>;

    fn close(self, close: Self::Close) -> Result<Self::Closed, Self::Error>;
}

//! The supervision engine, whatever the job: it keeps worker processes busy, moves chunks
//! through the shared slot ring, and keeps every promise of a run (every chunk ends exactly
//! once; crashes, hangs and memory are handled; nothing outlives the run).
//!
//! It knows tasks, attempts, slots and processes, never windows or bands: a [`job::Job`]
//! describes each chunk (its slot sizes and an opaque payload for the kernel), splits a
//! failing one, and a [`job::ChunkSink`] takes finished outputs.
//!
//! Modules:
//! - `sched`: the scheduling decisions, a state machine with no I/O (events in, actions out).
//! - `supervisor`: the event loop that feeds the scheduler and carries out its actions.
//! - `pool`: worker processes (spawn, handshake and setup, channels, exits).
//! - `inproc`: the in-process lanes (the same kernels, through the runtime).
//! - `sink`: the thread that hands finished slots to the job's sink.
//! - `observe`: the run's events as they happen, and the JSON-lines stream (`--events`).
//! - `memory`: sampling worker memory and the machine's available memory.
//! - `progress`: the progress bar (hidden when stderr is not a terminal).
//! - `os`: fork/exec setup, signals, /proc, limits: the `unsafe` of supervision.

pub mod inproc;
pub mod job;
pub mod memory;
pub mod observe;
pub mod os;
pub mod pool;
pub mod progress;
pub mod sched;
pub mod sink;
pub mod supervisor;

pub use job::{ChunkSink, ChunkSpec, Job};
pub use supervisor::{run, EngineConfig, EngineError, RunRecord};

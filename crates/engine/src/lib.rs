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
//! - `supervisor`: feeds the scheduler with events and carries out its actions.
//! - `event_loop`: the supervisor's one wake-up per message: worker channels in one epoll
//!   set, the coordinator's threads on a queue with a doorbell.
//! - `wire`: a worker's raw replies through a receiver that can join that set.
//! - `pool`: worker processes (spawn, handshake and setup, channels, exits).
//! - `fork_server`: the run's template worker that forks each worker (GDAL loaded once).
//! - `inproc`: the in-process lanes (the same kernels, through the runtime).
//! - `sink`: the thread that hands finished slots to the job's sink.
//! - `observe`: the run's events as they happen, and the JSON-lines stream (`--events`).
//! - `memory`: sampling worker memory and the machine's available memory.
//! - `progress`: the progress bar (hidden when stderr is not a terminal).
//! - `interrupt`: SIGINT, SIGTERM and SIGHUP for the whole process: recorded once, checked
//!   by every long step.
//! - `os`: fork/exec setup, signals, /proc, limits: the `unsafe` of supervision.

pub mod event_loop;
pub mod fork_server;
pub mod inproc;
pub mod interrupt;
pub mod job;
pub mod memory;
pub mod observe;
pub mod os;
pub mod pool;
pub mod progress;
pub mod sched;
pub mod sink;
pub mod supervisor;
pub mod wire;

pub use job::{ChunkSink, ChunkSpec, Job, SinkError};
pub use supervisor::{run, EngineConfig, EngineError, RunRecord, Spawn};

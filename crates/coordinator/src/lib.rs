//! The coordinator: plans chunks, supervises a pool of `worker` processes through shared
//! memory slots and bincode control messages, runs chunks in process when needed, and writes
//! one georeferenced GeoTIFF.
//!
//! Module map: [`raster`] (input validation), [`plan`] (chunk windows), [`sched`] (the
//! decisions, no I/O), [`run`] (the supervisor), [`pool`] (worker processes), [`inproc`]
//! (in-process executor), [`writer`] (the output), [`memory`] (sampling), [`os`] (unsafe and
//! Unix specifics), [`report`], [`progress`], [`synth`], [`cli`] (schema, settings table, resolution), [`units`], [`stdio`] (output that
//! never panics on a closed pipe).

pub mod bench;
pub mod budget;
pub mod cli;
pub mod error;
pub mod inproc;
pub mod memory;
pub mod os;
pub mod output;
pub mod plan;
pub mod pool;
pub mod progress;
pub mod raster;
pub mod report;
pub mod run;
pub mod sched;
pub mod stdio;
pub mod synth;
pub mod units;
pub mod writer;

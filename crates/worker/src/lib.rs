//! The compute side: block-aggregation kernels, GDAL window reads into shared slots, the
//! shared segment mapping, and the worker process's main loop.
//!
//! The coordinator links this library too: its in-process executor calls the very same
//! [`exec::ChunkRunner`] as the worker binary, so a run without workers and a run through the
//! pool produce the same bytes. This crate does not spawn, schedule or supervise anything.

pub mod exec;
pub mod fault;
pub mod kernel;
pub mod process;
pub mod read;
pub mod shm;

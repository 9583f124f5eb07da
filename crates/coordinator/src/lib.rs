//! The coordinator of the block-aggregation job: inspects the input, plans chunks, and writes
//! one georeferenced GeoTIFF, running every chunk through the supervision engine (`engine`)
//! and the worker runtime (`runtime`), whose `worker` processes run this job's kernels
//! (`worker`).
//!
//! Module map: [`raster`] (input validation), [`plan`] (chunk windows and splitting),
//! [`run`] (the job: prepare, wire the engine, commit, report), [`writer`] (the output, as
//! the engine's sink), [`output`] (staging: checks, lock, no-clobber commit), [`budget`]
//! (the memory arithmetic), [`bench`](mod@bench) (the dispatch benchmark, a second job), [`report`],
//! [`synth`], [`cli`] (schema, settings table, resolution), [`units`], [`os`] (GDAL error state, rename, signals),
//! [`stdio`] (output that never panics on a closed pipe), [`decoder`] (which decoder `plan` says will read). `sched` is the engine's, re-exported.

pub mod bench;
pub mod budget;
pub mod cli;
pub mod decoder;
pub mod error;
pub mod os;
pub mod output;
pub mod plan;
pub mod raster;
pub mod report;
pub mod run;
pub mod stdio;
pub mod synth;
pub mod units;
pub mod writer;

pub use engine::sched;

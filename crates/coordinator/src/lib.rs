//! The coordinator of the block-aggregation job: inspects the input, plans chunks, and writes
//! one georeferenced GeoTIFF, running every chunk through the supervision engine (`engine`)
//! and the worker runtime (`runtime`), whose `worker` processes run this job's kernels
//! (`worker`).
//!
//! Module map: [`raster`] (input validation), [`plan`] (chunk windows and splitting),
//! [`run`] (the job: prepare, wire the engine, commit, report), [`writer`] (the output, as
//! the engine's sink), [`cog`] (the exact pyramid and the COG copy, before the commit;
//! [`pyramid`] derives a level from the one below where that is exact),
//! [`output`] (staging: checks, lock, no-clobber commit), [`journal`] (the chunk
//! journal's format: `--resume`, shards), [`shard`] (`--shard`), [`merge`] (shards into one output),
//! [`budget`]
//! (the memory arithmetic), [`bench`](mod@bench) (the dispatch benchmark, a second job),
//! [`bench_writer`] (the writer alone), [`report`] (the JSON report) and [`html`] (the same as
//! a page), [`events`] (`--events`),
//! [`synth`], [`cli`] (schema, settings table, resolution), [`units`], [`os`] (GDAL error state, rename, signals),
//! [`stdio`] (output that never panics on a closed pipe), [`decoder`] (which decoder `plan` says will read). `sched` is the engine's, re-exported.

pub mod bench;
pub mod bench_writer;
pub mod budget;
pub mod cli;
pub mod cog;
pub mod decoder;
pub mod error;
pub mod events;
pub mod fidelity;
pub mod html;
pub mod journal;
pub mod merge;
pub mod os;
pub mod output;
pub mod plan;
pub mod pyramid;
pub mod raster;
pub mod report;
pub mod run;
pub mod shard;
pub mod stdio;
pub mod synth;
pub mod units;
pub mod writer;

pub use engine::sched;

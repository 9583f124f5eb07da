//! The coordinator of the block-aggregation job: inspects the input, plans chunks, and writes
//! one georeferenced GeoTIFF, running every chunk through the supervision engine (`engine`)
//! and the worker runtime (`runtime`), whose `worker` processes run this job's kernels
//! (`worker`).
//!
//! Module map, along a chunk's journey: [`commands`] (one function per subcommand, called
//! by `main.rs`) → [`cli`] (schema, settings table, resolution into the run's config) → [`job`] (the input inspected, its metadata carried, the chunk plan, the
//! memory arithmetic, the decoder) → [`run`] (the run as phases: prepare, stage, pool up,
//! engine, finish; single runs and batches) → [`output`] (staging: checks, lock, no-clobber
//! commit; the writer, the COG copy and the exact pyramid) → [`durable`] (the chunk journal,
//! shards, merge) → [`observe`] (the JSON report, the page, the event stream). Beside them:
//! [`tools`] (the dispatch and writer benchmarks, `synth`), [`error`] (exit codes decided in
//! one place), [`os`] (GDAL error state, rename, signals), [`stdio`] (output that never
//! panics on a closed pipe), [`units`]. `sched` is the engine's, re-exported.

pub mod cli;
pub mod commands;
pub mod durable;
pub mod error;
pub mod job;
pub mod observe;
pub mod os;
pub mod output;
pub mod run;
pub mod stdio;
pub mod tools;
pub mod units;

// The modules by their own names, wherever they sit in the map above.
pub use durable::{journal, merge, shard};
pub use job::{budget, decoder, fidelity, grid, plan, raster};
pub use observe::{events, html, report};
pub use output::{cog, pyramid, writer};
pub use tools::{bench, bench_writer, synth};

pub use engine::sched;

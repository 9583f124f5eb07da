//! The end-to-end tests: one test binary (as uv's `crates/uv/tests/it/`), one module per
//! area, the shared helpers in [`common`] (the real binaries, rasters written with GDAL
//! directly, a naive reference, outputs read back) and [`compare`] (two rasters the same).
//! Each module runs the real `coordinator` and `worker` binaries.

mod common;
mod compare;

mod batch;
mod breaker;
mod cog;
mod config_yaml;
mod corpus;
mod decoder;
mod deploy;
mod e2e;
mod fidelity;
mod fork_server;
mod fuzz;
mod gdal_view;
mod journal;
mod map;
mod memory;
mod messages;
mod observe;
mod output_safety;
mod quarantine;
mod readme;
mod robustness;
mod signals;
mod signed;
mod slurm;
mod speculation;
mod supervision;
mod target_grid;
mod whole_tiles;

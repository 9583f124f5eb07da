//! The command line: the clap schema ([`schema`]), the layered settings with one table row
//! per setting ([`settings`](mod@settings)), and their resolution into the run's config ([`resolve`](mod@resolve)).
//! Nothing here runs anything.

pub mod batch;
pub mod resolve;
pub mod schema;
pub mod settings;

pub use batch::BatchSpec;
pub use resolve::{resolve, resolve_map, MapSpec, ResampleConfig};
pub use schema::{
    AggArg, BenchArgs, Cli, Command, JobArgs, MapArgs, PlanArgs, ResampleArgs, SynthArgs, EXAMPLES,
    MAP_EXAMPLES,
};
pub use settings::{settings, PoolArgs, Settings, Workers};

//! The command line: the clap schema ([`schema`]), the layered settings with one table row
//! per setting ([`settings`](mod@settings)) read from flags, the environment and a TOML or YAML
//! config file ([`config_file`]), their values' parsers ([`values`]), and their resolution
//! ([`resolve`](mod@resolve)) into the run's config, a [`RunConfig`] of parts ([`config`]).
//! Nothing here runs anything.

pub mod batch;
pub mod config;
pub mod config_file;
pub mod creation;
pub mod resolve;
pub mod schema;
pub mod settings;
pub mod values;

pub use batch::BatchSpec;
pub use config::{
    Durability, Io, JobConfig, Kernel, MapSpec, Observation, OneRun, OutputConfig, PoolConfig,
    RunConfig, Target,
};
pub use creation::CreationOptions;
pub use resolve::{resolve, resolve_map, resolve_plan};
pub use schema::{
    AggArg, BenchArgs, BenchWriterArgs, Cli, Command, CompletionsArgs, JobArgs, MapArgs, PlanArgs,
    ReportArgs, ResampleArgs, Shell, SynthArgs, EXAMPLES, MAP_EXAMPLES,
};
pub use settings::{settings, PoolArgs, Settings, Workers};

/// What `--version` prints: the tool's version, the worker protocol's, and the GDAL this
/// binary runs with.
pub fn version_text() -> String {
    format!(
        "{} (protocol {}, GDAL {})",
        env!("CARGO_PKG_VERSION"),
        protocol::PROTOCOL_VERSION,
        gdal::version::version_info("RELEASE_NAME")
    )
}

/// The clap command, with the run-time `--version` text: what `main` parses with, and what
/// the completion scripts and the man page are generated from.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    // clap keeps the text for the life of the process: one small leak, once.
    let version: &'static str = Box::leak(version_text().into_boxed_str());
    Cli::command().version(version)
}

/// `coordinator completions SHELL`: the script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    use clap_complete::{generate, shells};
    let mut cmd = command();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => generate(shells::Bash, &mut cmd, "coordinator", &mut out),
        Shell::Zsh => generate(shells::Zsh, &mut cmd, "coordinator", &mut out),
        Shell::Fish => generate(shells::Fish, &mut cmd, "coordinator", &mut out),
    }
    out
}

/// `coordinator man`: the man page, in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command()).render(&mut out)?;
    Ok(out)
}

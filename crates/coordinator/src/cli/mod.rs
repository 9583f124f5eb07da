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

/// The variable naming the process whose death stops this one (the Python package sets it to
/// its own PID; see `os::term_with_parent`).
pub const PARENT_PID: &str = "BLOCKSUM_PARENT_PID";

/// The PID in [`PARENT_PID`] of the environment `env`: `None` when it is unset or empty (as
/// clap reads the other variables), a usage error when it is not a process id.
pub fn parent_pid(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<i32>, crate::error::CoordError> {
    match env(PARENT_PID) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => match v.trim().parse::<i32>() {
            Ok(pid) if pid > 0 => Ok(Some(pid)),
            _ => Err(crate::error::CoordError::Usage(format!(
                "{PARENT_PID}='{v}' is not a process id (a whole number >= 1)"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parent_pid_is_a_positive_whole_number_or_unset() {
        let with = |v: &'static str| move |k: &str| (k == PARENT_PID).then(|| v.to_string());
        assert_eq!(parent_pid(&|_| None).unwrap(), None);
        assert_eq!(parent_pid(&with("")).unwrap(), None);
        assert_eq!(parent_pid(&with("4242")).unwrap(), Some(4242));
        assert_eq!(parent_pid(&with(" 7\n")).unwrap(), Some(7));
        for bad in ["abc", "0", "-5", "12x", "99999999999"] {
            let e = parent_pid(&with(bad)).unwrap_err();
            assert_eq!(e.exit_code(), protocol::exit::USAGE, "{bad}");
            assert_eq!(
                e.to_string(),
                format!("BLOCKSUM_PARENT_PID='{bad}' is not a process id (a whole number >= 1)")
            );
        }
    }
}

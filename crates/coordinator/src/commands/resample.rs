//! `coordinator resample` and `coordinator map`: the run, and its summary on stderr.

use crate::{cli, error::CoordError, run, stdio::eline};

pub(super) fn resample(cli: &cli::Cli, r: &cli::ResampleArgs) -> Result<i32, CoordError> {
    summarise(cli, &cli::resolve(cli, &r.job, r)?.0)
}

pub(super) fn map(cli: &cli::Cli, m: &cli::MapArgs) -> Result<i32, CoordError> {
    summarise(cli, &cli::resolve_map(cli, m)?.0)
}

fn summarise(cli: &cli::Cli, cfg: &cli::RunConfig) -> Result<i32, CoordError> {
    let summary = run::resample(cfg)?;
    if !cli.quiet {
        eline(&summary.message);
    }
    Ok(summary.exit_code)
}

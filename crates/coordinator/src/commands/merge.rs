//! `coordinator merge OUTPUT`: one output from its shards' journals.

use crate::{cli, error::CoordError, merge, stdio::eline};

pub(super) fn merge(cli: &cli::Cli, m: &cli::schema::MergeArgs) -> Result<i32, CoordError> {
    let line = merge::merge(&merge::MergeConfig {
        output: m.output.clone(),
        vrt: m.vrt,
        overwrite: m.overwrite,
        keep_shards: m.keep_shards || m.vrt,
    })?;
    if !cli.quiet {
        eline(&line);
    }
    Ok(0)
}

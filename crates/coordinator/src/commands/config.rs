//! `coordinator config`: the resolved settings and where each value came from.

use crate::{cli, error::CoordError, stdio::out};

pub(super) fn config(cli: &cli::Cli, pool: &cli::PoolArgs) -> Result<i32, CoordError> {
    let st = cli::settings(cli.config.as_deref(), pool)?;
    engine::interrupt::check()?;
    out(&st.describe());
    Ok(0)
}

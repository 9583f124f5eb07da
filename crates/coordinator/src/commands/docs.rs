//! `coordinator completions SHELL` and `coordinator man`: the command line's own docs.

use super::out_bytes;
use crate::{cli, error::CoordError};

pub(super) fn completions(c: &cli::CompletionsArgs) -> Result<i32, CoordError> {
    out_bytes(&cli::completions(c.shell));
    Ok(0)
}

pub(super) fn man() -> Result<i32, CoordError> {
    let page = cli::man_page().map_err(super::internal)?;
    out_bytes(&page);
    Ok(0)
}

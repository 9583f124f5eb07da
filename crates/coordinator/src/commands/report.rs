//! `coordinator report`: a run's JSON report as a page.

use crate::{cli, error::CoordError, html, stdio::eline};

pub(super) fn report(cli: &cli::Cli, r: &cli::ReportArgs) -> Result<i32, CoordError> {
    html::report_to_html(&r.report, &r.html, r.overwrite)?;
    if !cli.quiet {
        eline(&format!("wrote {}", r.html.display()));
    }
    Ok(0)
}

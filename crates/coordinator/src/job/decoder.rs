//! Which decoder a run's workers will read the input with, and why, for `coordinator plan`:
//! the workers' own decision ([`worker::exec::ChunkRunner::open`] and its
//! [`worker::choice`] table), made here the same way, on the same file.

use std::path::Path;

use worker::choice::DecoderChoice;

use crate::{cli::RunConfig, error::CoordError, run::Prepared};

/// The decoder that will read the chunks of `prep` (a plan of `input`), and why.
pub fn plan_choice(
    cfg: &RunConfig,
    input: &Path,
    prep: &Prepared,
) -> Result<DecoderChoice, CoordError> {
    if let crate::cli::Kernel::Map(_) = cfg.job.kernel {
        return Ok(DecoderChoice::gdal(
            "map kernels get f64 windows with a validity mask, read through GDAL".into(),
        ));
    }
    let bands: Vec<u32> = prep.bands.iter().map(|b| b.index).collect();
    let runner = worker::exec::ChunkRunner::open(input, &bands, cfg.job.decoder)
        .map_err(|e| CoordError::BadInput(e.to_string()))?;
    Ok(runner.choice_for(prep.sample))
}

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
    let open = |decoder| {
        worker::exec::ChunkRunner::open(input, &bands, decoder)
            .map_err(|e| CoordError::BadInput(e.to_string()))
    };
    let mut choice = open(cfg.job.decoder)?.choice_for(prep.sample);
    // Asked for GDAL: say too what the default would do, which is the question behind it.
    if cfg.job.decoder == worker::types::Decoder::Gdal {
        let auto = open(worker::types::Decoder::Auto)?.choice_for(prep.sample);
        choice.reason = format!(
            "{}; the default (--decoder auto) would read with {}: {}",
            choice.reason, auto.decoder, auto.reason
        );
    }
    Ok(choice)
}

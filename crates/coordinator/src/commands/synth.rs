//! `coordinator synth`: the deterministic demo raster.

use crate::{cli, error::CoordError, stdio::eline, synth};

pub(super) fn synth(cli: &cli::Cli, s: &cli::SynthArgs) -> Result<i32, CoordError> {
    let cfg = synth::SynthConfig {
        width: s.width,
        height: s.height,
        seed: s.seed,
        overwrite: s.overwrite,
    };
    synth::synth(&s.output, &cfg)?;
    if !cli.quiet {
        eline(&format!(
            "wrote {} ({}x{} Float32, seed {})",
            s.output.display(),
            s.width,
            s.height,
            s.seed
        ));
    }
    Ok(0)
}

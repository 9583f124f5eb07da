//! Which decoder reads the input, and why: `--decoder auto`'s decision table, measured, and
//! the one-line reason `coordinator plan` prints. The decision is made once per process at
//! open ([`crate::exec::ChunkRunner::open`]); this module only says what it is.

use serde::Serialize;
use tiffdec::{Compression, Layout, Predictor};

use crate::types::SampleType;

/// The decoder that will read the input's pixels, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecoderChoice {
    /// `native` or `gdal`.
    pub decoder: &'static str,
    /// What the native decoder reads ("tiled GTiff, DEFLATE, predictor 3, Float32, 1
    /// band"), or why GDAL reads it.
    pub reason: String,
}

impl DecoderChoice {
    pub fn native(reason: String) -> DecoderChoice {
        DecoderChoice {
            decoder: "native",
            reason,
        }
    }

    pub fn gdal(reason: String) -> DecoderChoice {
        DecoderChoice {
            decoder: "gdal",
            reason,
        }
    }

    pub fn is_native(&self) -> bool {
        self.decoder == "native"
    }
}

impl std::fmt::Display for DecoderChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.decoder, self.reason)
    }
}

/// The layout in a few words: "tiled GTiff, DEFLATE, predictor 3, Float32, 3 bands chunky".
pub fn describe(l: &Layout) -> String {
    let bands = match (l.samples, l.planar) {
        (1, _) => "1 band".to_string(),
        (n, true) => format!("{n} bands planar"),
        (n, false) => format!("{n} bands chunky"),
    };
    format!(
        "{} {}, {}, predictor {}, {}, {bands}",
        if l.tiled { "tiled" } else { "striped" },
        if l.bigtiff { "BigTIFF" } else { "GTiff" },
        l.compression.name(),
        l.predictor.number(),
        l.kind.gdal_name(),
    )
}

/// `auto`'s decision table for a layout the native decoder reads correctly: `Some(why)` where
/// GDAL decodes it faster, so that `auto` never picks the slower path. `--decoder native`
/// ignores it.
///
/// Measured (`cargo run --release -p blocksum-tiffdec --example vs_gdal -- --repeats 7
/// FILE...`: one thread, whole 4096² rasters made by `coordinator synth` and
/// `gdal_translate -co TILED=YES -co COMPRESS=LZW -co PREDICTOR=P [-ot T -scale]`, read a
/// block row at a time, native and GDAL 3.6.2 alternately, best of each; GDAL's time over
/// ours, so above 1 means native is faster; the range over 3 runs on a 2 vCPU VM that other
/// jobs loaded, hence the spread):
///
/// | codec | predictor | type | GDAL / native | auto |
/// |---|---|---|---:|---|
/// | DEFLATE | 3 | Float32 | 2.46 | native |
/// | LZW | 1 | Float32 | 0.38-0.55 | GDAL |
/// | LZW | 2 | Float32 | 0.37-0.59 | GDAL |
/// | LZW | 3 | Float32 | 0.67-1.00 | GDAL |
/// | LZW | 2 | Int16 | 0.63-1.64 | GDAL (one run of three above 1: not clearly faster) |
/// | LZW | 1 | Byte | 0.36-0.70 | GDAL |
/// | LZW | 2 | Byte | 0.54-0.81 | GDAL |
///
/// `weezl` decodes LZW at roughly half libtiff's speed here, so the predictor's share of
/// the time (which the native path wins) never makes up for it: every LZW layout stays with
/// GDAL. None, DEFLATE and ZSTD are native everywhere (`scripts/bench.sh` measures them
/// end to end per predictor).
pub fn auto_prefers_gdal(l: &Layout) -> Option<String> {
    match (l.compression, l.predictor) {
        (Compression::Lzw, p) => Some(format!(
            "LZW (predictor {}): libtiff decodes it faster than the native decoder (measured)",
            Predictor::number(p)
        )),
        (Compression::None | Compression::Deflate | Compression::Zstd, _) => None,
    }
}

/// Why a chunk read as `want` goes to GDAL when the file stores `have` (GDAL converts).
pub fn sample_mismatch(want: SampleType, have: SampleType) -> String {
    format!("the bands are read as {want}, the file stores {have} (GDAL converts)")
}

//! The block-aggregation job's value types: pixel windows, sample types, the aggregation,
//! and the per-chunk kernel parameters. They travel inside the protocol's opaque payloads
//! (the `Setup` and each task's payload), never in the envelope.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A pixel window: column/row offset and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub x: u64,
    pub y: u64,
    pub w: u64,
    pub h: u64,
}

impl Window {
    pub fn pixels(&self) -> u64 {
        self.w * self.h
    }
}

/// Pixel sample types read from GDAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SampleType {
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
    /// Signed bytes (TIFF SampleFormat 2, 8 bits): GDAL >= 3.7's Int8; GDAL 3.6 shows them as
    /// Byte with `PIXELTYPE=SIGNEDBYTE` in the band's IMAGE_STRUCTURE metadata
    /// ([`crate::read::band_sample`] tells both apart). Last, so that the variants' indexes
    /// in journals written before it stay the same.
    I8,
}

impl SampleType {
    pub fn size(self) -> u64 {
        match self {
            SampleType::U8 | SampleType::I8 => 1,
            SampleType::I16 | SampleType::U16 => 2,
            SampleType::I32 | SampleType::U32 | SampleType::F32 => 4,
            SampleType::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, SampleType::F32 | SampleType::F64)
    }

    /// GDAL's name for the type.
    pub fn gdal_name(self) -> &'static str {
        match self {
            SampleType::U8 => "Byte",
            SampleType::I8 => "Int8",
            SampleType::I16 => "Int16",
            SampleType::U16 => "UInt16",
            SampleType::I32 => "Int32",
            SampleType::U32 => "UInt32",
            SampleType::F32 => "Float32",
            SampleType::F64 => "Float64",
        }
    }

    pub fn from_gdal_name(name: &str) -> Option<SampleType> {
        [
            SampleType::U8,
            SampleType::I8,
            SampleType::I16,
            SampleType::U16,
            SampleType::I32,
            SampleType::U32,
            SampleType::F32,
            SampleType::F64,
        ]
        .into_iter()
        .find(|t| t.gdal_name().eq_ignore_ascii_case(name))
    }

    /// Smallest and largest finite value of the type.
    pub fn range(self) -> (f64, f64) {
        match self {
            SampleType::U8 => (0.0, u8::MAX as f64),
            SampleType::I8 => (i8::MIN as f64, i8::MAX as f64),
            SampleType::I16 => (i16::MIN as f64, i16::MAX as f64),
            SampleType::U16 => (0.0, u16::MAX as f64),
            SampleType::I32 => (i32::MIN as f64, i32::MAX as f64),
            SampleType::U32 => (0.0, u32::MAX as f64),
            SampleType::F32 => (f32::MIN as f64, f32::MAX as f64),
            SampleType::F64 => (f64::MIN, f64::MAX),
        }
    }

    /// Whether `v` is exactly representable in this type (NaN only in float types).
    pub fn represents(self, v: f64) -> bool {
        if v.is_nan() {
            return self.is_float();
        }
        let (lo, hi) = self.range();
        match self {
            SampleType::F64 => true,
            SampleType::F32 => v.is_infinite() || (v as f32) as f64 == v,
            _ => v >= lo && v <= hi && v.fract() == 0.0,
        }
    }
}

impl fmt::Display for SampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.gdal_name())
    }
}

/// Which decoder reads the input's pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Decoder {
    /// The native decoder when the input is a local GeoTIFF whose layout it supports, else GDAL.
    #[default]
    Auto,
    /// The native decoder, or an error at open when it cannot read the input.
    Native,
    /// GDAL always.
    Gdal,
}

impl Decoder {
    pub fn name(self) -> &'static str {
        match self {
            Decoder::Auto => "auto",
            Decoder::Native => "native",
            Decoder::Gdal => "gdal",
        }
    }
}

/// The block aggregation applied to each F x F block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Agg {
    Sum,
    Mean,
    Min,
    Max,
    Count,
}

impl Agg {
    pub fn name(self) -> &'static str {
        match self {
            Agg::Sum => "sum",
            Agg::Mean => "mean",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Count => "count",
        }
    }
}

/// One axis of a target grid, in input pixel units: cell `i`'s leading edge lies
/// `origin + i * step` input pixels past the input's leading edge (x: from the left, y: from
/// the top).
/// Each edge is computed from its index, never by accumulating steps, so a cell's weights
/// are the same whichever chunk computes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub origin: f64,
    /// Input pixels per cell (> 0; below 1 when the target is finer than the input).
    pub step: f64,
}

impl Axis {
    /// An edge within this many input pixels of a pixel edge is that pixel edge: a grid
    /// that is an integer multiple of the input's, computed through floating point, then
    /// weighs whole pixels exactly 1 and never gives a neighbour a weight of 1e-15.
    pub const SNAP: f64 = 1e-9;

    /// `v`, or the whole number within [`Axis::SNAP`] of it: the one rounding rule of target
    /// grids (edges, cell counts, `--tap`'s alignment, a grid that is a factor).
    pub fn snap(v: f64) -> f64 {
        let r = v.round();
        if (v - r).abs() <= Self::SNAP {
            r
        } else {
            v
        }
    }

    /// The edge between cells `i - 1` and `i`, in input pixels.
    pub fn edge(&self, i: u64) -> f64 {
        Self::snap(self.origin + i as f64 * self.step)
    }

    /// The input pixels `[first, end)` with a positive weight in cells `[c0, c1)`, within
    /// `[0, pixels)` (empty, `first == end`, when the cells lie outside the input).
    pub fn span(&self, (c0, c1): (u64, u64), pixels: u64) -> (u64, u64) {
        let clamp = |e: f64| e.max(0.0).min(pixels as f64) as u64;
        let first = clamp(self.edge(c0).floor());
        let end = clamp(self.edge(c1).ceil());
        (first, end.max(first))
    }

    /// The fraction of input pixel `p` that lies in cell `i` (0 when they do not overlap).
    pub fn weight(&self, i: u64, p: u64) -> f64 {
        let (a, b) = (self.edge(i), self.edge(i + 1));
        (((p + 1) as f64).min(b) - (p as f64).max(a)).max(0.0)
    }
}

/// Which input pixels each output pixel of a chunk aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Footprint {
    /// F x F blocks from the window's top-left corner (`--factor`): every pixel weighs 1.
    Blocks(u32),
    /// The cells `out` (in target-grid indexes) of a target grid; each input pixel weighs
    /// the fraction of its area inside the cell.
    Cells { out: Window, x: Axis, y: Axis },
}

impl Footprint {
    /// Output size for an input window of `w x h`.
    pub fn out_dims(&self, w: u64, h: u64) -> (u64, u64) {
        match *self {
            Footprint::Blocks(f) => (w.div_ceil(f as u64), h.div_ceil(f as u64)),
            Footprint::Cells { out, .. } => (out.w, out.h),
        }
    }
}

/// Everything a worker needs to aggregate one band of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelSpec {
    pub agg: Agg,
    pub footprint: Footprint,
    /// Input sample type as stored in the slot.
    pub sample: SampleType,
    /// Value written for a block with no valid pixel (NaN when the output has no nodata).
    pub out_nodata: f64,
}

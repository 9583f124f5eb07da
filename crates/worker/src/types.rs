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

/// Everything a worker needs to aggregate one band of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelSpec {
    pub agg: Agg,
    pub factor: u32,
    /// Input sample type as stored in the slot.
    pub sample: SampleType,
    /// Value written for a block with no valid pixel (NaN when the output has no nodata).
    pub out_nodata: f64,
}

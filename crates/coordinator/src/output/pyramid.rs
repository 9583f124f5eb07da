//! Overview level k+1 from level k's pixels, where that is exact: each pixel combines the 2 x 2
//! block of the level below (a min of mins, a max of maxes, a sum of sums, a count of counts),
//! and goes through the writer's conversion (`writer::convert`), as the direct resample's
//! value does.
//!
//! When is it bit-identical to the aggregation at the level's factor? Min and max: always
//! (the conversion is monotone and leaves a converted value unchanged, so converting the max
//! of converted values equals converting the max). Sum and count: when every partial sum is
//! an integer below 2^53, so that f64 additions in any order are exact, and the level below
//! holds the exact sums (nothing clamped, rounded or moved off nodata): counts; sums of 8 and
//! 16-bit integer inputs (or of 32-bit ones on rasters small enough) into Float64. Not for
//! floating-point sums, nor for means (their sums and counts are not in the file): those
//! levels are re-aggregated from the input (`cog`). Never after a quarantined chunk (its
//! nodata pixels would be read as empty blocks).

use gdal::raster::{Buffer, RasterBand};
use worker::{Agg, SampleType};

use crate::{
    error::CoordError,
    os::gdal_err::{check, GdalFailure},
    writer::convert,
};

/// Why an overview level could not be written: GDAL's failure, a level of the wrong shape,
/// or a signal (which ends the command as an interrupt, exit 130, not as a write failure).
#[derive(Debug, thiserror::Error)]
pub enum LevelError {
    #[error(transparent)]
    Interrupted(#[from] engine::interrupt::Interrupted),
    #[error(transparent)]
    Gdal(#[from] GdalFailure),
    #[error("{0}")]
    Shape(String),
}

impl LevelError {
    /// The command's error: a write failure of `output` at `step`, or the interrupt.
    pub fn at(self, output: &std::path::Path, step: String) -> CoordError {
        match self {
            LevelError::Interrupted(i) => i.into(),
            LevelError::Gdal(e) => CoordError::write_gdal(output, step, e),
            LevelError::Shape(why) => CoordError::Write {
                path: output.to_path_buf(),
                reason: format!("{step}: {why}"),
            },
        }
    }
}

/// What the base level's grid is to the input, for [`derivable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseGrid {
    /// An integer factor: each input pixel in one output pixel, the input held whole.
    Factor,
    /// Cells of fractional weights holding every input pixel.
    Cells,
    /// Cells of fractional weights that leave some of the input out.
    Cropped,
}

/// Whether a level can be derived from the one below, given what the run knows.
///
/// `grid`: what the base grid is to the input. On a target grid that is no integer factor,
/// sums and counts carry fractional weights, so adding four cells is not the coarser cell's
/// own sum: only min and max (over the pixels a cell overlaps at all) derive exactly there,
/// and only when the base grid holds the whole input: a grid that crops it (`--te`,
/// `--like`) with an odd count of cells gives a coarser last cell input pixels the base has
/// not.
pub fn derivable(
    agg: Agg,
    input: SampleType,
    out: SampleType,
    input_pixels: u64,
    grid: BaseGrid,
) -> bool {
    let whole_pixels = grid == BaseGrid::Factor;
    match agg {
        Agg::Min | Agg::Max => grid != BaseGrid::Cropped,
        Agg::Mean => false,
        Agg::Sum | Agg::Count if !whole_pixels => false,
        // A count is at most the input's pixel count.
        Agg::Count => (input_pixels as f64) <= out.range().1 && input_pixels < 1 << 53,
        Agg::Sum => {
            let (lo, hi) = input.range();
            let magnitude = lo.abs().max(hi);
            !input.is_float()
                && out == SampleType::F64
                && magnitude * input_pixels as f64 <= (1u64 << 53) as f64
        }
    }
}

/// What a derived level reports: values the conversion changed (clamped or moved off
/// nodata). After such a level, a sum or count must not be derived again.
pub type Changed = u64;

/// Writes `dst` (half the size of `src`, rounded up) from `src`, band by band, in strips.
pub fn derive(
    src: &RasterBand,
    dst: &mut RasterBand,
    agg: Agg,
    out: SampleType,
) -> Result<Changed, LevelError> {
    let (w, h) = src.size();
    let (dw, dh) = dst.size();
    if (dw, dh) != (w.div_ceil(2), h.div_ceil(2)) {
        return Err(LevelError::Shape(format!(
            "a {dw}x{dh} overview is not half of the {w}x{h} level below"
        )));
    }
    let nodata = src.no_data_value();
    let empty = |v: f64| v.is_nan() || Some(v) == nodata;
    let nd = nodata.unwrap_or(f64::NAN);
    let mut changed = 0u64;
    // Output rows per strip: about 4 MiB of input rows at a time.
    let strip = ((4 << 20) / 16 / w.max(1)).clamp(1, dh.max(1));
    let mut oy = 0;
    while oy < dh {
        engine::interrupt::checkpoint("pyramid")?;
        let orows = strip.min(dh - oy);
        let y0 = oy * 2;
        let rows = (orows * 2).min(h - y0);
        let buf: Buffer<f64> =
            check(|| src.read_as::<f64>((0, y0 as isize), (w, rows), (w, rows), None))?;
        let data = buf.data();
        let mut outv = Vec::with_capacity(dw * orows);
        for r in 0..orows {
            for c in 0..dw {
                let mut acc: Option<f64> = None;
                for y in (r * 2)..((r * 2 + 2).min(rows)) {
                    for x in (c * 2)..((c * 2 + 2).min(w)) {
                        let v = data[y * w + x];
                        if empty(v) {
                            continue;
                        }
                        acc = Some(match (acc, agg) {
                            (None, _) => v,
                            (Some(a), Agg::Min) => a.min(v),
                            (Some(a), Agg::Max) => a.max(v),
                            (Some(a), _) => a + v,
                        });
                    }
                }
                let (v, clamped, moved) = convert(acc.unwrap_or(f64::NAN), nd, out);
                changed += (clamped || moved) as u64;
                outv.push(v);
            }
        }
        let mut b = Buffer::new((dw, orows), outv);
        check(|| dst.write((0, oy as isize), (dw, orows), &mut b))?;
        oy += orows;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivable_where_the_arithmetic_is_exact() {
        use SampleType::*;
        let whole = |agg, input, out, pixels| derivable(agg, input, out, pixels, BaseGrid::Factor);
        assert!(whole(Agg::Min, F32, F32, 1 << 40));
        assert!(whole(Agg::Max, F64, U8, 1 << 40));
        assert!(!whole(Agg::Mean, U8, F64, 100));
        assert!(!whole(Agg::Sum, F32, F64, 100));
        assert!(whole(Agg::Sum, U16, F64, 1 << 36));
        assert!(!whole(Agg::Sum, U16, F32, 100));
        assert!(whole(Agg::Sum, I32, F64, 1 << 20));
        assert!(!whole(Agg::Sum, U32, F64, 1 << 30));
        assert!(whole(Agg::Count, F32, U32, 1 << 30));
        assert!(!whole(Agg::Count, F32, U8, 1000));
        // On a target grid that is no integer multiple, only min and max, and only when it
        // holds the whole input.
        use BaseGrid::{Cells, Cropped};
        assert!(derivable(Agg::Max, F32, F32, 1 << 40, Cells));
        assert!(derivable(Agg::Min, I16, I16, 1 << 40, Cells));
        assert!(!derivable(Agg::Max, F32, F32, 1 << 40, Cropped));
        assert!(!derivable(Agg::Sum, I16, F64, 100, Cells));
        assert!(!derivable(Agg::Count, F32, U32, 100, Cells));
    }
}

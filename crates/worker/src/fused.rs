//! Block aggregation straight from the native decoder's blocks
//! ([`tiffdec::Tiff::visit_window`]): each decoded tile's rows are folded into per-band
//! column accumulators ([`BlockRows`]) while the tile is still in cache, and output rows are
//! folded as soon as all their input rows are in. The window is never assembled in the
//! slot's input region, and no second pass reads it back. The bits are those of reading the
//! window and then aggregating it ([`crate::kernel::aggregate_masked`]): both add rows
//! through one loop, each column's rows top to bottom. Target grids' weighted cells are not
//! fused (they read the assembled window).

use std::time::{Duration, Instant};

use crate::{
    kernel::{BandKernel, BlockRows, Fold, Sample},
    read::{NativeReader, ReadError},
    types::Window,
};

/// One band of a fused chunk: its kernel, its GDAL mask's window (if any) and its output.
pub struct FusedBand<'a> {
    pub kernel: BandKernel,
    pub mask: Option<&'a [u8]>,
    pub out: &'a mut [f64],
}

/// What a fused chunk measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FusedStats {
    pub valid: u64,
    /// Time spent aggregating (the rest of the call decoded).
    pub compute: Duration,
}

/// Why a fused chunk failed.
#[derive(Debug, thiserror::Error)]
pub enum FusedError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The decoder handed rows that are not whole, aligned samples of `T` (a bug, never a
    /// file's fault: the decoder's rows are aligned).
    #[error("the native decoder's rows are misaligned for the sample type")]
    Misaligned,
}

/// How a fused `win` at factor `f` folds, given the file's blocks of `block` pixels.
pub fn fold_for(win: Window, f: usize, (bw, bh): (u64, u64)) -> Fold {
    Fold::for_grid(
        (win.w as usize, win.h as usize),
        (bw as usize, bh as usize),
        ((win.x % bw) as usize, (win.y % bh) as usize),
        f,
    )
}

/// Bytes the accumulators of a fused `win` need for `bands` bands: the caller fuses only
/// when that is no more than the assembled window would take.
pub fn accumulator_bytes(win: Window, fold: Fold, bands: usize) -> usize {
    fold.rows() * win.w as usize * (8 + 4) * bands
}

/// Decodes `win` with `n` and aggregates it at factor `f`, folding as `fold` says, into
/// each band's output.
pub fn aggregate_native<T: Sample>(
    n: &NativeReader,
    win: Window,
    f: usize,
    fold: Fold,
    bands: Vec<FusedBand<'_>>,
) -> Result<FusedStats, FusedError> {
    let (w, h) = (win.w as usize, win.h as usize);
    let mut sink: Sink<'_, T> = Sink {
        rows: Vec::with_capacity(bands.len()),
        buf: Vec::new(),
        misaligned: false,
        compute: Duration::ZERO,
    };
    for b in bands {
        sink.rows
            .push(BlockRows::new(&b.kernel, b.mask, (w, h), f, fold, b.out));
    }
    n.visit_window(win, &mut sink)?;
    if sink.misaligned {
        return Err(FusedError::Misaligned);
    }
    Ok(FusedStats {
        valid: sink.rows.iter().map(|r| r.valid()).sum(),
        compute: sink.compute,
    })
}

/// The decoder's sink: per band, its accumulators and output.
struct Sink<'a, T> {
    rows: Vec<BlockRows<'a, T>>,
    /// A row of a pixel-interleaved block, gathered.
    buf: Vec<u64>,
    misaligned: bool,
    compute: Duration,
}

impl<T: Sample> tiffdec::BlockSink for Sink<'_, T> {
    fn part(&mut self, band: usize, part: &tiffdec::BlockPart<'_>) {
        let t = Instant::now();
        let rows = &mut self.rows[band];
        for r in 0..part.height() {
            match bytemuck::try_cast_slice::<u8, T>(part.row(r, &mut self.buf)) {
                Ok(vals) => rows.add(part.y() + r, part.x(), vals),
                Err(_) => self.misaligned = true,
            }
        }
        self.compute += t.elapsed();
    }

    fn rows_done(&mut self, y_end: usize) {
        let t = Instant::now();
        for rows in &mut self.rows {
            rows.rows_done(y_end);
        }
        self.compute += t.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tests::agg;
    use crate::{
        kernel::{aggregate_masked, out_dims},
        types::Agg,
    };
    use gdal::{
        raster::{Buffer, GdalType, RasterCreationOptions},
        Dataset, DriverManager,
    };
    use proptest::prelude::*;
    use std::path::Path;

    /// One case: the file, the window and the kernel.
    #[derive(Debug, Clone, Copy)]
    struct Case {
        dims: (usize, usize),
        bands: usize,
        tile: usize,
        pixel: bool,
        deflate: bool,
        sparse: bool,
        win: Window,
        f: usize,
        agg: Agg,
        with_mask: bool,
        affine: Option<(f64, f64)>,
        seed: u64,
    }

    /// A tiled GeoTIFF of `bands` bands of `T` (values with NaN and nodata among them when
    /// `T` holds them), pixel- or band-interleaved, DEFLATE with a predictor or none; with
    /// `sparse`, the top-left tile of band 1 is never written.
    fn write<T: GdalType + bytemuck::Pod + num_like::FromF64>(path: &Path, c: &Case) {
        let Case {
            dims: (w, h),
            bands,
            tile,
            pixel,
            deflate,
            sparse,
            seed,
            ..
        } = *c;
        let mut opts = vec![
            "TILED=YES".to_string(),
            format!("BLOCKXSIZE={tile}"),
            format!("BLOCKYSIZE={tile}"),
            format!("INTERLEAVE={}", if pixel { "PIXEL" } else { "BAND" }),
        ];
        if deflate {
            opts.push("COMPRESS=DEFLATE".into());
            opts.push(format!("PREDICTOR={}", if T::IS_FLOAT { 3 } else { 2 }));
        }
        if sparse {
            opts.push("SPARSE_OK=TRUE".into());
        }
        let opts = RasterCreationOptions::from_iter(opts.iter().map(String::as_str));
        let ds = DriverManager::get_driver_by_name("GTiff")
            .unwrap()
            .create_with_band_type_with_options::<T, _>(path, w, h, bands, &opts)
            .unwrap();
        let mut st = seed | 1;
        for b in 1..=bands {
            let mut band = ds.rasterband(b).unwrap();
            band.set_no_data_value(Some(7.0)).unwrap();
            let vals: Vec<T> = (0..w * h)
                .map(|_| {
                    st ^= st << 13;
                    st ^= st >> 7;
                    st ^= st << 17;
                    let v = match st % 11 {
                        0 => f64::NAN,
                        1 => 7.0,
                        r => (st >> 24) as f64 / 1e3 * 10f64.powi(r as i32 % 5),
                    };
                    T::from_f64(v)
                })
                .collect();
            if sparse && b == 1 {
                // Every tile but the first: GDAL leaves the unwritten one sparse.
                let t = tile.min(w).min(h);
                for (y0, x0) in [(0, t), (t, 0)] {
                    let (bw_, bh_) = (w - x0, if x0 > 0 { t } else { h - y0 });
                    if bw_ == 0 || bh_ == 0 {
                        continue;
                    }
                    let part: Vec<T> = (y0..y0 + bh_)
                        .flat_map(|y| vals[y * w + x0..y * w + x0 + bw_].to_vec())
                        .collect();
                    band.write(
                        (x0 as isize, y0 as isize),
                        (bw_, bh_),
                        &mut Buffer::new((bw_, bh_), part),
                    )
                    .unwrap();
                }
            } else {
                band.write((0, 0), (w, h), &mut Buffer::new((w, h), vals))
                    .unwrap();
            }
        }
    }

    mod num_like {
        /// How the test writes an `f64` as each sample type (saturating, NaN as 0 for
        /// integers).
        pub trait FromF64 {
            const IS_FLOAT: bool;
            fn from_f64(v: f64) -> Self;
        }
        macro_rules! int {
            ($($t:ty),*) => {$(impl FromF64 for $t {
                const IS_FLOAT: bool = false;
                fn from_f64(v: f64) -> Self { v as $t }
            })*};
        }
        int!(u8, i16, u16, i32, u32);
        impl FromF64 for f32 {
            const IS_FLOAT: bool = true;
            fn from_f64(v: f64) -> Self {
                v as f32
            }
        }
        impl FromF64 for f64 {
            const IS_FLOAT: bool = true;
            fn from_f64(v: f64) -> Self {
                v
            }
        }
    }

    /// The fused pass and the materialised one (read the window, then aggregate it) on the
    /// same window of a real file: same bits, same valid count.
    fn same_bits<T: GdalType + bytemuck::Pod + num_like::FromF64 + Sample>(
        c: &Case,
    ) -> Result<(), TestCaseError> {
        let Case {
            bands,
            win,
            f,
            agg,
            with_mask,
            affine,
            ..
        } = *c;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tif");
        write::<T>(&path, c);
        let ds = Dataset::open(&path).unwrap();
        let sel: Vec<usize> = (1..=bands).rev().collect();
        let nodata = vec![Some(7.0); bands];
        let n = NativeReader::open(&path, &ds, &sel, &nodata).unwrap();
        let (ww, wh) = (win.w as usize, win.h as usize);
        let mask: Vec<u8> = (0..ww * wh).map(|i| (i % 7 != 3) as u8).collect();
        let mask = with_mask.then_some(&mask[..]);
        let k = BandKernel {
            agg,
            nodata: Some(7.0),
            out_nodata: -2.0,
            affine,
        };
        let (ow, oh) = out_dims(ww, wh, f);
        let size = std::mem::size_of::<T>();
        let mut raw = vec![0u64; (ww * wh * size * bands).div_ceil(8)];
        n.read_window(win, bytemuck::cast_slice_mut(&mut raw))
            .unwrap();
        let raw: &[u8] = bytemuck::cast_slice(&raw);
        let mut want = vec![0.0; ow * oh * bands];
        let mut want_valid = 0;
        for (b, out) in want.chunks_exact_mut(ow * oh).enumerate() {
            let src: &[T] = bytemuck::cast_slice(&raw[b * ww * wh * size..][..ww * wh * size]);
            want_valid += aggregate_masked(src, mask, (ww, wh), f, &k, out);
        }
        let mut got = vec![0.0; ow * oh * bands];
        let fb = got
            .chunks_exact_mut(ow * oh)
            .map(|out| FusedBand {
                kernel: k,
                mask,
                out,
            })
            .collect();
        let l = n.layout();
        let s = aggregate_native::<T>(&n, win, f, fold_for(win, f, (l.block_w, l.block_h)), fb)
            .unwrap();
        prop_assert_eq!(s.valid, want_valid);
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&got), bits(&want));
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fused_matches_read_then_aggregate_on_real_files(
            w in 1usize..90, h in 1usize..90, bands in 1usize..4, tile in 1usize..4,
            pixel in any::<bool>(), deflate in any::<bool>(), sparse in any::<bool>(),
            kind in 0usize..7, f in 1usize..11, agg in agg(),
            with_mask in any::<bool>(),
            affine in prop_oneof![Just(None), Just(Some((0.1, -3.0)))],
            win in (0u64..1000, 0u64..1000, 1u64..1000, 1u64..1000),
            seed in any::<u64>(),
        ) {
            let tile = tile * 16;
            let (x, y) = (win.0 % w as u64, win.1 % h as u64);
            let win = Window {
                x,
                y,
                w: 1 + win.2 % (w as u64 - x),
                h: 1 + win.3 % (h as u64 - y),
            };
            let c = Case {
                dims: (w, h), bands, tile, pixel, deflate, sparse, win, f, agg, with_mask, affine, seed,
            };
            macro_rules! go {
                ($t:ty) => {
                    same_bits::<$t>(&c)?
                };
            }
            match kind {
                0 => go!(u8),
                1 => go!(i16),
                2 => go!(u16),
                3 => go!(i32),
                4 => go!(u32),
                5 => go!(f32),
                _ => go!(f64),
            }
        }
    }
}

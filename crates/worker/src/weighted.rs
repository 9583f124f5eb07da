//! Area-weighted aggregation onto a target grid (`--tr`, `--te`, `--like`): each input pixel
//! contributes to each cell with the fraction of its area inside the cell, `wx * wy`.
//! Separable: a column pass folds each cell row's input rows into per-column accumulators
//! (weight `wy`), then a row pass folds each cell's columns (weight `wx`). The order of both
//! folds is fixed by the cell's global index, so a cell's value is the same bits whichever
//! chunk computes it; with weights of exactly 1 it is also the same bits as [`crate::kernel`]'s
//! F x F blocks (same folds, same order, `1 * v == v`).

use crate::{
    kernel::{BandKernel, MaxOp, MinOp, Op, Sample, SumOp},
    types::{Agg, Axis},
};

/// One axis's weights for a chunk: for each cell, its input pixels (relative to the window)
/// and their weights.
#[derive(Debug, Clone, Default)]
pub struct AxisWeights {
    /// Per cell: first pixel in the window, and where its weights start in `weights`.
    spans: Vec<(usize, usize)>,
    /// Per cell: how many pixels.
    lens: Vec<usize>,
    weights: Vec<f64>,
}

impl AxisWeights {
    /// The weights of cells `first..first + cells` over the window's pixels `win..win + len`.
    pub fn new(axis: &Axis, (first, cells): (u64, u64), (win, len): (u64, u64)) -> AxisWeights {
        let mut a = AxisWeights::default();
        for i in first..first + cells {
            let (p0, p1) = axis.span((i, i + 1), win + len);
            let p0 = p0.max(win);
            let p1 = p1.max(p0);
            a.spans.push(((p0 - win) as usize, a.weights.len()));
            a.lens.push((p1 - p0) as usize);
            a.weights.extend((p0..p1).map(|p| axis.weight(i, p)));
        }
        a
    }

    /// Cell `c`'s first pixel and weights.
    fn cell(&self, c: usize) -> (usize, &[f64]) {
        let (first, off) = self.spans[c];
        (first, &self.weights[off..off + self.lens[c]])
    }

    pub fn cells(&self) -> usize {
        self.spans.len()
    }
}

/// Aggregates `input` (row-major `w x h`, the chunk's window) into `out` (row-major, one
/// value per cell of `xw` x `yw`); `mask` as for [`crate::kernel::aggregate_masked`].
/// Returns the number of valid input pixels.
pub fn aggregate_cells<T: Sample>(
    input: &[T],
    mask: Option<&[u8]>,
    (w, h): (usize, usize),
    (xw, yw): (&AxisWeights, &AxisWeights),
    k: &BandKernel,
    out: &mut [f64],
) -> u64 {
    assert_eq!(input.len(), w * h, "input window size");
    assert_eq!(out.len(), xw.cells() * yw.cells(), "output window size");
    if let Some(m) = mask {
        assert_eq!(m.len(), w * h, "mask window size");
    }
    let a = Args {
        input,
        mask: mask.unwrap_or(&[]),
        w,
        xw,
        yw,
        k,
    };
    macro_rules! by_op {
        ($mask:literal, $affine:literal) => {
            match k.agg {
                Agg::Sum | Agg::Mean | Agg::Count => run::<T, SumOp, $mask, $affine>(&a, out),
                Agg::Min => run::<T, MinOp, $mask, $affine>(&a, out),
                Agg::Max => run::<T, MaxOp, $mask, $affine>(&a, out),
            }
        };
    }
    match (mask.is_some(), k.affine.is_some()) {
        (false, false) => by_op!(false, false),
        (true, false) => by_op!(true, false),
        (false, true) => by_op!(false, true),
        (true, true) => by_op!(true, true),
    }
}

struct Args<'a, T> {
    input: &'a [T],
    mask: &'a [u8],
    w: usize,
    xw: &'a AxisWeights,
    yw: &'a AxisWeights,
    k: &'a BandKernel,
}

fn run<T: Sample, O: Op, const MASK: bool, const AFFINE: bool>(
    a: &Args<'_, T>,
    out: &mut [f64],
) -> u64 {
    let (w, k) = (a.w, a.k);
    let nd = k.nodata.unwrap_or(f64::NAN);
    let (scale, offset) = k.affine.unwrap_or((1.0, 0.0));
    let mut col = vec![O::INIT; w];
    let mut cnt = vec![0.0f64; w];
    let mut valid_total = 0u64;
    // Rows shared by two cell rows are read twice; count their valid pixels once.
    let mut counted = 0usize;
    for (cy, out_row) in out.chunks_mut(a.xw.cells().max(1)).enumerate() {
        col.fill(O::INIT);
        cnt.fill(0.0);
        let (y0, wys) = a.yw.cell(cy);
        for (dy, &wy) in wys.iter().enumerate() {
            let y = y0 + dy;
            let row = &a.input[y * w..(y + 1) * w];
            let mrow = if MASK {
                &a.mask[y * w..(y + 1) * w]
            } else {
                &[][..]
            };
            let mut row_valid = 0u64;
            for (x, ((c, n), &v)) in col.iter_mut().zip(cnt.iter_mut()).zip(row).enumerate() {
                let v: f64 = v.into();
                #[allow(clippy::eq_op)]
                let mut ok = (v == v) & (v != nd);
                if MASK {
                    ok &= mrow[x] != 0;
                }
                let v = if AFFINE { v * scale + offset } else { v };
                *c = O::combine(*c, if ok { O::weigh(wy, v) } else { O::INIT });
                *n += if ok { wy } else { 0.0 };
                row_valid += ok as u64;
            }
            if y >= counted {
                valid_total += row_valid;
                counted = y + 1;
            }
        }
        for (cx, o) in out_row.iter_mut().enumerate() {
            let (x0, wxs) = a.xw.cell(cx);
            let mut acc = O::INIT;
            let mut n = 0.0;
            for (dx, &wx) in wxs.iter().enumerate() {
                acc = O::combine(acc, O::weigh(wx, col[x0 + dx]));
                n += wx * cnt[x0 + dx];
            }
            *o = match k.agg {
                Agg::Count => n,
                _ if n == 0.0 => k.out_nodata,
                Agg::Mean => acc / n,
                _ => acc,
            };
        }
    }
    valid_total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tests::agg;
    use crate::kernel::{aggregate_masked, out_dims};
    use proptest::prelude::*;

    /// The definition, cell by cell and pixel by pixel, with the overlap computed from the
    /// edges' coordinates directly.
    fn naive(
        input: &[f64],
        (w, h): (usize, usize),
        (ax, ay): (Axis, Axis),
        (cx0, cy0, cw, ch): (u64, u64, u64, u64),
        k: &BandKernel,
    ) -> Vec<f64> {
        let overlap = |axis: &Axis, i: u64, p: usize| {
            let (a, b) = (axis.edge(i), axis.edge(i + 1));
            ((p as f64 + 1.0).min(b) - (p as f64).max(a)).max(0.0)
        };
        let mut out = vec![];
        for cy in cy0..cy0 + ch {
            for cx in cx0..cx0 + cw {
                let (mut s, mut n) = (0.0, 0.0);
                let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
                for y in 0..h {
                    for x in 0..w {
                        let wgt = overlap(&ax, cx, x) * overlap(&ay, cy, y);
                        let v = input[y * w + x];
                        if wgt > 0.0 && !v.is_nan() && Some(v) != k.nodata {
                            s += wgt * v;
                            n += wgt;
                            lo = lo.min(v);
                            hi = hi.max(v);
                        }
                    }
                }
                out.push(match k.agg {
                    Agg::Count => n,
                    _ if n == 0.0 => k.out_nodata,
                    Agg::Sum => s,
                    Agg::Mean => s / n,
                    Agg::Min => lo,
                    Agg::Max => hi,
                });
            }
        }
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    fn input(w: usize, h: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..w * h)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                match state % 10 {
                    0 => f32::NAN,
                    1 => -9999.0,
                    r => (r as f32) * 1.5 - 4.0 + (state >> 40) as f32 / 1e6,
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn matches_the_definition(
            w in 1usize..30, h in 1usize..30, agg in agg(),
            ox in -3.0f64..3.0, oy in -3.0f64..3.0, sx in 0.3f64..9.0, sy in 0.3f64..9.0,
            seed in any::<u64>(),
        ) {
            let (ax, ay) = (Axis { origin: ox, step: sx }, Axis { origin: oy, step: sy });
            // Every cell that touches the window, and one more on each side.
            let cells = |a: &Axis, n: usize| ((n as f64 - a.origin) / a.step).ceil() as u64 + 1;
            let first = |a: &Axis| if a.origin > 0.0 { 0 } else { ((-a.origin) / a.step).floor() as u64 };
            let (cx0, cy0) = (first(&ax), first(&ay));
            let (cw, ch) = (cells(&ax, w) - cx0, cells(&ay, h) - cy0);
            let data = input(w, h, seed);
            let k = BandKernel { agg, nodata: Some(-9999.0), out_nodata: f64::NAN, affine: None };
            let xw = AxisWeights::new(&ax, (cx0, cw), (0, w as u64));
            let yw = AxisWeights::new(&ay, (cy0, ch), (0, h as u64));
            let mut out = vec![0.0; (cw * ch) as usize];
            aggregate_cells(&data, None, (w, h), (&xw, &yw), &k, &mut out);
            let wide: Vec<f64> = data.iter().map(|&v| v as f64).collect();
            let want = naive(&wide, (w, h), (ax, ay), (cx0, cy0, cw, ch), &k);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                prop_assert!(close(*a, *b), "cell {i}: got {a}, want {b}");
            }
        }

        #[test]
        fn whole_blocks_are_the_block_kernels_bits(
            w in 1usize..40, h in 1usize..40, f in 1usize..9, agg in agg(),
            masked in any::<bool>(), seed in any::<u64>(),
        ) {
            let data = input(w, h, seed);
            let mask: Vec<u8> = data.iter().enumerate().map(|(i, _)| (i % 7 != 3) as u8).collect();
            let mask = masked.then_some(&mask[..]);
            let k = BandKernel { agg, nodata: Some(-9999.0), out_nodata: f64::NAN, affine: None };
            let (ow, oh) = out_dims(w, h, f);
            let mut blocks = vec![0.0; ow * oh];
            let n_blocks = aggregate_masked(&data, mask, (w, h), f, &k, &mut blocks);
            let axis = Axis { origin: 0.0, step: f as f64 };
            let xw = AxisWeights::new(&axis, (0, ow as u64), (0, w as u64));
            let yw = AxisWeights::new(&axis, (0, oh as u64), (0, h as u64));
            let mut cells = vec![0.0; ow * oh];
            let n_cells = aggregate_cells(&data, mask, (w, h), (&xw, &yw), &k, &mut cells);
            prop_assert_eq!(n_blocks, n_cells);
            for (i, (a, b)) in blocks.iter().zip(&cells).enumerate() {
                prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "cell {i}: blocks {a}, cells {b}");
            }
        }

        #[test]
        fn any_split_of_the_cells_gives_the_same_bits(
            w in 2usize..40, h in 2usize..40, agg in agg(),
            ox in -2.0f64..0.0, sx in 0.4f64..6.0, sy in 0.4f64..6.0, seed in any::<u64>(),
            cut in 1u64..6,
        ) {
            let (ax, ay) = (Axis { origin: ox, step: sx }, Axis { origin: 0.0, step: sy });
            let cw = ((w as f64 - ox) / sx).ceil() as u64;
            let ch = (h as f64 / sy).ceil() as u64;
            prop_assume!(cut < cw);
            let data = input(w, h, seed);
            let k = BandKernel { agg, nodata: Some(-9999.0), out_nodata: f64::NAN, affine: None };
            let whole = |c0: u64, c1: u64| {
                // The window a plan gives cells c0..c1: their span of input columns.
                let (x0, x1) = ax.span((c0, c1), w as u64);
                let (xs, ws) = (x0 as usize, (x1 - x0) as usize);
                let sub: Vec<f32> = (0..h).flat_map(|y| data[y * w + xs..y * w + xs + ws].to_vec()).collect();
                let xw = AxisWeights::new(&ax, (c0, c1 - c0), (x0, x1 - x0));
                let yw = AxisWeights::new(&ay, (0, ch), (0, h as u64));
                let mut out = vec![0.0; ((c1 - c0) * ch) as usize];
                aggregate_cells(&sub, None, (ws, h), (&xw, &yw), &k, &mut out);
                out
            };
            let all = whole(0, cw);
            let (left, right) = (whole(0, cut), whole(cut, cw));
            for cy in 0..ch as usize {
                for cx in 0..cw as usize {
                    let a = all[cy * cw as usize + cx];
                    let b = if (cx as u64) < cut {
                        left[cy * cut as usize + cx]
                    } else {
                        right[cy * (cw - cut) as usize + cx - cut as usize]
                    };
                    prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "cell {cx},{cy}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn the_readme_example_three_by_three_onto_two_by_two() {
        // A 3x3 input of 1..9 onto cells of 1.5 input pixels: the middle pixel is split
        // in four quarters, the edge-middle ones in halves.
        let data: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let axis = Axis {
            origin: 0.0,
            step: 1.5,
        };
        let xw = AxisWeights::new(&axis, (0, 2), (0, 3));
        assert_eq!(xw.cell(0), (0, &[1.0, 0.5][..]));
        assert_eq!(xw.cell(1), (1, &[0.5, 1.0][..]));
        let k = BandKernel {
            agg: Agg::Sum,
            nodata: None,
            out_nodata: f64::NAN,
            affine: None,
        };
        let mut out = [0.0; 4];
        aggregate_cells(&data, None, (3, 3), (&xw, &xw), &k, &mut out);
        // Top-left: 1 + 0.5*2 + 0.5*4 + 0.25*5 = 5.25; the four add up to 45.
        assert_eq!(out, [5.25, 8.25, 14.25, 17.25]);
        assert_eq!(out.iter().sum::<f64>(), 45.0);
    }

    #[test]
    fn edges_near_pixel_edges_snap_and_cells_outside_are_empty() {
        let axis = Axis {
            origin: 1e-12,
            step: 2.0 - 1e-12,
        };
        assert_eq!(axis.edge(0), 0.0);
        assert_eq!(axis.edge(3), 6.0);
        assert_eq!(axis.weight(0, 1), 1.0);
        assert_eq!(axis.weight(0, 2), 0.0);
        // Cells past the input: no pixel, nodata (and a count of 0).
        let outside = Axis {
            origin: -10.0,
            step: 4.0,
        };
        assert_eq!(outside.span((0, 2), 5), (0, 0));
        let xw = AxisWeights::new(&outside, (0, 4), (0, 5));
        let data = [1.0f32; 5];
        let mut k = BandKernel {
            agg: Agg::Sum,
            nodata: None,
            out_nodata: -1.0,
            affine: None,
        };
        let one = AxisWeights::new(
            &Axis {
                origin: 0.0,
                step: 1.0,
            },
            (0, 1),
            (0, 1),
        );
        let mut out = [0.0; 4];
        aggregate_cells(&data, None, (5, 1), (&xw, &one), &k, &mut out);
        assert_eq!(out, [-1.0, -1.0, 2.0, 3.0]);
        k.agg = Agg::Count;
        aggregate_cells(&data, None, (5, 1), (&xw, &one), &k, &mut out);
        assert_eq!(out, [0.0, 0.0, 2.0, 3.0]);
    }
}

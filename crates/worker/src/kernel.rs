//! Block aggregation of one band of one chunk: each output pixel aggregates an F x F block
//! of input pixels; nodata and NaN are excluded; partial edge blocks aggregate what exists.
//! Accumulation is in `f64`.

use crate::{ffi::simd::add_row_best, types::Agg};

/// A pixel type the kernels read.
pub trait Sample: Copy + Into<f64> + bytemuck::Pod + Send + Sync + 'static {}
impl<T: Copy + Into<f64> + bytemuck::Pod + Send + Sync + 'static> Sample for T {}

/// What to aggregate and how.
#[derive(Debug, Clone, Copy)]
pub struct BandKernel {
    pub agg: Agg,
    /// Input nodata, already rounded to the input type (`None`: only NaN is invalid).
    pub nodata: Option<f64>,
    /// Value written for a block without a valid pixel (sum, mean, min, max).
    pub out_nodata: f64,
    /// `(scale, offset)` applied to each valid pixel before it is aggregated (GDAL's band
    /// scale and offset, when the aggregate does not commute with them).
    pub affine: Option<(f64, f64)>,
}

/// Output size of a `w x h` window at factor `f`.
pub fn out_dims(w: usize, h: usize, f: usize) -> (usize, usize) {
    (w.div_ceil(f), h.div_ceil(f))
}

/// How values fold into an aggregate, and how a weight applies to a value: a sum weighs
/// each value; a minimum or maximum takes every value with a positive weight as it is.
pub trait Op {
    const INIT: f64;
    fn combine(a: f64, b: f64) -> f64;
    #[inline(always)]
    fn weigh(_w: f64, v: f64) -> f64 {
        v
    }
}
pub struct SumOp;
pub struct MinOp;
pub struct MaxOp;
impl Op for SumOp {
    const INIT: f64 = 0.0;
    #[inline(always)]
    fn combine(a: f64, b: f64) -> f64 {
        a + b
    }
    #[inline(always)]
    fn weigh(w: f64, v: f64) -> f64 {
        w * v
    }
}
impl Op for MinOp {
    const INIT: f64 = f64::INFINITY;
    #[inline(always)]
    fn combine(a: f64, b: f64) -> f64 {
        a.min(b)
    }
}
impl Op for MaxOp {
    const INIT: f64 = f64::NEG_INFINITY;
    #[inline(always)]
    fn combine(a: f64, b: f64) -> f64 {
        a.max(b)
    }
}

/// Aggregates `input` (row-major `w x h`) into `out` (row-major `ceil(w/F) x ceil(h/F)`).
/// Returns the number of valid input pixels.
pub fn aggregate<T: Sample>(
    input: &[T],
    (w, h): (usize, usize),
    f: usize,
    k: &BandKernel,
    out: &mut [f64],
) -> u64 {
    aggregate_masked(input, None, (w, h), f, k, out)
}

/// [`aggregate`] with a GDAL mask band's window beside the input (`w x h` bytes, 0 marks an
/// invalid pixel, any other value a valid one).
pub fn aggregate_masked<T: Sample>(
    input: &[T],
    mask: Option<&[u8]>,
    (w, h): (usize, usize),
    f: usize,
    k: &BandKernel,
    out: &mut [f64],
) -> u64 {
    let (ow, oh) = out_dims(w, h, f);
    assert_eq!(input.len(), w * h, "input window size");
    assert_eq!(out.len(), ow * oh, "output window size");
    if let Some(m) = mask {
        assert_eq!(m.len(), w * h, "mask window size");
    }
    // One monomorphised loop per case, so the common one (no mask, no scale) stays as tight
    // as it was.
    macro_rules! by_op {
        ($mask:literal, $affine:literal) => {
            match k.agg {
                Agg::Sum | Agg::Mean | Agg::Count => {
                    run::<T, SumOp, $mask, $affine>(input, mask, (w, h), f, k, out)
                }
                Agg::Min => run::<T, MinOp, $mask, $affine>(input, mask, (w, h), f, k, out),
                Agg::Max => run::<T, MaxOp, $mask, $affine>(input, mask, (w, h), f, k, out),
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

fn run<T: Sample, O: Op, const MASK: bool, const AFFINE: bool>(
    input: &[T],
    mask: Option<&[u8]>,
    (w, h): (usize, usize),
    f: usize,
    k: &BandKernel,
    out: &mut [f64],
) -> u64 {
    let (ow, _) = out_dims(w, h, f);
    let px = Pixel::of(k);
    // Two passes per output row: fold the F input rows into per-column accumulators (one
    // straight, branch-free loop over contiguous memory that the compiler vectorizes), then
    // fold each run of F columns into its output pixel.
    let mut col = vec![O::INIT; w];
    let mut cnt = vec![0u32; w];
    let mask = mask.unwrap_or(&[]);
    let mut valid_total = 0u64;
    for (oy, out_row) in out.chunks_mut(ow).enumerate() {
        col.fill(O::INIT);
        cnt.fill(0);
        let (r0, r1) = (oy * f * w, ((oy + 1) * f).min(h) * w);
        let rows = &input[r0..r1];
        for (ri, row) in rows.chunks_exact(w).enumerate() {
            let mrow = if MASK {
                &mask[r0 + ri * w..r0 + (ri + 1) * w]
            } else {
                &[][..]
            };
            add_row_best::<T, O, MASK, AFFINE>(&mut col, &mut cnt, row, mrow, px);
        }
        valid_total += fold_row::<O>(out_row, &col, &cnt, f, k);
    }
    valid_total
}

/// How one pixel is judged and transformed before it is aggregated.
#[derive(Debug, Clone, Copy)]
pub struct Pixel {
    /// Nodata, or NaN when there is none: comparing against NaN is always "not equal", so
    /// one branch-free test serves both.
    pub(crate) nd: f64,
    pub(crate) scale: f64,
    pub(crate) offset: f64,
}

impl Pixel {
    fn of(k: &BandKernel) -> Pixel {
        let (scale, offset) = k.affine.unwrap_or((1.0, 0.0));
        Pixel {
            nd: k.nodata.unwrap_or(f64::NAN),
            scale,
            offset,
        }
    }
}

/// Folds one input row into the per-column accumulators `col` and counts `cnt` (`mrow`:
/// the row's mask, used when `MASK`). Every path (the materialised window's and the fused
/// decoder's) adds rows through this one loop, so their sums are the same bits.
#[inline(always)]
pub(crate) fn add_row<T: Sample, O: Op, const MASK: bool, const AFFINE: bool>(
    col: &mut [f64],
    cnt: &mut [u32],
    row: &[T],
    mrow: &[u8],
    px: Pixel,
) {
    for (x, ((c, n), &v)) in col.iter_mut().zip(cnt.iter_mut()).zip(row).enumerate() {
        let v: f64 = v.into();
        #[allow(clippy::eq_op)]
        let mut ok = (v == v) & (v != px.nd);
        if MASK {
            ok &= mrow[x] != 0;
        }
        let v = if AFFINE { v * px.scale + px.offset } else { v };
        *c = O::combine(*c, if ok { v } else { O::INIT });
        *n += ok as u32;
    }
}

/// Folds each run of `f` column accumulators (left to right) into its output pixel of
/// `out_row`; returns the valid pixels counted.
#[inline(always)]
fn fold_row<O: Op>(out_row: &mut [f64], col: &[f64], cnt: &[u32], f: usize, k: &BandKernel) -> u64 {
    let mut valid = 0u64;
    for ((o, a), c) in out_row.iter_mut().zip(col.chunks(f)).zip(cnt.chunks(f)) {
        let a = a.iter().fold(O::INIT, |x, &y| O::combine(x, y));
        let c: u32 = c.iter().sum();
        valid += c as u64;
        *o = match k.agg {
            Agg::Count => c as f64,
            _ if c == 0 => k.out_nodata,
            Agg::Mean => a / c as f64,
            _ => a,
        };
    }
    valid
}

/// [`add_row`] for one sample type, operation, mask and scale case, chosen once.
type AddRowFn<T> = fn(&mut [f64], &mut [u32], &[T], &[u8], Pixel);
/// [`fold_row`] for one operation, chosen once.
type FoldRowFn = fn(&mut [f64], &[f64], &[u32], usize, &BandKernel) -> u64;

/// How [`BlockRows`] folds: decided by where the pieces (the decoder's tiles) cut the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Every F x F block lies inside one piece: a block's output pixel is folded as soon as
    /// its last row is in, from one row of accumulators that stays in cache.
    PerPiece,
    /// Blocks may straddle pieces: output rows are folded by [`BlockRows::rows_done`],
    /// with at most this many output rows open at once.
    Ring(usize),
}

impl Fold {
    /// The fold for a `w x h` window at factor `f` cut by a grid of `bw x bh` pieces whose
    /// first one starts `(ox, oy)` pixels left of and above the window (each `<` the piece's
    /// size), with [`BlockRows::rows_done`] after each row of pieces.
    pub fn for_grid(
        (w, h): (usize, usize),
        (bw, bh): (usize, usize),
        (ox, oy): (usize, usize),
        f: usize,
    ) -> Fold {
        // Window-relative starts of the pieces after the first, along one axis.
        let cuts_on_blocks = |len: usize, size: usize, off: usize| {
            (size - off..len).step_by(size).all(|c| c % f == 0)
        };
        if cuts_on_blocks(w, bw, ox) && cuts_on_blocks(h, bh, oy) {
            Fold::PerPiece
        } else {
            Fold::Ring((bh.min(h).div_ceil(f) + 1).min(h.div_ceil(f)))
        }
    }

    /// Accumulator rows (each as wide as the window) this fold keeps.
    pub fn rows(self) -> usize {
        match self {
            Fold::PerPiece => 1,
            Fold::Ring(n) => n.max(1),
        }
    }
}

/// Block aggregation of one band fed row by row, as a decoder produces them, into the
/// output of the whole window: the same result, bit for bit, as [`aggregate_masked`] on the
/// assembled window, without assembling it. A row may arrive in pieces (one per tile it
/// crosses), in any order across columns, but each column's rows must arrive top to bottom
/// (the order [`aggregate_masked`] adds them in), and [`BlockRows::rows_done`] must follow
/// each row of pieces. Until an output pixel is folded its columns' sums sit in
/// accumulators, as [`Fold`] says.
pub struct BlockRows<'m, T> {
    k: BandKernel,
    px: Pixel,
    f: usize,
    w: usize,
    h: usize,
    mask: Option<&'m [u8]>,
    out: &'m mut [f64],
    fold_mode: Fold,
    ring: usize,
    col: Vec<f64>,
    cnt: Vec<u32>,
    init: f64,
    /// Output rows folded so far (ring mode).
    folded: usize,
    valid: u64,
    add: AddRowFn<T>,
    fold: FoldRowFn,
}

impl<'m, T: Sample> BlockRows<'m, T> {
    /// The accumulator of a `w x h` window at factor `f` into `out` (`ceil(w/f) x
    /// ceil(h/f)`), with `mask` as in [`aggregate_masked`].
    pub fn new(
        k: &BandKernel,
        mask: Option<&'m [u8]>,
        (w, h): (usize, usize),
        f: usize,
        fold_mode: Fold,
        out: &'m mut [f64],
    ) -> BlockRows<'m, T> {
        let ring = fold_mode.rows();
        macro_rules! pick {
            ($op:ty) => {{
                let add: AddRowFn<T> = match (mask.is_some(), k.affine.is_some()) {
                    (false, false) => add_row_best::<T, $op, false, false>,
                    (true, false) => add_row_best::<T, $op, true, false>,
                    (false, true) => add_row_best::<T, $op, false, true>,
                    (true, true) => add_row_best::<T, $op, true, true>,
                };
                (add, fold_row::<$op> as FoldRowFn, <$op>::INIT)
            }};
        }
        let (add, fold, init) = match k.agg {
            Agg::Sum | Agg::Mean | Agg::Count => pick!(SumOp),
            Agg::Min => pick!(MinOp),
            Agg::Max => pick!(MaxOp),
        };
        BlockRows {
            k: *k,
            px: Pixel::of(k),
            f,
            w,
            h,
            mask,
            out,
            fold_mode,
            ring,
            col: vec![init; ring * w],
            cnt: vec![0; ring * w],
            init,
            folded: 0,
            valid: 0,
            add,
            fold,
        }
    }

    /// Adds the piece `vals` of window row `y` starting at column `x0`.
    pub fn add(&mut self, y: usize, x0: usize, vals: &[T]) {
        let oy = y / self.f;
        let at = (oy % self.ring) * self.w + x0;
        let n = vals.len();
        let mrow = match self.mask {
            Some(m) => &m[y * self.w + x0..][..n],
            None => &[][..],
        };
        let (col, cnt) = (&mut self.col[at..at + n], &mut self.cnt[at..at + n]);
        (self.add)(col, cnt, vals, mrow, self.px);
        if self.fold_mode == Fold::PerPiece && y + 1 == ((oy + 1) * self.f).min(self.h) {
            // The last row of this piece's blocks: `x0` is on a block edge, and the piece
            // ends on one or at the window's edge.
            let ow = self.w.div_ceil(self.f);
            let out = &mut self.out[oy * ow + x0 / self.f..][..n.div_ceil(self.f)];
            self.valid += (self.fold)(out, col, cnt, self.f, &self.k);
            col.fill(self.init);
            cnt.fill(0);
        }
    }

    /// Every column's rows above `y_end` are in: in ring mode, folds the output rows they
    /// complete.
    pub fn rows_done(&mut self, y_end: usize) {
        if self.fold_mode == Fold::PerPiece {
            return;
        }
        let ow = self.w.div_ceil(self.f);
        while self.folded * self.f < self.h && ((self.folded + 1) * self.f).min(self.h) <= y_end {
            let at = (self.folded % self.ring) * self.w;
            let (col, cnt) = (
                &mut self.col[at..at + self.w],
                &mut self.cnt[at..at + self.w],
            );
            let out_row = &mut self.out[self.folded * ow..(self.folded + 1) * ow];
            self.valid += (self.fold)(out_row, col, cnt, self.f, &self.k);
            col.fill(self.init);
            cnt.fill(0);
            self.folded += 1;
        }
    }

    /// Valid input pixels in the output pixels folded so far.
    pub fn valid(&self) -> u64 {
        self.valid
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious, slow definition.
    fn naive(input: &[f64], w: usize, h: usize, f: usize, k: &BandKernel) -> Vec<f64> {
        let (ow, oh) = out_dims(w, h, f);
        let mut out = vec![0.0; ow * oh];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut vals = vec![];
                for y in oy * f..((oy + 1) * f).min(h) {
                    for x in ox * f..((ox + 1) * f).min(w) {
                        let v = input[y * w + x];
                        if !v.is_nan() && Some(v) != k.nodata {
                            vals.push(v);
                        }
                    }
                }
                out[oy * ow + ox] = match k.agg {
                    Agg::Count => vals.len() as f64,
                    _ if vals.is_empty() => k.out_nodata,
                    Agg::Sum => vals.iter().sum(),
                    Agg::Mean => vals.iter().sum::<f64>() / vals.len() as f64,
                    Agg::Min => vals.iter().cloned().fold(f64::INFINITY, f64::min),
                    Agg::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                };
            }
        }
        out
    }

    /// Every aggregation (the kernels' proptests share it).
    pub(crate) fn agg() -> impl Strategy<Value = Agg> {
        prop_oneof![
            Just(Agg::Sum),
            Just(Agg::Mean),
            Just(Agg::Min),
            Just(Agg::Max),
            Just(Agg::Count)
        ]
    }

    fn close(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    proptest! {
        #[test]
        fn float_input_matches_naive(
            w in 1usize..40, h in 1usize..40, f in 1usize..12, agg in agg(),
            with_nodata in any::<bool>(), seed in any::<u64>(),
        ) {
            let nodata = with_nodata.then_some(-9999.0);
            let mut state = seed | 1;
            let input: Vec<f32> = (0..w * h).map(|_| {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                match state % 10 {
                    0 => f32::NAN,
                    1 | 2 => -9999.0,
                    r => (r as f32) * 1.5 - 4.0 + (state >> 40) as f32 / 1e6,
                }
            }).collect();
            let k = BandKernel { agg, nodata, out_nodata: nodata.unwrap_or(f64::NAN), affine: None };
            let (ow, oh) = out_dims(w, h, f);
            let mut out = vec![0.0; ow * oh];
            aggregate(&input, (w, h), f, &k, &mut out);
            let wide: Vec<f64> = input.iter().map(|&v| v as f64).collect();
            let want = naive(&wide, w, h, f, &k);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                prop_assert!(close(*a, *b), "pixel {i}: got {a}, want {b}");
            }
        }

        #[test]
        fn integer_input_matches_naive(
            w in 1usize..30, h in 1usize..30, f in 1usize..9, agg in agg(),
            input in proptest::collection::vec(any::<u16>(), 900),
        ) {
            let input = &input[..w * h];
            let k = BandKernel { agg, nodata: Some(0.0), out_nodata: 0.0, affine: None };
            let (ow, oh) = out_dims(w, h, f);
            let mut out = vec![0.0; ow * oh];
            aggregate(input, (w, h), f, &k, &mut out);
            let wide: Vec<f64> = input.iter().map(|&v| v as f64).collect();
            prop_assert_eq!(out, naive(&wide, w, h, f, &k));
        }
    }

    proptest! {
        #[test]
        fn masked_and_scaled_input_matches_naive(
            w in 1usize..30, h in 1usize..30, f in 1usize..9, agg in agg(),
            input in proptest::collection::vec(any::<i16>(), 900),
            mask in proptest::collection::vec(0u8..3, 900),
            scale in prop_oneof![Just(None), Just(Some((0.5, -3.0))), Just(Some((-2.0, 7.0)))],
        ) {
            let (input, mask) = (&input[..w * h], &mask[..w * h]);
            let k = BandKernel { agg, nodata: Some(-1.0), out_nodata: f64::NAN, affine: scale };
            let (ow, oh) = out_dims(w, h, f);
            let mut out = vec![0.0; ow * oh];
            aggregate_masked(input, Some(mask), (w, h), f, &k, &mut out);
            // The naive definition on the same pixels: masked ones become NaN (invalid),
            // nodata stays nodata, the rest is scaled first.
            let (s, o) = scale.unwrap_or((1.0, 0.0));
            let wide: Vec<f64> = input.iter().zip(mask).map(|(&v, &m)| match (v, m) {
                (_, 0) => f64::NAN,
                (-1, _) => -1.0,
                (v, _) => v as f64 * s + o,
            }).collect();
            let mut nk = k;
            // A scaled valid pixel may land on -1: the naive side compares raw values only.
            nk.nodata = None;
            let wide: Vec<f64> = wide.iter().zip(input).map(|(&x, &v)| if v == -1 { f64::NAN } else { x }).collect();
            let want = naive(&wide, w, h, f, &nk);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                prop_assert!(close(*a, *b), "pixel {i}: got {a}, want {b}");
            }
        }
    }

    /// `input` fed to [`BlockRows`] as the decoder hands it over: tiles of `bw x bh` whose
    /// grid starts `(ox, oy)` pixels left of and above the window, block row by block row,
    /// tiles left to right, each tile's rows top to bottom.
    fn fed<T: Sample>(
        input: &[T],
        mask: Option<&[u8]>,
        (w, h): (usize, usize),
        f: usize,
        k: &BandKernel,
        ((bw, bh), (ox, oy)): ((usize, usize), (usize, usize)),
        fold: Fold,
    ) -> (Vec<f64>, u64) {
        let (ow, oh) = out_dims(w, h, f);
        let mut out = vec![0.0; ow * oh];
        let mut rows = BlockRows::new(k, mask, (w, h), f, fold, &mut out);
        let mut y0 = 0;
        while y0 < h {
            let y1 = ((y0 + oy) / bh * bh + bh - oy).min(h);
            let mut x0 = 0;
            while x0 < w {
                let x1 = ((x0 + ox) / bw * bw + bw - ox).min(w);
                for y in y0..y1 {
                    rows.add(y, x0, &input[y * w + x0..y * w + x1]);
                }
                x0 = x1;
            }
            rows.rows_done(y1);
            y0 = y1;
        }
        let valid = rows.valid();
        (out, valid)
    }

    /// Values whose sums depend on the order of the additions (magnitudes far apart), with
    /// NaN, nodata (-9999) and negative zero among them.
    fn order_sensitive(n: usize, seed: u64) -> Vec<f64> {
        let mut st = seed | 1;
        (0..n)
            .map(|_| {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                match st % 16 {
                    0 => f64::NAN,
                    1 => -9999.0,
                    2 => -0.0,
                    r => {
                        let m = (st >> 20) as f64 / (1u64 << 44) as f64;
                        (if r & 1 == 0 { 1.0 } else { -1.0 }) * m * 10f64.powi((r as i32 % 7) * 3)
                    }
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// The fused path's accumulator gives the bits of the materialised window's pass,
        /// whatever the tiles (not dividing F, the window not on their grid), F, type,
        /// mask, nodata and scale.
        #[test]
        fn block_rows_match_the_materialised_pass(
            w in 1usize..70, h in 1usize..70, f in 1usize..12, agg in agg(),
            bw in 1usize..40, bh in 1usize..40, ox in 0usize..40, oy in 0usize..40,
            kind in 0usize..6, with_mask in any::<bool>(), with_nodata in any::<bool>(),
            scale in prop_oneof![Just(None), Just(Some((0.37, -3.1))), Just(Some((-2.0, 7.0)))],
            seed in any::<u64>(),
        ) {
            let (ox, oy) = (ox % bw, oy % bh);
            let vals = order_sensitive(w * h, seed);
            let mask: Vec<u8> = vals.iter().enumerate().map(|(i, _)| !(i as u64 ^ seed).is_multiple_of(5) as u8).collect();
            let mask = with_mask.then_some(&mask[..]);
            let k = BandKernel {
                agg,
                nodata: with_nodata.then_some(-9999.0),
                out_nodata: -1.5,
                affine: scale,
            };
            macro_rules! check {
                ($t:ty) => {{
                    let input: Vec<$t> = vals.iter().map(|&v| v as $t).collect();
                    let (ow, oh) = out_dims(w, h, f);
                    let mut want = vec![0.0; ow * oh];
                    let want_valid = aggregate_masked(&input, mask, (w, h), f, &k, &mut want);
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let grid = Fold::for_grid((w, h), (bw, bh), (ox, oy), f);
                    let ring = Fold::Ring((bh.min(h).div_ceil(f) + 1).min(h.div_ceil(f)));
                    // The ring works for any grid; folding per piece where the grid allows.
                    for fold in [grid, ring] {
                        let (got, valid) = fed(&input, mask, (w, h), f, &k, ((bw, bh), (ox, oy)), fold);
                        prop_assert_eq!(valid, want_valid);
                        prop_assert_eq!(bits(&got), bits(&want));
                    }
                }};
            }
            match kind {
                0 => check!(u8),
                1 => check!(i16),
                2 => check!(u32),
                3 => check!(i8),
                4 => check!(f32),
                _ => check!(f64),
            }
        }
    }

    #[test]
    fn all_invalid_block_is_nodata_and_count_zero() {
        let input = [f32::NAN, -1.0, -1.0, 5.0];
        let mut k = BandKernel {
            agg: Agg::Sum,
            nodata: Some(-1.0),
            out_nodata: -7.0,
            affine: None,
        };
        let mut out = [0.0; 1];
        assert_eq!(aggregate(&input, (2, 2), 2, &k, &mut out), 1);
        assert_eq!(out, [5.0]);
        let nothing = [f32::NAN, -1.0, -1.0, -1.0];
        aggregate(&nothing, (2, 2), 2, &k, &mut out);
        assert_eq!(out, [-7.0]);
        k.agg = Agg::Count;
        aggregate(&nothing, (2, 2), 2, &k, &mut out);
        assert_eq!(out, [0.0]);
    }
}

//! The block kernel's row loop ([`crate::kernel`]'s `add_row`) compiled for AVX2, chosen at
//! run time where the CPU has it (`is_x86_feature_detected!`, which caches its answer), so a
//! release build needs no `target-cpu`. The same IEEE operations in the same order as the
//! baseline (SSE2) build: the same bits (the kernel's proptests compare the two paths on a
//! CPU with AVX2).

/// Whether the block kernel runs its AVX2 build here.
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

use crate::kernel::{add_row, Op, Pixel, Sample};

/// [`add_row`] compiled with AVX2 where the CPU has it, else as it is.
pub(crate) fn add_row_best<T: Sample, O: Op, const MASK: bool, const AFFINE: bool>(
    col: &mut [f64],
    cnt: &mut [u32],
    row: &[T],
    mrow: &[u8],
    px: Pixel,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn avx2<T: Sample, O: Op, const MASK: bool, const AFFINE: bool>(
            col: &mut [f64],
            cnt: &mut [u32],
            row: &[T],
            mrow: &[u8],
            px: Pixel,
        ) {
            add_row::<T, O, MASK, AFFINE>(col, cnt, row, mrow, px)
        }
        if has_avx2() {
            // SAFETY: the CPU has AVX2 (checked just above), the one requirement of calling
            // a function compiled with it; `avx2` is otherwise safe code.
            return unsafe { avx2::<T, O, MASK, AFFINE>(col, cnt, row, mrow, px) };
        }
    }
    add_row::<T, O, MASK, AFFINE>(col, cnt, row, mrow, px)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{MaxOp, MinOp, SumOp};
    use proptest::prelude::*;

    proptest! {
        /// The AVX2 build and the baseline one give the same bits, negative zeros, NaN,
        /// nodata, masks and scales included (where the CPU has no AVX2 both are the baseline).
        #[test]
        fn avx2_row_loop_is_the_baseline_bits(
            vals in proptest::collection::vec(prop_oneof![
                Just(f32::NAN), Just(-0.0f32), Just(0.0f32), Just(-9999.0f32), any::<f32>(),
            ], 1..300),
            mask in proptest::collection::vec(0u8..3, 300),
            op in 0usize..3, masked in any::<bool>(), scaled in any::<bool>(),
        ) {
            let px = Pixel { nd: -9999.0, scale: if scaled { -0.3 } else { 1.0 }, offset: if scaled { 2.5 } else { 0.0 } };
            let n = vals.len();
            let mrow = &mask[..n];
            let init = [0.0, f64::INFINITY, f64::NEG_INFINITY][op];
            let start: Vec<f64> = vals.iter().map(|&v| if v.is_nan() { init } else { v as f64 * 0.5 }).collect();
            let (mut a, mut b) = (start.clone(), start);
            let (mut ca, mut cb) = (vec![1u32; n], vec![1u32; n]);
            macro_rules! both {
                ($o:ty, $m:literal, $s:literal) => {{
                    add_row::<f32, $o, $m, $s>(&mut a, &mut ca, &vals, mrow, px);
                    add_row_best::<f32, $o, $m, $s>(&mut b, &mut cb, &vals, mrow, px);
                }};
            }
            macro_rules! by_case {
                ($o:ty) => {
                    match (masked, scaled) {
                        (false, false) => both!($o, false, false),
                        (true, false) => both!($o, true, false),
                        (false, true) => both!($o, false, true),
                        (true, true) => both!($o, true, true),
                    }
                };
            }
            match op {
                0 => by_case!(SumOp),
                1 => by_case!(MinOp),
                _ => by_case!(MaxOp),
            }
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&a), bits(&b));
            prop_assert_eq!(ca, cb);
        }
    }
}

//! The block kernel's row loop ([`crate::kernel`]'s `add_row`) compiled for AVX2, chosen at
//! run time where the CPU has it (`is_x86_feature_detected!`, which caches its answer), so a
//! release build needs no `target-cpu`. The same IEEE operations in the same order as the
//! baseline (SSE2) build: the same bits (the kernel's proptests compare the two paths on a
//! CPU with AVX2). One of the crate's modules with `unsafe` (with `gdal_ffi` and `map::ffi`).

/// Whether [`avx2`] runs the AVX2 build here.
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

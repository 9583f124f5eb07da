//! Undoing TIFF predictors, one decoded row at a time (libtiff applies them per row of a
//! tile or strip). Scalar and portable; [`crate::simd`] speeds up the floating-point case.

/// Swaps every `size`-byte sample of `buf` between big and little endian.
pub fn swap_bytes(buf: &mut [u8], size: usize) {
    if size > 1 {
        for s in buf.chunks_exact_mut(size) {
            s.reverse();
        }
    }
}

/// Predictor 2 on one row of native-endian samples: each sample adds the one `stride`
/// samples before it, wrapping in its own width. Returns false (and leaves `row` as it is)
/// when `row` is not aligned to, or not a whole number of, samples.
#[must_use]
pub fn horizontal(row: &mut [u8], size: usize, stride: usize) -> bool {
    match size {
        1 => {
            acc(row, stride, u8::wrapping_add);
            true
        }
        2 => typed::<u16>(row, stride, u16::wrapping_add),
        4 => typed::<u32>(row, stride, u32::wrapping_add),
        _ => typed::<u64>(row, stride, u64::wrapping_add),
    }
}

fn typed<T: bytemuck::Pod>(row: &mut [u8], stride: usize, add: fn(T, T) -> T) -> bool {
    match bytemuck::try_cast_slice_mut::<u8, T>(row) {
        Ok(v) => {
            acc(v, stride, add);
            true
        }
        Err(_) => false,
    }
}

fn acc<T: Copy>(v: &mut [T], stride: usize, add: fn(T, T) -> T) {
    for i in stride..v.len() {
        v[i] = add(v[i], v[i - stride]);
    }
}

/// Predictor 3 on one row: a byte-wise running sum with `stride` (samples per pixel in the
/// block), then the `size` byte planes (most significant first) interleaved back into
/// native-endian samples, through `tmp` (at least `row.len()` bytes).
pub fn float(row: &mut [u8], size: usize, stride: usize, tmp: &mut [u8]) {
    if crate::simd::float(row, size, stride, tmp) {
        return;
    }
    float_scalar(row, size, stride, tmp);
}

/// The portable version of [`float`] (also the reference the SIMD one is tested against).
pub fn float_scalar(row: &mut [u8], size: usize, stride: usize, tmp: &mut [u8]) {
    for i in stride..row.len() {
        row[i] = row[i].wrapping_add(row[i - stride]);
    }
    unshuffle_scalar(row, size, tmp);
}

/// Interleaves the byte planes of `row` (plane 0 most significant) into native-endian samples.
pub fn unshuffle_scalar(row: &mut [u8], size: usize, tmp: &mut [u8]) {
    let n = row.len() / size;
    let tmp = &mut tmp[..n * size];
    tmp.copy_from_slice(&row[..n * size]);
    for (k, out) in row.chunks_exact_mut(size).enumerate() {
        for (b, o) in out.iter_mut().enumerate() {
            // Plane `b` holds the b-th most significant byte.
            let plane = if cfg!(target_endian = "little") {
                size - 1 - b
            } else {
                b
            };
            *o = tmp[plane * n + k];
        }
    }
}

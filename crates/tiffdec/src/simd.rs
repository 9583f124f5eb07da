//! Vectorised floating-point predictor (TIFF predictor 3) for x86_64: the byte-wise running
//! sum and the interleave of the byte planes, with SSE2 (part of the x86_64 baseline, so no
//! runtime detection is needed). The crate's only `unsafe`; every other case (other
//! architectures, samples per pixel above 1, 8-byte samples' interleave) takes the scalar
//! path in [`crate::predict`], which the tests below hold these to.

/// Undoes predictor 3 on `row` when a vector path applies; false (row untouched) otherwise.
pub fn float(row: &mut [u8], size: usize, stride: usize, tmp: &mut [u8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if stride == 1 && size == 4 && tmp.len() >= row.len() {
            // SAFETY: SSE2 is part of every x86_64 target; the functions only touch `row`
            // and `tmp` within their lengths (checked above and inside).
            unsafe {
                x86::prefix_sum(row);
                x86::unshuffle4(row, tmp);
            }
            return true;
        }
        if stride == 1 {
            // SAFETY: as above.
            unsafe { x86::prefix_sum(row) };
            crate::predict::unshuffle_scalar(row, size, tmp);
            return true;
        }
    }
    let _ = (row, size, stride, tmp);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// In place: `row[i] += row[i - 1]` for every i, wrapping.
    ///
    /// # Safety
    /// The CPU supports SSE2 (every x86_64 does).
    #[target_feature(enable = "sse2")]
    pub unsafe fn prefix_sum(row: &mut [u8]) {
        let mut carry = 0u8;
        let mut chunks = row.chunks_exact_mut(16);
        for c in &mut chunks {
            // SAFETY: `c` is exactly 16 bytes; unaligned loads and stores.
            unsafe {
                let mut v = _mm_loadu_si128(c.as_ptr().cast());
                v = _mm_add_epi8(v, _mm_slli_si128::<1>(v));
                v = _mm_add_epi8(v, _mm_slli_si128::<2>(v));
                v = _mm_add_epi8(v, _mm_slli_si128::<4>(v));
                v = _mm_add_epi8(v, _mm_slli_si128::<8>(v));
                v = _mm_add_epi8(v, _mm_set1_epi8(carry as i8));
                _mm_storeu_si128(c.as_mut_ptr().cast(), v);
            }
            carry = c[15];
        }
        for b in chunks.into_remainder() {
            *b = b.wrapping_add(carry);
            carry = *b;
        }
    }

    /// Interleaves the 4 byte planes of `row` (most significant first) into little-endian
    /// 4-byte samples, through `tmp`.
    ///
    /// # Safety
    /// The CPU supports SSE2; `tmp.len() >= row.len()`.
    #[target_feature(enable = "sse2")]
    pub unsafe fn unshuffle4(row: &mut [u8], tmp: &mut [u8]) {
        let n = row.len() / 4;
        let tmp = &mut tmp[..n * 4];
        tmp.copy_from_slice(&row[..n * 4]);
        let (p0, rest) = tmp.split_at(n);
        let (p1, rest) = rest.split_at(n);
        let (p2, p3) = rest.split_at(n);
        let mut k = 0;
        while k + 16 <= n {
            // SAFETY: k + 16 <= n, so each 16-byte load is inside its plane and the 64-byte
            // store at 4k is inside `row` (4n bytes).
            unsafe {
                let b3 = _mm_loadu_si128(p0.as_ptr().add(k).cast());
                let b2 = _mm_loadu_si128(p1.as_ptr().add(k).cast());
                let b1 = _mm_loadu_si128(p2.as_ptr().add(k).cast());
                let b0 = _mm_loadu_si128(p3.as_ptr().add(k).cast());
                let lo01 = _mm_unpacklo_epi8(b0, b1);
                let hi01 = _mm_unpackhi_epi8(b0, b1);
                let lo23 = _mm_unpacklo_epi8(b2, b3);
                let hi23 = _mm_unpackhi_epi8(b2, b3);
                let out = row.as_mut_ptr().add(4 * k);
                _mm_storeu_si128(out.cast(), _mm_unpacklo_epi16(lo01, lo23));
                _mm_storeu_si128(out.add(16).cast(), _mm_unpackhi_epi16(lo01, lo23));
                _mm_storeu_si128(out.add(32).cast(), _mm_unpacklo_epi16(hi01, hi23));
                _mm_storeu_si128(out.add(48).cast(), _mm_unpackhi_epi16(hi01, hi23));
            }
            k += 16;
        }
        for k in k..n {
            row[4 * k] = p3[k];
            row[4 * k + 1] = p2[k];
            row[4 * k + 2] = p1[k];
            row[4 * k + 3] = p0[k];
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn vector_float_predictor_equals_scalar(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            size in prop_oneof![Just(4usize), Just(8)],
            stride in 1usize..4,
        ) {
            let len = bytes.len() / (size * stride) * size * stride;
            let mut want = bytes[..len].to_vec();
            let mut got = want.clone();
            let mut tmp = vec![0u8; len];
            crate::predict::float_scalar(&mut want, size, stride, &mut tmp);
            if !super::float(&mut got, size, stride, &mut tmp) {
                crate::predict::float_scalar(&mut got, size, stride, &mut tmp);
            }
            prop_assert_eq!(want, got);
        }
    }
}

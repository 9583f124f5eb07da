//! Vectorised floating-point predictor (TIFF predictor 3) for x86_64: the byte-wise running
//! sum and the interleave of the byte planes. SSE2 is part of the x86_64 baseline; SSSE3 and
//! AVX2 are detected at run time (`is_x86_feature_detected!`, which caches its answer), so a
//! release build needs no `target-cpu` and runs on any x86_64. The crate's only `unsafe`.
//!
//! What runs where, and why (`cargo bench -p blocksum-tiffdec --bench predict` measures each
//! step at each level: MiB/s of decoded rows of a 256-pixel tile, one core of the 2 vCPU AMD
//! EPYC VM this was built on, best of 31, with other jobs loading the machine, so +-30 %):
//! - running sum, stride 1 (one sample per pixel): AVX2 when present, else SSE2. With the
//!   SSE2 interleave: Float32 4934 vs 2513 MiB/s, Float64 4835 vs 1462;
//! - running sum, stride 2..=8 (chunky multi-band): SSE2, one instance per stride. 3 bands,
//!   Float32: 2678 MiB/s where the scalar predictor did 137 (Float64: 1682 vs 168). No AVX2
//!   version: the carry crosses the 128-bit lanes at every stride but 1;
//! - interleave of the byte planes, 4- and 8-byte samples: SSE2 (with the AVX2 sum: Float32
//!   4934 vs 450 MiB/s scalar, Float64 4835 vs 241). An AVX2 interleave measured no faster
//!   (4030 vs 4215, Float64 4722 vs 4850: the copy to the scratch row bounds it): dropped.
//!
//! Everything else (other architectures, strides above 8, 2-byte samples' interleave) takes
//! the scalar path in [`crate::predict`], which the tests below hold every level to.

/// An instruction-set level the vector paths can be forced to (for the benchmark and the
/// tests; [`float`] picks the best the CPU has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No vector code: [`crate::predict::float_scalar`].
    Scalar,
    Sse2,
    Avx2,
}

impl Level {
    /// The best level this CPU runs.
    pub fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
            return Level::Sse2;
        }
        #[allow(unreachable_code)]
        Level::Scalar
    }

    /// Every level this CPU runs, lowest first.
    pub fn available() -> Vec<Level> {
        [Level::Scalar, Level::Sse2, Level::Avx2]
            .into_iter()
            .filter(|&l| l <= Level::detect())
            .collect()
    }
}

/// Undoes predictor 3 on `row` with the best level the CPU has when a vector path applies;
/// false (row untouched) otherwise.
pub fn float(row: &mut [u8], size: usize, stride: usize, tmp: &mut [u8]) -> bool {
    float_at(Level::detect(), row, size, stride, tmp)
}

/// [`float`] at `level` (lowered to what the CPU has).
pub fn float_at(level: Level, row: &mut [u8], size: usize, stride: usize, tmp: &mut [u8]) -> bool {
    float_with(level, level, row, size, stride, tmp)
}

/// [`float`] with the running sum at level `sum` and the interleave at level `unshuffle`
/// (each lowered to what the CPU has; the interleave has no AVX2 version, so AVX2 means
/// SSE2 there): the benchmark measures the two steps apart. False (row untouched) when
/// `sum` is scalar or no vector path applies.
pub fn float_with(
    sum: Level,
    unshuffle: Level,
    row: &mut [u8],
    size: usize,
    stride: usize,
    tmp: &mut [u8],
) -> bool {
    let (sum, unshuffle) = (sum.min(Level::detect()), unshuffle.min(Level::detect()));
    if sum == Level::Scalar || tmp.len() < row.len() || !(1..=8).contains(&stride) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the levels are at most what the CPU supports (lowered above; SSE2 is in
        // every x86_64), and each function touches `row` and `tmp` only within their lengths
        // (`tmp.len() >= row.len()`, checked above).
        unsafe {
            match (sum, stride) {
                (Level::Avx2, 1) => x86::prefix_sum_avx2(row),
                (_, 1) => x86::prefix_sum(row),
                (_, s) => x86::prefix_sum_strided(row, s),
            }
            match (unshuffle, size) {
                (Level::Scalar, _) => crate::predict::unshuffle_scalar(row, size, tmp),
                (_, 4) => x86::unshuffle4(row, tmp),
                (_, 8) => x86::unshuffle8(row, tmp),
                _ => crate::predict::unshuffle_scalar(row, size, tmp),
            }
        }
        return true;
    }
    #[allow(unreachable_code)]
    {
        let _ = (row, size);
        false
    }
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

    /// [`prefix_sum`] 32 bytes at a time: the running sum inside each 128-bit lane, then the
    /// low lane's last byte added to the high lane, and the carry kept in a register (a
    /// broadcast of the last byte) instead of a store and a reload.
    ///
    /// # Safety
    /// The CPU supports AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn prefix_sum_avx2(row: &mut [u8]) {
        let mut chunks = row.chunks_exact_mut(32);
        let last = _mm256_set1_epi8(15);
        let mut carry = _mm256_setzero_si256();
        for c in &mut chunks {
            // SAFETY: `c` is exactly 32 bytes; unaligned loads and stores.
            unsafe {
                let mut v = _mm256_loadu_si256(c.as_ptr().cast());
                v = _mm256_add_epi8(v, _mm256_slli_si256::<1>(v));
                v = _mm256_add_epi8(v, _mm256_slli_si256::<2>(v));
                v = _mm256_add_epi8(v, _mm256_slli_si256::<4>(v));
                v = _mm256_add_epi8(v, _mm256_slli_si256::<8>(v));
                // Each lane's last byte everywhere in that lane; the low lane's moved up.
                let ends = _mm256_shuffle_epi8(v, last);
                v = _mm256_add_epi8(v, _mm256_permute2x128_si256::<0x08>(ends, ends));
                v = _mm256_add_epi8(v, carry);
                _mm256_storeu_si256(c.as_mut_ptr().cast(), v);
                // The high lane's last byte (the row's running sum) in every byte.
                carry = _mm256_permute4x64_epi64::<0xFF>(_mm256_shuffle_epi8(v, last));
            }
        }
        let start = row.len() / 32 * 32;
        let mut carry = if start > 0 { row[start - 1] } else { 0 };
        for b in &mut row[start..] {
            *b = b.wrapping_add(carry);
            carry = *b;
        }
    }

    /// In place: `row[i] += row[i - S]` for S = 2..=8 (bytes of chunky pixels), 16 bytes at
    /// a time: the previous 16 bytes' last S sums are added to the first S bytes, then the
    /// strided running sum inside the vector (shifts by S, 2S, 4S, 8S) spreads them.
    macro_rules! strided {
        ($name:ident, $s:literal) => {
            /// # Safety
            /// The CPU supports SSE2.
            #[target_feature(enable = "sse2")]
            unsafe fn $name(row: &mut [u8]) {
                let n = row.len() / 16 * 16;
                let mut prev = _mm_setzero_si128();
                for c in row[..n].chunks_exact_mut(16) {
                    // SAFETY: `c` is exactly 16 bytes; unaligned loads and stores.
                    unsafe {
                        // The shift brings in zeros: only the first S bytes get a carry.
                        let carry = _mm_srli_si128::<{ 16 - $s }>(prev);
                        let mut v = _mm_add_epi8(_mm_loadu_si128(c.as_ptr().cast()), carry);
                        v = _mm_add_epi8(v, _mm_slli_si128::<$s>(v));
                        v = _mm_add_epi8(v, _mm_slli_si128::<{ 2 * $s }>(v));
                        if 4 * $s < 16 {
                            v = _mm_add_epi8(v, _mm_slli_si128::<{ 4 * $s }>(v));
                        }
                        if 8 * $s < 16 {
                            v = _mm_add_epi8(v, _mm_slli_si128::<{ 8 * $s }>(v));
                        }
                        _mm_storeu_si128(c.as_mut_ptr().cast(), v);
                        prev = v;
                    }
                }
                for i in n.max($s)..row.len() {
                    row[i] = row[i].wrapping_add(row[i - $s]);
                }
            }
        };
    }
    strided!(strided2, 2);
    strided!(strided3, 3);
    strided!(strided4, 4);
    strided!(strided5, 5);
    strided!(strided6, 6);
    strided!(strided7, 7);
    strided!(strided8, 8);

    /// `row[i] += row[i - stride]` for stride 2..=8.
    ///
    /// # Safety
    /// The CPU supports SSE2; `2 <= stride <= 8`.
    #[target_feature(enable = "sse2")]
    pub unsafe fn prefix_sum_strided(row: &mut [u8], stride: usize) {
        // SAFETY: SSE2, as the caller promises.
        unsafe {
            match stride {
                2 => strided2(row),
                3 => strided3(row),
                4 => strided4(row),
                5 => strided5(row),
                6 => strided6(row),
                7 => strided7(row),
                _ => strided8(row),
            }
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

    /// Interleaves the 8 byte planes of `row` (most significant first) into little-endian
    /// 8-byte samples, through `tmp`: a byte, word and dword unpack cascade, 16 samples at a
    /// time.
    ///
    /// # Safety
    /// The CPU supports SSE2; `tmp.len() >= row.len()`.
    #[target_feature(enable = "sse2")]
    pub unsafe fn unshuffle8(row: &mut [u8], tmp: &mut [u8]) {
        let n = row.len() / 8;
        let tmp = &mut tmp[..n * 8];
        tmp.copy_from_slice(&row[..n * 8]);
        let mut k = 0;
        while k + 16 <= n {
            // SAFETY: k + 16 <= n, so each 16-byte load at plane p (p*n + k) is inside `tmp`
            // and the 128-byte store at 8k is inside `row` (8n bytes).
            unsafe {
                // Byte j of a sample comes from plane 7 - j.
                let b: [__m128i; 8] = std::array::from_fn(|j| {
                    _mm_loadu_si128(tmp.as_ptr().add((7 - j) * n + k).cast())
                });
                let w01l = _mm_unpacklo_epi8(b[0], b[1]);
                let w01h = _mm_unpackhi_epi8(b[0], b[1]);
                let w23l = _mm_unpacklo_epi8(b[2], b[3]);
                let w23h = _mm_unpackhi_epi8(b[2], b[3]);
                let w45l = _mm_unpacklo_epi8(b[4], b[5]);
                let w45h = _mm_unpackhi_epi8(b[4], b[5]);
                let w67l = _mm_unpacklo_epi8(b[6], b[7]);
                let w67h = _mm_unpackhi_epi8(b[6], b[7]);
                // Bytes 0..4 of samples 0..4, 4..8 (from the low halves), 8..12, 12..16.
                let d0l = _mm_unpacklo_epi16(w01l, w23l);
                let d0h = _mm_unpackhi_epi16(w01l, w23l);
                let d1l = _mm_unpacklo_epi16(w01h, w23h);
                let d1h = _mm_unpackhi_epi16(w01h, w23h);
                // Bytes 4..8 of the same samples.
                let e0l = _mm_unpacklo_epi16(w45l, w67l);
                let e0h = _mm_unpackhi_epi16(w45l, w67l);
                let e1l = _mm_unpacklo_epi16(w45h, w67h);
                let e1h = _mm_unpackhi_epi16(w45h, w67h);
                let out = row.as_mut_ptr().add(8 * k);
                for (i, (lo, hi)) in [(d0l, e0l), (d0h, e0h), (d1l, e1l), (d1h, e1h)]
                    .into_iter()
                    .enumerate()
                {
                    _mm_storeu_si128(out.add(32 * i).cast(), _mm_unpacklo_epi32(lo, hi));
                    _mm_storeu_si128(out.add(32 * i + 16).cast(), _mm_unpackhi_epi32(lo, hi));
                }
            }
            k += 16;
        }
        for k in k..n {
            for j in 0..8 {
                row[8 * k + j] = tmp[(7 - j) * n + k];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Level;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_vector_level_equals_scalar(
            bytes in proptest::collection::vec(any::<u8>(), 0..1200),
            size in prop_oneof![Just(2usize), Just(4), Just(8)],
            stride in 1usize..11,
        ) {
            let len = bytes.len() / (size * stride) * size * stride;
            let mut want = bytes[..len].to_vec();
            let mut tmp = vec![0u8; len];
            crate::predict::float_scalar(&mut want, size, stride, &mut tmp);
            for level in Level::available() {
                let mut got = bytes[..len].to_vec();
                if !super::float_at(level, &mut got, size, stride, &mut tmp) {
                    prop_assert!(level == Level::Scalar || stride > 8);
                    crate::predict::float_scalar(&mut got, size, stride, &mut tmp);
                }
                prop_assert_eq!(&want, &got, "{:?}", level);
            }
        }
    }
}

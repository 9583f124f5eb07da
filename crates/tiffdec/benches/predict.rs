//! The floating-point predictor's vector paths against each other and the scalar one:
//! `cargo bench -p blocksum-tiffdec --bench predict`. One 256-pixel-wide tile of rows (as
//! GDAL writes them) per case, undone in place over and over; prints MiB/s of decoded row
//! data, the best of 31 runs of each variant, run alternately. The levels `float` picks in
//! `tiffdec::simd` are the ones this measures faster.

use std::time::Instant;

use tiffdec::simd::{float_with, Level};

fn rate(sum: Level, unshuffle: Level, size: usize, stride: usize) -> Option<f64> {
    let row_bytes = 256 * size * stride;
    let rows = 256;
    let mut tile: Vec<u8> = (0..row_bytes * rows)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    let mut tmp = vec![0u8; row_bytes];
    let passes = 24;
    let t = Instant::now();
    for _ in 0..passes {
        for row in tile.chunks_exact_mut(row_bytes) {
            if !float_with(sum, unshuffle, row, size, stride, &mut tmp) {
                if sum != Level::Scalar {
                    return None;
                }
                tiffdec::predict::float_scalar(row, size, stride, &mut tmp);
            }
        }
    }
    std::hint::black_box(&tile);
    let secs = t.elapsed().as_secs_f64();
    Some((passes * row_bytes * rows) as f64 / secs / (1 << 20) as f64)
}

fn main() {
    let top = Level::detect();
    println!("best level on this CPU: {top:?}");
    println!("| sample bytes | samples per pixel | sum | interleave | MiB/s |");
    println!("|---:|---:|---|---|---:|");
    // (sum, interleave): the interleave has no AVX2 version (AVX2 there means SSE2).
    let mut variants = vec![
        (Level::Scalar, Level::Scalar),
        (Level::Sse2, Level::Scalar),
        (Level::Sse2, Level::Sse2),
    ];
    if top >= Level::Avx2 {
        variants.extend([(Level::Avx2, Level::Scalar), (Level::Avx2, Level::Sse2)]);
    }
    for (size, stride) in [(4, 1), (8, 1), (4, 3), (8, 3), (4, 4)] {
        let mut best = vec![0f64; variants.len()];
        for _ in 0..31 {
            for (i, &(s, u)) in variants.iter().enumerate() {
                if let Some(r) = rate(s, u, size, stride) {
                    best[i] = best[i].max(r);
                }
            }
        }
        for (&(s, u), r) in variants.iter().zip(&best) {
            if *r > 0.0 {
                println!("| {size} | {stride} | {s:?} | {u:?} | {r:.0} |");
            }
        }
    }
}

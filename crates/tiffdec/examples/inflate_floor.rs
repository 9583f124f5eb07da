//! The inflate floor for the benchmark (`scripts/bench_targets.py`): what reading and
//! inflating every block of a DEFLATE TIFF costs, and nothing else (no predictor, no
//! aggregation, no output), on N threads, each taking every Nth block. Any decoder of the
//! file pays at least this; on the noisy `synth` raster it is most of a run.
//!
//! `cargo run --release -p blocksum-tiffdec --example inflate_floor -- FILE THREADS`
//!
//! Prints the wall seconds (opening the file included) and the seconds spent inside inflate,
//! summed over the threads (wall time around each call: a thread preempted meanwhile counts).

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::Path,
    time::{Duration, Instant},
};

use tiffdec::{Compression, Layout, Tiff};

/// Reads and inflates blocks `share`, `share + n`, ... of `layout` from `file`: the time
/// inflate took, and the bytes it wrote.
fn inflate_share(
    file: &File,
    layout: &Layout,
    share: usize,
    n: usize,
) -> Result<(Duration, u64), String> {
    let block = layout.block_w as usize * layout.block_h as usize * layout.block_samples();
    let mut out = vec![0u8; block * layout.kind.size()];
    let mut raw = Vec::new();
    let mut d = libdeflater::Decompressor::new();
    let (mut busy, mut bytes) = (Duration::ZERO, 0u64);
    for i in (share..layout.offsets.len()).step_by(n) {
        // A sparse block (no bytes stored) reads as zeros: nothing to inflate.
        if layout.byte_counts[i] == 0 {
            continue;
        }
        raw.resize(layout.byte_counts[i] as usize, 0);
        file.read_exact_at(&mut raw, layout.offsets[i])
            .map_err(|e| format!("block {i}: {e}"))?;
        let t0 = Instant::now();
        let got = d
            .zlib_decompress(&raw, &mut out)
            .map_err(|e| format!("block {i}: {e:?}"))?;
        busy += t0.elapsed();
        bytes += got as u64;
    }
    Ok((busy, bytes))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(path), Some(Ok(threads))) = (args.first(), args.get(1).map(|t| t.parse::<usize>()))
    else {
        eprintln!("usage: inflate_floor FILE THREADS");
        std::process::exit(2);
    };
    let fail = |e: String| -> ! {
        eprintln!("inflate_floor: {path}: {e}");
        std::process::exit(1)
    };
    let t0 = Instant::now();
    let layout = Tiff::open(Path::new(path))
        .map_err(|e| e.to_string())
        .unwrap_or_else(|e| fail(e))
        .layout()
        .clone();
    if layout.compression != Compression::Deflate {
        fail(format!("{} blocks, not DEFLATE", layout.compression.name()));
    }
    let file = File::open(path).unwrap_or_else(|e| fail(e.to_string()));
    let threads = threads.max(1);
    let results: Vec<Result<(Duration, u64), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (file, layout) = (&file, &layout);
                s.spawn(move || inflate_share(file, layout, t, threads))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (mut busy, mut bytes) = (Duration::ZERO, 0u64);
    for r in results {
        let (b, n) = r.unwrap_or_else(|e| fail(e));
        busy += b;
        bytes += n;
    }
    println!(
        "inflate_floor: {} blocks, {} MiB inflated, {threads} thread(s): {:.3} s wall, {:.3} s inside inflate",
        layout.offsets.len(),
        bytes >> 20,
        t0.elapsed().as_secs_f64(),
        busy.as_secs_f64()
    );
}

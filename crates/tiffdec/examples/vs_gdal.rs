//! Decode time of whole rasters, native vs GDAL, on one thread: the measurement behind the
//! `--decoder auto` decision table (worker's `auto` module).
//!
//! `cargo run --release -p blocksum-tiffdec --example vs_gdal -- [--repeats N] FILE...`
//!
//! Each file is read in windows of one block row, full width, every band, as a worker reads a
//! chunk: natively (`Tiff::read_window`) and with GDAL (`RasterBand::read_into_slice` per
//! band, the file's own type, so no conversion). Runs the two alternately, N times, and prints the best
//! of each, and
//! GDAL's time over ours (above 1: native is faster). Both results are compared byte for
//! byte: a difference is an error, not a number.

use std::{path::Path, time::Instant};

use gdal::{raster::GdalType, Dataset};
use tiffdec::{SampleKind, Tiff, Window};

fn windows(width: u64, height: u64, block_h: u64) -> impl Iterator<Item = Window> {
    (0..height.div_ceil(block_h)).map(move |r| Window {
        x: 0,
        y: r * block_h,
        w: width,
        h: block_h.min(height - r * block_h),
    })
}

fn native(path: &Path, buf: &mut [u8]) -> Result<u64, String> {
    let t = Tiff::open(path).map_err(|e| e.to_string())?;
    let l = t.layout().clone();
    let samples: Vec<usize> = (0..l.samples).collect();
    let fill = vec![vec![0u8; l.kind.size()]; l.samples];
    let mut sum = 0u64;
    for win in windows(l.width, l.height, l.block_h) {
        let n = (win.w * win.h) as usize * l.kind.size() * l.samples;
        t.read_window(&samples, win, &fill, &mut buf[..n])
            .map_err(|e| e.to_string())?;
        sum = sum.wrapping_add(checksum(&buf[..n]));
    }
    Ok(sum)
}

fn read_band<T: GdalType + bytemuck::Pod>(
    ds: &Dataset,
    b: usize,
    win: Window,
    out: &mut [u8],
) -> Result<(), String> {
    let band = ds.rasterband(b).map_err(|e| e.to_string())?;
    let size = (win.w as usize, win.h as usize);
    band.read_into_slice::<T>(
        (win.x as isize, win.y as isize),
        size,
        size,
        bytemuck::cast_slice_mut(out),
        None,
    )
    .map_err(|e| e.to_string())
}

fn gdal(path: &Path, kind: SampleKind, block_h: u64, buf: &mut [u8]) -> Result<u64, String> {
    let ds = Dataset::open(path).map_err(|e| e.to_string())?;
    let (w, h) = ds.raster_size();
    let bands = ds.raster_count();
    let mut sum = 0u64;
    for win in windows(w as u64, h as u64, block_h) {
        let band_bytes = (win.w * win.h) as usize * kind.size();
        for b in 1..=bands {
            let out = &mut buf[(b - 1) * band_bytes..b * band_bytes];
            match kind {
                // GDAL 3.6 shows signed bytes as Byte: the stored bytes.
                SampleKind::U8 | SampleKind::I8 => read_band::<u8>(&ds, b, win, out)?,
                SampleKind::I16 => read_band::<i16>(&ds, b, win, out)?,
                SampleKind::U16 => read_band::<u16>(&ds, b, win, out)?,
                SampleKind::I32 => read_band::<i32>(&ds, b, win, out)?,
                SampleKind::U32 => read_band::<u32>(&ds, b, win, out)?,
                SampleKind::F32 => read_band::<f32>(&ds, b, win, out)?,
                SampleKind::F64 => read_band::<f64>(&ds, b, win, out)?,
            }
        }
        sum = sum.wrapping_add(checksum(&buf[..band_bytes * bands]));
    }
    Ok(sum)
}

/// A position-dependent checksum (FNV-1a over 8-byte words), so that the two reads are
/// compared without keeping a second copy of the raster.
fn checksum(b: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for c in b.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn best(repeats: usize, mut f: impl FnMut() -> Result<u64, String>) -> Result<(f64, u64), String> {
    let mut best = f64::INFINITY;
    let mut sum = 0;
    for _ in 0..repeats {
        let t = Instant::now();
        sum = f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok((best, sum))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut repeats = 3;
    if args.first().map(String::as_str) == Some("--repeats") && args.len() > 1 {
        repeats = args[1].parse().unwrap_or(3);
        args.drain(..2);
    }
    if args.is_empty() {
        eprintln!("usage: vs_gdal [--repeats N] FILE...");
        std::process::exit(2);
    }
    // One thread of decoding in both, as in one worker.
    gdal::config::set_config_option("GDAL_NUM_THREADS", "1").ok();
    println!("| file | layout | native (s) | GDAL (s) | GDAL / native |");
    println!("|---|---|---:|---:|---:|");
    for f in &args {
        let path = Path::new(f);
        let run = || -> Result<String, String> {
            let t = Tiff::open(path).map_err(|e| e.to_string())?;
            let l = t.layout().clone();
            let mut buf = vec![0u8; (l.width * l.block_h) as usize * l.kind.size() * l.samples];
            // Interleaved, best of each: other load on the machine hits both alike.
            let (mut tn, mut tg, mut sn, mut sg) = (f64::INFINITY, f64::INFINITY, 0, 0);
            for _ in 0..repeats {
                let (t, s) = best(1, || native(path, &mut buf))?;
                (tn, sn) = (tn.min(t), s);
                let (t, s) = best(1, || gdal(path, l.kind, l.block_h, &mut buf))?;
                (tg, sg) = (tg.min(t), s);
            }
            if sn != sg {
                return Err("native and GDAL reads differ".into());
            }
            Ok(format!(
                "| {} | {} {}, predictor {}, {}, {} band(s) {} | {tn:.3} | {tg:.3} | {:.2} |",
                path.file_name().unwrap_or_default().to_string_lossy(),
                if l.tiled { "tiled" } else { "striped" },
                l.compression.name(),
                l.predictor.number(),
                l.kind.gdal_name(),
                l.samples,
                if l.planar { "planar" } else { "chunky" },
                tg / tn
            ))
        };
        match run() {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{f}: {e}");
                std::process::exit(1);
            }
        }
    }
}

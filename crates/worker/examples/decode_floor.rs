//! The decode floor for the benchmark: N processes, each opening the raster with the same
//! GDAL the workers link and reading its share of the block rows (whole rows of blocks,
//! round-robin), doing nothing else. Prints the wall seconds.
//!
//! `cargo run --release -p blocksum-worker --example decode_floor -- INPUT PROCS [CACHE_MB]`

use std::{process::Command, time::Instant};

use gdal::Dataset;

fn read_share(path: &str, share: usize, procs: usize) -> Result<u64, String> {
    let ds = Dataset::open(path).map_err(|e| e.to_string())?;
    let (w, h) = ds.raster_size();
    let mut total = 0u64;
    for b in 1..=ds.raster_count() {
        let band = ds.rasterband(b).map_err(|e| e.to_string())?;
        let (_, bh) = band.block_size();
        let rows = h.div_ceil(bh);
        let mut buf = vec![0u8; w * bh * 8];
        for r in (share..rows).step_by(procs) {
            let y = r * bh;
            let n = bh.min(h - y);
            let size = band.band_type().bytes() as usize;
            let slice = &mut buf[..w * n * size];
            // Read as the band's own type, so no conversion happens.
            match size {
                1 => band.read_into_slice::<u8>((0, y as isize), (w, n), (w, n), slice, None),
                2 => band.read_into_slice::<u16>(
                    (0, y as isize),
                    (w, n),
                    (w, n),
                    bytemuck::cast_slice_mut(slice),
                    None,
                ),
                4 => band.read_into_slice::<f32>(
                    (0, y as isize),
                    (w, n),
                    (w, n),
                    bytemuck::cast_slice_mut(slice),
                    None,
                ),
                _ => band.read_into_slice::<f64>(
                    (0, y as isize),
                    (w, n),
                    (w, n),
                    bytemuck::cast_slice_mut(slice),
                    None,
                ),
            }
            .map_err(|e| e.to_string())?;
            total += (w * n) as u64;
        }
    }
    Ok(total)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() >= 5 && args[1] == "--child" {
        let (share, procs): (usize, usize) = (args[3].parse().unwrap(), args[4].parse().unwrap());
        if let Err(e) = read_share(&args[2], share, procs) {
            eprintln!("decode_floor: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.len() < 3 {
        eprintln!("usage: decode_floor INPUT PROCS [CACHE_MB]");
        std::process::exit(2);
    }
    let procs: usize = args[2].parse().expect("PROCS is a number");
    let cache = args.get(3).cloned().unwrap_or_else(|| "64".into());
    let t0 = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|i| {
            Command::new(&args[0])
                .args(["--child", &args[1], &i.to_string(), &procs.to_string()])
                .env("GDAL_CACHEMAX", &cache)
                .env("GDAL_NUM_THREADS", "1")
                .spawn()
                .expect("spawning a reader")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("waiting").success(), "a reader failed");
    }
    println!("{:.3}", t0.elapsed().as_secs_f64());
}

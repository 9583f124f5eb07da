//! Chunks that are whole output tiles: the plan follows the output's tiles (edge tiles cut by
//! the raster's edge included), and the pixels are the same as with strip chunks (the path
//! through GDAL's block cache) and equal to the naive reference, for one band (written block
//! by block) and for several (pixel-interleaved, through the cache), in the pool and in
//! process.

use crate::common::*;

#[test]
fn whole_tile_chunks_give_the_same_pixels_as_strips() {
    let dir = tempfile::tempdir().unwrap();
    for bands in [1usize, 2] {
        let input = dir.path().join(format!("in-{bands}.tif"));
        let spec = RasterSpec {
            bands,
            ..RasterSpec::default()
        };
        let data = write_f32(&input, &spec);
        let f = 2;
        // 128-pixel output tiles at F = 2: a 256x256 input window (256 KiB) per tile.
        let co = ["--co", "BLOCKXSIZE=128", "--co", "BLOCKYSIZE=128"];
        let mut outputs = Vec::new();
        for (mode, chunk_mib, whole) in [
            ("tiles, 2 workers", "0.6", true),
            ("tiles, in process", "0.6", true),
            ("strips, 2 workers", "0.1", false),
        ] {
            let out = dir
                .path()
                .join(format!("out-{bands}-{}.tif", outputs.len()));
            let rep = dir
                .path()
                .join(format!("out-{bands}-{}.json", outputs.len()));
            let mut cmd = coordinator();
            cmd.arg("resample")
                .arg(&input)
                .arg(&out)
                .args(["--factor", "2", "--chunk-mib", chunk_mib])
                .args(co)
                .arg("--report")
                .arg(&rep);
            if mode.ends_with("in process") {
                cmd.arg("--in-process");
            } else {
                cmd.args(["--workers", "2"]);
            }
            let o = run(&mut cmd);
            assert!(o.status.success(), "{mode}: {}", stderr(&o));
            let r = report(&rep);
            let (cw, ch) = (
                r["plan"]["chunk_width"].as_u64().unwrap(),
                r["plan"]["chunk_height"].as_u64().unwrap(),
            );
            let tiles = cw % 256 == 0 && ch % 256 == 0;
            assert_eq!(tiles, whole, "{mode}: chunks {cw}x{ch}");
            let (ds, got) = read_all(&out);
            assert_eq!(ds.rasterband(1).unwrap().block_size(), (128, 128));
            for (b, band) in got.iter().enumerate() {
                let want = reference_sum(&data[b], spec.width, spec.height, f, Some(NODATA));
                assert_eq!(band.len(), want.len());
                for (i, (a, w)) in band.iter().zip(&want).enumerate() {
                    assert!(close(*a, *w), "{mode}, band {b}: pixel {i}: {a} vs {w}");
                }
            }
            outputs.push((mode, got));
        }
        for (mode, got) in &outputs[1..] {
            for (b, band) in got.iter().enumerate() {
                assert!(
                    same_pixels(band, &outputs[0].1[b]),
                    "{bands} band(s): {mode} differs from {}",
                    outputs[0].0
                );
            }
        }
    }
}

/// More workers than CPUs: only as many run at once as there are CPUs, so the plan spreads
/// the raster over those (four chunks each) and keeps whole output tiles, where spreading it
/// over every worker would cut chunks below one tile (the output's tiles written in parts).
#[test]
fn more_workers_than_cpus_keep_whole_output_tiles() {
    use gdal::{raster::RasterCreationOptions, DriverManager};
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sparse.tif");
    // One 256x256 output tile at F = 8 reads 2048x2048 Float32 (16 MiB); 4 of them per CPU.
    // Sparse: no block is written, only the header `plan` reads.
    let (w, h) = (2048 * 4 * cpus, 2048);
    let opts = RasterCreationOptions::from_iter([
        "TILED=YES",
        "COMPRESS=DEFLATE",
        "SPARSE_OK=TRUE",
        "BIGTIFF=YES",
    ]);
    DriverManager::get_driver_by_name("GTiff")
        .unwrap()
        .create_with_band_type_with_options::<f32, _>(&input, w, h, 1, &opts)
        .unwrap();
    let plan = |workers: usize| {
        let o = run(coordinator()
            .args(["--workers", &workers.to_string(), "plan"])
            .arg(&input)
            .args(["--factor", "8"]));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Twice the CPUs: the worker count alone would ask for chunks of 8 MiB.
    let over = plan(2 * cpus);
    assert!(
        over.contains(&format!("{} of 2048x2048 pixels", 4 * cpus))
            && over.contains("whole 256x256 output tiles"),
        "{over}"
    );
    // With a chunk budget below one tile, the budget still rules: strips, not tiles.
    let o = run(coordinator()
        .args(["--workers", &(2 * cpus).to_string(), "plan"])
        .arg(&input)
        .args(["--factor", "8", "--chunk-mib", "8"]));
    let small = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success()
            && small.contains("of 8192x256 pixels")
            && !small.contains("output tiles"),
        "{small}"
    );
}

//! Fuzz-style: 200 randomly corrupted copies of a small tiled GeoTIFF (random bytes in tile
//! data, in the header and directory, truncations) run through the pool. No run may panic
//! or hang; each exits 0 (clean), 3 (bad input) or 5 (quarantined); and every output pixel
//! outside the reported quarantined windows equals the clean run, while every block that
//! GDAL cannot read lies inside one.
//!
//! Seeded: a failure prints the seed and the case; `BLOCKSUM_FUZZ_SEED` and
//! `BLOCKSUM_FUZZ_CASES` reproduce or widen a run.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::common::*;

const SIZE: usize = 256;
const TILE: usize = 32;
const F: usize = 4;
/// Per run: far above the ~0.3 s a run takes, far below a hang.
const RUN_LIMIT: Duration = Duration::from_secs(60);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        crate::common::xorshift(&mut self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Where the file's tile data starts: before it, the header and directories.
fn first_tile_offset(path: &Path) -> usize {
    let ds = gdal::Dataset::open(path).unwrap();
    let band = ds.rasterband(1).unwrap();
    let n = SIZE / TILE;
    (0..n * n)
        .map(|i| {
            gdal::Metadata::metadata_item(
                &band,
                &format!("BLOCK_OFFSET_{}_{}", i % n, i / n),
                "TIFF",
            )
            .unwrap()
            .parse::<usize>()
            .unwrap()
        })
        .min()
        .unwrap()
}

/// What GDAL itself reads of each tile of `path`: `None` for a tile it cannot read. `None`
/// overall when the file does not open as the same raster (its directory was changed).
fn tiles_as_read(path: &Path) -> Option<Vec<Option<Vec<f32>>>> {
    let ds = gdal::Dataset::open(path).ok()?;
    if ds.raster_size() != (SIZE, SIZE) || ds.raster_count() != 1 {
        return None;
    }
    let band = ds.rasterband(1).ok()?;
    if band.block_size() != (TILE, TILE)
        || band.band_type() != gdal::raster::GdalDataType::Float32
        || band.no_data_value() != Some(NODATA)
    {
        return None;
    }
    let n = SIZE / TILE;
    Some(
        (0..n * n)
            .map(|i| {
                let (x, y) = ((i % n) * TILE, (i / n) * TILE);
                band.read_as::<f32>((x as isize, y as isize), (TILE, TILE), (TILE, TILE), None)
                    .ok()
                    .map(|b| b.data().to_vec())
            })
            .collect(),
    )
}

fn tile_of_clean(clean: &[f32], i: usize) -> Vec<f32> {
    let n = SIZE / TILE;
    let (x0, y0) = ((i % n) * TILE, (i / n) * TILE);
    let mut v = Vec::with_capacity(TILE * TILE);
    for y in y0..y0 + TILE {
        v.extend_from_slice(&clean[y * SIZE + x0..y * SIZE + x0 + TILE]);
    }
    v
}

fn same_f32(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn corrupted_inputs_never_panic_hang_or_lose_pixels() {
    let seed: u64 = std::env::var("BLOCKSUM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b10c_5a11);
    let cases: usize = std::env::var("BLOCKSUM_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    let clean_px = write_f32(
        &input,
        &RasterSpec {
            width: SIZE,
            height: SIZE,
            tile: Some(TILE),
            ..RasterSpec::default()
        },
    )
    .remove(0);
    let clean_out = dir.path().join("clean.tif");
    let o = run(resample_cmd("0", &input, &clean_out).args(["--factor", "4", "-q"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let clean = read_all(&clean_out).1.remove(0);
    let pristine = std::fs::read(&input).unwrap();
    let data_start = first_tile_offset(&input);

    let t_all = Instant::now();
    let mut by_code = std::collections::BTreeMap::new();
    let mut changed_silently = 0;
    for case in 0..cases {
        let mut rng = Rng((seed ^ (case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
        let mut bytes = pristine.clone();
        let kind = corrupt(&mut bytes, &mut rng, data_start, case);
        let what = format!("seed {seed} case {case} ({kind})");
        let path = dir.path().join("bad.tif");
        std::fs::write(&path, &bytes).unwrap();
        let out = dir.path().join("bad-out.tif");
        let rep = dir.path().join("bad-out.json");
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&rep);
        // A failed case (exit 6) keeps its chunk journal for --resume; each case is a new run.
        let _ = std::fs::remove_file(dir.path().join("bad-out.tif.journal"));

        let t0 = Instant::now();
        let child = coordinator()
            .args(["--workers", "1", "resample", "--spare-workers", "0"])
            .arg(&path)
            .arg(&out)
            .args(["--factor", "4", "--chunk-mib", "0.07", "-q", "--report"])
            .arg(&rep)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o = output_within(child, RUN_LIMIT.saturating_sub(t0.elapsed()), false)
            .unwrap_or_else(|o| panic!("{what}: no exit within {RUN_LIMIT:?}: {}", stderr(&o)));
        let status = o.status;
        let err = stderr(&o);
        let code = status.code();
        assert!(!err.contains("panicked"), "{what}: {err}");
        *by_code.entry(code).or_insert(0) += 1;
        let as_read = tiles_as_read(&path);
        match code {
            Some(0) | Some(5) => {}
            Some(3) => continue,
            // A directory that now describes another raster (say, a huge one whose every
            // block fails to read) trips the quarantine breaker: that is a broken input.
            Some(6) if as_read.is_none() && kind == "directory" => {
                eprintln!("{what}: exit 6 (another raster now): {}", err.trim());
                continue;
            }
            _ => panic!("{what}: exit {code:?}: {err}"),
        }
        let Some(tiles) = as_read else {
            // Another raster now: nothing to compare with.
            continue;
        };
        let inside = quarantined(&report(&rep), SIZE / F);
        assert_eq!(code == Some(5), inside.iter().any(|&q| q), "{what}: {err}");
        let got = read_all(&out).1.remove(0);
        let clean = Clean {
            input: &clean_px,
            output: &clean,
        };
        changed_silently += check_tiles(&what, &tiles, &got, &inside, clean);
    }
    eprintln!(
        "fuzz: {cases} cases in {:.1} s, exit codes {by_code:?}, {changed_silently} tile(s) GDAL decoded to other values without an error",
        t_all.elapsed().as_secs_f64()
    );
}

/// Corrupts `bytes` (a copy of the clean file, its tiles from `data_start` on) the way case
/// `case` does; says how.
fn corrupt(bytes: &mut Vec<u8>, rng: &mut Rng, data_start: usize, case: usize) -> &'static str {
    match case % 3 {
        0 => {
            // Random bytes in tile data.
            for _ in 0..1 + rng.below(8) {
                let at = data_start + rng.below(bytes.len() - data_start);
                bytes[at] = rng.next() as u8;
            }
            "tile data"
        }
        1 => {
            // Random bytes in the header and directory (tags, offsets, byte counts).
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(data_start);
                bytes[at] = rng.next() as u8;
            }
            "directory"
        }
        _ => {
            bytes.truncate(rng.below(bytes.len()));
            "truncation"
        }
    }
}

/// The output pixels (`ow` a side) inside the report's quarantined windows.
fn quarantined(report: &serde_json::Value, ow: usize) -> Vec<bool> {
    let mut inside = vec![false; ow * ow];
    for q in report["totals"]["quarantined_windows"].as_array().unwrap() {
        let o: Vec<usize> = serde_json::from_value(q["out_window"].clone()).unwrap();
        for y in o[1]..o[1] + o[3] {
            for x in o[0]..o[0] + o[2] {
                inside[y * ow + x] = true;
            }
        }
    }
    inside
}

/// The clean input's pixels and the clean run's output.
#[derive(Clone, Copy)]
struct Clean<'a> {
    input: &'a [f32],
    output: &'a [f64],
}

/// Checks each tile's output pixels: an unreadable tile (`None`) quarantined and nodata; a
/// tile GDAL reads as the clean file's, exact outside the quarantined windows and nodata in
/// them. Returns how many tiles GDAL decoded to other values without an error (not ours to
/// judge).
fn check_tiles(
    what: &str,
    tiles: &[Option<Vec<f32>>],
    got: &[f64],
    inside: &[bool],
    clean: Clean<'_>,
) -> usize {
    let (ow, n) = (SIZE / F, SIZE / TILE);
    let mut changed_silently = 0;
    for (t, tile) in tiles.iter().enumerate() {
        let (ox0, oy0) = ((t % n) * TILE / F, (t / n) * TILE / F);
        let px = (oy0..oy0 + TILE / F).flat_map(|y| (ox0..ox0 + TILE / F).map(move |x| y * ow + x));
        match tile {
            None => {
                for p in px {
                    assert!(inside[p], "{what}: unreadable tile {t} not quarantined");
                    assert!(got[p].is_nan(), "{what}: tile {t}: {}", got[p]);
                }
            }
            Some(data) if !same_f32(data, &tile_of_clean(clean.input, t)) => {
                changed_silently += 1;
            }
            Some(_) => {
                for p in px {
                    let want = clean.output[p];
                    if inside[p] {
                        assert!(got[p].is_nan(), "{what}: tile {t}: {}", got[p]);
                    } else {
                        assert!(
                            got[p].to_bits() == want.to_bits()
                                || (got[p].is_nan() && want.is_nan()),
                            "{what}: pixel {p} of tile {t}: {} vs clean {want}",
                            got[p]
                        );
                    }
                }
            }
        }
    }
    changed_silently
}

//! `--of COG` and `--pyramid`: each overview level equals a direct resample at that level's
//! factor, bit for bit, for every aggregation; the COG passes GDAL's own validator
//! (`validate_cloud_optimized_geotiff.py`, from python3-gdal, which scripts/setup.sh
//! installs), and the validator rejects a plain GTiff with overviews (so it is not a check
//! that passes anything); COG creation options are the COG driver's, refused when GDAL
//! refuses them; nothing reaches OUTPUT when the COG cannot be written.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::common::{
    coordinator, read_all, resample_cmd, run, same_pixels, stderr, write_f32, RasterSpec, NODATA,
};
use gdal::{Dataset, Metadata};

/// A 600 x 520 Float32 raster (nodata, NaN, a hole) in 128-pixel tiles, two bands.
fn input(dir: &Path) -> PathBuf {
    let p = dir.join("in.tif");
    write_f32(
        &p,
        &RasterSpec {
            width: 600,
            height: 520,
            bands: 2,
            tile: Some(128),
            nodata: Some(NODATA),
            seed: 12,
        },
    );
    p
}

/// Every band of overview `level` of `path`, as f64, and the overview's size.
fn overview(path: &Path, level: usize) -> ((usize, usize), Vec<Vec<f64>>) {
    let ds = Dataset::open(path).unwrap();
    let mut size = (0, 0);
    let bands = (1..=ds.raster_count())
        .map(|b| {
            let ov = ds.rasterband(b).unwrap().overview(level).unwrap();
            size = ov.size();
            ov.read_as::<f64>((0, 0), size, size, None)
                .unwrap()
                .data()
                .to_vec()
        })
        .collect();
    (size, bands)
}

fn overview_count(path: &Path) -> i32 {
    let ds = Dataset::open(path).unwrap();
    ds.rasterband(1).unwrap().overview_count().unwrap()
}

/// Runs a resample; returns its summary (stderr).
fn resample(input: &Path, out: &Path, factor: u32, agg: &str, extra: &[&str]) -> String {
    let o = run(resample_cmd("2", input, out)
        .args(["-f", &factor.to_string(), "--agg", agg])
        .args(extra));
    assert!(o.status.success(), "{agg} x{factor}: {}", stderr(&o));
    stderr(&o)
}

/// Overviews of `out` equal the direct resamples of `input` at `factors`, bit for bit.
fn levels_match(dir: &Path, input: &Path, out: &Path, agg: &str, factors: &[u32]) {
    assert_eq!(overview_count(out), factors.len() as i32, "{agg}");
    for (level, &factor) in factors.iter().enumerate() {
        let direct = dir.join(format!("{agg}-x{factor}.tif"));
        resample(input, &direct, factor, agg, &[]);
        let (size, got) = overview(out, level);
        let (d, want) = read_all(&direct);
        assert_eq!(size, d.raster_size(), "{agg} x{factor}");
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                same_pixels(g, w),
                "{agg}: overview {level} band {} differs from the resample at factor {factor}",
                b + 1
            );
        }
    }
}

/// GDAL's COG validator, run by a Python that has GDAL's bindings: exit status and text.
fn validate(path: &Path) -> (bool, String) {
    for python in ["python3", "/usr/bin/python3"] {
        let has = Command::new(python)
            .args([
                "-c",
                "import osgeo_utils.samples.validate_cloud_optimized_geotiff",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has {
            continue;
        }
        let o = Command::new(python)
            .args(["-m", "osgeo_utils.samples.validate_cloud_optimized_geotiff"])
            .arg(path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        return (o.status.success(), text);
    }
    panic!(
        "GDAL's validate_cloud_optimized_geotiff (python3-gdal) is not installed: run bash scripts/setup.sh --tests"
    );
}

#[test]
fn cog_pyramid_levels_equal_direct_resamples_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    // Output 300 x 260 in 128-pixel tiles: overviews x2 (130) and x4 (65), i.e. the
    // aggregation at factors 4 and 8.
    for agg in ["sum", "mean", "min", "max", "count"] {
        let out = dir.path().join(format!("{agg}.tif"));
        let summary = resample(
            &input,
            &out,
            2,
            agg,
            &["--of", "COG", "--pyramid", "--co", "BLOCKSIZE=128"],
        );
        // Min, max and count levels come from the level below; floating-point sums and
        // means are re-aggregated from the input. Both must be exact.
        let derived = if matches!(agg, "sum" | "mean") { 0 } else { 2 };
        assert!(
            summary.contains(&format!("{derived} derived from the level below")),
            "{agg}: {summary}"
        );
        let (ok, text) = validate(&out);
        assert!(ok, "{agg}: not a valid COG: {text}");
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(
            ds.metadata_domain("IMAGE_STRUCTURE")
                .unwrap_or_default()
                .iter()
                .find(|m| m.starts_with("LAYOUT=")),
            Some(&"LAYOUT=COG".to_string()),
            "{agg}"
        );
        levels_match(dir.path(), &input, &out, agg, &[4, 8]);
        // The base level is the plain resample's.
        let plain = dir.path().join(format!("{agg}-x2.tif"));
        resample(&input, &plain, 2, agg, &[]);
        let (a, b) = (read_all(&out).1, read_all(&plain).1);
        assert!(
            a.iter().zip(&b).all(|(x, y)| same_pixels(x, y)),
            "{agg}: the COG's base level differs from the plain resample"
        );
    }
}

/// A UInt16 raster (nodata 0, a third of it) whose sums are exact in f64 in any order.
fn input_u16(dir: &Path) -> PathBuf {
    use gdal::{raster::Buffer, DriverManager};
    let p = dir.join("u16.tif");
    let (w, h) = (530usize, 410usize);
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let ds = driver.create_with_band_type::<u16, _>(&p, w, h, 1).unwrap();
    let mut st = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u16> = (0..w * h)
        .map(|_| {
            let st = crate::common::xorshift(&mut st);
            if st.is_multiple_of(3) {
                0
            } else {
                (st >> 20) as u16
            }
        })
        .collect();
    let mut band = ds.rasterband(1).unwrap();
    band.set_no_data_value(Some(0.0)).unwrap();
    band.write((0, 0), (w, h), &mut Buffer::new((w, h), data))
        .unwrap();
    p
}

#[test]
fn integer_sums_are_derived_from_the_level_below_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let input = input_u16(dir.path());
    let out = dir.path().join("sum.tif");
    // 265 x 205 output, GTiff tiles of 64: x2 (103), x4 (52): factors 4 and 8.
    let summary = resample(
        &input,
        &out,
        2,
        "sum",
        &[
            "--pyramid",
            "--co",
            "BLOCKXSIZE=64",
            "--co",
            "BLOCKYSIZE=64",
        ],
    );
    assert!(
        summary.contains("2 derived from the level below"),
        "{summary}"
    );
    levels_match(dir.path(), &input, &out, "sum", &[4, 8]);
}

#[test]
fn gtiff_pyramid_is_internal_overviews_and_not_a_cog() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let out = dir.path().join("g.tif");
    // GTiff tiles default to 256: 300 x 260 gets x2 (130) only.
    resample(&input, &out, 2, "sum", &["--pyramid"]);
    levels_match(dir.path(), &input, &out, "sum", &[4]);
    // The validator tells a GTiff whose overviews follow the main image from a COG.
    let (ok, text) = validate(&out);
    assert!(!ok, "a plain GTiff passed as a COG: {text}");
    // Nothing but the output is left beside it (no scratch levels, no lock).
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["g.tif", "in.tif", "sum-x4.tif"]);
}

#[test]
fn cog_without_pyramid_has_no_resampled_overviews() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let out = dir.path().join("c.tif");
    resample(
        &input,
        &out,
        1,
        "sum",
        &["--of", "cog", "--co", "COMPRESS=ZSTD"],
    );
    let (ok, text) = validate(&out);
    assert!(ok, "not a valid COG: {text}");
    assert_eq!(overview_count(&out), 0);
    let ds = Dataset::open(&out).unwrap();
    let md = ds.metadata_domain("IMAGE_STRUCTURE").unwrap_or_default();
    assert!(md.iter().any(|m| m == "COMPRESSION=ZSTD"), "{md:?}");
}

#[test]
fn refused_options_and_failed_cog_leave_nothing_at_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let out = dir.path().join("o.tif");
    for (args, code, needle) in [
        (
            &["--of", "COG", "--co", "TILED=YES"][..],
            2,
            "driver COG does not support creation option TILED",
        ),
        (
            &["--of", "COG", "--co", "BLOCKSIZE=100"][..],
            2,
            "BLOCKSIZE",
        ),
        (
            &["--of", "COG", "--pyramid", "--co", "OVERVIEWS=AUTO"][..],
            2,
            "cannot be used with --pyramid",
        ),
        (&["--co", "COMPRESS=NOPE"][..], 2, "NOPE"),
        (&["--of", "PNG"][..], 2, "PNG"),
    ] {
        let o = run(coordinator()
            .args(["-q", "--workers", "1", "resample"])
            .arg(&input)
            .arg(&out)
            .args(["-f", "2"])
            .args(args));
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!out.exists(), "{args:?}");
    }
    // A COG the driver cannot write (a JPEG-compressed Float32 raster): exit 4, and neither
    // OUTPUT nor a temporary is left.
    let o = run(coordinator()
        .args(["-q", "--workers", "1", "resample"])
        .arg(&input)
        .arg(&out)
        .args([
            "-f",
            "2",
            "--pyramid",
            "--of",
            "COG",
            "--co",
            "COMPRESS=JPEG",
        ]));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("COG"), "{}", stderr(&o));
    // Nothing at OUTPUT; the chunk journal stays, so `--resume` does not recompute them.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "in.tif")
        .collect();
    assert_eq!(left, ["o.tif.journal"], "left behind: {left:?}");
}

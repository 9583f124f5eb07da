//! Target grids end to end (`--tr`, `--te`, `--tap`, `--like`): the same bits whatever the
//! chunking, the pool, shards + merge or a SIGKILL + `--resume` did; an integer multiple
//! through `--tr` is `--factor`'s output; the input's total kept; the refusals; the output
//! beside `gdalwarp -r sum`'s; COG with a pyramid, batches with `--like`, and `plan`. The
//! values against an independent numpy reference are in `python/tests/test_grid.py`.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::{
    cannot_check, coordinator, read_all, resample_cmd, run, same_pixels, stderr, wait_for,
    write_f32, RasterSpec,
};
use crate::compare::assert_same_raster;
use gdal::{spatial_ref::SpatialRef, Dataset, DriverManager};

/// The test raster: 1003 x 777 Float32, 30 m pixels (EPSG:32633), nodata, NaN, a hole.
fn input(dir: &Path) -> (PathBuf, Vec<f32>) {
    let path = dir.join("in.tif");
    let data = write_f32(&path, &RasterSpec::default()).remove(0);
    (path, data)
}

/// The valid total of the input.
fn total_of(data: &[f32]) -> f64 {
    data.iter()
        .filter(|v| !v.is_nan() && **v as f64 != crate::common::NODATA)
        .map(|&v| v as f64)
        .sum()
}

/// The sum of every valid output cell.
fn output_total(path: &Path) -> f64 {
    let (ds, bands) = read_all(path);
    let nd = ds.rasterband(1).unwrap().no_data_value();
    bands[0]
        .iter()
        .filter(|v| !v.is_nan() && Some(**v) != nd)
        .sum()
}

fn resample(input: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    run(resample_cmd("2", input, out).args(args))
}

/// Same grid and the same pixels bit for bit (metadata aside: the plan's digest names the
/// chunking).
fn assert_same_cells(a: &Path, b: &Path) {
    let (da, pa) = read_all(a);
    let (db, pb) = read_all(b);
    assert_eq!(da.raster_size(), db.raster_size(), "{a:?} vs {b:?}: size");
    assert_eq!(
        da.geo_transform().unwrap(),
        db.geo_transform().unwrap(),
        "{a:?} vs {b:?}: geotransform"
    );
    for (x, y) in pa.iter().zip(&pb) {
        assert!(same_pixels(x, y), "{a:?} vs {b:?}: pixels differ");
    }
}

// 7.5 input pixels per cell across, 4.2 down: neither divides the input.
const TR: [&str; 3] = ["--tr", "225", "126"];

#[test]
fn the_same_bits_whatever_the_chunks_the_pool_or_the_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (input, data) = input(dir.path());
    let base = dir.path().join("base.tif");
    let o = resample(&input, &base, &TR);
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds, _) = read_all(&base);
    // 1003 * 30 / 225 = 133.7 and 777 * 30 / 126 = 185: whole cells, none dropped.
    assert_eq!(ds.raster_size(), (134, 185));
    assert_eq!(
        ds.geo_transform().unwrap(),
        [500000.0, 225.0, 0.0, 5200000.0, 0.0, -126.0]
    );
    let total = total_of(&data);
    let kept = output_total(&base);
    assert!(
        ((kept - total) / total).abs() <= 1e-12,
        "total {total}, output {kept}"
    );
    for (name, args) in [
        ("small", vec!["--chunk-mib", "0.05"]),
        ("inproc", vec!["--chunk-mib", "0.05", "--in-process"]),
        ("one", vec!["--chunk-mib", "0.2"]),
    ] {
        let out = dir.path().join(format!("{name}.tif"));
        let mut a: Vec<&str> = TR.to_vec();
        a.extend(&args);
        let o = resample(&input, &out, &a);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_same_cells(&base, &out);
    }
    let one_worker = dir.path().join("w1.tif");
    let o = run(resample_cmd("1", &input, &one_worker)
        .args(TR)
        .args(["--chunk-mib", "0.05"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_cells(&base, &one_worker);
    // Shards of small chunks, merged: the one-node run of the same chunks, metadata too.
    let small = dir.path().join("small.tif");
    let merged = dir.path().join("merged.tif");
    for i in 0..3 {
        let shard = format!("{i}/3");
        let mut a: Vec<&str> = TR.to_vec();
        a.extend(["--chunk-mib", "0.05", "--shard", &shard]);
        let o = resample(&input, &merged, &a);
        assert!(o.status.success(), "shard {i}: {}", stderr(&o));
    }
    let o = run(coordinator().arg("merge").arg(&merged));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_raster(&small, &merged);
}

#[test]
fn sigkill_then_resume_gives_the_uninterrupted_bits() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = input(dir.path());
    let reference = dir.path().join("ref.tif");
    let args = ["--tr", "225", "126", "--chunk-mib", "0.05"];
    let o = resample(&input, &reference, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("out.tif");
    let journal = dir.path().join("out.tif.journal");
    // Chunk 5 sleeps 10 s: the run is killed once chunks have been journaled before it ends.
    let mut child = resample_cmd("2", &input, &out)
        .args(args)
        .args(["--inject-fault", "slow:5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "chunks journaled", || {
        let n = coordinator::journal::Scan::read(&journal)
            .ok()
            .flatten()
            .map_or(0, |s| s.records.len());
        (n >= 3).then_some(())
    });
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(!out.exists(), "no output before the commit");
    let o = resample(&input, &out, &[&args[..], &["--resume"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_raster(&reference, &out);
}

#[test]
fn an_integer_multiple_through_tr_or_like_is_the_factor_output() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = input(dir.path());
    let factor = dir.path().join("f8.tif");
    let o = resample(&input, &factor, &["--factor", "8"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tr = dir.path().join("tr.tif");
    let o = resample(&input, &tr, &["--tr", "240", "240"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_raster(&factor, &tr);
    let like = dir.path().join("like.tif");
    let o = resample(&input, &like, &["--like", factor.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_raster(&factor, &like);
}

/// A Float32 raster of `w x h` ones with `gt` and `epsg`, for `--like` and the refusals.
fn write_grid(path: &Path, (w, h): (usize, usize), gt: [f64; 6], epsg: u32) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = driver
        .create_with_band_type::<f32, _>(path, w, h, 1)
        .unwrap();
    ds.set_geo_transform(&gt).unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(epsg).unwrap())
        .unwrap();
}

#[test]
fn refusals_name_the_problem_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = input(dir.path());
    let other_crs = dir.path().join("wgs84.tif");
    write_grid(
        &other_crs,
        (10, 10),
        [15.0, 0.1, 0.0, 47.0, 0.0, -0.1],
        4326,
    );
    let rotated = dir.path().join("rotated.tif");
    write_grid(
        &rotated,
        (10, 10),
        [500000.0, 300.0, 5.0, 5200000.0, 5.0, -300.0],
        32633,
    );
    let rotated_input = dir.path().join("rotated-in.tif");
    write_grid(
        &rotated_input,
        (50, 50),
        [500000.0, 30.0, 2.0, 5200000.0, 2.0, -30.0],
        32633,
    );
    let like = |p: &Path| vec!["--like".to_string(), p.display().to_string()];
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // GDAL would wait for ever on a FIFO's writer.
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let missing = dir.path().join("missing.tif");
    let cases: Vec<(&str, &Path, Vec<String>, i32, &str)> = vec![
        ("other crs", &input, like(&other_crs), 3, "reproj"),
        ("fifo ref", &input, like(&fifo), 3, "is a FIFO"),
        (
            "missing ref",
            &input,
            like(&missing),
            3,
            "it does not exist",
        ),
        ("rotated ref", &input, like(&rotated), 3, "rotated"),
        (
            "rotated input",
            &rotated_input,
            s(&["--tr", "60", "60"]),
            3,
            "rotated",
        ),
        (
            "tr and factor",
            &input,
            s(&["--tr", "60", "60", "-f", "2"]),
            2,
            "give one",
        ),
        (
            "zero tr",
            &input,
            s(&["--tr", "0", "60"]),
            2,
            "not a positive number",
        ),
        (
            "negative tr",
            &input,
            s(&["--tr", "60", "-60"]),
            2,
            "not a positive number",
        ),
        (
            "te outside",
            &input,
            s(&["--tr", "60", "60", "--te", "0", "0", "1000", "1000"]),
            2,
            "does not intersect",
        ),
        (
            "te alone",
            &input,
            s(&["--te", "0", "0", "1", "1"]),
            2,
            "need --tr",
        ),
        (
            "like and tr",
            &input,
            [like(&other_crs), s(&["--tr", "1", "1"])].concat(),
            2,
            "cannot be combined",
        ),
        ("no grid", &input, vec![], 2, "no output grid"),
    ];
    for (name, inp, args, code, says) in cases {
        let out = dir.path().join(format!("{}.tif", name.replace(' ', "-")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = resample(inp, &out, &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{name}: one error line: {err}"
        );
        assert!(!out.exists(), "{name}: nothing written");
    }
}

/// A Float32 raster of `w x h` 30 m pixels with 30 % nodata (-9999) and no NaN (GDAL's warper
/// lets a NaN spoil its whole cell), as the issue measured `gdalwarp` on.
fn write_no_nan(path: &Path, (w, h): (usize, usize)) -> Vec<f32> {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = driver
        .create_with_band_type::<f32, _>(path, w, h, 1)
        .unwrap();
    ds.set_geo_transform(&[500000.0, 30.0, 0.0, 5200000.0, 0.0, -30.0])
        .unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(32633).unwrap())
        .unwrap();
    let data: Vec<f32> = (0..w * h)
        .map(|i| {
            let k = (i * 7919 + (i / w) * 104_729) % 1000;
            if k < 300 {
                -9999.0
            } else {
                k as f32 * 0.25
            }
        })
        .collect();
    let mut band = ds.rasterband(1).unwrap();
    band.set_no_data_value(Some(-9999.0)).unwrap();
    let mut buf = gdal::raster::Buffer::new((w, h), data.clone());
    band.write((0, 0), (w, h), &mut buf).unwrap();
    data
}

/// Where `gdalwarp -r sum` differs from ours with the same `-tr`: GDAL sizes its grid to the
/// nearest whole cell, so where the input needs 133.2 cells it makes 133 and drops the input
/// under the last fraction of a cell: its total is short. Ours extends to whole cells, covers
/// every input pixel and keeps the total.
#[test]
fn beside_gdalwarp_sum() {
    if Command::new("gdalwarp").arg("--version").output().is_err() {
        cannot_check("gdalwarp is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    let data = write_no_nan(&input, (999, 777));
    // 999 * 30 / 225 = 133.2 columns, 777 * 30 / 126 = 185 rows.
    let tr = ["--tr", "225", "126"];
    let ours = dir.path().join("ours.tif");
    let o = resample(&input, &ours, &tr);
    assert!(o.status.success(), "{}", stderr(&o));
    let theirs = dir.path().join("theirs.tif");
    let o = run(Command::new("gdalwarp")
        .args(["-q", "-r", "sum", "-tr", "225", "126", "-ot", "Float64"])
        .arg(&input)
        .arg(&theirs));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds_ours, _) = read_all(&ours);
    let ds_theirs = Dataset::open(&theirs).unwrap();
    assert_eq!(ds_ours.raster_size(), (134, 185));
    assert_eq!(
        ds_theirs.raster_size(),
        (133, 185),
        "GDAL drops the partial column"
    );
    let total = total_of(&data);
    let kept = output_total(&ours);
    let theirs_total = output_total(&theirs);
    assert!(
        ((kept - total) / total).abs() <= 1e-12,
        "ours {kept}, input {total}"
    );
    // What GDAL leaves out: the input under our last column but for its first 0.2 of a
    // cell (45 m, 1.5 pixels) that GDAL's last column reaches.
    let dropped: f64 = (0..777)
        .flat_map(|y| (0..999).map(move |x| (x, y)))
        .filter(|&(x, _)| x as f64 >= 133.0 * 7.5)
        .map(|(x, y)| data[y * 999 + x])
        .filter(|&v| v != -9999.0)
        .map(f64::from)
        .sum();
    assert!(dropped > 0.0);
    assert!(
        theirs_total < total - 0.5 * dropped,
        "gdalwarp's total {theirs_total}, input {total}, under the dropped fraction {dropped}"
    );
    eprintln!(
        "gdalwarp -r sum: 133x185, total {theirs_total} ({:+.4} %); ours 134x185, total {kept} ({:+.1e} %)",
        (theirs_total - total) / total * 100.0,
        (kept - total) / total * 100.0
    );
}

#[test]
fn cog_with_pyramid_batch_with_like_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let (input, data) = input(dir.path());
    // A COG with exact overviews: every level keeps the total.
    let cog = dir.path().join("cog.tif");
    let o = resample(
        &input,
        &cog,
        &["--tr", "45", "45", "--of", "COG", "--pyramid"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let ds = Dataset::open(&cog).unwrap();
    let band = ds.rasterband(1).unwrap();
    assert!(band.overview_count().unwrap() >= 1);
    let total = total_of(&data);
    for i in 0..band.overview_count().unwrap() {
        let ov = band.overview(i as usize).unwrap();
        let (w, h) = ov.size();
        let v = ov.read_as::<f64>((0, 0), (w, h), (w, h), None).unwrap();
        let s: f64 = v.data().iter().filter(|x| !x.is_nan()).sum();
        assert!(
            ((s - total) / total).abs() <= 1e-9,
            "overview {i}: {s} vs {total}"
        );
    }
    // A batch onto one reference grid, offset by a third of a pixel.
    let reference = dir.path().join("ref.tif");
    write_grid(
        &reference,
        (40, 30),
        [500010.0, 700.0, 0.0, 5199990.0, 0.0, -700.0],
        32633,
    );
    let second = dir.path().join("in2.tif");
    write_f32(
        &second,
        &RasterSpec {
            width: 500,
            height: 600,
            seed: 9,
            ..Default::default()
        },
    );
    let outs = dir.path().join("outs");
    std::fs::create_dir(&outs).unwrap();
    let o = run(resample_cmd("2", &input, &second)
        .arg("--out-dir")
        .arg(&outs)
        .arg("--like")
        .arg(&reference));
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["in.tif", "in2.tif"] {
        let ds = Dataset::open(outs.join(name)).unwrap();
        assert_eq!(ds.raster_size(), (40, 30), "{name}");
        assert_eq!(
            ds.geo_transform().unwrap(),
            [500010.0, 700.0, 0.0, 5199990.0, 0.0, -700.0]
        );
    }
    // `plan` names the grid and the weights' layout.
    let o = run(coordinator().arg("plan").arg(&input).args(TR));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("134x185") && text.contains("7.500000 x 4.200000 input pixels per cell"),
        "{text}"
    );
}

/// Each overview of a target grid's pyramid is the run onto that grid coarsened by 2^k, bit
/// for bit: a count (fractional weights: re-aggregated from the input, never four cells
/// added) and a max (derived from the level below, which is exact for min and max), also on
/// a grid that crops the input with odd cell counts (where a coarser last cell takes in
/// pixels the base grid left out, so even a max is re-aggregated).
#[test]
fn pyramid_levels_on_a_target_grid_are_the_coarser_grids_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = input(dir.path());
    // 1.3 input pixels per cell: weights such as 0.3 and 0.7, not sums of powers of two.
    // The crop: 701 x 551 cells from 300 m inside the input's top-left corner.
    let crop = (500300.0, 5199700.0, 701.0, 551.0);
    for (agg, cropped) in [("count", false), ("max", false), ("max", true)] {
        let te = |res: f64, halvings: i32| {
            let (x0, y1, w, h) = crop;
            let n = |cells: f64| (cells / 2f64.powi(halvings)).ceil();
            [x0, y1 - res * n(h), x0 + res * n(w), y1].map(|v| v.to_string())
        };
        let grid = |res: f64, halvings: i32| {
            let r = res.to_string();
            let mut a = vec!["--tr".to_string(), r.clone(), r, "--agg".into(), agg.into()];
            if cropped {
                a.push("--te".into());
                a.extend(te(res, halvings));
            }
            a
        };
        let out = dir.path().join(format!("{agg}-{cropped}.tif"));
        let mut args = grid(39.0, 0);
        args.push("--pyramid".into());
        let o = run(resample_cmd("2", &input, &out).args(&args));
        assert!(o.status.success(), "{}", stderr(&o));
        let ds = Dataset::open(&out).unwrap();
        let band = ds.rasterband(1).unwrap();
        let levels = band.overview_count().unwrap() as usize;
        assert!(levels >= 2, "{agg}: {levels} levels");
        for i in 0..levels {
            let ov = band.overview(i).unwrap();
            let (w, h) = ov.size();
            let got = ov.read_as::<f64>((0, 0), (w, h), (w, h), None).unwrap();
            let res = 39.0 * 2f64.powi(i as i32 + 1);
            let direct = dir.path().join(format!("{agg}-{cropped}-{i}.tif"));
            let o = run(resample_cmd("2", &input, &direct).args(grid(res, i as i32 + 1)));
            assert!(o.status.success(), "{}", stderr(&o));
            let (dd, want) = read_all(&direct);
            let what = format!("{agg} (cropped: {cropped}) overview {i}");
            assert_eq!(dd.raster_size(), (w, h), "{what}: size");
            assert!(
                same_pixels(got.data(), &want[0]),
                "{what}: not the pixels of the run at {res}"
            );
        }
    }
}

/// `--like` takes the reference's CRS for an input that has none; an integer `--ot` on a
/// target grid's sum says that it rounds the fractional sums (the total is no longer kept).
#[test]
fn like_gives_its_crs_to_an_input_without_one_and_an_integer_sum_warns() {
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.tif");
    {
        let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
        let mut ds = driver
            .create_with_band_type::<f32, _>(&bare, 100, 80, 1)
            .unwrap();
        ds.set_geo_transform(&[500000.0, 30.0, 0.0, 5200000.0, 0.0, -30.0])
            .unwrap();
        let mut buf = gdal::raster::Buffer::new((100, 80), vec![1.0f32; 8000]);
        ds.rasterband(1)
            .unwrap()
            .write((0, 0), (100, 80), &mut buf)
            .unwrap();
    }
    assert!(Dataset::open(&bare).unwrap().projection().is_empty());
    let reference = dir.path().join("ref.tif");
    write_grid(
        &reference,
        (10, 8),
        [500000.0, 315.0, 0.0, 5200000.0, 0.0, -315.0],
        32633,
    );
    let out = dir.path().join("out.tif");
    let (report, events) = (dir.path().join("r.json"), dir.path().join("e.jsonl"));
    let o = run(resample_cmd("2", &bare, &out)
        .arg("--like")
        .arg(&reference)
        .arg("--report")
        .arg(&report)
        .arg("--events")
        .arg(&events));
    assert!(o.status.success(), "{}", stderr(&o));
    // The report and the plan event describe the grid (10 x 8 cells of 10.5 x 10.5 pixels).
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(r["options"]["target_grid"].is_string(), "{r}");
    assert_eq!(r["plan"]["target"]["width"], 10, "{r}");
    assert_eq!(r["plan"]["target"]["x"]["step"], 10.5, "{r}");
    let plan = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "plan")
        .expect("a plan event");
    assert!(plan["factor"].is_null(), "{plan}");
    assert_eq!(plan["target"]["height"], 8, "{plan}");
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.raster_size(), (10, 8));
    assert_eq!(
        ds.spatial_ref().unwrap().auth_code().unwrap(),
        32633,
        "the output has the reference's CRS"
    );

    let (input, _) = input(dir.path());
    let o = resample(
        &input,
        &dir.path().join("int.tif"),
        &["--tr", "45", "45", "--ot", "Int32"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a sum on a target grid is fractional"),
        "{}",
        stderr(&o)
    );
}

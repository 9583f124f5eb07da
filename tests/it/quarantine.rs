//! Quarantine is exact: a chunk that cannot be read is bisected down to the file's blocks,
//! and only the blocks that really fail are quarantined (nodata), named in the report, the
//! output's metadata and the closing warning; every other pixel equals a clean run.

use crate::common::*;

#[test]
fn one_corrupt_tile_quarantines_only_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 1024,
            height: 1024,
            tile: Some(64),
            ..RasterSpec::default()
        },
    );
    let clean = dir.path().join("clean.tif");
    let o = run(resample_cmd("0", &input, &clean).args(["--factor", "4", "--chunk-mib", "4"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, clean_bands) = read_all(&clean);
    corrupt_tile(&input, 5, 3);

    let out = dir.path().join("out.tif");
    let rep = dir.path().join("out.json");
    let o = run(resample_cmd("2", &input, &out)
        .args(["--factor", "4", "--chunk-mib", "4", "--report"])
        .arg(&rep));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    let report = report(&rep);
    // Chunks cover many tiles each (a 16x4-tile strip at most), yet one tile is quarantined.
    assert!(
        report["plan"]["chunk_width"].as_u64().unwrap()
            * report["plan"]["chunk_height"].as_u64().unwrap()
            >= 16 * 64 * 64,
        "{}",
        report["plan"]
    );
    let q = report["totals"]["quarantined_windows"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["window"], serde_json::json!([320, 192, 64, 64]));
    assert_eq!(q[0]["out_window"], serde_json::json!([80, 48, 16, 16]));
    let cause = q[0]["cause"].as_str().unwrap();
    assert!(cause.starts_with("worker error:"), "{cause}");
    // The chunk list shows the parents (split) and the parts with their parent.
    let chunks = report["chunks"].as_array().unwrap();
    let leaf = &chunks[q[0]["id"].as_u64().unwrap() as usize];
    assert_eq!(leaf["outcome"], "quarantined");
    let mut up = leaf["parent"].as_u64().expect("a part has a parent");
    loop {
        let p = &chunks[up as usize];
        assert_eq!(p["outcome"], "split", "{p}");
        assert_eq!(p["split"], "read_error", "{p}");
        match p["parent"].as_u64() {
            Some(pp) => up = pp,
            None => break,
        }
    }
    assert!(chunks
        .iter()
        .all(|c| ["done", "split", "quarantined"].contains(&c["outcome"].as_str().unwrap())));

    // Pixels: nodata in that window, the clean run's everywhere else.
    let (ds, bands) = read_all(&out);
    let ow = ds.raster_size().0;
    for (i, (g, c)) in bands[0].iter().zip(&clean_bands[0]).enumerate() {
        let (x, y) = (i % ow, i / ow);
        if (80..96).contains(&x) && (48..64).contains(&y) {
            assert!(g.is_nan(), "pixel {x},{y}: {g}, not the sum's nodata NaN");
        } else {
            assert!(
                g.to_bits() == c.to_bits() || (g.is_nan() && c.is_nan()),
                "pixel {x},{y}: {g} vs clean {c}"
            );
        }
    }
    let md = gdal::Metadata::metadata_item(&ds, "BLOCKSUM_QUARANTINED_CHUNKS", "").unwrap();
    assert!(md.ends_with(":320,192,64,64:80,48,16,16"), "{md}");
    assert!(!md.contains(';'), "{md}");

    // The closing warning names the window and GDAL's complaint.
    assert!(err.contains("1 window(s) quarantined"), "{err}");
    assert!(err.contains("input 320,192 64x64"), "{err}");
    assert!(err.contains("first cause: worker error:"), "{err}");
    assert!(!err.contains("the report says why"), "{err}");

    // Without a report, the warning points nowhere it cannot.
    let out2 = dir.path().join("out2.tif");
    let o = run(resample_cmd("1", &input, &out2).args(["--factor", "4", "--chunk-mib", "4"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("1 window(s) quarantined"), "{err}");
    assert!(!err.contains("report"), "{err}");
}

#[test]
fn a_crashing_region_is_bisected_and_its_parts_crash_once_each() {
    // An injected segfault targets a plan chunk's region: every part of it crashes too, so
    // all of it ends quarantined, leaf by leaf, after a bounded number of crashes, and none
    // of it runs in process.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 256,
            height: 256,
            tile: Some(64),
            ..RasterSpec::default()
        },
    );
    let out = dir.path().join("out.tif");
    let rep = dir.path().join("out.json");
    let o = run(resample_cmd("2", &input, &out)
        .args(["--factor", "4", "--chunk-mib", "0.07", "--report"])
        .arg(&rep)
        .args(["--inject-fault", "segv:1"]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("first cause: killed by SIGSEGV"), "{err}");
    let report = report(&rep);
    let chunks = report["chunks"].as_array().unwrap();
    let plan_chunks = report["plan"]["chunks"].as_u64().unwrap() as usize;
    let c1 = &chunks[1];
    assert_eq!(c1["outcome"], "split", "{c1}");
    assert_eq!(c1["split"], "crashes");
    assert_eq!(c1["attempts"].as_array().unwrap().len(), 3);
    // The parts of chunk 1 tile its window; every leaf is quarantined after one crash.
    let w1: Vec<u64> = serde_json::from_value(c1["window"].clone()).unwrap();
    let mut area = 0;
    for c in &chunks[plan_chunks..] {
        let att = c["attempts"].as_array().unwrap();
        assert_eq!(att.len(), 1, "{c}");
        assert_eq!(att[0]["executor"]["on"], "worker", "{c}");
        if c["outcome"] == "quarantined" {
            let w: Vec<u64> = serde_json::from_value(c["window"].clone()).unwrap();
            assert!(w[0] >= w1[0] && w[0] + w[2] <= w1[0] + w1[2], "{c}");
            assert!(w[1] >= w1[1] && w[1] + w[3] <= w1[1] + w1[3], "{c}");
            area += w[2] * w[3];
        } else {
            assert_eq!(c["outcome"], "split", "{c}");
        }
    }
    assert_eq!(area, w1[2] * w1[3]);
    for (i, c) in chunks[..plan_chunks].iter().enumerate() {
        if i != 1 {
            assert_eq!(c["outcome"], "done", "{c}");
        }
    }
}

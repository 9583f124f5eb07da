//! End to end with the real binaries: the pool (1, 2, 4 workers) and the in-process path give
//! identical pixels equal to a naive reference; georeferencing carries over; bad input gets
//! its documented exit code; a failed run leaves no output; workers are children mapping
//! the shared slots.

use std::{process::Stdio, time::Duration};

use crate::common::*;

#[test]
fn pool_and_in_process_agree_with_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    let spec = RasterSpec::default();
    let data = write_f32(&input, &spec);
    let f = 8;
    let want = reference_sum(&data[0], spec.width, spec.height, f, Some(NODATA));
    let mut outputs = Vec::new();
    for mode in ["1", "2", "4", "in-process"] {
        let out = dir.path().join(format!("out-{mode}.tif"));
        let mut cmd = coordinator();
        cmd.arg("resample")
            .arg(&input)
            .arg(&out)
            .args(["--factor", "8", "--chunk-mib", "0.1"]);
        if mode == "in-process" {
            cmd.arg("--in-process");
        } else {
            cmd.args(["--workers", mode]);
        }
        let o = run(&mut cmd);
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        let (ds, bands) = read_all(&out);
        assert_eq!(
            ds.raster_size(),
            (spec.width.div_ceil(f), spec.height.div_ceil(f))
        );
        let gt = ds.geo_transform().unwrap();
        assert_eq!(gt, [500000.0, 240.0, 0.0, 5200000.0, 0.0, -240.0]);
        assert_eq!(ds.spatial_ref().unwrap().auth_code().unwrap(), 32633);
        // A sum can equal the input's -9999: the output's nodata is NaN, which none can.
        let nd = ds.rasterband(1).unwrap().no_data_value();
        assert!(nd.is_some_and(f64::is_nan), "{nd:?}");
        for (i, (a, b)) in bands[0].iter().zip(&want).enumerate() {
            assert!(close(*a, *b), "{mode}: pixel {i}: {a} vs {b}");
        }
        // Some blocks are all nodata (the solid hole), and they are nodata in the output.
        assert!(bands[0].iter().any(|v| v.is_nan()));
        outputs.push((mode, bands));
    }
    for (mode, bands) in &outputs[1..] {
        assert!(
            same_pixels(&bands[0], &outputs[0].1[0]),
            "{mode} differs from 1 worker"
        );
    }
}

#[test]
fn multiband_selection_and_striped_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    let spec = RasterSpec {
        width: 301,
        height: 199,
        bands: 3,
        tile: None,
        ..RasterSpec::default()
    };
    let data = write_f32(&input, &spec);
    let out = dir.path().join("out.tif");
    let o = run(resample_cmd("2", &input, &out).args([
        "--factor",
        "7",
        "--band",
        "3",
        "--band",
        "1",
        "--chunk-mib",
        "0.05",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds, bands) = read_all(&out);
    assert_eq!(ds.raster_count(), 2);
    // Band descriptions follow their bands.
    use gdal::Metadata;
    assert_eq!(
        ds.rasterband(1).unwrap().description().unwrap(),
        "test band 3"
    );
    assert_eq!(
        ds.rasterband(2).unwrap().description().unwrap(),
        "test band 1"
    );
    for (got, src) in bands.iter().zip([2, 0]) {
        let want = reference_sum(&data[src], spec.width, spec.height, 7, Some(NODATA));
        assert!(
            got.iter().zip(&want).all(|(a, b)| close(*a, *b)),
            "band {src}"
        );
    }
}

#[test]
fn bad_inputs_get_their_exit_codes_and_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 64,
            height: 48,
            ..RasterSpec::default()
        },
    );
    let junk = dir.path().join("junk.tif");
    std::fs::write(&junk, "this is not a raster").unwrap();
    let exists = dir.path().join("exists.tif");
    std::fs::write(&exists, "x").unwrap();
    let out = dir.path().join("out.tif");
    let d = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let missing_dir = dir.path().join("no/such/dir/out.tif");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "resample".into(),
                d(&dir.path().join("nope.tif")),
                d(&out),
                "--factor".into(),
                "2".into(),
            ],
            3,
            "does not exist",
        ),
        (
            vec![
                "resample".into(),
                d(&junk),
                d(&out),
                "--factor".into(),
                "2".into(),
            ],
            3,
            "not a raster",
        ),
        (
            vec![
                "resample".into(),
                d(&input),
                d(&out),
                "--factor".into(),
                "0".into(),
            ],
            3,
            "at least 1",
        ),
        (
            vec![
                "resample".into(),
                d(&input),
                d(&out),
                "--factor".into(),
                "2".into(),
                "--band".into(),
                "4".into(),
            ],
            3,
            "band 4 does not exist",
        ),
        (
            vec![
                "resample".into(),
                d(&input),
                d(&exists),
                "--factor".into(),
                "2".into(),
            ],
            4,
            "--overwrite",
        ),
        (
            vec![
                "resample".into(),
                d(&input),
                d(&missing_dir),
                "--factor".into(),
                "2".into(),
            ],
            4,
            "does not exist",
        ),
        (
            vec![
                "resample".into(),
                d(&input),
                "/proc/out.tif".into(),
                "--factor".into(),
                "2".into(),
            ],
            4,
            "not writable",
        ),
        (
            vec![
                "--workers".into(),
                "many".into(),
                "resample".into(),
                d(&input),
                d(&out),
                "--factor".into(),
                "2".into(),
            ],
            2,
            "not a number",
        ),
        (
            vec![
                "resample".into(),
                d(&input),
                d(&out),
                "--factor".into(),
                "2".into(),
                "--inject-fault".into(),
                "crash:999".into(),
            ],
            3,
            "chunk 999",
        ),
        (
            vec![
                "resample".into(),
                d(&input),
                d(&out),
                "--factor".into(),
                "2".into(),
                "--inject-fault".into(),
                "boom:1".into(),
            ],
            2,
            "unknown kind",
        ),
    ];
    for (args, code, needle) in cases {
        let o = run(coordinator().args(&args));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} left an output");
    }
}

#[test]
fn a_failed_run_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 200,
            height: 100,
            ..RasterSpec::default()
        },
    );
    let out = dir.path().join("out.tif");
    // A worker binary that exits at once: the pool cannot start. Several times: the
    // coordinator once crashed at exit now and then on this path (GDAL torn down under the
    // writer thread still closing the temporary file).
    for _ in 0..6 {
        let o = run(resample_cmd("2", &input, &out).args([
            "--factor",
            "4",
            "--worker-bin",
            "/bin/false",
        ]));
        assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
        assert!(stderr(&o).contains("cannot start"), "{}", stderr(&o));
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "only the input should remain: {left:?}");
}

#[test]
fn workers_are_children_that_map_the_shared_slots() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 400,
            height: 400,
            ..RasterSpec::default()
        },
    );
    let out = dir.path().join("out.tif");
    // Chunk 0 hangs until the timeout, which keeps the pool alive long enough to look at it.
    let mut child = resample_cmd("3", &input, &out)
        .args([
            "--factor",
            "4",
            "--chunk-mib",
            "0.05",
            "--inject-fault",
            "hang:0",
            "--task-timeout",
            "4s",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Every worker maps the ring once it has started up.
    let maps_ring = |w: &u32| {
        std::fs::read_to_string(format!("/proc/{w}/maps"))
            .is_ok_and(|m| m.contains("memfd:blocksum-slots"))
    };
    wait_for(
        Duration::from_secs(10),
        "three workers and the warm spare mapping the slot ring",
        || {
            let w = worker_children(pid);
            (w.len() == 4 && w.iter().all(maps_ring)).then_some(())
        },
    );
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(out.exists());
}

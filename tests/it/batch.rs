//! Many inputs on one pool: `coordinator resample IN1 IN2 ... --out-dir DIR` against single
//! runs of each input, the pool's processes across the batch, one input's failure among good
//! ones, and the command lines that do not go together.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::common::*;
use gdal::{
    raster::{Buffer, GdalType, RasterCreationOptions},
    spatial_ref::SpatialRef,
    Dataset, DriverManager, Metadata,
};

/// Writes a GeoTIFF of type `T` whose pixel (x, y) of band b is `f(x, y, b)`.
fn write_typed<T: GdalType + Copy>(
    path: &Path,
    (w, h, bands): (usize, usize, usize),
    tile: Option<usize>,
    nodata: Option<f64>,
    f: impl Fn(usize, usize, usize) -> T,
) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut opts = vec!["COMPRESS=DEFLATE".to_string()];
    if let Some(t) = tile {
        opts.extend([
            "TILED=YES".into(),
            format!("BLOCKXSIZE={t}"),
            format!("BLOCKYSIZE={t}"),
        ]);
    }
    let opts = RasterCreationOptions::from_iter(opts.iter().map(String::as_str));
    let mut ds = driver
        .create_with_band_type_with_options::<T, _>(path, w, h, bands, &opts)
        .unwrap();
    ds.set_geo_transform(&[10.0, 0.5, 0.0, 50.0, 0.0, -0.5])
        .unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(4326).unwrap())
        .unwrap();
    for b in 1..=bands {
        let data: Vec<T> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y, b))
            .collect();
        let mut band = ds.rasterband(b).unwrap();
        if let Some(nd) = nodata {
            band.set_no_data_value(Some(nd)).unwrap();
        }
        band.write((0, 0), (w, h), &mut Buffer::new((w, h), data))
            .unwrap();
    }
}

/// Three inputs of different sizes, types, layouts and band counts.
fn three_inputs(dir: &Path) -> Vec<PathBuf> {
    let a = dir.join("a.tif");
    write_f32(
        &a,
        &RasterSpec {
            width: 1003,
            height: 777,
            ..RasterSpec::default()
        },
    );
    let b = dir.join("b.tif");
    write_typed::<i16>(&b, (300, 211, 2), None, Some(-1.0), |x, y, band| {
        if (x * 7 + y * 3) % 11 == 0 {
            -1
        } else {
            ((x * 13 + y * 29 + band * 101) % 2000) as i16 - 500
        }
    });
    let c = dir.join("c.tif");
    write_typed::<u8>(&c, (517, 389, 3), Some(128), None, |x, y, band| {
        ((x ^ y) * band % 256) as u8
    });
    vec![a, b, c]
}

/// What makes two outputs the same: size, types, nodata, georeferencing, metadata (of the
/// file and of each band) and every pixel.
fn assert_same_output(got: &Path, want: &Path) {
    let (g, gp) = read_all(got);
    let (w, wp) = read_all(want);
    assert_eq!(g.raster_size(), w.raster_size(), "{got:?}");
    assert_eq!(g.raster_count(), w.raster_count(), "{got:?}");
    assert_eq!(g.geo_transform().unwrap(), w.geo_transform().unwrap());
    assert_eq!(g.projection(), w.projection());
    assert_eq!(g.metadata_domain(""), w.metadata_domain(""), "{got:?}");
    for b in 1..=g.raster_count() {
        let (gb, wb) = (g.rasterband(b).unwrap(), w.rasterband(b).unwrap());
        assert_eq!(gb.band_type(), wb.band_type(), "{got:?} band {b}");
        assert_eq!(
            gb.no_data_value().map(f64::to_bits),
            wb.no_data_value().map(f64::to_bits)
        );
        assert_eq!(gb.description().unwrap(), wb.description().unwrap());
        assert_eq!(gb.metadata_domain(""), wb.metadata_domain(""));
    }
    for (b, (x, y)) in gp.iter().zip(&wp).enumerate() {
        assert!(same_pixels(x, y), "{got:?} band {}: pixels differ", b + 1);
    }
}

/// Single runs of each input into `dir/single`.
fn single_runs(dir: &Path, inputs: &[PathBuf], args: &[&str]) -> PathBuf {
    let single = dir.join("single");
    std::fs::create_dir_all(&single).unwrap();
    for input in inputs {
        let out = single.join(input.file_name().unwrap());
        let o = run(resample_cmd("2", input, &out).args(args));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    single
}

const ARGS: &[&str] = &["-f", "7", "--chunk-mib", "0.1", "--spare-workers", "0"];

#[test]
fn three_inputs_of_different_sizes_and_types_on_one_pool_equal_three_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = three_inputs(dir.path());
    let single = single_runs(dir.path(), &inputs, ARGS);
    let out = dir.path().join("batch");
    let o = run(coordinator()
        .args(["--workers", "2", "resample"])
        .args(&inputs)
        .arg("--out-dir")
        .arg(&out)
        .args(ARGS));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for input in &inputs {
        let name = input.file_name().unwrap();
        assert_same_output(&out.join(name), &single.join(name));
    }
    // Nothing but the outputs: no temporaries, no lock files.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["a.tif", "b.tif", "c.tif"]);

    // The in-process path (the same kernels, in the coordinator's threads) agrees too.
    let inproc = dir.path().join("inproc");
    let o = run(coordinator()
        .args(["resample", "--in-process"])
        .args(&inputs)
        .arg("--out-dir")
        .arg(&inproc)
        .args(ARGS));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for input in &inputs {
        let name = input.file_name().unwrap();
        assert_same_output(&inproc.join(name), &single.join(name));
    }
}

/// Per input of a batch report: the pids that ran its chunks, its opens, its chunk count.
fn per_input(report: &serde_json::Value) -> Vec<(Vec<u64>, u64, usize)> {
    report["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let chunks = i["chunks"].as_array().unwrap();
            let mut pids: Vec<u64> = chunks
                .iter()
                .flat_map(|c| c["attempts"].as_array().unwrap())
                .filter_map(|a| a["executor"]["pid"].as_u64())
                .collect();
            pids.sort();
            pids.dedup();
            (pids, i["opened_inputs"].as_u64().unwrap(), chunks.len())
        })
        .collect()
}

#[test]
fn one_pool_serves_every_input_without_respawning_or_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = three_inputs(dir.path());
    let out = dir.path().join("batch");
    let rep = dir.path().join("batch.json");
    let o = run(coordinator()
        .args(["--workers", "2", "resample"])
        .args(&inputs)
        .arg("--out-dir")
        .arg(&out)
        .arg("--report")
        .arg(&rep)
        .args(ARGS));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&rep);
    // Two processes for the whole batch: spawned once, never restarted.
    let workers = r["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert_eq!(r["totals"]["workers_spawned"], 2);
    assert_eq!(r["totals"]["restarts"], 0);
    let spawned: Vec<u64> = workers.iter().map(|w| w["pid"].as_u64().unwrap()).collect();
    let per = per_input(&r);
    assert_eq!(per.len(), 3);
    let mut total_chunks = 0;
    for (k, (pids, opens, chunks)) in per.iter().enumerate() {
        assert!(!pids.is_empty(), "input {k} ran on no worker");
        assert!(
            pids.iter().all(|p| spawned.contains(p)),
            "input {k} ran on {pids:?}, the batch spawned {spawned:?}"
        );
        // Each process opens each input once at most (its cache holds all three).
        assert!(
            (1..=2).contains(opens),
            "input {k}: {opens} opens for {chunks} chunks"
        );
        total_chunks += chunks;
    }
    // The same process served chunks of different inputs.
    assert!(
        spawned
            .iter()
            .any(|p| per.iter().filter(|(pids, ..)| pids.contains(p)).count() >= 2),
        "{per:?}"
    );
    let opens = r["opened_inputs"].as_u64().unwrap();
    assert!(
        opens <= 6 && total_chunks > 12,
        "{opens} opens for {total_chunks} chunks"
    );
}

/// The report's rule for a chunk's `plan_id` (`report::ChunkReport`): present only where it
/// differs from the chunk's id (a resumed run or a shard); a batch section follows it as a
/// single run's report does.
#[test]
fn a_batch_report_names_plan_ids_by_the_single_runs_rule() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = three_inputs(dir.path());
    let rep = dir.path().join("batch.json");
    let o = run(coordinator()
        .args(["--workers", "1", "resample"])
        .args(&inputs[..1])
        .arg("--out-dir")
        .arg(dir.path().join("out"))
        .arg("--report")
        .arg(&rep)
        .args(ARGS));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let single_rep = dir.path().join("single.json");
    let o = run(resample_cmd("1", &inputs[0], dir.path().join("single.tif"))
        .arg("--report")
        .arg(&single_rep)
        .args(ARGS));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&rep);
    let chunks = r["inputs"][0]["chunks"].as_array().unwrap();
    let single = report(&single_rep);
    let single_chunks = single["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), single_chunks.len());
    assert!(chunks.len() > 1);
    for (b, s) in chunks.iter().zip(single_chunks) {
        assert_eq!(b["id"], s["id"]);
        assert_eq!(b.get("plan_id"), s.get("plan_id"), "batch {b}\nsingle {s}");
        assert!(b.get("plan_id").is_none(), "{b}");
    }
    // Both reports read back into the coordinator's own types.
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let typed: coordinator::report::BatchReport = serde_json::from_str(&read(&rep)).unwrap();
    let one: coordinator::report::Report = serde_json::from_str(&read(&single_rep)).unwrap();
    assert_eq!(typed.inputs.len(), 1);
    assert_eq!(typed.inputs[0].chunks.len(), one.chunks.len());
    assert_eq!(typed.inputs[0].status, one.status);
}

#[test]
fn each_output_is_committed_when_its_last_chunk_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = three_inputs(dir.path());
    let out = dir.path().join("batch");
    // The batch's chunks are numbered input after input: slow down the very last one (a
    // chunk of c.tif), and a.tif must be in place while the run still goes on.
    let count = |i: &PathBuf| {
        let p = run(coordinator().args(["--workers", "2", "plan"]).arg(i).args([
            "-f",
            "7",
            "--chunk-mib",
            "0.1",
            "--json",
        ]));
        serde_json::from_slice::<serde_json::Value>(&p.stdout).unwrap()["chunks"]
            .as_u64()
            .unwrap()
    };
    let last = inputs.iter().map(count).sum::<u64>() - 1;
    let start = |out: &Path| {
        coordinator()
            .args(["--workers", "2", "resample"])
            .args(&inputs)
            .arg("--out-dir")
            .arg(out)
            .args(ARGS)
            .args(["--task-timeout", "60s"])
            .arg("--inject-fault")
            .arg(format!("slow:{last}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = start(&out);
    wait_for(Duration::from_secs(60), "a.tif committed", || {
        out.join("a.tif").exists().then_some(())
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the batch ended before a.tif's commit was seen"
    );
    assert!(!out.join("c.tif").exists());
    let o = output_within(child, Duration::from_secs(120), false).expect("the batch ends");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join("c.tif").exists());

    // Interrupted once a.tif and b.tif are in place: they stay (complete), c.tif is not
    // written, nothing else is left in DIR but c.tif's journal when c had finished chunks
    // (for --resume), exit 130.
    let out = dir.path().join("interrupted");
    let child = start(&out);
    wait_for(Duration::from_secs(60), "b.tif committed", || {
        out.join("b.tif").exists().then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = output_within(child, Duration::from_secs(60), false).expect("the batch stops");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let c_journal = out.join("c.tif.journal");
    if c_journal.exists() {
        assert!(records(&c_journal) > 0, "a journal with nothing to resume");
        names.retain(|n| n != "c.tif.journal");
    }
    assert_eq!(names, ["a.tif", "b.tif"]);
    for name in &names {
        let (ds, _) = read_all(&out.join(name));
        assert_eq!(ds.metadata_item("BLOCKSUM_AGG", "").as_deref(), Some("sum"));
    }
    // --resume keeps a.tif and b.tif and completes c.tif.
    let o = run(coordinator()
        .args(["--workers", "2", "resample"])
        .args(&inputs)
        .arg("--out-dir")
        .arg(&out)
        .args(ARGS)
        .arg("--resume"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(out.join("c.tif").exists() && !c_journal.exists());
}

#[test]
fn a_failing_input_does_not_lose_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = three_inputs(dir.path());
    let single = single_runs(dir.path(), &inputs, ARGS);
    let bad = dir.path().join("bad.tif");
    std::fs::write(&bad, "not a raster").unwrap();

    // An input that does not open: the others are written, exit 8.
    let out = dir.path().join("o1");
    let rep = dir.path().join("o1.json");
    let o = run(resample_cmd("2", &inputs[0], &bad)
        .args(&inputs[1..])
        .arg("--out-dir")
        .arg(&out)
        .arg("--report")
        .arg(&rep)
        .args(ARGS));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(8), "{err}");
    let bad_lines: Vec<&str> = err.lines().filter(|l| l.contains("bad.tif")).collect();
    assert_eq!(bad_lines.len(), 1, "{err}");
    assert!(bad_lines[0].starts_with("error: ") && bad_lines[0].contains("not a raster"));
    assert!(!out.join("bad.tif").exists());
    for input in &inputs {
        let name = input.file_name().unwrap();
        assert_same_output(&out.join(name), &single.join(name));
    }
    let r = report(&rep);
    assert_eq!(r["exit_code"], 8);
    let codes: Vec<i64> = r["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["exit_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [0, 3, 0, 0]);

    // A copy of c.tif with a corrupt tile: its windows that cannot be read are quarantined
    // in that output alone (exit 5), every other pixel is the clean single run's, and a.tif
    // and b.tif are as their single runs.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    let bad_c = corrupt.join("c.tif");
    std::fs::copy(&inputs[2], &bad_c).unwrap();
    corrupt_tile(&bad_c, 1, 1);
    let out = dir.path().join("o2");
    let rep = dir.path().join("o2.json");
    let o = run(coordinator()
        .args(["--workers", "2", "resample"])
        .args(&inputs[..2])
        .arg(&bad_c)
        .arg("--out-dir")
        .arg(&out)
        .arg("--report")
        .arg(&rep)
        .args(ARGS));
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    for name in ["a.tif", "b.tif"] {
        assert_same_output(&out.join(name), &single.join(name));
    }
    let c = Dataset::open(out.join("c.tif")).unwrap();
    assert!(
        c.metadata_item("BLOCKSUM_QUARANTINED_CHUNKS", "").is_some(),
        "c.tif names its quarantined windows"
    );
    let r = report(&rep);
    let sec = &r["inputs"][2];
    assert_eq!(sec["status"], "completed_with_quarantined_chunks", "{r}");
    assert_eq!(r["inputs"][0]["status"], "ok");
    assert_eq!(r["inputs"][1]["status"], "ok");
    let windows: Vec<[usize; 4]> = sec["quarantined_windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let v: Vec<usize> = q["out_window"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    assert!(!windows.is_empty());
    let (_, got) = read_all(&out.join("c.tif"));
    let (ds, want) = read_all(&single.join("c.tif"));
    let (w, _) = ds.raster_size();
    let mut nodata_pixels = 0;
    for (g, s) in got.iter().zip(&want) {
        for (i, (gv, sv)) in g.iter().zip(s).enumerate() {
            let (x, y) = (i % w, i / w);
            let inside = windows
                .iter()
                .any(|q| x >= q[0] && x < q[0] + q[2] && y >= q[1] && y < q[1] + q[3]);
            if inside {
                assert!(gv.is_nan(), "({x}, {y}) is {gv}, not nodata");
                nodata_pixels += 1;
            } else {
                assert!(same_pixels(&[*gv], &[*sv]), "({x}, {y}): {gv} vs {sv}");
            }
        }
    }
    assert!(nodata_pixels > 0);

    // An output that exists is kept, without --overwrite; the other input is written.
    let out = dir.path().join("o3");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("a.tif"), "someone's file").unwrap();
    let o = run(coordinator()
        .args(["--workers", "2", "resample"])
        .args(&inputs[..2])
        .arg("--out-dir")
        .arg(&out)
        .args(ARGS));
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("a.tif")).unwrap(), b"someone's file");
    assert_same_output(&out.join("b.tif"), &single.join("b.tif"));
    // ... and replaced with it.
    let o = run(coordinator()
        .args(["--workers", "2", "resample"])
        .args(&inputs[..2])
        .arg("--out-dir")
        .arg(&out)
        .arg("--overwrite")
        .args(ARGS));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_same_output(&out.join("a.tif"), &single.join("a.tif"));

    // Nothing written at all: the failure's own code.
    let o = run(resample_cmd("2", &bad, "--out-dir")
        .arg(dir.path().join("o4"))
        .args(ARGS));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

#[test]
fn batch_command_lines_that_do_not_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = d.join("a.tif");
    write_f32(
        &a,
        &RasterSpec {
            width: 64,
            height: 64,
            ..RasterSpec::default()
        },
    );
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::copy(&a, d.join("sub/a.tif")).unwrap();
    std::fs::write(d.join("list.txt"), "a.tif\n").unwrap();
    std::fs::write(d.join("file"), "").unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["a.tif", "x.tif", "y.tif"], 2, "needs --out-dir"),
        (
            &["--inputs", "list.txt", "o.tif"],
            2,
            "--inputs needs --out-dir",
        ),
        (&["a.tif"], 2, "missing OUTPUT"),
        (&[], 2, "missing INPUT"),
        (
            &["a.tif", "sub/a.tif", "--out-dir", "out"],
            2,
            "would both be written",
        ),
        (
            &["--inputs", "list.txt", "a.tif", "--out-dir", "out"],
            2,
            "would both be written",
        ),
        (&["--out-dir", "out"], 2, "needs inputs"),
        (
            &["a.tif", "--out-dir", "out", "--pyramid"],
            2,
            "--pyramid is not available for a batch",
        ),
        (
            &["a.tif", "--out-dir", "out", "--of", "COG"],
            2,
            "--of COG is not available for a batch",
        ),
        (
            &["a.tif", "--out-dir", "out", "--events", "ev.jsonl"],
            2,
            "--events is not available for a batch",
        ),
        (
            &["a.tif", "--out-dir", "out", "--shard", "0/2", "--pyramid"],
            2,
            "--pyramid is not available",
        ),
        (
            &["a.tif", "--out-dir", "out", "--report-html", "r.html"],
            2,
            "--report-html is not available for a batch",
        ),
        (
            &["--inputs", "missing.txt", "--out-dir", "out"],
            3,
            "missing.txt",
        ),
        (&["a.tif", "--out-dir", "file"], 4, "not a directory"),
        (&["a.tif", "--out-dir", "no/such/dir"], 4, "does not exist"),
    ];
    for (args, code, needle) in cases {
        let o = run(coordinator()
            .current_dir(d)
            .args(["--workers", "1", "resample", "-f", "4"])
            .args(*args));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // A list file, alone: the batch runs.
    let o = run(coordinator()
        .current_dir(d)
        .args([
            "--workers",
            "1",
            "resample",
            "-f",
            "4",
            "--inputs",
            "list.txt",
        ])
        .args(["--out-dir", "listed"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(d.join("listed/a.tif").exists());
}

#[test]
fn a_batch_killed_mid_run_resumes_bit_identical_computing_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = three_inputs(dir.path());
    let single = single_runs(dir.path(), &inputs, ARGS);
    let batch = |out: &Path, extra: &[&str]| {
        let mut c = coordinator();
        c.args(["--workers", "1", "resample"])
            .args(&inputs)
            .arg("--out-dir")
            .arg(out)
            .args(ARGS)
            .args(extra);
        c
    };
    // An uninterrupted batch gives each input's chunk count and the engine's id of b's
    // first chunk.
    let full = dir.path().join("full");
    let rep = dir.path().join("full.json");
    let o = run(&mut batch(&full, &["--report", rep.to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&rep);
    let planned: Vec<usize> = (0..3)
        .map(|k| r["inputs"][k]["chunks"].as_array().unwrap().len())
        .collect();
    let b_first = r["inputs"][1]["first_task"].as_u64().unwrap();
    assert!(planned[1] >= 2, "b needs two chunks: {planned:?}");

    // b's second chunk is slow (10 s): the kill lands after a was committed and while b has
    // journaled its first chunk; c has not started.
    let out = dir.path().join("out");
    let fault = format!("slow:{}", b_first + 1);
    let mut child = batch(&out, &["--inject-fault", &fault])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (a_out, b_journal) = (out.join("a.tif"), out.join("b.tif.journal"));
    wait_for(
        Duration::from_secs(120),
        "a committed and b journaled",
        || (a_out.exists() && records(&b_journal) >= 1).then_some(()),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    let journaled = records(&b_journal);
    assert!(journaled >= 1 && journaled < planned[1]);
    assert!(!out.join("b.tif").exists() && !out.join("c.tif").exists());

    // Without --resume the journals are refused, naming --resume; nothing is replaced.
    let o = run(&mut batch(&out, &[]));
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));

    let rep = dir.path().join("resumed.json");
    let o = run(&mut batch(
        &out,
        &["--resume", "--report", rep.to_str().unwrap()],
    ));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    assert!(text.contains("kept"), "{text}");
    assert!(
        text.contains(&format!("{journaled} chunk(s) resumed from the journal")),
        "{text}"
    );
    let r = report(&rep);
    let computed: Vec<usize> = (0..3)
        .map(|k| r["inputs"][k]["chunks"].as_array().unwrap().len())
        .collect();
    // a: kept, nothing recomputed; b: only what its journal did not hold; c: all of it.
    assert_eq!(computed, vec![0, planned[1] - journaled, planned[2]]);
    for input in &inputs {
        let name = input.file_name().unwrap();
        assert_same_output(&out.join(name), &single.join(name));
        let mut j = out.join(name).into_os_string();
        j.push(".journal");
        assert!(!Path::new(&j).exists(), "{j:?} left behind");
    }

    // Killed between a's commit and its journal's removal: the complete journal is still
    // beside the committed output. --resume keeps the output as it is (not replayed and
    // rewritten) and removes the journal, as a single run does.
    let shard = dir.path().join("shard");
    let o = run(&mut batch(&shard, &["--shard", "0/1"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let a_journal = out.join("a.tif.journal");
    std::fs::copy(shard.join("a.tif.shards/shard-0-of-1.journal"), &a_journal).unwrap();
    let stamp = |p: &Path| {
        (
            std::fs::read(p).unwrap(),
            std::fs::metadata(p).unwrap().modified().unwrap(),
        )
    };
    let before = stamp(&a_out);
    let rep = dir.path().join("again.json");
    let o = run(&mut batch(
        &out,
        &["--resume", "--report", rep.to_str().unwrap()],
    ));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&rep);
    let computed: Vec<usize> = (0..3)
        .map(|k| r["inputs"][k]["chunks"].as_array().unwrap().len())
        .collect();
    assert_eq!(computed, vec![0, 0, 0]);
    assert!(stamp(&a_out) == before, "a.tif was rewritten");
    assert!(
        !a_journal.exists(),
        "the committed run's journal is removed"
    );
}

#[test]
fn a_sharded_batch_merged_per_output_equals_single_runs() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = three_inputs(dir.path());
    let single = single_runs(dir.path(), &inputs, ARGS);
    let out = dir.path().join("out");
    for i in 0..2 {
        let o = run(coordinator()
            .args(["--workers", "2", "resample"])
            .args(&inputs)
            .arg("--out-dir")
            .arg(&out)
            .args(ARGS)
            .args(["--shard", &format!("{i}/2")]));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
        assert!(text.contains(&format!("wrote shard {i}/2")), "{text}");
    }
    for input in &inputs {
        let name = input.file_name().unwrap();
        assert!(!out.join(name).exists(), "a shard wrote a GeoTIFF");
        let o = run(coordinator().arg("merge").arg(out.join(name)));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_same_output(&out.join(name), &single.join(name));
    }
}

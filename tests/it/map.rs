//! `coordinator map`: users' own kernels, end to end with the real binaries. The C example
//! kernels (examples/c-kernels) are built with `cc` into a temp dir and run through worker
//! processes; the Rust example (examples/rust-kernel) is its own worker binary. Every pixel
//! is compared with a naive reference computed here. The faulty kernel shows isolation: its
//! crashes, aborts and hangs cost only the windows that trigger them, bisected down to the
//! file's blocks and named in the report and the output's metadata.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::common::*;

const W: usize = 96;
const H: usize = 64;
const TILE: usize = 16;

fn input(dir: &Path, bands: usize) -> (PathBuf, Vec<Vec<f32>>) {
    let path = dir.join("in.tif");
    let data = write_f32(
        &path,
        &RasterSpec {
            width: W,
            height: H,
            bands,
            tile: Some(TILE),
            ..RasterSpec::default()
        },
    );
    (path, data)
}

fn valid(v: f32) -> bool {
    !v.is_nan() && v as f64 != NODATA
}

fn assert_same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}: pixel {i}: got {g}, want {w}"
        );
    }
}

/// `map` with two workers and the given arguments.
fn map(input: &Path, output: &Path, args: &[&str]) -> std::process::Output {
    run(coordinator()
        .args(["--workers", "2", "map"])
        .arg(input)
        .arg(output)
        .args(args))
}

#[test]
fn ndvi_equals_the_reference_pixel_for_pixel() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_c(dir.path(), "ndvi") else {
        return;
    };
    let (input, data) = input(dir.path(), 2);
    let out = dir.path().join("ndvi.tif");
    let o = map(
        &input,
        &out,
        &[
            "--kernel-lib",
            lib.to_str().unwrap(),
            "--band",
            "1",
            "--band",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds, bands) = read_all(&out);
    assert_eq!(ds.raster_size(), (W, H));
    assert_eq!(bands.len(), 1);
    let want: Vec<f64> = data[0]
        .iter()
        .zip(&data[1])
        .map(|(&red, &nir)| {
            let (r, n) = (red as f64, nir as f64);
            if valid(red) && valid(nir) && n + r != 0.0 {
                (n - r) / (n + r)
            } else {
                f64::NAN
            }
        })
        .collect();
    assert_same(&bands[0], &want, "ndvi");
    let rb = ds.rasterband(1).unwrap();
    assert!(rb.no_data_value().is_some_and(f64::is_nan));
    assert_eq!(
        gdal::Metadata::metadata_item(&ds, "BLOCKSUM_KERNEL", "").as_deref(),
        Some("libndvi.so")
    );
}

/// Mean or range of the valid samples of each F x F block, per band.
fn block_stat(data: &[f32], f: usize, range: bool) -> Vec<f64> {
    let (ow, oh) = (W.div_ceil(f), H.div_ceil(f));
    let mut out = vec![f64::NAN; ow * oh];
    for oy in 0..oh {
        for ox in 0..ow {
            let vals: Vec<f64> = (oy * f..((oy + 1) * f).min(H))
                .flat_map(|y| (ox * f..((ox + 1) * f).min(W)).map(move |x| (x, y)))
                .map(|(x, y)| data[y * W + x])
                .filter(|&v| valid(v))
                .map(f64::from)
                .collect();
            if vals.is_empty() {
                continue;
            }
            out[oy * ow + ox] = if range {
                vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                    - vals.iter().cloned().fold(f64::INFINITY, f64::min)
            } else {
                vals.iter().sum::<f64>() / vals.len() as f64
            };
        }
    }
    out
}

#[test]
fn blockstat_with_a_factor_equals_the_reference_with_partial_edge_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_c(dir.path(), "blockstat") else {
        return;
    };
    let (input, data) = input(dir.path(), 2);
    // 5 divides neither side: the last row and column of blocks are partial.
    for (stat, range) in [("mean", false), ("range", true)] {
        let out = dir.path().join(format!("{stat}.tif"));
        let o = map(
            &input,
            &out,
            &[
                "--kernel-lib",
                lib.to_str().unwrap(),
                "--factor",
                "5",
                "--out-bands",
                "2",
                "--kernel-arg",
                &format!("stat={stat}"),
            ],
        );
        assert!(o.status.success(), "{stat}: {}", stderr(&o));
        let (ds, bands) = read_all(&out);
        assert_eq!(ds.raster_size(), (W.div_ceil(5), H.div_ceil(5)));
        for b in 0..2 {
            assert_same(&bands[b], &block_stat(&data[b], 5, range), stat);
        }
    }
    // A kernel error (an unknown argument) fails every chunk: quarantined, exit 5.
    let out = dir.path().join("bad.tif");
    let o = map(
        &input,
        &out,
        &[
            "--kernel-lib",
            lib.to_str().unwrap(),
            "--kernel-arg",
            "colour=blue",
            "--max-attempts",
            "1",
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("unknown argument 'colour'"), "{err}");
}

/// Runs the faulty kernel and checks what every such run promises: exit 5, exactly the
/// blocks holding the bad columns quarantined (named in the report and the metadata), every
/// other pixel exact, no worker left behind.
fn faulty_run(fault_args: &[&str], bad_columns: &[usize], extra: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_c(dir.path(), "faulty") else {
        return serde_json::Value::Null;
    };
    let (input, data) = input(dir.path(), 1);
    let out = dir.path().join("out.tif");
    let rep = dir.path().join("run.json");
    let mut args = vec!["--kernel-lib", lib.to_str().unwrap(), "--report"];
    args.push(rep.to_str().unwrap());
    for a in fault_args {
        args.extend(["--kernel-arg", a]);
    }
    args.extend(extra);
    let o = map(&input, &out, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("window(s) quarantined"), "{err}");

    let bad_tile = |x: usize| bad_columns.iter().any(|c| c / TILE == x / TILE);
    let want_windows: BTreeSet<[u64; 4]> = (0..W / TILE)
        .filter(|t| bad_tile(t * TILE))
        .flat_map(|t| (0..H / TILE).map(move |r| [(t * TILE) as u64, (r * TILE) as u64, 16, 16]))
        .collect();
    let report = report(&rep);
    let q = report["totals"]["quarantined_windows"].as_array().unwrap();
    let got: BTreeSet<[u64; 4]> = q
        .iter()
        .map(|w| serde_json::from_value(w["window"].clone()).unwrap())
        .collect();
    assert_eq!(got, want_windows, "{err}");
    assert_eq!(report["options"]["kernel"]["in_process_fallback"], false);
    // No attempt ran inside the coordinator.
    for c in report["chunks"].as_array().unwrap() {
        for a in c["attempts"].as_array().unwrap() {
            assert_eq!(a["executor"]["on"], "worker", "{a}");
        }
    }

    let (ds, bands) = read_all(&out);
    for (i, g) in bands[0].iter().enumerate() {
        let (x, v) = (i % W, data[0][i]);
        if bad_tile(x) || !valid(v) {
            assert!(g.is_nan(), "pixel {i}: {g}");
        } else {
            assert_eq!(*g, v as f64, "pixel {i}");
        }
    }
    let md = gdal::Metadata::metadata_item(&ds, "BLOCKSUM_QUARANTINED_CHUNKS", "").unwrap();
    assert_eq!(md.split(';').count(), want_windows.len(), "{md}");
    let needle = out.display().to_string();
    wait_for(Duration::from_secs(10), "the workers to be gone", || {
        workers_mentioning(&needle).is_empty().then_some(())
    });
    report
}

#[test]
fn a_segfaulting_and_an_aborting_kernel_cost_only_their_blocks() {
    let report = faulty_run(
        &["crash_x=40", "abort_x=85"],
        &[40, 85],
        &["--max-attempts", "1"],
    );
    if report.is_null() {
        return;
    }
    let causes: BTreeSet<String> = report["totals"]["quarantined_windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["cause"].as_str().unwrap().to_string())
        .collect();
    assert!(causes.contains("killed by SIGSEGV"), "{causes:?}");
    assert!(causes.contains("killed by SIGABRT"), "{causes:?}");
}

#[test]
fn a_hanging_kernel_times_out_on_workers_and_is_quarantined_without_an_in_process_lane() {
    let report = faulty_run(
        &["hang_x=20"],
        &[20],
        &[
            "--max-attempts",
            "1",
            "--task-timeout",
            "300ms",
            "--kill-grace",
            "100ms",
        ],
    );
    if report.is_null() {
        return;
    }
    assert!(
        report["totals"]["timeouts"].as_u64().unwrap() >= 4,
        "{}",
        report["totals"]
    );
}

#[test]
fn a_few_bytes_past_the_output_are_caught_by_the_canary() {
    // 4 bytes past a 16x16 block's 2048-byte output: inside its page, on the canary.
    let report = faulty_run(
        &["overrun_x=40", "overrun_bytes=4"],
        &[40],
        &["--max-attempts", "1"],
    );
    if report.is_null() {
        return;
    }
    for w in report["totals"]["quarantined_windows"].as_array().unwrap() {
        let cause = w["cause"].as_str().unwrap();
        assert!(
            cause.contains("wild write") && cause.contains("output region"),
            "{cause}"
        );
    }
}

/// In process (`--in-process-fallback`), the same canary fails the attempt; a write past the
/// padding faults on a guard page, which ends the run with a line saying so rather than
/// writing into another slot.
#[test]
fn in_process_the_canary_fails_the_attempt_and_a_guard_page_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_c(dir.path(), "faulty") else {
        return;
    };
    let input = dir.path().join("in.tif");
    // 100 columns: no window's output is a whole number of pages.
    let spec = RasterSpec {
        width: 100,
        height: H,
        tile: Some(TILE),
        ..RasterSpec::default()
    };
    let data = write_f32(&input, &spec);
    let out = dir.path().join("out.tif");
    let lib = lib.to_str().unwrap();
    let in_process = |extra: &[&str]| {
        run(coordinator()
            .args(["--workers", "0", "map"])
            .arg(&input)
            .arg(&out)
            .args(["--kernel-lib", lib, "--in-process-fallback", "--overwrite"])
            .args(["--kernel-arg", "overrun_x=40", "--max-attempts", "1"])
            .args(extra))
    };
    let o = in_process(&["--kernel-arg", "overrun_bytes=4"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(err.contains("in-process error: wild write"), "{err}");
    let (_, got) = read_all(&out);
    for (i, g) in got[0].iter().enumerate() {
        let (x, v) = (i % 100, data[0][i]);
        if x / TILE == 40 / TILE || !valid(v) {
            assert!(g.is_nan(), "pixel {i}: {g}");
        } else {
            assert_eq!(*g, v as f64, "pixel {i}");
        }
    }

    std::fs::remove_file(&out).unwrap();
    let o = in_process(&["--kernel-arg", "overrun_bytes=8388608"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), None, "{err}");
    assert!(
        err.contains(
            "SIGSEGV on a guard page of the shared ring: a kernel running in the coordinator"
        ),
        "{err}"
    );
    assert!(!out.exists());
}

/// A kernel that writes 8 MiB past its output, on the chunks holding one column: on a
/// raster whose chunks are about 1 MiB, that is several slots of the ring. Every chunk it
/// did not run is exact (compared with a clean run, pixel by pixel); its own windows are
/// quarantined, and the report names each attempt that died and of what.
#[test]
fn a_kernel_writing_8_mib_past_its_output_touches_no_other_chunk() {
    const BW: usize = 1024;
    const BH: usize = 768;
    const COL: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_c(dir.path(), "faulty") else {
        return;
    };
    let input = dir.path().join("big.tif");
    let spec = RasterSpec {
        width: BW,
        height: BH,
        ..RasterSpec::default()
    };
    let data = write_f32(&input, &spec);
    let lib = lib.to_str().unwrap();
    let common = [
        "--kernel-lib",
        lib,
        "--chunk-mib",
        "1",
        "--chunk-prefetch",
        "8",
    ];

    let clean = dir.path().join("clean.tif");
    let o = map(&input, &clean, &common);
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, want) = read_all(&clean);
    let copy: Vec<f64> = data[0]
        .iter()
        .map(|&v| if valid(v) { v as f64 } else { f64::NAN })
        .collect();
    assert_same(&want[0], &copy, "the clean run");

    let out = dir.path().join("wild.tif");
    let rep = dir.path().join("wild.json");
    let mut args = common.to_vec();
    let overrun = format!("overrun_x={COL}");
    args.extend(["--kernel-arg", &overrun, "--max-attempts", "1", "--report"]);
    args.push(rep.to_str().unwrap());
    let o = map(&input, &out, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    let report = report(&rep);
    let holds = |w: &serde_json::Value| {
        let (x, wd) = (w[0].as_u64().unwrap(), w[2].as_u64().unwrap());
        x <= COL && COL < x + wd
    };

    // The quarantined windows are the kernel's own, each named with its cause of death.
    let quarantined: Vec<[u64; 4]> = report["totals"]["quarantined_windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            assert!(holds(&q["window"]), "{q}");
            assert_eq!(q["cause"], "killed by SIGSEGV", "{q}");
            serde_json::from_value(q["window"].clone()).unwrap()
        })
        .collect();
    assert!(!quarantined.is_empty());
    // Every attempt that failed ran a window holding the column and died of the guard
    // page; every chunk that does not hold it was done at its first attempt.
    let mut died = 0;
    for c in report["chunks"].as_array().unwrap() {
        for a in c["attempts"].as_array().unwrap() {
            if a["failure"].is_null() {
                continue;
            }
            died += 1;
            assert!(holds(&c["window"]), "{c}");
            assert_eq!(a["failure"]["kind"], "signal", "{a}");
            assert_eq!(a["failure"]["name"], "SIGSEGV", "{a}");
        }
        if !holds(&c["window"]) {
            assert_eq!(c["outcome"], "done", "{c}");
            assert_eq!(c["attempts"].as_array().unwrap().len(), 1, "{c}");
        }
    }
    assert!(died >= quarantined.len(), "{died}");
    // Pixel by pixel: the clean run's values outside the quarantined windows, nodata in.
    let (_, got) = read_all(&out);
    let inside = |x: usize, y: usize| {
        quarantined.iter().any(|q| {
            let (x, y) = (x as u64, y as u64);
            x >= q[0] && x < q[0] + q[2] && y >= q[1] && y < q[1] + q[3]
        })
    };
    let mut wrong = 0;
    for (i, (g, w)) in got[0].iter().zip(&want[0]).enumerate() {
        let ok = match inside(i % BW, i / BW) {
            true => g.is_nan(),
            false => g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
        };
        wrong += usize::from(!ok);
    }
    assert_eq!(wrong, 0, "{wrong} pixels differ from the clean run");
    // The workers that died say where: a guard page past the output region.
    let tails: String = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["stderr_tail"].as_array().unwrap().iter())
        .map(|l| l.as_str().unwrap().to_string() + "\n")
        .collect();
    assert!(
        tails.contains("guard page") && tails.contains("past the end of its output region"),
        "{tails}"
    );
}

#[test]
fn a_library_without_the_symbol_ends_the_run_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_) = build_c(dir.path(), "ndvi") else {
        return;
    };
    let src = dir.path().join("nosym.c");
    std::fs::write(&src, "int not_a_kernel(void) { return 0; }\n").unwrap();
    let lib = dir.path().join("libnosym.so");
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success());
    let (input, _) = input(dir.path(), 1);
    let out = dir.path().join("out.tif");
    let o = map(&input, &out, &["--kernel-lib", lib.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(err.contains("does not export blocksum_kernel_v1"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists());
}

#[test]
fn the_kernel_is_not_loaded_in_process_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_c(dir.path(), "faulty") else {
        return;
    };
    let (input, data) = input(dir.path(), 1);
    let out = dir.path().join("out.tif");
    let o = run(coordinator()
        .args(["--workers", "0", "map"])
        .arg(&input)
        .arg(&out)
        .args(["--kernel-lib", lib.to_str().unwrap()]));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--in-process-fallback"), "{err}");
    // Asked for: the coordinator's lanes run it, with the same result.
    let o = run(coordinator()
        .args(["--workers", "0", "map"])
        .arg(&input)
        .arg(&out)
        .args([
            "--kernel-lib",
            lib.to_str().unwrap(),
            "--in-process-fallback",
        ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, bands) = read_all(&out);
    let want: Vec<f64> = data[0]
        .iter()
        .map(|&v| if valid(v) { v as f64 } else { f64::NAN })
        .collect();
    assert_same(&bands[0], &want, "in process");
}

/// The Rust example's worker binary, built if missing.
fn rust_kernel_bin() -> PathBuf {
    let bin = bin_dir().join("block-range-worker");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--bins", "-p", "blocksum-example-rust-kernel"])
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the example Rust kernel failed");
    }
    bin
}

#[test]
fn the_rust_example_kernel_runs_as_its_own_worker_binary() {
    let dir = tempfile::tempdir().unwrap();
    let (input, data) = input(dir.path(), 2);
    let out = dir.path().join("range.tif");
    // Make sure the coordinator binary exists before the example's is looked for.
    let _ = bin("coordinator");
    let o = map(
        &input,
        &out,
        &[
            "--worker-bin",
            rust_kernel_bin().to_str().unwrap(),
            "--factor",
            "3",
            "--out-bands",
            "2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds, bands) = read_all(&out);
    assert_eq!(ds.raster_size(), (W.div_ceil(3), H.div_ceil(3)));
    for b in 0..2 {
        assert_same(&bands[b], &block_stat(&data[b], 3, true), "rust range");
    }
    assert_eq!(
        gdal::Metadata::metadata_item(&ds, "BLOCKSUM_KERNEL", "").as_deref(),
        Some("block-range-worker")
    );
}

//! Shared helpers for the end-to-end tests: locate the real binaries, write test rasters with
//! GDAL directly (not with the project), compute a naive reference, read outputs back.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::Once,
    time::{Duration, Instant},
};

use gdal::{
    raster::{Buffer, RasterCreationOptions},
    spatial_ref::SpatialRef,
    Dataset, DriverManager,
};

static BUILD: Once = Once::new();

/// Says that a test cannot run its check here (a missing tool, not root) and why. Under `CI`
/// this fails the test: a check that cannot run must never count as passed there. Elsewhere it
/// prints the reason and appends it to `target/<profile>/skipped-tests.log`, which
/// `scripts/test.sh` counts and prints, so a skip is never silent.
pub fn cannot_check(why: &str) {
    skip_unless_ci(std::env::var_os("CI").is_some(), why)
}

fn skip_unless_ci(ci: bool, why: &str) {
    assert!(!ci, "this check cannot run here, and CI is set: {why}");
    eprintln!("SKIPPED: {why}");
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let log = bin_dir().join("skipped-tests.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        use std::io::Write;
        let _ = writeln!(f, "{test}: {why}");
    }
}

/// target/debug (or whichever profile the tests were built with).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Path of a binary of the workspace, building the binaries once if they are missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    BUILD.call_once(|| {
        if !bin_dir().join("coordinator").exists() || !bin_dir().join("worker").exists() {
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--bins",
                    "-p",
                    "blocksum-coordinator",
                    "-p",
                    "blocksum-worker",
                ])
                .status()
                .expect("running cargo build");
            assert!(status.success(), "building the binaries failed");
        }
    });
    p
}

pub fn coordinator() -> Command {
    let mut c = Command::new(bin("coordinator"));
    c.env_remove("BLOCKSUM_WORKERS")
        .env_remove("BLOCKSUM_WORKER_BIN")
        .env_remove("BLOCKSUM_CONFIG")
        .env_remove("BLOCKSUM_PARENT_PID");
    c
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running the coordinator")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub const NODATA: f64 = -9999.0;

/// Options for a test raster.
pub struct RasterSpec {
    pub width: usize,
    pub height: usize,
    pub bands: usize,
    pub tile: Option<usize>,
    pub nodata: Option<f64>,
    pub seed: u64,
}

impl Default for RasterSpec {
    fn default() -> Self {
        RasterSpec {
            width: 1003,
            height: 777,
            bands: 1,
            tile: Some(64),
            nodata: Some(NODATA),
            seed: 1,
        }
    }
}

/// The tests' pseudo-random numbers: xorshift64 (Marsaglia), `state` never 0.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Writes a Float32 GeoTIFF (DEFLATE, tiled or striped) with ~30 % nodata, some NaN, a
/// solid nodata rectangle, EPSG:32633 and a non-trivial geotransform. Returns the pixels.
pub fn write_f32(path: &Path, spec: &RasterSpec) -> Vec<Vec<f32>> {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut opts = vec!["COMPRESS=DEFLATE".to_string()];
    if let Some(t) = spec.tile {
        opts.extend([
            "TILED=YES".into(),
            format!("BLOCKXSIZE={t}"),
            format!("BLOCKYSIZE={t}"),
        ]);
    }
    let opts = RasterCreationOptions::from_iter(opts.iter().map(String::as_str));
    let mut ds = driver
        .create_with_band_type_with_options::<f32, _>(
            path,
            spec.width,
            spec.height,
            spec.bands,
            &opts,
        )
        .unwrap();
    ds.set_geo_transform(&[500000.0, 30.0, 0.0, 5200000.0, 0.0, -30.0])
        .unwrap();
    ds.set_spatial_ref(&SpatialRef::from_epsg(32633).unwrap())
        .unwrap();
    let mut st = spec.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut all = Vec::new();
    for b in 1..=spec.bands {
        let mut data = Vec::with_capacity(spec.width * spec.height);
        for y in 0..spec.height {
            for x in 0..spec.width {
                let r = xorshift(&mut st) % 100;
                let in_hole = x > spec.width / 5
                    && x < spec.width / 3
                    && y > spec.height / 4
                    && y < spec.height / 2;
                let v = if let (Some(nd), true) = (spec.nodata, r < 27 || in_hole) {
                    nd as f32
                } else if r < 30 {
                    f32::NAN
                } else {
                    (x as f32 * 0.37 + y as f32 * 0.11).sin() * 50.0
                        + (xorshift(&mut st) % 1000) as f32 / 7.0
                        + b as f32
                };
                data.push(v);
            }
        }
        let mut band = ds.rasterband(b).unwrap();
        gdal::Metadata::set_description(&mut band, &format!("test band {b}")).unwrap();
        if let Some(nd) = spec.nodata {
            band.set_no_data_value(Some(nd)).unwrap();
        }
        let mut buf = Buffer::new((spec.width, spec.height), data.clone());
        band.write((0, 0), (spec.width, spec.height), &mut buf)
            .unwrap();
        all.push(data);
    }
    all
}

/// Naive block sum with the documented semantics: NaN where no valid pixel (a sum's output
/// nodata is NaN, a value no valid sum can take).
pub fn reference_sum(data: &[f32], w: usize, h: usize, f: usize, nodata: Option<f64>) -> Vec<f64> {
    let (ow, oh) = (w.div_ceil(f), h.div_ceil(f));
    let mut out = vec![0.0; ow * oh];
    for oy in 0..oh {
        for ox in 0..ow {
            let mut s = 0.0f64;
            let mut n = 0;
            for y in oy * f..((oy + 1) * f).min(h) {
                for x in ox * f..((ox + 1) * f).min(w) {
                    let v = data[y * w + x];
                    if !v.is_nan() && Some(v as f64) != nodata {
                        s += v as f64;
                        n += 1;
                    }
                }
            }
            out[oy * ow + ox] = if n == 0 { f64::NAN } else { s };
        }
    }
    out
}

/// Reads every band of `path` as f64.
pub fn read_all(path: &Path) -> (Dataset, Vec<Vec<f64>>) {
    let ds = Dataset::open(path).unwrap();
    let (w, h) = ds.raster_size();
    let bands = (1..=ds.raster_count())
        .map(|b| {
            ds.rasterband(b)
                .unwrap()
                .read_as::<f64>((0, 0), (w, h), (w, h), None)
                .unwrap()
                .data()
                .to_vec()
        })
        .collect();
    (ds, bands)
}

/// Same values, NaN equal to NaN.
pub fn same_pixels(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

/// The machine's memory (MemTotal) in MiB.
pub fn mem_total_mib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024
}

/// Journal records that reached `path` (0 for none, or no header yet).
pub fn records(path: &Path) -> usize {
    match coordinator::journal::Scan::read(path) {
        Ok(Some(s)) => s.records.len(),
        _ => 0,
    }
}

pub fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

pub fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written"))
        .expect("report is JSON")
}

/// Polls `f` until it returns Some, or fails the test after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of live processes whose parent is `ppid` and whose name is `worker`.
pub fn worker_children(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm is in parentheses; fields after it are state, ppid.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').unwrap() + 1..close];
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if comm == "worker"
            && rest.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(ppid)
            && rest[0] != "Z"
        {
            out.push(pid);
        }
    }
    out
}

/// Pids of every live `worker` process on the machine whose command line or environment
/// mentions `needle`.
pub fn workers_mentioning(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        // The command line carries only the connection and the segment; the run's identity
        // (input and output) is in the worker's environment, as BLOCKSUM_JOB.
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let cmd = format!(
            "{} {}",
            String::from_utf8_lossy(&cmd),
            String::from_utf8_lossy(&env)
        );
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rfind(')')
            .is_some_and(|i| state[i + 2..].starts_with('Z'));
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "worker" && cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// Waits for `child` to exit (a thread blocks in `wait`; this one waits on its answer with a
/// deadline, no polling). Past `limit` the child (and, with `group`, its whole process group)
/// is killed and `Err` carries what it wrote.
pub fn output_within(child: Child, limit: Duration, group: bool) -> Result<Output, Output> {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().expect("waiting for a child"));
    });
    match rx.recv_timeout(limit) {
        Ok(o) => Ok(o),
        Err(_) => {
            use nix::{sys::signal::Signal, unistd::Pid};
            if group {
                let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
            } else {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            Err(rx.recv().expect("the killed child is reaped"))
        }
    }
}

/// Overwrites the compressed bytes of tile (`bx`, `by`) of band 1 with garbage, so that
/// GDAL fails to decode that block (and only that one). Returns the tile's byte range.
pub fn corrupt_tile(path: &Path, bx: usize, by: usize) -> (u64, u64) {
    let (offset, size) = {
        let ds = gdal::Dataset::open(path).unwrap();
        let band = ds.rasterband(1).unwrap();
        let item = |k: &str| -> u64 {
            gdal::Metadata::metadata_item(&band, &format!("{k}_{bx}_{by}"), "TIFF")
                .unwrap_or_else(|| panic!("no {k} for tile {bx},{by}"))
                .parse()
                .unwrap()
        };
        (item("BLOCK_OFFSET"), item("BLOCK_SIZE"))
    };
    let mut bytes = std::fs::read(path).unwrap();
    for (i, b) in bytes[offset as usize..(offset + size) as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5;
    }
    std::fs::write(path, bytes).unwrap();
    (offset, size)
}

/// Builds `examples/c-kernels/NAME.c` into `dir`, or `None` (with the reason printed) when
/// there is no C compiler.
pub fn build_c(dir: &Path, name: &str) -> Option<PathBuf> {
    if Command::new("cc").arg("--version").output().is_err() {
        // CI installs a C toolchain (scripts/setup.sh): there, the kernels must run.
        cannot_check("no `cc` on PATH to build the example C kernels");
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lib = dir.join(format!("lib{name}.so"));
    let o = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg("-o")
        .arg(&lib)
        .arg(root.join("examples/c-kernels").join(format!("{name}.c")))
        .output()
        .expect("running cc");
    assert!(o.status.success(), "cc {name}.c: {}", stderr(&o));
    Some(lib)
}

/// `coordinator --workers WORKERS resample INPUT OUTPUT`, for more arguments to follow.
pub fn resample_cmd(
    workers: impl AsRef<std::ffi::OsStr>,
    input: impl AsRef<std::ffi::OsStr>,
    output: impl AsRef<std::ffi::OsStr>,
) -> Command {
    let mut c = coordinator();
    c.arg("--workers")
        .arg(workers)
        .arg("resample")
        .arg(input)
        .arg(output);
    c
}

/// `coordinator synth PATH --width W --height H --seed SEED`: the tool's own test raster.
pub fn synth(path: &Path, width: u32, height: u32, seed: u64) {
    let o = run(coordinator().arg("synth").arg(path).args([
        "--width",
        &width.to_string(),
        "--height",
        &height.to_string(),
        "--seed",
        &seed.to_string(),
    ]));
    assert!(o.status.success(), "synth: {}", stderr(&o));
}

#[test]
fn a_check_that_cannot_run_fails_when_ci_is_set() {
    let failed = std::panic::catch_unwind(|| skip_unless_ci(true, "no such tool"));
    let message = failed.expect_err("a skip under CI must fail the test");
    let text = message
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or_default();
    assert!(text.contains("CI is set: no such tool"), "{text}");
}

//! What the tool says when something is wrong: one line that names the right thing (the
//! flag, the shard, the codec, the value), the documented exit code, and no run started for
//! a command line that cannot succeed.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    time::Duration,
};

use crate::common::*;
use gdal::{raster::Buffer, DriverManager};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

fn input(dir: &Path, name: &str, side: usize) -> PathBuf {
    let path = dir.join(name);
    write_f32(
        &path,
        &RasterSpec {
            width: side,
            height: side,
            ..RasterSpec::default()
        },
    );
    path
}

/// The error lines (warnings aside).
fn errors(o: &Output) -> Vec<String> {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{err}");
    err.lines()
        .filter(|l| l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

fn one_error(o: &Output, code: i32) -> String {
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
    let e = errors(o);
    assert_eq!(e.len(), 1, "{}", stderr(o));
    assert!(!e[0].contains("Some("), "Debug text in a message: {}", e[0]);
    e[0].clone()
}

#[test]
fn a_fifo_socket_or_device_input_is_refused_before_it_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("in.tif");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let socket = dir.path().join("sock.tif");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for (path, what) in [
        (fifo.as_path(), "a FIFO"),
        (socket.as_path(), "a socket"),
        (Path::new("/dev/zero"), "a character device"),
    ] {
        for command in ["resample", "plan"] {
            let mut c = coordinator();
            c.args(["--workers", "1", command]).arg(path);
            if command == "resample" {
                c.arg(dir.path().join("out.tif"));
            }
            let child = c
                .args(["-f", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Opening a FIFO with no writer blocks for ever: a deadline, not a hang.
            let o = output_within(child, Duration::from_secs(30), false)
                .unwrap_or_else(|o| panic!("{command} on {what} hangs: {}", stderr(&o)));
            let line = one_error(&o, 3);
            assert!(line.contains(what), "{line}");
        }
    }
    assert!(!dir.path().join("out.tif").exists());
}

#[test]
fn side_paths_are_named_by_their_flag_and_checked_against_each_other_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), "in.tif", 64);
    let out = dir.path().join("out.tif");
    let existing = dir.path().join("exists.html");
    std::fs::write(&existing, "x").unwrap();
    let json = dir.path().join("r.json").into_os_string();
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec!["--report-html".into(), existing.clone().into_os_string()],
            "--report-html",
        ),
        (
            vec!["--report-html".into(), input.clone().into_os_string()],
            "--report-html",
        ),
        (
            vec![
                "--report".into(),
                json.clone(),
                "--events".into(),
                json.clone(),
            ],
            "--events",
        ),
        (
            vec![
                "--report".into(),
                json.clone(),
                "--report-html".into(),
                dir.path().join(".").join("r.json").into_os_string(),
            ],
            "--report-html",
        ),
        (
            vec![
                "--events".into(),
                dir.path().join("./in.tif").into_os_string(),
            ],
            "--events",
        ),
        (
            vec![
                "--events".into(),
                dir.path().join("./out.tif").into_os_string(),
            ],
            "--events",
        ),
    ];
    for (args, flag) in cases {
        let o = run(resample_cmd("1", &input, &out)
            .args(["-f", "2"])
            .args(&args));
        let line = one_error(&o, 2);
        assert!(
            line.starts_with(&format!("error: {flag} ")),
            "{args:?}: {line}"
        );
        // Refused before the run: nothing was written.
        assert!(!out.exists(), "{args:?}: the run went ahead");
        assert!(!dir.path().join("r.json").exists());
    }
}

#[test]
fn merge_names_each_shards_own_value_when_shards_disagree() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), "in.tif", 200);
    let out = dir.path().join("out.tif");
    for (s, f) in [("0/3", "4"), ("1/3", "4"), ("2/3", "8")] {
        let o = run(resample_cmd("1", &input, &out).args([
            "-f",
            f,
            "--chunk-mib",
            "0.05",
            "--shard",
            s,
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(coordinator().arg("merge").arg(&out));
    let line = one_error(&o, 3);
    assert!(line.contains("shards 0-1 and shard 2"), "{line}");
    assert!(
        line.contains("shard 2's --factor is 8, shard 0's is 4"),
        "{line}"
    );
}

#[test]
fn an_interrupted_batch_does_not_deny_the_outputs_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let a = input(dir.path(), "a.tif", 64);
    let b = input(dir.path(), "b.tif", 64);
    let out = dir.path().join("batch");
    // One chunk each: b's (chunk 1) hangs in its worker, so a.tif is committed and the batch
    // is still running when the signal comes.
    let child = resample_cmd("2", &a, &b)
        .arg("--out-dir")
        .arg(&out)
        .args([
            "-f",
            "2",
            "--task-timeout",
            "120s",
            "--inject-fault",
            "hang:1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(60), "a.tif committed", || {
        out.join("a.tif").exists().then_some(())
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let o = output_within(child, Duration::from_secs(60), false).expect("the batch stops");
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("wrote "), "{err}");
    assert!(!err.contains("no output written"), "{err}");
    let line = errors(&o)
        .into_iter()
        .find(|l| l.contains("interrupted by SIGINT"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("1 output(s) committed before it"), "{line}");
    assert!(out.join("a.tif").exists() && !out.join("b.tif").exists());
}

/// A UInt16 GeoTIFF whose GDAL_NODATA tag says -9999, a value the type cannot hold (GDAL
/// itself would clamp it when asked to set it, so the tag is patched).
fn u16_with_negative_nodata(path: &Path) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let ds = driver
        .create_with_band_type::<u16, _>(path, 64, 64, 1)
        .unwrap();
    {
        let mut band = ds.rasterband(1).unwrap();
        band.set_no_data_value(Some(65535.0)).unwrap();
        let data: Vec<u16> = (0..64 * 64).map(|i| (i % 1000) as u16).collect();
        band.write((0, 0), (64, 64), &mut Buffer::new((64, 64), data))
            .unwrap();
    }
    ds.close().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(6)
        .position(|w| w == b"65535\0")
        .expect("the GDAL_NODATA tag");
    bytes[at..at + 6].copy_from_slice(b"-9999\0");
    std::fs::write(path, bytes).unwrap();
}

/// `path`'s copy with its Compression tag (259) set to `code` (an uncompressed little-endian
/// classic TIFF, as GDAL writes one by default).
fn with_compression_code(path: &Path, code: u16) {
    let mut b = std::fs::read(path).unwrap();
    assert_eq!(&b[..4], b"II*\0");
    let ifd = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes(b[ifd..ifd + 2].try_into().unwrap()) as usize;
    let entry = (0..n)
        .map(|i| ifd + 2 + 12 * i)
        .find(|&e| u16::from_le_bytes(b[e..e + 2].try_into().unwrap()) == 259)
        .expect("a Compression tag");
    b[entry + 8..entry + 10].copy_from_slice(&code.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn refusals_print_values_and_codec_names() {
    let dir = tempfile::tempdir().unwrap();
    let nd = dir.path().join("u16.tif");
    u16_with_negative_nodata(&nd);
    let o = run(resample_cmd("1", &nd, dir.path().join("o.tif")).args([
        "-f",
        "2",
        "--decoder",
        "native",
    ]));
    let line = one_error(&o, 3);
    assert!(line.contains("nodata -9999 is not"), "{line}");

    // ThunderScan (32809): a codec libtiff knows and the native decoder does not.
    let ts = dir.path().join("ts.tif");
    u16_with_negative_nodata(&ts);
    with_compression_code(&ts, 32809);
    let o = run(resample_cmd("1", &ts, dir.path().join("o2.tif")).args([
        "-f",
        "2",
        "--decoder",
        "native",
    ]));
    let line = one_error(&o, 3);
    assert!(line.contains("ThunderScan compression (32809)"), "{line}");
}

#[test]
fn shard_and_kernel_lib_mistakes_name_the_flag_with_the_documented_code() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), "in.tif", 64);
    let out = dir.path().join("out.tif");
    for bad in ["-1/2", "-1", "2/2"] {
        let o = run(resample_cmd("1", &input, &out).args(["-f", "2", "--shard", bad]));
        let line = one_error(&o, 2);
        assert!(line.contains("--shard"), "--shard {bad}: {line}");
    }
    // A --kernel-lib that does not exist is a file named on the command line that is not
    // there: bad input (3), like a missing INPUT, as the README's exit-code table says.
    let o = run(coordinator()
        .args(["--workers", "1", "map"])
        .arg(&input)
        .arg(&out)
        .arg("--kernel-lib")
        .arg(dir.path().join("missing.so")));
    let line = one_error(&o, 3);
    assert!(line.contains("--kernel-lib"), "{line}");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let row3 = readme
        .lines()
        .find(|l| l.starts_with("| 3 |"))
        .expect("the exit-code table");
    assert!(
        row3.contains("`--kernel-lib` that does not exist"),
        "{row3}"
    );
    assert!(
        !readme.contains("A library\nthat does not open or lacks the symbol"),
        "the README still gives a missing library exit 6"
    );
}

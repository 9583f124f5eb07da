//! The write path never lies: every failure while writing is exit 4 with GDAL's or the
//! system's own text, nothing partial is left, an existing OUTPUT is kept, a second run on
//! the same OUTPUT is refused, a file that appears at OUTPUT during the run is not
//! clobbered, the report can replace neither the input nor the output, and a valid pixel is
//! never written as nodata. Each case runs the real binaries and checks what is on disk.

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use crate::common::*;

struct Case {
    dir: tempfile::TempDir,
    input: PathBuf,
    data: Vec<Vec<f32>>,
    spec: RasterSpec,
}

fn case() -> Case {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    let spec = RasterSpec {
        width: 300,
        height: 200,
        ..RasterSpec::default()
    };
    let data = write_f32(&input, &spec);
    Case {
        dir,
        input,
        data,
        spec,
    }
}

impl Case {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `resample` at factor 4 unless `extra` names one.
    fn resample(&self, out: &Path, extra: &[&str]) -> Command {
        let mut c = coordinator();
        c.args(["--workers", "1", "resample"])
            .arg(&self.input)
            .arg(out);
        if !extra.contains(&"--factor") {
            c.args(["--factor", "4"]);
        }
        c.args(extra);
        c
    }

    /// Every name in the directory (temporaries and lock files included).
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Nothing partial and no lock left, and no worker of this case alive.
    fn assert_clean(&self, o: &Output) {
        let left: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| n.contains(".partial-") || n.ends_with(".lock") || n.contains(".probe-"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}\n{}", stderr(o));
        let alive = workers_mentioning(&self.dir.path().to_string_lossy());
        assert!(alive.is_empty(), "workers survived: {alive:?}");
    }
}

/// The one-line error, and its exit code.
fn fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    assert!(lines[0].contains(needle), "'{needle}' not in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_codec_failure_is_exit_4_with_gdals_text_and_leaves_nothing() {
    let c = case();
    let out = c.path("out.tif");
    // JPEG cannot hold Float64.
    let o = run(&mut c.resample(&out, &["--co", "COMPRESS=JPEG"]));
    fails(&o, 4, "JPEG");
    assert!(!out.exists());
    c.assert_clean(&o);
}

#[test]
fn a_file_size_limit_fails_the_write_cleanly_and_keeps_the_old_output() {
    let c = case();
    let out = c.path("out.tif");
    std::fs::write(&out, b"the previous result").unwrap();
    // The uncompressed Float64 output at factor 1 (470 KiB) does not fit under 256 KiB.
    let limit = 256 * 1024;
    let mut cmd = c.resample(
        &out,
        &[
            "--overwrite",
            "--co",
            "COMPRESS=NONE",
            "--chunk-mib",
            "0.02",
            "--factor",
            "1",
        ],
    );
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child before exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_FSIZE,
                limit,
                limit,
            )?;
            Ok(())
        });
    }
    let o = run(&mut cmd);
    // The ring (a few 64x64 tiles a slot) fits under the limit; the output does not.
    fails(&o, 4, "File too large");
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous result");
    c.assert_clean(&o);
}

#[test]
fn the_shared_ring_under_a_tiny_file_size_limit_is_a_clean_exit_7() {
    let c = case();
    let out = c.path("out.tif");
    let mut cmd = c.resample(&out, &[]);
    // SAFETY: as above.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, 4096, 4096)?;
            Ok(())
        });
    }
    let o = run(&mut cmd);
    fails(&o, 7, "ulimit -f");
    assert!(!out.exists());
    c.assert_clean(&o);
}

#[test]
fn a_batch_ring_under_a_tiny_file_size_limit_names_ulimit_f_as_a_single_run_does() {
    let c = case();
    let out_dir = c.path("outs");
    let mut cmd = coordinator();
    cmd.args(["--workers", "1", "resample"])
        .arg(&c.input)
        .arg("--out-dir")
        .arg(&out_dir)
        .args(["--factor", "4"]);
    // SAFETY: as above.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, 4096, 4096)?;
            Ok(())
        });
    }
    let o = run(&mut cmd);
    // The batch creates its ring the way a single run does, with the same hint.
    fails(&o, 7, "ulimit -f");
    assert!(!out_dir.join("in.tif").exists());
    c.assert_clean(&o);
}

#[test]
fn a_full_disk_is_exit_4_and_leaves_nothing() {
    if !nix::unistd::geteuid().is_root() {
        cannot_check("mounting a small tmpfs needs root");
        return;
    }
    let c = case();
    let mnt = c.path("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        cannot_check("this sandbox cannot mount a tmpfs");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let out = mnt.join("out.tif");
    let o = run(&mut c.resample(&out, &["--factor", "1", "--co", "COMPRESS=NONE"]));
    fails(&o, 4, "out.tif");
    let left: Vec<_> = std::fs::read_dir(&mnt).unwrap().flatten().collect();
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}

#[test]
fn the_report_can_replace_neither_the_input_nor_the_output() {
    let c = case();
    let out = c.path("out.tif");
    let before = std::fs::read(&c.input).unwrap();
    // The input under another spelling of its path.
    let alias = c.dir.path().join(".").join("in.tif");
    let o = run(c.resample(&out, &["--report"]).arg(&alias));
    fails(&o, 2, "input");
    assert_eq!(std::fs::read(&c.input).unwrap(), before);
    assert!(!out.exists());

    // The output, existing and replaced with --overwrite: the report may not take its place.
    std::fs::write(&out, b"old").unwrap();
    let o = run(c.resample(&out, &["--overwrite", "--report"]).arg(&out));
    fails(&o, 2, "output");
    assert_eq!(std::fs::read(&out).unwrap(), b"old");

    // An existing report is replaced only with --overwrite, like the output.
    let rep = c.path("run.json");
    std::fs::write(&rep, b"{}").unwrap();
    let o = run(c.resample(&c.path("o2.tif"), &["--report"]).arg(&rep));
    fails(&o, 2, "--overwrite");
    assert_eq!(std::fs::read(&rep).unwrap(), b"{}");
    let o = run(c
        .resample(&c.path("o2.tif"), &["--overwrite", "--report"])
        .arg(&rep));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(report(&rep)["exit_code"], 0);

    // A FIFO is not a report path (writing would block forever).
    let fifo = c.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let o = run(c
        .resample(&c.path("o3.tif"), &["--overwrite", "--report"])
        .arg(&fifo));
    fails(&o, 2, "FIFO");
    c.assert_clean(&o);
}

#[test]
fn overwrite_only_ever_replaces_a_regular_file() {
    let c = case();
    let fifo = c.path("fifo.tif");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let o = run(&mut c.resample(&fifo, &["--overwrite"]));
    fails(&o, 4, "FIFO");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    let dir = c.path("adir");
    std::fs::create_dir(&dir).unwrap();
    let o = run(&mut c.resample(&dir, &["--overwrite"]));
    fails(&o, 4, "directory");
    let o = run(&mut c.resample(Path::new(&format!("{}/", c.path("x").display())), &[]));
    fails(&o, 4, "directory");

    if nix::unistd::geteuid().is_root() {
        // A private null device: as root, rename would have turned it into a regular file.
        let dev = c.path("null.tif");
        nix::sys::stat::mknod(
            &dev,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        let o = run(&mut c.resample(&dev, &["--overwrite"]));
        fails(&o, 4, "character device");
        assert!(std::fs::metadata(&dev)
            .unwrap()
            .file_type()
            .is_char_device());
    } else {
        cannot_check("the device-node case needs root (mknod)");
    }
    c.assert_clean(&o);
}

use std::os::unix::fs::FileTypeExt;

/// Starts a run, waits until it holds its lock, and stops it (SIGSTOP) so that the test can
/// act "during the run" without a race. Returns the child, still stopped.
fn start_and_pause(c: &Case, out: &Path, extra: &[&str]) -> Child {
    let child = c
        .resample(out, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let name = out.file_name().unwrap().to_string_lossy().into_owned();
    let lock = out.with_file_name(format!(".{name}.lock"));
    wait_for(Duration::from_secs(20), "the run's lock file", || {
        std::fs::read_to_string(&lock)
            .ok()
            .filter(|s| s.trim() == child.id().to_string())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    child
}

fn resume(child: Child) -> Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGCONT,
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_run_on_the_same_output_is_refused_naming_the_first() {
    let c = case();
    let out = c.path("out.tif");
    let first = start_and_pause(&c, &out, &[]);
    let pid = first.id();
    let o = run(&mut c.resample(&out, &["--overwrite"]));
    fails(&o, 4, &format!("process {pid}"));
    let o1 = resume(first);
    assert!(o1.status.success(), "{}", stderr(&o1));
    let (ds, _) = read_all(&out);
    assert_eq!(ds.raster_size(), (75, 50));
    c.assert_clean(&o1);
}

#[test]
fn a_file_that_appears_at_output_during_the_run_is_not_clobbered() {
    let c = case();
    let out = c.path("out.tif");
    let run1 = start_and_pause(&c, &out, &[]);
    std::fs::write(&out, b"somebody else's file").unwrap();
    let o = resume(run1);
    fails(&o, 4, "appeared during the run");
    assert_eq!(std::fs::read(&out).unwrap(), b"somebody else's file");
    c.assert_clean(&o);
}

#[test]
fn a_report_that_cannot_be_written_at_the_end_is_exit_4_after_the_output() {
    let c = case();
    let out = c.path("out.tif");
    let rdir = c.path("reports");
    std::fs::create_dir(&rdir).unwrap();
    let rep = rdir.join("run.json");
    let run1 = start_and_pause(&c, &out, &["--report", rep.to_str().unwrap()]);
    std::fs::remove_dir(&rdir).unwrap();
    let o = resume(run1);
    fails(&o, 4, "writing the report");
    assert!(stderr(&o).contains("wrote"), "{}", stderr(&o));
    // The output is committed and complete.
    let (_, bands) = read_all(&out);
    let want = reference_sum(&c.data[0], c.spec.width, c.spec.height, 4, Some(NODATA));
    assert!(bands[0].iter().zip(&want).all(|(a, b)| close(*a, *b)));
    c.assert_clean(&o);
}

#[test]
fn clamping_never_turns_a_valid_pixel_into_nodata() {
    let c = case();
    let out = c.path("out.tif");
    let rep = c.path("run.json");
    let o = run(c
        .resample(&out, &["--ot", "Byte", "--factor", "8", "--report"])
        .arg(&rep));
    assert!(o.status.success(), "{}", stderr(&o));
    let want = reference_sum(&c.data[0], c.spec.width, c.spec.height, 8, Some(NODATA));
    let (ds, bands) = read_all(&out);
    let nd = ds.rasterband(1).unwrap().no_data_value();
    assert_eq!(
        nd,
        Some(255.0),
        "-9999 does not fit in Byte: its top end is nodata"
    );
    let mut adjusted = 0;
    for (i, (&got, &sum)) in bands[0].iter().zip(&want).enumerate() {
        if sum.is_nan() {
            assert_eq!(got, 255.0, "pixel {i}: an empty block is nodata");
            continue;
        }
        let exact = sum.round();
        let expect = exact.clamp(0.0, 254.0);
        adjusted += (expect != exact) as u64;
        assert_eq!(got, expect, "pixel {i}: sum {sum}");
    }
    assert!(adjusted > 0, "the case should clamp something");
    // The report, read back as the coordinator's own types.
    let r: coordinator::report::Report =
        serde_json::from_str(&std::fs::read_to_string(&rep).unwrap()).unwrap();
    let a = r.totals.adjusted_by_band[0];
    assert_eq!(a.clamped + a.moved_off_nodata, adjusted);
    assert_eq!(r.exit_code, 0);
    assert!(
        stderr(&o).contains(&format!("band 1: {}", a.clamped)),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bands_with_different_nodata_are_each_read_with_their_own() {
    let c = case();
    // Band 2 of a VRT: the same pixels with another nodata value, so -9999 is a valid value
    // there and its own nodata (a value that occurs) is not.
    let other = c.path("other.tif");
    let spec2 = RasterSpec {
        nodata: Some(-7.0),
        seed: 5,
        ..RasterSpec {
            width: c.spec.width,
            height: c.spec.height,
            ..RasterSpec::default()
        }
    };
    let data2 = write_f32(&other, &spec2);
    let vrt = c.path("mixed.vrt");
    let st = Command::new("gdalbuildvrt")
        .arg("-separate")
        .arg(&vrt)
        .arg(&c.input)
        .arg(&other)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let out = c.path("out.tif");
    let o = run(resample_cmd("1", &vrt, &out).args(["--factor", "4"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds, bands) = read_all(&out);
    // One nodata for the file (GeoTIFF holds one), which no valid sum can take.
    let nd = ds.rasterband(1).unwrap().no_data_value().unwrap();
    assert!(nd.is_nan(), "{nd}");
    let (w, h) = (c.spec.width, c.spec.height);
    for (b, (data, own)) in [(&c.data[0], NODATA), (&data2[0], -7.0)].iter().enumerate() {
        let want = reference_sum(data, w, h, 4, Some(*own));
        for (i, (&got, &sum)) in bands[b].iter().zip(&want).enumerate() {
            if sum.is_nan() {
                assert!(got.is_nan(), "band {}: pixel {i}: empty block", b + 1);
            } else {
                assert!(close(got, sum), "band {}: pixel {i}: {got} vs {sum}", b + 1);
            }
        }
    }
}

#[test]
fn a_report_that_appears_during_the_run_is_not_clobbered() {
    let c = case();
    let out = c.path("out.tif");
    let rep = c.path("run.json");
    let run1 = start_and_pause(&c, &out, &["--report", rep.to_str().unwrap()]);
    std::fs::write(&rep, b"another run's report").unwrap();
    let o = resume(run1);
    fails(&o, 4, "was not replaced");
    assert_eq!(std::fs::read(&rep).unwrap(), b"another run's report");
    // The output itself was committed before the report failed.
    let (ds, _) = read_all(&out);
    assert_eq!(ds.raster_size(), (75, 50));
    c.assert_clean(&o);
}

#[test]
fn a_symbolic_link_at_output_is_refused() {
    let c = case();
    let target = c.path("real.tif");
    std::fs::write(&target, b"kept").unwrap();
    let link = c.path("link.tif");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = run(&mut c.resample(&link, &["--overwrite"]));
    fails(&o, 4, "symbolic link");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"kept");
    // Dangling: refused up front too, not after the work.
    let dangling = c.path("dangling.tif");
    std::os::unix::fs::symlink(c.path("nowhere.tif"), &dangling).unwrap();
    let o = run(&mut c.resample(&dangling, &[]));
    fails(&o, 4, "symbolic link");
    c.assert_clean(&o);
}

//! Issue 8's loose ends, each proven against the real binaries: a stopped worker or one that
//! never says hello cannot stall a run; admission that can never open is refused; a closed
//! stderr, SIGHUP and descriptor pressure end runs cleanly; GDAL virtual paths open; clean
//! runs report no deaths; bad values name their option; sizes from every source mean MiB;
//! complex types are named; factors beyond the raster work; the README's config runs.
//! Every run checks its exit code, its one-line message, that nothing partial is left on
//! disk and that no worker process survives it.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::common::*;
use nix::{sys::signal::Signal, unistd::Pid};

fn raster(dir: &Path, w: usize, h: usize) -> (PathBuf, Vec<f32>) {
    let input = dir.join("in.tif");
    let mut data = write_f32(
        &input,
        &RasterSpec {
            width: w,
            height: h,
            tile: if w >= 64 && h >= 64 { Some(64) } else { None },
            ..RasterSpec::default()
        },
    );
    (input, data.remove(0))
}

/// Nothing named like the writer's temporary file is left in `dir`.
fn assert_no_partial(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// No live process (a worker, or whatever `--worker-bin` became) mentions `needle`.
fn assert_no_process(needle: &str) {
    let live = || {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rfind(')')
                .is_some_and(|i| stat[i + 2..].starts_with('Z'));
            if !zombie && String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
        out
    };
    // The coordinator waits for its workers; allow the kernel a moment to reap.
    wait_for(Duration::from_secs(2), "no surviving worker", || {
        live().is_empty().then_some(())
    });
}

/// The error output is one line (logs at the default level are warnings only).
fn one_line(o: &Output) -> String {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains(" WARN ")).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

fn chunks_of(input: &Path, args: &[&str]) -> u64 {
    let o = run(coordinator()
        .args(["--workers", "2", "plan"])
        .arg(input)
        .args(args)
        .arg("--json"));
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["chunks"].as_u64().unwrap()
}

fn check_sum(out: &Path, data: &[f32], w: usize, h: usize, f: usize) {
    let (ds, bands) = read_all(out);
    assert_eq!(ds.raster_size(), (w.div_ceil(f), h.div_ceil(f)));
    let want = reference_sum(data, w, h, f, Some(NODATA));
    for (i, (g, r)) in bands[0].iter().zip(&want).enumerate() {
        assert!(close(*g, *r), "pixel {i}: {g} vs reference {r}");
    }
}

/// Reads a child's stderr on a thread, line by line.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_line(rx: &mpsc::Receiver<String>, limit: Duration, needle: &str) -> Option<String> {
    let end = Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return Some(l),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

// Item 7: a stopped worker is timed out by the default limit; the run finishes.
#[test]
fn a_stopped_worker_does_not_stall_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // Enough chunks that the workers are still at work when one is stopped: forked workers
    // are ready within milliseconds, and 50 small chunks were all done before the stop.
    let (w, h) = (1200, 800);
    let (input, data) = raster(dir.path(), w, h);
    let args = ["-f", "4", "--chunk-mib", "0.02"];
    let last = chunks_of(&input, &args) - 1;
    let out = dir.path().join("out.tif");
    let rep = dir.path().join("run.json");
    let t0 = Instant::now();
    // The slow last chunk keeps the run going while the stopped worker is timed out.
    let child = resample_cmd("2", &input, &out)
        .args(args)
        .args(["--spare-workers", "0", "--task-timeout-floor", "1s"])
        .args(["--start-timeout", "3s", "--inject-fault"])
        .arg(format!("slow:{last}"))
        .arg("--report")
        .arg(&rep)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let victim = wait_for(Duration::from_secs(10), "two workers", || {
        let w = worker_children(pid);
        (w.len() == 2).then(|| w[0])
    });
    nix::sys::signal::kill(Pid::from_raw(victim as i32), Signal::SIGSTOP).unwrap();
    let o = output_within(child, Duration::from_secs(40), false)
        .unwrap_or_else(|_| panic!("the run stalled behind a stopped worker"));
    let (status, err) = (o.status, stderr(&o));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(40));
    assert!(err.starts_with("wrote "), "{err}");
    check_sum(&out, &data, w, h, 4);
    let r = report(&rep);
    let stopped = r["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pid"].as_u64() == Some(victim as u64))
        .cloned();
    // Stopped after its hello: a task timeout; before it: a start timeout. Either way the
    // coordinator killed it and went on.
    if let Some(s) = stopped {
        let cause = s["cause"].to_string();
        assert!(cause.contains("timeout"), "{s}");
    }
    assert!(
        r["totals"]["timeouts"].as_u64().unwrap() >= 1,
        "{}",
        r["totals"]
    );
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 8: a worker binary that never says hello ends the run (exit 6) in about 10 s.
#[test]
fn a_worker_that_never_says_hello_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 100, 100);
    let script = dir.path().join("mute-worker.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 987654\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = dir.path().join("out.tif");
    let t0 = Instant::now();
    let o = run(resample_cmd("1", &input, &out)
        .args(["-f", "4", "--worker-bin"])
        .arg(&script));
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let line = one_line(&o);
    assert!(line.contains("did not say hello"), "{line}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
    assert!(!out.exists());
    assert_no_partial(dir.path());
    assert_no_process("987654");
}

// Item 9: admission that can never open is refused; a wait says so now and then.
#[test]
fn min_free_memory_beyond_the_machine_is_refused_and_waits_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 100, 100);
    let out = dir.path().join("out.tif");
    let o = run(resample_cmd("1", &input, &out).args(["-f", "4", "--min-free-memory", "1000TiB"]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let line = one_line(&o);
    assert!(
        line.contains("--min-free-memory") && line.contains("wait forever"),
        "{line}"
    );
    assert_no_partial(dir.path());

    // All of the machine's memory is never available: the run waits, and says so.
    let mut child = coordinator()
        .args(["-v", "--workers", "1", "resample"])
        .arg(&input)
        .arg(&out)
        .args(["-f", "4", "--min-free-memory"])
        .arg(mem_total_mib().to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let seen = wait_line(&rx, Duration::from_secs(20), "waiting for free memory");
    if seen.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no 'waiting for free memory' line within 20 s");
    }
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(!out.exists());
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 10: a closed stderr neither panics nor changes the exit code.
#[test]
fn a_closed_stderr_does_not_end_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (300, 200);
    let (input, data) = raster(dir.path(), w, h);
    let out = dir.path().join("out.tif");
    // The slow chunk times out after 300 ms: the run outlives the closed pipe for sure.
    let mut child = coordinator()
        .env("BLOCKSUM_LOG", "debug")
        .args(["--workers", "2", "resample"])
        .arg(&input)
        .arg(&out)
        .args(["-f", "4", "--chunk-mib", "0.02", "--inject-fault", "slow:0"])
        .args(["--task-timeout", "300ms"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    drop(err);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "first line: {first}");
    check_sum(&out, &data, w, h, 4);
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 11: SIGHUP ends the run like SIGTERM.
#[test]
fn sighup_stops_the_run_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 200, 200);
    let out = dir.path().join("out.tif");
    let child = resample_cmd("2", &input, &out)
        // Several chunks: a run starts no more workers than it has chunks, and its spare
        // once chunks wait.
        .args(["-f", "4", "--chunk-mib", "0.01", "--inject-fault", "hang:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for(Duration::from_secs(10), "three worker processes", || {
        (worker_children(pid).len() == 3).then_some(())
    });
    nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGHUP).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let line = one_line(&o);
    assert!(line.contains("interrupted by SIGHUP"), "{line}");
    assert!(!out.exists());
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 12: too few descriptors is refused up front, without a panic.
#[test]
fn too_few_file_descriptors_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 200, 200);
    let out = dir.path().join("out.tif");
    let mut cmd = coordinator();
    cmd.args(["--workers", "2", "resample"])
        .arg(&input)
        .arg(&out)
        .args(["-f", "4"]);
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 20, 20)
                .map_err(std::io::Error::from)
        });
    }
    let o = run(&mut cmd);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let line = one_line(&o);
    assert!(
        line.contains("file descriptors") && line.contains("20"),
        "{line}"
    );
    assert!(!out.exists());
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 12, continued: restarts do not leak descriptors. ipc-channel's `connect` leaked one
// socket per worker exit (about 1 per restart): under a limit of 64, 150 restarts in one run
// ran out. The limit is hard, so the coordinator cannot raise it.
#[test]
fn many_restarts_under_a_low_descriptor_limit_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 1024, 600);
    let out = dir.path().join("out.tif");
    let mut cmd = coordinator();
    cmd.args(["--workers", "1", "resample"])
        .arg(&input)
        .arg(&out)
        .args(["-f", "4", "--chunk-mib", "0.01", "--spare-workers", "0"])
        .args(["--inject-fault", "crash:*:1"]);
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 64, 64)
                .map_err(std::io::Error::from)
        });
    }
    let o = run(&mut cmd);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let restarts: u32 = stderr(&o)
        .split(" restart(s)")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the summary counts restarts");
    assert!(restarts >= 100, "only {restarts} restarts: {}", stderr(&o));
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 14: GDAL's virtual paths are GDAL's to open, in the coordinator and the workers.
#[test]
fn a_zipped_raster_opens_through_vsizip() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (300, 200);
    let (input, data) = raster(dir.path(), w, h);
    let zip = dir.path().join("in.zip");
    let st = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z: z.write(sys.argv[2], 'in.tif')",
        ])
        .arg(&zip)
        .arg(&input)
        .status()
        .expect("python3");
    assert!(st.success());
    let vsi = format!("/vsizip/{}/in.tif", zip.display());
    let plain = dir.path().join("plain.tif");
    let zipped = dir.path().join("zipped.tif");
    for (src, out) in [
        (input.to_string_lossy().into_owned(), &plain),
        (vsi.clone(), &zipped),
    ] {
        let o = run(coordinator()
            .args(["--workers", "2", "resample", &src])
            .arg(out)
            .args(["-f", "4", "--chunk-mib", "0.02"]));
        assert_eq!(o.status.code(), Some(0), "{src}: {}", stderr(&o));
    }
    check_sum(&zipped, &data, w, h, 4);
    assert!(same_pixels(&read_all(&plain).1[0], &read_all(&zipped).1[0]));

    // A missing member is GDAL's error; a missing plain file is still "does not exist".
    let o = run(coordinator()
        .args(["resample", &format!("/vsizip/{}/nope.tif", zip.display())])
        .arg(dir.path().join("x.tif"))
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(one_line(&o).contains("nope.tif"), "{}", stderr(&o));
    let o = run(coordinator()
        .arg("resample")
        .arg(dir.path().join("nope.tif"))
        .arg(dir.path().join("x.tif"))
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(one_line(&o).contains("does not exist"), "{}", stderr(&o));
    assert_no_partial(dir.path());
    assert_no_process(&zip.to_string_lossy());
}

// Item 15: workers stopped on purpose at the end of a run are no deaths.
#[test]
fn clean_runs_report_no_deaths() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 200, 200);
    for i in 0..4 {
        let out = dir.path().join(format!("out{i}.tif"));
        let rep = dir.path().join(format!("run{i}.json"));
        let o = run(resample_cmd("2", &input, &out)
            .args(["-f", "4", "--report"])
            .arg(&rep));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let line = one_line(&o);
        assert!(!line.contains("deaths"), "{line}");
        let r = report(&rep);
        assert_eq!(r["totals"]["deaths_by_cause"], serde_json::json!({}));
        for w in r["workers"].as_array().unwrap() {
            assert!(w["cause"].is_null(), "{w}");
        }
    }
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Items 16 and 21: values and combinations that make no sense are usage errors naming
// the option.
#[test]
fn bad_values_name_their_option() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 64, 48);
    let out = dir.path().join("out.tif");
    let cases: &[(&[&str], &str)] = &[
        (&["--factor", "-1"], "--factor"),
        (&["-f", "2", "--workers", "-1"], "--workers"),
        (&["-f", "2", "--band", "-1"], "--band"),
        (&["-f", "2", "--task-timeout", "-5s"], "--task-timeout"),
        (&["-f", "2", "--soft-fraction", "-0.5"], "--soft-fraction"),
        (&["-f", "2", "--max-attempts", "-2"], "--max-attempts"),
        (
            &["-f", "2", "--band", "1", "--band", "1"],
            "--band 1 is given twice",
        ),
        (&["-f", "2", "--co", "JUSTAKEY"], "KEY=VALUE"),
        (
            &["-f", "2", "--workers", "0", "--inject-fault", "crash:0"],
            "--inject-fault",
        ),
    ];
    for (args, needle) in cases {
        let o = run(coordinator()
            .arg("resample")
            .arg(&input)
            .arg(&out)
            .args(*args));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let line = one_line(&o);
        assert!(line.contains(needle), "{args:?}: {line}");
        assert!(!line.contains("unexpected argument"), "{args:?}: {line}");
        assert!(!out.exists());
    }
    // More spares than workers: said, and capped.
    let o = run(resample_cmd("1", &input, &out).args(["-f", "2", "--spare-workers", "100"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("--spare-workers 100"), "{}", stderr(&o));
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 17: a bare size is MiB from every source; messages name the source.
#[test]
fn bare_sizes_are_mib_and_messages_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = raster(dir.path(), 100, 100);
    let cfg = dir.path().join("seed.toml");
    std::fs::write(
        &cfg,
        "[resampling.multiprocessing]\nmax_workers = 1\nmemory_limit_per_worker = 512\n",
    )
    .unwrap();
    let shown = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = coordinator();
        c.arg("--config").arg(&cfg);
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = run(c.arg("config").args(args));
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        text.lines()
            .find(|l| l.starts_with("memory_limit_per_worker"))
            .unwrap()
            .to_string()
    };
    assert!(shown(&[], &[]).contains("512 MiB"));
    assert!(shown(&[("BLOCKSUM_MEMORY_LIMIT_PER_WORKER", "600")], &[]).contains("600 MiB"));
    assert!(shown(&[], &["--memory-limit-per-worker", "700"]).contains("700 MiB"));
    let out = dir.path().join("out.tif");
    let o = run(coordinator()
        .arg("--config")
        .arg(&cfg)
        .arg("resample")
        .arg(&input)
        .arg(&out)
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    std::fs::write(
        &cfg,
        "[resampling.multiprocessing]\nmax_workers = 1\nmemory_limit_per_worker = 20\n",
    )
    .unwrap();
    let out2 = dir.path().join("out2.tif");
    let o = run(coordinator()
        .arg("--config")
        .arg(&cfg)
        .arg("resample")
        .arg(&input)
        .arg(&out2)
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let line = one_line(&o);
    assert!(
        line.contains("memory_limit_per_worker in") && !line.contains("--memory-limit"),
        "{line}"
    );
    let o = run(coordinator()
        .env("BLOCKSUM_MEMORY_LIMIT_PER_WORKER", "20")
        .args(["--workers", "1", "resample"])
        .arg(&input)
        .arg(&out2)
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert!(one_line(&o).contains("BLOCKSUM_MEMORY_LIMIT_PER_WORKER 20 MiB"));
    assert!(!out2.exists());
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

// Item 18: complex bands are named and refused.
#[test]
fn complex_types_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let vrt = dir.path().join("complex.vrt");
    std::fs::write(
        &vrt,
        r#"<VRTDataset rasterXSize="16" rasterYSize="16">
  <VRTRasterBand dataType="CFloat32" band="1"/>
</VRTDataset>
"#,
    )
    .unwrap();
    let out = dir.path().join("out.tif");
    let o = run(coordinator()
        .arg("resample")
        .arg(&vrt)
        .arg(&out)
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let line = one_line(&o);
    assert!(
        line.contains("CFloat32") && line.contains("not supported"),
        "{line}"
    );
    assert!(!out.exists());
    assert_no_partial(dir.path());
}

// Item 19: a factor beyond a side of the raster follows the partial-edge rule.
#[test]
fn a_factor_beyond_the_raster_gives_partial_blocks() {
    let dir = tempfile::tempdir().unwrap();
    for (w, h, f) in [(1, 100_000, 8), (5, 3, 8)] {
        let sub = dir.path().join(format!("{w}x{h}"));
        std::fs::create_dir(&sub).unwrap();
        let (input, data) = raster(&sub, w, h);
        let out = sub.join("out.tif");
        let o = run(resample_cmd("2", &input, &out).args(["-f", &f.to_string()]));
        assert_eq!(o.status.code(), Some(0), "{w}x{h}: {}", stderr(&o));
        assert!(one_line(&o).starts_with("wrote "));
        check_sum(&out, &data, w, h, f);
        assert_no_partial(&sub);
        assert_no_process(&input.to_string_lossy());
    }
}

// Item 21: the README's config example runs as written, here.
#[test]
fn the_readme_config_example_runs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let start = readme
        .find("```toml\n")
        .expect("a toml block in the README")
        + 8;
    let len = readme[start..].find("```").unwrap();
    let block = &readme[start..start + len];
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("blocksum.toml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(block.as_bytes())
        .unwrap();
    let o = run(coordinator().arg("--config").arg(&cfg).arg("config"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("(file"));
    let (w, h) = (300, 200);
    let (input, data) = raster(dir.path(), w, h);
    let out = dir.path().join("out.tif");
    let o = run(coordinator()
        .arg("--config")
        .arg(&cfg)
        .arg("resample")
        .arg(&input)
        .arg(&out)
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(one_line(&o).starts_with("wrote "));
    check_sum(&out, &data, w, h, 4);
    assert_no_partial(dir.path());
    assert_no_process(&input.to_string_lossy());
}

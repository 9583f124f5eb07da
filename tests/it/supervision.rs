//! Supervision proven by injected faults against the real binaries: each fault kind gives
//! its documented outcome and leaves the other chunks pixel-identical to a clean in-process
//! run; random SIGKILLs through a whole run lose nothing; a worker that cannot start ends
//! the run quickly; a killed or interrupted coordinator leaves no worker and no output.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use crate::common::*;
use nix::{sys::signal::Signal, unistd::Pid};

struct Fixture {
    dir: tempfile::TempDir,
    input: PathBuf,
    clean: Vec<f64>,
    width: usize,
}

const CHUNK_MIB: &str = "0.02";

fn fixture(w: usize, h: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: w,
            height: h,
            ..RasterSpec::default()
        },
    );
    let clean_out = dir.path().join("clean.tif");
    let o = run(coordinator()
        .arg("resample")
        .arg(&input)
        .arg(&clean_out)
        .args(["--factor", "4", "--in-process", "--chunk-mib", CHUNK_MIB]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds, mut bands) = read_all(&clean_out);
    Fixture {
        dir,
        input,
        clean: bands.remove(0),
        width: ds.raster_size().0,
    }
}

fn resample(
    fx: &Fixture,
    name: &str,
    extra: &[&str],
) -> (std::process::Output, PathBuf, serde_json::Value) {
    let out = fx.dir.path().join(format!("{name}.tif"));
    let rep = fx.dir.path().join(format!("{name}.json"));
    let o = run(resample_cmd("2", &fx.input, &out)
        .args(["--factor", "4", "--chunk-mib", CHUNK_MIB, "--report"])
        .arg(&rep)
        .args(extra));
    let report = report(&rep);
    (o, out, report)
}

/// Pixels outside the quarantined chunks equal the clean run; inside they are nodata.
fn check_pixels(fx: &Fixture, out: &Path, report: &serde_json::Value, quarantined: &[u64]) {
    let (_, bands) = read_all(out);
    let got = &bands[0];
    let mut inside = vec![false; got.len()];
    for c in report["chunks"].as_array().unwrap() {
        if quarantined.contains(&c["id"].as_u64().unwrap()) {
            let o: Vec<usize> = c["out_window"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            for y in o[1]..o[1] + o[3] {
                for x in o[0]..o[0] + o[2] {
                    inside[y * fx.width + x] = true;
                }
            }
        }
    }
    for (i, (g, c)) in got.iter().zip(&fx.clean).enumerate() {
        if inside[i] {
            assert!(
                g.is_nan(),
                "pixel {i} of a quarantined chunk is not nodata: {g}"
            );
        } else {
            assert!(
                g.to_bits() == c.to_bits() || (g.is_nan() && c.is_nan()),
                "pixel {i}: {g} vs clean {c}"
            );
        }
    }
}

fn causes(report: &serde_json::Value, chunk: u64) -> Vec<String> {
    report["chunks"][chunk as usize]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| {
            a["failure"]
                .as_object()
                .map(|f| serde_json::Value::Object(f.clone()).to_string())
        })
        .collect()
}

#[test]
fn fault_table() {
    let fx = fixture(300, 260);
    let chunks = {
        let (o, _, r) = resample(&fx, "plain", &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        r["plan"]["chunks"].as_u64().unwrap()
    };
    assert!(
        chunks >= 4,
        "the fixture needs several chunks, got {chunks}"
    );
    let k = 2u64;
    let fault = |kind: &str, times: Option<u32>| match times {
        Some(t) => format!("{kind}:{k}:{t}"),
        None => format!("{kind}:{k}"),
    };
    // (fault, extra args, exit code, expected cause fragment, outcome of chunk k)
    let table: Vec<(String, Vec<&str>, i32, &str, &str)> = vec![
        (fault("crash", None), vec![], 5, "SIGABRT", "quarantined"),
        (fault("segv", None), vec![], 5, "SIGSEGV", "quarantined"),
        (fault("exit", None), vec![], 5, "\"code\":42", "quarantined"),
        (fault("garbage", None), vec![], 5, "garbage", "quarantined"),
        (
            fault("oom", None),
            vec!["--memory-limit-per-worker", "400MiB"],
            5,
            "over_memory",
            "quarantined",
        ),
        (fault("crash", Some(1)), vec![], 0, "SIGABRT", "done"),
        (fault("segv", Some(1)), vec![], 0, "SIGSEGV", "done"),
        (fault("exit", Some(2)), vec![], 0, "\"code\":42", "done"),
        (fault("garbage", Some(1)), vec![], 0, "garbage", "done"),
        // An allocation loop may take over a second in a debug build on a loaded machine:
        // a speculative backup would then win and stop it before the limit does (the
        // speculation module tests that), hiding the cause this row checks.
        (
            fault("oom", Some(1)),
            vec![
                "--memory-limit-per-worker",
                "400MiB",
                "--speculation",
                "off",
            ],
            0,
            "over_memory",
            "done",
        ),
        (
            fault("hang", None),
            vec!["--task-timeout", "1s"],
            0,
            "timeout",
            "done_in_process",
        ),
        (
            fault("slow", None),
            vec!["--task-timeout", "1s"],
            0,
            "timeout",
            "done_in_process",
        ),
    ];
    for (i, (f, extra, code, cause, outcome)) in table.iter().enumerate() {
        let mut args = vec!["--inject-fault", f.as_str()];
        args.extend(extra.iter());
        let (o, out, report) = resample(&fx, &format!("case{i}"), &args);
        assert_eq!(o.status.code(), Some(*code), "{f}: {}", stderr(&o));
        let c = &report["chunks"][k as usize];
        assert_eq!(c["outcome"], *outcome, "{f}: {c}");
        let seen = causes(&report, k);
        assert!(
            !seen.is_empty() && seen.iter().all(|s| s.contains(cause)),
            "{f}: causes {seen:?}"
        );
        // A chunk that crashed a worker never runs in process.
        if *outcome == "quarantined" {
            assert_eq!(seen.len(), 3, "{f}: three attempts");
            assert!(
                c["attempts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|a| a["executor"]["on"] == "worker"),
                "{f}"
            );
            assert!(stderr(&o).contains("quarantined"), "{f}: {}", stderr(&o));
        }
        let q: Vec<u64> = if *outcome == "quarantined" {
            vec![k]
        } else {
            vec![]
        };
        check_pixels(&fx, &out, &report, &q);
        // Every other chunk was done exactly once, by a worker.
        for (j, ch) in report["chunks"].as_array().unwrap().iter().enumerate() {
            if j as u64 != k {
                assert_eq!(ch["outcome"], "done", "{f}: chunk {j}");
                assert_eq!(
                    ch["attempts"].as_array().unwrap().len(),
                    1,
                    "{f}: chunk {j}"
                );
            }
        }
    }
}

#[test]
fn over_memory_is_reported_as_such_in_the_summary() {
    let fx = fixture(200, 200);
    let (o, _, report) = resample(
        &fx,
        "oom",
        &[
            "--inject-fault",
            "oom:1",
            "--memory-limit-per-worker",
            "300MiB",
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("over memory"), "{}", stderr(&o));
    assert_eq!(report["totals"]["deaths_by_cause"]["over memory"], 3);
    // The worker's last words are kept: the allocator's complaint.
    let tails: Vec<String> = report["workers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| {
            w["stderr_tail"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
        })
        .collect();
    assert!(
        tails.iter().any(|l| l.contains("memory allocation of")),
        "{tails:?}"
    );
}

#[test]
fn chaos_random_sigkills_lose_nothing() {
    let fx = fixture(2048, 2048);
    let out = fx.dir.path().join("chaos.tif");
    let rep = fx.dir.path().join("chaos.json");
    let mut child = resample_cmd("2", &fx.input, &out)
        .args([
            "--factor",
            "4",
            "--chunk-mib",
            "0.01",
            "--max-attempts",
            "20",
            "--report",
        ])
        .arg(&rep)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut kills = 0;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "chaos run did not finish");
        std::thread::sleep(Duration::from_millis(300));
        let ws = worker_children(pid);
        if ws.is_empty() {
            continue;
        }
        let victim = ws[(crate::common::xorshift(&mut seed) % ws.len() as u64) as usize];
        if nix::sys::signal::kill(Pid::from_raw(victim as i32), Signal::SIGKILL).is_ok() {
            kills += 1;
        }
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "chaos run failed after {kills} kills: {}",
        stderr(&o)
    );
    assert!(
        kills >= 2,
        "the run was too short to be chaotic ({kills} kills)"
    );
    let report = report(&rep);
    let t = &report["totals"];
    assert_eq!(
        t["done"].as_u64().unwrap() + t["done_in_process"].as_u64().unwrap(),
        t["chunks"].as_u64().unwrap()
    );
    assert!(t["restarts"].as_u64().unwrap() >= 1, "{t}");
    check_pixels(&fx, &out, &report, &[]);
}

#[test]
fn a_worker_that_cannot_start_ends_the_run_quickly() {
    let fx = fixture(100, 100);
    let t0 = Instant::now();
    let (o, out, report) = resample(&fx, "nostart", &["--worker-bin", "/bin/false"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot start"), "{}", stderr(&o));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    assert!(!out.exists());
    assert_eq!(report["exit_code"], 6);
}

#[test]
fn protocol_version_mismatch_is_a_clear_error() {
    let fx = fixture(100, 100);
    let out = fx.dir.path().join("v.tif");
    let o = run(coordinator()
        .env("BLOCKSUM_WORKER_FAKE_PROTOCOL_VERSION", "99")
        .args(["--workers", "1", "resample"])
        .arg(&fx.input)
        .arg(&out)
        .args(["--factor", "4"]));
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(stderr(&o).contains("protocol version 99"), "{}", stderr(&o));
    assert!(!out.exists());
}

fn shm_entries() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Starts a run whose chunk 0 hangs forever, and waits until its workers are up.
fn hanging_run(fx: &Fixture, out: &Path) -> std::process::Child {
    let child = resample_cmd("2", &fx.input, out)
        // Several chunks: a run starts no more workers than it has chunks, and its spare
        // once chunks wait.
        .args([
            "--factor",
            "4",
            "--chunk-mib",
            "0.01",
            "--inject-fault",
            "hang:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Two workers and the warm spare.
    wait_for(Duration::from_secs(10), "three worker processes", || {
        (worker_children(pid).len() == 3).then_some(())
    });
    child
}

#[test]
fn killing_the_coordinator_takes_its_workers_along() {
    let fx = fixture(200, 200);
    let before = shm_entries();
    let out = fx.dir.path().join("killed.tif");
    let mut child = hanging_run(&fx, &out);
    let needle = fx.input.to_string_lossy().into_owned();
    assert_eq!(workers_mentioning(&needle).len(), 3);
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    wait_for(
        Duration::from_secs(1),
        "workers to die with their coordinator",
        || workers_mentioning(&needle).is_empty().then_some(()),
    );
    assert_eq!(shm_entries(), before, "something was left in /dev/shm");
    assert!(!out.exists());
}

#[test]
fn sigint_stops_the_run_cleanly() {
    let fx = fixture(200, 200);
    let out = fx.dir.path().join("int.tif");
    let child = hanging_run(&fx, &out);
    let needle = fx.input.to_string_lossy().into_owned();
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
    assert!(workers_mentioning(&needle).is_empty());
    let left: Vec<_> = std::fs::read_dir(fx.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("int"))
        // The chunk journal stays on purpose: `--resume` continues from it.
        .filter(|n| n != "int.tif.journal")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

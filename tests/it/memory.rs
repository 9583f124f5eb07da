//! Memory governance against the real binaries: the soft limit recycles leaking workers
//! without losing chunks; limits and sizes are validated before anything starts; the config
//! file layers under environment and flags; admission holds dispatch while memory is short.

use std::{io::Write, process::Stdio, time::Duration};

use crate::common::*;
use nix::{sys::signal::Signal, unistd::Pid};

fn raster(dir: &std::path::Path, w: usize, h: usize) -> std::path::PathBuf {
    let input = dir.join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: w,
            height: h,
            ..RasterSpec::default()
        },
    );
    input
}

#[test]
fn leaking_workers_are_recycled_by_the_soft_limit() {
    let dir = tempfile::tempdir().unwrap();
    let input = raster(dir.path(), 600, 600);
    let clean = dir.path().join("clean.tif");
    let o = run(coordinator().arg("resample").arg(&input).arg(&clean).args([
        "-f",
        "4",
        "--in-process",
        "--chunk-mib",
        "0.02",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("leak.tif");
    let rep = dir.path().join("leak.json");
    // Each chunk leaks 64 MiB of touched memory; the soft limit (0.8 x 512 MiB) is crossed
    // after a few chunks, long before the hard limit.
    let o = run(resample_cmd("2", &input, &out)
        .args([
            "-f",
            "4",
            "--chunk-mib",
            "0.02",
            "--inject-fault",
            "leak:*",
            "--memory-limit-per-worker",
            "512MiB",
            "--report",
        ])
        .arg(&rep));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&rep);
    let t = &r["totals"];
    assert_eq!(t["done"], t["chunks"], "{t}");
    assert!(t["recycles"].as_u64().unwrap() >= 1, "{t}");
    assert!(r["workers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["recycled"] == true));
    let recycled_after = r["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["attempts"][0]["recycled_after"] == true)
        .count();
    assert!(recycled_after >= 1);
    // Recycling is not a death: no over-memory kill was needed.
    assert!(t["deaths_by_cause"].get("over memory").is_none(), "{t}");
    for w in r["workers"].as_array().unwrap() {
        assert!(w["peak_private_bytes"].as_u64().unwrap() < 512 << 20, "{w}");
    }
    let (_, a) = read_all(&clean);
    let (_, b) = read_all(&out);
    assert!(same_pixels(&a[0], &b[0]));
}

#[test]
fn sizes_and_limits_are_checked_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let input = raster(dir.path(), 100, 100);
    let out = dir.path().join("out.tif");
    let cases: [(&[&str], i32, &str); 4] = [
        (&["--memory-limit-per-worker", "0"], 2, "positive size"),
        (&["--memory-limit-per-worker", "lots"], 2, "not a size"),
        (&["--memory-limit-per-worker", "100TiB"], 7, "do not fit"),
        (&["--memory-limit-per-worker", "20MiB"], 7, "too small"),
    ];
    for (extra, code, needle) in cases {
        let o = run(resample_cmd("2", &input, &out)
            .args(["-f", "4"])
            .args(extra));
        assert_eq!(o.status.code(), Some(code), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{extra:?}: {}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn plan_prints_the_memory_arithmetic() {
    let dir = tempfile::tempdir().unwrap();
    let input = raster(dir.path(), 300, 300);
    let o = run(coordinator()
        .args(["--workers", "2", "plan"])
        .arg(&input)
        .args(["-f", "4", "--memory-limit-per-worker", "512MiB"]));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for needle in [
        "hard limit 512 MiB",
        "GDAL cache 64 MiB",
        "recycled above 410 MiB",
        "slots",
        "coordinator ~",
        "whole run at most",
    ] {
        assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
    }
}

#[test]
fn config_file_layers_under_environment_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("blocksum.toml");
    std::fs::File::create(&cfg)
        .unwrap()
        .write_all(
            br#"
[resampling.multiprocessing]
enabled = true
max_workers = 3
chunk_prefetch = 4
memory_limit_per_worker = "1GiB"
max_attempts = 5
[resampling.multiprocessing.queue_sizes]
chunk_queue = 100
result_queue = 50
"#,
        )
        .unwrap();
    let show = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = coordinator();
        c.arg("--config").arg(&cfg);
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = run(c.arg("config").args(args));
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let line = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_default()
            .to_string()
    };
    let file_only = show(&[], &[]);
    assert!(
        line(&file_only, "workers").contains("3") && line(&file_only, "workers").contains("(file"),
        "{file_only}"
    );
    assert!(
        line(&file_only, "memory_limit_per_worker").contains("1024 MiB"),
        "{file_only}"
    );
    assert!(
        line(&file_only, "max_attempts").contains("5"),
        "{file_only}"
    );
    assert!(
        line(&file_only, "memory_soft_fraction").contains("(default)"),
        "{file_only}"
    );
    let env = show(
        &[
            ("BLOCKSUM_MEMORY_LIMIT_PER_WORKER", "768MiB"),
            ("BLOCKSUM_WORKERS", "2"),
        ],
        &[],
    );
    assert!(
        line(&env, "memory_limit_per_worker").contains("768 MiB")
            && line(&env, "memory_limit_per_worker")
                .contains("env BLOCKSUM_MEMORY_LIMIT_PER_WORKER"),
        "{env}"
    );
    assert!(
        line(&env, "workers").contains("env BLOCKSUM_WORKERS"),
        "{env}"
    );
    let flag = show(
        &[("BLOCKSUM_MEMORY_LIMIT_PER_WORKER", "768MiB")],
        &["--memory-limit-per-worker", "640MiB", "--max-attempts", "2"],
    );
    assert!(
        line(&flag, "memory_limit_per_worker").contains("640 MiB")
            && line(&flag, "memory_limit_per_worker").contains("(flag)"),
        "{flag}"
    );
    assert!(
        line(&flag, "max_attempts").contains("2") && line(&flag, "max_attempts").contains("(flag)"),
        "{flag}"
    );
    assert!(
        line(&flag, "chunk_prefetch").contains("4")
            && line(&flag, "chunk_prefetch").contains("(file"),
        "{flag}"
    );
}

#[test]
fn config_file_errors_name_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[resampling.multiprocessing]\nmax_wrokers = 3\n").unwrap();
    let o = run(coordinator().arg("--config").arg(&cfg).arg("config"));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("max_wrokers") && err.contains("bad.toml"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        "[resampling.multiprocessing]\nmemory_limit_per_worker = \"lots\"\n",
    )
    .unwrap();
    let o = run(coordinator().arg("--config").arg(&cfg).arg("config"));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("memory_limit_per_worker"),
        "{}",
        stderr(&o)
    );
    // enabled = false runs in process.
    std::fs::write(&cfg, "[resampling.multiprocessing]\nenabled = false\n").unwrap();
    let o = run(coordinator().arg("--config").arg(&cfg).arg("config"));
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 (in process)"));
}

#[test]
fn admission_waits_for_free_memory_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let input = raster(dir.path(), 200, 200);
    let out = dir.path().join("out.tif");
    let rep = dir.path().join("wait.json");
    let child = resample_cmd("1", &input, &out)
        .args([
            "-f",
            "4",
            "--min-free-memory",
            // All of the machine's memory is never available (more is refused up front).
            &format!("{}MiB", mem_total_mib()),
            "--memory-poll",
            "20ms",
            "--report",
        ])
        .arg(&rep)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // The worker starts, but no chunk is dispatched while admission is closed.
    wait_for(Duration::from_secs(10), "the worker and its spare", || {
        (worker_children(pid).len() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let r = report(&rep);
    assert!(
        r["totals"]["admission_wait_ms"].as_u64().unwrap() >= 400,
        "{}",
        r["totals"]
    );
    assert!(r["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["attempts"].as_array().unwrap().is_empty()));
    assert!(!out.exists());
}

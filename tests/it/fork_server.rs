//! Workers forked by the fork server keep every isolation guarantee of a spawned worker,
//! checked on the real processes: each is the coordinator's child and leads its own process
//! group; a SIGKILLed one dies alone and the run still ends with exact pixels; each runs
//! under its own memory limit (the fork server under none) and an over-memory death takes
//! only that worker; none holds a descriptor of the fork server's or of the run's output;
//! the fork server opened no dataset; and a SIGKILLed coordinator leaves no worker, no fork
//! server and no shared memory behind. The default worker's fork server is the coordinator
//! forked before its run starts a thread; another worker binary's is that binary executed.

use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

use crate::common::*;
use nix::{sys::signal::Signal, unistd::Pid};

/// The fork server's name in a process table.
const FORK_SERVER: &str = "fork-server";

struct Fixture {
    dir: tempfile::TempDir,
    input: PathBuf,
    /// The in-process run's pixels: what every run must produce.
    clean: Vec<f64>,
}

const CHUNK_MIB: &str = "0.02";

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    let spec = RasterSpec {
        width: 300,
        height: 260,
        ..RasterSpec::default()
    };
    write_f32(&input, &spec);
    let clean_out = dir.path().join("clean.tif");
    let o = run(coordinator()
        .arg("resample")
        .arg(&input)
        .arg(&clean_out)
        .args(["--factor", "4", "--in-process", "--chunk-mib", CHUNK_MIB]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (_, mut bands) = read_all(&clean_out);
    Fixture {
        dir,
        input,
        clean: bands.remove(0),
    }
}

/// /proc/PID/stat's state and parent pid, for a live process.
fn state_and_ppid(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some((rest[0].chars().next()?, rest.get(1)?.parse().ok()?))
}

fn alive(pid: u32) -> bool {
    state_and_ppid(pid).is_some_and(|(s, _)| s != 'Z')
}

/// Live processes named `comm` whose environment or command line mentions `needle` (the
/// run's input: in `BLOCKSUM_JOB` for an executed fork server and its workers, in the
/// command line for a fork server forked from the coordinator and its workers), workers and
/// fork servers alike.
fn processes(comm: &str, needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let mut env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        env.extend(std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default());
        if name.trim() == comm && String::from_utf8_lossy(&env).contains(needle) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// The coordinator's worker children that the fork server forked (their command line is
/// the fork server's, `worker --fork-server N`).
fn forked_workers(coordinator: u32) -> Vec<u32> {
    worker_children(coordinator)
        .into_iter()
        .filter(|w| {
            // A worker executed has a worker's command line (`--connect`); a forked one
            // keeps its fork server's: `worker --fork-server N`, or the coordinator's own.
            std::fs::read(format!("/proc/{w}/cmdline"))
                .is_ok_and(|c| !String::from_utf8_lossy(&c).contains("--connect"))
        })
        .collect()
}

/// Where each descriptor of `pid` points.
fn descriptors(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// "Max data size" of `pid` (soft limit), as /proc/PID/limits shows it.
fn data_limit(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max data size"))
        .unwrap()
        .to_string();
    line.split_whitespace().nth(3).unwrap().to_string()
}

/// A run whose chunk 0 hangs on every worker attempt (the timeout then runs it in process),
/// after its two workers and the warm spare have been forked.
fn hanging_run(fx: &Fixture, out: &Path, rep: &Path) -> (Child, Vec<u32>) {
    let child = coordinator()
        .env("BLOCKSUM_LOG", "info")
        .args(["--workers", "2", "resample"])
        .arg(&fx.input)
        .arg(out)
        .args(["--factor", "4", "--chunk-mib", CHUNK_MIB])
        .args(["--inject-fault", "hang:0", "--task-timeout", "3s"])
        .args(["--memory-limit-per-worker", "400MiB", "--report"])
        .arg(rep)
        .arg("--events")
        .arg(rep.with_extension("events"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ws = three_forked_workers(child.id());
    (child, ws)
}

/// Waits until run `pid` has forked its two workers and the warm spare; their pids.
fn three_forked_workers(pid: u32) -> Vec<u32> {
    wait_for(Duration::from_secs(20), "three forked workers", || {
        let ws = forked_workers(pid);
        (ws.len() == 3).then_some(ws)
    })
}

/// The pid of the worker that took chunk 0's first attempt, from the event stream.
fn hung_worker(events: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(events).ok()?;
    text.lines().find_map(|l| {
        let e: serde_json::Value = serde_json::from_str(l).ok()?;
        (e["event"] == "chunk_dispatched" && e["task"] == 0 && e["attempt"] == 1)
            .then(|| e["executor"]["pid"].as_u64())
            .flatten()
            .map(|p| p as u32)
    })
}

#[test]
fn a_forked_worker_is_its_own_process_and_dies_alone() {
    let fx = fixture();
    let (out, rep) = (fx.dir.path().join("out.tif"), fx.dir.path().join("r.json"));
    let (child, ws) = hanging_run(&fx, &out, &rep);
    let coordinator = child.id();
    let needle = fx.input.to_string_lossy().into_owned();
    let servers = processes(FORK_SERVER, &needle);
    assert_eq!(servers.len(), 1, "one fork server for the run");
    let server = servers[0];
    for &w in &ws {
        // The coordinator's child (it waits for it), in its own process group.
        assert_eq!(state_and_ppid(w).map(|s| s.1), Some(coordinator));
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(w as i32)))
                .unwrap()
                .as_raw(),
            w as i32
        );
        // Its own memory limit; the fork server runs under none.
        assert_eq!(data_limit(w), (400u64 << 20).to_string(), "worker {w}");
    }
    assert_eq!(data_limit(server), "unlimited");
    // An idle worker dies (the hung one keeps the run alive meanwhile): only it.
    let hung = wait_for(Duration::from_secs(10), "chunk 0 on a worker", || {
        hung_worker(&rep.with_extension("events"))
    });
    assert!(ws.contains(&hung), "chunk 0 hangs on a forked worker");
    let victim = *ws.iter().find(|&&w| w != hung).unwrap();
    let others: Vec<u32> = ws.iter().copied().filter(|&w| w != victim).collect();
    nix::sys::signal::kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    // The coordinator has reaped it and decided on its death (its `worker_exited` event):
    // whatever the death could take with it is gone by then.
    let events = rep.with_extension("events");
    wait_for(Duration::from_secs(5), "the victim's worker_exited", || {
        let text = std::fs::read_to_string(&events).ok()?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| e["event"] == "worker_exited" && e["pid"] == victim)
            .then_some(())
    });
    assert!(!alive(victim));
    for &w in &others {
        assert!(alive(w), "worker {w} died with worker {victim}");
    }
    assert!(alive(server), "the fork server died with worker {victim}");
    let o = output_within(child, Duration::from_secs(60), true).expect("the run ends");
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(!log.contains("spawned by exec"), "{log}");
    let (_, bands) = read_all(&out);
    assert!(
        same_pixels(&bands[0], &fx.clean),
        "pixels differ from the in-process run"
    );
    let r = report(&rep);
    assert!(
        r["totals"]["restarts"].as_u64().unwrap() >= 1,
        "{}",
        r["totals"]
    );
    // Nothing outlives the run: not the workers, not the fork server.
    wait_for(Duration::from_secs(2), "the run's processes to end", || {
        (processes("worker", &needle).is_empty() && processes(FORK_SERVER, &needle).is_empty())
            .then_some(())
    });
}

/// The default worker's fork server is the coordinator forked (its command line, no exec);
/// a worker binary given by the user (here a copy of the default one) is executed as the
/// fork server, and its workers are forked from it: both with the same exact pixels.
#[test]
fn the_fork_server_is_the_coordinator_forked_unless_the_worker_binary_is_another() {
    let fx = fixture();
    // Named `worker` too: its processes are named after it.
    std::fs::create_dir(fx.dir.path().join("mine")).unwrap();
    let copy = fx.dir.path().join("mine").join("worker");
    std::fs::copy(bin("worker"), &copy).unwrap();
    for given in [None, Some(&copy)] {
        let out = fx.dir.path().join("out.tif");
        let mut cmd = coordinator();
        if let Some(w) = given {
            cmd.env("BLOCKSUM_WORKER_BIN", w);
        }
        let child = cmd
            .env("BLOCKSUM_LOG", "info")
            .args(["--workers", "2", "resample"])
            .arg(&fx.input)
            .arg(&out)
            .args(["--factor", "4", "--chunk-mib", CHUNK_MIB, "--overwrite"])
            .args(["--inject-fault", "hang:0", "--task-timeout", "3s"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // The two workers and the spare: no fork under way then (a process just forked is
        // named like its fork server for a moment).
        let ws = three_forked_workers(pid);
        let needle = fx.input.to_string_lossy().into_owned();
        let server = processes(FORK_SERVER, &needle);
        assert_eq!(server.len(), 1, "one fork server for the run ({given:?})");
        let exe = |p: u32| std::fs::read_link(format!("/proc/{p}/exe")).unwrap();
        let cmdline = |p: u32| {
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{p}/cmdline")).unwrap())
                .into_owned()
        };
        for p in ws.iter().chain(&server) {
            match given {
                None => {
                    assert_eq!(exe(*p), bin("coordinator").canonicalize().unwrap(), "{p}");
                    assert!(!cmdline(*p).contains("--fork-server"), "{p}");
                }
                Some(w) => {
                    assert_eq!(exe(*p), w.canonicalize().unwrap(), "{p}");
                    assert!(cmdline(*p).contains("--fork-server"), "{p}");
                }
            }
        }
        let o = output_within(child, Duration::from_secs(60), true).expect("the run ends");
        let log = stderr(&o);
        assert!(o.status.success(), "{log}");
        assert!(!log.contains("spawned by exec"), "{log}");
        assert!(!log.contains("cannot fork the fork server"), "{log}");
        let (_, bands) = read_all(&out);
        assert!(same_pixels(&bands[0], &fx.clean), "worker binary {given:?}");
    }
}

#[test]
fn a_forked_worker_holds_nothing_of_the_fork_server_or_the_output() {
    let fx = fixture();
    let (out, rep) = (fx.dir.path().join("out.tif"), fx.dir.path().join("r.json"));
    let (mut child, ws) = hanging_run(&fx, &out, &rep);
    let needle = fx.input.to_string_lossy().into_owned();
    let server = processes(FORK_SERVER, &needle)[0];
    let dir = fx.dir.path().to_string_lossy().into_owned();
    let input = fx.input.to_string_lossy().into_owned();
    let server_fds = descriptors(server);
    // The template opened no dataset, and nothing of the run's files.
    assert!(
        !server_fds.iter().any(|d| d.starts_with(&dir)),
        "the fork server holds {server_fds:?}"
    );
    let server_sockets: Vec<&String> = server_fds
        .iter()
        .filter(|d| d.starts_with("socket:"))
        .collect();
    assert!(
        !server_sockets.is_empty(),
        "the fork server's control socket: {server_fds:?}"
    );
    for &w in &ws {
        let fds = descriptors(w);
        assert!(!fds.is_empty(), "worker {w} has descriptors");
        // Its own input (opened at its setup) at most: never the output, its temporary,
        // the journal or the lock the coordinator holds.
        let files: Vec<&String> = fds.iter().filter(|d| d.starts_with(&dir)).collect();
        assert!(
            files.iter().all(|d| **d == input),
            "worker {w} holds {files:?}"
        );
        // Not the fork server's control socket.
        for s in &server_sockets {
            assert!(
                !fds.contains(s),
                "worker {w} shares {s} with the fork server"
            );
        }
        assert!(
            fds.iter().any(|d| d.contains("blocksum-slots")),
            "worker {w}: {fds:?}"
        );
    }
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn an_over_memory_death_takes_only_that_forked_worker() {
    let fx = fixture();
    let (out, rep) = (
        fx.dir.path().join("oom.tif"),
        fx.dir.path().join("oom.json"),
    );
    let o = run(coordinator()
        .env("BLOCKSUM_LOG", "info")
        .args(["--workers", "2", "resample"])
        .arg(&fx.input)
        .arg(&out)
        .args([
            "--factor",
            "4",
            "--chunk-mib",
            CHUNK_MIB,
            "--inject-fault",
            "oom:1:1",
        ])
        .args(["--memory-limit-per-worker", "300MiB", "--report"])
        .arg(&rep)
        // The allocation loop may outlast the speculation floor on a loaded machine: a
        // backup would win and stop the worker before its limit does (see supervision.rs).
        .args(["--speculation", "off"]));
    let log = stderr(&o);
    assert!(o.status.success(), "{log}");
    assert!(!log.contains("spawned by exec"), "{log}");
    let r = report(&rep);
    assert_eq!(
        r["totals"]["deaths_by_cause"]["over memory"], 1,
        "{}",
        r["totals"]
    );
    let deaths: Vec<&serde_json::Value> = r["workers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| !w["cause"].is_null())
        .collect();
    assert_eq!(deaths.len(), 1, "one worker died: {deaths:?}");
    for (i, c) in r["chunks"].as_array().unwrap().iter().enumerate() {
        assert_eq!(c["outcome"], "done", "chunk {i}");
        let attempts = c["attempts"].as_array().unwrap().len();
        assert_eq!(attempts, if i == 1 { 2 } else { 1 }, "chunk {i}: {c}");
    }
    let (_, bands) = read_all(&out);
    assert!(same_pixels(&bands[0], &fx.clean));
}

#[test]
fn killing_the_coordinator_leaves_no_forked_worker_fork_server_or_shared_memory() {
    let fx = fixture();
    let shm = || {
        let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let before = shm();
    let (out, rep) = (fx.dir.path().join("k.tif"), fx.dir.path().join("k.json"));
    let (mut child, ws) = hanging_run(&fx, &out, &rep);
    let needle = fx.input.to_string_lossy().into_owned();
    assert_eq!(processes(FORK_SERVER, &needle).len(), 1);
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    wait_for(
        Duration::from_secs(2),
        "workers and fork server to die",
        || {
            (ws.iter().all(|&w| !alive(w))
                && processes("worker", &needle).is_empty()
                && processes(FORK_SERVER, &needle).is_empty())
            .then_some(())
        },
    );
    assert_eq!(shm(), before, "something was left in /dev/shm");
    assert!(!out.exists());
}

//! SIGINT, SIGTERM and SIGHUP in every command and every step of one, outside the engine's
//! run too: `merge` (and `merge --vrt`, whose shard GeoTIFFs live in OUTPUT.shards/), the COG
//! copy, the pyramid's levels, `report`, `synth`. Each test stops the real process at a named
//! step (`BLOCKSUM_STOP_AT`: it sends itself SIGSTOP there), sends the real signal, lets it
//! go on (SIGCONT), and checks: exit 130, one line naming the signal, no output, no
//! temporary and no lock anywhere. A merge killed with SIGKILL (which nothing can handle)
//! leaves its temporaries; the next merge removes them. The death of the process named by
//! `BLOCKSUM_PARENT_PID` is a SIGTERM, also when it died before the coordinator could ask.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use crate::common::*;
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// The state letter of /proc/PID/stat (`T`: stopped), if the process is there.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Spawns `cmd` with `BLOCKSUM_STOP_AT=point` and waits until the process has stopped itself
/// there. A process that ends first, or never stops, fails the test (and is killed).
fn stopped_at(cmd: &mut Command, point: &str) -> Child {
    let mut child = cmd
        .env("BLOCKSUM_STOP_AT", point)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the coordinator");
    let pid = child.id();
    // Stopped at the point (state T), or ended without reaching it.
    let stopped = wait_for(
        Duration::from_secs(120),
        &format!("the process to stop at '{point}'"),
        || {
            if proc_state(pid) == Some('T') {
                return Some(true);
            }
            child.try_wait().unwrap().map(|_| false)
        },
    );
    if !stopped {
        let o = child.wait_with_output().unwrap();
        panic!(
            "the process ended ({}) without stopping at '{point}': {}",
            o.status,
            stderr(&o)
        );
    }
    child
}

/// Sends `sig` to the stopped process, lets it go on, and returns what it did.
fn deliver(child: Child, sig: Signal) -> Output {
    let pid = Pid::from_raw(child.id() as i32);
    kill(pid, sig).unwrap();
    kill(pid, Signal::SIGCONT).unwrap();
    output_within(child, Duration::from_secs(120), false)
        .expect("the process ends after the signal")
}

/// Exit 130 and one line (warnings aside) naming the signal.
fn interrupted(o: &Output, sig: Signal) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.contains(" WARN ")).collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(
        lines[0].contains(&format!("interrupted by {}", sig.as_str())),
        "{err}"
    );
}

/// Every file under `dir`, recursively, relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                todo.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

/// No temporary (`.NAME.partial-PID...`, GDAL's `.tmp`) and no lock anywhere under `dir`.
fn assert_clean(dir: &Path) {
    let left: Vec<String> = tree(dir)
        .into_iter()
        .filter(|n| n.contains(".partial-") || n.ends_with(".lock") || n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn input(dir: &Path, side: usize) -> PathBuf {
    let path = dir.join("in.tif");
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

/// Shards 0/2 and 1/2 of `out` at factor 2: OUTPUT.shards/ holds their journals.
fn shards(input: &Path, out: &Path) {
    for s in ["0/2", "1/2"] {
        let o = run(resample_cmd("1", input, out).args([
            "-f",
            "2",
            "--chunk-mib",
            "0.1",
            "--shard",
            s,
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

fn merge(out: &Path, extra: &[&str]) -> Command {
    let mut c = coordinator();
    c.arg("merge").arg(out).args(extra);
    c
}

#[test]
fn merge_stops_cleanly_on_each_signal() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 300);
    let out = dir.path().join("out.tif");
    shards(&input, &out);
    let journals = tree(&dir.path().join("out.tif.shards"));
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        let child = stopped_at(&mut merge(&out, &[]), "merge-copy");
        // Stopped while writing: its temporary file and its lock are there.
        let during = tree(dir.path());
        assert!(
            during.iter().any(|n| n.starts_with(".out.tif.partial-")),
            "{during:?}"
        );
        assert!(during.iter().any(|n| n == ".out.tif.lock"), "{during:?}");
        let o = deliver(child, sig);
        interrupted(&o, sig);
        assert!(!out.exists(), "{sig}: an output after the interrupt");
        assert_clean(dir.path());
        // The shards' journals are untouched: the merge can be run again.
        assert_eq!(tree(&dir.path().join("out.tif.shards")), journals);
    }
    let o = run(&mut merge(&out, &[]));
    assert!(o.status.success(), "{}", stderr(&o));
    let (ds, _) = read_all(&out);
    assert_eq!(ds.raster_size(), (150, 150));
    assert_clean(dir.path());
}

#[test]
fn merge_vrt_leaves_no_shard_geotiff_and_cleans_up_after_a_killed_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 300);
    let out = dir.path().join("out.vrt");
    shards(&input, &out);
    let shards_dir = dir.path().join("out.vrt.shards");

    // Interrupted while writing shard 0's GeoTIFF (under its temporary name in
    // OUTPUT.shards/): neither it nor any shard GeoTIFF nor the VRT remains.
    let child = stopped_at(&mut merge(&out, &["--vrt"]), "merge-copy");
    let during = tree(&shards_dir);
    assert!(
        during
            .iter()
            .any(|n| n.starts_with(".shard-0-of-2.tif.partial-")),
        "{during:?}"
    );
    let o = deliver(child, Signal::SIGTERM);
    interrupted(&o, Signal::SIGTERM);
    assert!(!out.exists());
    assert_clean(dir.path());
    assert!(
        !tree(&shards_dir).iter().any(|n| n.ends_with(".tif")),
        "{:?}",
        tree(&shards_dir)
    );

    // Killed there (SIGKILL cannot be handled): its temporaries stay, and the next merge,
    // which can tell they are a dead merge's, removes them.
    let child = stopped_at(&mut merge(&out, &["--vrt"]), "merge-copy");
    let pid = child.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let o = output_within(child, Duration::from_secs(60), false).expect("killed");
    assert_eq!(o.status.code(), None);
    let stale = format!(".shard-0-of-2.tif.partial-{pid}");
    assert!(
        tree(&shards_dir).contains(&stale),
        "{:?}",
        tree(&shards_dir)
    );
    let o = run(&mut merge(&out, &["--vrt"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean(dir.path());
    let (ds, _) = read_all(&out);
    assert_eq!(ds.raster_size(), (150, 150));
}

#[test]
fn the_cog_copy_stops_on_a_signal_and_resume_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 1024);
    let out = dir.path().join("out.tif");
    let resample = |extra: &[&str]| {
        let mut c = coordinator();
        c.args(["--workers", "2", "resample"])
            .arg(&input)
            .arg(&out)
            .args(["-f", "2", "--of", "COG"])
            .args(extra);
        c
    };
    let child = stopped_at(&mut resample(&[]), "cog-copy");
    let during = tree(dir.path());
    assert!(
        during
            .iter()
            .any(|n| n.contains(".partial-") && n.ends_with("-cog")),
        "the COG copy is not under way: {during:?}"
    );
    let o = deliver(child, Signal::SIGINT);
    interrupted(&o, Signal::SIGINT);
    assert!(!out.exists(), "the output was committed after SIGINT");
    assert_clean(dir.path());
    // The journal keeps every chunk: --resume computes none and makes the COG.
    let o = run(&mut resample(&["--resume"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ds = gdal::Dataset::open(&out).unwrap();
    assert_eq!(ds.raster_size(), (512, 512));
    assert_eq!(
        gdal::Metadata::metadata_item(&ds, "LAYOUT", "IMAGE_STRUCTURE").as_deref(),
        Some("COG")
    );
    assert_clean(dir.path());
}

#[test]
fn the_pyramid_stops_on_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 1200);
    let out = dir.path().join("out.tif");
    // Float sums: each level is re-aggregated from the input into a scratch directory, then
    // copied into the overview (where it stops).
    let child = stopped_at(
        resample_cmd("2", &input, &out).args(["-f", "2", "--pyramid"]),
        "pyramid",
    );
    let during = tree(dir.path());
    assert!(
        during
            .iter()
            .any(|n| n.contains(".partial-") && n.ends_with("-levels")),
        "{during:?}"
    );
    let o = deliver(child, Signal::SIGHUP);
    interrupted(&o, Signal::SIGHUP);
    assert!(!out.exists());
    assert_clean(dir.path());
}

#[test]
fn report_and_synth_stop_on_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 64);
    let (out, json, page) = (
        dir.path().join("out.tif"),
        dir.path().join("r.json"),
        dir.path().join("r.html"),
    );
    let o = run(resample_cmd("1", &input, &out)
        .args(["-f", "2", "--report"])
        .arg(&json));
    assert!(o.status.success(), "{}", stderr(&o));
    // Stopped with the page written under its temporary name, before it is moved into place.
    let child = stopped_at(
        coordinator()
            .arg("report")
            .arg(&json)
            .arg("--html")
            .arg(&page),
        "report",
    );
    assert!(
        tree(dir.path())
            .iter()
            .any(|n| n.starts_with(".r.html.partial-")),
        "{:?}",
        tree(dir.path())
    );
    let o = deliver(child, Signal::SIGTERM);
    interrupted(&o, Signal::SIGTERM);
    assert!(!page.exists());
    assert_clean(dir.path());

    let synth = dir.path().join("synth.tif");
    let child = stopped_at(
        coordinator()
            .arg("synth")
            .arg(&synth)
            .args(["--width", "600", "--height", "600"]),
        "synth",
    );
    let o = deliver(child, Signal::SIGINT);
    interrupted(&o, Signal::SIGINT);
    assert!(!synth.exists());
    assert_clean(dir.path());
}

// Item 4: the page over the report it is made from is refused, as a --report over the input.
#[test]
fn report_refuses_a_page_over_its_own_report() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 64);
    let json = dir.path().join("r.json");
    let o = run(resample_cmd("1", &input, dir.path().join("out.tif"))
        .args(["-f", "2", "--report"])
        .arg(&json));
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(&json).unwrap();
    // The same file under another name too.
    let alias = dir.path().join(".").join("r.json");
    for page in [&json, &alias] {
        let o = run(coordinator()
            .arg("report")
            .arg(&json)
            .arg("--html")
            .arg(page)
            .arg("--overwrite"));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("--html"), "{}", stderr(&o));
        assert_eq!(
            std::fs::read(&json).unwrap(),
            before,
            "the report was replaced"
        );
    }
    assert_clean(dir.path());
}

/// A resample of `input` into `out` with `BLOCKSUM_PARENT_PID=parent`.
fn resample_under(parent: &str, input: &Path, out: &Path) -> Output {
    run(resample_cmd("1", input, out)
        .args(["-f", "2"])
        .env("BLOCKSUM_PARENT_PID", parent))
}

#[test]
fn a_parent_gone_before_the_start_is_a_sigterm_and_a_bad_pid_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path(), 64);
    let out = dir.path().join("out.tif");
    // A process that has come and gone: the coordinator's parent died between its spawn and
    // its prctl, and the coordinator was left to a reaper.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let o = resample_under(&gone.id().to_string(), &input, &out);
    interrupted(&o, Signal::SIGTERM);
    assert_eq!(tree(dir.path()), ["in.tif"]);

    for bad in ["abc", "0", "-3", "1.5"] {
        let o = resample_under(bad, &input, &out);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert_eq!(
            err.trim_end(),
            format!(
                "error: BLOCKSUM_PARENT_PID='{bad}' is not a process id (a whole number >= 1) (see --help)"
            )
        );
        assert_eq!(tree(dir.path()), ["in.tif"]);
    }

    // Its true parent (this test), or nothing: the run goes as ever.
    let o = resample_under(&std::process::id().to_string(), &input, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = resample_under("", &input, &dir.path().join("out2.tif"));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A slow run (every chunk sleeps 10 s in its worker) started by `sh -c script`, which
/// must print the coordinator's PID first: the shell, that PID, and where the coordinator's
/// stderr goes. The script gets the coordinator's command line as `"$0" "$@"` and `$ERR`.
fn slow_run_under(script: &str, dir: &Path) -> (std::process::Child, u32, PathBuf) {
    let input = input(dir, 256);
    let (out, err) = (dir.join("out.tif"), dir.join("err.txt"));
    let mut cmd = resample_cmd("1", &input, &out);
    cmd.args([
        "-f",
        "2",
        "--inject-fault",
        "slow:*",
        "--speculation",
        "off",
    ]);
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(script)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env("ERR", &err)
        .stdout(Stdio::piped());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    let mut sh = sh.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sh.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let pid: u32 = line.trim().parse().expect("the coordinator's PID");
    wait_for(Duration::from_secs(60), "a worker of the run", || {
        (!worker_children(pid).is_empty()).then_some(())
    });
    assert!(dir.join(".out.tif.lock").exists());
    (sh, pid, err)
}

/// SIGKILLs `sh` (it has no say; the kernel, or the coordinator's watch, tells the
/// coordinator) and checks that the run ended as on SIGTERM well before a chunk's 10 s.
fn kill_and_expect_sigterm(mut sh: std::process::Child, pid: u32, err: &Path, dir: &Path) {
    sh.kill().unwrap();
    sh.wait().unwrap();
    // Ended (gone, or a zombie where nobody reaps the orphan).
    wait_for(Duration::from_secs(9), "the coordinator to end", || {
        matches!(proc_state(pid), None | Some('Z')).then_some(())
    });
    let text = std::fs::read_to_string(err).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "error: interrupted by SIGTERM: no output written"),
        "{text}"
    );
    assert!(!dir.join("out.tif").exists());
    assert_clean(dir);
}

#[test]
fn a_parent_killed_during_the_run_stops_it_as_sigterm_would() {
    let dir = tempfile::tempdir().unwrap();
    // A shell starts the coordinator in the background, naming itself as its parent, says
    // the coordinator's PID and waits.
    let script = r#"BLOCKSUM_PARENT_PID=$$ "$0" "$@" 2>"$ERR" & echo $!; wait"#;
    let (sh, pid, err) = slow_run_under(script, dir.path());
    kill_and_expect_sigterm(sh, pid, &err, dir.path());
}

/// The named process is an ancestor, with a wrapper between it and the coordinator (a
/// shell that does not `exec`): the run goes on while the ancestor lives (it stopped at
/// once before), and stops as on SIGTERM when it dies, though the wrapper lives on.
#[test]
fn an_ancestor_named_through_a_wrapper_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"export BLOCKSUM_PARENT_PID=$$; sh -c '"$0" "$@" 2>"$ERR" & echo $!; wait' "$0" "$@"; true"#;
    let (sh, pid, err) = slow_run_under(script, dir.path());
    kill_and_expect_sigterm(sh, pid, &err, dir.path());
}

//! Speculative backup attempts against the real binaries, with default options (speculation
//! is on by default): a chunk that hangs once, in the last chunk of the run, is backed up on
//! an idle worker and the backup wins, so the run neither waits for the task timeout nor
//! changes a pixel; a chunk that hangs in every attempt still ends by its timeouts, in
//! process (resample) or quarantined (a plug-in kernel, which has no in-process lane).
//!
//! Wall time is the benchmark's (`scripts/bench.sh tail`); these tests check what the report
//! and the event stream say happened.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

const CHUNK_MIB: &str = "0.05";

struct Fixture {
    dir: tempfile::TempDir,
    input: PathBuf,
    /// Chunks in the plan (`coordinator plan --json`).
    chunks: u64,
    /// A clean run's pixels, with the same options.
    clean: Vec<f64>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 400,
            height: 320,
            ..RasterSpec::default()
        },
    );
    let o = run(coordinator().arg("plan").arg(&input).args([
        "--factor",
        "4",
        "--chunk-mib",
        CHUNK_MIB,
        "--json",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let plan: Value = serde_json::from_slice(&o.stdout).expect("plan --json");
    let chunks = plan["chunks"].as_u64().unwrap();
    assert!(
        chunks >= 4,
        "the fixture needs several chunks, got {chunks}"
    );
    let mut fx = Fixture {
        dir,
        input,
        chunks,
        clean: Vec::new(),
    };
    let (o, out, _) = resample(&fx, "clean", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    fx.clean = read_all(&out).1.remove(0);
    fx
}

/// A pool run with default options plus `extra`: its output, report and event lines.
fn resample(fx: &Fixture, name: &str, extra: &[&str]) -> (std::process::Output, PathBuf, Value) {
    let dir = fx.dir.path();
    let out = dir.join(format!("{name}.tif"));
    let rep = dir.join(format!("{name}.json"));
    let o = run(resample_cmd("2", &fx.input, &out)
        .args(["--factor", "4", "--chunk-mib", CHUNK_MIB, "--report"])
        .arg(&rep)
        .arg("--events")
        .arg(dir.join(format!("{name}.jsonl")))
        .args(extra));
    let report = report(&rep);
    (o, out, report)
}

fn events(fx: &Fixture, name: &str) -> Vec<Value> {
    std::fs::read_to_string(fx.dir.path().join(format!("{name}.jsonl")))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn attempts(report: &Value, chunk: u64) -> &Vec<Value> {
    report["chunks"][chunk as usize]["attempts"]
        .as_array()
        .unwrap()
}

fn same_as_clean(fx: &Fixture, out: &Path) {
    let (_, mut bands) = read_all(out);
    assert!(
        same_pixels(&bands.remove(0), &fx.clean),
        "the output differs from the clean run's"
    );
}

#[test]
fn a_hung_last_chunk_is_backed_up_and_the_backup_wins() {
    let fx = fixture();
    let last = fx.chunks - 1;
    let fault = format!("hang:{last}:1");
    let (o, out, report) = resample(&fx, "hung", &["--inject-fault", &fault]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    same_as_clean(&fx, &out);
    assert_eq!(report["chunks"][last as usize]["outcome"], "done");
    let att = attempts(&report, last);
    // The first attempt hangs: the backup (attempt 2, no fault) finishes first, and the
    // hung attempt is stopped as its loser, not by a timeout.
    let winner = att
        .iter()
        .find(|a| a["failure"].is_null())
        .unwrap_or_else(|| panic!("no attempt succeeded: {att:?}"));
    assert_eq!(winner["attempt"], 2, "{att:?}");
    assert_eq!(winner["speculative"], true, "{att:?}");
    assert_eq!(winner["executor"]["on"], "worker");
    let loser = att.iter().find(|a| a["attempt"] == 1).unwrap();
    assert_eq!(loser["failure"]["kind"], "superseded", "{att:?}");
    assert_eq!(loser["failure"]["by"], 2);
    assert_eq!(loser["fault"], "Hang");
    assert_eq!(loser["speculative"], false);
    // The run did not wait for the task timeout: none recorded, anywhere; the backup
    // finished before the timeout's floor (10 s) could have fired.
    let totals = &report["totals"];
    assert_eq!(totals["timeouts"], 0, "{totals}");
    assert_eq!(totals["speculative"], 1, "{totals}");
    assert_eq!(totals["speculative_wins"], 1, "{totals}");
    assert_eq!(
        totals["restarts"], 0,
        "the killed loser is no death: {totals}"
    );
    assert!(
        winner["ended_ms"].as_u64().unwrap() < 10_000,
        "the backup ended at {} ms",
        winner["ended_ms"]
    );
    assert!(report["options"]["speculation"]
        .as_str()
        .unwrap()
        .starts_with("4x"));
    // The event stream tells the decision and marks the backup's dispatch and end.
    let ev = events(&fx, "hung");
    let spec: Vec<&Value> = ev.iter().filter(|e| e["event"] == "speculative").collect();
    assert_eq!(spec.len(), 1, "{spec:?}");
    assert_eq!(spec[0]["task"], last);
    assert_eq!(
        (&spec[0]["attempt"], &spec[0]["behind"]),
        (&2.into(), &1.into())
    );
    assert!(spec[0]["after_ms"].as_u64().unwrap() >= spec[0]["threshold_ms"].as_u64().unwrap());
    let marked = |kind: &str| {
        ev.iter()
            .filter(|e| e["event"] == kind && e["task"] == last && e["speculative"] == true)
            .count()
    };
    assert_eq!(marked("chunk_dispatched"), 1);
    assert_eq!(marked("chunk_done"), 1);
    assert!(!ev.iter().any(|e| e["event"] == "chunk_timed_out"));
    // The report's attempts of the chunk are the stream's, the loser's included.
    let mut from_events: Vec<(u64, bool, Value)> = ev
        .iter()
        .filter(|e| {
            (e["event"] == "chunk_done" || e["event"] == "chunk_failed") && e["task"] == last
        })
        .map(|e| {
            let kind = e["cause"]["kind"].clone();
            (
                e["attempt"].as_u64().unwrap(),
                e["speculative"] == true,
                kind,
            )
        })
        .collect();
    from_events.sort_by_key(|a| a.0);
    let mut from_report: Vec<(u64, bool, Value)> = att
        .iter()
        .map(|a| {
            let kind = a["failure"]["kind"].clone();
            (
                a["attempt"].as_u64().unwrap(),
                a["speculative"] == true,
                kind,
            )
        })
        .collect();
    from_report.sort_by_key(|a| a.0);
    assert_eq!(from_events, from_report);
    // The loser's worker exit is deliberate: no death in the summary.
    let loser_exit = ev
        .iter()
        .find(|e| e["event"] == "worker_exited" && e["cause"]["kind"] == "superseded")
        .expect("the loser's worker exited");
    assert_eq!(loser_exit["deliberate"], true);
    assert!(
        totals["deaths_by_cause"].as_object().unwrap().is_empty(),
        "{totals}"
    );
}

#[test]
fn with_speculation_off_the_hung_chunk_waits_for_its_timeout() {
    let fx = fixture();
    let last = fx.chunks - 1;
    let fault = format!("hang:{last}:1");
    let (o, out, report) = resample(
        &fx,
        "off",
        &[
            "--inject-fault",
            &fault,
            "--speculation",
            "off",
            "--task-timeout",
            "2s",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    same_as_clean(&fx, &out);
    let att = attempts(&report, last);
    assert_eq!(att[0]["failure"]["kind"], "timeout", "{att:?}");
    assert!(att.iter().all(|a| a["speculative"] == false), "{att:?}");
    assert_eq!(report["totals"]["speculative"], 0);
    assert_eq!(report["options"]["speculation"], "off");
}

#[test]
fn a_chunk_hanging_in_every_attempt_still_times_out_then_runs_in_process() {
    let fx = fixture();
    let last = fx.chunks - 1;
    let fault = format!("hang:{last}");
    // A 3 s limit: the backup starts at the 1 s floor and hangs too; each attempt ends by
    // its own timeout, then the chunk runs in process, as without speculation.
    let (o, out, report) = resample(
        &fx,
        "always",
        &[
            "--inject-fault",
            &fault,
            "--task-timeout",
            "3s",
            "--kill-grace",
            "100ms",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    same_as_clean(&fx, &out);
    assert_eq!(
        report["chunks"][last as usize]["outcome"],
        "done_in_process"
    );
    let att = attempts(&report, last);
    let summary: Vec<(u64, bool, String)> = att
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["speculative"].as_bool().unwrap(),
                a["failure"]["kind"].as_str().unwrap_or("done").to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, false, "timeout".to_string()),
            (2, true, "timeout".to_string()),
            (3, false, "done".to_string()),
        ]
    );
    assert_eq!(att[2]["executor"]["on"], "in_process");
    assert_eq!(report["totals"]["timeouts"], 2);
}

#[test]
fn a_plug_in_kernel_hanging_in_every_attempt_is_still_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let Some(lib) = build_c(dir.path(), "faulty") else {
        return;
    };
    // Two plan chunks (one 256x256 tile each); the left one holds column 20 and hangs on
    // every attempt. A plug-in kernel has no in-process lane: its attempts (two, one of
    // them the backup started at the 1 s floor) time out at the 3 s limit, and the leaf is
    // quarantined as before.
    let input = dir.path().join("in.tif");
    synth(&input, 512, 256, 1);
    let rep = dir.path().join("out.json");
    let o = run(coordinator()
        .args(["--workers", "2", "map"])
        .arg(&input)
        .arg(dir.path().join("out.tif"))
        .args(["--kernel-lib", lib.to_str().unwrap()])
        .args(["--kernel-arg", "hang_x=20", "--chunk-mib", "2"])
        .args(["--task-timeout-floor", "3s", "--kill-grace", "100ms"])
        .args(["--max-attempts", "2", "--report"])
        .arg(&rep));
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let report = report(&rep);
    assert_eq!(report["plan"]["chunks"], 2, "{}", report["plan"]);
    let att = attempts(&report, 0);
    assert_eq!(att.len(), 2, "{att:?}");
    assert!(
        att.iter().all(|a| a["failure"]["kind"] == "timeout"),
        "{att:?}"
    );
    assert_eq!(
        att.iter().filter(|a| a["speculative"] == true).count(),
        1,
        "{att:?}"
    );
    assert_eq!(report["chunks"][0]["outcome"], "quarantined");
    let q = report["totals"]["quarantined_windows"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{q:?}");
}

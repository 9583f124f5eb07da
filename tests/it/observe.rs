//! Seeing a run: the event stream (`--events`) tells everything the report says, as it
//! happens; the HTML page (`--report-html`, `coordinator report --html`) renders in a real
//! headless Chromium with one bar per attempt and no script error.

use std::{
    collections::BTreeMap,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;
use coordinator::report::Report;
use serde_json::Value;

/// A run with crashes, a segfault and a hang (timed out, then run in process), on a small
/// raster: every kind of event at least once. Without speculative backups, which would
/// otherwise back the hung chunk up whenever the queue drains before its timeout (the
/// speculation module derives their events).
fn chaos_run(dir: &Path, extra: &[&str]) -> (std::process::Output, Report) {
    let input = dir.join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 768,
            height: 768,
            ..RasterSpec::default()
        },
    );
    let rep = dir.join("run.json");
    let o = run(coordinator()
        .args(["-q", "--workers", "2", "resample"])
        .arg(&input)
        .arg(dir.join("out.tif"))
        .args([
            "--factor",
            "4",
            "--chunk-mib",
            "0.1",
            "--task-timeout",
            "2s",
            "--speculation",
            "off",
        ])
        .args(["--inject-fault", "crash:1:1", "--inject-fault", "segv:3:2"])
        .args(["--inject-fault", "hang:5:1", "--inject-fault", "exit:7"])
        .arg("--report")
        .arg(&rep)
        .args(extra));
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&rep).unwrap())
        .unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    (o, report)
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn the_report_is_derivable_from_the_event_stream() {
    let dir = tempfile::tempdir().unwrap();
    let ev_path = dir.path().join("events.jsonl");
    let (o, report) = chaos_run(dir.path(), &["--events", ev_path.to_str().unwrap()]);
    // Chunk 7 exits on every attempt: quarantined, so exit 5.
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let events = lines(&std::fs::read_to_string(&ev_path).unwrap());
    assert!(
        events.iter().all(|e| e["v"] == 1),
        "every line is version 1"
    );
    assert_eq!(events[0]["event"], "plan");
    assert_eq!(events.last().unwrap()["event"], "run_end");

    // The plan.
    let plan = &events[0];
    assert_eq!(u(&plan["chunks"]) as usize, report.plan.chunks);
    assert_eq!(u(&plan["width"]), report.plan.width);
    assert_eq!(u(&plan["out_width"]), report.plan.out_width);

    // Every attempt, with its times and outcome, from chunk_done and chunk_failed.
    let mut attempts: BTreeMap<u64, Vec<(u64, u64, u64, bool)>> = BTreeMap::new();
    for e in of(&events, "chunk_done")
        .into_iter()
        .chain(of(&events, "chunk_failed"))
    {
        attempts.entry(u(&e["task"])).or_default().push((
            u(&e["attempt"]),
            u(&e["started_ms"]),
            u(&e["ended_ms"]),
            e["event"] == "chunk_done",
        ));
    }
    for c in &report.chunks {
        let mut from_events = attempts.remove(&(c.id as u64)).unwrap_or_default();
        from_events.sort();
        let from_report: Vec<_> = c
            .attempts
            .iter()
            .map(|a| {
                (
                    a.attempt as u64,
                    a.started_ms,
                    a.ended_ms,
                    a.failure.is_none(),
                )
            })
            .collect();
        assert_eq!(from_events, from_report, "chunk {}", c.id);
    }
    assert!(
        attempts.is_empty(),
        "attempts of unknown chunks: {attempts:?}"
    );
    // Each attempt was dispatched first.
    let dispatched = of(&events, "chunk_dispatched").len();
    let ended: usize = report.chunks.iter().map(|c| c.attempts.len()).sum();
    assert_eq!(dispatched, ended);

    // The totals.
    let t = &report.totals;
    let done = of(&events, "chunk_done");
    let in_process = |e: &&&Value| e["executor"]["on"] == "in_process";
    assert_eq!(done.iter().filter(|e| !in_process(e)).count(), t.done);
    assert_eq!(done.iter().filter(in_process).count(), t.done_in_process);
    let quarantined: Vec<u32> = of(&events, "chunk_quarantined")
        .iter()
        .map(|e| u(&e["task"]) as u32)
        .collect();
    // The report lists them by id, the stream as they happen.
    let mut quarantined = quarantined;
    quarantined.sort_unstable();
    assert_eq!(quarantined, t.quarantined);
    assert!(!quarantined.is_empty());
    let splits = of(&events, "chunk_split");
    assert_eq!(splits.len(), t.split);
    assert_eq!(splits.len() as u32, t.counters.splits);
    let parts: u64 = splits.iter().map(|e| u(&e["parts"])).sum();
    assert_eq!(t.chunks as u64 + parts, t.tasks as u64);
    assert_eq!(of(&events, "chunk_written").len(), t.tasks - t.split);
    assert_eq!(of(&events, "worker_spawned").len(), t.workers_spawned);
    let restarts = of(&events, "worker_restart")
        .iter()
        .filter(|e| e["deliberate"] == false)
        .count();
    assert_eq!(restarts as u32, t.counters.restarts);
    assert!(restarts >= 3, "crash, segv x2 and exit kill workers");
    assert_eq!(
        of(&events, "chunk_timed_out").len() as u32,
        t.counters.timeouts
    );
    assert_eq!(t.counters.timeouts, 1);
    assert_eq!(
        of(&events, "worker_recycled").len() as u32,
        t.counters.recycles
    );
    // Deaths: one exit per incarnation, with the report's cause.
    let mut exits: BTreeMap<(u64, u64), &Value> = BTreeMap::new();
    for e in of(&events, "worker_exited") {
        let k = (u(&e["worker"]), u(&e["gen"]));
        assert!(exits.insert(k, e).is_none(), "two exits for {k:?}");
    }
    for w in &report.workers {
        let k = (w.worker.0 as u64, w.incarnation as u64);
        match exits.get(&k) {
            Some(e) => {
                let kind = w.cause.as_ref().map_or(Value::Null, |c| {
                    serde_json::to_value(c).unwrap()["kind"].clone()
                });
                assert_eq!(e["cause"]["kind"], kind, "incarnation {k:?}");
                assert_eq!(e["pid"], serde_json::json!(w.pid));
            }
            None => assert!(w.exited_ms.is_none(), "incarnation {k:?} exited unseen"),
        }
    }
    let deaths: u32 = t.deaths_by_cause.values().sum();
    let died = exits
        .values()
        .filter(|e| e["deliberate"] == false && !e["cause"].is_null())
        .count();
    assert_eq!(died as u32, deaths);
    // Memory: the report's series are the stream's samples.
    for w in &report.workers {
        let from_events: Vec<(u64, u64)> = of(&events, "memory_sample")
            .iter()
            .filter(|e| {
                u(&e["worker"]) == w.worker.0 as u64 && u(&e["gen"]) == w.incarnation as u64
            })
            .map(|e| (u(&e["t_ms"]), u(&e["rss_bytes"])))
            .collect();
        let from_report: Vec<(u64, u64)> = w
            .memory_samples
            .iter()
            .map(|s| (s.ms, s.rss_bytes))
            .collect();
        assert_eq!(from_events, from_report, "worker {}", w.worker.0);
    }
    assert!(!of(&events, "memory_sample").is_empty());
    // How it ended: the output is committed (exit 5 means complete, with nodata windows
    // where chunks were quarantined).
    let end = events.last().unwrap();
    assert_eq!(end["exit_code"], report.exit_code);
    assert_eq!(u(&end["wall_ms"]), t.wall_ms);
    assert_eq!(end["status"], "completed_with_quarantined_chunks");
    assert_eq!(of(&events, "commit").len(), 1);
}

#[test]
fn events_stream_to_stdout_with_a_dash() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(&input, &RasterSpec::default());
    let o =
        run(resample_cmd("1", &input, dir.path().join("out.tif"))
            .args(["-f", "8", "--events", "-"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let events = lines(&String::from_utf8(o.stdout).unwrap());
    assert_eq!(events[0]["event"], "plan");
    let end = events.last().unwrap();
    assert_eq!(end["event"], "run_end");
    assert_eq!(end["status"], "ok");
    assert_eq!(end["exit_code"], 0);
    let chunks = events[0]["chunks"].as_u64().unwrap() as usize;
    assert_eq!(of(&events, "chunk_written").len(), chunks);
}

#[test]
fn each_event_is_on_disk_as_it_happens() {
    // A chunk hangs on its worker until the timeout: while it hangs, the file already
    // holds its dispatch (each line is flushed, so `tail -f` follows a run).
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(&input, &RasterSpec::default());
    let ev = dir.path().join("ev.jsonl");
    let mut child = coordinator()
        .args(["-q", "--workers", "1", "resample"])
        .arg(&input)
        .arg(dir.path().join("out.tif"))
        .args([
            "-f",
            "8",
            "--inject-fault",
            "hang:0:1",
            "--task-timeout",
            "20s",
        ])
        .arg("--events")
        .arg(&ev)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(15),
        "the hanging chunk's dispatch",
        || {
            let text = std::fs::read_to_string(&ev).ok()?;
            text.lines()
                .any(|l| l.contains(r#""event":"chunk_dispatched","task":0,"#))
                .then_some(())
        },
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run is still going (the chunk hangs for 20 s)"
    );
    // Every line there is complete JSON.
    let text = std::fs::read_to_string(&ev).unwrap();
    assert!(text.ends_with('\n'));
    lines(&text);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
}

#[test]
fn an_existing_events_file_is_refused_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    write_f32(&input, &RasterSpec::default());
    let ev = dir.path().join("ev.jsonl");
    std::fs::write(&ev, "keep me\n").unwrap();
    let o = run(resample_cmd("0", &input, dir.path().join("out.tif"))
        .args(["-f", "8", "--events"])
        .arg(&ev));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--events"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&ev).unwrap(), "keep me\n");
    assert!(!dir.path().join("out.tif").exists());
}

/// Headless Chromium on `page`: the DOM after its script ran, and Chromium's stderr (its
/// console messages, with --enable-logging=stderr).
fn chromium(page: &Path, dir: &Path, extra: &[String]) -> (String, String) {
    let exe = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "chromium is not installed (bash scripts/setup.sh --tests installs Debian's chromium)",
        );
    let profile = tempfile::tempdir_in(dir).unwrap();
    let child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1200,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let o = output_within(child, Duration::from_secs(120), true)
        .unwrap_or_else(|o| panic!("chromium did not finish: {}", stderr(&o)));
    assert!(o.status.success(), "chromium failed: {}", stderr(&o));
    (String::from_utf8_lossy(&o.stdout).into_owned(), stderr(&o))
}

#[test]
fn the_html_report_renders_one_bar_per_attempt_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("run.html");
    let (o, report) = chaos_run(dir.path(), &["--report-html", html.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch.
    for needle in ["http://", "https://", " src=", " href=", "@import", "url("] {
        assert!(!page.contains(needle), "the page refers to {needle}");
    }
    let attempts: usize = report.chunks.iter().map(|c| c.attempts.len()).sum();
    let (dom, log) = chromium(&html, dir.path(), &["--dump-dom".to_string()]);
    assert!(
        dom.contains(r#"data-ready="1""#),
        "the page's script ran: {dom:.400}"
    );
    // The page's error sentinel sets this attribute on the body.
    assert!(
        !dom.contains(r#"data-js-error=""#),
        "a script error: {dom:.2000}"
    );
    assert!(
        dom.contains(&format!(r#"data-bars="{attempts}""#)),
        "one bar per attempt ({attempts})"
    );
    assert_eq!(dom.matches(r#"<rect class="attempt "#).count(), attempts);
    // Every outcome of this run has its colour: done, retried, timed out, in process,
    // quarantined.
    for class in ["done", "retried", "timedout", "inprocess", "quarantined"] {
        assert!(
            dom.contains(&format!(r#"<rect class="attempt {class}""#)),
            "no {class} bar"
        );
    }
    // One row per worker incarnation.
    for w in &report.workers {
        assert!(dom.contains(&format!("worker {} #{}", w.worker.0, w.incarnation)));
    }
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");

    // A screenshot: a real PNG of the page.
    let shot = dir.path().join("shot.png");
    chromium(
        &html,
        dir.path(),
        &[format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);

    // The same page from the JSON report afterwards.
    let again = dir.path().join("again.html");
    let o = run(coordinator()
        .arg("report")
        .arg(dir.path().join("run.json"))
        .arg("--html")
        .arg(&again));
    assert!(o.status.success(), "{}", stderr(&o));
    let page2 = std::fs::read_to_string(&again).unwrap();
    assert_eq!(page2.matches(r#"<rect class="attempt "#).count(), attempts);
    // Not over an existing page without --overwrite.
    let o = run(coordinator()
        .arg("report")
        .arg(dir.path().join("run.json"))
        .arg("--html")
        .arg(&again));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn report_refuses_a_file_that_is_not_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"hello\": 1}").unwrap();
    let out = dir.path().join("x.html");
    let o = run(coordinator()
        .arg("report")
        .arg(&bad)
        .arg("--html")
        .arg(&out));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a blocksum run report"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn version_names_the_protocol_and_gdal() {
    let o = run(coordinator().arg("--version"));
    assert!(o.status.success());
    let text = String::from_utf8(o.stdout).unwrap();
    let gdal = gdal::version::version_info("RELEASE_NAME");
    assert!(text.starts_with("coordinator 0."), "{text}");
    assert!(text.contains(&format!("GDAL {gdal}")), "{text}");
    assert!(text.contains("protocol "), "{text}");
}

#[test]
fn completions_are_valid_scripts_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(coordinator().args(["completions", shell]));
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = String::from_utf8(o.stdout).unwrap();
        for word in ["resample", "report-html", "events", "completions"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
        if shell == "bash" {
            // bash itself parses it, and completes a subcommand with it.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("c.bash");
            std::fs::write(&file, &script).unwrap();
            let o = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "source '{}' && COMP_WORDS=(coordinator res) COMP_CWORD=1 COMP_LINE='coordinator res' COMP_POINT=15 && _coordinator coordinator res coordinator && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    file.display()
                ))
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            let replies = String::from_utf8(o.stdout).unwrap();
            assert!(
                replies.lines().any(|l| l == "resample"),
                "bash completes 'res' to: {replies}"
            );
        }
    }
    let o = run(coordinator().args(["completions", "tcsh"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_prints_a_roff_page() {
    let o = run(coordinator().arg("man"));
    assert!(o.status.success(), "{}", stderr(&o));
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(page.starts_with(".ie"), "{:.200}", page);
    assert!(page.contains(".TH coordinator"), "{:.400}", page);
    for word in [".SH NAME", ".SH SYNOPSIS", "resample", "report"] {
        assert!(page.contains(word), "the page lacks {word}");
    }
}

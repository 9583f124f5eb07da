//! The run report as one self-contained HTML page (`coordinator report RUN.json --html
//! OUT.html`, `resample --report-html OUT.html`): a task-stream timeline (one row per worker
//! incarnation and per in-process lane, one bar per attempt coloured by outcome, deaths and
//! recycles marked), each worker's memory over time, throughput over time, and the totals.
//!
//! Everything is drawn here as inline SVG from the [`Report`]; the page fetches nothing and
//! its little script only highlights a chunk's attempts on hover and records, in the DOM,
//! that it ran without an error (the browser test reads that).

use std::fmt::Write as _;

use engine::sched::{ChunkOutcome, Executor, FailureCause};

use crate::report::{Report, WorkerReport};

/// How an attempt ended, as the timeline colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptClass {
    Done,
    InProcess,
    /// Failed, and the chunk went on (retried, run in process or split).
    Retried,
    TimedOut,
    /// The chunk's last attempt, and the chunk was quarantined.
    Quarantined,
}

impl AttemptClass {
    pub fn name(self) -> &'static str {
        match self {
            AttemptClass::Done => "done",
            AttemptClass::InProcess => "inprocess",
            AttemptClass::Retried => "retried",
            AttemptClass::TimedOut => "timedout",
            AttemptClass::Quarantined => "quarantined",
        }
    }

    fn label(self) -> &'static str {
        match self {
            AttemptClass::Done => "done",
            AttemptClass::InProcess => "done in process",
            AttemptClass::Retried => "failed, retried",
            AttemptClass::TimedOut => "timed out",
            AttemptClass::Quarantined => "quarantined",
        }
    }

    const ALL: [AttemptClass; 5] = [
        AttemptClass::Done,
        AttemptClass::InProcess,
        AttemptClass::Retried,
        AttemptClass::TimedOut,
        AttemptClass::Quarantined,
    ];
}

/// A row of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    /// Index into the report's workers.
    Worker(usize),
    Lane(u32),
}

const CSS: &str = r#"
body{font:14px system-ui,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
.sub{color:#555;margin-bottom:12px} table{border-collapse:collapse}
td,th{padding:2px 10px 2px 0;text-align:left} th{color:#555;font-weight:normal}
.status-ok{color:#2e7d32}.status-failed{color:#c62828}.status-completed_with_quarantined_chunks{color:#ef6c00}
svg{display:block;background:#fafafa;border:1px solid #ddd}
svg text{font:11px system-ui,sans-serif;fill:#444}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
rect.attempt{stroke:#fff;stroke-width:.5} rect.attempt.hl{stroke:#000;stroke-width:2}
.done{fill:#43a047;background:#43a047}.inprocess{fill:#1e88e5;background:#1e88e5}
.retried{fill:#fb8c00;background:#fb8c00}.timedout{fill:#8e24aa;background:#8e24aa}
.quarantined{fill:#e53935;background:#e53935}
line.life{stroke:#bbb;stroke-width:1} path.death{stroke:#c62828;stroke-width:2;fill:none} circle.recycle{fill:none;stroke:#1565c0;stroke-width:2}
polyline{fill:none;stroke-width:1.5}
"#;

const SCRIPT: &str = r#"
window.addEventListener('error',function(e){document.body.setAttribute('data-js-error',String(e.message||e));});
document.addEventListener('DOMContentLoaded',function(){
  var bars=document.querySelectorAll('rect.attempt');
  bars.forEach(function(b){
    b.addEventListener('mouseenter',function(){var t=b.getAttribute('data-task');
      document.querySelectorAll('rect.attempt[data-task="'+t+'"]').forEach(function(o){o.classList.add('hl');});});
    b.addEventListener('mouseleave',function(){
      document.querySelectorAll('rect.attempt.hl').forEach(function(o){o.classList.remove('hl');});});
  });
  document.body.setAttribute('data-bars',String(bars.length));
  document.body.setAttribute('data-ready','1');
});
"#;

/// Palette for the memory chart's lines, by worker lane.
const LINE_COLOURS: [&str; 8] = [
    "#1e88e5", "#43a047", "#e53935", "#8e24aa", "#fb8c00", "#00897b", "#6d4c41", "#3949ab",
];

pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The class of each attempt of a chunk, in order.
pub fn classify(report: &Report) -> Vec<Vec<AttemptClass>> {
    report
        .chunks
        .iter()
        .map(|c| {
            let n = c.attempts.len();
            c.attempts
                .iter()
                .enumerate()
                .map(|(i, a)| match (&a.failure, a.executor) {
                    (None, Executor::InProcess { .. }) => AttemptClass::InProcess,
                    (None, Executor::Worker { .. }) => AttemptClass::Done,
                    (Some(_), _) if i + 1 == n && c.outcome == Some(ChunkOutcome::Quarantined) => {
                        AttemptClass::Quarantined
                    }
                    (Some(FailureCause::Timeout { .. }), _) => AttemptClass::TimedOut,
                    (Some(_), _) => AttemptClass::Retried,
                })
                .collect()
        })
        .collect()
}

/// The worker incarnation that ran an attempt: its lane and pid, else the last one of the
/// lane spawned before the attempt started.
fn worker_row(workers: &[WorkerReport], worker: u32, pid: u32, started_ms: u64) -> Option<usize> {
    workers
        .iter()
        .position(|w| w.worker.0 == worker && w.pid == Some(pid))
        .or_else(|| {
            workers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.worker.0 == worker && w.spawned_ms <= started_ms)
                .max_by_key(|(_, w)| w.spawned_ms)
                .map(|(i, _)| i)
        })
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

/// The page for `report`.
pub fn render(report: &Report) -> String {
    let classes = classify(report);
    let end_ms = report
        .chunks
        .iter()
        .flat_map(|c| c.attempts.iter().map(|a| a.ended_ms))
        .chain(report.workers.iter().filter_map(|w| w.exited_ms))
        .chain(std::iter::once(report.totals.wall_ms))
        .max()
        .unwrap_or(0)
        .max(1);

    // Rows: every worker incarnation, then every in-process lane that ran something.
    let mut rows: Vec<Row> = (0..report.workers.len()).map(Row::Worker).collect();
    rows.sort_by_key(|r| match r {
        Row::Worker(i) => (report.workers[*i].worker.0, report.workers[*i].incarnation),
        Row::Lane(_) => (u32::MAX, 0),
    });
    let mut lanes: Vec<u32> = report
        .chunks
        .iter()
        .flat_map(|c| &c.attempts)
        .filter_map(|a| match a.executor {
            Executor::InProcess { lane } => Some(lane),
            _ => None,
        })
        .collect();
    lanes.sort_unstable();
    lanes.dedup();
    rows.extend(lanes.iter().map(|&l| Row::Lane(l)));

    let mut page = String::new();
    let status = serde_json::to_value(report.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>blocksum run: {}</title><style>{CSS}</style><script>{SCRIPT}</script></head><body>\n",
        esc(&report.output)
    );
    let _ = write!(
        page,
        "<h1>{} &rarr; {}</h1><div class=\"sub\">{} {} &middot; status <b class=\"status-{status}\">{}</b> &middot; exit code {}{}</div>",
        esc(&report.input),
        esc(&report.output),
        esc(&report.tool),
        esc(&report.version),
        esc(&status.replace('_', " ")),
        report.exit_code,
        report
            .error
            .as_ref()
            .map(|e| format!(" &middot; {}", esc(e)))
            .unwrap_or_default()
    );
    page.push('\n');
    totals_table(&mut page, report);
    timeline(&mut page, report, &classes, &rows, end_ms);
    memory_chart(&mut page, report, end_ms);
    throughput_chart(&mut page, report, end_ms);
    page.push_str("</body></html>\n");
    page
}

fn totals_table(page: &mut String, report: &Report) {
    let t = &report.totals;
    let p = &report.plan;
    let deaths = if t.deaths_by_cause.is_empty() {
        "none".to_string()
    } else {
        t.deaths_by_cause
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<(&str, String)> = vec![
        (
            "plan",
            format!(
                "{}x{} &rarr; {}x{} ({}), {} chunks of {}x{}",
                p.width,
                p.height,
                p.out_width,
                p.out_height,
                match p.factor {
                    Some(f) => format!("factor {f}"),
                    None => "area-weighted target grid".into(),
                },
                p.chunks,
                p.chunk_width,
                p.chunk_height
            ),
        ),
        (
            "chunks",
            format!(
                "<span id=\"total-done\">{}</span> done, {} in process, {} quarantined, {} split ({} tasks)",
                t.done,
                t.done_in_process,
                t.quarantined.len(),
                t.split,
                t.tasks
            ),
        ),
        (
            "workers",
            format!(
                "{} incarnation(s), {} restart(s), {} recycle(s), {} timeout(s)",
                t.workers_spawned, t.counters.restarts, t.counters.recycles, t.counters.timeouts
            ),
        ),
        ("worker deaths", esc(&deaths)),
        (
            "time",
            format!(
                "{:.2} s wall, {:.0} MiB/s, admission waited {} ms",
                t.wall_ms as f64 / 1000.0,
                t.input_mib_per_s,
                t.admission_wait_ms
            ),
        ),
        (
            "coordinator",
            format!(
                "peak RSS {:.0} MiB, CPU {} ms",
                mib(t.coordinator_peak_rss_bytes),
                t.coordinator_cpu_ms
            ),
        ),
    ];
    page.push_str("<h2>Totals</h2><table id=\"totals\">");
    for (k, v) in rows {
        let _ = write!(page, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    page.push_str("</table>\n");
}

fn timeline(
    page: &mut String,
    report: &Report,
    classes: &[Vec<AttemptClass>],
    rows: &[Row],
    end_ms: u64,
) {
    const LEFT: f64 = 120.0;
    const WIDTH: f64 = 1100.0;
    const ROW_H: f64 = 18.0;
    let x = |ms: u64| LEFT + ms as f64 / end_ms as f64 * (WIDTH - LEFT - 10.0);
    let height = rows.len() as f64 * ROW_H + 30.0;
    page.push_str("<h2>Task stream</h2><div class=\"legend\">");
    for c in AttemptClass::ALL {
        let _ = write!(
            page,
            "<span><i class=\"{}\"></i>{}</span>",
            c.name(),
            c.label()
        );
    }
    page.push_str("<span><svg width=\"12\" height=\"12\" style=\"display:inline;border:0;background:none\"><path class=\"death\" d=\"M2 2 L10 10 M10 2 L2 10\"/></svg> worker died</span><span><svg width=\"12\" height=\"12\" style=\"display:inline;border:0;background:none\"><circle class=\"recycle\" cx=\"6\" cy=\"6\" r=\"4\"/></svg> recycled</span></div>\n");
    let _ = write!(
        page,
        "<svg id=\"timeline\" width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">"
    );
    let row_y = |r: &Row| rows.iter().position(|x| x == r).unwrap_or(0) as f64 * ROW_H + 4.0;
    for r in rows {
        let y = row_y(r);
        match *r {
            Row::Worker(i) => worker_label(page, &report.workers[i], y, end_ms, &x),
            Row::Lane(l) => {
                let _ = write!(
                    page,
                    "<text x=\"4\" y=\"{:.1}\">in process, lane {l}</text>",
                    y + 12.0
                );
            }
        }
    }
    let bars = Bars {
        x: &x,
        row_y: &row_y,
        fallback_y: height - 20.0,
        row_h: ROW_H,
    };
    attempt_bars(page, report, classes, &bars);
    axis(page, height - 14.0, end_ms, LEFT, WIDTH);
    page.push_str("</svg>\n");
}

/// A worker incarnation's row: its label, its life line, and how it ended (died, recycled).
fn worker_label(page: &mut String, w: &WorkerReport, y: f64, end_ms: u64, x: &dyn Fn(u64) -> f64) {
    let _ = write!(
        page,
        "<text x=\"4\" y=\"{:.1}\">worker {} #{}{}</text>",
        y + 12.0,
        w.worker.0,
        w.incarnation,
        w.pid.map(|p| format!(" ({p})")).unwrap_or_default()
    );
    let until = w.exited_ms.unwrap_or(end_ms);
    let _ = write!(
        page,
        "<line class=\"life\" x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        x(w.spawned_ms),
        x(until),
        y + 7.0,
        y + 7.0
    );
    let died = w.cause.as_ref().is_some_and(|c| {
        !matches!(
            c,
            FailureCause::Recycled
                | FailureCause::Superseded { .. }
                | FailureCause::ExitCode { code: 0 }
        )
    });
    if let (Some(at), true) = (w.exited_ms, died || w.recycled) {
        let (cx, cy) = (x(at) + 5.0, y + 7.0);
        let (mark, what) = if w.recycled {
            (
                format!("<circle class=\"recycle\" cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\">"),
                "recycled".to_string(),
            )
        } else {
            (
                format!(
                    "<path class=\"death\" d=\"M{:.1} {:.1} l8 8 m0 -8 l-8 8\">",
                    cx - 4.0,
                    cy - 4.0
                ),
                w.cause.as_ref().map(|c| c.summary()).unwrap_or_default(),
            )
        };
        let end = if w.recycled { "</circle>" } else { "</path>" };
        let _ = write!(
            page,
            "{mark}<title>worker {} #{}: {}</title>{end}",
            w.worker.0,
            w.incarnation,
            esc(&what)
        );
    }
}

/// Where the attempt bars go: the time axis, each row's top, the row of an attempt whose
/// worker row is unknown, and the rows' height.
struct Bars<'a> {
    x: &'a dyn Fn(u64) -> f64,
    row_y: &'a dyn Fn(&Row) -> f64,
    fallback_y: f64,
    row_h: f64,
}

/// One bar per attempt, on its worker's (or lane's) row, classed by how it ended.
fn attempt_bars(page: &mut String, report: &Report, classes: &[Vec<AttemptClass>], b: &Bars<'_>) {
    for (c, cls) in report.chunks.iter().zip(classes) {
        for (a, class) in c.attempts.iter().zip(cls) {
            let row = match a.executor {
                Executor::Worker { worker, pid } => {
                    worker_row(&report.workers, worker.0, pid, a.started_ms).map(Row::Worker)
                }
                Executor::InProcess { lane } => Some(Row::Lane(lane)),
            };
            let y = row.map_or(b.fallback_y, |r| (b.row_y)(&r));
            let (x0, x1) = ((b.x)(a.started_ms), (b.x)(a.ended_ms));
            let what = match &a.failure {
                Some(f) => f.summary(),
                None => format!(
                    "read {} ms, compute {} ms",
                    a.stats.map_or(0, |s| s.read_us / 1000),
                    a.stats.map_or(0, |s| s.compute_us / 1000)
                ),
            };
            let _ = write!(
                page,
                "<rect class=\"attempt {}\" data-task=\"{}\" data-attempt=\"{}\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>chunk {} attempt {}: {} ({}..{} ms) {}</title></rect>",
                class.name(),
                c.id,
                a.attempt,
                y + 1.0,
                (x1 - x0).max(1.5),
                b.row_h - 4.0,
                c.id,
                a.attempt,
                class.label(),
                a.started_ms,
                a.ended_ms,
                esc(&what)
            );
        }
    }
}

/// Time ticks along the bottom of a chart.
fn axis(page: &mut String, y: f64, end_ms: u64, left: f64, width: f64) {
    for i in 0..=5 {
        let ms = end_ms * i / 5;
        let x = left + ms as f64 / end_ms as f64 * (width - left - 10.0);
        let anchor = if i == 5 { "end" } else { "middle" };
        let _ = write!(
            page,
            "<text text-anchor=\"{anchor}\" x=\"{x:.1}\" y=\"{:.1}\">{:.1} s</text>",
            y + 10.0,
            ms as f64 / 1000.0
        );
    }
}

fn memory_chart(page: &mut String, report: &Report, end_ms: u64) {
    const LEFT: f64 = 120.0;
    const WIDTH: f64 = 1100.0;
    const H: f64 = 180.0;
    let max = report
        .workers
        .iter()
        .flat_map(|w| w.memory_samples.iter().map(|s| s.rss_bytes))
        .max()
        .unwrap_or(0)
        .max(1 << 20);
    let _ = write!(
        page,
        "<h2>Worker memory (resident, MiB)</h2><svg id=\"memory\" width=\"{WIDTH}\" height=\"{}\">",
        H + 30.0
    );
    let x = |ms: u64| LEFT + ms as f64 / end_ms as f64 * (WIDTH - LEFT - 10.0);
    let y = |b: u64| 10.0 + H - b as f64 / max as f64 * H;
    let _ = write!(
        page,
        "<text x=\"4\" y=\"16\">{:.0} MiB</text><text x=\"4\" y=\"{:.1}\">0</text>",
        mib(max),
        H + 10.0
    );
    for w in &report.workers {
        if w.memory_samples.is_empty() {
            continue;
        }
        let points: Vec<String> = w
            .memory_samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.ms), y(s.rss_bytes)))
            .collect();
        let colour = LINE_COLOURS[w.worker.0 as usize % LINE_COLOURS.len()];
        let _ = write!(
            page,
            "<polyline class=\"mem\" stroke=\"{colour}\" points=\"{}\"><title>worker {} #{}: peak {:.0} MiB resident, {:.0} MiB private</title></polyline>",
            points.join(" "),
            w.worker.0,
            w.incarnation,
            mib(w.memory.peak_rss_bytes),
            mib(w.memory.peak_private_bytes)
        );
    }
    axis(page, H + 14.0, end_ms, LEFT, WIDTH);
    page.push_str("</svg>\n");
}

fn throughput_chart(page: &mut String, report: &Report, end_ms: u64) {
    const LEFT: f64 = 120.0;
    const WIDTH: f64 = 1100.0;
    const H: f64 = 140.0;
    const BINS: usize = 60;
    let bin_ms = (end_ms as f64 / BINS as f64).max(1.0);
    let mut bytes = [0u64; BINS];
    for c in &report.chunks {
        let input = c.window[2] * c.window[3] * report.plan.pixel_bytes;
        for a in c.attempts.iter().filter(|a| a.failure.is_none()) {
            let b = ((a.ended_ms as f64 / bin_ms) as usize).min(BINS - 1);
            bytes[b] += input;
        }
    }
    let rate = |b: u64| mib(b) / (bin_ms / 1000.0);
    let max = bytes.iter().map(|&b| rate(b)).fold(1.0, f64::max);
    let _ = write!(
        page,
        "<h2>Throughput (input MiB/s of finished chunks)</h2><svg id=\"throughput\" width=\"{WIDTH}\" height=\"{}\">",
        H + 30.0
    );
    let _ = write!(
        page,
        "<text x=\"4\" y=\"16\">{max:.0} MiB/s</text><text x=\"4\" y=\"{:.1}\">0</text>",
        H + 10.0
    );
    let bw = (WIDTH - LEFT - 10.0) / BINS as f64;
    for (i, &b) in bytes.iter().enumerate() {
        if b == 0 {
            continue;
        }
        let h = rate(b) / max * H;
        let _ = write!(
            page,
            "<rect class=\"rate done\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{:.1}-{:.1} s: {:.0} MiB/s</title></rect>",
            LEFT + i as f64 * bw,
            10.0 + H - h,
            (bw - 1.0).max(1.0),
            i as f64 * bin_ms / 1000.0,
            (i + 1) as f64 * bin_ms / 1000.0,
            rate(b)
        );
    }
    axis(page, H + 14.0, end_ms, LEFT, WIDTH);
    page.push_str("</svg>\n");
}

/// `coordinator report RUN.json --html OUT.html`: reads a report, writes its page (never
/// over an existing file unless `overwrite`).
pub fn report_to_html(
    report: &std::path::Path,
    html: &std::path::Path,
    overwrite: bool,
) -> Result<(), crate::error::CoordError> {
    use crate::error::CoordError;
    let text = std::fs::read_to_string(report).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CoordError::InputMissing(report.to_path_buf())
        } else {
            CoordError::BadInput(format!("reading report '{}': {e}", report.display()))
        }
    })?;
    let parsed: Report = serde_json::from_str(&text).map_err(|e| {
        CoordError::BadInput(format!(
            "'{}' is not a blocksum run report (--report): {e}",
            report.display()
        ))
    })?;
    // The page over the report it is made from would lose the report: refused as `resample`
    // refuses a --report over its input (exit 2), --overwrite or not.
    let page = crate::output::SidePath::new("--html", html);
    if crate::output::same_file(html, report) {
        return Err(page.refuse("it is the report the page is made from"));
    }
    crate::output::check_paths(report, html, None, overwrite)?;
    let write_err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CoordError::OutputExists(html.to_path_buf())
        } else {
            CoordError::write_io(html, "", e)
        }
    };
    let staged = crate::output::StagedFile::with_text(html, &render(&parsed)).map_err(write_err)?;
    // A signal before the page is in place leaves no page and no temporary (exit 130).
    engine::interrupt::checkpoint("report")?;
    staged.commit(overwrite).map_err(write_err)
}

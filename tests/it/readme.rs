//! "Every command shown in the README runs as written, in a test": this is that test, over the
//! README and the pages of `docs/` that hold what moved out of it (`PAGES`, in order).
//!
//! The commands are extracted, not copied: every line of a shell code block (```sh, ```bash,
//! ```shell) and every inline code span that starts like a command (`coordinator ...`,
//! `bash ...`, `python3 ...`, `scripts/...` with arguments), plus the `Examples:` lines of
//! `coordinator --help` and of each subcommand's `--help`. Each runs through `sh -c` exactly as
//! written, in a temporary directory, with the debug binaries first on PATH, and must exit with
//! the code its comment names (`# ... exit 5`) or 0. A command that cannot run in a test must be
//! in `NOT_RUN` with the reason; a new README command that is neither runnable nor listed fails
//! this test, and so does a `NOT_RUN` entry that no longer appears anywhere.

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::bin_dir;

/// Commands shown to users that this test does not run, and why. Keep it small.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "bash scripts/demo.sh",
        "installs packages (sudo apt-get), builds the release binaries and makes a 576 MiB \
         raster: minutes, and it changes the machine",
    ),
    (
        "bash scripts/test.sh",
        "what CI runs: it runs `cargo test --workspace`, this test included (it would recurse)",
    ),
    (
        "bash scripts/bench.sh --sizes 4096,16384 --repeats 3",
        "a release build, a 1 GiB raster, gdalwarp and a Python virtualenv: many minutes",
    ),
    (
        "bash scripts/bench.sh targets",
        "a release build, six 1 GiB rasters and a Python virtualenv: many minutes",
    ),
    (
        "bash scripts/bench.sh grid",
        "a release build, a 1 GiB raster and gdalwarp -r sum on it: minutes",
    ),
    (
        "bash scripts/bench.sh tail",
        "a release build, a 1 GiB raster and runs that each hang a chunk: minutes",
    ),
    (
        "bash scripts/bench.sh targets --only startup",
        "a release build, a 16384² raster and 58 runs of the coordinator: minutes",
    ),
    (
        "bash scripts/breaker-bench.sh target/release",
        "a release build, a 4096² raster and a striped copy, 13 runs that crash, abort or hang \
         workers on purpose: a minute",
    ),
    (
        "bash scripts/memory-bench.sh",
        "a release build and rasters of 8192 and 16384 pixels a side: minutes",
    ),
    (
        "bash scripts/writer-bench.sh",
        "a release build and rasters of 8192 and 16384 pixels wide: minutes",
    ),
    (
        "bash scripts/cog-bench.sh",
        "a release build, and an 8192² raster aggregated 27 times (4 configurations, 3 repeats): minutes",
    ),
    (
        "python3 scripts/chaos.py demo-out/demo.tif",
        "measures the release binaries (target/release) on the raster scripts/demo.sh makes",
    ),
    (
        "bash scripts/batch-bench.sh",
        "a release build and 20 rasters run twice (one by one, then as one batch): minutes",
    ),
    (
        "bash scripts/journal-bench.sh",
        "a release build and a 1 GiB raster, shards and merges at two factors: minutes",
    ),
    (
        "pip install ./python",
        "builds the release binaries into a virtualenv (minutes) from a checkout; scripts/test.sh \
         runs exactly this in a fresh virtualenv, then the package's pytest tests (python/tests), \
         which also run the README's Python example",
    ),
    (
        "coordinator synth big.tif --width 32768 --height 32768 --seed 7",
        "a 4 GiB raster on purpose (the example shows synth at scale): minutes",
    ),
];

/// No command may take longer than this; a hang fails the test instead of stalling it.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// One command as shown, and the exit code it promises.
#[derive(Debug, Clone)]
struct Shown {
    /// The text as written, comment included (the shell drops the comment).
    text: String,
    /// Where it was found, for messages.
    origin: String,
    expect: i32,
}

impl Shown {
    fn new(text: &str, origin: String) -> Shown {
        let (_, comment) = split_comment(text);
        Shown {
            text: text.to_string(),
            origin,
            expect: comment.and_then(exit_code_in).unwrap_or(0),
        }
    }

    /// The command without its comment, whitespace collapsed: the key of `NOT_RUN`.
    fn command(&self) -> String {
        split_comment(&self.text)
            .0
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Splits a shell line at its comment: a `#` that starts a word outside quotes.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let mut quote = None;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if prev_space => return (line[..i].trim_end(), Some(&line[i + 1..])),
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    (line.trim_end(), None)
}

/// `exit N` in a comment ("quarantined, exit 5").
fn exit_code_in(comment: &str) -> Option<i32> {
    comment.match_indices("exit ").find_map(|(i, _)| {
        let starts_word = comment[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let digits: String = comment[i + 5..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        (starts_word && !digits.is_empty()).then(|| digits.parse().unwrap())
    })
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md")
}

/// The README and the pages of `docs/` that hold what moved out of it, in the order their
/// commands run: a page's commands may use the files the earlier ones made.
const PAGES: &[&str] = &[
    "README.md",
    "docs/usage.md",
    "docs/grids.md",
    "docs/kernels.md",
    "docs/architecture.md",
    "docs/supervision.md",
    "docs/durability.md",
    "docs/memory.md",
    "docs/performance.md",
];

/// Every command of the README and of [`PAGES`], in that order.
fn documented_commands() -> Vec<Shown> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    PAGES
        .iter()
        .flat_map(|page| {
            let md =
                std::fs::read_to_string(root.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
            readme_commands_in(page, &md)
        })
        .collect()
}

/// The first block of `lang` in the README: the config file it shows, in TOML and YAML.
fn readme_block(md: &str, lang: &str) -> String {
    let open = format!("```{lang}\n");
    let start = md
        .find(&open)
        .unwrap_or_else(|| panic!("a {lang} block in the README"))
        + open.len();
    let len = md[start..].find("```").unwrap();
    md[start..start + len].to_string()
}

/// An inline code span that reads as a command a user would copy: a known program or a
/// script, with arguments. A span with an upper-case placeholder (`coordinator bench-dispatch
/// INPUT`) is a synopsis of the syntax, not an example, and is not run.
fn inline_command(span: &str) -> bool {
    let mut words = span.split_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    let program = matches!(first, "coordinator" | "worker" | "bash" | "sh" | "python3")
        || first.starts_with("scripts/")
        || first.starts_with("./");
    let args: Vec<&str> = words.collect();
    let placeholder = args.iter().any(|w| {
        w.len() > 1
            && w.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    });
    program && !args.is_empty() && !placeholder
}

/// Every command of the page `name` (its text `md`), in document order.
fn readme_commands_in(name: &str, md: &str) -> Vec<Shown> {
    let mut out = Vec::new();
    let mut prose = String::new();
    let mut prose_line = 1;
    let mut fence: Option<bool> = None; // Some(is a shell block) while inside a fence
    let mut pending = String::new();
    let flush_prose = |prose: &mut String, line: usize, out: &mut Vec<Shown>| {
        // Code spans may wrap lines, so spans are found in the whole stretch of prose.
        for (i, span) in prose.split('`').enumerate() {
            if i % 2 == 1 && inline_command(span) {
                out.push(Shown::new(
                    &span.split_whitespace().collect::<Vec<_>>().join(" "),
                    format!("{name}, inline, in the prose from line {line}"),
                ));
            }
        }
        prose.clear();
    };
    for (n, line) in md.lines().enumerate() {
        let n = n + 1;
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            match fence {
                None => {
                    flush_prose(&mut prose, prose_line, &mut out);
                    fence = Some(matches!(lang.trim(), "sh" | "bash" | "shell" | "zsh"));
                }
                Some(_) => {
                    assert!(pending.is_empty(), "{name}:{n}: a `\\` continues nothing");
                    fence = None;
                    prose_line = n + 1;
                }
            }
            continue;
        }
        match fence {
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
            Some(false) => {}
            Some(true) => {
                if let Some(head) = line.strip_suffix('\\') {
                    pending.push_str(head);
                    continue;
                }
                let full = std::mem::take(&mut pending) + line;
                if !full.trim().is_empty() && !full.trim_start().starts_with('#') {
                    out.push(Shown::new(full.trim(), format!("{name}:{n}")));
                }
            }
        }
    }
    flush_prose(&mut prose, prose_line, &mut out);
    out
}

/// The `Examples:` lines of a `--help` text.
fn help_examples(help: &str, origin: &str) -> Vec<Shown> {
    help.lines()
        .skip_while(|l| l.trim() != "Examples:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| Shown::new(l.trim(), origin.to_string()))
        .collect()
}

fn help_of(args: &[&str]) -> String {
    let o = Command::new(crate::common::bin("coordinator"))
        .args(args)
        .arg("--help")
        .output()
        .expect("running coordinator --help");
    assert_eq!(o.status.code(), Some(0), "coordinator {args:?} --help");
    String::from_utf8(o.stdout).unwrap()
}

/// The subcommands `coordinator --help` lists (but `help`).
fn subcommands(root_help: &str) -> Vec<String> {
    root_help
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_string)
        .collect()
}

fn allowed(cmd: &Shown) -> Option<&'static str> {
    NOT_RUN
        .iter()
        .find(|(c, _)| *c == cmd.command())
        .map(|(_, why)| *why)
}

/// Runs `cmd` as written with `sh -c` in `dir`, the debug binaries first on PATH and no
/// BLOCKSUM_* variable inherited; checks its exit code. Output goes to `logs`.
fn run_shown(cmd: &Shown, dir: &Path, logs: &Path, n: usize) {
    let path = format!(
        "{}:{}",
        bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_log = logs.join(format!("{n}.stdout"));
    let err_log = logs.join(format!("{n}.stderr"));
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(&cmd.text)
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(File::create(&out_log).unwrap())
        .stderr(File::create(&err_log).unwrap())
        // Its own process group, so a command past the limit is stopped with all it started.
        .process_group(0);
    for (k, _) in std::env::vars() {
        if k.starts_with("BLOCKSUM_") {
            c.env_remove(k);
        }
    }
    let t0 = Instant::now();
    let child = c.spawn().expect("running sh");
    let status = match crate::common::output_within(child, COMMAND_LIMIT, true) {
        Ok(o) => o.status,
        Err(_) => panic!(
            "{}: `{}` still running after {COMMAND_LIMIT:?}",
            cmd.origin, cmd.text
        ),
    };
    let err = std::fs::read_to_string(&err_log).unwrap_or_default();
    eprintln!(
        "{:>6.2} s  exit {:<3} {}",
        t0.elapsed().as_secs_f64(),
        status.code().unwrap_or(-1),
        cmd.text
    );
    assert_eq!(
        status.code(),
        Some(cmd.expect),
        "{}: `{}` exited {status}, the documentation says {}; stderr:\n{err}",
        cmd.origin,
        cmd.text,
        cmd.expect
    );
    assert!(
        !err.contains("panicked"),
        "{}: `{}` panicked:\n{err}",
        cmd.origin,
        cmd.text
    );
}

/// Runs the commands in order in `dir`, skipping (and printing) those in `NOT_RUN`.
fn run_all(cmds: &[Shown], dir: &Path) {
    let logs = tempfile::tempdir().unwrap();
    for (n, cmd) in cmds.iter().enumerate() {
        if let Some(why) = allowed(cmd) {
            eprintln!("not run   {}  ({why})", cmd.text);
            continue;
        }
        run_shown(cmd, dir, logs.path(), n);
    }
}

#[test]
fn the_not_run_list_is_small_and_current() {
    let mut shown: Vec<String> = documented_commands().iter().map(Shown::command).collect();
    let root = help_of(&[]);
    shown.extend(help_examples(&root, "").iter().map(Shown::command));
    for sub in subcommands(&root) {
        shown.extend(
            help_examples(&help_of(&[&sub]), "")
                .iter()
                .map(Shown::command),
        );
    }
    for (cmd, _) in NOT_RUN {
        assert!(
            shown.iter().any(|s| s == cmd),
            "NOT_RUN lists `{cmd}`, which neither the README nor any --help shows any more"
        );
    }
}

#[test]
fn the_extraction_finds_the_readme_commands() {
    let cmds = documented_commands();
    let texts: Vec<String> = cmds.iter().map(Shown::command).collect();
    // A few anchors: a block line, a fault-injection line with its code, an inline example.
    assert!(texts
        .iter()
        .any(|t| t.starts_with("coordinator synth demo.tif")));
    assert!(texts.iter().any(|t| t == "coordinator config"));
    assert!(cmds
        .iter()
        .any(|c| c.text.contains("segv:") && c.expect == 5));
    assert!(!texts.iter().any(|t| t.contains("INPUT")), "{texts:?}");
    assert_eq!(exit_code_in(" retried, exit 0"), Some(0));
    assert_eq!(exit_code_in(" quarantined, exit 5"), Some(5));
    assert_eq!(exit_code_in(" runs in process"), None);
    assert_eq!(split_comment("a 'b # c' # d").1, Some(" d"));
}

#[test]
fn every_readme_command_runs_as_written() {
    let cmds = documented_commands();
    assert!(cmds.len() >= 10, "too few commands found: {cmds:?}");
    let dir = tempfile::tempdir().unwrap();
    run_all(&cmds, dir.path());
}

#[test]
fn every_help_example_runs_as_written() {
    let md = readme();
    let root = help_of(&[]);
    let mut texts = vec![("coordinator --help".to_string(), root.clone())];
    for sub in subcommands(&root) {
        texts.push((format!("coordinator {sub} --help"), help_of(&[&sub])));
    }
    // The examples assume the files a user would have: the raster the root examples make
    // first, and the README's config blocks saved as `blocksum.toml` and `config.yml`.
    let mut demo = None::<tempfile::TempDir>;
    let mut seen = Vec::new();
    for (origin, help) in texts {
        let cmds = help_examples(&help, &origin);
        assert!(!cmds.is_empty(), "{origin} shows no examples");
        let key: Vec<String> = cmds.iter().map(|c| c.text.clone()).collect();
        if seen.contains(&key) {
            continue; // `resample --help` shows the root's examples
        }
        seen.push(key);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blocksum.toml"), readme_block(&md, "toml")).unwrap();
        std::fs::write(dir.path().join("config.yml"), readme_block(&md, "yaml")).unwrap();
        let makes_raster = cmds[0].command().starts_with("coordinator synth ");
        if !makes_raster {
            let from = demo
                .as_ref()
                .expect("the root examples run first and make demo.tif");
            std::fs::copy(from.path().join("demo.tif"), dir.path().join("demo.tif")).unwrap();
        }
        run_all(&cmds, dir.path());
        if demo.is_none() {
            assert!(
                dir.path().join("demo.tif").exists(),
                "{origin}: the first examples should make demo.tif"
            );
            demo = Some(dir);
        }
    }
}

#[test]
fn the_help_lists_every_documented_exit_code() {
    let md = readme();
    let table = &md[md.find("### Exit codes").expect("the README's exit codes")..];
    let documented: Vec<u32> = table
        .lines()
        .skip_while(|l| !l.starts_with("| code"))
        .skip(2)
        .take_while(|l| l.starts_with("| "))
        .map(|l| l[2..].split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(documented.len() >= 10, "{documented:?}");
    let help = help_of(&[]);
    let line = &help[help.find("Exit codes:").expect("--help's exit codes")..];
    let line = &line[..line.find(".\n").unwrap_or(line.len())];
    let listed: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .map(|t| t.parse().unwrap())
        .collect();
    assert_eq!(listed, documented, "{line}");
}

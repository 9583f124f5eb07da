//! The run's journal, as the run wires it: the plan's identity, finding and checking the
//! journal of an earlier run (`--resume`), replaying its chunks into the output, and the
//! sink that journals each chunk as it is written. The file format is `crate::journal`'s.

use std::{
    os::unix::fs::MetadataExt,
    sync::{Arc, Mutex},
};

use super::*;
use crate::journal::{self, Header, JournalStats, JournalWriter, OutputHeader, PlanIdentity, Scan};
use gdal::Metadata as _;

/// The identity of this run's plan: the input (canonical path, size, modification time) and
/// every option that changes the chunks or the pixels.
pub(super) fn identity(one: OneRun<'_>, prep: &Prepared) -> Result<PlanIdentity, CoordError> {
    let cfg = one.cfg;
    let canonical = one
        .io
        .input
        .canonicalize()
        .unwrap_or_else(|_| one.io.input.clone());
    // A virtual GDAL path (/vsicurl/...) has no local metadata: its name stands alone.
    let (size, mtime) = std::fs::metadata(&one.io.input)
        .map(|m| {
            (
                m.len().to_string(),
                format!("{}.{:09}", m.mtime(), m.mtime_nsec()),
            )
        })
        .unwrap_or_else(|_| ("?".into(), "?".into()));
    let p = &prep.plan;
    let mut options: Vec<(String, String)> = vec![
        ("input".into(), canonical.display().to_string()),
        ("input size".into(), size),
        ("input modification time".into(), mtime),
        ("command".into(), cfg.job.kernel.command().into()),
        grid_identity(&p.mapping),
        // A map run's identity names `sum` here, as it did before the kernel was a type:
        // the journals and outputs of earlier map runs keep matching their --resume.
        (
            "--agg".into(),
            cfg.job
                .kernel
                .agg()
                .unwrap_or(worker::Agg::Sum)
                .name()
                .into(),
        ),
        (
            "bands".into(),
            format!(
                "{:?}",
                prep.bands.iter().map(|b| b.index).collect::<Vec<_>>()
            ),
        ),
        ("output type".into(), prep.out_type.to_string()),
        (
            "output nodata".into(),
            match prep.out_nodata {
                Some(nd) => format!("{:#018x}", nd.to_bits()),
                None => "none".into(),
            },
        ),
        ("--ignore-mask".into(), cfg.job.ignore_mask.to_string()),
        ("scale/offset applied".into(), prep.unscale.to_string()),
        (CHUNK_GRID.into(), grid_entry(p)),
        (
            "creation options".into(),
            cfg.output.creation_options.as_slice().join(" "),
        ),
    ];
    if let Kernel::Map(m) = &cfg.job.kernel {
        let lib = m.lib.as_deref().unwrap_or(&cfg.pool.worker_bin);
        let stamp = std::fs::metadata(lib)
            .map(|md| format!("{} bytes, modified {}", md.len(), md.mtime()))
            .unwrap_or_default();
        options.push(("kernel".into(), format!("{} ({stamp})", lib.display())));
        options.push(("--kernel-arg".into(), format!("{:?}", m.args)));
        options.push(("--out-bands".into(), m.out_bands.to_string()));
    }
    Ok(PlanIdentity {
        options,
        chunks: p.chunks.len() as u32,
    })
}

/// The identity's entry for the chunk grid: it decides what a journal's records are, but not
/// the output's pixels, so the output's own record of its plan ([`PLAN_KEY`]) leaves it out.
const CHUNK_GRID: &str = "chunk grid (from --chunk-mib, and --workers on a small raster)";

/// The identity's value for a plan's chunk grid.
fn grid_entry(p: &Plan) -> String {
    format!("{}x{}", p.chunk_w, p.chunk_h)
}

/// `--resume` of a journal whose chunk grid is not the one this run planned, all its other
/// entries being this run's: on a small raster the grid follows the workers that run at
/// once, no more than the CPUs (`prepare::chunk_target`), so a retry on a node with another
/// CPU count (a Slurm requeue, a rescheduled Kubernetes pod) or with another `--workers`
/// plans other chunks. The journal's grid (its size and its number of chunks) is looked for
/// among the plans this command makes for 1, 2, ... running workers, up to the most CPUs a
/// node is likely to have or where the spread stops changing, and, when found, replaces this
/// run's plan (and its memory plan): the journal's records are then this run's chunks, and
/// the output is the same whatever the grid. Not found (another `--chunk-mib`): the plan
/// stays, and `open` refuses the journal, naming the grid.
pub(super) fn adopt_grid(
    one: OneRun<'_>,
    prep: &mut Prepared,
    earlier: Option<&Scan>,
) -> Result<(), CoordError> {
    let cfg = one.cfg;
    let Some(theirs) = earlier.filter(|_| cfg.durability.resume) else {
        return Ok(());
    };
    let theirs = &theirs.header.identity;
    let ours = identity(one, prep)?;
    let grid = |id: &PlanIdentity| {
        let found = id.options.iter().find(|(k, _)| k == CHUNK_GRID);
        found.map(|(_, v)| v.clone())
    };
    let rest = |id: &PlanIdentity| {
        let others = id.options.iter().filter(|(k, _)| k != CHUNK_GRID);
        others.cloned().collect::<Vec<_>>()
    };
    let Some(wanted) = grid(theirs) else {
        return Ok(());
    };
    let same = grid(&ours).as_ref() == Some(&wanted) && ours.chunks == theirs.chunks;
    if same || rest(theirs) != rest(&ours) {
        return Ok(());
    }
    let total = prep.info.width * prep.info.height * prep.plan.pixel_bytes;
    let most = u64::from(cfg.pool.workers).max(MOST_CPUS);
    let target = |running| super::prepare::chunk_target(cfg, total, running);
    for running in distinct_targets(target, total, most) {
        // A candidate that fails (a fault naming a chunk it lacks) is not the journal's.
        let Ok((plan, planes)) = prep.chunks_for(cfg, running) else {
            continue;
        };
        if grid_entry(&plan) == wanted && plan.chunks.len() == theirs.chunks as usize {
            prep.with_plan(cfg, (plan, planes))?;
            tracing::info!(
                "--resume: the journal's chunk grid {wanted} (planned for {running} running worker(s)) is kept"
            );
            return Ok(());
        }
    }
    Ok(())
}

/// The counts of running workers, from 1 to `most`, whose chunk targets (`target`) differ
/// from the count before's; it stops once the spread of `total` reaches the 1 MiB floor,
/// that count included (past it the target no longer changes).
fn distinct_targets(target: impl Fn(u64) -> u64, total: u64, most: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut last = None;
    for running in 1..=most {
        let t = target(running);
        if last != Some(t) {
            out.push(running);
            last = Some(t);
        }
        if total / (4 * running) <= 1 << 20 {
            break;
        }
    }
    out
}

/// The most workers running at once that [`adopt_grid`] looks for (beyond `--workers`): the
/// CPUs of a large server.
const MOST_CPUS: u64 = 1024;

/// The output's metadata item that records the plan it was made from: a digest of the plan
/// identity's entries that decide its pixels (input, its size and time, command, options).
pub(super) const PLAN_KEY: &str = "BLOCKSUM_PLAN";

/// The value of [`PLAN_KEY`]: 64-bit FNV-1a over the identity's entries but the chunk grid,
/// in hex. Stable across builds and machines (no std hasher, whose seed is not).
pub(super) fn plan_digest(identity: &PlanIdentity) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let entries = identity.options.iter().filter(|(k, _)| k != CHUNK_GRID);
    for (k, v) in entries {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Whether `output` is a complete output of the plan whose digest is `digest`: its own
/// metadata names the plan, and no quarantined chunk. The one test a single run and a batch
/// apply before keeping an output.
pub(super) fn committed_by(output: &Path, digest: &str) -> bool {
    if !std::fs::symlink_metadata(output).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(ds) = gdal::Dataset::open(output) else {
        return false;
    };
    ds.metadata_item(PLAN_KEY, "").as_deref() == Some(digest)
        && ds
            .metadata_item("BLOCKSUM_QUARANTINED_CHUNKS", "")
            .is_none()
}

/// `--resume` over an output a run of this same plan committed (its [`PLAN_KEY`] says so,
/// and it holds no quarantined chunk): nothing is left to do. The retry of a run killed after
/// its commit (a Slurm requeue, a Kubernetes retry) then exits 0 and leaves the output as it
/// is; a journal still there (killed between the commit and its removal) is removed. `None`
/// when there is no such output: the run goes on, and an output of another plan is refused
/// later as any existing output is.
pub(super) fn already_committed(
    output: &Path,
    journal: &Path,
    digest: &str,
) -> Result<Option<String>, CoordError> {
    if !committed_by(output, digest) {
        return Ok(None);
    }
    if std::fs::symlink_metadata(journal).is_ok() && journal_of(journal, digest) {
        std::fs::remove_file(journal).map_err(|e| {
            CoordError::write_io(
                journal,
                "removing the journal of the run that committed the output",
                e,
            )
        })?;
        journal::sync_dir(journal);
    }
    Ok(Some(format!(
        "--resume: '{}' is complete, committed by a run of the same input and options: kept as it is (nothing computed, no report written)",
        output.display()
    )))
}

/// Whether the journal at `path` is one of the plan whose digest is `digest`, or stands for
/// no work (no complete header): the one a run of this plan left between its commit and the
/// journal's removal. Another plan's journal beside the output (say, of an `--overwrite`
/// run of other options, killed) is not this run's to remove; neither is one that cannot be
/// read.
fn journal_of(path: &Path, digest: &str) -> bool {
    match crate::journal::Scan::read(path) {
        Ok(None) => true,
        Ok(Some(scan)) => plan_digest(&scan.header.identity) == digest,
        Err(e) => {
            tracing::info!("--resume: left '{}' as it is: {e}", path.display());
            false
        }
    }
}

/// Where the run's journal goes: OUTPUT.journal for a whole run;
/// OUTPUT.shards/shard-I-of-N.journal for a shard (the directory is made here), which writes
/// no GeoTIFF (`merge` does).
pub(super) fn journal_path(one: OneRun<'_>) -> Result<PathBuf, CoordError> {
    let cfg = one.cfg;
    let Some(s) = cfg.durability.shard else {
        return Ok(crate::journal::path_for(&one.io.output));
    };
    let dir = crate::shard::dir_for(&one.io.output);
    let parent = output::parent_dir(&one.io.output);
    if !parent.is_dir() {
        return Err(CoordError::OutputDirMissing(parent));
    }
    if let Err(e) = std::fs::create_dir(&dir) {
        if e.kind() != std::io::ErrorKind::AlreadyExists || !dir.is_dir() {
            return Err(CoordError::write_io(
                dir,
                "creating the shards' directory",
                e,
            ));
        }
    }
    Ok(crate::shard::journal_in(&dir, s))
}

/// The plan chunks the run owns: all of them, or the shard's range.
pub(super) fn range(cfg: &RunConfig, plan: &Plan) -> (u32, u32) {
    match cfg.durability.shard {
        None => (0, plan.chunks.len() as u32),
        Some(s) => crate::shard::range(plan, s),
    }
}

/// Whether the run may replace an existing output: with `--overwrite`, or with `--resume`
/// when the earlier journal is complete (a run killed between its commit and removing its
/// journal left a complete output and a complete journal: the same result replaces it).
pub(super) fn may_replace(cfg: &RunConfig, earlier: Option<&Scan>, range: (u32, u32)) -> bool {
    let earlier_complete = earlier.is_some_and(|e| e.records.len() == (range.1 - range.0) as usize);
    cfg.output.overwrite || (cfg.durability.resume && earlier_complete)
}

/// Leaves `job` with this run's tasks: the plan's chunks in `range` that `earlier` does not
/// hold, renumbered from 0 (the engine's task ids); `plan_ids` keeps their place in the plan.
pub(super) fn keep_todo(
    job: &mut BlockAggJob,
    plan: &Plan,
    range: (u32, u32),
    earlier: Option<&Scan>,
) {
    let mut done = vec![false; plan.chunks.len()];
    for r in earlier.map_or(&[][..], |s| &s.records[..]) {
        done[r.id as usize] = true;
    }
    let todo: Vec<Chunk> = plan.chunks[range.0 as usize..range.1 as usize]
        .iter()
        .filter(|c| !done[c.id.0 as usize])
        .copied()
        .collect();
    job.plan_ids = todo.iter().map(|c| c.id.0).collect();
    job.tasks = todo
        .iter()
        .enumerate()
        .map(|(i, c)| Chunk {
            id: TaskId(i as u32),
            ..*c
        })
        .collect();
}

/// The grid's part of the plan identity: `--factor` as before (so journals of earlier runs
/// keep matching), or the target grid's size and transform, bit for bit.
fn grid_identity(m: &Mapping) -> (String, String) {
    match m {
        Mapping::Factor { factor } => ("--factor".into(), factor.to_string()),
        Mapping::Cells { target: t } => (
            "target grid".into(),
            format!(
                "{}x{} {:?}",
                t.width,
                t.height,
                t.geo_transform.map(f64::to_bits)
            ),
        ),
    }
}

/// The output a run of `cfg` writes (its temporary name is the staging's).
pub(super) fn output_spec(one: OneRun<'_>, prep: &Prepared) -> OutputSpec {
    let cfg = one.cfg;
    OutputSpec {
        path: one.io.output.clone(),
        width: prep.plan.out_width,
        height: prep.plan.out_height,
        bands: out_bands(cfg, prep),
        out_type: prep.out_type,
        nodata: prep.out_nodata,
        geo_transform: prep.plan.mapping.geo_transform(prep.info.geo_transform),
        projection: prep.info.projection.clone(),
        creation_options: cfg.output.creation_options.as_slice().to_vec(),
        band_meta: match &cfg.job.kernel {
            Kernel::BlockAgg(agg) => prep
                .bands
                .iter()
                .map(|b| fidelity::out_meta(*agg, prep.out_type, b, prep.unscale))
                .collect(),
            Kernel::Map(_) => Vec::new(),
        },
        area_or_point: prep.info.area_or_point.clone(),
    }
}

/// The output as `merge` will need to write it without the input.
pub(super) fn output_header(spec: &OutputSpec, metadata: Vec<(String, String)>) -> OutputHeader {
    OutputHeader {
        width: spec.width,
        height: spec.height,
        band_descriptions: spec.bands.iter().map(|b| b.description.clone()).collect(),
        out_type: spec.out_type,
        nodata: spec.nodata,
        band_meta: spec.band_meta.clone(),
        area_or_point: spec.area_or_point.clone(),
        geo_transform: spec.geo_transform,
        projection: spec.projection.clone(),
        creation_options: spec.creation_options.clone(),
        metadata,
    }
}

/// The journal a run appends to, and what an earlier run had journaled.
pub(super) struct Opened {
    pub(super) writer: JournalWriter,
    /// The earlier run's journal, when resuming one.
    pub(super) earlier: Option<Scan>,
}

/// Reads what is at `path` before the run starts, under the run's lock: `None` for no
/// journal (or one whose header never became complete: its run died starting, and it stands
/// for no work).
pub(super) fn existing(path: &Path) -> Result<Option<Scan>, CoordError> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(None),
        Ok(m) if !m.is_file() => Err(CoordError::Write {
            path: path.to_path_buf(),
            reason: "the journal's name is taken by something that is not a regular file".into(),
        }),
        Ok(_) => {
            let scan = Scan::read(path)?;
            if scan.is_none() {
                tracing::info!(
                    "'{}' holds no complete header (its run died starting): removed",
                    path.display()
                );
                std::fs::remove_file(path)
                    .map_err(|e| CoordError::write_io(path, "removing an empty journal", e))?;
            }
            Ok(scan)
        }
    }
}

/// Opens the run's journal: continues `earlier` when resuming (after checking it is this
/// plan's), else starts a new one (`--overwrite` discards an earlier one; without it, an
/// earlier journal is an error naming `--resume` and `--overwrite`).
pub(super) fn open(
    cfg: &RunConfig,
    path: &Path,
    target: &Path,
    earlier: Option<Scan>,
    header: &Header,
) -> Result<Opened, CoordError> {
    match earlier {
        Some(scan) if cfg.durability.resume => {
            if let Some(why) = journal::difference(&scan.header.identity, &header.identity) {
                return Err(CoordError::JournalMismatch {
                    journal: path.to_path_buf(),
                    why,
                });
            }
            if scan.header.shard != header.shard || scan.header.range != header.range {
                return Err(CoordError::JournalMismatch {
                    journal: path.to_path_buf(),
                    why: "it is another shard's".into(),
                });
            }
            let writer = JournalWriter::resume(path, &scan)?;
            Ok(Opened {
                writer,
                earlier: Some(scan),
            })
        }
        Some(scan) if !cfg.output.overwrite => Err(CoordError::JournalExists {
            journal: path.to_path_buf(),
            output: target.to_path_buf(),
            chunks: scan.records.len(),
        }),
        Some(_) => {
            tracing::info!(
                "--overwrite: discarding the journal '{}' of an earlier run",
                path.display()
            );
            std::fs::remove_file(path)
                .map_err(|e| CoordError::write_io(path, "removing the earlier journal", e))?;
            Ok(Opened {
                writer: JournalWriter::create(path, header)?,
                earlier: None,
            })
        }
        None => Ok(Opened {
            writer: JournalWriter::create(path, header)?,
            earlier: None,
        }),
    }
}

/// What an earlier run left on a run's journal path, read under the run's lock: the
/// journal (`--resume` takes its chunk grid), the plan chunks this run owns, and whether the
/// commit may replace an existing output. The one reading a single run and each input of a
/// batch do.
pub(super) struct Earlier {
    pub(super) scan: Option<Scan>,
    pub(super) range: (u32, u32),
    pub(super) replace: bool,
}

/// Reads the earlier journal at `jpath`, adopts its chunk grid (`--resume`), and refuses an
/// existing output this run may not replace (a shard writes no output).
pub(super) fn earlier(
    one: OneRun<'_>,
    prep: &mut Prepared,
    jpath: &Path,
) -> Result<Earlier, CoordError> {
    let cfg = one.cfg;
    let scan = existing(jpath)?;
    adopt_grid(one, prep, scan.as_ref())?;
    let range = range(cfg, &prep.plan);
    // A run killed between its commit and removing its journal left a complete output and a
    // complete journal: --resume may then replace the output with the same result.
    let replace = may_replace(cfg, scan.as_ref(), range);
    if cfg.durability.shard.is_none()
        && !replace
        && std::fs::symlink_metadata(&one.io.output).is_ok()
    {
        return Err(CoordError::OutputExists(one.io.output.clone()));
    }
    Ok(Earlier {
        scan,
        range,
        replace,
    })
}

/// Opens the run's journal at `jpath` for the output `spec` (continuing the earlier one with
/// `--resume`, after checking it is this plan's) and returns the job left with the chunks no
/// journal holds.
pub(super) fn journal_job(
    one: OneRun<'_>,
    prep: &Prepared,
    (jpath, spec): (&Path, &OutputSpec),
    earlier: Option<Scan>,
    range: (u32, u32),
) -> Result<(BlockAggJob, Opened), CoordError> {
    let cfg = one.cfg;
    let mut job = BlockAggJob::new(one, prep);
    let header = Header {
        identity: identity(one, prep)?,
        output: output_header(spec, job.close_item(&[])),
        shard: cfg.durability.shard.map(|s| (s.index, s.count)),
        range,
    };
    let opened = open(cfg, jpath, &one.io.output, earlier, &header)?;
    if let Some(scan) = &opened.earlier {
        tracing::info!(
            "resuming from '{}': {} chunk(s) journaled",
            jpath.display(),
            scan.records.len()
        );
    }
    keep_todo(&mut job, &prep.plan, range, opened.earlier.as_ref());
    Ok((job, opened))
}

/// Writes every chunk of `scan` into `sink`, one record in memory at a time.
pub(super) fn replay(path: &Path, scan: &Scan, sink: &mut GtiffSink) -> Result<(), CoordError> {
    let err = |step: String| move |e| CoordError::write_io(path, step, e);
    let mut file = std::fs::File::open(path).map_err(err("reopening the journal".into()))?;
    let mut buf = Vec::new();
    for r in &scan.records {
        Scan::payload(&mut file, r, &mut buf)
            .map_err(err(format!("reading chunk {} from the journal", r.id)))?;
        engine::ChunkSink::write(sink, TaskId(r.id), r.out, Some(&buf))?;
    }
    Ok(())
}

/// What the sink needs to place one chunk: its output window, and its plan chunk id when it
/// is a whole chunk of the plan (the parts of a split chunk are not journaled: a resume
/// computes their chunk again).
pub struct SinkItem {
    pub out: Window,
    pub plan_id: Option<u32>,
}

/// The run's sink: writes each chunk into the output (a whole run) and appends it to the
/// journal.
pub struct JournaledSink {
    /// The run's output (a shard's too, which `merge` writes), for messages.
    pub(super) output: PathBuf,
    pub(super) out: Option<GtiffSink>,
    pub(super) journal: JournalWriter,
    pub(super) stats: Arc<Mutex<JournalStats>>,
}

impl JournaledSink {
    fn journal_error(&self, source: journal::AppendError) -> CoordError {
        CoordError::WriteJournal {
            path: self.output.clone(),
            source,
        }
    }

    fn record(&self) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.appended_chunks = self.journal.appended;
        s.appended_bytes = self.journal.bytes;
        s.append_ms = self.journal.busy.as_secs_f64() * 1000.0;
    }
}

impl engine::ChunkSink for JournaledSink {
    type Item = SinkItem;
    type Close = Vec<(String, String)>;
    type Closed = Vec<Adjusted>;
    type Error = CoordError;

    fn write(
        &mut self,
        task: TaskId,
        item: SinkItem,
        output: Option<&[u8]>,
    ) -> Result<(), CoordError> {
        if let Some(g) = &mut self.out {
            g.write(task, item.out, output)?;
        }
        if let (Some(id), Some(bytes)) = (item.plan_id, output) {
            self.journal
                .append(id, item.out, bytes)
                .map_err(|source| self.journal_error(source))?;
        }
        self.record();
        Ok(())
    }

    fn close(mut self, metadata: Vec<(String, String)>) -> Result<Vec<Adjusted>, CoordError> {
        let t0 = std::time::Instant::now();
        self.journal
            .sync()
            .map_err(|source| self.journal_error(source))?;
        self.journal.busy += t0.elapsed();
        self.record();
        match self.out {
            Some(g) => g.close(metadata),
            None => Ok(Vec::new()),
        }
    }
}

/// Removes the journal once the output it stands for is committed.
pub(super) fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => journal::sync_dir(path),
        Err(e) => tracing::warn!(
            "the output is complete, but removing its journal '{}' failed: {e}",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small GeoTIFF whose metadata holds `items`.
    fn output_with(path: &Path, items: &[(&str, &str)]) {
        let driver = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        let mut ds = driver
            .create_with_band_type::<f64, _>(path, 4, 4, 1)
            .unwrap();
        for (k, v) in items {
            gdal::Metadata::set_metadata_item(&mut ds, k, v, "").unwrap();
        }
    }

    /// `--resume` keeps an output only when its own metadata names this plan and no chunk
    /// was quarantined; keeping it removes a journal left beside it.
    #[test]
    fn an_output_is_kept_only_when_it_names_this_plan_and_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (out, journal) = (dir.path().join("o.tif"), dir.path().join("o.tif.journal"));
        assert!(!committed_by(&out, "abc"), "no file");
        output_with(&out, &[(PLAN_KEY, "abc")]);
        assert!(committed_by(&out, "abc"));
        assert!(!committed_by(&out, "abd"), "another plan");
        // The journal of the run that committed the output goes; another plan's stays.
        let ours = crate::journal::tests::header();
        let digest = plan_digest(&ours.identity);
        output_with(&out, &[(PLAN_KEY, &digest)]);
        let mut theirs = crate::journal::tests::header();
        theirs.identity.options[0].1 = "b.tif".into();
        drop(crate::journal::JournalWriter::create(&journal, &theirs).unwrap());
        assert_eq!(already_committed(&out, &journal, "abd").unwrap(), None);
        assert!(journal.exists(), "another plan's output leaves the journal");
        let kept = already_committed(&out, &journal, &digest).unwrap().unwrap();
        assert!(kept.contains("kept as it is"), "{kept}");
        assert!(
            journal.exists(),
            "another plan's journal is not this run's to remove"
        );
        std::fs::remove_file(&journal).unwrap();
        drop(crate::journal::JournalWriter::create(&journal, &ours).unwrap());
        already_committed(&out, &journal, &digest).unwrap().unwrap();
        assert!(!journal.exists(), "the committed run's journal is removed");

        let holed = dir.path().join("q.tif");
        output_with(
            &holed,
            &[(PLAN_KEY, "abc"), ("BLOCKSUM_QUARANTINED_CHUNKS", "1")],
        );
        assert!(!committed_by(&holed, "abc"), "quarantined chunks");
        let not_a_file = dir.path().join("d.tif");
        std::fs::create_dir(&not_a_file).unwrap();
        assert!(!committed_by(&not_a_file, "abc"));
    }

    #[test]
    fn the_grid_search_reaches_the_floor_of_any_raster() {
        // 3000 x 3000 Float32: not a multiple of 4 MiB, so the floor is reached one count
        // past total / 4 MiB (here 9 running workers).
        for total in [36_000_000u64, 16 << 20, 5 << 20, 1 << 30, 777] {
            let target = |r| super::super::prepare::spread(64 << 20, total, r);
            let counts = distinct_targets(target, total, 1024);
            let last = *counts.last().unwrap();
            assert_eq!(target(last), target(1024), "{total}");
            // Every target any count up to 1024 gives is one of the candidates'.
            let seen: std::collections::HashSet<u64> = counts.iter().map(|&r| target(r)).collect();
            assert!((1..=1024).all(|r| seen.contains(&target(r))), "{total}");
        }
    }
}

//! The batch's one writer: each chunk appended to its output's journal, and a GeoTIFF per
//! input (none for a shard, whose journal is its product), each created when its first chunk
//! arrives (the interrupted run's journaled chunks replayed into it first)
//! and committed (closed, reopened, checked, synced, moved into place without clobbering,
//! its lock released) as soon as its last output pixel is written, while the pool goes on
//! with the next inputs. A write that fails fails that output alone: its temporary file is
//! removed and the other outputs carry on.
//!
//! It does not decide what a batch's exit code is (that is `batch`); it records each
//! output's fate in a table the batch reads, also when the run ends early.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use engine::ChunkSink;
use protocol::TaskId;

use crate::{
    error::CoordError,
    journal::{JournalWriter, Scan},
    output::Staging,
    plan::Chunk,
    run::{durable, job::with_quarantined},
    writer::{self, Adjusted, GtiffSink, OutputSpec},
};

/// A finished chunk: which input, and the chunk under its local id.
pub(in crate::run) struct BatchItem {
    pub(super) input: u32,
    pub(super) chunk: Chunk,
    /// The chunk's id in its input's plan, when it is a whole plan chunk (journaled).
    pub(super) plan_id: Option<u32>,
}

/// What became of one output.
#[derive(Debug)]
pub(super) enum OutputFate {
    /// Not complete (yet): a run that ended early leaves these, and no file.
    Waiting,
    /// In place under its final name.
    Committed {
        adjusted: Vec<Adjusted>,
        /// Chunks (local ids) whose pixels are nodata.
        quarantined: Vec<TaskId>,
        /// Chunks taken from the journal of an interrupted run (`--resume`).
        resumed: usize,
    },
    /// `--resume`: the output was committed by the interrupted batch (it is in place and its
    /// journal is gone) and matches this input's plan: kept as it is, nothing recomputed.
    Kept,
    Failed(CoordError),
}

pub(super) type Fates = Arc<Mutex<Vec<OutputFate>>>;

/// An output's journal: OUTPUT.journal, or OUTPUT.shards/shard-I-of-N.journal for a shard
/// (whose product it is: a shard writes no GeoTIFF).
pub(super) struct Journal {
    pub(super) path: PathBuf,
    pub(super) writer: JournalWriter,
    /// The interrupted run's journal (`--resume`), replayed into the GeoTIFF when it opens.
    pub(super) earlier: Option<Scan>,
    pub(super) shard: bool,
    /// May the commit replace an existing output (`durable::may_replace`).
    pub(super) replace: bool,
}

/// An output still being written.
pub(super) struct Pending {
    pub(super) spec: OutputSpec,
    pub(super) staging: Staging,
    /// Metadata every output of this input gets (aggregation, factor).
    pub(super) metadata: Vec<(String, String)>,
    /// Output pixels this run has still to write: its chunks tile the output (or the
    /// shard's band of it), less what the journal holds, exactly once.
    pub(super) remaining: u64,
    journal: Journal,
    quarantined: Vec<Chunk>,
    open: Option<GtiffSink>,
    /// Start the GeoTIFF's writeback as it is written (`GtiffSink::writeback`): it is the
    /// file committed (not the source of a COG copy).
    pub(super) writeback: bool,
    /// Committed: its journal was removed (or, for a shard, is the product).
    settled: bool,
}

impl Pending {
    pub(super) fn new(
        spec: OutputSpec,
        staging: Staging,
        metadata: Vec<(String, String)>,
        journal: Journal,
        remaining: u64,
    ) -> Pending {
        Pending {
            remaining,
            spec,
            staging,
            metadata,
            journal,
            quarantined: Vec::new(),
            open: None,
            writeback: false,
            settled: false,
        }
    }

    fn resumed(&self) -> usize {
        self.journal.earlier.as_ref().map_or(0, |e| e.records.len())
    }

    /// Creates the GeoTIFF (not for a shard) and writes the journaled chunks into it.
    fn open(&mut self) -> Result<(), CoordError> {
        if self.journal.shard || self.open.is_some() {
            return Ok(());
        }
        let tmp = self.staging.temp().to_path_buf();
        let ds = writer::create(&self.spec, &tmp)?;
        let mut g = GtiffSink::new(ds, self.spec.clone(), tmp).writeback(self.writeback);
        if let Some(scan) = &self.journal.earlier {
            durable::replay(&self.journal.path, scan, &mut g)?;
        }
        self.open = Some(g);
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // A whole output that ends uncommitted with nothing journaled leaves no journal: it
        // would only make the next run ask for --resume (the single run's rule).
        let kept = self.journal.writer.appended as usize + self.resumed();
        if !self.settled && !self.journal.shard && kept == 0 {
            let _ = std::fs::remove_file(&self.journal.path);
        } else if !self.settled && kept > 0 {
            tracing::warn!(
                "the journal '{}' keeps {kept} finished chunk(s): rerun with --resume to compute only the rest",
                self.journal.path.display()
            );
        }
    }
}

pub(in crate::run) struct BatchSink {
    /// Per input in the workers' setup order (a chunk's `input`); `None` once committed or
    /// failed.
    outputs: Vec<Option<Pending>>,
    /// Per setup index: the input's place on the command line (the fates' index).
    order: Vec<usize>,
    fates: Fates,
    overwrite: bool,
}

impl BatchSink {
    pub(super) fn new(
        outputs: Vec<Option<Pending>>,
        order: Vec<usize>,
        fates: Fates,
        overwrite: bool,
    ) -> Self {
        BatchSink {
            outputs,
            order,
            fates,
            overwrite,
        }
    }

    fn settle(&mut self, input: usize, fate: OutputFate) {
        // Dropping the pending output closes its dataset, removes its temporary file if it
        // was not committed, and releases its lock.
        self.outputs[input] = None;
        let mut fates = self.fates.lock().unwrap_or_else(|p| p.into_inner());
        fates[self.order[input]] = fate;
    }

    /// Writes one chunk into output `input`; `Ok(true)` when that was its last pixel.
    fn write_one(
        p: &mut Pending,
        task: TaskId,
        item: &BatchItem,
        output: Option<&[u8]>,
    ) -> Result<bool, CoordError> {
        p.open()?;
        if let Some(sink) = p.open.as_mut() {
            sink.write(task, item.chunk.out, output)?;
        }
        if let (Some(id), Some(bytes)) = (item.plan_id, output) {
            p.journal
                .writer
                .append(id, item.chunk.out, bytes)
                .map_err(|source| CoordError::WriteJournal {
                    path: p.spec.path.clone(),
                    source,
                })?;
        }
        if output.is_none() {
            p.quarantined.push(item.chunk);
        }
        p.remaining = p.remaining.saturating_sub(item.chunk.out.pixels());
        Ok(p.remaining == 0)
    }

    /// Syncs the journal, then (a whole output) closes, checks and commits the GeoTIFF and
    /// removes the journal it took the place of.
    fn finish(mut p: Pending, overwrite: bool) -> OutputFate {
        let md = with_quarantined(std::mem::take(&mut p.metadata), &p.quarantined);
        let resumed = p.resumed();
        let synced = p
            .journal
            .writer
            .sync()
            .map_err(|source| CoordError::WriteJournal {
                path: p.spec.path.clone(),
                source,
            });
        let committed = synced.and_then(|()| {
            if p.journal.shard {
                return Ok(Vec::new());
            }
            p.open()?;
            let Some(sink) = p.open.take() else {
                return Err(CoordError::Internal(format!(
                    "output '{}' completed without a GeoTIFF",
                    p.spec.path.display()
                )));
            };
            let adjusted = sink.close(md)?;
            p.staging.commit(overwrite || p.journal.replace)?;
            durable::remove(&p.journal.path);
            Ok(adjusted)
        });
        match committed {
            Ok(adjusted) => {
                p.settled = true;
                tracing::info!("committed {}", p.spec.path.display());
                OutputFate::Committed {
                    adjusted,
                    quarantined: p.quarantined.iter().map(|c| c.id).collect(),
                    resumed,
                }
            }
            Err(e) => OutputFate::Failed(e),
        }
    }

    /// Commits every output with nothing left to compute (its journal holds all its chunks,
    /// or its shard owns none) before the pool starts.
    pub(super) fn finish_ready(&mut self) {
        for k in 0..self.outputs.len() {
            if self.outputs[k].as_ref().is_some_and(|p| p.remaining == 0) {
                let p = self.outputs[k].take().expect("pending above");
                let fate = Self::finish(p, self.overwrite);
                if let OutputFate::Failed(e) = &fate {
                    tracing::error!("{e}");
                }
                self.settle(k, fate);
            }
        }
    }
}

impl ChunkSink for BatchSink {
    type Item = BatchItem;
    type Close = ();
    type Closed = ();
    type Error = std::convert::Infallible;

    fn write(
        &mut self,
        task: TaskId,
        item: BatchItem,
        output: Option<&[u8]>,
    ) -> Result<(), Self::Error> {
        let k = item.input as usize;
        // An output that already failed takes no more chunks (its file is gone).
        let Some(p) = self.outputs.get_mut(k).and_then(Option::as_mut) else {
            return Ok(());
        };
        match Self::write_one(p, task, &item, output) {
            Ok(false) => {}
            Ok(true) => {
                let p = self.outputs[k].take().expect("pending above");
                let fate = Self::finish(p, self.overwrite);
                if let OutputFate::Failed(e) = &fate {
                    tracing::error!("{e}");
                }
                self.settle(k, fate);
            }
            Err(e) => {
                tracing::error!("{e}; the other inputs go on");
                self.settle(k, OutputFate::Failed(e));
            }
        }
        Ok(())
    }

    fn close(mut self, (): ()) -> Result<(), Self::Error> {
        // Every chunk was written: an output still pending lacks pixels, which the plan's
        // tiling rules out. Say so rather than lose it silently.
        for k in 0..self.outputs.len() {
            if let Some(p) = &self.outputs[k] {
                let e = CoordError::Internal(format!(
                    "output '{}': {} pixel(s) were never written",
                    p.spec.path.display(),
                    p.remaining
                ));
                self.settle(k, OutputFate::Failed(e));
            }
        }
        Ok(())
    }
}

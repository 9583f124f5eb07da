//! The batch's one writer: a GeoTIFF per input, each created when its first chunk arrives
//! and committed (closed, reopened, checked, synced, moved into place without clobbering,
//! its lock released) as soon as its last output pixel is written, while the pool goes on
//! with the next inputs. A write that fails fails that output alone: its temporary file is
//! removed and the other outputs carry on.
//!
//! It does not decide what a batch's exit code is (that is `batch`); it records each
//! output's fate in a table the batch reads, also when the run ends early.

use std::sync::{Arc, Mutex};

use engine::ChunkSink;
use protocol::TaskId;

use crate::{
    error::CoordError,
    output::Staging,
    plan::Chunk,
    run::job::with_quarantined,
    writer::{self, Adjusted, GtiffSink, OutputSpec},
};

/// A finished chunk: which input, and the chunk under its local id.
pub(in crate::run) struct BatchItem {
    pub(super) input: u32,
    pub(super) chunk: Chunk,
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
    },
    Failed(CoordError),
}

pub(super) type Fates = Arc<Mutex<Vec<OutputFate>>>;

/// An output still being written.
pub(super) struct Pending {
    pub(super) spec: OutputSpec,
    pub(super) staging: Staging,
    /// Metadata every output of this input gets (aggregation, factor).
    pub(super) metadata: Vec<(String, String)>,
    /// Output pixels not yet written: the chunks tile the output exactly once.
    pub(super) remaining: u64,
    quarantined: Vec<Chunk>,
    open: Option<GtiffSink>,
}

impl Pending {
    pub(super) fn new(
        spec: OutputSpec,
        staging: Staging,
        metadata: Vec<(String, String)>,
    ) -> Pending {
        Pending {
            remaining: spec.width * spec.height,
            spec,
            staging,
            metadata,
            quarantined: Vec::new(),
            open: None,
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
        chunk: &Chunk,
        output: Option<&[u8]>,
    ) -> Result<bool, CoordError> {
        let err = |reason: String| CoordError::Write {
            path: p.spec.path.clone(),
            reason,
        };
        if p.open.is_none() {
            let tmp = p.staging.temp().to_path_buf();
            let ds = writer::create(&p.spec, &tmp)?;
            p.open = Some(GtiffSink::new(ds, p.spec.clone(), tmp));
        }
        let sink = p.open.as_mut().expect("opened above");
        sink.write(task, chunk.out, output).map_err(err)?;
        if output.is_none() {
            p.quarantined.push(*chunk);
        }
        p.remaining = p.remaining.saturating_sub(chunk.out.pixels());
        Ok(p.remaining == 0)
    }

    /// Closes, checks and commits a complete output.
    fn finish(mut p: Pending, overwrite: bool) -> OutputFate {
        let md = with_quarantined(std::mem::take(&mut p.metadata), &p.quarantined);
        let Some(sink) = p.open.take() else {
            return OutputFate::Failed(CoordError::Internal(format!(
                "output '{}' completed without a chunk",
                p.spec.path.display()
            )));
        };
        let closed = sink.close(md).map_err(|reason| CoordError::Write {
            path: p.spec.path.clone(),
            reason,
        });
        match closed.and_then(|adjusted| p.staging.commit(overwrite).map(|()| adjusted)) {
            Ok(adjusted) => {
                tracing::info!("committed {}", p.spec.path.display());
                OutputFate::Committed {
                    adjusted,
                    quarantined: p.quarantined.iter().map(|c| c.id).collect(),
                }
            }
            Err(e) => OutputFate::Failed(e),
        }
    }
}

impl ChunkSink for BatchSink {
    type Item = BatchItem;
    type Close = ();
    type Closed = ();

    fn write(
        &mut self,
        task: TaskId,
        item: BatchItem,
        output: Option<&[u8]>,
    ) -> Result<(), String> {
        let k = item.input as usize;
        // An output that already failed takes no more chunks (its file is gone).
        let Some(p) = self.outputs.get_mut(k).and_then(Option::as_mut) else {
            return Ok(());
        };
        match Self::write_one(p, task, &item.chunk, output) {
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

    fn close(mut self, (): ()) -> Result<(), String> {
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

//! The job as the engine sees it: each chunk's slot sizes and kernel payload, the split of a
//! failing chunk along the file's block grid, the window each output goes to, and the
//! metadata the sink sets at the end.

use super::*;
use durable::{JournaledSink, SinkItem};

/// What each chunk's payload carries.
enum Payload {
    /// A block aggregation of input `BlockAggJob::input`, onto the plan's blocks or cells.
    BlockAgg {
        agg: worker::Agg,
        sample: SampleType,
    },
    /// A map kernel's window; `bare`: the payload goes bare (a Rust kernel's own binary),
    /// not in `WorkerChunk`.
    Map { bare: bool },
}

/// The block-aggregation job as the engine sees it: the plan's chunks, then the parts of
/// split ones, each with its kernel payload and slot sizes.
pub(super) struct BlockAggJob {
    pub(super) tasks: Vec<Chunk>,
    /// The plan chunk id of each of this run's first tasks (a resumed run or a shard runs a
    /// subset of the plan, renumbered from 0); split parts, after them, have none.
    pub(super) plan_ids: Vec<u32>,
    plan: Plan,
    payload: Payload,
    /// Output planes.
    bands: u64,
    metadata: Vec<(String, String)>,
    /// The input's index in the workers' setup (0 but in a batch).
    pub(super) input: u32,
}

impl BlockAggJob {
    pub(super) fn new(one: OneRun<'_>, prep: &Prepared) -> BlockAggJob {
        let cfg = one.cfg;
        BlockAggJob {
            tasks: prep.plan.chunks.clone(),
            plan_ids: prep.plan.chunks.iter().map(|c| c.id.0).collect(),
            plan: prep.plan.clone(),
            payload: match &cfg.job.kernel {
                Kernel::BlockAgg(agg) => Payload::BlockAgg {
                    agg: *agg,
                    sample: prep.sample,
                },
                Kernel::Map(m) => Payload::Map {
                    bare: m.lib.is_none(),
                },
            },
            bands: prep.plan.bands,
            input: 0,
            metadata: vec![
                match &cfg.job.kernel {
                    Kernel::BlockAgg(agg) => ("BLOCKSUM_AGG".to_string(), agg.name().to_string()),
                    Kernel::Map(m) => ("BLOCKSUM_KERNEL".to_string(), kernel_name(cfg, m)),
                },
                match &prep.plan.mapping {
                    Mapping::Factor { factor } => ("BLOCKSUM_FACTOR".into(), factor.to_string()),
                    Mapping::Cells { .. } => (
                        "BLOCKSUM_GRID".into(),
                        "area-weighted cells of the target grid".into(),
                    ),
                },
                (durable::PLAN_KEY.to_string(), plan_digest(one, prep)),
            ],
        }
    }
}

/// The digest the output records of its plan (`durable::PLAN_KEY`).
pub(super) fn plan_digest(one: OneRun<'_>, prep: &Prepared) -> String {
    durable::identity(one, prep)
        .map(|id| durable::plan_digest(&id))
        .unwrap_or_default()
}

impl Job for BlockAggJob {
    type Sink = JournaledSink;

    fn chunk(&self, task: TaskId) -> ChunkSpec {
        let c = &self.tasks[task.0 as usize];
        let input_len = c.window.pixels() * self.plan.pixel_bytes;
        ChunkSpec {
            input_len,
            output_len: c.out.pixels() * 8 * self.bands,
            weight: input_len,
        }
    }

    fn payload(&self, task: TaskId) -> Vec<u8> {
        let c = &self.tasks[task.0 as usize];
        match self.payload {
            Payload::BlockAgg { agg, sample } => {
                let kernel = KernelSpec {
                    agg,
                    footprint: match &self.plan.mapping {
                        Mapping::Factor { factor } => Footprint::Blocks(*factor as u32),
                        Mapping::Cells { target } => Footprint::Cells {
                            out: c.out,
                            x: target.x,
                            y: target.y,
                        },
                    },
                    sample,
                    // Empty blocks come back as NaN; the writer turns them into the
                    // output's nodata, so that it can tell them from a valid value equal to
                    // nodata.
                    out_nodata: f64::NAN,
                };
                protocol::encode(&WorkerChunk::BlockAgg(BlockAggChunk {
                    input: self.input,
                    window: c.window,
                    kernel,
                }))
            }
            Payload::Map { bare } => {
                let chunk = MapChunk {
                    window: c.window,
                    out_window: c.out,
                };
                // The same rule as the setup's: a payload in the standard worker's enum when
                // the setup is, bare for a Rust kernel's binary.
                match bare {
                    true => protocol::encode(&chunk),
                    false => protocol::encode(&WorkerChunk::Map(chunk)),
                }
            }
        }
    }

    /// Splits chunk `task` in two along the file's block grid.
    fn split(&mut self, task: TaskId) -> u32 {
        let parent = self.tasks[task.0 as usize];
        let first = TaskId(self.tasks.len() as u32);
        let Some(parts) = self.plan.split(&parent, first) else {
            return 0;
        };
        for p in parts {
            tracing::debug!(
                task = task.0,
                part = p.id.0,
                window = ?p.window,
                "part of a split chunk"
            );
            self.tasks.push(p);
        }
        parts.len() as u32
    }

    fn write_item(&self, task: TaskId) -> SinkItem {
        SinkItem {
            out: self.tasks[task.0 as usize].out,
            plan_id: self.plan_ids.get(task.0 as usize).copied(),
        }
    }

    fn close_item(&self, quarantined: &[TaskId]) -> Vec<(String, String)> {
        let chunks: Vec<Chunk> = quarantined
            .iter()
            .map(|t| self.tasks[t.0 as usize])
            .collect();
        with_quarantined(self.metadata.clone(), &chunks)
    }
}

impl BlockAggJob {
    /// The metadata the output gets whatever its chunks' fate (aggregation or kernel,
    /// factor).
    pub(super) fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }
}

/// `md` and, when chunks were quarantined, `BLOCKSUM_QUARANTINED_CHUNKS`:
/// `ID:x,y,w,h:x,y,w,h` (input window, output window) for each.
pub(super) fn with_quarantined(
    mut md: Vec<(String, String)>,
    quarantined: &[Chunk],
) -> Vec<(String, String)> {
    let q: Vec<String> = quarantined
        .iter()
        .map(|c| {
            let (w, o) = (c.window, c.out);
            format!(
                "{}:{},{},{},{}:{},{},{},{}",
                c.id, w.x, w.y, w.w, w.h, o.x, o.y, o.w, o.h
            )
        })
        .collect();
    if !q.is_empty() {
        md.push(("BLOCKSUM_QUARANTINED_CHUNKS".to_string(), q.join(";")));
    }
    md
}

//! The batch as the engine sees it: one job over several inputs. Each input keeps its own
//! block-aggregation job (its plan, kernel and local chunk ids, as a single run of it would
//! have); the engine's task ids number the inputs' plan chunks one input after the other,
//! then the parts of split chunks in the order they were made. Task ids therefore stay
//! deterministic from the inputs and options, whatever the run order.

use engine::{ChunkSpec, Job};
use protocol::TaskId;

use super::sink::{BatchItem, BatchSink};
use crate::{plan::Chunk, run::job::BlockAggJob};

pub(in crate::run) struct BatchJob {
    pub(super) inputs: Vec<BlockAggJob>,
    /// Per engine task: (input, local task id).
    pub(super) owner: Vec<(u32, TaskId)>,
}

impl BatchJob {
    /// `inputs[k]` must say `input = k` (its index in the workers' setup).
    pub(super) fn new(inputs: Vec<BlockAggJob>) -> BatchJob {
        let mut owner = Vec::new();
        for (k, j) in inputs.iter().enumerate() {
            owner.extend(j.tasks.iter().map(|c| (k as u32, c.id)));
        }
        BatchJob { inputs, owner }
    }

    /// Plan chunks of all inputs (the engine's first tasks).
    pub(super) fn plan_len(&self) -> usize {
        self.owner.len()
    }

    /// The chunk behind engine task `task`, with its local id.
    pub(super) fn local(&self, task: TaskId) -> (u32, Chunk) {
        let (k, local) = self.owner[task.0 as usize];
        (k, self.inputs[k as usize].tasks[local.0 as usize])
    }

    /// Engine task ids of input `k`'s chunks (plan chunks and parts), in local id order.
    pub(super) fn tasks_of(&self, k: u32) -> Vec<TaskId> {
        let mut ids: Vec<(TaskId, TaskId)> = self
            .owner
            .iter()
            .enumerate()
            .filter(|(_, (o, _))| *o == k)
            .map(|(t, (_, local))| (*local, TaskId(t as u32)))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, t)| t).collect()
    }

    /// Every chunk under its engine task id (what the run's report reads).
    pub(super) fn all_tasks(&self) -> Vec<Chunk> {
        (0..self.owner.len() as u32)
            .map(|t| {
                let (_, mut c) = self.local(TaskId(t));
                c.id = TaskId(t);
                c
            })
            .collect()
    }
}

impl Job for BatchJob {
    type Sink = BatchSink;

    fn chunk(&self, task: TaskId) -> ChunkSpec {
        let (k, local) = self.owner[task.0 as usize];
        self.inputs[k as usize].chunk(local)
    }

    fn payload(&self, task: TaskId) -> Vec<u8> {
        let (k, local) = self.owner[task.0 as usize];
        self.inputs[k as usize].payload(local)
    }

    fn split(&mut self, task: TaskId) -> u32 {
        let (k, local) = self.owner[task.0 as usize];
        let job = &mut self.inputs[k as usize];
        let first = job.tasks.len() as u32;
        let n = job.split(local);
        self.owner
            .extend((first..first + n).map(|l| (k, TaskId(l))));
        n
    }

    fn write_item(&self, task: TaskId) -> BatchItem {
        let (input, chunk) = self.local(task);
        let plan_id = self.inputs[input as usize]
            .plan_ids
            .get(chunk.id.0 as usize)
            .copied();
        BatchItem {
            input,
            chunk,
            plan_id,
        }
    }

    fn close_item(&self, _quarantined: &[TaskId]) {}
}

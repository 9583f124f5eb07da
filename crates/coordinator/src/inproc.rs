//! The in-process executor: threads of the coordinator that run chunks through the same
//! [`worker::exec::ChunkRunner`] as the worker binary. With `--in-process` they do all the
//! work; with a pool, one lane runs the chunks whose worker timed out.

use std::{
    path::PathBuf,
    sync::{mpsc, Arc},
    thread,
};

use protocol::TaskMsg;
use worker::{exec::ChunkRunner, shm::SharedSegment};

use crate::sched::SchedEvent;

/// Starts `lanes` executor threads; returns one job sender per lane.
pub fn start<E: Send + 'static>(
    lanes: u32,
    input: PathBuf,
    bands: Vec<u32>,
    seg: Arc<SharedSegment>,
    events: mpsc::Sender<E>,
    wrap: fn(SchedEvent) -> E,
) -> Vec<mpsc::Sender<TaskMsg>> {
    (0..lanes)
        .map(|lane| {
            let (tx, rx) = mpsc::channel::<TaskMsg>();
            let (input, bands, seg, events) =
                (input.clone(), bands.clone(), seg.clone(), events.clone());
            thread::Builder::new()
                .name(format!("inproc-{lane}"))
                .spawn(move || {
                    let mut runner: Option<ChunkRunner> = None;
                    for task in rx {
                        let result = run_one(&mut runner, &input, &bands, &seg, &task);
                        let ev = SchedEvent::InProcessDone {
                            lane,
                            task: task.task,
                            attempt: task.attempt,
                            result,
                        };
                        if events.send(wrap(ev)).is_err() {
                            break;
                        }
                    }
                })
                .expect("spawning an in-process executor thread");
            tx
        })
        .collect()
}

fn run_one(
    runner: &mut Option<ChunkRunner>,
    input: &std::path::Path,
    bands: &[u32],
    seg: &SharedSegment,
    task: &TaskMsg,
) -> Result<protocol::TaskStats, String> {
    if runner.is_none() {
        *runner = Some(ChunkRunner::open(input, bands).map_err(|e| e.to_string())?);
    }
    let runner = runner.as_ref().expect("opened above");
    let inr = seg
        .check(task.input, task.kernel.sample.size())
        .map_err(|e| e.to_string())?;
    let outr = seg.check(task.output, 8).map_err(|e| e.to_string())?;
    // SAFETY: the scheduler gave this slot to this lane alone; input and output regions of
    // one slot never overlap (protocol::layout).
    let (i, o) = unsafe { (seg.slice_mut(inr), seg.slice_mut(outr)) };
    runner.run(task, i, o).map_err(|e| e.to_string())
}

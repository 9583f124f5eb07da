//! The in-process lanes: threads of the coordinator that run chunks through the same
//! runtime executor (the same kernel code) as a worker process. With no workers they do all
//! the work; with a pool, one lane runs the chunks whose worker timed out.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{mpsc, Arc},
    thread,
};

use protocol::{Attempt, SlotId, TaskId, TaskStats};
use runtime::{Executor, KernelError};
use shm::SlotRing;

use crate::{event_loop::EventSender, sched::SchedEvent};

/// Opens the job's kernel for one lane (each lane owns one: a GDAL dataset, for one, is not
/// `Sync`).
pub type ExecutorFactory = Arc<dyn Fn() -> Result<Box<dyn Executor>, KernelError> + Send + Sync>;

/// One chunk for a lane.
pub struct LaneTask {
    pub task: TaskId,
    pub attempt: Attempt,
    pub slot: SlotId,
    pub input_len: u64,
    pub output_len: u64,
    pub payload: Vec<u8>,
}

/// Starts `lanes` executor threads; returns one task sender per lane.
pub fn start<E: Send + 'static>(
    lanes: u32,
    factory: ExecutorFactory,
    ring: Arc<SlotRing>,
    events: EventSender<E>,
    wrap: fn(SchedEvent) -> E,
) -> std::io::Result<Vec<mpsc::Sender<LaneTask>>> {
    if lanes > 0 {
        // The ring's guard pages are inaccessible here too (see `shm::SlotRing::create`): a
        // kernel that writes off its slot kills the coordinator, with a line saying so.
        if let Err(e) = runtime::name_guard_faults_in_process(ring.segment().addresses()) {
            tracing::warn!("cannot install the SIGSEGV handler that names guard pages: {e}");
        }
    }
    (0..lanes)
        .map(|lane| {
            let (tx, rx) = mpsc::channel::<LaneTask>();
            let (factory, ring, events) = (factory.clone(), ring.clone(), events.clone());
            thread::Builder::new()
                .name(format!("inproc-{lane}"))
                .spawn(move || {
                    let mut exec: Option<Box<dyn Executor>> = None;
                    for t in rx {
                        // A kernel that panics fails its attempt (and the lane starts afresh);
                        // it must not leave the supervisor waiting for an answer.
                        let result = catch_unwind(AssertUnwindSafe(|| {
                            run_one(&mut exec, &factory, &ring, &t)
                        }))
                        .unwrap_or_else(|p| {
                            exec = None;
                            Err(format!(
                                "the kernel panicked: {}",
                                crate::sink::panic_text(&p)
                            ))
                        });
                        let ev = SchedEvent::InProcessDone {
                            lane,
                            task: t.task,
                            attempt: t.attempt,
                            result,
                        };
                        if events.send(wrap(ev)).is_err() {
                            break;
                        }
                    }
                })?;
            Ok(tx)
        })
        .collect()
}

fn run_one(
    exec: &mut Option<Box<dyn Executor>>,
    factory: &ExecutorFactory,
    ring: &Arc<SlotRing>,
    t: &LaneTask,
) -> Result<TaskStats, String> {
    if exec.is_none() {
        *exec = Some(factory().map_err(|e| e.to_string())?);
    }
    let exec = exec.as_mut().ok_or("no executor")?;
    let mut lease = ring
        .lease(t.slot, t.input_len, t.output_len)
        .map_err(|e| e.to_string())?;
    let (input, output) = lease.parts();
    let result = exec.run(&t.payload, runtime::Slot { input, output });
    // A write past either region's end (into its padding) fails the attempt whatever the
    // kernel answered; one past the padding faults on a guard page (see `shm`).
    lease.check().map_err(|e| e.to_string())?;
    result.map_err(|e| e.to_string())
}

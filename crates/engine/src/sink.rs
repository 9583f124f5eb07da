//! The sink's thread: takes finished slots (as output leases) in the order the scheduler
//! writes them, hands each to the job's [`ChunkSink`], and releases the slot.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{mpsc, Arc},
    thread,
    time::Instant,
};

use protocol::{SlotId, TaskId};
use shm::SlotRing;

use crate::{
    event_loop::EventSender,
    job::{ChunkSink, SinkError},
};

pub enum SinkMsg<S: ChunkSink> {
    Write {
        task: TaskId,
        item: S::Item,
        /// The slot and the length of its output, or `None` for a quarantined chunk.
        slot: Option<(SlotId, u64)>,
    },
    Close(S::Close),
}

pub enum SinkEvent<C> {
    Written { task: TaskId, micros: u64 },
    Closed(C),
    Failed(SinkError),
}

/// Runs `sink` on its own thread. Dropping the sender ends the thread, which drops the sink
/// unclosed; join it before the process exits.
pub fn spawn<S: ChunkSink, E: Send + 'static>(
    mut sink: S,
    ring: Arc<SlotRing>,
    events: EventSender<E>,
    wrap: fn(SinkEvent<S::Closed>) -> E,
) -> std::io::Result<(mpsc::Sender<SinkMsg<S>>, thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel::<SinkMsg<S>>();
    let handle = thread::Builder::new().name("sink".into()).spawn(move || {
        for msg in rx {
            match msg {
                SinkMsg::Write { task, item, slot } => {
                    let t0 = Instant::now();
                    // A panic in the job's sink must end the run with an error, not leave
                    // the supervisor waiting for a write that never comes.
                    let res = catch_unwind(AssertUnwindSafe(|| match slot {
                        Some((slot, len)) => match ring.output_lease(slot, len) {
                            Ok(lease) => sink.write(task, item, Some(lease.bytes())).map_err(boxed),
                            Err(e) => Err(format!("chunk {task}: {e}").into()),
                        },
                        None => sink.write(task, item, None).map_err(boxed),
                    }))
                    .unwrap_or_else(|p| {
                        Err(format!("chunk {task}: the sink panicked: {}", panic_text(&p)).into())
                    });
                    // A written chunk frees its slot: the supervisor may read that at its
                    // next wake-up if it said it can wait. A failure wakes it.
                    let sent = match res {
                        Ok(()) => events.send_lazy(wrap(SinkEvent::Written {
                            task,
                            micros: t0.elapsed().as_micros() as u64,
                        })),
                        Err(e) => events.send(wrap(SinkEvent::Failed(e))),
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                SinkMsg::Close(close) => {
                    let closed =
                        catch_unwind(AssertUnwindSafe(|| sink.close(close).map_err(boxed)))
                            .unwrap_or_else(|p| {
                                Err(format!("closing: the sink panicked: {}", panic_text(&p))
                                    .into())
                            });
                    let ev = match closed {
                        Ok(c) => SinkEvent::Closed(c),
                        Err(e) => SinkEvent::Failed(e),
                    };
                    let _ = events.send(wrap(ev));
                    return;
                }
            }
        }
    })?;
    Ok((tx, handle))
}

/// The job's error as it crosses the engine.
fn boxed<E: std::error::Error + Send + Sync + 'static>(e: E) -> SinkError {
    Box::new(e)
}

/// The text a panic carried, for the run's one-line error.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

//! The scheduler tells its observer each decision as it makes it, in order, stamped with the
//! run's milliseconds: driven by events and a fake clock, no processes.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{key, stats};
use engine::{observe::RunEvent, sched::*};
use protocol::{Attempt, TaskId};

type Seen = Arc<Mutex<Vec<(u64, RunEvent)>>>;

fn observed(cfg: SchedConfig, chunks: usize, t0: Instant) -> (Scheduler, Seen) {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let (s, _) = Scheduler::observed(
        cfg,
        chunks,
        t0,
        Some(Box::new(move |ms, ev| {
            s2.lock().unwrap().push((ms, ev.clone()))
        })),
    );
    (s, seen)
}

fn names(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(_, e)| {
            serde_json::to_value(e).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn a_crash_and_its_retry_are_told_in_order() {
    let t0 = Instant::now();
    let at = |n: u64| t0 + Duration::from_millis(n);
    let (mut s, seen) = observed(SchedConfig::new(1, 0, 2), 1, t0);
    s.handle(
        at(10),
        SchedEvent::WorkerReady {
            key: key(0, 0),
            pid: 7,
        },
    );
    s.handle(
        at(30),
        SchedEvent::WorkerExited {
            key: key(0, 0),
            exit: ExitInfo {
                signal: Some(11),
                ..ExitInfo::default()
            },
        },
    );
    s.handle(
        at(40),
        SchedEvent::WorkerReady {
            key: key(0, 1),
            pid: 8,
        },
    );
    s.handle(
        at(55),
        SchedEvent::TaskDone {
            key: key(0, 1),
            task: TaskId(0),
            attempt: Attempt(2),
            stats: stats(),
        },
    );
    s.handle(at(60), SchedEvent::Written { task: TaskId(0) });
    assert_eq!(
        names(&seen),
        [
            "worker_spawned",
            "worker_ready",
            "chunk_dispatched",
            "chunk_failed",
            "chunk_retried",
            "worker_exited",
            "worker_restart",
            "worker_spawned",
            "worker_ready",
            "chunk_dispatched",
            "chunk_done",
            "chunk_written",
        ]
    );
    let seen = seen.lock().unwrap();
    let times: Vec<u64> = seen.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(times, [0, 10, 10, 30, 30, 30, 30, 30, 40, 40, 55, 60]);
    assert!(matches!(
        &seen[3].1,
        RunEvent::ChunkFailed {
            task: 0,
            attempt: 1,
            started_ms: 10,
            ended_ms: 30,
            cause: FailureCause::Signal { signal: 11, .. },
            ..
        }
    ));
    assert!(matches!(
        &seen[5].1,
        RunEvent::WorkerExited {
            worker: 0,
            gen: 0,
            pid: Some(7),
            deliberate: false,
            cause: Some(FailureCause::Signal { .. }),
            ..
        }
    ));
    assert!(matches!(
        &seen[6].1,
        RunEvent::WorkerRestart {
            worker: 0,
            gen: 1,
            delay_ms: 0,
            deliberate: false
        }
    ));
    assert!(matches!(
        &seen[10].1,
        RunEvent::ChunkDone {
            task: 0,
            attempt: 2,
            started_ms: 40,
            ended_ms: 55,
            ..
        }
    ));
}

#[test]
fn a_timeout_and_a_quarantine_are_told() {
    let t0 = Instant::now();
    let at = |n: u64| t0 + Duration::from_millis(n);
    let mut cfg = SchedConfig::new(1, 0, 2);
    cfg.timeout = Some(TimeoutSpec::Fixed(Duration::from_millis(100)));
    cfg.max_attempts = 1;
    let (mut s, seen) = observed(cfg, 2, t0);
    s.handle(
        at(1),
        SchedEvent::WorkerReady {
            key: key(0, 0),
            pid: 7,
        },
    );
    s.handle(at(150), SchedEvent::Tick);
    let seen = seen.lock().unwrap();
    let timed_out = seen
        .iter()
        .position(|(_, e)| {
            matches!(
                e,
                RunEvent::ChunkTimedOut {
                    task: 0,
                    attempt: 1,
                    worker: 0,
                    gen: 0,
                    after_ms: 149
                }
            )
        })
        .expect("a chunk_timed_out");
    // With no in-process lane and one attempt allowed, the chunk is quarantined at once.
    let quarantined = seen
        .iter()
        .position(|(_, e)| {
            matches!(
                e,
                RunEvent::ChunkQuarantined {
                    task: 0,
                    cause: Some(FailureCause::Timeout { after_ms: 149 })
                }
            )
        })
        .expect("a chunk_quarantined");
    assert!(timed_out < quarantined);
}

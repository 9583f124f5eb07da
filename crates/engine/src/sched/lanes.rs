//! The lane tables: one record per worker lane (its process's lifecycle, a pending recycle,
//! its restart backoff, the chunk it finished last) and one per in-process lane (the attempt
//! it runs).
//!
//! A busy lane holds the attempt in flight (task, attempt number, slot, start): this is the
//! one record of it. Owns nothing of the chunks (the chunk table) nor of the report
//! (`history`); decides nothing: the facade moves lanes from state to state.

use std::time::{Duration, Instant};

use protocol::{Attempt, SlotId, TaskId};

use super::{policy::backoff::BackoffIter, FailureCause, WorkerId, WorkerKey};

#[derive(Debug, Clone, PartialEq)]
pub enum WorkerState {
    /// Spawn asked for; waiting for hello.
    Starting {
        gen: u32,
        since: Instant,
    },
    Idle {
        gen: u32,
        pid: u32,
    },
    Busy {
        gen: u32,
        pid: u32,
        task: TaskId,
        attempt: Attempt,
        slot: SlotId,
        since: Instant,
    },
    /// Told to stop (or killed); its slot, if any, is held until it has exited.
    Stopping {
        gen: u32,
        /// `None`: it was stopped before it said hello.
        pid: Option<u32>,
        cause: FailureCause,
        kill_at: Option<Instant>,
        slot: Option<SlotId>,
        /// An attempt whose failure is decided when the exit status is known (a closed
        /// channel is usually a crash whose signal arrives a moment later).
        deferred: Option<(TaskId, Attempt, Instant)>,
    },
    /// Waiting out a restart backoff.
    Backoff {
        gen: u32,
        until: Instant,
    },
    /// Not coming back (end of run).
    Retired,
}

impl WorkerState {
    /// The incarnation this state belongs to.
    pub fn gen(&self) -> Option<u32> {
        match self {
            WorkerState::Starting { gen, .. }
            | WorkerState::Idle { gen, .. }
            | WorkerState::Busy { gen, .. }
            | WorkerState::Stopping { gen, .. }
            | WorkerState::Backoff { gen, .. } => Some(*gen),
            WorkerState::Retired => None,
        }
    }

    /// Holds an attempt in flight: busy, or stopping with the attempt's fate deferred.
    pub fn has_attempt(&self) -> bool {
        matches!(
            self,
            WorkerState::Busy { .. }
                | WorkerState::Stopping {
                    deferred: Some(_),
                    ..
                }
        )
    }
}

/// One worker lane: the n-th process of the pool, restarted in place.
#[derive(Debug)]
pub struct Lane {
    pub state: WorkerState,
    /// Recycle the current incarnation after its current chunk.
    pub recycle: bool,
    /// Restart delays; counts deaths since the lane last finished a chunk.
    pub backoff: BackoffIter,
    /// The chunk the current incarnation finished last.
    pub last_task: Option<TaskId>,
}

#[derive(Debug)]
pub struct LaneTable {
    lanes: Vec<Lane>,
}

impl LaneTable {
    /// `n` lanes, none started yet.
    pub fn new(n: u32, backoff_base: Duration, backoff_max: Duration) -> LaneTable {
        LaneTable {
            lanes: (0..n)
                .map(|_| Lane {
                    state: WorkerState::Retired,
                    recycle: false,
                    backoff: BackoffIter::new(backoff_base, backoff_max),
                    last_task: None,
                })
                .collect(),
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = WorkerId> {
        (0..self.lanes.len() as u32).map(WorkerId)
    }

    pub fn get(&self, id: WorkerId) -> &Lane {
        &self.lanes[id.0 as usize]
    }

    pub fn get_mut(&mut self, id: WorkerId) -> &mut Lane {
        &mut self.lanes[id.0 as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lane> {
        self.lanes.iter()
    }

    /// The lane's state if `key` is its current incarnation (a lane in backoff or retired
    /// has none).
    pub fn current(&self, key: WorkerKey) -> Option<&WorkerState> {
        let st = &self.lanes.get(key.id.0 as usize)?.state;
        match st {
            WorkerState::Backoff { .. } | WorkerState::Retired => None,
            _ if st.gen() == Some(key.gen) => Some(st),
            _ => None,
        }
    }

    /// Lanes holding an attempt in flight.
    pub fn with_attempt(&self) -> usize {
        self.lanes.iter().filter(|l| l.state.has_attempt()).count()
    }

    /// A new incarnation is starting: what was asked of the last one no longer holds.
    pub fn starting(&mut self, key: WorkerKey, now: Instant) {
        let lane = self.get_mut(key.id);
        lane.state = WorkerState::Starting {
            gen: key.gen,
            since: now,
        };
        // A recycle request belongs to the incarnation it was made for.
        lane.recycle = false;
        lane.last_task = None;
    }
}

/// An attempt running on an in-process lane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InProcessAttempt {
    pub task: TaskId,
    pub attempt: Attempt,
    pub slot: SlotId,
    pub since: Instant,
}

/// The in-process lanes (threads of the coordinator), each free or running one attempt.
#[derive(Debug)]
pub struct InProcessLanes {
    busy: Vec<Option<InProcessAttempt>>,
}

impl InProcessLanes {
    pub fn new(n: u32) -> InProcessLanes {
        InProcessLanes {
            busy: vec![None; n as usize],
        }
    }

    pub fn len(&self) -> usize {
        self.busy.len()
    }

    pub fn is_free(&self, lane: u32) -> bool {
        self.busy[lane as usize].is_none()
    }

    pub fn start(&mut self, lane: u32, run: InProcessAttempt) {
        self.busy[lane as usize] = Some(run);
    }

    /// Ends the lane's attempt if it is exactly `task`'s `attempt`; `None` for a stray or
    /// late answer.
    pub fn finish(
        &mut self,
        lane: u32,
        task: TaskId,
        attempt: Attempt,
    ) -> Option<InProcessAttempt> {
        let slot = self.busy.get_mut(lane as usize)?;
        match *slot {
            Some(r) if r.task == task && r.attempt == attempt => slot.take(),
            _ => None,
        }
    }

    pub fn running(&self) -> impl Iterator<Item = &InProcessAttempt> {
        self.busy.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32, gen: u32) -> WorkerKey {
        WorkerKey {
            id: WorkerId(id),
            gen,
        }
    }

    #[test]
    fn only_the_current_incarnation_is_current() {
        let t0 = Instant::now();
        let mut l = LaneTable::new(2, Duration::ZERO, Duration::ZERO);
        assert_eq!(l.current(key(0, 0)), None, "retired");
        l.starting(key(0, 3), t0);
        assert!(l.current(key(0, 3)).is_some());
        assert_eq!(l.current(key(0, 2)), None, "stale");
        assert_eq!(l.current(key(5, 0)), None, "no such lane");
        l.get_mut(WorkerId(0)).state = WorkerState::Backoff { gen: 3, until: t0 };
        assert_eq!(l.current(key(0, 3)), None, "backoff");
    }

    #[test]
    fn a_new_incarnation_drops_the_old_ones_requests() {
        let t0 = Instant::now();
        let mut l = LaneTable::new(1, Duration::ZERO, Duration::ZERO);
        l.get_mut(WorkerId(0)).recycle = true;
        l.get_mut(WorkerId(0)).last_task = Some(TaskId(4));
        l.starting(key(0, 1), t0);
        let lane = l.get(WorkerId(0));
        assert!(!lane.recycle && lane.last_task.is_none());
    }

    #[test]
    fn a_deferred_attempt_counts_as_in_flight() {
        let t0 = Instant::now();
        let mut l = LaneTable::new(3, Duration::ZERO, Duration::ZERO);
        l.get_mut(WorkerId(0)).state = WorkerState::Busy {
            gen: 0,
            pid: 1,
            task: TaskId(0),
            attempt: Attempt(1),
            slot: SlotId(0),
            since: t0,
        };
        l.get_mut(WorkerId(1)).state = WorkerState::Stopping {
            gen: 0,
            pid: Some(2),
            cause: FailureCause::Disconnected,
            kill_at: None,
            slot: Some(SlotId(1)),
            deferred: Some((TaskId(1), Attempt(1), t0)),
        };
        l.get_mut(WorkerId(2)).state = WorkerState::Stopping {
            gen: 0,
            pid: Some(3),
            cause: FailureCause::Recycled,
            kill_at: None,
            slot: None,
            deferred: None,
        };
        assert_eq!(l.with_attempt(), 2);
    }

    #[test]
    fn an_in_process_lane_ends_only_its_own_attempt() {
        let t0 = Instant::now();
        let mut l = InProcessLanes::new(2);
        let run = InProcessAttempt {
            task: TaskId(3),
            attempt: Attempt(2),
            slot: SlotId(1),
            since: t0,
        };
        l.start(1, run);
        assert!(l.is_free(0) && !l.is_free(1));
        assert_eq!(l.finish(1, TaskId(3), Attempt(1)), None);
        assert_eq!(l.finish(0, TaskId(3), Attempt(2)), None);
        assert_eq!(l.finish(9, TaskId(3), Attempt(2)), None);
        assert_eq!(l.running().count(), 1);
        assert_eq!(l.finish(1, TaskId(3), Attempt(2)), Some(run));
        assert!(l.is_free(1));
    }
}

//! Speculative backup attempts (MapReduce's backup tasks): how long a running attempt may
//! run before a second attempt of its chunk is started on an idle worker, the first of the
//! two to finish kept.
//!
//! Decides one question: how long an attempt runs before a backup of it is due, from the
//! configured factor and floor, the median duration of the attempts that finished, and the
//! time limit. Owns no durations (the timeouts policy keeps the median) and does not
//! pick the chunk, the worker or the slot (the facade's `speculate` does), nor stop the
//! attempt that loses (`speculate` too).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default multiple of the median finished attempt after which a backup starts
/// (`--speculation`). Measured here (docs/supervision.md, a load average of 7-8 on 2 CPUs):
/// the slowest healthy chunk of a clean run took 1.3-2.4x the median in most runs, 5.6x in
/// the worst; below a median of 250 ms the floor decides anyway, and 4x still starts a
/// backup long before the default task timeout (10x).
pub const DEFAULT_SPECULATION_FACTOR: f64 = 4.0;
/// The default least time an attempt runs before a backup of it starts
/// (`--speculation-floor`): healthy chunks of the default size took at most 163-756 ms here
/// (none was backed up in 7 clean runs), and a hung last chunk ends ~1.1 s after the others
/// instead of the task timeout's 10 s.
pub const DEFAULT_SPECULATION_FLOOR: Duration = Duration::from_secs(1);

/// When a backup attempt starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum SpeculationSpec {
    /// Never: a slow attempt waits for its end or its time limit.
    Off,
    /// Once an attempt has run `factor` x the median finished attempt, and at least `floor`
    /// (the floor alone before any attempt has finished).
    After { factor: f64, floor: Duration },
}

impl SpeculationSpec {
    /// The defaults the coordinator uses.
    pub fn default_on() -> SpeculationSpec {
        SpeculationSpec::After {
            factor: DEFAULT_SPECULATION_FACTOR,
            floor: DEFAULT_SPECULATION_FLOOR,
        }
    }
}

/// The rule, from the spec.
#[derive(Debug, Clone, Copy)]
pub struct Speculation {
    spec: SpeculationSpec,
}

impl Speculation {
    pub fn new(spec: SpeculationSpec) -> Speculation {
        Speculation { spec }
    }

    /// How long an attempt runs before a backup of it is due, given the median of the
    /// finished attempts; `None` when off, or when the time limit `limit` comes first (the
    /// timeout then decides, as without speculation).
    pub fn threshold(&self, median: Option<Duration>, limit: Option<Duration>) -> Option<Duration> {
        let SpeculationSpec::After { factor, floor } = self.spec else {
            return None;
        };
        // No median yet (no attempt finished: the slow chunk may be one of few): the floor
        // alone, so that a hang among few chunks does not wait for a median that never comes.
        let t = median.map_or(floor, |m| m.mul_f64(factor).max(floor));
        limit.is_none_or(|l| t < l).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn after(factor: f64, floor: u64) -> Speculation {
        Speculation::new(SpeculationSpec::After {
            factor,
            floor: ms(floor),
        })
    }

    #[test]
    fn off_never_speculates() {
        let s = Speculation::new(SpeculationSpec::Off);
        assert_eq!(s.threshold(Some(ms(10)), None), None);
        assert_eq!(s.threshold(None, None), None);
    }

    #[test]
    fn a_multiple_of_the_median_held_up_by_the_floor() {
        let s = after(4.0, 1_000);
        assert_eq!(s.threshold(Some(ms(100)), None), Some(ms(1_000)));
        assert_eq!(s.threshold(Some(ms(500)), None), Some(ms(2_000)));
    }

    #[test]
    fn with_no_median_the_floor_alone() {
        assert_eq!(after(4.0, 1_000).threshold(None, None), Some(ms(1_000)));
        assert_eq!(after(4.0, 0).threshold(None, None), Some(ms(0)));
    }

    #[test]
    fn no_backup_when_the_time_limit_comes_first() {
        let s = after(4.0, 1_000);
        assert_eq!(s.threshold(Some(ms(100)), Some(ms(1_000))), None);
        assert_eq!(s.threshold(Some(ms(100)), Some(ms(300))), None);
        assert_eq!(
            s.threshold(Some(ms(100)), Some(ms(10_000))),
            Some(ms(1_000))
        );
    }
}

//! The engine's one integration test binary: the scheduler driven by events and a fake
//! clock, no processes (`sched`), and what it tells its observer (`observe`).

mod observe;
mod sched;

use engine::sched::{WorkerId, WorkerKey};
use protocol::TaskStats;

/// Worker `id`, incarnation `gen`.
pub fn key(id: u32, gen: u32) -> WorkerKey {
    WorkerKey {
        id: WorkerId(id),
        gen,
    }
}

/// A finished attempt's statistics (what they hold does not matter to the scheduler).
pub fn stats() -> TaskStats {
    TaskStats {
        read_us: 1_000,
        compute_us: 2_000,
        valid_pixels: 42,
        native_read: false,
        fallback_read: false,
        opened_inputs: 0,
    }
}

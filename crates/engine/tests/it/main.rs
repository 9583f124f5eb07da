//! The engine's one integration test binary: the scheduler driven by events and a fake
//! clock, no processes (`sched`), and what it tells its observer (`observe`).

mod observe;
mod sched;

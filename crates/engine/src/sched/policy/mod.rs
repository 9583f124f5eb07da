//! The scheduler's small rules, each a type with its own state and tests: restart backoff,
//! the breaker, attempt time limits, speculative backups, admission. A policy decides one question and knows
//! nothing of chunks, lanes or slots; the facade asks and acts on the answer.

pub mod admission;
pub mod backoff;
pub mod breaker;
pub mod speculation;
pub mod timeouts;

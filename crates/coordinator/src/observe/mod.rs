//! What a run tells: the JSON report ([`report`]), the same as a page ([`html`]) and the event
//! stream ([`events`], `--events`).

pub mod events;
pub mod html;
pub mod report;

//! The contract between the coordinator and its workers, whatever the job: the message
//! envelope, id newtypes, the protocol version, the bootstrap channel type, the layout of the
//! shared-memory slot ring, fault-injection kinds and the documented exit codes.
//!
//! This crate holds data and pure functions only: no processes, no mmap, no GDAL, no `unsafe`,
//! no scheduling policy. Messages carry *descriptors* of shared memory ([`Region`]), never the
//! pixels themselves. Everything that goes on the wire is encoded by [`codec`] alone.
//!
//! Modules: [`messages`] (the envelope, the worker's and the fork server's command lines and
//! the fork server's messages), [`codec`] (bincode,
//! behind one module: RUSTSEC-2025-0141 marks bincode unmaintained, so the format can change
//! here alone), [`types`] (ids), [`layout`] (the slot ring's checked offsets), [`fault`]
//! (fault-injection kinds), [`exit`] (exit codes).

#![forbid(unsafe_code)]

pub mod codec;
pub mod exit;
pub mod fault;
pub mod layout;
pub mod messages;
pub mod types;

pub use codec::{decode, encode, CodecError};
pub use fault::{FaultKind, FaultSpec};
pub use layout::{LayoutError, Region, SlotLayout, PAGE};
pub use messages::{
    ForkRequest, ForkServerArgs, FromForkServer, FromWorker, TaskMsg, TaskStats, ToWorker,
    WorkerArgs, WorkerCommand,
};
pub use types::{Attempt, SlotId, TaskId};

/// Bumped whenever a message changes shape. Checked at the handshake.
pub const PROTOCOL_VERSION: u32 = 7;

/// What a worker sends the coordinator's one-shot server: the channel the coordinator sends
/// on, and the one it receives from (raw bytes: the codec encodes every message).
pub type Bootstrap = (
    ipc_channel::ipc::IpcBytesSender,
    ipc_channel::ipc::IpcBytesReceiver,
);

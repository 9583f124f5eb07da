//! The one place that knows the wire format: bincode 2 (serde mode, standard config) with a
//! size limit, so that a hostile or corrupt length prefix cannot make the reader allocate
//! gigabytes. RUSTSEC-2025-0141 marks bincode unmaintained; swapping the format means editing
//! this module only.

use serde::{de::DeserializeOwned, Serialize};

/// Largest control message accepted. Control messages are tiny; pixels never travel here.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("message has {0} trailing bytes")]
    Trailing(usize),
    #[error("message too large: {0} bytes")]
    TooLarge(usize),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Encodes a message. Encoding our own message types cannot fail (no maps with non-string
/// keys, no unsized sequences), so a failure here is a programming error reported as such.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(msg, config()).expect("protocol messages always encode")
}

/// Decodes one whole message; trailing bytes are an error, and no input makes this panic.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(CodecError::TooLarge(bytes.len()));
    }
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(msg)
}

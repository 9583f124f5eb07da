//! A worker's replies as raw bytes through a typed ipc-channel receiver, so that the
//! receiver can join an `IpcReceiverSet` (the supervisor's one event loop).
//!
//! Workers send with an `IpcBytesSender`: each message is the codec's bytes, nothing more.
//! The coordinator's end must be an `IpcReceiver<T>` to be added to a set, and ipc-channel
//! 0.23 hands a set's messages out only through `IpcMessage::to`, which decodes postcard.
//! [`WireBytes`] is the type whose postcard form is exactly its bytes: a tuple of `u8`
//! (postcard writes a tuple without a length, and a `u8` as one byte), read to the end of
//! the message. Both channel ends travel as the same OS handle, so the worker keeps its
//! `protocol::Bootstrap` and the coordinator accepts it as [`Bootstrap`].
//!
//! Does not decode a message (the protocol's codec does) nor wait on a channel.

use std::fmt;

use ipc_channel::ipc::{IpcBytesSender, IpcReceiver};
use serde::{
    de::{SeqAccess, Visitor},
    ser::SerializeTuple,
    Deserialize, Deserializer, Serialize, Serializer,
};

/// The coordinator's view of `protocol::Bootstrap`: the same two handles, the receiving one
/// typed so that it can join a receiver set.
pub type Bootstrap = (IpcBytesSender, IpcReceiver<WireBytes>);

/// One message's bytes, as the sender wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireBytes(pub Vec<u8>);

impl Serialize for WireBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(self.0.len())?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for WireBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ToTheEnd;
        impl<'de> Visitor<'de> for ToTheEnd {
            type Value = WireBytes;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the bytes of one message")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<WireBytes, A::Error> {
                let mut out = Vec::with_capacity(64);
                // The message has no length of its own: the end of the input ends it, and
                // that end is the only error reading one byte can meet.
                while let Ok(Some(b)) = seq.next_element::<u8>() {
                    out.push(b);
                }
                Ok(WireBytes(out))
            }
        }
        d.deserialize_tuple(usize::MAX, ToTheEnd)
    }
}

#[cfg(test)]
mod tests {
    use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiverSet, IpcSelectionResult, IpcSender};

    use super::*;

    fn samples() -> Vec<Vec<u8>> {
        vec![
            vec![],
            vec![0],
            vec![0xff; 3],
            (0..=255).collect(),
            b"\xde\xad\xbe\xef not a message".to_vec(),
            (0..100_000u32).map(|i| (i * 7) as u8).collect(),
        ]
    }

    #[test]
    fn bytes_sent_raw_arrive_whole_through_a_receiver_set() {
        let (server, name) = IpcOneShotServer::<Bootstrap>::new().unwrap();
        // As a worker does: its own protocol type, raw bytes.
        let boot: IpcSender<protocol::Bootstrap> = IpcSender::connect(name).unwrap();
        let (to_tx, _to_rx) = ipc::bytes_channel().unwrap();
        let (from_tx, from_rx) = ipc::bytes_channel().unwrap();
        boot.send((to_tx, from_rx)).unwrap();
        let (_, (_sender, receiver)) = server.accept().unwrap();

        // The handshake reads the typed receiver directly...
        from_tx.send(b"hello").unwrap();
        assert_eq!(receiver.recv().unwrap(), WireBytes(b"hello".to_vec()));

        // ...then the set takes it over.
        let mut set = IpcReceiverSet::new().unwrap();
        let id = set.add(receiver).unwrap();
        let sent = samples();
        for s in &sent {
            from_tx.send(s).unwrap();
        }
        drop(from_tx);
        let mut got = Vec::new();
        let mut closed = false;
        while !closed {
            for r in set.select().unwrap() {
                match r {
                    IpcSelectionResult::MessageReceived(i, m) => {
                        assert_eq!(i, id);
                        got.push(m.to::<WireBytes>().unwrap().0);
                    }
                    IpcSelectionResult::ChannelClosed(i) => {
                        assert_eq!(i, id);
                        closed = true;
                    }
                }
            }
        }
        assert_eq!(got, sent);
    }

    #[test]
    fn a_typed_round_trip_keeps_the_bytes() {
        let (tx, rx) = ipc::channel::<WireBytes>().unwrap();
        for s in samples() {
            tx.send(WireBytes(s.clone())).unwrap();
            assert_eq!(rx.recv().unwrap().0, s);
        }
    }
}

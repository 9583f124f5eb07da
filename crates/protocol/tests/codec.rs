//! Property tests of the wire codec: every message round-trips, and no byte string makes
//! decoding panic.

use proptest::prelude::*;
use protocol::*;

fn to_worker() -> impl Strategy<Value = ToWorker> {
    let task = (
        any::<u32>(),
        any::<u32>(),
        any::<[u64; 4]>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::option::of(proptest::sample::select(FaultKind::ALL.to_vec())),
    )
        .prop_map(|(t, a, r, payload, fault)| {
            ToWorker::Task(TaskMsg {
                task: TaskId(t),
                attempt: Attempt(a),
                input: Region {
                    offset: r[0],
                    len: r[1],
                },
                output: Region {
                    offset: r[2],
                    len: r[3],
                },
                payload,
                fault,
            })
        });
    let setup = proptest::collection::vec(any::<u8>(), 0..256).prop_map(ToWorker::Setup);
    prop_oneof![task, setup, Just(ToWorker::Shutdown)]
}

fn from_worker() -> impl Strategy<Value = FromWorker> {
    prop_oneof![
        (any::<u32>(), any::<u32>()).prop_map(|(version, pid)| FromWorker::Hello { version, pid }),
        Just(FromWorker::Ready),
        ".{0,200}".prop_map(|error| FromWorker::SetupFailed { error }),
        (
            any::<u32>(),
            any::<u32>(),
            any::<[u64; 3]>(),
            any::<[bool; 2]>(),
            any::<u32>()
        )
            .prop_map(|(t, a, s, [native_read, fallback_read], opened_inputs)| {
                FromWorker::Done {
                    task: TaskId(t),
                    attempt: Attempt(a),
                    stats: TaskStats {
                        read_us: s[0],
                        compute_us: s[1],
                        valid_pixels: s[2],
                        native_read,
                        fallback_read,
                        opened_inputs,
                    },
                }
            }),
        (any::<u32>(), any::<u32>(), ".{0,200}").prop_map(|(t, a, error)| FromWorker::Failed {
            task: TaskId(t),
            attempt: Attempt(a),
            error,
        }),
    ]
}

fn same_bits(a: &ToWorker, b: &ToWorker) -> bool {
    a == b
}

proptest! {
    #[test]
    fn to_worker_round_trips(msg in to_worker()) {
        let bytes = encode(&msg);
        let back: ToWorker = decode(&bytes).unwrap();
        prop_assert!(same_bits(&msg, &back));
    }

    #[test]
    fn from_worker_round_trips(msg in from_worker()) {
        let bytes = encode(&msg);
        prop_assert_eq!(decode::<FromWorker>(&bytes).unwrap(), msg);
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<FromWorker>(&bytes);
        let _ = decode::<ToWorker>(&bytes);
    }

    #[test]
    fn truncated_or_padded_messages_are_errors(msg in from_worker(), extra in 1usize..8) {
        let bytes = encode(&msg);
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(decode::<FromWorker>(&longer).is_err());
        if bytes.len() > 1 {
            prop_assert!(decode::<FromWorker>(&bytes[..bytes.len() - 1]).is_err());
        }
    }
}

#[test]
fn oversized_input_is_rejected_without_reading_it() {
    let big = vec![0u8; protocol::codec::MAX_MESSAGE_BYTES + 1];
    assert!(matches!(
        decode::<FromWorker>(&big),
        Err(CodecError::TooLarge(_))
    ));
}

//! Fuzzing of the migration stream's frame decoder
//! (`validator/src/migrate/wire.rs`) with property tests: arbitrary bytes,
//! valid frame streams, and valid streams with bytes flipped, cut, inserted
//! or removed. The decoder must never panic, must stop with a typed error,
//! and whatever it accepts before its first error must be exactly the frames
//! that were sent, in order. A few seconds in the test suite; set
//! `PROPTEST_CASES` for a longer run.

use memfabric_validator::migrate::wire::{Frame, FrameError, FrameReader, FrameWriter, Kind, FLAG_GUEST_PAUSED, MAX_PAYLOAD_BYTES};
use proptest::prelude::*;

const KINDS: [Kind; 8] =
    [Kind::Hello, Kind::HelloAck, Kind::Pages, Kind::RoundEnd, Kind::Switchover, Kind::VcpuState, Kind::Resumed, Kind::Abort];

/// Frames as (kind index, paused flag, payload).
fn frames() -> impl Strategy<Value = Vec<(usize, bool, Vec<u8>)>> {
    prop::collection::vec((0..KINDS.len(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..600)), 0..8)
}

fn encode(frames: &[(usize, bool, Vec<u8>)]) -> (Vec<u8>, Vec<Frame>) {
    let mut w = FrameWriter::new(Vec::new());
    let mut sent = Vec::new();
    for (k, paused, payload) in frames {
        let flags = if *paused { FLAG_GUEST_PAUSED } else { 0 };
        w.set_flags(flags);
        w.send(KINDS[*k], payload).unwrap();
        sent.push(Frame { kind: KINDS[*k], flags, payload: payload.clone() });
    }
    (w.into_inner(), sent)
}

/// Decodes until the first error; returns the frames and the error.
fn decode(bytes: &[u8]) -> (Vec<Frame>, FrameError) {
    let mut r = FrameReader::new(bytes);
    let mut got = Vec::new();
    loop {
        match r.recv() {
            Ok(f) => {
                assert!(f.payload.len() <= MAX_PAYLOAD_BYTES);
                got.push(f);
                // Every frame consumes at least a header and a trailer, so
                // this ends.
                assert!(got.len() <= bytes.len() / 24);
            }
            Err(e) => {
                let _ = e.to_string(); // its message does not panic either
                return (got, e);
            }
        }
    }
}

/// A change to a valid stream.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1..40usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn apply(stream: &mut Vec<u8>, m: &Mutation) {
    let n = stream.len().max(1);
    match m {
        Mutation::Flip { at, mask } => {
            if !stream.is_empty() {
                stream[at % n] ^= mask;
            }
        }
        Mutation::Truncate { at } => stream.truncate(at % n),
        Mutation::Insert { at, bytes } => {
            let at = at % (stream.len() + 1);
            stream.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove { at, len } => {
            let at = at % n;
            let end = (at + len).min(stream.len());
            stream.drain(at.min(end)..end);
        }
    }
}

proptest! {
    #![proptest_config(memfabric_testkit::fuzz::config(512))]

    #[test]
    fn arbitrary_bytes_give_typed_errors(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let (frames, _) = decode(&bytes);
        // Random bytes practically never carry a valid checksum.
        prop_assert!(frames.is_empty());
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_give_typed_errors(
        len in any::<u32>(), kind in any::<u8>(), flags in any::<u16>(), rest in prop::collection::vec(any::<u8>(), 0..2000),
    ) {
        // A well-formed start with arbitrary fields: lengths up to 4 GiB are
        // refused before anything is allocated.
        let mut bytes = b"MFMS\x01".to_vec();
        bytes.push(kind);
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&rest);
        let (frames, _) = decode(&bytes);
        prop_assert!(frames.is_empty());
    }

    #[test]
    fn valid_streams_round_trip(frames in frames()) {
        let (bytes, sent) = encode(&frames);
        let (got, err) = decode(&bytes);
        prop_assert_eq!(got, sent);
        prop_assert!(matches!(err, FrameError::Io(_)), "the end of the stream: {}", err);
    }

    #[test]
    fn mutated_streams_never_deliver_what_was_not_sent(frames in frames(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let (mut bytes, sent) = encode(&frames);
        let original = bytes.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let (got, _) = decode(&bytes);
        // What is accepted is a prefix of what was sent: a changed byte is
        // caught by the checksum, a lost or repeated frame by the sequence.
        prop_assert!(got.len() <= sent.len());
        prop_assert_eq!(&got[..], &sent[..got.len()]);
        if bytes != original {
            prop_assert!(got.len() < sent.len() || bytes.len() > original.len(), "a changed stream decoded whole");
        }
    }
}

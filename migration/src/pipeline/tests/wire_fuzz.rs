//! Property-based fuzzing of the batch wire decoder (issue 12): valid
//! batches of every record kind round-trip; resealed edits and random
//! bodies (which get past the checksum, as only a faulty encoder's would)
//! never panic `decode_batch` or any strategy's `Decoder`; every batch the
//! decoder accepts re-encodes to the same bytes. `MEMFABRIC_FUZZ_CASES` sets
//! the number of cases (docs/development.md, Reliability).

use super::gen::{random_page, text_page};
use crate::pipeline::wire::{decode_batch, encode_batch, reseal, CHECKSUM_BYTES, HEADER_BYTES};
use crate::pipeline::{Batch, CodecKind, ContentHash, ContentStore, Decoder, PageRecord, PipelineConfig, Record};
use proptest::prelude::*;
use memfabric_testkit::fuzz::config;

const STRATEGIES: [&str; 4] = ["none", "xbzrle+lz4", "zero+dedup-gang+zstd", "zero+dedup-site+xbzrle+zstd"];

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        Just(Record::Zero),
        any::<u128>().prop_map(|h| Record::Ref(ContentHash(h))),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Record::Delta),
        // Text compresses below a page (random content would not, and the
        // encoder sends it raw).
        any::<u64>().prop_map(|seed| Record::Compressed {
            codec: CodecKind::Lz4,
            bytes: lz4_flex::block::compress(&text_page(seed)[..]),
        }),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Record::Compressed { codec: CodecKind::Zstd, bytes }),
        any::<u64>().prop_map(|seed| Record::Raw(random_page(seed))),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    (any::<bool>(), prop::collection::vec((any::<u64>(), record()), 0..6)).prop_map(|(fallback, records)| Batch {
        fallback,
        records: records.into_iter().map(|(page_index, record)| PageRecord { page_index, record }).collect(),
    })
}

/// Decodes `wire` as a batch and with every strategy's decoder; an accepted
/// batch must re-encode to `wire`.
fn check(wire: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(b) = decode_batch(wire) {
        let mut again = Vec::new();
        encode_batch(&b, &mut again).map_err(|e| TestCaseError::fail(format!("accepted batch does not encode: {e}")))?;
        prop_assert_eq!(&again[..], wire, "accepted bytes are not canonical");
    }
    for s in STRATEGIES {
        let mut decoder = Decoder::new(PipelineConfig::new(s.parse().unwrap()));
        let _ = decoder.decode_wire(&mut ContentStore::new(), wire);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn valid_batches_round_trip(b in batch()) {
        let wire = b.to_wire().unwrap();
        prop_assert_eq!(Batch::from_wire(&wire).unwrap(), b);
        check(&wire)?;
    }

    #[test]
    fn resealed_edits_never_panic(b in batch(),
                                  edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                  keep_version in any::<bool>()) {
        let mut wire = b.to_wire().unwrap();
        for (at, byte) in edits {
            let i = at.index(wire.len() - CHECKSUM_BYTES);
            if !(keep_version && (i == 4 || i == 5)) {
                wire[i] = byte;
            }
        }
        reseal(&mut wire);
        check(&wire)?;
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(count in 0u32..8, fallback in any::<bool>(),
                                                      body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut wire = Batch { fallback, records: Vec::new() }.to_wire().unwrap();
        wire.truncate(HEADER_BYTES);
        wire[8..12].copy_from_slice(&count.to_le_bytes());
        wire[12..16].copy_from_slice(&(body.len() as u32).to_le_bytes());
        wire.extend_from_slice(&body);
        wire.extend_from_slice(&[0; CHECKSUM_BYTES]);
        reseal(&mut wire);
        check(&wire)?;
    }
}

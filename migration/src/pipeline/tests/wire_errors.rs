//! Corrupt, truncated or foreign batches give typed errors, never a panic.

use super::gen::{random_page, text_page};
use crate::pipeline::wire::{reseal, CHECKSUM_BYTES, HEADER_BYTES, RECORD_HEADER_BYTES};
use crate::pipeline::{
    Batch, CodecKind, ContentHash, ContentStore, DecodeError, Decoder, DecompressError, DeltaError, PageRecord,
    PipelineConfig, Record, WireError, PAGE_SIZE,
};
use proptest::prelude::*;

/// One record of every kind.
fn sample() -> Batch {
    let compressed = lz4_flex::block::compress(&text_page(1)[..]);
    Batch {
        fallback: false,
        records: vec![
            PageRecord { page_index: 1, record: Record::Zero },
            PageRecord { page_index: 2, record: Record::Ref(ContentHash(0xABCD)) },
            PageRecord { page_index: 3, record: Record::Delta(vec![0, 2, 7, 7]) },
            PageRecord { page_index: 4, record: Record::Compressed { codec: CodecKind::Lz4, bytes: compressed } },
            PageRecord { page_index: 5, record: Record::Compressed { codec: CodecKind::Zstd, bytes: vec![9; 20] } },
            PageRecord { page_index: u64::MAX, record: Record::Raw(random_page(2)) },
        ],
    }
}

/// A batch of one record with a hand-made tag and payload, correctly sealed.
fn crafted(tag: u8, payload_len: u32, payload: &[u8], fallback: bool) -> Vec<u8> {
    let mut out =
        Batch { fallback, records: vec![PageRecord { page_index: 7, record: Record::Zero }] }.to_wire().unwrap();
    out.truncate(HEADER_BYTES);
    let body_len = (RECORD_HEADER_BYTES + payload.len()) as u32;
    out[12..16].copy_from_slice(&body_len.to_le_bytes());
    out.push(tag);
    out.extend_from_slice(&7u64.to_le_bytes());
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&[0; CHECKSUM_BYTES]);
    reseal(&mut out);
    out
}

#[test]
fn sample_round_trips() {
    let b = sample();
    let wire = b.to_wire().unwrap();
    assert_eq!(
        wire.len(),
        HEADER_BYTES
            + 6 * RECORD_HEADER_BYTES
            + 16
            + 4
            + b.records[3].record.payload_len()
            + 20
            + PAGE_SIZE
            + CHECKSUM_BYTES
    );
    assert_eq!(Batch::from_wire(&wire).unwrap(), b);
    let fb = Batch { fallback: true, records: vec![] };
    assert_eq!(Batch::from_wire(&fb.to_wire().unwrap()).unwrap(), fb);
}

#[test]
fn every_truncation_is_reported_as_such() {
    let wire = sample().to_wire().unwrap();
    for len in 0..wire.len() {
        assert!(matches!(Batch::from_wire(&wire[..len]), Err(WireError::Truncated { .. })), "length {len}");
    }
    let mut long = wire.clone();
    long.push(0);
    assert_eq!(Batch::from_wire(&long), Err(WireError::TrailingBytes { extra: 1 }));
}

#[test]
fn every_flipped_byte_is_caught() {
    let wire = sample().to_wire().unwrap();
    for i in 0..wire.len() {
        let mut bad = wire.clone();
        bad[i] ^= 0x40;
        let err = Batch::from_wire(&bad).unwrap_err();
        let ok = match i {
            0..4 => matches!(err, WireError::BadMagic { .. }),
            4..6 => matches!(err, WireError::UnsupportedVersion { .. }),
            12..16 => matches!(err, WireError::Truncated { .. } | WireError::TrailingBytes { .. }),
            _ => matches!(err, WireError::BadChecksum { .. }),
        };
        assert!(ok, "byte {i}: {err:?}");
    }
}

#[test]
fn bad_magic_and_version_are_named() {
    let mut wire = sample().to_wire().unwrap();
    wire[..4].copy_from_slice(b"QEVM");
    assert_eq!(Batch::from_wire(&wire), Err(WireError::BadMagic { found: *b"QEVM" }));
    let mut wire = sample().to_wire().unwrap();
    wire[4..6].copy_from_slice(&2u16.to_le_bytes());
    reseal(&mut wire);
    assert_eq!(Batch::from_wire(&wire), Err(WireError::UnsupportedVersion { found: 2 }));
}

#[test]
fn malformed_bodies_with_valid_checksums_are_typed_errors() {
    assert_eq!(Batch::from_wire(&crafted(9, 0, &[], false)), Err(WireError::UnknownTag { record: 0, tag: 9 }));
    assert_eq!(
        Batch::from_wire(&crafted(2, 5000, &[0; 5000], false)),
        Err(WireError::LengthOverflow { record: 0, len: 5000 })
    );
    assert_eq!(
        Batch::from_wire(&crafted(2, u32::MAX, &[], false)),
        Err(WireError::LengthOverflow { record: 0, len: u64::from(u32::MAX) })
    );
    assert!(matches!(Batch::from_wire(&crafted(2, 10, &[0; 4], false)), Err(WireError::Truncated { .. })));
    assert_eq!(
        Batch::from_wire(&crafted(5, 100, &[0; 100], false)),
        Err(WireError::BadPayloadLength { record: 0, kind: "raw", len: 100 })
    );
    assert_eq!(
        Batch::from_wire(&crafted(1, 3, &[0; 3], false)),
        Err(WireError::BadPayloadLength { record: 0, kind: "ref", len: 3 })
    );
    assert_eq!(
        Batch::from_wire(&crafted(0, 1, &[0], false)),
        Err(WireError::BadPayloadLength { record: 0, kind: "zero", len: 1 })
    );
    assert_eq!(
        Batch::from_wire(&crafted(3, 0, &[], false)),
        Err(WireError::BadPayloadLength { record: 0, kind: "compressed", len: 0 })
    );

    let mut flags = crafted(0, 0, &[], false);
    flags[6] = 0x02;
    reseal(&mut flags);
    assert_eq!(Batch::from_wire(&flags), Err(WireError::UnknownFlags { flags: 2 }));

    let mut count = crafted(0, 0, &[], false);
    count[8..12].copy_from_slice(&0u32.to_le_bytes());
    reseal(&mut count);
    assert_eq!(
        Batch::from_wire(&count),
        Err(WireError::RecordCountMismatch { declared: 0, extra: RECORD_HEADER_BYTES as u64 })
    );
    let mut count = crafted(0, 0, &[], false);
    count[8..12].copy_from_slice(&2u32.to_le_bytes());
    reseal(&mut count);
    assert!(matches!(Batch::from_wire(&count), Err(WireError::Truncated { .. })));
}

fn decode(strategy: &str, wire: &[u8]) -> Result<(), DecodeError> {
    let mut decoder = Decoder::new(PipelineConfig::new(strategy.parse().unwrap()));
    decoder.decode_wire(&mut ContentStore::new(), wire).map(drop)
}

#[test]
fn payloads_that_do_not_rebuild_a_page_are_typed_errors() {
    // Decompression failure.
    let err = decode("lz4", &crafted(3, 3, &[0xF0, 1, 2], false)).unwrap_err();
    assert!(matches!(err, DecodeError::Decompress { page_index: 7, codec: CodecKind::Lz4, .. }), "{err:?}");
    let err = decode("zstd", &crafted(4, 5, &[1, 2, 3, 4, 5], false)).unwrap_err();
    assert!(
        matches!(err, DecodeError::Decompress { codec: CodecKind::Zstd, source: DecompressError::Zstd(_), .. }),
        "{err:?}"
    );
    // Decompressed size is not a page.
    let short = lz4_flex::block::compress(&[7u8; 4000]);
    let err = decode("lz4", &crafted(3, short.len() as u32, &short, false)).unwrap_err();
    assert!(matches!(err, DecodeError::Decompress { source: DecompressError::WrongSize { len: 4000 }, .. }), "{err:?}");
    let long = zstd::bulk::compress(&[7u8; 4097], 1).unwrap();
    let err = decode("zstd", &crafted(4, long.len() as u32, &long, false)).unwrap_err();
    assert!(matches!(err, DecodeError::Decompress { source: DecompressError::WrongSize { len: 4097 }, .. }), "{err:?}");
    // Delta without a base page, with or without a delta stage.
    for strategy in ["xbzrle", "lz4"] {
        let err = decode(strategy, &crafted(2, 3, &[0, 1, 1], false)).unwrap_err();
        assert!(matches!(err, DecodeError::DeltaNoBase { page_index: 7 }), "{err:?}");
    }
    // Fallback batches carry content only.
    let err = decode("xbzrle", &crafted(2, 3, &[0, 1, 1], true)).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidFallbackRecord { kind: "delta", .. }), "{err:?}");
}

#[test]
fn a_delta_running_past_the_page_is_an_error() {
    let config = PipelineConfig::new("xbzrle".parse().unwrap());
    let mut decoder = Decoder::new(config);
    let mut store = ContentStore::new();
    let raw =
        Batch { fallback: false, records: vec![PageRecord { page_index: 7, record: Record::Raw(random_page(1)) }] };
    decoder.decode_wire(&mut store, &raw.to_wire().unwrap()).unwrap();
    // Zero run 4096 (0x80 0x20), then one literal byte.
    let err = decoder.decode_wire(&mut store, &crafted(2, 5, &[0x80, 0x20, 1, 0xAA, 0], false)).unwrap_err();
    assert!(matches!(err, DecodeError::Delta { page_index: 7, source: DeltaError::Overrun { end: 4097 } }), "{err:?}");
    let err = decoder.decode_wire(&mut store, &crafted(2, 4, &[0, 9, 1, 2], false)).unwrap_err();
    assert!(matches!(err, DecodeError::Delta { source: DeltaError::Malformed { .. }, .. }), "{err:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, and valid batches with arbitrary edits re-sealed
    /// (so they pass the checksum), never panic any decoder.
    #[test]
    fn no_input_panics(noise in prop::collection::vec(any::<u8>(), 0..200),
                       edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                       cut in any::<prop::sample::Index>()) {
        let _ = decode("zero+dedup-site+xbzrle+zstd", &noise);
        let mut wire = sample().to_wire().unwrap();
        for (at, byte) in edits {
            let i = at.index(wire.len() - CHECKSUM_BYTES);
            if i != 4 && i != 5 { // keep the version, to reach the body
                wire[i] = byte;
            }
        }
        reseal(&mut wire);
        for strategy in ["xbzrle+lz4", "zero+dedup-gang+zstd"] {
            let _ = decode(strategy, &wire);
        }
        let len = cut.index(wire.len());
        prop_assert!(decode("lz4", &wire[..len]).is_err());
    }
}

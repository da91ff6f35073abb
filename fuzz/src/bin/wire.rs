//! AFL target: the pipeline's batch wire decoder (`decode_batch`) and every
//! strategy's `Decoder`. A crash is a panic or abort; an accepted batch must
//! re-encode to the same bytes (the format is canonical).

use memfabric_migration::pipeline::wire::{decode_batch, encode_batch};
use memfabric_migration::pipeline::{ContentStore, Decoder, PipelineConfig};

const STRATEGIES: [&str; 4] = ["none", "xbzrle+lz4", "zero+dedup-gang+zstd", "zero+dedup-site+xbzrle+zstd"];

fn main() {
    afl::fuzz!(|data: &[u8]| {
        // Most random inputs fail the checksum; the first byte chooses
        // whether to reseal them so that the body checks are reached too.
        let mut wire = data.to_vec();
        if let Some((&first, rest)) = data.split_first() {
            if first & 1 == 1 && rest.len() >= 8 {
                wire = rest.to_vec();
                let n = wire.len() - 8;
                let sum = xxhash_rust::xxh3::xxh3_64(&wire[..n]);
                wire[n..].copy_from_slice(&sum.to_le_bytes());
            }
        }
        if let Ok(b) = decode_batch(&wire) {
            let mut again = Vec::new();
            encode_batch(&b, &mut again).expect("an accepted batch encodes");
            assert_eq!(again, wire, "accepted bytes are canonical");
        }
        for s in STRATEGIES {
            let mut decoder = Decoder::new(PipelineConfig::new(s.parse().unwrap()));
            let _ = decoder.decode_wire(&mut ContentStore::new(), &wire);
        }
    });
}

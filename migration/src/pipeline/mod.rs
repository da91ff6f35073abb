//! The data-reduction pipeline: real codecs on real 4096-byte pages.
//!
//! Every page a migration sends goes through the stages of a
//! [`Strategy`](crate::strategy::Strategy), always in this order, and stops at
//! the first stage that resolves it:
//!
//! ```text
//!  page ──► zero ──► dedup ──► delta ──► compress ──► raw
//!            │         │         │           │          │
//!          Zero   Ref(hash)  Delta(runs) Compressed    Raw
//! ```
//!
//! 1. **zero** ([`is_zero_page`]): an all-zero page becomes a header-only
//!    [`Record::Zero`].
//! 2. **dedup** ([`hash_page`], [`DedupIndex`]): with a dedup scope, every page
//!    that is not stopped at zero is hashed. If the content is known to be at
//!    the destination (in the encoder's dedup domain) the page becomes
//!    [`Record::Ref`]; otherwise its hash is recorded as sent once the page
//!    leaves with its content.
//! 3. **delta** ([`xbzrle_encode`], [`DeltaCache`]): a page whose previous
//!    content is in the delta cache is XORed with it and run-length encoded;
//!    the result is used if it stays within the configured size.
//! 4. **compress** ([`PageCompressor`]): lz4 or zstd, used if the result is
//!    smaller than a page.
//! 5. **raw**: the page itself.
//!
//! The [`Encoder`] runs these stages and keeps per-stage statistics
//! ([`PipelineStats`]); the [`Decoder`] rebuilds the exact bytes, into
//! owned pages or straight into the destination's memory
//! ([`Decoder::decode_wire_into`], [`PageTarget`]: payloads are read where
//! they lie in the wire bytes, [`RecordView`]). Records travel in
//! [`Batch`]es whose binary format is documented in [`wire`].
//! The submodules document each stage's format and assumptions: [`hash`]
//! (collision assumption), [`dedup`] (scopes and domains), [`bloom`]
//! (false-positive rate), [`delta`] (run format and cache eviction),
//! [`compress`], [`exchange`] (missing-reference protocol). Their public
//! items are re-exported here.
//! Each stage is also a public function, so that benchmarks and the
//! validator can time it: this crate never reads a clock.
//!
//! # Who owns what
//!
//! | state | owner | shared by |
//! |---|---|---|
//! | [`DedupIndex`] (hashes known at the destination) | caller, source side | one encoder (scope `vm`), a gang of encoders (`gang`), or pre-filled with the destination site's content (`site`) |
//! | [`ContentStore`] (hash → page) | caller, destination side | the decoders of one destination site / gang |
//! | [`DeltaCache`] | encoder, mirrored by its decoder | nobody: one per migration stream |
//! | compression contexts | encoder / decoder | nobody |
//!
//! # Dedup domains
//!
//! Content never deduplicates across [`DomainId`]s: the index and the store
//! are both partitioned by domain. A domain is a tenant: cross-tenant dedup
//! is a known side channel (a tenant can learn whether another holds a page).
//!
//! # References that cannot be resolved
//!
//! A site summary ([`BloomFilter`]) can claim content the destination does not
//! hold. The encoder then emits a `Ref` that the decoder cannot resolve: the
//! decoder reports it as a [`MissingReference`] (it writes nothing for that
//! page), the source answers with [`Encoder::resolve_missing`], a batch
//! flagged as *fallback* carrying the page itself, and the decoder applies it
//! (unless a newer record for the page has arrived meanwhile). A false
//! positive therefore costs a round trip and a page, and never yields a
//! wrong page: the store only returns content under the hash it computed
//! itself. [`exchange_batch`] performs the whole exchange in memory; the
//! validator does the same over TCP.
//!
//! # Example
//!
//! ```
//! use memfabric_migration::pipeline::{
//!     ContentStore, DedupIndex, Decoder, Encoder, PipelineConfig, PAGE_SIZE,
//! };
//!
//! let config = PipelineConfig::new("zero+dedup-vm+lz4".parse().unwrap());
//! let mut encoder = Encoder::new(config).unwrap();
//! let mut decoder = Decoder::new(config);
//! let (mut index, mut store) = (DedupIndex::new(), ContentStore::new());
//!
//! let text = vec![b'a'; PAGE_SIZE];
//! let zero = vec![0u8; PAGE_SIZE];
//! let pages: [(u64, &[u8]); 3] = [(0, &text), (1, &zero), (2, &text)];
//! let batch = encoder.encode_batch(&mut index, pages).unwrap();
//! let wire = batch.to_wire().unwrap();
//!
//! let decoded = decoder.decode_wire(&mut store, &wire).unwrap();
//! assert!(decoded.missing.is_empty());
//! assert_eq!(decoded.pages.len(), 3);
//! assert_eq!(&decoded.pages[2].page[..], &text[..]);
//! let stats = encoder.stats();
//! assert_eq!((stats.zero.pages_resolved, stats.dedup.pages_resolved, stats.compress.pages_resolved), (1, 1, 1));
//! ```

pub mod bloom;
pub mod compress;
pub mod decoder;
pub mod dedup;
pub mod delta;
pub mod encoder;
pub mod exchange;
pub mod hash;
pub mod record;
pub mod stats;
pub mod wire;
pub mod zero;

#[cfg(test)]
mod tests;

pub use bloom::{BloomError, BloomFilter, DEFAULT_BLOOM_BITS_PER_ITEM, DEFAULT_BLOOM_HASH_COUNT};
pub use compress::{CodecKind, CompressError, DecompressError, PageCompressor, PageDecompressor};
pub use decoder::{DecodeError, DecodedBatch, DecodedPage, Decoder, DecoderStats, MissingReference, PageTarget};
pub use dedup::{ContentStore, DedupIndex, DedupSource, DomainId};
pub use delta::{xbzrle_apply, xbzrle_encode, DeltaCache, DeltaError, DEFAULT_DELTA_CACHE_PAGES, MIN_ZERO_RUN_BYTES};
pub use encoder::{EncodeError, Encoder, PipelineConfig, DEFAULT_DELTA_MAX_BYTES};
pub use exchange::{exchange_batch, Exchange, ExchangeError};
pub use hash::{hash_page, ContentHash, HashAlgo};
pub use record::{Batch, BatchView, PageRecord, PageRecordView, Record, RecordView};
pub use stats::{PipelineStats, Stage, StageStats};
pub use wire::WireError;
pub use zero::is_zero_page;

/// [`PAGE_SIZE_BYTES`](crate::PAGE_SIZE_BYTES) as a `usize`, for buffers.
pub const PAGE_SIZE: usize = crate::PAGE_SIZE_BYTES as usize;

/// The bytes of one guest page.
pub type Page = [u8; PAGE_SIZE];

/// Borrows `bytes` as a page, or says how long it was.
fn as_page(bytes: &[u8]) -> Result<&Page, usize> {
    <&Page>::try_from(bytes).map_err(|_| bytes.len())
}

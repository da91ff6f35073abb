//! The missing-reference exchange, performed in memory.
//!
//! ```text
//!  source (Encoder)                         destination (Decoder)
//!        │  batch (wire bytes)                    │
//!        │───────────────────────────────────────►│ decode; refs the store
//!        │                                        │ lacks become pending
//!        │  missing: [(page_index, hash), ...]    │
//!        │◄───────────────────────────────────────│ (only if any)
//!  resolve_missing                                │
//!        │  fallback batch (FLAG_FALLBACK)        │
//!        │───────────────────────────────────────►│ applied to pages
//!        │                                        │ still pending
//! ```
//!
//! The validator runs the same steps over TCP; the simulator can call
//! [`exchange_batch`] to obtain exact wire volumes.

use super::decoder::{DecodeError, DecodedPage, Decoder, MissingReference};
use super::dedup::{ContentStore, DedupIndex};
use super::encoder::{EncodeError, Encoder};
use super::record::Batch;
use super::wire::WireError;

/// What one exchange moved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exchange {
    /// Pages written at the destination: the batch's, then the fallback's.
    pub pages: Vec<DecodedPage>,
    /// Wire bytes of the batch.
    pub batch_wire_bytes: u64,
    /// References the destination reported missing (answered by the
    /// fallback batch).
    pub missing: Vec<MissingReference>,
    /// Wire bytes of the fallback batch (0 if none was needed). The list of
    /// missing references sent back is not counted.
    pub fallback_wire_bytes: u64,
}

/// An exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The source could not encode.
    #[error("encoding failed")]
    Encode(#[from] EncodeError),
    /// The destination could not decode.
    #[error("decoding failed")]
    Decode(#[from] DecodeError),
    /// A batch could not be put on the wire.
    #[error("wire encoding failed")]
    Wire(#[from] WireError),
}

/// Sends `batch` from `encoder` to `decoder` through the wire encoding and,
/// if references are missing, answers them with a fallback batch built from
/// `page_at` (the source's current page content by index).
pub fn exchange_batch<'p, F>(
    encoder: &mut Encoder,
    index: &mut DedupIndex,
    decoder: &mut Decoder,
    store: &mut ContentStore,
    batch: &Batch,
    page_at: F,
) -> Result<Exchange, ExchangeError>
where
    F: FnMut(u64) -> Option<&'p [u8]>,
{
    let wire = batch.to_wire()?;
    let decoded = decoder.decode_wire(store, &wire)?;
    let mut out = Exchange {
        pages: decoded.pages,
        batch_wire_bytes: wire.len() as u64,
        missing: decoded.missing,
        fallback_wire_bytes: 0,
    };
    if !out.missing.is_empty() {
        let fallback = encoder.resolve_missing(index, &out.missing, page_at)?;
        let wire = fallback.to_wire()?;
        out.fallback_wire_bytes = wire.len() as u64;
        // A fallback batch carries no references, so nothing can be missing.
        out.pages.extend(decoder.decode_wire(store, &wire)?.pages);
    }
    Ok(out)
}

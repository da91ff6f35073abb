//! The destination side: records in, exact pages out.

use super::compress::{CodecKind, DecompressError, PageDecompressor};
use super::dedup::ContentStore;
use super::delta::{xbzrle_apply, DeltaCache, DeltaError};
use super::encoder::PipelineConfig;
use super::hash::ContentHash;
use super::record::{Batch, PageRecord, Record};
use super::wire::{decode_batch, WireError};
use super::{Page, PAGE_SIZE};
use std::collections::BTreeMap;

/// A reference the destination could not resolve: it does not hold content
/// with that hash in the stream's domain. The source must send the page
/// ([`Encoder::resolve_missing`](super::Encoder::resolve_missing)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MissingReference {
    /// The page that is still to be written.
    pub page_index: u64,
    /// The hash referenced.
    pub hash: ContentHash,
}

/// Decoding failed. Except for [`MissingReference`](DecodeError::MissingReference),
/// an error means the stream is corrupt or out of step: the decoder's state
/// no longer mirrors the encoder's and the migration must be aborted.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The batch is malformed.
    #[error("malformed batch")]
    Wire(#[from] WireError),
    /// A compressed payload does not decompress to one page.
    #[error("page {page_index}: cannot decompress {codec} payload")]
    Decompress {
        /// The page index.
        page_index: u64,
        /// The codec.
        codec: CodecKind,
        /// Why.
        #[source]
        source: DecompressError,
    },
    /// A delta arrived for a page the delta cache does not hold.
    #[error("page {page_index}: delta without a cached base page")]
    DeltaNoBase {
        /// The page index.
        page_index: u64,
    },
    /// A delta does not apply to its base.
    #[error("page {page_index}: delta does not apply")]
    Delta {
        /// The page index.
        page_index: u64,
        /// Why.
        #[source]
        source: DeltaError,
    },
    /// A reference to content the store lacks ([`Decoder::decode_record`]
    /// only; batch decoding collects these in [`DecodedBatch::missing`]).
    #[error("page {page_index}: referenced content {hash} is not held at the destination")]
    MissingReference {
        /// The page index.
        page_index: u64,
        /// The hash referenced.
        hash: ContentHash,
    },
    /// A fallback batch holds a reference or a delta.
    #[error("page {page_index}: a fallback batch cannot carry a {kind} record")]
    InvalidFallbackRecord {
        /// The page index.
        page_index: u64,
        /// The record kind.
        kind: &'static str,
    },
}

/// A page rebuilt by the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPage {
    /// Where it goes.
    pub page_index: u64,
    /// Its bytes.
    pub page: Box<Page>,
}

/// What one batch produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodedBatch {
    /// Pages to write, in record order.
    pub pages: Vec<DecodedPage>,
    /// References that could not be resolved; nothing was written for them.
    pub missing: Vec<MissingReference>,
}

/// Counters of a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecoderStats {
    /// Records decoded.
    pub records: u64,
    /// Pages produced.
    pub pages_written: u64,
    /// References that could not be resolved.
    pub missing_refs: u64,
    /// Fallback records applied to a page waiting for them.
    pub fallback_applied: u64,
    /// Fallback records dropped because a newer record for the page had
    /// already arrived.
    pub fallback_superseded: u64,
}

/// Rebuilds pages from records, mirroring an [`Encoder`](super::Encoder)
/// with the same [`PipelineConfig`].
///
/// Records must be decoded in the order they were encoded: the delta cache
/// changes with every record that carries page content (delta, compressed
/// or raw, outside fallback batches), exactly as the encoder's did.
/// Pages whose reference is missing are remembered as *pending*: a later
/// record for the same page supersedes the reference, and a fallback record
/// applies only to a page still pending.
#[derive(Debug)]
pub struct Decoder {
    config: PipelineConfig,
    delta: Option<DeltaCache>,
    decompressor: PageDecompressor,
    pending: BTreeMap<u64, ContentHash>,
    scratch: Box<Page>,
    stats: DecoderStats,
}

impl Decoder {
    /// A decoder for `config`.
    pub fn new(config: PipelineConfig) -> Decoder {
        Decoder {
            config,
            delta: config.delta_cache(),
            decompressor: PageDecompressor::new(),
            pending: BTreeMap::new(),
            scratch: Box::new([0u8; PAGE_SIZE]),
            stats: DecoderStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Counters since creation.
    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }

    /// The delta cache (None if the strategy has no delta stage).
    pub fn delta_cache(&self) -> Option<&DeltaCache> {
        self.delta.as_ref()
    }

    /// References still waiting for a fallback, by page index.
    pub fn pending(&self) -> impl Iterator<Item = MissingReference> + '_ {
        self.pending.iter().map(|(&page_index, &hash)| MissingReference { page_index, hash })
    }

    /// Decodes one record of an ordinary (non-fallback) stream. A reference
    /// the store cannot resolve is [`DecodeError::MissingReference`] (and the
    /// page becomes pending).
    pub fn decode_record(&mut self, store: &mut ContentStore, record: &PageRecord) -> Result<Box<Page>, DecodeError> {
        match self.apply(store, record)? {
            None => Ok(Box::new(*self.scratch)),
            Some(m) => Err(DecodeError::MissingReference { page_index: m.page_index, hash: m.hash }),
        }
    }

    /// Decodes a batch, handing each rebuilt page to `sink` in record order.
    /// Returns the references that could not be resolved.
    pub fn decode_batch_with<F>(
        &mut self,
        store: &mut ContentStore,
        batch: &Batch,
        mut sink: F,
    ) -> Result<Vec<MissingReference>, DecodeError>
    where
        F: FnMut(u64, &Page),
    {
        let mut missing = Vec::new();
        for record in &batch.records {
            let written = if batch.fallback {
                self.apply_fallback(store, record)?
            } else {
                match self.apply(store, record)? {
                    None => true,
                    Some(m) => {
                        missing.push(m);
                        false
                    }
                }
            };
            if written {
                sink(record.page_index, &self.scratch);
            }
        }
        Ok(missing)
    }

    /// Decodes a batch into owned pages.
    pub fn decode_batch(&mut self, store: &mut ContentStore, batch: &Batch) -> Result<DecodedBatch, DecodeError> {
        let mut pages = Vec::with_capacity(batch.records.len());
        let missing = self.decode_batch_with(store, batch, |page_index, page| {
            pages.push(DecodedPage { page_index, page: Box::new(*page) });
        })?;
        Ok(DecodedBatch { pages, missing })
    }

    /// Decodes a batch from its wire encoding.
    pub fn decode_wire(&mut self, store: &mut ContentStore, bytes: &[u8]) -> Result<DecodedBatch, DecodeError> {
        let batch = decode_batch(bytes)?;
        self.decode_batch(store, &batch)
    }

    /// Applies an ordinary record: rebuilds the page into `scratch`, or
    /// returns the reference it could not resolve.
    fn apply(
        &mut self,
        store: &mut ContentStore,
        record: &PageRecord,
    ) -> Result<Option<MissingReference>, DecodeError> {
        self.stats.records += 1;
        let page_index = record.page_index;
        // Any newer record supersedes a pending reference.
        self.pending.remove(&page_index);
        if let Record::Ref(hash) = record.record {
            return match store.get(self.config.domain, hash) {
                Some(page) => {
                    self.scratch.copy_from_slice(page);
                    self.stats.pages_written += 1;
                    Ok(None)
                }
                None => {
                    self.pending.insert(page_index, hash);
                    self.stats.missing_refs += 1;
                    Ok(Some(MissingReference { page_index, hash }))
                }
            };
        }
        self.rebuild(store, page_index, &record.record, true)?;
        self.stats.pages_written += 1;
        Ok(None)
    }

    /// Applies a fallback record; returns whether the page is to be written.
    fn apply_fallback(&mut self, store: &mut ContentStore, record: &PageRecord) -> Result<bool, DecodeError> {
        self.stats.records += 1;
        let page_index = record.page_index;
        let kind = match record.record {
            Record::Ref(_) => Some("ref"),
            Record::Delta(_) => Some("delta"),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(DecodeError::InvalidFallbackRecord { page_index, kind });
        }
        // Rebuilt even when superseded: that validates it and stores the content.
        self.rebuild(store, page_index, &record.record, false)?;
        if self.pending.remove(&page_index).is_some() {
            self.stats.fallback_applied += 1;
            self.stats.pages_written += 1;
            Ok(true)
        } else {
            self.stats.fallback_superseded += 1;
            Ok(false)
        }
    }

    /// Rebuilds a content record (zero, delta, compressed, raw) into
    /// `scratch`; records it in the delta cache (if `cache`) and in the store.
    fn rebuild(
        &mut self,
        store: &mut ContentStore,
        page_index: u64,
        record: &Record,
        cache: bool,
    ) -> Result<(), DecodeError> {
        match record {
            Record::Zero => {
                self.scratch.fill(0);
                return Ok(());
            }
            Record::Ref(hash) => {
                // Callers handle references; treat one here as unresolvable.
                return Err(DecodeError::MissingReference { page_index, hash: *hash });
            }
            Record::Delta(delta) => {
                let base = self
                    .delta
                    .as_ref()
                    .and_then(|c| c.get(page_index))
                    .ok_or(DecodeError::DeltaNoBase { page_index })?;
                self.scratch.copy_from_slice(base);
                xbzrle_apply(&mut self.scratch, delta).map_err(|source| DecodeError::Delta { page_index, source })?;
            }
            Record::Compressed { codec, bytes } => {
                self.decompressor
                    .decompress(*codec, bytes, &mut self.scratch)
                    .map_err(|source| DecodeError::Decompress { page_index, codec: *codec, source })?;
            }
            Record::Raw(page) => self.scratch.copy_from_slice(&page[..]),
        }
        if cache {
            if let Some(c) = &mut self.delta {
                c.insert(page_index, &self.scratch);
            }
        }
        if self.config.strategy.dedup.is_some() {
            store.insert_page(self.config.domain, self.config.hash_algo, &self.scratch);
        }
        Ok(())
    }
}

//! The destination side: records in, exact pages out.

use super::compress::{CodecKind, DecompressError, PageDecompressor};
use super::dedup::ContentStore;
use super::delta::{xbzrle_apply, DeltaCache, DeltaError};
use super::encoder::PipelineConfig;
use super::hash::ContentHash;
use super::record::{Batch, BatchView, PageRecord, PageRecordView, RecordView};
use super::wire::{parse_batch, WireError};
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
    /// A record for a page the [`PageTarget`] does not have.
    #[error("page {page_index} is outside the destination's memory")]
    OutsideTarget {
        /// The page index.
        page_index: u64,
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

/// Where a decoder writes pages in place: the destination's memory. The
/// decoder rebuilds each page directly in the page `page_mut` returns (a
/// compressed page is decompressed into it, a delta applied to the cached
/// base and copied into it once), so no page passes through an
/// intermediate buffer.
pub trait PageTarget {
    /// Page `page_index`, to be overwritten in full (None: no such page,
    /// [`DecodeError::OutsideTarget`]).
    fn page_mut(&mut self, page_index: u64) -> Option<&mut Page>;
    /// Page `page_index` now holds its decoded content.
    fn written(&mut self, page_index: u64);
}

/// A [`PageTarget`] that rebuilds each page in its own buffer and hands it
/// to a closure (what [`Decoder::decode_batch_with`] uses).
struct SinkTarget<F> {
    page: Box<Page>,
    sink: F,
}

impl<F: FnMut(u64, &Page)> PageTarget for SinkTarget<F> {
    fn page_mut(&mut self, _page_index: u64) -> Option<&mut Page> {
        Some(&mut self.page)
    }

    fn written(&mut self, page_index: u64) {
        (self.sink)(page_index, &self.page);
    }
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
        let mut page = Box::new([0u8; PAGE_SIZE]);
        match self.apply(store, record.page_index, record.record.view(), &mut page)? {
            None => Ok(page),
            Some(m) => Err(DecodeError::MissingReference { page_index: m.page_index, hash: m.hash }),
        }
    }

    /// Decodes a batch, handing each rebuilt page to `sink` in record order.
    /// Returns the references that could not be resolved.
    pub fn decode_batch_with<F>(
        &mut self,
        store: &mut ContentStore,
        batch: &Batch,
        sink: F,
    ) -> Result<Vec<MissingReference>, DecodeError>
    where
        F: FnMut(u64, &Page),
    {
        self.decode_view_into(store, &batch.view(), &mut SinkTarget { page: Box::new([0u8; PAGE_SIZE]), sink })
    }

    /// Decodes a batch into owned pages.
    pub fn decode_batch(&mut self, store: &mut ContentStore, batch: &Batch) -> Result<DecodedBatch, DecodeError> {
        self.decode_view(store, &batch.view())
    }

    /// Decodes a batch from its wire encoding.
    pub fn decode_wire(&mut self, store: &mut ContentStore, bytes: &[u8]) -> Result<DecodedBatch, DecodeError> {
        self.decode_view(store, &parse_batch(bytes)?)
    }

    /// Decodes a batch from its wire encoding straight into `target`: each
    /// payload is read where it lies in `bytes` and rebuilt in the page it
    /// belongs to. The whole batch is checked ([`parse_batch`]) before any
    /// page is written. Returns the references that could not be resolved
    /// (nothing was written for them).
    pub fn decode_wire_into(
        &mut self,
        store: &mut ContentStore,
        bytes: &[u8],
        target: &mut impl PageTarget,
    ) -> Result<Vec<MissingReference>, DecodeError> {
        self.decode_view_into(store, &parse_batch(bytes)?, target)
    }

    fn decode_view(&mut self, store: &mut ContentStore, batch: &BatchView<'_>) -> Result<DecodedBatch, DecodeError> {
        let mut pages = Vec::with_capacity(batch.records.len());
        let sink = |page_index, page: &Page| pages.push(DecodedPage { page_index, page: Box::new(*page) });
        let missing = self.decode_view_into(store, batch, &mut SinkTarget { page: Box::new([0u8; PAGE_SIZE]), sink })?;
        Ok(DecodedBatch { pages, missing })
    }

    /// Decodes the records of `batch` in order into `target`.
    fn decode_view_into(
        &mut self,
        store: &mut ContentStore,
        batch: &BatchView<'_>,
        target: &mut impl PageTarget,
    ) -> Result<Vec<MissingReference>, DecodeError> {
        let mut missing = Vec::new();
        for &PageRecordView { page_index, record } in &batch.records {
            let page = target.page_mut(page_index).ok_or(DecodeError::OutsideTarget { page_index })?;
            let written = if batch.fallback {
                self.apply_fallback(store, page_index, record, page)?
            } else {
                match self.apply(store, page_index, record, page)? {
                    None => true,
                    Some(m) => {
                        missing.push(m);
                        false
                    }
                }
            };
            if written {
                target.written(page_index);
            }
        }
        Ok(missing)
    }

    /// Applies an ordinary record: rebuilds the page into `out`, or returns
    /// the reference it could not resolve (leaving `out` as it was).
    fn apply(
        &mut self,
        store: &mut ContentStore,
        page_index: u64,
        record: RecordView<'_>,
        out: &mut Page,
    ) -> Result<Option<MissingReference>, DecodeError> {
        self.stats.records += 1;
        // Any newer record supersedes a pending reference.
        self.pending.remove(&page_index);
        if let RecordView::Ref(hash) = record {
            return match store.get(self.config.domain, hash) {
                Some(page) => {
                    out.copy_from_slice(page);
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
        self.rebuild(store, page_index, record, true, out)?;
        self.stats.pages_written += 1;
        Ok(None)
    }

    /// Applies a fallback record; returns whether the page was written to
    /// `out` (it is only when the page still waits for it).
    fn apply_fallback(
        &mut self,
        store: &mut ContentStore,
        page_index: u64,
        record: RecordView<'_>,
        out: &mut Page,
    ) -> Result<bool, DecodeError> {
        self.stats.records += 1;
        let kind = match record {
            RecordView::Ref(_) => Some("ref"),
            RecordView::Delta(_) => Some("delta"),
            _ => None,
        };
        if let Some(kind) = kind {
            return Err(DecodeError::InvalidFallbackRecord { page_index, kind });
        }
        if self.pending.remove(&page_index).is_some() {
            self.rebuild(store, page_index, record, false, out)?;
            self.stats.fallback_applied += 1;
            self.stats.pages_written += 1;
            Ok(true)
        } else {
            // Rebuilt even when superseded (aside, not over the newer page):
            // that validates it and stores the content.
            let mut aside = Box::new([0u8; PAGE_SIZE]);
            self.rebuild(store, page_index, record, false, &mut aside)?;
            self.stats.fallback_superseded += 1;
            Ok(false)
        }
    }

    /// Rebuilds a content record (zero, delta, compressed, raw) into `out`;
    /// records it in the delta cache (if `cache`) and in the store.
    fn rebuild(
        &mut self,
        store: &mut ContentStore,
        page_index: u64,
        record: RecordView<'_>,
        cache: bool,
        out: &mut Page,
    ) -> Result<(), DecodeError> {
        match record {
            RecordView::Zero => {
                out.fill(0);
                return Ok(());
            }
            RecordView::Ref(hash) => {
                // Callers handle references; treat one here as unresolvable.
                return Err(DecodeError::MissingReference { page_index, hash });
            }
            RecordView::Delta(delta) => {
                // The delta applies to the cached base in place (the cache
                // must hold the new content anyway), then the result is
                // copied out once.
                let page = self
                    .delta
                    .as_mut()
                    .and_then(|c| c.update(page_index, |base| xbzrle_apply(base, delta)))
                    .ok_or(DecodeError::DeltaNoBase { page_index })?
                    .map_err(|source| DecodeError::Delta { page_index, source })?;
                out.copy_from_slice(page);
                if self.config.strategy.dedup.is_some() {
                    store.insert_page(self.config.domain, self.config.hash_algo, out);
                }
                return Ok(());
            }
            RecordView::Compressed { codec, bytes } => {
                self.decompressor
                    .decompress(codec, bytes, out)
                    .map_err(|source| DecodeError::Decompress { page_index, codec, source })?;
            }
            RecordView::Raw(page) => out.copy_from_slice(page),
        }
        if cache {
            if let Some(c) = &mut self.delta {
                c.insert(page_index, out);
            }
        }
        if self.config.strategy.dedup.is_some() {
            store.insert_page(self.config.domain, self.config.hash_algo, out);
        }
        Ok(())
    }
}

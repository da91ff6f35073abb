//! The source side: pages in, records out.

use super::compress::{CompressError, PageCompressor};
use super::decoder::MissingReference;
use super::dedup::{DedupIndex, DedupSource, DomainId};
use super::delta::{xbzrle_encode, DeltaCache, DEFAULT_DELTA_CACHE_PAGES};
use super::hash::{hash_page, HashAlgo};
use super::record::{Batch, PageRecord, Record};
use super::stats::{PipelineStats, Stage};
use super::zero::is_zero_page;
use super::{as_page, Page, PAGE_SIZE};
use crate::strategy::Strategy;

/// Default limit on a delta's size: one byte less than a page, so a delta is
/// used whenever it is smaller than the page (QEMU's XBZRLE rule: the
/// encoding fails only when it would exceed the page).
pub const DEFAULT_DELTA_MAX_BYTES: usize = PAGE_SIZE - 1;

/// How to run the pipeline. Encoder and decoder of one stream must use the
/// same configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineConfig {
    /// The stages.
    pub strategy: Strategy,
    /// Content hash for dedup.
    pub hash_algo: HashAlgo,
    /// Dedup domain (tenant) of the VM.
    pub domain: DomainId,
    /// Delta-cache capacity in pages (used only if the strategy has delta).
    pub delta_cache_pages: usize,
    /// Largest delta sent, in bytes; a page whose delta would be larger goes
    /// on to compression or raw. Only the encoder reads it.
    pub delta_max_bytes: usize,
}

impl PipelineConfig {
    /// `strategy` with defaults: xxh3-128, domain 0,
    /// [`DEFAULT_DELTA_CACHE_PAGES`], [`DEFAULT_DELTA_MAX_BYTES`].
    pub fn new(strategy: Strategy) -> PipelineConfig {
        PipelineConfig {
            strategy,
            hash_algo: HashAlgo::default(),
            domain: DomainId::default(),
            delta_cache_pages: DEFAULT_DELTA_CACHE_PAGES,
            delta_max_bytes: DEFAULT_DELTA_MAX_BYTES,
        }
    }

    /// The delta cache this configuration calls for, if any.
    pub(crate) fn delta_cache(&self) -> Option<DeltaCache> {
        self.strategy.delta.then(|| DeltaCache::new(self.delta_cache_pages))
    }
}

/// Encoding failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The input is not one page long.
    #[error("page {page_index} is {len} bytes, expected {PAGE_SIZE}")]
    PageSize {
        /// The page index.
        page_index: u64,
        /// Its length.
        len: usize,
    },
    /// The compressor failed or could not be created.
    #[error("compression failed")]
    Compress(#[from] CompressError),
    /// A missing reference names a page the caller cannot provide.
    #[error("page {page_index} is referenced as missing but its content is not available")]
    FallbackPageUnavailable {
        /// The page index.
        page_index: u64,
    },
    /// The configuration allows deltas larger than a page, which the wire
    /// format rejects.
    #[error("delta_max_bytes {0} exceeds the page size {PAGE_SIZE}")]
    DeltaMaxTooLarge(usize),
}

/// Turns pages into records through the stages of a [`Strategy`], in order
/// zero → dedup → delta → compress → raw.
///
/// The encoder owns its delta cache and compression context; the
/// [`DedupIndex`] is passed to each call so that several encoders can share
/// one (see [`dedup`](super::DedupIndex) for how scopes map onto indexes).
#[derive(Debug)]
pub struct Encoder {
    config: PipelineConfig,
    delta: Option<DeltaCache>,
    compressor: Option<PageCompressor>,
    stats: PipelineStats,
}

impl Encoder {
    /// An encoder for `config`; creates the compression context.
    pub fn new(config: PipelineConfig) -> Result<Encoder, EncodeError> {
        if config.delta_max_bytes > PAGE_SIZE {
            return Err(EncodeError::DeltaMaxTooLarge(config.delta_max_bytes));
        }
        let compressor = config.strategy.codec.map(PageCompressor::new).transpose()?;
        Ok(Encoder { config, delta: config.delta_cache(), compressor, stats: PipelineStats::default() })
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Counters since creation.
    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// The delta cache (None if the strategy has no delta stage).
    pub fn delta_cache(&self) -> Option<&DeltaCache> {
        self.delta.as_ref()
    }

    /// Encodes one page. With a dedup scope, looks the content up in `index`
    /// and records it there once sent; otherwise `index` is not used.
    pub fn encode_page(
        &mut self,
        index: &mut DedupIndex,
        page_index: u64,
        page: &[u8],
    ) -> Result<PageRecord, EncodeError> {
        let page = as_page(page).map_err(|len| EncodeError::PageSize { page_index, len })?;
        let strategy = self.config.strategy;
        let domain = self.config.domain;

        if strategy.zero {
            self.stats.zero.enter();
            if is_zero_page(page) {
                return Ok(self.resolved(page_index, Record::Zero));
            }
        }

        let mut sent_hash = None;
        if let Some(scope) = strategy.dedup {
            self.stats.dedup.enter();
            let hash = hash_page(self.config.hash_algo, page);
            if let Some(source) = index.lookup(domain, hash, scope) {
                match source {
                    DedupSource::Sent => self.stats.dedup_hits_sent += 1,
                    DedupSource::SiteExact | DedupSource::SiteSummary => self.stats.dedup_hits_site += 1,
                }
                return Ok(self.resolved(page_index, Record::Ref(hash)));
            }
            sent_hash = Some(hash);
        }

        let mut buf = Vec::new();
        let mut record = None;
        if let Some(cache) = &mut self.delta {
            self.stats.delta.enter();
            if let Some(old) = cache.get(page_index) {
                self.stats.delta_cache_hits += 1;
                if xbzrle_encode(old, page, self.config.delta_max_bytes, &mut buf) {
                    record = Some(Record::Delta(std::mem::take(&mut buf)));
                }
            }
            cache.insert(page_index, page);
        }
        let record = match record {
            Some(r) => r,
            None => {
                if self.compressor.is_some() {
                    self.stats.compress.enter();
                }
                self.compress_or_raw(page, buf)?
            }
        };
        if let Some(hash) = sent_hash {
            index.insert_sent(domain, hash);
        }
        Ok(self.resolved(page_index, record))
    }

    /// Encodes pages in order into one batch.
    pub fn encode_batch<'p, I>(&mut self, index: &mut DedupIndex, pages: I) -> Result<Batch, EncodeError>
    where
        I: IntoIterator<Item = (u64, &'p [u8])>,
    {
        let records = pages
            .into_iter()
            .map(|(page_index, page)| self.encode_page(index, page_index, page))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Batch { fallback: false, records })
    }

    /// Answers missing references with a fallback batch carrying the pages.
    ///
    /// `page_at` gives the *current* content of a page index. If the page
    /// changed since the reference was sent, its current content is sent:
    /// the page is dirty again and newer content is as good for the
    /// destination. Fallback records are zero, compressed or raw (never a
    /// reference or a delta) and do not touch the delta cache; their content
    /// is recorded in `index` as sent. They are counted in
    /// [`PipelineStats::fallback`].
    pub fn resolve_missing<'p, F>(
        &mut self,
        index: &mut DedupIndex,
        missing: &[MissingReference],
        mut page_at: F,
    ) -> Result<Batch, EncodeError>
    where
        F: FnMut(u64) -> Option<&'p [u8]>,
    {
        let mut records = Vec::with_capacity(missing.len());
        for m in missing {
            let page_index = m.page_index;
            let bytes = page_at(page_index).ok_or(EncodeError::FallbackPageUnavailable { page_index })?;
            let page = as_page(bytes).map_err(|len| EncodeError::PageSize { page_index, len })?;
            let record = if self.config.strategy.zero && is_zero_page(page) {
                Record::Zero
            } else {
                if self.config.strategy.dedup.is_some() {
                    index.insert_sent(self.config.domain, hash_page(self.config.hash_algo, page));
                }
                self.compress_or_raw(page, Vec::new())?
            };
            self.stats.fallback.enter();
            self.stats.fallback.resolve(record.model_wire_bytes());
            records.push(PageRecord { page_index, record });
        }
        Ok(Batch { fallback: true, records })
    }

    /// The compression stage (if any), then raw. `buf` is scratch space.
    /// Does not count statistics.
    fn compress_or_raw(&mut self, page: &Page, mut buf: Vec<u8>) -> Result<Record, EncodeError> {
        if let Some(compressor) = &mut self.compressor {
            if compressor.compress(page, &mut buf)? {
                return Ok(Record::Compressed { codec: compressor.codec().into(), bytes: buf });
            }
        }
        Ok(Record::Raw(Box::new(*page)))
    }

    /// Counts `record` at its stage (raw also counts the page entering).
    fn resolved(&mut self, page_index: u64, record: Record) -> PageRecord {
        let stage = record.stage();
        if stage == Stage::Raw {
            self.stats.raw.enter();
        }
        self.stats.stage_mut(stage).resolve(record.model_wire_bytes());
        PageRecord { page_index, record }
    }
}

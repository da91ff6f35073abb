//! What a page becomes on the wire.

use super::compress::CodecKind;
use super::hash::ContentHash;
use super::stats::Stage;
use super::{Page, PAGE_SIZE};
use crate::PAGE_HEADER_BYTES;

/// What one page becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An all-zero page.
    Zero,
    /// The destination already holds identical content under this hash.
    Ref(ContentHash),
    /// XBZRLE-like runs against the cached previous content of the same page
    /// index (format in [`xbzrle_apply`](super::xbzrle_apply)).
    Delta(Vec<u8>),
    /// The page compressed with `codec`.
    Compressed {
        /// The codec.
        codec: CodecKind,
        /// The compressed bytes (decompress to exactly one page).
        bytes: Vec<u8>,
    },
    /// The page itself.
    Raw(Box<Page>),
}

impl Record {
    /// This record borrowed as a [`RecordView`].
    pub fn view(&self) -> RecordView<'_> {
        match self {
            Record::Zero => RecordView::Zero,
            Record::Ref(hash) => RecordView::Ref(*hash),
            Record::Delta(d) => RecordView::Delta(d),
            Record::Compressed { codec, bytes } => RecordView::Compressed { codec: *codec, bytes },
            Record::Raw(page) => RecordView::Raw(page),
        }
    }

    /// Bytes of payload after the record's header.
    pub fn payload_len(&self) -> usize {
        match self {
            Record::Zero => 0,
            Record::Ref(_) => ContentHash::WIRE_BYTES,
            Record::Delta(d) => d.len(),
            Record::Compressed { bytes, .. } => bytes.len(),
            Record::Raw(_) => PAGE_SIZE,
        }
    }

    /// Bytes this record costs on a QEMU-like stream: the payload plus
    /// [`PAGE_HEADER_BYTES`]. This is what [`PipelineStats`](super::PipelineStats)
    /// counts, so that simulated and measured volumes compare directly; the
    /// batch format of [`wire`](super::wire) adds a few bytes per record and
    /// per batch on top.
    pub fn model_wire_bytes(&self) -> u64 {
        PAGE_HEADER_BYTES + self.payload_len() as u64
    }

    /// The stage that produced this record.
    pub fn stage(&self) -> Stage {
        match self {
            Record::Zero => Stage::Zero,
            Record::Ref(_) => Stage::Dedup,
            Record::Delta(_) => Stage::Delta,
            Record::Compressed { .. } => Stage::Compress,
            Record::Raw(_) => Stage::Raw,
        }
    }
}

/// A record for one page index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRecord {
    /// Index of the page in guest memory (guest physical address / 4096).
    pub page_index: u64,
    /// What the page became.
    pub record: Record,
}

/// A sequence of records sent as one unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// A fallback batch answers missing references: its records carry page
    /// content (zero, compressed or raw only), do not touch the delta caches,
    /// and apply only to pages still waiting for that answer.
    pub fallback: bool,
    /// The records, in encoding order (the decoder applies them in order).
    pub records: Vec<PageRecord>,
}

impl Batch {
    /// Sum of [`Record::model_wire_bytes`] over the records.
    pub fn model_wire_bytes(&self) -> u64 {
        self.records.iter().map(|r| r.record.model_wire_bytes()).sum()
    }
}

/// A [`Record`] whose payload is borrowed (from a batch's wire encoding, see
/// [`parse_batch`](super::wire::parse_batch)): what the decoder reads, so
/// that a payload is never copied before it is decoded into its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordView<'a> {
    /// An all-zero page.
    Zero,
    /// Content the destination holds under this hash.
    Ref(ContentHash),
    /// XBZRLE runs against the cached previous content.
    Delta(&'a [u8]),
    /// The page compressed with `codec`.
    Compressed {
        /// The codec.
        codec: CodecKind,
        /// The compressed bytes.
        bytes: &'a [u8],
    },
    /// The page itself.
    Raw(&'a Page),
}

impl RecordView<'_> {
    /// The owned record.
    pub fn to_record(self) -> Record {
        match self {
            RecordView::Zero => Record::Zero,
            RecordView::Ref(hash) => Record::Ref(hash),
            RecordView::Delta(d) => Record::Delta(d.to_vec()),
            RecordView::Compressed { codec, bytes } => Record::Compressed { codec, bytes: bytes.to_vec() },
            RecordView::Raw(page) => Record::Raw(Box::new(*page)),
        }
    }
}

/// A [`PageRecord`] with a borrowed payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRecordView<'a> {
    /// Index of the page in guest memory.
    pub page_index: u64,
    /// What the page became.
    pub record: RecordView<'a>,
}

/// A [`Batch`] whose payloads borrow its wire encoding (already checked in
/// full: checksum, tags, lengths, record count).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchView<'a> {
    /// See [`Batch::fallback`].
    pub fallback: bool,
    /// The records, in encoding order.
    pub records: Vec<PageRecordView<'a>>,
}

impl BatchView<'_> {
    /// The owned batch.
    pub fn to_batch(&self) -> Batch {
        Batch {
            fallback: self.fallback,
            records: self.records.iter().map(|r| PageRecord { page_index: r.page_index, record: r.record.to_record() }).collect(),
        }
    }
}

impl Batch {
    /// This batch borrowed as a [`BatchView`].
    pub fn view(&self) -> BatchView<'_> {
        BatchView {
            fallback: self.fallback,
            records: self.records.iter().map(|r| PageRecordView { page_index: r.page_index, record: r.record.view() }).collect(),
        }
    }
}

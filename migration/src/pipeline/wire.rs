//! Binary encoding of a [`Batch`].
//!
//! # Layout (version 1)
//!
//! All integers are little-endian.
//!
//! ```text
//!  batch
//!  offset  size       field
//!  ------  ---------  --------------------------------------------------
//!       0  4          magic  "MFPB" (4d 46 50 42)
//!       4  2          version u16 = 1
//!       6  2          flags u16: bit 0 = FALLBACK; other bits must be 0
//!       8  4          record_count u32
//!      12  4          body_len u32 (bytes of the records)
//!      16  body_len   body: record_count records, back to back
//!  16+body_len  8     checksum u64 = xxh3-64 of bytes [0, 16+body_len)
//!
//!  +------+-----+-----+-------+--------+=========================+----------+
//!  | MFPB | ver |flags| count |body_len|  record  record  ...    | checksum |
//!  +------+-----+-----+-------+--------+=========================+----------+
//!
//!  record
//!  +-----+------------+-------------+==============================+
//!  | tag | page_index | payload_len | payload (payload_len bytes)  |
//!  | u8  |    u64     |     u32     |                              |
//!  +-----+------------+-------------+==============================+
//!
//!  tag  record      payload                                 payload_len
//!  ---  ----------  --------------------------------------  -----------
//!    0  Zero        none                                    0
//!    1  Ref         content hash, u128 little-endian        16
//!    2  Delta       XBZRLE runs (see `xbzrle_apply`)        0..=4096
//!    3  Lz4         LZ4 block, expands to 4096 bytes        1..=4096
//!    4  Zstd        one zstd frame, expands to 4096 bytes   1..=4096
//!    5  Raw         the page                                4096
//! ```
//!
//! # Checks, in order
//!
//! [`decode_batch`] never panics; it returns a [`WireError`]:
//! the input ends before the magic, the version, the header or the checksum
//! ([`Truncated`](WireError::Truncated)); the magic is wrong
//! ([`BadMagic`](WireError::BadMagic)); the version is not 1
//! ([`UnsupportedVersion`](WireError::UnsupportedVersion)); bytes follow the
//! checksum ([`TrailingBytes`](WireError::TrailingBytes)); the checksum does
//! not match ([`BadChecksum`](WireError::BadChecksum)); then, inside a body
//! whose checksum matched (so only a faulty encoder gets here): unknown flag
//! bits, unknown tags, payloads longer than a page
//! ([`LengthOverflow`](WireError::LengthOverflow)) or of the wrong length for
//! their tag, records running past the body, or a record count that does
//! not match the body. The magic and version are checked before the checksum
//! so that a foreign or newer stream is named as such, not as corruption.
//!
//! # Versioning policy
//!
//! The version changes whenever the meaning of existing bytes changes; a
//! decoder rejects any version it does not know (no best-effort reading).
//! Additions that an old decoder may safely refuse use a new flag bit or a
//! new tag, which an old decoder rejects as unknown. Both ends of a
//! migration run the same build of this crate, so no negotiation is needed.

use super::compress::CodecKind;
use super::hash::ContentHash;
use super::record::{Batch, BatchView, PageRecord, PageRecordView, Record, RecordView};
use super::PAGE_SIZE;

/// First bytes of every batch.
pub const MAGIC: [u8; 4] = *b"MFPB";
/// The version this build writes and reads.
pub const VERSION: u16 = 1;
/// Flag: the batch answers missing references (see [`Batch::fallback`]).
pub const FLAG_FALLBACK: u16 = 1;
/// Bytes before the body.
pub const HEADER_BYTES: usize = 16;
/// Bytes of the trailing checksum.
pub const CHECKSUM_BYTES: usize = 8;
/// Bytes before each record's payload.
pub const RECORD_HEADER_BYTES: usize = 13;
/// Longest payload of any record.
pub const MAX_PAYLOAD_BYTES: usize = PAGE_SIZE;

const TAG_ZERO: u8 = 0;
const TAG_REF: u8 = 1;
const TAG_DELTA: u8 = 2;
const TAG_LZ4: u8 = 3;
const TAG_ZSTD: u8 = 4;
const TAG_RAW: u8 = 5;

/// A batch could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ends too early.
    #[error("truncated batch: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the decoder needed at that point.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The input does not start with [`MAGIC`].
    #[error("bad magic {found:02x?}, expected \"MFPB\"")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The version is not [`VERSION`].
    #[error("unsupported batch version {found} (this build reads version {VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// Bytes follow the checksum.
    #[error("{extra} bytes after the end of the batch")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The checksum does not match the bytes.
    #[error("checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    BadChecksum {
        /// Checksum in the batch.
        stored: u64,
        /// Checksum of the bytes received.
        computed: u64,
    },
    /// Flag bits this version does not define.
    #[error("unknown flag bits {flags:#06x}")]
    UnknownFlags {
        /// The flags.
        flags: u16,
    },
    /// A record has a tag this version does not define.
    #[error("record {record}: unknown tag {tag}")]
    UnknownTag {
        /// Position of the record in the batch.
        record: u32,
        /// The tag.
        tag: u8,
    },
    /// A record's payload is longer than any record may be.
    #[error("record {record}: payload length {len} exceeds the maximum of {MAX_PAYLOAD_BYTES}")]
    LengthOverflow {
        /// Position of the record in the batch.
        record: u32,
        /// The length.
        len: u64,
    },
    /// A record's payload length does not fit its tag.
    #[error("record {record}: a {kind} payload cannot be {len} bytes")]
    BadPayloadLength {
        /// Position of the record in the batch.
        record: u32,
        /// The record kind.
        kind: &'static str,
        /// The length.
        len: u64,
    },
    /// The body holds more bytes than its declared records.
    #[error("{declared} records declared but {extra} body bytes remain after them")]
    RecordCountMismatch {
        /// The record count in the header.
        declared: u32,
        /// Bytes left over.
        extra: u64,
    },
    /// The batch exceeds what the header's 32-bit fields can describe.
    #[error("batch too large for the wire format: {records} records, {body_bytes} body bytes")]
    BatchTooLarge {
        /// Records.
        records: usize,
        /// Body bytes.
        body_bytes: usize,
    },
}

/// Appends the encoding of `batch` to `out`.
pub fn encode_batch(batch: &Batch, out: &mut Vec<u8>) -> Result<(), WireError> {
    let body_bytes: usize = batch.records.iter().map(|r| RECORD_HEADER_BYTES + r.record.payload_len()).sum();
    let too_large = || WireError::BatchTooLarge { records: batch.records.len(), body_bytes };
    let count = u32::try_from(batch.records.len()).map_err(|_| too_large())?;
    let body_len = u32::try_from(body_bytes).map_err(|_| too_large())?;
    let start = out.len();
    out.reserve(HEADER_BYTES + body_bytes + CHECKSUM_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let flags = if batch.fallback { FLAG_FALLBACK } else { 0 };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&body_len.to_le_bytes());
    for PageRecord { page_index, record } in &batch.records {
        let (tag, payload): (u8, &[u8]) = match record {
            Record::Zero => (TAG_ZERO, &[]),
            Record::Ref(_) => (TAG_REF, &[]),
            Record::Delta(d) => (TAG_DELTA, d),
            Record::Compressed { codec: CodecKind::Lz4, bytes } => (TAG_LZ4, bytes),
            Record::Compressed { codec: CodecKind::Zstd, bytes } => (TAG_ZSTD, bytes),
            Record::Raw(page) => (TAG_RAW, &page[..]),
        };
        out.push(tag);
        out.extend_from_slice(&page_index.to_le_bytes());
        // Each payload is at most a page (or a hash), so this cannot truncate.
        out.extend_from_slice(&(record.payload_len() as u32).to_le_bytes());
        match record {
            Record::Ref(hash) => out.extend_from_slice(&hash.to_le_bytes()),
            _ => out.extend_from_slice(payload),
        }
    }
    let checksum = xxhash_rust::xxh3::xxh3_64(&out[start..]);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(())
}

/// Decodes one batch that fills `bytes` exactly.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, WireError> {
    parse_batch(bytes).map(|view| view.to_batch())
}

/// Checks one batch that fills `bytes` exactly, as [`decode_batch`] does,
/// and returns its records with their payloads borrowed from `bytes`.
pub fn parse_batch(bytes: &[u8]) -> Result<BatchView<'_>, WireError> {
    let mut r = Reader { bytes, pos: 0 };
    let magic: [u8; 4] = r.array()?;
    if magic != MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let version = u16::from_le_bytes(r.array()?);
    if version != VERSION {
        return Err(WireError::UnsupportedVersion { found: version });
    }
    let flags = u16::from_le_bytes(r.array()?);
    let count = u32::from_le_bytes(r.array()?);
    let body_len = u32::from_le_bytes(r.array()?);
    let total = (HEADER_BYTES + CHECKSUM_BYTES) as u64 + u64::from(body_len);
    let available = bytes.len() as u64;
    if available < total {
        return Err(WireError::Truncated { needed: total, available });
    }
    if available > total {
        return Err(WireError::TrailingBytes { extra: available - total });
    }
    // `total` fits in the input's length, so these do not overflow.
    let body_len = body_len as usize;
    let checked_len = HEADER_BYTES + body_len;
    let (checked, stored) = bytes.split_at(checked_len);
    let mut stored_bytes = [0u8; 8];
    stored_bytes.copy_from_slice(stored);
    let stored = u64::from_le_bytes(stored_bytes);
    let computed = xxhash_rust::xxh3::xxh3_64(checked);
    if stored != computed {
        return Err(WireError::BadChecksum { stored, computed });
    }
    if flags & !FLAG_FALLBACK != 0 {
        return Err(WireError::UnknownFlags { flags });
    }

    let mut body = Reader { bytes: &checked[HEADER_BYTES..], pos: 0 };
    let mut records = Vec::with_capacity((count as usize).min(body_len / RECORD_HEADER_BYTES));
    for record in 0..count {
        records.push(read_record(&mut body, record)?);
    }
    let extra = body.bytes.len() - body.pos;
    if extra != 0 {
        return Err(WireError::RecordCountMismatch { declared: count, extra: extra as u64 });
    }
    Ok(BatchView { fallback: flags & FLAG_FALLBACK != 0, records })
}

fn read_record<'a>(r: &mut Reader<'a>, record: u32) -> Result<PageRecordView<'a>, WireError> {
    let [tag] = r.array()?;
    let page_index = u64::from_le_bytes(r.array()?);
    let len = u32::from_le_bytes(r.array()?) as usize;
    if len > MAX_PAYLOAD_BYTES {
        return Err(WireError::LengthOverflow { record, len: len as u64 });
    }
    let bad_len = |kind| WireError::BadPayloadLength { record, kind, len: len as u64 };
    let payload = r.take(len)?;
    let record = match tag {
        TAG_ZERO if len == 0 => RecordView::Zero,
        TAG_ZERO => return Err(bad_len("zero")),
        TAG_REF => {
            let hash: [u8; 16] = payload.try_into().map_err(|_| bad_len("ref"))?;
            RecordView::Ref(ContentHash::from_le_bytes(hash))
        }
        TAG_DELTA => RecordView::Delta(payload),
        TAG_LZ4 | TAG_ZSTD if len == 0 => return Err(bad_len("compressed")),
        TAG_LZ4 => RecordView::Compressed { codec: CodecKind::Lz4, bytes: payload },
        TAG_ZSTD => RecordView::Compressed { codec: CodecKind::Zstd, bytes: payload },
        TAG_RAW => RecordView::Raw(payload.try_into().map_err(|_| bad_len("raw"))?),
        tag => return Err(WireError::UnknownTag { record, tag }),
    };
    Ok(PageRecordView { page_index, record })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(WireError::Truncated { needed: self.pos as u64 + n as u64, available: self.bytes.len() as u64 })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

impl Batch {
    /// The wire encoding of this batch.
    pub fn to_wire(&self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        encode_batch(self, &mut out)?;
        Ok(out)
    }

    /// Decodes a batch from its wire encoding.
    pub fn from_wire(bytes: &[u8]) -> Result<Batch, WireError> {
        decode_batch(bytes)
    }
}

/// Recomputes the checksum of an encoded batch (tests craft invalid bodies
/// with it).
#[cfg(test)]
pub(crate) fn reseal(bytes: &mut [u8]) {
    let n = bytes.len() - CHECKSUM_BYTES;
    let sum = xxhash_rust::xxh3::xxh3_64(&bytes[..n]);
    bytes[n..].copy_from_slice(&sum.to_le_bytes());
}

//! Framing of the migration stream (documented with a diagram in
//! docs/validator.md).
//!
//! ```text
//!  0      4     5     6       8           12          16            16+len     24+len
//!  +------+-----+-----+-------+-----------+-----------+--- payload ---+----------+
//!  |"MFMS"| ver |kind | flags | len (u32) | seq (u32) |   len bytes   | xxh3-64  |
//!  +------+-----+-----+-------+-----------+-----------+---------------+----------+
//! ```
//!
//! All integers little-endian. `seq` counts frames per direction from 0, so a
//! lost, repeated or reordered frame is detected; the trailer is xxh3-64 of
//! header and payload, so any corrupted byte is. Page batches travel inside
//! `Pages` frames in the pipeline's own "MFPB" format, which has its own
//! checksum. Control payloads are JSON (small, rare, self-describing).

use std::io::{Read, Write};

use xxhash_rust::xxh3::Xxh3;

/// Frame magic.
pub const MAGIC: &[u8; 4] = b"MFMS";
/// Protocol version.
pub const VERSION: u8 = 1;
/// Header bytes.
pub const HEADER_BYTES: usize = 16;
/// Trailer bytes.
pub const TRAILER_BYTES: usize = 8;
/// Largest payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;
/// Frame flag: sent while the source's guest is paused (the stop-and-copy
/// and what follows it). Informational: a receiver needs no flag to decode
/// a frame; fault injection uses it to find the stop-and-copy.
pub const FLAG_GUEST_PAUSED: u16 = 1;
/// Every flag this version knows; a frame with another is refused.
pub const KNOWN_FLAGS: u16 = FLAG_GUEST_PAUSED;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Source → destination: JSON [`super::Hello`].
    Hello = 1,
    /// Destination → source: JSON [`super::HelloAck`], memory ready.
    HelloAck = 2,
    /// Source → destination: a pipeline batch ("MFPB") of one round.
    Pages = 3,
    /// Source → destination: JSON [`super::RoundEnd`].
    RoundEnd = 4,
    /// Source → destination: JSON [`super::Switchover`] then, in the next
    /// frame, the vCPU state bytes.
    Switchover = 5,
    /// Source → destination: the vCPU state ([`crate::kvm::VcpuState`] encoding).
    VcpuState = 6,
    /// Destination → source: JSON [`super::Resumed`].
    Resumed = 7,
    /// Either way: JSON [`super::Abort`]; the sender gives up.
    Abort = 8,
    // Site frames (gang and site dedup, [`crate::site::protocol`]).
    /// Destination → source: the site's Bloom summary.
    SiteSummary = 16,
    /// Source → destination: content hashes to look up in the site's store.
    IndexQuery = 17,
    /// Destination → source: which of them the site holds.
    IndexReply = 18,
    /// Source → destination: which references could not be resolved?
    ResolveRefs = 19,
    /// Destination → source: those references.
    MissingRefs = 20,
    // Post-copy frames ([`super::postcopy`]).
    /// Source → destination: JSON [`super::postcopy::PostcopySwitch`], the
    /// guest paused for post-copy; the vCPU state follows (after the
    /// pending-page bitmap when not every page is pending).
    PostcopySwitch = 32,
    /// Source → destination: the pages still to come, a bitmap of
    /// little-endian u64 words (bit `i` of word `i / 64` is page `i`).
    PendingPages = 33,
    /// Source → destination: a pipeline batch ("MFPB") of post-copy pages,
    /// pushed or requested.
    PostcopyPages = 34,
    /// Destination → source: pages the resumed guest faulted on
    /// (little-endian u64 page indices), to be sent before the push goes on.
    PageRequest = 35,
    /// Source → destination: JSON [`super::postcopy::PostcopyDone`], every
    /// pending page sent.
    PostcopyDone = 36,
    /// Destination → source: JSON [`super::postcopy::PostcopyComplete`],
    /// every pending page placed.
    PostcopyComplete = 37,
    /// Source → destination, first frame of a multifd data stream: JSON
    /// [`super::multifd::StreamHello`].
    StreamHello = 24,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Hello,
            2 => Kind::HelloAck,
            3 => Kind::Pages,
            4 => Kind::RoundEnd,
            5 => Kind::Switchover,
            6 => Kind::VcpuState,
            7 => Kind::Resumed,
            8 => Kind::Abort,
            16 => Kind::SiteSummary,
            17 => Kind::IndexQuery,
            18 => Kind::IndexReply,
            19 => Kind::ResolveRefs,
            20 => Kind::MissingRefs,
            32 => Kind::PostcopySwitch,
            33 => Kind::PendingPages,
            34 => Kind::PostcopyPages,
            35 => Kind::PageRequest,
            36 => Kind::PostcopyDone,
            37 => Kind::PostcopyComplete,
            24 => Kind::StreamHello,
            _ => return None,
        })
    }
}

/// A frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed or timed out.
    #[error("connection: {}", super::source::describe_io(.0))]
    Io(#[from] std::io::Error),
    /// Not our magic or version.
    #[error("frame {seq}: bad header (magic {magic:02x?}, version {version}; expected \"MFMS\" version {VERSION})")]
    Header {
        /// Expected sequence number.
        seq: u32,
        /// Magic seen.
        magic: [u8; 4],
        /// Version seen.
        version: u8,
    },
    /// Flags this version does not know.
    #[error("frame {seq}: unknown flags {flags:#06x} (this version knows {KNOWN_FLAGS:#06x})")]
    Flags {
        /// Sequence number.
        seq: u32,
        /// Flags seen.
        flags: u16,
    },
    /// Unknown kind.
    #[error("frame {seq}: unknown kind {kind}")]
    Kind {
        /// Sequence number.
        seq: u32,
        /// Kind byte.
        kind: u8,
    },
    /// Payload too large.
    #[error("frame {seq}: payload of {len} bytes exceeds {MAX_PAYLOAD_BYTES}")]
    TooLarge {
        /// Sequence number.
        seq: u32,
        /// Declared length.
        len: usize,
    },
    /// Sequence number out of order.
    #[error("frame sequence {got}, expected {expected} (a frame was lost, repeated or reordered)")]
    Sequence {
        /// Seen.
        got: u32,
        /// Expected.
        expected: u32,
    },
    /// Checksum mismatch.
    #[error("frame {seq} ({kind:?}, {len} bytes): checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    Checksum {
        /// Sequence number.
        seq: u32,
        /// Kind.
        kind: Kind,
        /// Payload length.
        len: usize,
        /// Trailer.
        stored: u64,
        /// Computed.
        computed: u64,
    },
}

/// A received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Kind.
    pub kind: Kind,
    /// Flags ([`FLAG_GUEST_PAUSED`]).
    pub flags: u16,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Frame {
    /// Bytes on the wire for a payload of `len`.
    pub fn wire_bytes(len: usize) -> u64 {
        (HEADER_BYTES + len + TRAILER_BYTES) as u64
    }
}

/// Writes frames with increasing sequence numbers.
#[derive(Debug)]
pub struct FrameWriter<W: Write> {
    inner: W,
    seq: u32,
    flags: u16,
    /// Bytes written so far.
    pub bytes: u64,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    /// Wraps a stream.
    pub fn new(inner: W) -> FrameWriter<W> {
        FrameWriter { inner, seq: 0, flags: 0, bytes: 0, buf: Vec::new() }
    }

    /// Flags of the frames written from now on.
    pub fn set_flags(&mut self, flags: u16) {
        self.flags = flags;
    }

    /// The stream, unwrapped.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Writes one frame; returns its bytes on the wire.
    pub fn send(&mut self, kind: Kind, payload: &[u8]) -> std::io::Result<u64> {
        assert!(payload.len() <= MAX_PAYLOAD_BYTES, "payload too large");
        self.buf.clear();
        self.buf.extend_from_slice(MAGIC);
        self.buf.push(VERSION);
        self.buf.push(kind as u8);
        self.buf.extend_from_slice(&self.flags.to_le_bytes());
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&self.seq.to_le_bytes());
        let mut h = Xxh3::new();
        h.update(&self.buf);
        h.update(payload);
        let sum = h.digest();
        self.inner.write_all(&self.buf)?;
        self.inner.write_all(payload)?;
        self.inner.write_all(&sum.to_le_bytes())?;
        self.seq = self.seq.wrapping_add(1);
        let n = Frame::wire_bytes(payload.len());
        self.bytes += n;
        Ok(n)
    }

    /// Sends a JSON control payload.
    pub fn send_json<T: serde::Serialize>(&mut self, kind: Kind, value: &T) -> std::io::Result<u64> {
        let payload = serde_json::to_vec(value).expect("control payloads serialize");
        self.send(kind, &payload)
    }

    /// Flushes the stream.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }

    /// The stream.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// A writer on `inner` that goes on with this one's sequence, flags
    /// and byte count (post-copy moves the stream to another thread on
    /// another handle of the same connection; flush this one first).
    pub fn continue_on<W2: Write>(&self, inner: W2) -> FrameWriter<W2> {
        FrameWriter { inner, seq: self.seq, flags: self.flags, bytes: self.bytes, buf: Vec::new() }
    }
}

/// Reads frames and checks sequence and checksum.
#[derive(Debug)]
pub struct FrameReader<R: Read> {
    inner: R,
    seq: u32,
    /// Bytes read so far.
    pub bytes: u64,
}

impl<R: Read> FrameReader<R> {
    /// Wraps a stream.
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader { inner, seq: 0, bytes: 0 }
    }

    /// A reader on `inner` that goes on with this one's sequence and byte
    /// count; `inner` must be another handle of the same unbuffered
    /// connection (nothing read ahead here is lost).
    pub fn continue_on<R2: Read>(&self, inner: R2) -> FrameReader<R2> {
        FrameReader { inner, seq: self.seq, bytes: self.bytes }
    }

    /// The stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads the next frame.
    pub fn recv(&mut self) -> Result<Frame, FrameError> {
        let mut payload = Vec::new();
        let head = self.recv_into(&mut payload)?;
        payload.truncate(head.len);
        Ok(Frame { kind: head.kind, flags: head.flags, payload })
    }

    /// Reads the next frame's payload into `buf[..len]` (growing `buf` if
    /// needed, never shrinking it, so that one buffer serves a whole stream
    /// without allocating or clearing per frame); returns its header.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<FrameHead, FrameError> {
        let mut header = [0u8; HEADER_BYTES];
        self.inner.read_exact(&mut header)?;
        let magic: [u8; 4] = header[..4].try_into().expect("4 bytes");
        if &magic != MAGIC || header[4] != VERSION {
            return Err(FrameError::Header { seq: self.seq, magic, version: header[4] });
        }
        let kind = Kind::from_u8(header[5]).ok_or(FrameError::Kind { seq: self.seq, kind: header[5] })?;
        let flags = u16::from_le_bytes([header[6], header[7]]);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::Flags { seq: self.seq, flags });
        }
        let len = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
        let seq = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD_BYTES {
            return Err(FrameError::TooLarge { seq, len });
        }
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let payload = &mut buf[..len];
        self.inner.read_exact(payload)?;
        let mut trailer = [0u8; TRAILER_BYTES];
        self.inner.read_exact(&mut trailer)?;
        let mut h = Xxh3::new();
        h.update(&header);
        h.update(payload);
        let computed = h.digest();
        let stored = u64::from_le_bytes(trailer);
        if computed != stored {
            return Err(FrameError::Checksum { seq, kind, len, stored, computed });
        }
        if seq != self.seq {
            return Err(FrameError::Sequence { got: seq, expected: self.seq });
        }
        self.seq = self.seq.wrapping_add(1);
        self.bytes += Frame::wire_bytes(len);
        Ok(FrameHead { kind, flags, len })
    }
}

/// The header of a frame read by [`FrameReader::recv_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// Kind.
    pub kind: Kind,
    /// Flags ([`FLAG_GUEST_PAUSED`]).
    pub flags: u16,
    /// Payload bytes.
    pub len: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<u8> {
        let mut w = FrameWriter::new(Vec::new());
        w.send(Kind::Hello, b"{\"a\":1}").unwrap();
        w.send(Kind::Pages, &[7u8; 1000]).unwrap();
        w.send(Kind::Abort, b"").unwrap();
        assert_eq!(w.bytes, 3 * 24 + 7 + 1000);
        w.inner
    }

    #[test]
    fn round_trip() {
        let bytes = frames();
        let mut r = FrameReader::new(&bytes[..]);
        assert_eq!(r.recv().unwrap(), Frame { kind: Kind::Hello, flags: 0, payload: b"{\"a\":1}".to_vec() });
        assert_eq!(r.recv().unwrap().payload, vec![7u8; 1000]);
        assert_eq!(r.recv().unwrap().kind, Kind::Abort);
        assert!(matches!(r.recv(), Err(FrameError::Io(_))), "end of stream");
        assert_eq!(r.bytes, bytes.len() as u64);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let bytes = frames();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x20;
            let mut r = FrameReader::new(&bad[..]);
            let all_ok = (0..3).all(|_| r.recv().is_ok());
            assert!(!all_ok, "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn one_buffer_serves_frames_of_any_size() {
        let bytes = frames();
        let mut r = FrameReader::new(&bytes[..]);
        let mut buf = Vec::new();
        let h = r.recv_into(&mut buf).unwrap();
        assert_eq!((h.kind, &buf[..h.len]), (Kind::Hello, &b"{\"a\":1}"[..]));
        let h = r.recv_into(&mut buf).unwrap();
        assert_eq!((h.kind, &buf[..h.len]), (Kind::Pages, &[7u8; 1000][..]));
        let h = r.recv_into(&mut buf).unwrap();
        assert_eq!((h.kind, h.len, buf.len()), (Kind::Abort, 0, 1000), "shorter frame, buffer kept");
    }

    #[test]
    fn lost_frame_is_a_sequence_error() {
        let bytes = frames();
        let first = HEADER_BYTES + 7 + TRAILER_BYTES;
        let mut skipped = bytes[..0].to_vec();
        skipped.extend_from_slice(&bytes[first..]);
        let mut r = FrameReader::new(&skipped[..]);
        assert!(matches!(r.recv(), Err(FrameError::Sequence { got: 1, expected: 0 })));
    }

    #[test]
    fn oversized_length_is_refused_before_allocating() {
        let mut bytes = frames();
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = FrameReader::new(&bytes[..]);
        assert!(matches!(r.recv(), Err(FrameError::TooLarge { .. })));
    }
}

//! Page compression with reusable contexts.
//!
//! - **lz4**: the LZ4 *block* format (lz4_flex), without a size prefix: the
//!   decompressed size is always one page.
//! - **zstd**: one zstd frame per page (with its content-size field), made by
//!   a [`zstd::bulk::Compressor`] kept for the life of the
//!   [`PageCompressor`]. Creating a context per page costs about five times
//!   the compression of a page, so contexts are never created per call.

use super::{Page, PAGE_SIZE};
use crate::strategy::Codec;
use std::fmt;
use std::io;

/// Which codec produced a compressed record. The zstd level is not needed to
/// decompress and is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// LZ4 block.
    Lz4,
    /// Zstandard frame.
    Zstd,
}

impl From<Codec> for CodecKind {
    fn from(codec: Codec) -> CodecKind {
        match codec {
            Codec::Lz4 => CodecKind::Lz4,
            Codec::Zstd { .. } => CodecKind::Zstd,
        }
    }
}

impl fmt::Display for CodecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecKind::Lz4 => "lz4",
            CodecKind::Zstd => "zstd",
        })
    }
}

/// Compression failed (never because of the input: these are resource or
/// library errors).
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// zstd refused to create a context.
    #[error("cannot create a zstd compression context at level {level}")]
    ZstdContext {
        /// The level asked for.
        level: i32,
        /// The library's error.
        #[source]
        source: io::Error,
    },
    /// zstd failed to compress.
    #[error("zstd compression failed")]
    Zstd(#[source] io::Error),
    /// lz4 failed to compress.
    #[error("lz4 compression failed")]
    Lz4(#[source] lz4_flex::block::CompressError),
}

/// Decompression failed: the payload is not a valid compressed page.
#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    /// The lz4 block is corrupt or expands past a page.
    #[error("invalid lz4 block")]
    Lz4(#[source] lz4_flex::block::DecompressError),
    /// The zstd frame is corrupt or expands past a page.
    #[error("invalid zstd frame")]
    Zstd(#[source] io::Error),
    /// zstd refused to create a context.
    #[error("cannot create a zstd decompression context")]
    ZstdContext(#[source] io::Error),
    /// The payload decompressed (or declares it decompresses) to a size other
    /// than one page.
    #[error("decompressed size is {len} bytes, not {PAGE_SIZE}")]
    WrongSize {
        /// The size found.
        len: u64,
    },
}

/// Compresses pages with one codec, reusing its context.
pub struct PageCompressor {
    codec: Codec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
}

impl fmt::Debug for PageCompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageCompressor").field("codec", &self.codec).finish_non_exhaustive()
    }
}

/// Upper bound of a compressed page, for either codec.
fn max_compressed_len() -> usize {
    lz4_flex::block::get_maximum_output_size(PAGE_SIZE).max(zstd::zstd_safe::compress_bound(PAGE_SIZE))
}

impl PageCompressor {
    /// A compressor for `codec`, creating its context once.
    pub fn new(codec: Codec) -> Result<PageCompressor, CompressError> {
        let zstd = match codec {
            Codec::Lz4 => None,
            Codec::Zstd { level } => Some(
                zstd::bulk::Compressor::new(level).map_err(|source| CompressError::ZstdContext { level, source })?,
            ),
        };
        Ok(PageCompressor { codec, zstd })
    }

    /// The codec.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Compresses `page` into `out` (replacing its content). Returns whether
    /// the result is smaller than a page, i.e. worth sending.
    pub fn compress(&mut self, page: &Page, out: &mut Vec<u8>) -> Result<bool, CompressError> {
        out.clear();
        match &mut self.zstd {
            Some(cctx) => {
                out.reserve(max_compressed_len());
                cctx.compress_to_buffer(&page[..], out).map_err(CompressError::Zstd)?;
            }
            None => {
                out.resize(max_compressed_len(), 0);
                let n = lz4_flex::block::compress_into(page, out).map_err(CompressError::Lz4)?;
                out.truncate(n);
            }
        }
        Ok(out.len() < PAGE_SIZE)
    }
}

/// Decompresses pages of either codec, reusing the zstd context.
#[derive(Default)]
pub struct PageDecompressor {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl fmt::Debug for PageDecompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PageDecompressor").field("zstd_context", &self.zstd.is_some()).finish()
    }
}

impl PageDecompressor {
    /// A decompressor; the zstd context is created on first use.
    pub fn new() -> PageDecompressor {
        PageDecompressor::default()
    }

    /// Decompresses `src`, which must expand to exactly one page, into `out`.
    pub fn decompress(&mut self, codec: CodecKind, src: &[u8], out: &mut Page) -> Result<(), DecompressError> {
        let len = match codec {
            CodecKind::Lz4 => lz4_flex::block::decompress_into(src, out).map_err(DecompressError::Lz4)?,
            CodecKind::Zstd => {
                if let Ok(Some(declared)) = zstd::zstd_safe::get_frame_content_size(src) {
                    if declared != PAGE_SIZE as u64 {
                        return Err(DecompressError::WrongSize { len: declared });
                    }
                }
                let dctx = match &mut self.zstd {
                    Some(dctx) => dctx,
                    None => self.zstd.insert(zstd::bulk::Decompressor::new().map_err(DecompressError::ZstdContext)?),
                };
                dctx.decompress_to_buffer(src, &mut out[..]).map_err(DecompressError::Zstd)?
            }
        };
        if len != PAGE_SIZE {
            return Err(DecompressError::WrongSize { len: len as u64 });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_page() -> Box<Page> {
        let mut p = Box::new([0u8; PAGE_SIZE]);
        for (i, b) in p.iter_mut().enumerate() {
            *b = b"the quick brown fox "[i % 20];
        }
        p
    }

    #[test]
    fn both_codecs_round_trip_with_reused_contexts() {
        let mut out = Vec::new();
        let mut page = [0u8; PAGE_SIZE];
        let mut dec = PageDecompressor::new();
        for codec in [Codec::Lz4, Codec::Zstd { level: 1 }, Codec::Zstd { level: 19 }] {
            let mut c = PageCompressor::new(codec).unwrap();
            for _ in 0..3 {
                assert!(c.compress(&text_page(), &mut out).unwrap(), "{codec}");
                assert!(out.len() < 200, "{codec}: {}", out.len());
                dec.decompress(codec.into(), &out, &mut page).unwrap();
                assert_eq!(page, *text_page());
            }
        }
    }

    #[test]
    fn incompressible_pages_are_reported() {
        let mut x: u64 = 1;
        let mut page = [0u8; PAGE_SIZE];
        for b in page.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut out = Vec::new();
        for codec in [Codec::Lz4, Codec::Zstd { level: 3 }] {
            assert!(!PageCompressor::new(codec).unwrap().compress(&page, &mut out).unwrap(), "{codec}");
        }
    }

    #[test]
    fn wrong_sizes_and_garbage_are_errors() {
        let mut page = [0u8; PAGE_SIZE];
        let mut dec = PageDecompressor::new();
        let short = lz4_flex::block::compress(&[1u8; 4000]);
        assert!(matches!(
            dec.decompress(CodecKind::Lz4, &short, &mut page),
            Err(DecompressError::WrongSize { len: 4000 })
        ));
        let long = lz4_flex::block::compress(&[1u8; 5000]);
        assert!(matches!(dec.decompress(CodecKind::Lz4, &long, &mut page), Err(DecompressError::Lz4(_))));
        for n in [4000, 5000] {
            let z = zstd::bulk::compress(&vec![1u8; n], 1).unwrap();
            assert!(
                matches!(dec.decompress(CodecKind::Zstd, &z, &mut page), Err(DecompressError::WrongSize { len }) if len == n as u64)
            );
        }
        assert!(matches!(dec.decompress(CodecKind::Zstd, &[1, 2, 3, 4, 5], &mut page), Err(DecompressError::Zstd(_))));
        assert!(dec.decompress(CodecKind::Lz4, &[0xF0, 1, 2], &mut page).is_err());
    }
}

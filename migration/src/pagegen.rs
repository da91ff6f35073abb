//! Deterministic page contents for benchmarks, profiles and tests: the mixes
//! named in the reduction benchmarks (zero, text-like, binary-like, random,
//! small re-dirty changes). Every generator is a pure function of its seed
//! (SplitMix64), so a benchmark measures the same bytes on every run.

use crate::PAGE_SIZE_BYTES;

const PAGE: usize = PAGE_SIZE_BYTES as usize;

/// SplitMix64: a tiny, well-distributed generator, enough for test content.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The kinds of page content the benchmarks measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// All zero.
    Zero,
    /// Text: words from a small vocabulary (logs, configuration, source code).
    Text,
    /// Binary data structures: small integers, pointers sharing high bits, padding.
    Binary,
    /// Uniformly random bytes (encrypted or already compressed data).
    Random,
}

impl PageKind {
    /// All kinds, in table order.
    pub const ALL: [PageKind; 4] = [PageKind::Zero, PageKind::Text, PageKind::Binary, PageKind::Random];

    /// Name used in benchmark tables.
    pub fn name(self) -> &'static str {
        match self {
            PageKind::Zero => "zero",
            PageKind::Text => "text",
            PageKind::Binary => "binary",
            PageKind::Random => "random",
        }
    }
}

const WORDS: [&str; 64] = [
    "the", "of", "and", "to", "in", "is", "for", "that", "with", "on", "as", "this", "by", "from", "at", "error",
    "request", "response", "user", "session", "time", "value", "return", "if", "else", "while", "struct", "int",
    "const", "static", "void", "char", "GET", "POST", "HTTP/1.1", "200", "404", "INFO", "WARN", "DEBUG", "server",
    "client", "memory", "page", "cache", "hit", "miss", "key", "data", "index", "table", "row", "commit", "lock",
    "thread", "queue", "event", "id", "name", "path", "/var/log", "2026-11-22", "ms", "ok",
];

/// Fills `page` with content of `kind`, determined by `seed`.
pub fn fill(page: &mut [u8], kind: PageKind, seed: u64) {
    assert_eq!(page.len(), PAGE, "pages are {PAGE} bytes");
    let mut rng = SplitMix64::new(seed);
    match kind {
        PageKind::Zero => page.fill(0),
        PageKind::Random => {
            for chunk in page.chunks_exact_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
        }
        PageKind::Text => {
            let mut i = 0;
            while i < PAGE {
                let w = WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes();
                let sep: &[u8] = match rng.below(12) {
                    0 => b"\n",
                    1 => b", ",
                    _ => b" ",
                };
                for &b in w.iter().chain(sep) {
                    if i == PAGE {
                        break;
                    }
                    page[i] = b;
                    i += 1;
                }
            }
        }
        PageKind::Binary => {
            // 32-byte records: a small counter, a heap pointer, a small enum, a
            // float-ish value, then zero padding.
            let heap_base: u64 = 0x0000_7f3a_0000_0000;
            for (r, rec) in page.chunks_exact_mut(32).enumerate() {
                rec[..8].copy_from_slice(&(r as u64 + rng.below(4)).to_le_bytes());
                rec[8..16].copy_from_slice(&(heap_base + rng.below(1 << 20) * 16).to_le_bytes());
                rec[16..20].copy_from_slice(&(rng.below(8) as u32).to_le_bytes());
                rec[20..24].copy_from_slice(&((rng.below(1000) as f32) * 0.25).to_le_bytes());
                rec[24..32].fill(0);
            }
        }
    }
}

/// A new page of `kind`.
pub fn page(kind: PageKind, seed: u64) -> Vec<u8> {
    let mut p = vec![0u8; PAGE];
    fill(&mut p, kind, seed);
    p
}

/// Re-dirties `page` in place: rewrites scattered 8-byte words until about
/// `changed_fraction` of its bytes differ (a re-written page that changed a
/// little, the case delta encoding is for).
pub fn redirty(page: &mut [u8], changed_fraction: f64, seed: u64) {
    let mut rng = SplitMix64::new(seed);
    let words = PAGE / 8;
    let n = ((changed_fraction.clamp(0.0, 1.0) * words as f64).round() as usize).min(words);
    for _ in 0..n {
        let w = rng.below(words as u64) as usize;
        let new = rng.next_u64() | 1; // never all zero, so the word changes unless it was equal
        page[w * 8..w * 8 + 8].copy_from_slice(&new.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_distinct() {
        for kind in PageKind::ALL {
            assert_eq!(page(kind, 7), page(kind, 7), "{}", kind.name());
        }
        assert_ne!(page(PageKind::Text, 1), page(PageKind::Text, 2));
        assert!(page(PageKind::Zero, 1).iter().all(|&b| b == 0));
        let text = page(PageKind::Text, 3);
        assert!(text.iter().all(|b| b.is_ascii()), "text pages are ASCII");
    }

    #[test]
    fn redirty_changes_about_the_requested_fraction() {
        let base = page(PageKind::Binary, 9);
        let mut p = base.clone();
        redirty(&mut p, 0.05, 1);
        let changed = base.iter().zip(&p).filter(|(a, b)| a != b).count();
        // 5% of 512 words = 26 words; collisions and equal bytes make it a bit less.
        assert!(changed > 100 && changed <= 26 * 8, "{changed}");
    }
}

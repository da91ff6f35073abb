//! Deterministic page generators for tests.

use crate::pipeline::{Page, PAGE_SIZE};

/// SplitMix64: a tiny seeded generator, enough for test data.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Incompressible bytes.
pub(crate) fn random_page(seed: u64) -> Box<Page> {
    let mut rng = SplitMix(seed);
    let mut page = Box::new([0u8; PAGE_SIZE]);
    for chunk in page.chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    page
}

/// Compressible bytes: words from a small vocabulary, with some zero runs.
pub(crate) fn text_page(seed: u64) -> Box<Page> {
    const WORDS: [&[u8]; 8] =
        [b"page ", b"memory ", b"fabric ", b"\0\0\0\0\0\0\0\0", b"site ", b"migrate ", b"0123 ", b"dirty "];
    let mut rng = SplitMix(seed);
    let mut page = Box::new([0u8; PAGE_SIZE]);
    let mut i = 0;
    while i < PAGE_SIZE {
        let w = WORDS[rng.below(WORDS.len())];
        let n = w.len().min(PAGE_SIZE - i);
        page[i..i + n].copy_from_slice(&w[..n]);
        i += n;
    }
    page
}

/// `page` with `count` bytes changed at seeded positions (never to their old value).
pub(crate) fn mutate(page: &Page, seed: u64, count: usize) -> Box<Page> {
    let mut rng = SplitMix(seed);
    let mut out = Box::new(*page);
    for _ in 0..count {
        let i = rng.below(PAGE_SIZE);
        out[i] ^= (rng.below(255) + 1) as u8;
    }
    out
}

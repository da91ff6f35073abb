//! Zero-page detection.

/// Whether every byte of `page` is zero.
///
/// Scans 64-byte blocks, OR-ing each block's bytes together (the compiler
/// turns this into wide vector loads), and stops at the first non-zero
/// block, so a typical non-zero page is rejected after its first few words.
pub fn is_zero_page(page: &[u8]) -> bool {
    let mut blocks = page.chunks_exact(64);
    let blocks_zero = blocks.by_ref().all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0);
    blocks_zero && blocks.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_non_zero_byte_is_seen() {
        let page = [0u8; 4096];
        assert!(is_zero_page(&page));
        for i in [0, 1, 7, 8, 63, 64, 2047, 4095] {
            let mut p = page;
            p[i] = 0x80;
            assert!(!is_zero_page(&p), "byte {i}");
        }
        // Lengths that are not a multiple of the block size.
        assert!(is_zero_page(&[0u8; 70]));
        let mut odd = [0u8; 70];
        odd[69] = 1;
        assert!(!is_zero_page(&odd));
        assert!(is_zero_page(&[]));
    }
}

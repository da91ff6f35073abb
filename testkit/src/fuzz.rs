//! The proptest configuration the fuzz tests share.

use proptest::test_runner::{Config, RngSeed};

/// The seed every fuzz test uses unless `MEMFABRIC_FUZZ_SEED` says
/// otherwise: the test suite gives the same verdict on every run.
pub const DEFAULT_SEED: u64 = 0x6d65_6d66_6162_7269;

/// Cases per property: `MEMFABRIC_FUZZ_CASES`, else `default_cases` (a few
/// seconds' worth for the normal test suite; the longer runs in
/// docs/development.md set it). The seed is fixed unless
/// `MEMFABRIC_FUZZ_SEED` gives one (a number, or `random` for a fresh one
/// each run), so that the suite's verdict does not depend on luck and the
/// longer runs can explore new cases. Failures are not persisted to files.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("MEMFABRIC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    let rng_seed = seed_from(std::env::var("MEMFABRIC_FUZZ_SEED").ok().as_deref());
    Config { cases, rng_seed, failure_persistence: None, ..Config::default() }
}

fn seed_from(var: Option<&str>) -> RngSeed {
    match var {
        None => RngSeed::Fixed(DEFAULT_SEED),
        Some("random") => RngSeed::Random,
        Some(v) => RngSeed::Fixed(
            v.parse().unwrap_or_else(|_| panic!("MEMFABRIC_FUZZ_SEED={v:?}: expected a number or `random`")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_fixed_unless_the_environment_gives_one() {
        assert!(matches!(seed_from(None), RngSeed::Fixed(DEFAULT_SEED)));
        assert!(matches!(seed_from(Some("42")), RngSeed::Fixed(42)));
        assert!(matches!(seed_from(Some("random")), RngSeed::Random));
    }

    #[test]
    #[should_panic(expected = "expected a number or `random`")]
    fn a_bad_seed_is_refused_with_its_value() {
        seed_from(Some("0x12"));
    }
}

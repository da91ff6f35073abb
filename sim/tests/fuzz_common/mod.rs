//! What the property-based fuzz tests share: how many cases to run and the
//! values that mutations put into valid inputs.
#![allow(dead_code)]

use proptest::test_runner::{Config, RngSeed};

/// Cases per property: `MEMFABRIC_FUZZ_CASES`, else a few seconds' worth
/// for the normal test suite. The longer runs in docs/development.md set it.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("MEMFABRIC_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default_cases);
    // A fixed seed unless MEMFABRIC_FUZZ_SEED says otherwise (a number, or
    // `random` for a fresh one each run): the test suite gives the same
    // verdict on every run; the longer runs explore new cases.
    let rng_seed = match std::env::var("MEMFABRIC_FUZZ_SEED").as_deref() {
        Ok("random") => RngSeed::Random,
        Ok(v) => RngSeed::Fixed(v.parse().expect("MEMFABRIC_FUZZ_SEED: a number or `random`")),
        Err(_) => RngSeed::Fixed(0x6d65_6d66_6162_7269),
    };
    Config { cases, rng_seed, failure_persistence: None, ..Config::default() }
}

/// Values a mutation puts where a valid input had a value: edges of every
/// type and unit the inputs use (zero, negative, huge, NaN, empty, wrong type).
pub const EXTREME_VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "0.0",
    "true",
    "\"\"",
    "\"0B\"",
    "\"1B\"",
    "\"16EiB\"",
    "\"1e30TiB\"",
    "\"0s\"",
    "\"1ns\"",
    "\"-5ms\"",
    "\"1e300h\"",
    "\"0bit/s\"",
    "\"1e-300Gbit/s\"",
    "\"1e300Gbit/s\"",
    "\"0%\"",
    "\"100%\"",
    "\"101%\"",
    "\"a\"",
    "[]",
    "[\"a\", \"a\"]",
    "{}",
    "null",
];

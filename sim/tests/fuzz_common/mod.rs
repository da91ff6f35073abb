//! What the property-based fuzz tests share: how many cases to run and the
//! values that mutations put into valid inputs.
#![allow(dead_code)]

/// Cases and seed of every property (shared with the other crates' fuzz
/// tests): `MEMFABRIC_FUZZ_CASES`, `MEMFABRIC_FUZZ_SEED`.
pub use memfabric_testkit::fuzz::config;

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

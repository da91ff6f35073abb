//! `memfabric-validator`: see the crate documentation.
fn main() {}

//! Tests of the pipeline as a whole. Unit tests of single stages live beside
//! their code.

pub(crate) mod gen;

mod bloom_fallback;
mod dedup_counts;
mod delta_stream;
mod harness;
mod in_place;
mod roundtrip;
mod wire_errors;
mod wire_fuzz;

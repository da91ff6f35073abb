//! Unit tests of the in-memory rules; file-level round trips and corruptions
//! are in `sim/tests/trace.rs`.

use super::gen::{generate, image_page_hash, GenConfig, GenError};
use super::*;
use memfabric_migration::pipeline::hash::{hash_page, HashAlgo};
use std::path::Path;

/// A small idle-linux trace: 1 MiB, 5 epochs of 1 s.
fn small() -> Trace {
    let mut cfg = GenConfig::for_archetype("idle-linux").unwrap();
    cfg.memory_bytes = 1 << 20;
    cfg.duration_ns = 5_000_000_000;
    generate(&cfg).unwrap()
}

fn err_of(t: &Trace) -> String {
    t.validate(Path::new("t")).expect_err("trace was accepted").to_string()
}

#[test]
fn generated_traces_are_valid() {
    let t = small();
    t.validate(Path::new("t")).unwrap();
    assert_eq!(t.snapshot.len(), 256);
    assert_eq!(t.manifest.epochs, 5);
    assert!(!t.epochs.is_empty());
}

#[test]
fn zero_page_hash_is_the_hash_of_zero_bytes() {
    assert_eq!(zero_page_hash(), hash_page(HashAlgo::Xxh3_128, &vec![0u8; 4096]));
}

#[test]
fn image_pages_depend_on_image_and_slot_only() {
    assert_eq!(image_page_hash("debian", 3), image_page_hash("debian", 3));
    assert_ne!(image_page_hash("debian", 3), image_page_hash("debian", 4));
    assert_ne!(image_page_hash("debian", 3), image_page_hash("ubuntu", 3));
}

#[test]
fn snapshot_rules() {
    let mut t = small();
    t.snapshot[5].page_index = 300;
    assert!(err_of(&t).contains("t/snapshot.parquet: row 5: page_index 300 out of range"), "{}", err_of(&t));
    let mut t = small();
    t.snapshot[5].page_index = 4;
    assert!(err_of(&t).contains("row 5: duplicate page_index 4"));
    let mut t = small();
    t.snapshot.pop();
    assert!(err_of(&t).contains("255 rows, but the manifest says the VM has 256 pages"));
    let mut t = small();
    t.snapshot[0].zstd_bytes = 5000;
    assert!(err_of(&t).contains("zstd_bytes = 5000 outside 1..=4096"));
    let mut t = small();
    let i = t.snapshot.iter().position(|p| p.zero).unwrap();
    t.snapshot[i].zero = false;
    assert!(err_of(&t).contains("zero = false but its hash is the hash of the all-zero page"));
}

#[test]
fn epoch_rules() {
    let mut t = small();
    let last = t.epochs.len() - 1;
    t.epochs.swap(0, last);
    assert!(err_of(&t).contains("t/epochs.parquet: row 1: epochs out of order"), "{}", err_of(&t));
    let mut t = small();
    t.epochs[1].page_index = t.epochs[0].page_index;
    assert!(t.epochs[1].epoch == t.epochs[0].epoch);
    assert!(err_of(&t).contains(&format!("row 1: page {} dirtied twice in epoch 0", t.epochs[0].page_index)));
    let mut t = small();
    t.epochs[1].time_ns += 1;
    assert!(err_of(&t).contains("epoch 0 has two end times"));
    let mut t = small();
    for d in &mut t.epochs {
        d.epoch += 10;
    }
    assert!(err_of(&t).contains("epoch 10 but the manifest has 5 epochs"));
    let mut t = small();
    t.epochs[0].delta_bytes = 4097;
    assert!(err_of(&t).contains("delta_bytes = 4097 outside 0..=4096"));
}

#[test]
fn manifest_rules() {
    let mut t = small();
    t.manifest.format_version = 2;
    assert!(
        err_of(&t).contains("t/manifest.json: format version 2 is not supported (this memfabric reads version [1])")
    );
    let mut t = small();
    t.manifest.page_size = 8192;
    assert!(err_of(&t).contains("page_size 8192"));
    let mut t = small();
    t.manifest.format = "qemu".into();
    assert!(err_of(&t).contains("unknown format \"qemu\""));
    let mut t = small();
    t.manifest.memory_bytes += 1;
    assert!(err_of(&t).contains("is not pages (256) × page_size"));
}

#[test]
fn generator_refuses_bad_sizes() {
    let mut cfg = GenConfig::for_archetype("web").unwrap();
    cfg.memory_bytes = 1000;
    assert_eq!(generate(&cfg), Err(GenError::Memory(1000)));
    cfg.memory_bytes = 1 << 20;
    cfg.epoch_ns = 7_000_000_000;
    assert!(matches!(generate(&cfg), Err(GenError::Epochs { .. })));
    cfg.epoch_ns = 0;
    assert!(matches!(generate(&cfg), Err(GenError::Epochs { .. })));
}

#[test]
fn point_mass_compressibility_when_sd_is_zero() {
    let mut cfg = GenConfig::for_archetype("web").unwrap();
    cfg.memory_bytes = 1 << 20;
    cfg.duration_ns = 1_000_000_000;
    cfg.spec.content.unique_compressed_sd = 0.0;
    let t = generate(&cfg).unwrap();
    let z = (0.45f64 * 4096.0).round() as u32;
    let lz4 = ((z as f64) * cfg.profile.size_factor.lz4).round() as u32;
    assert!(t.snapshot.iter().filter(|p| !p.zero).all(|p| p.zstd_bytes == z && p.lz4_bytes == lz4));
}

#[test]
fn workload_params_round_trip_through_spec() {
    for name in crate::workload::archetype::NAMES {
        let spec = crate::workload::archetype::lookup(name).unwrap();
        assert_eq!(WorkloadParams::from_spec(&spec).to_spec(name), spec, "{name}");
    }
}

use super::*;
use crate::workload::archetype;
use memfabric_migration::units::Fraction;

fn web() -> WorkloadSpec {
    let mut w = archetype::lookup("web").unwrap();
    w.content.zero = Fraction(0.25);
    w.content.shared_image = Fraction(0.10);
    w.content.duplicate = Fraction(0.05);
    w.content.unique_compressed_mean = Fraction(0.4);
    w.content.unique_compressed_sd = 0.0;
    w.redirty_unchanged = Fraction(0.3);
    w.redirty_change = Fraction(0.1);
    w
}

fn reduce(strategy: &str, w: &WorkloadSpec, cache_pages: u64) -> VmReduction {
    let inputs = VmInputs { workload: w, has_image: true, working_set_pages: 1000, xbzrle_cache_pages: cache_pages, hash: Default::default(), site_false_positive_rate: 0.0, site_query: false };
    VmReduction::new(&strategy.parse().unwrap(), inputs, &CpuProfile::builtin())
}

fn outcomes_sum(t: &Tally) -> f64 {
    t.pages_zero + t.pages_dedup + t.pages_delta + t.pages_compressed + t.pages_raw
}

#[test]
fn no_reduction_sends_every_page_raw() {
    let r = reduce("none", &web(), 0);
    for t in [r.full_copy, r.full_copy_image_hit, r.resend] {
        assert!((t.wire_bytes - 4104.0).abs() < 1e-9);
        assert!((t.pages_raw - 1.0).abs() < 1e-12);
        assert_eq!(t.source_ns(), CpuProfile::builtin().ns_per_page.memcpy);
    }
}

#[test]
fn zero_pages_become_headers() {
    let r = reduce("zero", &web(), 0);
    let expect = 0.25 * 8.0 + 0.75 * 4104.0;
    assert!((r.full_copy.wire_bytes - expect).abs() < 1e-9);
    assert!((r.full_copy.pages_zero - 0.25).abs() < 1e-12);
}

#[test]
fn compression_uses_the_content_model_and_codec_factor() {
    let p = CpuProfile::builtin();
    let r = reduce("zero+zstd", &web(), 0);
    // Non-zero pages compress to 40% of a page (zstd-1 is the reference codec).
    let expect = 0.25 * 8.0 + 0.75 * (8.0 + 0.4 * 4096.0);
    assert!((r.full_copy.wire_bytes - expect).abs() < 1e-6, "{}", r.full_copy.wire_bytes);
    let lz4 = reduce("zero+lz4", &web(), 0);
    let expect = 0.25 * 8.0 + 0.75 * (8.0 + 0.4 * p.size_factor.lz4 * 4096.0);
    assert!((lz4.full_copy.wire_bytes - expect).abs() < 1e-6);
    assert!(lz4.full_copy.source_ns() < r.full_copy.source_ns(), "lz4 is cheaper than zstd");
}

#[test]
fn incompressible_pages_go_raw() {
    let o = compress_outcome(0.9, 0.0, 1.25);
    assert_eq!((o.p_compressed, o.compressed_fraction), (0.0, 0.0));
    let o = compress_outcome(0.5, 0.0, 1.0);
    assert_eq!((o.p_compressed, o.compressed_fraction), (1.0, 0.5));
    // A very narrow distribution behaves like its mean (no overflow).
    let o = compress_outcome(0.3, 0.001, 1.0);
    assert!((o.compressed_fraction - 0.3).abs() < 1e-3 && (o.p_compressed - 1.0).abs() < 1e-12, "{o:?}");
    // A wide distribution around 0.7: some pages do not compress under lz4 (×1.25).
    let o = compress_outcome(0.7, 0.2, 1.25);
    assert!(o.p_compressed > 0.2 && o.p_compressed < 0.9, "{o:?}");
    assert!(o.compressed_fraction < 1.0);
}

#[test]
fn dedup_scopes_reference_what_they_can_see() {
    let w = web();
    let vm = reduce("zero+dedup-vm", &w, 0);
    let gang = reduce("zero+dedup-gang", &w, 0);
    // Within a VM, only duplicates are references; same-image pages need the image at the destination.
    assert!((vm.full_copy.pages_dedup - 0.05).abs() < 1e-12);
    assert!((vm.full_copy_image_hit.pages_dedup - 0.05).abs() < 1e-12);
    assert!((gang.full_copy.pages_dedup - 0.05).abs() < 1e-12);
    assert!((gang.full_copy_image_hit.pages_dedup - 0.15).abs() < 1e-12);
    let expect = 0.25 * 8.0 + 0.15 * 24.0 + 0.60 * 4104.0;
    assert!((gang.full_copy_image_hit.wire_bytes - expect).abs() < 1e-9);
    // Without an image there is nothing to share.
    let inputs = VmInputs { workload: &w, has_image: false, working_set_pages: 1000, xbzrle_cache_pages: 0, hash: Default::default(), site_false_positive_rate: 0.0, site_query: false };
    let lone = VmReduction::new(&"zero+dedup-site".parse().unwrap(), inputs, &CpuProfile::builtin());
    assert!((lone.full_copy_image_hit.pages_dedup - 0.05).abs() < 1e-12);
}

#[test]
fn xbzrle_sends_small_deltas_for_cached_pages() {
    let p = CpuProfile::builtin();
    let w = web();
    // Whole working set cached.
    let r = reduce("zero+xbzrle", &w, 1000);
    let changed = 0.1 * 4096.0 * p.size_factor.xbzrle_per_changed_byte;
    let expect = 0.3 * (8.0 + EMPTY_DELTA_BYTES) + 0.7 * (8.0 + changed);
    assert!((r.resend.wire_bytes - expect).abs() < 1e-9);
    assert!((r.resend.pages_delta - 1.0).abs() < 1e-12);
    // Half the working set cached: half the pages fall back to raw.
    let half = reduce("zero+xbzrle", &w, 500);
    assert!((half.resend.pages_delta - 0.5).abs() < 1e-12);
    assert!((half.resend.pages_raw - 0.5).abs() < 1e-12);
    // Large changes make deltas useless: they go to compression instead.
    let mut big = w.clone();
    big.redirty_change = Fraction(0.95);
    let r = reduce("zero+xbzrle+zstd", &big, 1000);
    assert!((r.resend.pages_delta - 0.3).abs() < 1e-12, "only unchanged pages as deltas");
    assert!(r.resend.pages_compressed > 0.69);
}

#[test]
fn every_page_has_exactly_one_outcome() {
    for s in ["none", "zero", "zero+lz4", "zero+zstd:3", "zero+xbzrle+zstd", "zero+dedup-gang+lz4", "dedup-site+xbzrle+lz4", "lz4"] {
        for cache in [0, 300, 5000] {
            let r = reduce(s, &web(), cache);
            for t in [r.full_copy, r.full_copy_image_hit, r.resend] {
                assert!((outcomes_sum(&t) - 1.0).abs() < 1e-9, "{s}: {t:?}");
                let by_outcome = t.wire_zero + t.wire_dedup + t.wire_delta + t.wire_compressed + t.wire_raw;
                assert!((by_outcome - t.wire_bytes).abs() < 1e-9, "{s}: wire bytes by outcome add up");
                assert!(t.wire_bytes > 0.0 && t.wire_bytes <= 4104.0 + 1e-9, "{s}");
            }
        }
    }
}

#[test]
fn cpu_cap_is_threads_over_cost_times_wire_per_page() {
    let p = CpuProfile::builtin();
    let r = reduce("none", &web(), 0);
    let cap = r.full_copy.cpu_cap_bytes_per_s(1, 1);
    assert!((cap - 1e9 / p.ns_per_page.memcpy * 4104.0).abs() / cap < 1e-12);
    assert!((r.full_copy.cpu_cap_bytes_per_s(4, 4) - 4.0 * cap).abs() / cap < 1e-12);
    let z = reduce("zero+zstd", &web(), 0).full_copy;
    let zcap = z.cpu_cap_bytes_per_s(1, 1);
    let pages_per_s = 1e9 / z.source_ns();
    assert!((zcap - pages_per_s * z.wire_bytes).abs() / zcap < 1e-12, "source-bound");
}

#[test]
fn blake3_costs_more_cpu_than_xxh3() {
    let w = web();
    let make = |hash| {
        let inputs = VmInputs { workload: &w, has_image: true, working_set_pages: 1000, xbzrle_cache_pages: 0, hash, site_false_positive_rate: 0.0, site_query: false };
        VmReduction::new(&"zero+dedup-vm".parse().unwrap(), inputs, &CpuProfile::builtin())
    };
    let x = make(memfabric_migration::pipeline::HashAlgo::Xxh3_128);
    let b = make(memfabric_migration::pipeline::HashAlgo::Blake3);
    assert!(b.full_copy.cpu_ns_dedup > x.full_copy.cpu_ns_dedup);
    assert_eq!(b.full_copy.wire_bytes, x.full_copy.wire_bytes);
}

#[test]
fn profiles_are_range_checked() {
    let mut p = CpuProfile::builtin();
    assert!(p.check().is_ok());
    p.ns_per_page.memcpy = -1.0;
    assert!(p.check().unwrap_err().contains("ns_per_page.memcpy"));
    let mut p = CpuProfile::builtin();
    p.size_factor.lz4 = f64::NAN;
    assert!(p.check().unwrap_err().contains("size_factor.lz4"));
}

#[test]
fn site_index_overheads() {
    let w = web();
    let make = |fp: f64, query: bool| {
        let inputs = VmInputs { workload: &w, has_image: true, working_set_pages: 1000, xbzrle_cache_pages: 0, hash: Default::default(), site_false_positive_rate: fp, site_query: query };
        VmReduction::new(&"zero+dedup-site".parse().unwrap(), inputs, &CpuProfile::builtin())
    };
    let exact = make(0.0, false).full_copy;
    let summary = make(0.01, false).full_copy;
    let query = make(0.0, true).full_copy;
    // Lookups: every non-zero page (75%); misses: 75% - 5% duplicates = 70%.
    assert!((exact.dedup_lookups - 0.75).abs() < 1e-12);
    assert!((summary.wire_bytes - exact.wire_bytes - 0.01 * 0.70 * 24.0).abs() < 1e-9);
    assert!((query.wire_bytes - exact.wire_bytes - 0.75 * 16.0).abs() < 1e-9);
    // Other scopes pay nothing for a site index.
    let inputs = VmInputs { workload: &w, has_image: true, working_set_pages: 1000, xbzrle_cache_pages: 0, hash: Default::default(), site_false_positive_rate: 0.5, site_query: true };
    let gang = VmReduction::new(&"zero+dedup-gang".parse().unwrap(), inputs, &CpuProfile::builtin());
    assert_eq!(gang.full_copy, reduce("zero+dedup-gang", &w, 0).full_copy);
}

#[test]
fn encryption_costs_cpu_per_wire_byte_and_changes_nothing_else() {
    let p = CpuProfile::builtin();
    for (base, encrypted) in [("none", "encrypt"), ("zero+lz4", "zero+lz4+encrypt"), ("zero+dedup-vm+xbzrle+zstd", "zero+dedup-vm+xbzrle+zstd+encrypt")] {
        let plain = reduce(base, &web(), 500);
        let enc = reduce(encrypted, &web(), 500);
        for (a, b) in [(plain.full_copy, enc.full_copy), (plain.resend, enc.resend)] {
            // Same records, same bytes.
            assert_eq!(a.wire_bytes, b.wire_bytes, "{base}");
            assert_eq!(outcomes_sum(&a), outcomes_sum(&b));
            // Encrypting and decrypting every wire byte, nothing more.
            let pages_of_bytes = a.wire_bytes / 4096.0;
            assert!((b.cpu_ns_encrypt - pages_of_bytes * p.ns_per_page.tls_encrypt).abs() < 1e-6, "{base}");
            assert!((b.source_ns() - a.source_ns() - b.cpu_ns_encrypt).abs() < 1e-6);
            assert!((b.cpu_ns_destination - a.cpu_ns_destination - pages_of_bytes * p.ns_per_page.tls_decrypt).abs() < 1e-6);
            assert!(b.cpu_cap_bytes_per_s(1, 1) < a.cpu_cap_bytes_per_s(1, 1), "{base}: encryption lowers the CPU cap");
        }
    }
    // Encryption alone costs the raw stream's bytes.
    let enc = reduce("encrypt", &web(), 0);
    assert!((enc.full_copy.cpu_ns_encrypt - 4104.0 / 4096.0 * p.ns_per_page.tls_encrypt).abs() < 1e-6);
}

#[test]
fn a_profile_without_tls_costs_takes_the_measured_defaults() {
    let text = profile::DEFAULT_PROFILE_TOML.replace("tls_encrypt", "# tls_encrypt").replace("tls_decrypt", "# tls_decrypt");
    let p: CpuProfile = toml::from_str(&text).unwrap();
    assert_eq!(p.ns_per_page.tls_encrypt, profile::DEFAULT_TLS_ENCRYPT_NS);
    assert_eq!(p.ns_per_page.tls_decrypt, profile::DEFAULT_TLS_DECRYPT_NS);
}

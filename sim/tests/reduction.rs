//! Data-reduction strategies in whole simulations: where each one wins, dedup
//! scopes and domains, and CPU-bound pipelines.

mod common;
use common::*;
use memfabric_migration::record::RoundPhase;

/// One 4 GiB web VM (no dirtying), one stream, no TCP cap (0 ms latency), on a
/// link of `bandwidth`, with `strategy`.
fn one_vm(bandwidth: &str, strategy: &str) -> memfabric_sim::run::RunOutput {
    run_text(&two_sites(
        &format!("bandwidth = \"{bandwidth}\"\nlatency = \"0ms\""),
        &format!(
            "[defaults]\nstrategy = \"{strategy}\"\n[[vms]]\nname = \"vm\"\nhost = \"a-h-0\"\narchetype = \"web\"\nworkload = {{ page_write_rate = \"0pages/s\" }}\n[[migrations]]\nvm = \"vm\"\nto = \"b\"\n"
        ),
    ))
}

#[test]
fn zstd_wins_on_slow_links_and_loses_on_fast_ones_with_one_thread() {
    let slow_zero = one_vm("100Mbit/s", "zero");
    let slow_zstd = one_vm("100Mbit/s", "zero+zstd");
    let fast_zero = one_vm("10Gbit/s", "zero");
    let fast_zstd = one_vm("10Gbit/s", "zero+zstd");
    let t = |o: &memfabric_sim::run::RunOutput| o.migrations[0].total_time_s;
    assert!(t(&slow_zstd) < 0.6 * t(&slow_zero), "100 Mbit/s: zstd {} vs zero {}", t(&slow_zstd), t(&slow_zero));
    assert!(t(&fast_zstd) > 1.3 * t(&fast_zero), "10 Gbit/s: zstd {} vs zero {}", t(&fast_zstd), t(&fast_zero));
    // Why: the slow link binds both; the fast link binds zero, the CPU binds zstd.
    assert_eq!(slow_zstd.migrations[0].bottleneck, "ab");
    assert_eq!(fast_zero.migrations[0].bottleneck, "ab");
    assert_eq!(fast_zstd.migrations[0].bottleneck, "cpu");
    // zstd always sends fewer bytes.
    assert!(fast_zstd.migrations[0].bytes_on_wire < fast_zero.migrations[0].bytes_on_wire / 2);
}

#[test]
fn more_threads_lift_the_cpu_bound() {
    let one = one_vm("10Gbit/s", "zero+zstd");
    let four = run_text(&two_sites(
        "bandwidth = \"10Gbit/s\"\nlatency = \"0ms\"",
        "[defaults]\nstrategy = \"zero+zstd\"\ncpu_threads = 4\n[[vms]]\nname = \"vm\"\nhost = \"a-h-0\"\narchetype = \"web\"\nworkload = { page_write_rate = \"0pages/s\" }\n[[migrations]]\nvm = \"vm\"\nto = \"b\"\n",
    ));
    let (a, b) = (&one.migrations[0], &four.migrations[0]);
    assert!(b.total_time_s < a.total_time_s / 2.0, "{} vs {}", b.total_time_s, a.total_time_s);
    assert_eq!(b.cpu_threads, 4);
    assert!((a.cpu_s_source - b.cpu_s_source).abs() / a.cpu_s_source < 1e-9, "same work, spread over threads");
    assert!(a.cpu_s_compress > 0.5 * a.cpu_s_source, "compression dominates the CPU");
}

#[test]
fn per_stage_page_counts_add_up() {
    for s in ["none", "zero", "zero+lz4", "zero+xbzrle+zstd", "zero+dedup-vm+lz4"] {
        let out = one_vm("1Gbit/s", s);
        let m = &out.migrations[0];
        let pages = m.pages_zero + m.pages_dedup + m.pages_delta + m.pages_compressed + m.pages_raw;
        // Rounding each class may be off by one page per class.
        assert!((pages as i64 - 1_048_576 - 1).abs() <= 5, "{s}: {pages}");
        assert_eq!(m.strategy, s);
        assert!(m.bytes_on_wire <= m.bytes_unreduced + 2_000_000, "{s}");
    }
}

/// Four same-image VMs of one tenant evacuated together, a fifth of another
/// tenant, and (optionally) a same-image VM already running at the destination.
fn gang(strategy: &str, resident_at_b: bool) -> memfabric_sim::run::RunOutput {
    let resident = if resident_at_b {
        "[[vms]]\nname = \"there\"\nhost = \"b-h-0\"\narchetype = \"web\"\nimage = \"debian\"\ntenant = \"acme\"\n"
    } else {
        ""
    };
    run_text(&two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"",
        &format!(
            r#"
[defaults]
strategy = "{strategy}"
dirty_sampling = "expected"
[[vms]]
name = "acme"
count = 4
host = "a-h-0"
archetype = "web"
image = "debian"
tenant = "acme"
workload = {{ page_write_rate = "0pages/s", shared_image = "30%" }}
[[vms]]
name = "other"
host = "a-h-1"
archetype = "web"
image = "debian"
tenant = "globex"
workload = {{ page_write_rate = "0pages/s", shared_image = "30%" }}
{resident}
[[evacuations]]
from = "a"
to = "b"
max_concurrent = 1
"#
        ),
    ))
}

fn refs(out: &memfabric_sim::run::RunOutput, vm: &str) -> u64 {
    out.migrations.iter().find(|m| m.vm == vm).unwrap().pages_dedup
}

#[test]
fn dedup_scopes_and_tenant_domains() {
    let pages = 1_048_576.0;
    let dup = 0.05 * pages;
    let shared = 0.30 * pages;
    let close = |a: u64, b: f64| (a as f64 - b).abs() <= 2.0;
    // dedup-vm: only duplicates within each VM.
    let vm = gang("zero+dedup-vm", false);
    for name in ["acme-0", "acme-1", "acme-3", "other"] {
        assert!(close(refs(&vm, name), dup), "{name}: {}", refs(&vm, name));
    }
    // dedup-gang: the first acme VM sends the image; the next three reference it;
    // the other tenant's VM does not share it.
    let g = gang("zero+dedup-gang", false);
    assert!(close(refs(&g, "acme-0"), dup));
    for name in ["acme-1", "acme-2", "acme-3"] {
        assert!(close(refs(&g, name), dup + shared), "{name}: {}", refs(&g, name));
    }
    assert!(close(refs(&g, "other"), dup), "no sharing across tenants");
    // dedup-site: with a same-image acme VM already at b, even the first references it.
    let site = gang("zero+dedup-site", true);
    assert!(close(refs(&site, "acme-0"), dup + shared));
    assert!(close(refs(&site, "other"), dup));
    // Fewer bytes as the scope widens.
    let wire = |o: &memfabric_sim::run::RunOutput| o.migrations.iter().filter(|m| m.vm != "there").map(|m| m.bytes_on_wire).sum::<u64>();
    assert!(wire(&site) < wire(&g) && wire(&g) < wire(&vm));
}

#[test]
fn global_domains_share_across_tenants() {
    let text = two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"",
        "[defaults]\nstrategy = \"zero+dedup-site\"\ndirty_sampling = \"expected\"\n[[vms]]\nname = \"there\"\nhost = \"b-h-0\"\narchetype = \"web\"\nimage = \"debian\"\ntenant = \"acme\"\n[[vms]]\nname = \"other\"\nhost = \"a-h-0\"\narchetype = \"web\"\nimage = \"debian\"\ntenant = \"globex\"\nworkload = { page_write_rate = \"0pages/s\" }\n[[migrations]]\nvm = \"other\"\nto = \"b\"\n",
    );
    let tenant = run_text(&text);
    let global = run_text(&text.replace("seed = 1", "seed = 1\ndedup_domains = \"global\""));
    let shared = 0.10 * 1_048_576.0;
    assert!(refs(&global, "other") as f64 - refs(&tenant, "other") as f64 >= shared - 2.0);
}

#[test]
fn strategy_comparison_writes_one_variant_per_strategy() {
    let sc = memfabric_sim::scenario::load(&scenario_path("strategy-comparison")).unwrap();
    assert!(sc.compare_strategies.len() >= 6);
    let outs = memfabric_sim::run::run_all(&sc, None);
    assert_eq!(outs.len(), sc.compare_strategies.len());
    for (o, s) in outs.iter().zip(&sc.compare_strategies) {
        assert_eq!(o.variant, s.to_string());
        assert!(o.migrations.iter().all(|m| m.strategy == o.variant));
    }
    // Where each wins: the slow branch link favours the fewest bytes (dedup
    // against the hub plus zstd), the fast dc link favours cheap CPU.
    let makespan = |variant: &str, op: &str| {
        let o = outs.iter().find(|o| o.variant == variant).unwrap();
        o.migrations.iter().filter(|m| m.operation == op).map(|m| m.end_s).fold(0.0, f64::max)
    };
    let best = |op: &str| {
        outs.iter().map(|o| (makespan(&o.variant, op), o.variant.clone())).min_by(|a, b| a.0.total_cmp(&b.0)).unwrap().1
    };
    assert_eq!(best("evacuate-branch"), "zero+dedup-site+zstd");
    assert!(makespan("zero+zstd", "evacuate-branch") < makespan("zero", "evacuate-branch"));
    assert!(makespan("zero+zstd", "evacuate-dc") > makespan("zero", "evacuate-dc"));
    assert!(["zero", "none"].contains(&best("evacuate-dc").as_str()), "{}", best("evacuate-dc"));

    let tmp = std::env::temp_dir().join(format!("memfabric-cmp-{}", std::process::id()));
    memfabric_sim::output::write_results(&outs, &tmp, true, false).unwrap();
    let df = memfabric_sim::output::read_parquet(&tmp.join("migrations.parquet")).unwrap();
    assert_eq!(df.height(), outs.iter().map(|o| o.migrations.len()).sum::<usize>());
    let variants = df.column("variant").unwrap().str().unwrap();
    assert_eq!(variants.get(0), Some("none"));
    assert!(tmp.join("plots/strategy_comparison.png").exists());
    assert!(tmp.join("plots/timeline-zero_dedup-site_zstd.svg").exists());
    let manifest = std::fs::read_to_string(tmp.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"zero+xbzrle+zstd\""));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A web VM (1 GiB, no dirtying) moving to b, where a same-tenant VM of
/// `resident` memory already runs, with dedup-site and the given index settings.
fn site_index(settings: &str, latency: &str) -> memfabric_sim::run::RunOutput {
    run_text(&two_sites(
        &format!("bandwidth = \"1Gbit/s\"\nlatency = \"{latency}\""),
        &format!(
            "[defaults]\nstrategy = \"zero+dedup-site\"\ndirty_sampling = \"expected\"\n{settings}\n\
             [[vms]]\nname = \"there\"\nhost = \"b-h-0\"\narchetype = \"web\"\nmemory = \"8GiB\"\n\
             [[vms]]\nname = \"vm\"\nhost = \"a-h-0\"\narchetype = \"web\"\nmemory = \"1GiB\"\nworkload = {{ page_write_rate = \"0pages/s\" }}\n\
             [[migrations]]\nvm = \"vm\"\nto = \"b\"\n"
        ),
    ))
}

#[test]
fn site_index_summary_costs_sync_traffic_before_the_copy() {
    let out = site_index("site_index = \"summary\"\nsummary_bits_per_item = 16", "0ms");
    let m = &out.migrations[0];
    // The resident VM holds 8 GiB of which 75% is non-zero (web: 25% zero pages).
    let resident = (2_097_152.0f64 * 0.75).round();
    assert_eq!(m.bytes_index_sync, (resident * 16.0 / 8.0).ceil() as u64);
    let sync = out.rounds.iter().find(|r| r.phase == RoundPhase::IndexSync).expect("sync stage recorded");
    let round0 = out.rounds.iter().find(|r| r.phase == RoundPhase::PreCopy).unwrap();
    assert!(round0.start_s >= sync.end_s, "the copy waits for the summary");
    // Exact: no sync, no false positives, fewer bytes.
    let exact = site_index("site_index = \"exact\"", "0ms");
    assert_eq!(exact.migrations[0].bytes_index_sync, 0);
    assert!(exact.migrations[0].bytes_on_wire < m.bytes_on_wire - m.bytes_index_sync);
}

#[test]
fn site_index_queries_cost_a_round_trip_per_batch() {
    // 40 ms RTT and 16-page batches: at most 16 pages per 40 ms ≈ 1.6 MB/s.
    let out = site_index("site_index = \"query\"\nquery_batch = 16", "20ms");
    let m = &out.migrations[0];
    assert_eq!(m.bottleneck, "index-query");
    let round0 = out.rounds.iter().find(|r| r.phase == RoundPhase::PreCopy).unwrap();
    let per_page = round0.bytes_on_wire as f64 / round0.pages as f64;
    assert_close(round0.rate_bytes_per_s, 16.0 * per_page / 0.04, 1e-6, "query-bound rate");
    // Large batches lift the bound.
    let big = site_index("site_index = \"query\"\nquery_batch = 65536", "20ms");
    assert_ne!(big.migrations[0].bottleneck, "index-query");
}

#[test]
fn site_index_settings_are_checked() {
    let bad = two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"1ms\"",
        "[defaults]\nsite_index = \"query\"\nsummary_bits_per_item = 8\n",
    );
    let e = memfabric_sim::scenario::parse(&bad, "t.toml").unwrap_err().to_string();
    assert!(e.contains("defaults.summary_bits_per_item") && e.contains("only applies with site_index = \"summary\""), "{e}");
}

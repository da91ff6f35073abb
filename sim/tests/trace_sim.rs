//! Trace-driven VMs in whole simulations: the trace-driven run of a
//! synthetic trace agrees with the synthetic model it was drawn from, dedup
//! is exact on real hashes, content-hash sampling keeps the totals, and bad
//! trace settings are refused when the scenario loads.

mod common;
use common::*;
use memfabric_sim::run::{run, RunOutput};
use memfabric_sim::scenario;
use memfabric_sim::trace::gen::{generate, GenConfig};
use memfabric_sim::trace::Trace;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A fresh directory for one test.
fn tmp(name: &str) -> PathBuf {
    common::owned_scratch("trace-sim", name)
}

/// Generates a trace of `archetype` into `dir`.
fn gen(dir: &Path, archetype: &str, vm: &str, memory: u64, epochs: u64, epoch_ns: u64, seed: u64) -> Trace {
    let mut cfg = GenConfig::for_archetype(archetype).unwrap();
    cfg.vm = vm.to_string();
    cfg.memory_bytes = memory;
    cfg.epoch_ns = epoch_ns;
    cfg.duration_ns = epochs * epoch_ns;
    cfg.seed = seed;
    let t = generate(&cfg).unwrap();
    t.write(dir).unwrap();
    t
}

/// One VM migrated a→b over a 1 Gbit/s, 0 ms link with `strategy`: `vm` is
/// the VM's keys (a trace or an archetype with memory).
fn one_migration(vm: &str, strategy: &str, extra_defaults: &str) -> RunOutput {
    migration_over("1Gbit/s", vm, strategy, extra_defaults)
}

/// [`one_migration`] over a link of `bandwidth`.
fn migration_over(bandwidth: &str, vm: &str, strategy: &str, extra_defaults: &str) -> RunOutput {
    run_text(&two_sites(
        &format!("bandwidth = \"{bandwidth}\"\nlatency = \"0ms\""),
        &format!(
            "[defaults]\nstrategy = \"{strategy}\"\ndirty_sampling = \"expected\"\n{extra_defaults}\n[[vms]]\nname = \"vm\"\nhost = \"a-h-0\"\n{vm}\n[[migrations]]\nvm = \"vm\"\nto = \"b\"\n"
        ),
    ))
}

/// (a) A trace drawn from archetype X and the synthetic model of X give the
/// same bytes on the wire (within 5%) and total time (within 10%), for
/// several seeds and strategies.
#[test]
fn trace_driven_run_matches_the_synthetic_model() {
    let root = tmp("consistency");
    let memory: u64 = 256 << 20;
    // 100 ms epochs: pre-copy rounds here last 0.1–2 s, so the epoch
    // granularity of the dirty sets stays small against them.
    for seed in [1u64, 2, 3] {
        let dir = root.join(format!("web-{seed}"));
        gen(&dir, "web", "vm", memory, 600, 100_000_000, seed);
        for strategy in ["none", "zero+zstd", "zero+dedup-vm+lz4", "zero+xbzrle"] {
            // A cache of the whole VM: the model's hit probability is 1, as
            // is the LRU's.
            // On 200 Mbit/s the web VM's dirtying takes several pre-copy
            // rounds, so the dirty sets count as much as the full copy.
            let extra = "xbzrle_cache = \"256MiB\"\non_non_convergence = \"force-stop\"";
            let traced = migration_over("200Mbit/s", &format!("archetype = \"web\"\ntrace = \"{}\"", dir.display()), strategy, extra);
            let model = migration_over("200Mbit/s", "archetype = \"web\"\nmemory = \"256MiB\"", strategy, extra);
            let (t, m) = (&traced.migrations[0], &model.migrations[0]);
            assert_eq!(t.outcome, "completed", "{strategy} seed {seed}");
            assert_eq!(t.memory_bytes, memory);
            let what = format!("{strategy}, seed {seed}: traced {} rounds, model {} rounds", t.rounds, m.rounds);
            println!(
                "{what}: bytes {:+.2}%, time {:+.2}%",
                100.0 * (t.bytes_on_wire as f64 / m.bytes_on_wire as f64 - 1.0),
                100.0 * (t.total_time_s / m.total_time_s - 1.0)
            );
            assert_close(t.bytes_on_wire as f64, m.bytes_on_wire as f64, 0.05, &format!("bytes on wire, {what}"));
            assert_close(t.total_time_s, m.total_time_s, 0.10, &format!("total time, {what}"));
        }
    }
}

/// Non-zero snapshot hashes of a trace, in page order.
fn nonzero_hashes(t: &Trace) -> Vec<u128> {
    t.snapshot.iter().filter(|p| !p.zero).map(|p| p.hash.0).collect()
}

/// (b) Two traced VMs of one image migrated together with dedup-gang: the
/// second one's references are exactly its pages whose content the first
/// one (or itself, earlier) sent; the first one's are its own duplicates.
#[test]
fn gang_dedup_references_exactly_the_shared_pages() {
    let root = tmp("gang");
    let (a, b) = (root.join("a"), root.join("b"));
    let ta = gen(&a, "web", "a", 16 << 20, 5, 1_000_000_000, 1);
    let tb = gen(&b, "web", "b", 16 << 20, 5, 1_000_000_000, 1);
    let out = run_text(&two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"",
        &format!(
            r#"[defaults]
strategy = "zero+dedup-gang+lz4"
mechanism = "stop-and-copy"
[[vms]]
name = "a"
host = "a-h-0"
archetype = "web"
image = "web"
trace = "{}"
[[vms]]
name = "b"
host = "a-h-0"
archetype = "web"
image = "web"
trace = "{}"
[[evacuations]]
from = "a"
to = "b"
"#,
            a.display(),
            b.display()
        ),
    ));
    let (ha, hb) = (nonzero_hashes(&ta), nonzero_hashes(&tb));
    // Expected from the traces alone.
    let mut seen: HashSet<u128> = HashSet::new();
    let own_dups_a = ha.iter().filter(|h| !seen.insert(**h)).count() as u64;
    let mut seen_b: HashSet<u128> = HashSet::new();
    let refs_b = hb.iter().filter(|h| !seen_b.insert(**h) || seen.contains(h)).count() as u64;
    let shared = hb.iter().filter(|h| seen.contains(h)).count() as u64;
    assert!(shared > 300, "the two VMs share image pages ({shared})");
    let row = |vm: &str| out.migrations.iter().find(|m| m.vm == vm).unwrap();
    assert_eq!(row("a").pages_dedup, own_dups_a, "first VM: its own duplicates");
    assert_eq!(row("b").pages_dedup, refs_b, "second VM: the shared pages and its own duplicates");
    assert!(row("b").bytes_on_wire < row("a").bytes_on_wire);
}

/// dedup-site: a traced VM of the image already runs at the destination;
/// the migrating one references exactly its pages resident there (or sent
/// earlier by itself).
#[test]
fn site_dedup_references_exactly_the_resident_pages() {
    let root = tmp("site");
    let (a, b) = (root.join("a"), root.join("b"));
    let ta = gen(&a, "idle-linux", "there", 16 << 20, 5, 1_000_000_000, 1);
    let tb = gen(&b, "idle-linux", "mover", 16 << 20, 5, 1_000_000_000, 1);
    let out = run_text(&two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"",
        &format!(
            r#"[defaults]
strategy = "zero+dedup-site+zstd"
site_index = "exact"
mechanism = "stop-and-copy"
[[vms]]
name = "there"
host = "b-h-0"
archetype = "idle-linux"
trace = "{}"
[[vms]]
name = "mover"
host = "a-h-0"
archetype = "idle-linux"
trace = "{}"
[[migrations]]
vm = "mover"
to = "b"
"#,
            a.display(),
            b.display()
        ),
    ));
    let resident: HashSet<u128> = nonzero_hashes(&ta).into_iter().collect();
    let mut seen: HashSet<u128> = HashSet::new();
    let refs = nonzero_hashes(&tb).into_iter().filter(|h| !seen.insert(*h) || resident.contains(h)).count() as u64;
    assert!(refs > 300);
    assert_eq!(out.migrations[0].pages_dedup, refs);
    // Without the resident VM's domain, only its own duplicates.
    let other = run_text(&two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"",
        &format!(
            "[defaults]\nstrategy = \"zero+dedup-site+zstd\"\nsite_index = \"exact\"\nmechanism = \"stop-and-copy\"\n[[vms]]\nname = \"there\"\nhost = \"b-h-0\"\narchetype = \"idle-linux\"\ntenant = \"other\"\ntrace = \"{}\"\n[[vms]]\nname = \"mover\"\nhost = \"a-h-0\"\narchetype = \"idle-linux\"\ntrace = \"{}\"\n[[migrations]]\nvm = \"mover\"\nto = \"b\"\n",
            a.display(),
            b.display()
        ),
    ));
    let mut seen: HashSet<u128> = HashSet::new();
    let own = nonzero_hashes(&tb).into_iter().filter(|h| !seen.insert(*h)).count() as u64;
    assert_eq!(other.migrations[0].pages_dedup, own);
}

/// Four 1 GiB traced VMs of one image (1,048,576 pages), evacuated with
/// dedup-gang, at `bits` of content-hash sampling.
fn sampling_scenario(dirs: &[PathBuf], bits: u32) -> String {
    let mut vms = String::new();
    for (i, d) in dirs.iter().enumerate() {
        vms.push_str(&format!(
            "[[vms]]\nname = \"vm{i}\"\nhost = \"a-h-0\"\narchetype = \"web\"\nimage = \"web\"\ntrace = \"{}\"\n",
            d.display()
        ));
    }
    let mut text = two_sites(
        "bandwidth = \"10Gbit/s\"\nlatency = \"5ms\"",
        &format!("[defaults]\nstrategy = \"zero+dedup-gang+lz4\"\nstreams = 8\n{vms}[[evacuations]]\nfrom = \"a\"\nto = \"b\"\n"),
    );
    text = text.replacen("seed = 1\n", &format!("seed = 1\ntrace_sampling_bits = {bits}\n"), 1);
    text
}

fn sampling_traces() -> Vec<PathBuf> {
    let root = tmp("sampling");
    (0..4)
        .map(|i| {
            let d = root.join(format!("vm{i}"));
            gen(&d, "web", &format!("vm{i}"), 1 << 30, 10, 1_000_000_000, 1);
            d
        })
        .collect()
}

/// Totals of a run: (pages, dedup pages, bytes on wire).
fn totals(out: &RunOutput) -> (f64, f64, f64) {
    let sum = |f: &dyn Fn(&memfabric_sim::mechanism::MigrationRow) -> u64| out.migrations.iter().map(|m| f(m) as f64).sum::<f64>();
    let pages = sum(&|m| m.pages_zero + m.pages_dedup + m.pages_delta + m.pages_compressed + m.pages_raw);
    (pages, sum(&|m| m.pages_dedup), sum(&|m| m.bytes_on_wire))
}

/// Peak resident memory of this process since the last reset, KiB.
fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Resets the peak resident memory (Linux: `5` to `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// (c) Sampling with 6 bits keeps the dedup ratio and the bytes on the wire
/// within 2% of the unsampled run.
#[test]
fn content_hash_sampling_keeps_dedup_ratio_and_bytes() {
    let dirs = sampling_traces();
    let full = run(&parse(&sampling_scenario(&dirs, 0)), None);
    let sampled = run(&parse(&sampling_scenario(&dirs, 6)), None);
    let (pf, df, bf) = totals(&full);
    let (ps, ds, bs) = totals(&sampled);
    assert!(pf >= 1_048_576.0, "{pf} pages");
    let (rf, rs) = (df / pf, ds / ps);
    println!("dedup ratio: full {rf:.5}, sampled {rs:.5}; bytes: full {bf}, sampled {bs}");
    assert!(rf > 0.1, "cross-VM duplicates exist: dedup ratio {rf}");
    assert_close(rs, rf, 0.02, "dedup ratio, 6 bits");
    assert_close(bs, bf, 0.02, "bytes on wire, 6 bits");
}

/// Wall time and peak memory (load + run) with and without sampling; prints
/// the figures. `cargo test --release -p memfabric-sim --test trace_sim --
/// --ignored --nocapture sampling_cost`
#[test]
#[ignore = "measurement; prints wall time and peak memory"]
fn sampling_cost() {
    let dirs = sampling_traces();
    for bits in [0u32, 6] {
        let text = sampling_scenario(&dirs, bits);
        reset_peak_rss();
        let start = std::time::Instant::now();
        let sc = parse(&text);
        let loaded = start.elapsed();
        let out = run(&sc, None);
        let total = start.elapsed();
        drop(sc);
        let (p, d, b) = totals(&out);
        println!(
            "trace_sampling_bits = {bits}: load {:.2} s, run {:.2} s, total {:.2} s, peak RSS {} MiB; pages {p}, dedup {d}, bytes {b}",
            loaded.as_secs_f64(),
            (total - loaded).as_secs_f64(),
            total.as_secs_f64(),
            peak_rss_kib().unwrap_or(0) / 1024
        );
    }
}

/// The error of loading `text` (with VMs from `a-h-0`).
fn load_err(text: &str) -> String {
    scenario::parse(text, "test.toml").unwrap_err().to_string()
}

/// (d) Bad trace settings are refused at load, located at their key.
#[test]
fn bad_trace_settings_are_refused() {
    let root = tmp("errors");
    let dir = root.join("t");
    gen(&dir, "web", "vm", 1 << 20, 2, 1_000_000_000, 1);
    let vm = |keys: &str| two_sites("bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"", &format!("[[vms]]\nname = \"vm\"\nhost = \"a-h-0\"\narchetype = \"web\"\n{keys}\n"));
    // Missing directory: names the key, the directory and the missing file.
    let missing = root.join("nope");
    let e = load_err(&vm(&format!("trace = \"{}\"", missing.display())));
    assert!(e.contains("vms[0].trace") && e.contains("nope") && e.contains("manifest.json: missing"), "{e}");
    assert!(e.starts_with("test.toml:19:"), "located at the trace key: {e}");
    // Memory that disagrees with the trace: both values.
    let e = load_err(&vm(&format!("memory = \"2MiB\"\ntrace = \"{}\"", dir.display())));
    assert!(e.contains("vms[0].memory") && e.contains("2.00MiB") && e.contains("1.00MiB"), "{e}");
    // The same memory is fine.
    parse(&vm(&format!("memory = \"1MiB\"\ntrace = \"{}\"", dir.display())));
    // A corrupt trace is refused with the reader's reason.
    std::fs::write(dir.join("epochs.parquet"), b"not parquet").unwrap();
    let e = load_err(&vm(&format!("trace = \"{}\"", dir.display())));
    assert!(e.contains("vms[0].trace") && e.contains("epochs.parquet") && e.contains("corrupt: its xxh3 is"), "{e}");
    // Sampling bits out of range.
    let text = vm("").replacen("seed = 1\n", "seed = 1\ntrace_sampling_bits = 17\n", 1);
    let e = load_err(&text);
    assert!(e.contains("scenario.trace_sampling_bits") && e.contains("0..=16"), "{e}");
    // Time scale must be positive; trace keys need a trace.
    let e = load_err(&vm(&format!("trace = \"{}\"\ntrace_time_scale = 0.0", missing.display())));
    assert!(e.contains("vms[0].trace_time_scale") && e.contains("positive"), "{e}");
    let e = load_err(&vm("trace_loop = false"));
    assert!(e.contains("vms[0].trace_loop") && e.contains("only applies with `trace`"), "{e}");
}

/// Same scenario and seed, same results; the time scale and looping change
/// the dirty sets as documented.
#[test]
fn traced_runs_are_deterministic_and_time_scale_matters() {
    let dir = tmp("determinism").join("t");
    gen(&dir, "web", "vm", 64 << 20, 20, 100_000_000, 1);
    let keys = |more: &str| format!("archetype = \"web\"\ntrace = \"{}\"\n{more}", dir.display());
    let a = one_migration(&keys(""), "zero+xbzrle+lz4", "");
    let b = one_migration(&keys(""), "zero+xbzrle+lz4", "");
    assert_eq!(a, b);
    // Slower guest (times × 10): fewer pages dirtied per round.
    let slow = one_migration(&keys("trace_time_scale = 10.0"), "zero+xbzrle+lz4", "");
    assert!(slow.migrations[0].bytes_on_wire < a.migrations[0].bytes_on_wire);
    // No looping: after the 2 s trace the guest dirties nothing more.
    let strict = "downtime_limit = \"1ms\"\nmax_rounds = 4\non_non_convergence = \"force-stop\"";
    let once = one_migration(&keys("trace_loop = false\ntrace_time_scale = 0.01"), "zero", strict);
    let looped = one_migration(&keys("trace_time_scale = 0.01"), "zero", strict);
    assert_eq!(once.rounds.last().unwrap().dirty_pages, 0);
    let r = |o: &RunOutput| o.rounds.iter().map(|r| (r.round, r.pages, r.dirty_pages)).collect::<Vec<_>>();
    assert!(once.migrations[0].bytes_on_wire < looped.migrations[0].bytes_on_wire, "once {:?}\nlooped {:?}", r(&once), r(&looped));
}

/// The manifest and Parquet metadata name each trace replayed, with a hash of
/// its files; runs without traces do not carry the key.
#[test]
fn results_record_the_traces_replayed() {
    let sc = scenario::load(&scenario_path("trace-replay")).unwrap();
    assert_eq!(sc.trace_sources.len(), 2, "{:?}", sc.trace_sources);
    assert!(sc.trace_sources[0].starts_with("../traces/web-64mib (xxh3 "), "{:?}", sc.trace_sources);
    let outs = memfabric_sim::run::run_all(&sc, None);
    let json = serde_json::to_value(memfabric_sim::output::manifest(&outs, false)).unwrap();
    assert_eq!(json["traces"], serde_json::json!(sc.trace_sources));
    let meta = memfabric_sim::output::provenance(&outs[0]);
    assert!(meta.iter().any(|(k, v)| k == "memfabric.traces" && v == &sc.trace_sources.join("; ")));
    let plain = memfabric_sim::run::run(&scenario::load(&scenario_path("quickstart")).unwrap(), None);
    assert!(serde_json::to_value(memfabric_sim::output::manifest(std::slice::from_ref(&plain), false)).unwrap().get("traces").is_none());
    assert!(!memfabric_sim::output::provenance(&plain).iter().any(|(k, _)| k == "memfabric.traces"));
}

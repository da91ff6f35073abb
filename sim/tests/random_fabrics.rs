//! Seeded random scenarios under the invariant checker: generated fabrics
//! (sites, hosts, links, VMs with CPU models), migrations, evacuations, host
//! and site failures, random MTBF/MTTR, HA and energy. Debug builds check the
//! fabric state's invariants after every event and the energy integral at
//! the end; a run that breaks one panics, and this test names the seed and
//! the command that replays it.
//!
//! Replay one seed: `MEMFABRIC_FABRIC_SEED=17 cargo test -p memfabric-sim --test random_fabrics`.

use memfabric_sim::engine::RngStreams;
use memfabric_sim::scenario::parse;
use rand::Rng;
use std::fmt::Write;

/// Seeds run in CI.
const SEEDS: u64 = 400;

fn pick<'a>(rng: &mut impl Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.random_range(0..xs.len())]
}

/// A random scenario for `seed`.
fn generate(seed: u64) -> String {
    let mut rng = RngStreams::new(seed).stream("random-fabric");
    let mut s = String::new();
    let sites = rng.random_range(2..=4usize);
    let _ = writeln!(s, "[scenario]\nname = \"random-{seed}\"\nseed = {seed}\nhorizon = \"{}s\"", rng.random_range(60..600));
    let _ = writeln!(s, "[defaults]\nmechanism = \"{}\"", pick(&mut rng, &["pre-copy", "post-copy", "hybrid", "stop-and-copy"]));
    let _ = writeln!(s, "max_rounds = {}", rng.random_range(2..10));
    let _ = writeln!(s, "on_non_convergence = \"{}\"", pick(&mut rng, &["abort", "force-stop", "post-copy"]));
    let mut hosts: Vec<(usize, String)> = Vec::new();
    let models = ["Skylake-Server", "Cascadelake-Server", "Icelake-Server", "EPYC-Rome", "EPYC-Milan"];
    for i in 0..sites {
        let _ = writeln!(s, "[[sites]]\nname = \"s{i}\"");
        for j in 0..rng.random_range(1..=3) {
            let name = format!("h{i}-{j}");
            let _ = write!(s, "[[sites.hosts]]\nname = \"{name}\"\ncores = {}\nram = \"{}GiB\"\n", rng.random_range(4..32), rng.random_range(4..16));
            if rng.random_bool(0.5) {
                let _ = writeln!(s, "cpu_model = \"{}\"", pick(&mut rng, &models));
            }
            if rng.random_bool(0.2) {
                let _ = writeln!(s, "mtbf = \"{}s\"\nmttr = \"{}s\"", rng.random_range(20..300), rng.random_range(5..60));
            }
            hosts.push((i, name));
        }
    }
    // A chain so every pair of sites is connected, plus maybe a shortcut.
    for i in 1..sites {
        let _ = writeln!(s, "[[links]]\nname = \"l{i}\"\nbetween = [\"s{}\", \"s{i}\"]\nbandwidth = \"{}Gbit/s\"\nlatency = \"{}ms\"", i - 1, rng.random_range(1..20), rng.random_range(1..50));
        if rng.random_bool(0.3) {
            let _ = writeln!(s, "[[links.outages]]\nat = \"{}s\"\nduration = \"{}s\"", rng.random_range(0..60), rng.random_range(1..30));
        }
    }
    let mut vms = Vec::new();
    for (k, (_, host)) in hosts.iter().enumerate() {
        // One small VM per host: it always fits (hosts have >= 4 GiB).
        let name = format!("vm{k}");
        let _ = writeln!(s, "[[vms]]\nname = \"{name}\"\nhost = \"{host}\"\narchetype = \"{}\"\nmemory = \"{}MiB\"", pick(&mut rng, &["idle-linux", "web", "oltp-db", "memcached"]), rng.random_range(64..1024));
        let _ = writeln!(s, "ha_priority = \"{}\"", pick(&mut rng, &["high", "medium", "low", "disabled"]));
        vms.push(name);
    }
    for _ in 0..rng.random_range(0..6) {
        let k = rng.random_range(0..vms.len());
        let vm = &vms[k];
        // VM k starts on host k: a host target is any other host.
        let other = (k + 1 + rng.random_range(0..hosts.len())) % hosts.len();
        let to = if rng.random_bool(0.5) || other == k { format!("s{}", rng.random_range(0..sites)) } else { hosts[other].1.clone() };
        let _ = writeln!(s, "[[migrations]]\nvm = \"{vm}\"\nto = \"{to}\"\nat = \"{}s\"", rng.random_range(0..60));
    }
    for _ in 0..rng.random_range(0..3) {
        let from = rng.random_range(0..sites);
        let to = (from + 1 + rng.random_range(0..sites - 1)) % sites;
        let _ = writeln!(s, "[[evacuations]]\nfrom = \"s{from}\"\nto = \"s{to}\"\nat = \"{}s\"\nmax_concurrent = {}", rng.random_range(0..60), rng.random_range(1..4));
    }
    for _ in 0..rng.random_range(0..4) {
        let what = if rng.random_bool(0.8) {
            format!("host = \"{}\"", hosts[rng.random_range(0..hosts.len())].1)
        } else {
            format!("site = \"s{}\"", rng.random_range(0..sites))
        };
        let _ = writeln!(s, "[[failures]]\n{what}\nat = \"{}s\"", rng.random_range(0..120));
        if rng.random_bool(0.6) {
            let _ = writeln!(s, "repair_after = \"{}s\"", rng.random_range(1..120));
        }
    }
    if rng.random_bool(0.7) {
        let _ = writeln!(s, "[ha]\ndetection = \"{}s\"\nboot_time = \"{}s\"\nscope = \"{}\"", rng.random_range(0..20), rng.random_range(0..60), pick(&mut rng, &["site", "fabric"]));
        if rng.random_bool(0.5) {
            let _ = writeln!(s, "admission_host_failures = 1");
        }
    }
    if rng.random_bool(0.5) {
        let _ = writeln!(s, "[power]");
    }
    s
}

fn run_seed(seed: u64) {
    let text = generate(seed);
    let sc = parse(&text, &format!("random-{seed}.toml")).unwrap_or_else(|e| panic!("generated scenario {seed} is invalid: {e}\n{text}"));
    let a = memfabric_sim::run::run(&sc, None);
    // Every VM is in exactly one place at the end, and the rows agree with the state.
    assert!(a.migrations.iter().all(|m| m.end_s >= m.start_s));
    assert!(a.vm_availability.iter().all(|v| v.downtime_s >= 0.0 && v.lost_work_s >= 0.0));
    assert!(a.host_energy_j.iter().all(|j| *j >= 0.0));
}

#[test]
fn random_fabrics_keep_every_invariant() {
    let seeds: Vec<u64> = match std::env::var("MEMFABRIC_FABRIC_SEED") {
        Ok(v) => vec![v.parse().expect("MEMFABRIC_FABRIC_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    for seed in seeds {
        if std::panic::catch_unwind(|| run_seed(seed)).is_err() {
            panic!(
                "random fabric seed {seed} failed; replay it with:\n  MEMFABRIC_FABRIC_SEED={seed} cargo test -p memfabric-sim --test random_fabrics\nscenario:\n{}",
                generate(seed)
            );
        }
    }
}

#[test]
fn generation_is_deterministic() {
    assert_eq!(generate(5), generate(5));
    assert_ne!(generate(5), generate(6));
}

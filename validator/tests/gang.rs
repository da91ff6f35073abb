//! Gang migrations on loopback (`migrate --guests N`): every guest of the
//! gang arrives intact in each dedup mode; `dedup-gang` sends less than the
//! same guests deduplicated one by one; a warm destination site saves more
//! in each `site_index` mode; a lying site index never yields a wrong page;
//! tenants never share content; a link cut or a killed destination leaves
//! every source guest running. Small guests (64 MiB, idle-linux: 15 % image
//! pages). Needs /dev/kvm; skips with a message where it is missing.

mod common;

use common::{column_str, column_u64, migrate_with, Run};
use memfabric_validator::kvm::kvm_or_skip;
use serde_json::Value;

fn gang(name: &str, extra: &[&str]) -> Run {
    // Several guests share the 2 cores: watch each resumed guest for 1 s.
    let extra: Vec<&str> = extra.iter().copied().chain(["--watch", "1s"]).collect();
    migrate_with(name, &["--mem", "64MiB", "--workload", "idle-linux", "--dirty-rate", "2000"], &extra)
}

fn guests(r: &Run) -> &Vec<Value> {
    r.manifest["guests"].as_array().unwrap_or_else(|| panic!("no guests in the manifest:\n{}\n{}", r.stdout, r.stderr))
}

/// Every guest completed with every chunk equal and carried on; returns the
/// gang's bytes on wire.
fn assert_gang_completed(r: &Run, n: usize) -> u64 {
    assert!(r.ok, "gang migration failed:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.leftover.trim().is_empty(), "processes left behind: {}", r.leftover);
    let g = guests(r);
    assert_eq!(g.len(), n);
    for guest in g {
        assert_eq!(guest["outcome"], "completed", "{guest}");
        assert_eq!(guest["integrity_held"], true, "{guest}");
        assert_eq!(guest["chunks_compared"], 16, "64 MiB = 16 chunks: {guest}");
        assert_eq!(guest["chunks_differing"], 0, "{guest}");
    }
    assert_eq!(column_str(&r.out, "migrations.parquet", "outcome"), vec!["completed"; n]);
    let per_guest = column_u64(&r.out, "migrations.parquet", "bytes_on_wire");
    let total = r.manifest["gang"]["bytes_on_wire"].as_u64().unwrap();
    assert_eq!(per_guest.iter().sum::<u64>(), total, "the rows add up to the gang");
    total
}

fn site(r: &Run, guest: usize, side: &str, key: &str) -> u64 {
    guests(r)[guest][side][key].as_u64().unwrap_or_else(|| panic!("{side}.{key} of guest {guest}: {}", r.manifest))
}

#[test]
fn dedup_gang_sends_each_image_page_once() {
    if !kvm_or_skip("dedup_gang_sends_each_image_page_once") {
        return;
    }
    let vm = assert_gang_completed(&gang("gang-vm", &["--guests", "3", "--pipeline", "zero+dedup-vm+lz4"]), 3);
    let gang_run = gang("gang-gang", &["--guests", "3", "--pipeline", "zero+dedup-gang+lz4"]);
    let g = assert_gang_completed(&gang_run, 3);
    // idle-linux: 60 % zero, 15 % image pages, 25 % own pages; two of three
    // guests send their image pages as references: about a quarter less.
    assert!((g as f64) < 0.85 * vm as f64, "dedup-gang {g} bytes vs dedup-vm {vm}");
    let refs: Vec<u64> = column_u64(&gang_run.out, "migrations.parquet", "pages_dedup");
    let image_pages = (0.15 * 16384.0) as u64;
    assert!(refs.iter().sum::<u64>() > image_pages, "the gang referenced the image's pages: {refs:?}");
    // The simulator replays the same case from the folder's scenario: one
    // evacuation moving the three same-image VMs together.
    let scenario = memfabric_sim::scenario::load(&gang_run.out.join("scenario.toml")).expect("scenario.toml loads");
    let sim = memfabric_sim::run::run(&scenario, None);
    assert_eq!(sim.migrations.len(), 3);
    assert!(sim.migrations.iter().all(|m| m.outcome == memfabric_migration::record::Outcome::Completed && m.operation == sim.migrations[0].operation));
    // The simulator's gang effect too: the first VM sends the image, the
    // others reference it. (Its lz4 model sends more than this guest's
    // pages compress to, so bytes are compared within each side.)
    let sim_bytes: Vec<u64> = sim.migrations.iter().map(|m| m.bytes_on_wire).collect();
    assert!(sim_bytes[1] < sim_bytes[0] && sim_bytes[2] < sim_bytes[0], "simulated gang {sim_bytes:?}");
}

#[test]
fn warm_site_sends_less_in_every_index_mode() {
    if !kvm_or_skip("warm_site_sends_less_in_every_index_mode") {
        return;
    }
    let site_args = |mode: &'static str, warm: &'static str| ["--guests", "2", "--pipeline", "zero+dedup-site+lz4", "--site-index", mode, "--warm-guests", warm];
    let cold = assert_gang_completed(&gang("site-cold", &site_args("exact", "0")), 2);
    for mode in ["exact", "query", "summary"] {
        let r = gang(&format!("site-{mode}"), &site_args(mode, "1"));
        let warm = assert_gang_completed(&r, 2);
        assert!((warm as f64) < 0.95 * cold as f64, "{mode}: warm site {warm} bytes vs cold {cold}");
        for i in 0..2 {
            match mode {
                "query" => {
                    assert!(site(&r, i, "source_site", "queries") > 0 && site(&r, i, "source_site", "hashes_held") > 0, "{}", r.manifest);
                    assert!(site(&r, i, "source_site", "query_bytes") > 0);
                }
                "summary" => assert!(site(&r, i, "source_site", "summary_bytes") > 1000, "{}", r.manifest),
                _ => assert_eq!(site(&r, i, "source_site", "summary_bytes") + site(&r, i, "source_site", "queries"), 0),
            }
        }
        // The scenario says which index the simulator models.
        let toml = std::fs::read_to_string(r.out.join("scenario.toml")).unwrap();
        assert!(toml.contains(&format!("site_index = \"{mode}\"")), "{toml}");
        assert!(toml.contains("name = \"warm-0\"\nhost = \"destination-h\""), "{toml}");
        memfabric_sim::scenario::load(&r.out.join("scenario.toml")).expect("scenario.toml loads");
    }
}

#[test]
fn a_lying_site_index_costs_bytes_never_a_wrong_page() {
    if !kvm_or_skip("a_lying_site_index_costs_bytes_never_a_wrong_page") {
        return;
    }
    for mode in ["summary", "query"] {
        let r = gang(
            &format!("lying-{mode}"),
            &["--guests", "2", "--pipeline", "zero+dedup-site+lz4", "--site-index", mode, "--warm-guests", "1", "--corrupt-site-index"],
        );
        assert_gang_completed(&r, 2);
        for i in 0..2 {
            // The lie fired: references to content the site lacks were
            // reported missing and answered with the pages.
            let missing = site(&r, i, "source_site", "refs_missing");
            assert!(missing > 100, "{mode}: guest {i} had {missing} missing references: {}", r.manifest);
            assert!(site(&r, i, "source_site", "fallback_bytes") > 0);
            assert_eq!(site(&r, i, "dest_site", "refs_missing"), missing);
        }
    }
}

#[test]
fn no_reference_crosses_tenants() {
    if !kvm_or_skip("no_reference_crosses_tenants") {
        return;
    }
    // Same image, same tenant: guest-1 references guest-0's image pages.
    let same = gang("tenant-same", &["--guests", "2", "--tenants", "acme", "--pipeline", "zero+dedup-gang+lz4"]);
    assert_gang_completed(&same, 2);
    // Two tenants: each sends the image in full, nothing is resolved from
    // the other's content at the destination.
    let two = gang("tenant-two", &["--guests", "2", "--tenants", "acme,globex", "--pipeline", "zero+dedup-gang+lz4"]);
    assert_gang_completed(&two, 2);
    let refs = |r: &Run| column_u64(&r.out, "migrations.parquet", "pages_dedup");
    let (same_refs, two_refs) = (refs(&same), refs(&two));
    let image_pages = (0.15 * 16384.0) as u64;
    let cross = |r: &Run| site(r, 0, "dest_site", "refs_resolved_late") + site(r, 1, "dest_site", "refs_resolved_late");
    assert!(same_refs.iter().sum::<u64>() > two_refs.iter().sum::<u64>() + image_pages / 2, "same tenant {same_refs:?} vs two {two_refs:?}");
    assert_eq!(cross(&two), 0, "with two tenants no reference waits for the other guest's content: {}", two.manifest);
    assert_eq!(guests(&two)[1]["tenant"], "globex");
    let toml = std::fs::read_to_string(two.out.join("scenario.toml")).unwrap();
    assert!(toml.contains("tenant = \"acme\"") && toml.contains("tenant = \"globex\""), "{toml}");
}

fn assert_all_aborted_sources_running(r: &Run) {
    assert!(!r.ok, "the gang should have failed:\n{}", r.stdout);
    assert!(r.leftover.trim().is_empty(), "processes left behind: {}", r.leftover);
    assert_eq!(r.manifest["fault_triggered"], true, "{}", r.manifest);
    for g in guests(r) {
        assert_eq!(g["outcome"], "aborted", "{g}");
        assert_ne!(g["integrity_held"], true);
        let w = &g["source_guest_after_abort"];
        assert!(w[1].as_u64().unwrap() > w[0].as_u64().unwrap(), "the source guest keeps running: {g}");
    }
}

#[test]
fn gang_link_cut_and_destination_kill_leave_every_source_guest_running() {
    if !kvm_or_skip("gang_link_cut_and_destination_kill_leave_every_source_guest_running") {
        return;
    }
    let cut = gang("gang-cut", &["--guests", "2", "--pipeline", "zero+dedup-gang+lz4", "--fault", "cut-link@2MiB", "--io-timeout", "1s"]);
    assert_all_aborted_sources_running(&cut);
    let kill = gang("gang-kill", &["--guests", "2", "--pipeline", "zero+dedup-gang+lz4", "--fault", "kill-dest@2MiB", "--io-timeout", "1s"]);
    assert_all_aborted_sources_running(&kill);
}

#[test]
fn bad_gang_arguments_are_refused_up_front() {
    for (args, says) in [
        (&["--guests", "0"][..], "--guests"),
        (&["--guests", "2", "--tenants", "acme,"][..], "--tenants"),
        (&["--guests", "2", "--fault", "dest-ram@1"][..], "dest-ram"),
        (&["--guests", "2", "--pipeline", "zero+encrypt"][..], "--tls"),
        (&["--guests", "64", "--mem", "8GiB"][..], "MemAvailable"),
    ] {
        common::assert_refused("gang-bad", args, says);
    }
}

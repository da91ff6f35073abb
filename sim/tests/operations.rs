//! Fabric operations and failures: evacuation with a concurrency cap, running
//! out of room at the destination, link outages and capacity changes.

mod common;
use common::*;
use memfabric_migration::record::Outcome;

fn evacuation(n: usize, cap: &str, dst_hosts: &str, link_extra: &str, settings: &str) -> String {
    format!(
        r#"[scenario]
name = "evac"
[[sites]]
name = "a"
hosts = [{{ name = "a-h", cores = 64, ram = "1TiB" }}]
[[sites]]
name = "b"
hosts = [{dst_hosts}]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "0ms"
{link_extra}
[[vms]]
name = "vm"
count = {n}
host = "a-h"
archetype = "idle-linux"
memory = "1GiB"
workload = {{ page_write_rate = "0pages/s" }}
[[evacuations]]
from = "a"
to = "b"
{cap}
settings = {{ {settings} }}
"#
    )
}

#[test]
fn evacuation_respects_its_concurrency_cap_and_moves_everything() {
    let out = run_text(&evacuation(6, "max_concurrent = 2", "{ name = \"b-h\", cores = 64, ram = \"1TiB\" }", "", ""));
    assert_eq!(out.migrations.len(), 6);
    assert!(out.migrations.iter().all(|m| m.outcome == Outcome::Completed && m.dst_site == "b"));
    // Never more than two in flight at any instant.
    for m in &out.migrations {
        let t = m.start_s + 1e-6;
        let in_flight = out.migrations.iter().filter(|x| x.start_s <= t && t < x.end_s).count();
        assert!(in_flight <= 2, "{in_flight} in flight at {t}");
    }
    assert!(out.links.iter().all(|l| l.flows <= 2));
    // Two at a time at 62.5 MB/s each: three waves of one 1 GiB copy.
    let wave = (262_144.0 * 4104.0 + 1048576.0) / 62.5e6;
    let makespan = out.migrations.iter().map(|m| m.end_s).fold(0.0, f64::max);
    assert_close(makespan, 3.0 * wave, 1e-6, "makespan");
}

#[test]
fn evacuation_stops_placing_when_the_destination_is_full() {
    // Room for 3 VMs of 1 GiB at b.
    let out = run_text(&evacuation(5, "", "{ name = \"b-h\", cores = 64, ram = \"3GiB\" }", "", ""));
    let done = out.migrations.iter().filter(|m| m.outcome == Outcome::Completed).count();
    let full = out.migrations.iter().filter(|m| m.outcome == Outcome::NoCapacity).count();
    assert_eq!((done, full), (3, 2));
    assert!(out
        .migrations
        .iter()
        .filter(|m| m.outcome == Outcome::NoCapacity)
        .all(|m| m.dst_host.is_empty() && m.dst_site == "b" && m.bytes_on_wire == 0));
}

#[test]
fn outage_aborts_pre_copy_and_loses_post_copy() {
    // Each copy takes ~8.6 s at 125 MB/s alone; the link dies at 4 s.
    let link = "outages = [{ at = \"4s\", duration = \"10s\" }]";
    let pre = run_text(&evacuation(1, "", "{ name = \"b-h\", cores = 64, ram = \"1TiB\" }", link, ""));
    let m = &pre.migrations[0];
    assert_eq!(m.outcome, Outcome::AbortedLinkFailure);
    assert_close(m.end_s, 4.0, 1e-9, "aborted when the link died");
    assert_eq!(m.downtime_ms, 0.0);
    let partial = pre.rounds.iter().find(|r| !r.complete).expect("the cut round is recorded");
    assert_close(partial.bytes_on_wire as f64, 4.0 * 125e6, 1e-6, "bytes sent before the outage");

    let post = run_text(&evacuation(1, "", "{ name = \"b-h\", cores = 64, ram = \"1TiB\" }", link, "mechanism = \"post-copy\""));
    let m = &post.migrations[0];
    assert_eq!(m.outcome, Outcome::Lost);
    assert!(m.downtime_ms < 100.0, "the VM had resumed at the destination before it was lost");

    // A migration that starts during the outage fails at once.
    let late = run_text(&evacuation(1, "at = \"5s\"", "{ name = \"b-h\", cores = 64, ram = \"1TiB\" }", link, ""));
    assert_eq!(late.migrations[0].outcome, Outcome::AbortedLinkFailure);
    assert_eq!(late.migrations[0].bytes_on_wire, 0);
}

#[test]
fn capacity_changes_slow_flows_down_mid_transfer() {
    let link = "capacity_changes = [{ at = \"2s\", bandwidth = \"500Mbit/s\" }]";
    let out = run_text(&evacuation(1, "", "{ name = \"b-h\", cores = 64, ram = \"1TiB\" }", link, ""));
    let bytes = 262_144.0 * 4104.0 + 1048576.0;
    // 2 s at 125 MB/s, the rest at 62.5 MB/s.
    let expected = 2.0 + (bytes - 2.0 * 125e6) / 62.5e6;
    assert_close(out.migrations[0].total_time_s, expected, 1e-6, "total time");
    let caps: Vec<f64> = out.links.iter().filter(|l| l.from_site == "a").map(|l| l.capacity_bytes_per_s).collect();
    assert!(caps.contains(&125e6) && caps.contains(&62.5e6), "{caps:?}");
}

#[test]
fn horizon_leaves_migrations_unfinished() {
    let text = evacuation(1, "", "{ name = \"b-h\", cores = 64, ram = \"1TiB\" }", "", "").replace("name = \"evac\"", "name = \"evac\"\nhorizon = \"3s\"");
    let out = run_text(&text);
    assert_eq!(out.migrations[0].outcome, Outcome::Unfinished);
    assert_close(out.migrations[0].end_s, 3.0, 1e-9, "ends at the horizon");
    assert!(!out.rounds[0].complete);
}

#[test]
fn evacuation_order_largest_first() {
    let text = r#"[scenario]
name = "order"
[[sites]]
name = "a"
hosts = [{ name = "a-h", cores = 64, ram = "1TiB" }]
[[sites]]
name = "b"
hosts = [{ name = "b-h", cores = 64, ram = "1TiB" }]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "1ms"
[[vms]]
name = "small"
host = "a-h"
archetype = "idle-linux"
memory = "1GiB"
[[vms]]
name = "big"
host = "a-h"
archetype = "idle-linux"
memory = "4GiB"
[[evacuations]]
from = "a"
to = "b"
max_concurrent = 1
order = "largest-first"
"#;
    let out = run_text(text);
    assert_eq!(out.migrations[0].vm, "big");
    assert_eq!(out.migrations[1].vm, "small");
    assert!(out.migrations[1].start_s >= out.migrations[0].end_s);
}

#[test]
fn intra_site_migration_runs_at_lan_rate() {
    let text = two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"10ms\"",
        "[[vms]]\nname = \"vm\"\nhost = \"a-h-0\"\narchetype = \"idle-linux\"\nmemory = \"1GiB\"\nworkload = { page_write_rate = \"0pages/s\" }\n[[migrations]]\nvm = \"vm\"\nto = \"a-h-1\"\n",
    )
    .replace("seed = 1", "seed = 1\nlan_bandwidth = \"25Gbit/s\"");
    let out = run_text(&text);
    let m = &out.migrations[0];
    assert_eq!((m.outcome, m.dst_host.as_str(), m.bottleneck.as_str()), (Outcome::Completed, "a-h-1", "lan"));
    let bytes = 262_144.0 * 4104.0 + 1048576.0;
    assert_close(m.total_time_s, bytes / (25e9 / 8.0), 1e-6, "LAN transfer time");
    assert!(out.links.is_empty(), "no WAN link carried anything");
}

#[test]
fn outage_catches_the_post_copy_switch_in_flight() {
    // 40 ms one-way: the device state (1 MiB) is sent in ~8 ms after the 80 ms
    // set-up, then propagates for 40 ms; the link dies during that propagation.
    let text = two_sites(
        "bandwidth = \"1Gbit/s\"\nlatency = \"40ms\"\noutages = [{ at = \"100ms\", duration = \"1s\" }]",
        "[[vms]]\nname = \"vm\"\nhost = \"a-h-0\"\narchetype = \"idle-linux\"\n[[migrations]]\nvm = \"vm\"\nto = \"b\"\nsettings = { mechanism = \"post-copy\" }\n",
    );
    let out = run_text(&text);
    let m = &out.migrations[0];
    assert_eq!(m.outcome, Outcome::AbortedLinkFailure, "the VM never resumed at b, so it resumes at the source");
    assert_close(m.end_s, 0.1, 1e-9, "ends at the outage");
    assert_close(m.downtime_ms, 100.0 - 80.0, 1e-6, "paused from the switch to the outage");
}

#[test]
fn evacuation_skips_vms_another_operation_moved() {
    // The evacuation moves one VM at a time; meanwhile a scheduled migration
    // moves vm-2 to b. The evacuation must not move vm-2 again (b → b).
    let text = evacuation(3, "max_concurrent = 1", "{ name = \"b-h\", count = 2, cores = 64, ram = \"1TiB\" }", "", "")
        .replace("[[evacuations]]", "[[migrations]]\nvm = \"vm-2\"\nto = \"b\"\nat = \"1s\"\n[[evacuations]]");
    let out = run_text(&text);
    let rows: Vec<(&str, &str)> = out.migrations.iter().map(|m| (m.operation.as_str(), m.vm.as_str())).collect();
    assert_eq!(rows, [("evacuate-a", "vm-0"), ("migrate-vm-2", "vm-2"), ("evacuate-a", "vm-1")]);
    assert!(out.migrations.iter().all(|m| m.outcome == Outcome::Completed && m.src_site == "a"));
}

//! Cases with known answers: the pre-copy closed form, non-convergence,
//! max-min sharing and the TCP caps, checked through whole scenario runs.

mod common;
use common::*;
use memfabric_migration::RAW_PAGE_WIRE_BYTES;
use memfabric_migration::record::{Outcome, RoundPhase};
use memfabric_sim::run::RunOutput;

const W: f64 = RAW_PAGE_WIRE_BYTES as f64;

/// Pre-copy of one VM with a constant write rate r over a working set much
/// larger than anything dirtied, alone on a link of B bytes/s with no latency
/// (so no TCP cap and no setup time) and no data reduction:
///   P_0 = N pages, T_i = P_i·w/B, P_{i+1} = r·T_i = N·ρ^{i+1}, ρ = r·w/B,
///   stop after round n-1 when P_n·w <= B·d,
///   downtime = (P_n·w + S)/B, total = Σ_{i<n} T_i + downtime.
#[test]
fn precopy_rounds_follow_the_closed_form() {
    // 1 ms: the stop-and-copy carries about 4 pages and the 1 MiB of state.
    precopy_closed_form("1ms", 0.001, "1MiB", 1048576.0);
}

/// The closed form when the stop threshold is below one page (20 µs at
/// 1 Gbit/s is 0.61 page): the last round leaves an expected 0.04 dirty
/// pages, and with expected sampling the stop-and-copy carries that
/// fraction of a page. Rounding the expectation made it carry nothing
/// (issue 15).
#[test]
fn a_stop_and_copy_under_one_page_carries_the_expected_fraction() {
    let out = precopy_closed_form("20us", 20e-6, "0B", 0.0);
    let stop = out.rounds.iter().find(|r| r.phase == RoundPhase::StopCopy).expect("a stop-and-copy");
    assert_eq!(stop.pages, 0, "whole pages in the table");
    assert!(stop.bytes_on_wire > 0, "the expected fraction of a page crosses");
}

/// Pre-copy of one VM with a constant write rate r over a working set much
/// larger than anything dirtied, alone on a link of B bytes/s with no latency
/// (so no TCP cap and no setup time) and no data reduction, with downtime
/// limit d and device state S:
///   P_0 = N pages, T_i = P_i·w/B, P_{i+1} = r·T_i = N·ρ^{i+1}, ρ = r·w/B,
///   stop after round n-1 when P_n·w <= B·d,
///   downtime = (P_n·w + S)/B, total = Σ_{i<n} T_i + downtime.
/// Expected sampling keeps P_i fractional.
fn precopy_closed_form(limit: &str, d: f64, state: &str, s: f64) -> RunOutput {
    let b = 125e6; // 1 Gbit/s in bytes/s
    let r = 300.0; // pages/s
    let n_pages = 4_194_304.0; // 16 GiB
    let text = two_sites(
        r#"bandwidth = "1Gbit/s"
latency = "0ms""#,
        &format!(
            r#"
[defaults]
downtime_limit = "{limit}"
dirty_sampling = "expected"
[[vms]]
name = "vm"
host = "a-h-0"
archetype = "hpc"
memory = "16GiB"
device_state = "{state}"
workload = {{ popularity = "uniform", working_set = "100%", page_write_rate = "300pages/s" }}
[[migrations]]
vm = "vm"
to = "b"
"#
        ),
    );
    let out = run_text(&text);
    let m = &out.migrations[0];
    assert_eq!(m.outcome, Outcome::Completed);
    assert_eq!(m.converged, Some(true));

    let rho = r * W / b;
    let mut pages = vec![n_pages];
    while pages.last().unwrap() * W > b * d {
        let next = pages.last().unwrap() * rho;
        pages.push(next);
    }
    let n = pages.len() - 1; // rounds before the stop-and-copy
    assert_eq!(m.rounds as usize, n, "number of pre-copy rounds");
    let rounds: Vec<_> = out.rounds.iter().filter(|r| r.phase == RoundPhase::PreCopy).collect();
    for (i, row) in rounds.iter().enumerate() {
        // Round 1 is the only one where 1 - e^{-x} differs from x noticeably (x = ρ ≈ 1%).
        assert_close(row.pages as f64, pages[i].round(), 0.01, &format!("pages of round {i}"));
        // Rounds end on whole nanoseconds: a 4-page round of 131 µs is 2e-6 off.
        assert_close(row.rate_bytes_per_s, b, 1e-5, &format!("rate of round {i}"));
    }
    let stop = out.rounds.iter().find(|r| r.phase == RoundPhase::StopCopy).expect("a stop-and-copy");
    assert_close(stop.bytes_on_wire as f64, pages[n] * W + s, 0.01, "stop-and-copy bytes");
    let downtime = (pages[n] * W + s) / b;
    let total: f64 = pages[..n].iter().map(|p| p * W / b).sum::<f64>() + downtime;
    assert_close(m.downtime_ms / 1e3, downtime, 0.01, "downtime");
    assert_close(m.total_time_s, total, 0.005, "total time");
    assert_close(m.bytes_on_wire as f64, pages.iter().map(|p| p * W).sum::<f64>() + s, 0.005, "bytes on wire");
    out
}

fn hot_vm(settings: &str) -> String {
    // 40k pages/s uniformly over 1 GiB on a 1 Gbit/s link: every round re-dirties
    // far more than 300 ms of link time can carry.
    two_sites(
        r#"bandwidth = "1Gbit/s"
latency = "1ms""#,
        &format!(
            r#"
[defaults]
dirty_sampling = "expected"
tcp_window = "64MiB"
{settings}
[[vms]]
name = "vm"
host = "a-h-0"
archetype = "hpc"
memory = "1GiB"
workload = {{ popularity = "uniform", working_set = "100%", page_write_rate = "40000pages/s" }}
[[migrations]]
vm = "vm"
to = "b"
"#
        ),
    )
}

#[test]
fn non_convergence_is_reported_not_looped() {
    let out = run_text(&hot_vm("on_non_convergence = \"abort\"\nmax_rounds = 8"));
    let m = &out.migrations[0];
    assert_eq!(m.outcome, Outcome::NotConverged);
    assert_eq!(m.converged, Some(false));
    assert_eq!(m.rounds, 8, "stops at max_rounds");
    assert_eq!(m.downtime_ms, 0.0, "an aborted pre-copy never pauses the VM");
    assert_eq!(m.dst_host, "b-h-0");
}

#[test]
fn forced_stop_exceeds_the_downtime_limit() {
    let out = run_text(&hot_vm("on_non_convergence = \"force-stop\"\nmax_rounds = 8"));
    let m = &out.migrations[0];
    assert_eq!(m.outcome, Outcome::Completed);
    assert_eq!(m.converged, Some(false));
    assert!(m.downtime_ms > 300.0, "downtime {} ms", m.downtime_ms);
}

#[test]
fn post_copy_fallback_completes_with_short_downtime() {
    let out = run_text(&hot_vm("on_non_convergence = \"post-copy\"\nmax_rounds = 8"));
    let m = &out.migrations[0];
    assert_eq!(m.outcome, Outcome::Completed);
    assert_eq!(m.converged, Some(false));
    assert!(m.bytes_postcopy > 0);
    assert!(m.downtime_ms < 50.0, "only device state is sent during the pause: {} ms", m.downtime_ms);
    assert!(m.postcopy_faults > 0);
    // The stalls the faults cause are bounded by the vCPUs' time during the push.
    let push = out.rounds.iter().find(|r| r.phase == RoundPhase::PostCopyPush).unwrap();
    let vcpu_secs = 2.0 * (push.end_s - push.start_s);
    assert!(m.postcopy_fault_wait_ms / 1e3 <= vcpu_secs * (1.0 - m.postcopy_guest_speed) * 1.01 + 1e-3);
    assert!(m.postcopy_guest_speed > 0.0 && m.postcopy_guest_speed <= 1.0);
}

#[test]
fn auto_converge_throttles_until_it_converges() {
    let out = run_text(&hot_vm("on_non_convergence = \"abort\"\nauto_converge = true\nmax_rounds = 30"));
    let m = &out.migrations[0];
    assert_eq!(m.outcome, Outcome::Completed, "{:?}", m);
    assert_eq!(m.converged, Some(true));
    assert!(m.throttle_pct_max >= 20, "throttle {}", m.throttle_pct_max);
    // The throttle steps follow QEMU: 0, then 20, then +10 per step.
    let steps: Vec<u32> = out.rounds.iter().filter(|r| r.phase == RoundPhase::PreCopy).map(|r| r.throttle_pct).collect();
    assert_eq!(steps[0], 0);
    for w in steps.windows(2) {
        assert!(w[1] == w[0] || w[1] == if w[0] == 0 { 20 } else { w[0] + 10 }, "steps {steps:?}");
    }
}

fn idle_vms(n: usize, link: &str, settings: &str) -> String {
    let mut rest = format!(
        r#"
[defaults]
{settings}
[[vms]]
name = "vm"
count = {n}
host = "a-h-0"
archetype = "idle-linux"
memory = "256MiB"
workload = {{ page_write_rate = "0pages/s" }}
"#
    );
    for i in 0..n {
        rest += &format!("[[migrations]]\nvm = \"vm-{i}\"\nto = \"b\"\n");
    }
    two_sites(link, &rest)
}

#[test]
fn equal_flows_share_the_link_equally() {
    let out = run_text(&idle_vms(4, "bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"", ""));
    for r in &out.rounds {
        if r.phase == RoundPhase::PreCopy {
            assert_close(r.rate_bytes_per_s, 125e6 / 4.0, 1e-6, "fair share");
        }
    }
    assert!(out.migrations.iter().all(|m| m.bottleneck == "ab"));
}

#[test]
fn tcp_window_caps_a_single_stream() {
    // RTT 100 ms, 4 MiB window: 41.9 MB/s per stream on a 10 Gbit/s link.
    let link = "bandwidth = \"10Gbit/s\"\nlatency = \"50ms\"";
    let cap = 4.0 * 1048576.0 / 0.1;
    for (streams, expected, bottleneck) in [(1, cap, "tcp-window"), (4, 4.0 * cap, "tcp-window"), (64, 1.25e9, "ab")] {
        let out = run_text(&idle_vms(1, link, &format!("streams = {streams}")));
        let round0 = &out.rounds[0];
        assert_close(round0.rate_bytes_per_s, expected, 1e-6, &format!("{streams} streams"));
        assert_eq!(out.migrations[0].bottleneck, bottleneck);
        // Setup costs one RTT before the first byte.
        assert_close(round0.start_s, 0.1, 1e-9, "setup");
    }
}

#[test]
fn mathis_bound_caps_lossy_paths() {
    // RTT 100 ms, 1% loss: 1448 B * sqrt(3/2) / (0.1 s * 0.1) = 177.3 kB/s per stream.
    let out = run_text(&idle_vms(1, "bandwidth = \"10Gbit/s\"\nlatency = \"50ms\"\nloss = \"1%\"", "streams = 2"));
    let expected = 2.0 * 1448.0 * 1.5f64.sqrt() / (0.1 * 0.1);
    assert_close(out.rounds[0].rate_bytes_per_s, expected, 1e-6, "Mathis cap");
    assert_eq!(out.migrations[0].bottleneck, "tcp-loss");
}

#[test]
fn a_flow_bottlenecked_elsewhere_frees_bandwidth() {
    // a -1Gbit/s- b -100Mbit/s- c. x goes a→c (limited to 12.5 MB/s by b–c),
    // y goes a→b and gets the rest of a–b: 125 - 12.5 = 112.5 MB/s.
    let text = r#"
[scenario]
name = "t"
[[sites]]
name = "a"
hosts = [{ name = "a-h", cores = 64, ram = "1TiB" }]
[[sites]]
name = "b"
hosts = [{ name = "b-h", cores = 64, ram = "1TiB" }]
[[sites]]
name = "c"
hosts = [{ name = "c-h", cores = 64, ram = "1TiB" }]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "0ms"
[[links]]
name = "bc"
between = ["b", "c"]
bandwidth = "100Mbit/s"
latency = "0ms"
[[vms]]
name = "x"
host = "a-h"
archetype = "idle-linux"
memory = "1GiB"
workload = { page_write_rate = "0pages/s" }
[[vms]]
name = "y"
host = "a-h"
archetype = "idle-linux"
memory = "1GiB"
workload = { page_write_rate = "0pages/s" }
[[migrations]]
vm = "x"
to = "c"
[[migrations]]
vm = "y"
to = "b"
"#;
    let out = run_text(text);
    let rate = |vm: &str| out.rounds.iter().find(|r| r.vm == vm).unwrap().rate_bytes_per_s;
    assert_close(rate("x"), 12.5e6, 1e-6, "x limited by b–c");
    assert_close(rate("y"), 112.5e6, 1e-6, "y gets the rest");
    assert_eq!(out.migrations[0].bottleneck, "bc");
    assert_eq!(out.migrations[1].bottleneck, "ab");
}

#[test]
fn cold_migration_downtime_is_the_whole_transfer() {
    let out = run_text(&idle_vms(1, "bandwidth = \"1Gbit/s\"\nlatency = \"10ms\"", "mechanism = \"stop-and-copy\"\ntcp_window = \"1GiB\""));
    let m = &out.migrations[0];
    assert_eq!(m.converged, None, "cold migration does not iterate");
    let bytes = 65536.0 * W + 1048576.0;
    // Setup RTT, then the whole copy at link rate, then one one-way latency.
    assert_close(m.downtime_ms / 1e3, bytes / 125e6 + 0.01, 1e-6, "downtime");
    assert_close(m.total_time_s, 0.02 + bytes / 125e6 + 0.01, 1e-6, "total");
}

#[test]
fn streams_are_tcp_connections_sharing_per_connection() {
    // One 4-stream and one 1-stream migration on a congested 1 Gbit/s link with
    // no TCP caps: 4/5 and 1/5 of the link.
    let mut text = idle_vms(2, "bandwidth = \"1Gbit/s\"\nlatency = \"0ms\"", "");
    text = text.replacen("[[migrations]]\nvm = \"vm-0\"\nto = \"b\"\n", "[[migrations]]\nvm = \"vm-0\"\nto = \"b\"\nsettings = { streams = 4 }\n", 1);
    let out = run_text(&text);
    let round = |vm: &str| out.rounds.iter().find(|r| r.vm == vm).unwrap().clone();
    // vm-0 runs at 100 MB/s throughout (its round, then its 1 MiB device
    // state); vm-1 at 25 MB/s until vm-0 is done, then alone at 125 MB/s.
    let (r0, r1) = (round("vm-0"), round("vm-1"));
    assert_close(r0.rate_bytes_per_s, 100e6, 1e-6, "4 streams");
    let t0 = r0.end_s + 1048576.0 / 100e6;
    let expected_end = t0 + (r1.bytes_on_wire as f64 - 25e6 * t0) / 125e6;
    assert_close(r1.end_s, expected_end, 1e-6, "1 stream: 25 MB/s, then the whole link");
}

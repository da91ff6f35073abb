//! multifd (`migrate --streams N`) on loopback, small guests: integrity at
//! switchover with 2 and 4 streams for `zero+xbzrle+lz4` and
//! `zero+dedup-vm+lz4` under a dirtying guest with several rounds; every
//! stream carries its share and the per-stream bytes add up to the total;
//! fewer reduction threads than streams; a link cut and a killed
//! destination during a multi-stream migration leave the source guest
//! running, reported aborted, with the fault fired; the simulator replays
//! the folder's scenario with its streams; every stream crosses the one
//! emulated link. Needs /dev/kvm (and root with TUN and network namespaces
//! for the link); skips with a message without.

mod common;

use common::{assert_refused, column_str, migrate_at, Run};
use memfabric_sim::output::read_parquet;
use memfabric_validator::kvm::kvm_or_skip;
use serde_json::Value;

/// Several pre-copy rounds with pages in them: the guest dirties 20,000
/// pages/s and the stop rule cannot be met before the last round.
const ROUNDS: [&str; 4] = ["--downtime-limit", "1us", "--max-rounds", "3"];

/// A u32 column of `migrations.parquet` (`streams`, `cpu_threads`).
fn column_u32(r: &Run, col: &str) -> Vec<u32> {
    let df = read_parquet(&r.out.join("migrations.parquet")).unwrap();
    df.column(col).unwrap().u32().unwrap().into_no_null_iter().collect()
}

fn json(r: &Run, name: &str) -> Value {
    std::fs::read_to_string(r.out.join(name)).map(|t| serde_json::from_str(&t).unwrap()).unwrap_or(Value::Null)
}

fn run(name: &str, pipeline: &str, streams: u32, extra: &[&str]) -> Run {
    let streams = streams.to_string();
    let args: Vec<&str> = ["--pipeline", pipeline, "--streams", &streams].iter().copied().chain(ROUNDS).chain(extra.iter().copied()).collect();
    migrate_at(name, 20_000, &args)
}

/// The run completed with every chunk equal over `streams` streams, each
/// carrying pages in every round; returns the source report.
fn assert_intact(r: &Run, streams: u64) -> Value {
    assert!(r.ok, "migration failed:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.leftover.trim().is_empty(), "processes left behind: {}", r.leftover);
    assert_eq!(r.manifest["integrity_held"], true, "{}", r.manifest);
    assert_eq!((r.manifest["chunks_compared"].as_u64(), r.manifest["chunks_differing"].as_u64()), (Some(16), Some(0)));
    let src = json(r, "source.json");
    let m = &src["multifd"];
    assert_eq!(m["streams"].as_u64(), Some(streams), "{m}");
    let per = m["per_stream"].as_array().expect("per_stream");
    assert_eq!(per.len() as u64, streams);
    // Per-stream bytes and pages add up to the totals, at both ends.
    let sum = |v: &[Value], k: &str| v.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum(per, "bytes_on_wire"), src["bytes_on_wire"].as_u64().unwrap(), "source streams add up: {m}");
    let pages: u64 = src["rounds"].as_array().unwrap().iter().map(|r| r["pages"].as_u64().unwrap()).sum();
    assert_eq!(sum(per, "pages"), pages, "every page sent on one stream");
    let dest = json(r, "destination.json");
    let dper = dest["streams"].as_array().expect("destination streams");
    assert_eq!(dper.len() as u64, streams);
    assert_eq!(sum(dper, "bytes_on_wire"), dest["bytes_received"].as_u64().unwrap(), "destination streams add up");
    assert_eq!(dest["bytes_received"], src["bytes_on_wire"], "every byte sent arrived");
    assert_eq!(sum(dper, "pages"), dest["pages_received"].as_u64().unwrap());
    // Round 0 (every page) is spread evenly: each stream owns 1/N of RAM.
    for s in per {
        let round0 = s["round_bytes"][0].as_u64().unwrap();
        let fair = per[0]["round_bytes"][0].as_u64().unwrap();
        assert!(round0 as f64 > 0.5 * fair as f64, "stream {} sent {round0} bytes in round 0, stream 0 {fair}", s["stream"]);
    }
    let rounds = src["rounds"].as_array().unwrap();
    assert!(rounds.len() >= 3 && rounds[1]["pages"].as_u64().unwrap() > 0, "several rounds with pages: {rounds:?}");
    // The result tables carry the streams.
    assert_eq!(column_u32(r, "streams"), [streams as u32]);
    src
}

#[test]
fn two_and_four_streams_arrive_intact_with_xbzrle_and_dedup() {
    if !kvm_or_skip("two_and_four_streams_arrive_intact_with_xbzrle_and_dedup") {
        return;
    }
    for pipeline in ["zero+xbzrle+lz4", "zero+dedup-vm+lz4"] {
        for streams in [2u32, 4] {
            let r = run(&format!("multifd-{streams}-{}", pipeline.replace('+', "-")), pipeline, streams, &[]);
            let src = assert_intact(&r, streams as u64);
            let stages = &src["stages"];
            if pipeline.contains("xbzrle") {
                assert!(stages["pages_delta"].as_u64().unwrap() > 0, "re-sent pages went as deltas on their streams: {stages}");
            } else {
                assert!(stages["pages_dedup"].as_u64().unwrap() > 0, "duplicates within a stream went as references: {stages}");
            }
            assert_eq!(column_u32(&r, "cpu_threads"), [streams], "cpu_threads defaults to the streams");
        }
    }
}

#[test]
fn fewer_threads_than_streams_and_the_replay_uses_the_streams() {
    if !kvm_or_skip("fewer_threads_than_streams_and_the_replay_uses_the_streams") {
        return;
    }
    let r = run("multifd-threads", "zero+xbzrle+lz4", 4, &["--cpu-threads", "2"]);
    assert_intact(&r, 4);
    assert_eq!(column_u32(&r, "cpu_threads"), [2]);
    let text = std::fs::read_to_string(r.out.join("scenario.toml")).unwrap();
    assert!(text.contains("streams = 4") && text.contains("cpu_threads = 2"), "{text}");
    // The simulator replays the folder's scenario with 4 streams; the same
    // scenario with one stream over a long fat link is TCP-window-bound and
    // slower: the replay does use the streams.
    let long = text
        .lines()
        .map(|l| if l.starts_with("bandwidth =") { "bandwidth = \"1Gbit/s\"" } else if l.starts_with("latency =") { "latency = \"25ms\"" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    let replay = |text: &str| {
        let dir = memfabric_testkit::scratch::owned_path("validator-test", &format!("multifd-replay-{}", text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("scenario.toml");
        std::fs::write(&path, text).unwrap();
        let scenario = memfabric_sim::scenario::load(&path).expect("scenario.toml loads");
        let sim = memfabric_sim::run::run(&scenario, None);
        assert_eq!(sim.migrations.len(), 1);
        let m = &sim.migrations[0];
        assert_eq!(m.outcome, memfabric_migration::record::Outcome::Completed);
        (m.streams, m.total_time_s)
    };
    let (streams4, t4) = replay(&long);
    let (streams1, t1) = replay(&long.replace("streams = 4", "streams = 1").replace("cpu_threads = 2", "cpu_threads = 1"));
    assert_eq!((streams4, streams1), (4, 1));
    assert!(t1 > 1.2 * t4, "one stream {t1} s vs four {t4} s over 1 Gbit/s, 50 ms RTT");
}

#[test]
fn every_stream_crosses_the_one_emulated_link() {
    if !common::kvm_and_wan_or_skip("every_stream_crosses_the_one_emulated_link") {
        return;
    }
    let r = migrate_at("multifd-link", 3000, &["--pipeline", "zero+lz4", "--streams", "3", "--link", "200Mbit/s,5ms"]);
    assert!(r.ok, "migration failed:\n{}\n{}", r.stdout, r.stderr);
    assert!(r.leftover.trim().is_empty(), "processes left behind: {}", r.leftover);
    assert_eq!(r.manifest["integrity_held"], true, "{}", r.manifest);
    let src = json(&r, "source.json");
    assert_eq!(src["multifd"]["per_stream"].as_array().map(Vec::len), Some(3));
    // The link forwarded every stream's frames (and their TCP/IP headers).
    let forwarded = r.manifest["link_stats"]["a_to_b"]["bytes_forwarded"].as_u64().expect("link stats");
    let sent = src["bytes_on_wire"].as_u64().unwrap();
    assert!(forwarded >= sent && (forwarded as f64) < 1.1 * sent as f64, "link forwarded {forwarded} bytes for {sent} frame bytes");
}

#[test]
fn a_cut_link_and_a_killed_destination_leave_the_source_running() {
    if !kvm_or_skip("a_cut_link_and_a_killed_destination_leave_the_source_running") {
        return;
    }
    for fault in ["cut-link@round1", "kill-dest@round0"] {
        let r = run(&format!("multifd-{fault}"), "zero+xbzrle+lz4", 3, &["--fault", fault, "--io-timeout", "1s"]);
        assert!(!r.ok, "{fault}: the run must fail:\n{}", r.stdout);
        assert!(r.leftover.trim().is_empty(), "{fault}: processes left behind: {}", r.leftover);
        assert_eq!(r.manifest["fault_triggered"], true, "{fault}: the fault fired: {}", r.manifest);
        assert_eq!(r.manifest["outcome"], "aborted", "{fault}: {}", r.manifest["error"]);
        assert_eq!(column_str(&r.out, "migrations.parquet", "outcome"), ["aborted"]);
        let (before, after) = (&r.manifest["source_guest_after_abort"][0], &r.manifest["source_guest_after_abort"][1]);
        assert!(after.as_u64().unwrap() > before.as_u64().unwrap(), "{fault}: the source guest runs on: {}", r.manifest);
        let dest = json(&r, "destination.json");
        assert!(dest.is_null() || dest["resume_ns"].is_null(), "{fault}: the destination resumed nothing: {dest}");
    }
}

#[test]
fn streams_with_tls_or_a_gang_or_more_threads_are_refused_up_front() {
    for (args, says) in [
        (&["--streams", "2", "--tls", "/nonexistent"][..], "--tls"),
        (&["--streams", "2", "--guests", "2"][..], "--guests"),
        (&["--streams", "2", "--cpu-threads", "3"][..], "exceeds --streams 2"),
        (&["--streams", "65"][..], "from 1 to 64"),
    ] {
        assert_refused("multifd-refused", args, says);
    }
}

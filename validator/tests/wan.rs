//! The WAN emulator against reality: namespaces come and go, the measured RTT,
//! TCP rate, loss rate and queue bound match the link spec within tolerances.
//! Tests that need root, /dev/net/tun and `ip netns` skip with a message saying
//! which is missing. They run one at a time (a shared lock) so that they do not
//! compete for the two cores; their bounds are ratios, not fixed times.

use memfabric_validator::wan::measure::{rtt_probe, tcp_throughput, udp_burst, TcpOptions};
use memfabric_validator::wan::{check_prerequisites, LinkSpec, LinkSpecError, Side, WanLink, NETNS_PREFIX};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

/// The lock, or `None` (after saying why) if the machine cannot run links.
fn link_prerequisites(test: &str) -> Option<MutexGuard<'static, ()>> {
    match check_prerequisites() {
        Ok(()) => Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner())),
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            None
        }
    }
}

fn namespace_exists(name: &str) -> bool {
    Path::new("/var/run/netns").join(name).exists()
}

fn spec(text: &str) -> LinkSpec {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn link_spec_parse_errors_say_what_is_expected() {
    let err = |text: &str| text.parse::<LinkSpec>().unwrap_err();
    assert!(matches!(err("100Mbit/s"), LinkSpecError::Incomplete { .. }));
    assert!(err("100Mbit/s").to_string().contains("RATE,DELAY"));
    let e = err("100Mbit,25ms");
    assert!(matches!(e, LinkSpecError::Value { item: "rate", .. }));
    assert!(e.to_string().contains("a rate ends in bit/s"), "{e}");
    assert!(matches!(err("100Mbit/s,25"), LinkSpecError::Value { item: "delay", .. }));
    assert!(matches!(err("100Mbit/s,25ms,150%"), LinkSpecError::Value { item: "loss", .. }));
    assert!(matches!(err("100Mbit/s,25ms,100%"), LinkSpecError::OutOfRange { item: "loss", .. }));
    assert!(matches!(err("0bit/s,25ms"), LinkSpecError::OutOfRange { item: "rate", .. }));
    assert!(matches!(err("1Gbit/s,1ms,mtu=100"), LinkSpecError::OutOfRange { item: "mtu", .. }));
    assert!(matches!(err("1Gbit/s,1ms,queue=lots"), LinkSpecError::OutOfRange { item: "queue", .. }));
    assert!(matches!(err("1Gbit/s,1ms,queue=0B"), LinkSpecError::OutOfRange { item: "queue", .. }));
    assert!(matches!(err("1Gbit/s,1ms,colour=red"), LinkSpecError::Unknown { .. }));
    assert!(matches!(err("1Gbit/s,1ms,1%,2%"), LinkSpecError::Unknown { .. }));
    assert!(matches!(err("1Gbit/s,1ms,1%,loss=2%"), LinkSpecError::Duplicate { key: "loss" }));
}

#[test]
fn up_and_drop_leave_nothing_behind() {
    let Some(_lock) = link_prerequisites("up_and_drop_leave_nothing_behind") else { return };
    let link = WanLink::up(&spec("100Mbit/s,1ms"), 1).unwrap();
    let names = [link.namespace(Side::A).to_string(), link.namespace(Side::B).to_string()];
    for name in &names {
        assert!(name.starts_with(&format!("{NETNS_PREFIX}{}-", std::process::id())), "{name}");
        assert!(namespace_exists(name), "{name} missing while up");
    }
    // The namespace has the TUN device with its address, and a command runs there.
    let out = link.command(Side::B, "ip").args(["-4", "-o", "addr", "show", "dev", "mfwan0"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.199.0.2/30"), "{out:?}");
    drop(link);
    for name in &names {
        assert!(!namespace_exists(name), "{name} left behind");
    }
}

#[test]
fn stale_namespaces_of_dead_processes_are_removed() {
    let Some(_lock) = link_prerequisites("stale_namespaces_of_dead_processes_are_removed") else { return };
    // A child that has exited but is not reaped yet: a zombie still has its pid,
    // as a crashed VMM has until its parent waits for it.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    let stat = format!("/proc/{dead_pid}/stat");
    for _ in 0..200 {
        if std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stale = format!("{NETNS_PREFIX}{dead_pid}-0-a");
    let live = format!("{NETNS_PREFIX}{}-999-a", std::process::id());
    for name in [&stale, &live] {
        let ok = std::process::Command::new("ip").args(["netns", "add", name]).status().unwrap();
        assert!(ok.success());
    }
    let removed = WanLink::cleanup_stale().unwrap();
    child.wait().unwrap();
    let live_kept = namespace_exists(&live);
    let _ = std::process::Command::new("ip").args(["netns", "delete", &live]).status();
    assert!(removed.contains(&stale), "{removed:?}");
    assert!(!namespace_exists(&stale));
    assert!(live_kept, "a namespace of this (live) process was removed");
}

#[test]
fn probe_rtt_is_twice_the_delay() {
    let Some(_lock) = link_prerequisites("probe_rtt_is_twice_the_delay") else { return };
    let link = WanLink::up(&spec("100Mbit/s,10ms"), 1).unwrap();
    let r = rtt_probe(&link, 15, Duration::from_millis(5)).unwrap();
    let configured_ns = 20_000_000.0;
    let ratio = r.median_ns as f64 / configured_ns;
    eprintln!("RTT: {r:?}, median / 2×delay = {ratio:.3}");
    assert!(r.samples >= 14, "{r:?}");
    // The emulator never delivers early; forwarding and wake-ups add a little.
    assert!((0.99..1.3).contains(&ratio), "median RTT / 2×delay = {ratio:.3} ({r:?})");
    assert!(r.min_ns >= 20_000_000, "{r:?}");
}

#[test]
fn tcp_goodput_approaches_a_modest_link_rate() {
    let Some(_lock) = link_prerequisites("tcp_goodput_approaches_a_modest_link_rate") else { return };
    let link = WanLink::up(&spec("50Mbit/s,5ms"), 1).unwrap();
    let run = tcp_throughput(
        &link,
        &TcpOptions {
            duration: Duration::from_secs(4),
            warmup: Duration::from_secs(1),
            congestion: None,
            cancel: None,
        },
    )
    .unwrap();
    // The rate applies to IP bytes; with 52 header bytes per 1500-byte packet the
    // goodput can reach at most 1448/1500 = 0.965 of it.
    let ratio = run.goodput_bytes_per_s / 6.25e6;
    eprintln!("TCP at 50 Mbit/s, 5 ms: goodput / rate = {ratio:.3} ({run:?})");
    assert!((0.8..1.0).contains(&ratio), "goodput / rate = {ratio:.3} ({run:?})");
    let stats = link.stats();
    assert_eq!(stats.a_to_b.write_errors, 0);
    assert!(stats.a_to_b.bytes_forwarded > 0 && stats.b_to_a.packets_forwarded > 0);
}

#[test]
fn udp_loss_rate_is_within_binomial_bounds() {
    let Some(_lock) = link_prerequisites("udp_loss_rate_is_within_binomial_bounds") else { return };
    let link = WanLink::up(&spec("100Mbit/s,1ms,2%"), 7).unwrap();
    // 5000 datagrams of 228 IP bytes at 10 000/s: 18 Mbit/s, far below the rate,
    // so nothing queues and only the loss draw drops.
    let burst = udp_burst(&link, 5000, 200, 10_000).unwrap();
    let s = link.stats().a_to_b;
    assert_eq!(burst.sent, 5000);
    assert_eq!(s.packets_dropped_queue, 0);
    assert_eq!(burst.received, s.packets_forwarded, "{burst:?} {s:?}");
    assert_eq!(s.packets_forwarded + s.packets_dropped_loss, burst.sent, "{burst:?} {s:?}");
    // Binomial(5000, 0.02): mean 100, sd 9.9; allow 5 sd.
    let lost = s.packets_dropped_loss as f64;
    eprintln!("loss 2%: {burst:?}, {lost} lost");
    assert!((lost - 100.0).abs() <= 5.0 * 9.9, "{lost} lost of 5000 at 2%");
}

#[test]
fn drop_tail_queue_bound_is_respected() {
    let Some(_lock) = link_prerequisites("drop_tail_queue_bound_is_respected") else { return };
    let link = WanLink::up(&spec("10Mbit/s,1ms,queue=15000B"), 1).unwrap();
    // 300 datagrams of 1028 IP bytes as fast as possible: far more than 15 kB
    // plus what 10 Mbit/s drains meanwhile.
    let burst = udp_burst(&link, 300, 1000, 0).unwrap();
    let s = link.stats().a_to_b;
    eprintln!("queue: {burst:?} {s:?}");
    assert!(s.packets_dropped_queue > 100, "{s:?}");
    assert!(s.queue_bytes_max <= 15_000, "{s:?}");
    assert!(s.queue_bytes_max > 15_000 - 1028, "the queue never filled: {s:?}");
    assert_eq!(burst.received, s.packets_forwarded, "{burst:?} {s:?}");
    assert_eq!(s.packets_forwarded + s.packets_dropped_queue, burst.sent, "{burst:?} {s:?}");
}

//! Measurements across a running [`WanLink`], written in Rust because the
//! machine has no `ping` or `iperf3`: a UDP echo probe for the round-trip time,
//! a single TCP stream for throughput, a paced UDP burst for loss, and the table
//! `memfabric-validator wan measure` prints next to the simulator's predictions
//! (`memfabric_migration::tcp::stream_cap`).
//!
//! All endpoints are sockets of this process: each is created by a thread that
//! has entered the site's namespace ([`WanLink::run_in`]), then used from
//! ordinary threads.

use super::{LinkSpec, Side, WanError, WanLink};
use memfabric_migration::units::{BytesPerSecond, Fraction, Nanos};
use memfabric_migration::tcp::{stream_cap, TcpLimit, DEFAULT_MSS, DEFAULT_TCP_WINDOW};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The link could not be set up or entered.
    #[error(transparent)]
    Wan(#[from] WanError),
    /// A socket operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// The run was cancelled (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// No probe reply came back at all.
    #[error("no RTT probe came back ({sent} sent)")]
    NoReplies {
        /// Probes sent.
        sent: usize,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> MeasureError {
    let what = what.into();
    move |source| MeasureError::Io { what, source }
}

/// Round-trip times of a series of probes.
#[derive(Debug, Clone, PartialEq)]
pub struct RttSummary {
    /// Probes answered (lost probes are not counted).
    pub samples: usize,
    /// Median RTT in ns.
    pub median_ns: u64,
    /// Smallest RTT in ns.
    pub min_ns: u64,
    /// Largest RTT in ns.
    pub max_ns: u64,
}

/// Measures the RTT from A to B and back with `samples` UDP probes of 64
/// bytes, one at a time, `gap` apart. A UDP echo server runs in B meanwhile.
pub fn rtt_probe(link: &WanLink, samples: usize, gap: Duration) -> Result<RttSummary, MeasureError> {
    let b_addr = SocketAddr::from((link.address(Side::B), 0));
    let server = link.run_in(Side::B, || UdpSocket::bind(b_addr))?.map_err(io_err("binding the echo socket in B"))?;
    let server_addr = server.local_addr().map_err(io_err("echo socket address"))?;
    server.set_read_timeout(Some(Duration::from_millis(20))).map_err(io_err("echo socket timeout"))?;
    let a_addr = SocketAddr::from((link.address(Side::A), 0));
    let client = link.run_in(Side::A, || UdpSocket::bind(a_addr))?.map_err(io_err("binding the probe socket in A"))?;
    client.connect(server_addr).map_err(io_err("connecting the probe socket"))?;
    let reply_timeout = Duration::from_nanos(link.spec().base_rtt().0) * 2 + Duration::from_secs(1);
    client.set_read_timeout(Some(reply_timeout)).map_err(io_err("probe socket timeout"))?;
    let stop = AtomicBool::new(false);
    let mut rtts_ns: Vec<u64> = Vec::with_capacity(samples);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buf) {
                    let _ = server.send_to(&buf[..n], from);
                }
            }
        });
        let result = (|| -> Result<(), MeasureError> {
            let mut packet = [0u8; 64];
            let mut buf = [0u8; 2048];
            for seq in 0..samples as u64 {
                packet[..8].copy_from_slice(&seq.to_le_bytes());
                let sent_at = Instant::now();
                client.send(&packet).map_err(io_err("sending a probe"))?;
                loop {
                    match client.recv(&mut buf) {
                        Ok(n) if n >= 8 && buf[..8] == seq.to_le_bytes() => {
                            rtts_ns.push(sent_at.elapsed().as_nanos() as u64);
                            break;
                        }
                        Ok(_) => continue,
                        Err(_) => break,
                    }
                }
                std::thread::sleep(gap);
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    if rtts_ns.is_empty() {
        return Err(MeasureError::NoReplies { sent: samples });
    }
    rtts_ns.sort_unstable();
    Ok(RttSummary {
        samples: rtts_ns.len(),
        median_ns: rtts_ns[rtts_ns.len() / 2],
        min_ns: rtts_ns[0],
        max_ns: rtts_ns[rtts_ns.len() - 1],
    })
}

/// How to run one TCP stream.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// How long the sender sends.
    pub duration: Duration,
    /// The start of the run that is left out of the steady-state goodput.
    pub warmup: Duration,
    /// Congestion control for the sender (`None`: the namespace's default).
    pub congestion: Option<String>,
    /// If given and set during the run, the stream stops early.
    pub cancel: Option<&'static AtomicBool>,
}

/// The result of one TCP stream from A to B.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpRun {
    /// Application bytes received per second between `warmup` and `duration`.
    pub goodput_bytes_per_s: f64,
    /// Application bytes received over the whole run.
    pub bytes_total: u64,
    /// The sender's congestion control.
    pub congestion: String,
    /// The sender's smoothed RTT estimate at the end, in µs (TCP_INFO).
    pub srtt_us: u32,
    /// The sender's congestion window at the end, in segments.
    pub snd_cwnd: u32,
    /// The sender's MSS.
    pub snd_mss: u32,
    /// Segments the sender retransmitted.
    pub retransmits: u32,
    /// CPU time of the A→B forwarding thread during the run, in cores (it also
    /// does B's TCP receive processing, which runs when it writes a packet).
    pub forwarder_a_to_b_cpu_cores: f64,
    /// CPU time of the B→A forwarding thread during the run, in cores (it also
    /// does A's ACK processing and the sending it triggers).
    pub forwarder_b_to_a_cpu_cores: f64,
    /// Packets the emulated queues dropped during the run (both directions).
    pub queue_drops: u64,
    /// Packets the site kernels dropped at the TUN devices during the run
    /// because a forwarding thread fell behind (both directions).
    pub kernel_drops: u64,
    /// CPU time of this whole process during the run (forwarders, sender,
    /// receiver and the kernel work done on their behalf), in cores.
    pub process_cpu_cores: f64,
}

/// Sends one TCP stream from A to B for `opts.duration` and measures the
/// receiver's goodput after `opts.warmup`.
pub fn tcp_throughput(link: &WanLink, opts: &TcpOptions) -> Result<TcpRun, MeasureError> {
    let b_addr = SocketAddr::from((link.address(Side::B), 0));
    let listener = link.run_in(Side::B, || TcpListener::bind(b_addr))?.map_err(io_err("listening in B"))?;
    let server_addr = listener.local_addr().map_err(io_err("listener address"))?;
    let sender = link
        .run_in(Side::A, || TcpStream::connect_timeout(&server_addr, Duration::from_secs(5)))?
        .map_err(io_err("connecting from A to B"))?;
    if let Some(cc) = &opts.congestion {
        super::sys::set_sockopt_bytes(sender.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_CONGESTION, cc.as_bytes())
            .map_err(io_err(format!("setting congestion control {cc:?}")))?;
    }
    let congestion = super::sys::get_sockopt_string(sender.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_CONGESTION)
        .map_err(io_err("reading congestion control"))?;
    let (mut receiver, _) = listener.accept().map_err(io_err("accepting in B"))?;
    let sender_ctl = sender.try_clone().map_err(io_err("cloning the sender"))?;
    let receiver_ctl = receiver.try_clone().map_err(io_err("cloning the receiver"))?;
    let stats_before = link.stats();
    let cpu_before = super::sys::process_cpu_ns();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (samples, info) = std::thread::scope(|scope| {
        let recv = scope.spawn(move || {
            // (ns since start, cumulative bytes) after each read.
            let mut samples: Vec<(u64, u64)> = Vec::with_capacity(1 << 16);
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            while let Ok(n) = receiver.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
                samples.push((start.elapsed().as_nanos() as u64, total));
            }
            samples
        });
        let stop_send = Arc::clone(&stop);
        let mut sender_w = sender;
        let send = scope.spawn(move || {
            let buf = vec![0x5au8; 1 << 20];
            while !stop_send.load(Ordering::Relaxed) {
                if sender_w.write_all(&buf).is_err() {
                    break;
                }
            }
        });
        let end = start + opts.duration;
        while Instant::now() < end && !opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            std::thread::sleep((end - Instant::now().min(end)).min(Duration::from_millis(50)));
        }
        let info = super::sys::tcp_info(sender_ctl.as_raw_fd()).ok();
        stop.store(true, Ordering::Relaxed);
        let _ = sender_ctl.shutdown(Shutdown::Both);
        let _ = receiver_ctl.shutdown(Shutdown::Both);
        let _ = send.join();
        (recv.join().unwrap_or_default(), info)
    });
    let wall_ns = start.elapsed().as_nanos() as f64;
    let cpu_ns = super::sys::process_cpu_ns().saturating_sub(cpu_before) as f64;
    let stats_after = link.stats();
    let fwd_ab_ns = stats_after.a_to_b.cpu_ns.saturating_sub(stats_before.a_to_b.cpu_ns) as f64;
    let fwd_ba_ns = stats_after.b_to_a.cpu_ns.saturating_sub(stats_before.b_to_a.cpu_ns) as f64;
    let from_ns = opts.warmup.as_nanos() as u64;
    let to_ns = opts.duration.as_nanos() as u64;
    let goodput = goodput_between(&samples, from_ns, to_ns);
    Ok(TcpRun {
        goodput_bytes_per_s: goodput,
        bytes_total: samples.last().map_or(0, |s| s.1),
        congestion,
        srtt_us: info.map_or(0, |i| i.tcpi_rtt),
        snd_cwnd: info.map_or(0, |i| i.tcpi_snd_cwnd),
        snd_mss: info.map_or(0, |i| i.tcpi_snd_mss),
        retransmits: info.map_or(0, |i| i.tcpi_total_retrans),
        forwarder_a_to_b_cpu_cores: fwd_ab_ns / wall_ns,
        forwarder_b_to_a_cpu_cores: fwd_ba_ns / wall_ns,
        queue_drops: (stats_after.a_to_b.packets_dropped_queue + stats_after.b_to_a.packets_dropped_queue)
            .saturating_sub(stats_before.a_to_b.packets_dropped_queue + stats_before.b_to_a.packets_dropped_queue),
        kernel_drops: (stats_after.a_to_b.kernel_drops + stats_after.b_to_a.kernel_drops)
            .saturating_sub(stats_before.a_to_b.kernel_drops + stats_before.b_to_a.kernel_drops),
        process_cpu_cores: cpu_ns / wall_ns,
    })
}

/// Bytes per second received between `from_ns` and `to_ns`, from samples of
/// (time, cumulative bytes): the cumulative count at a time is that of the last
/// sample at or before it.
pub fn goodput_between(samples: &[(u64, u64)], from_ns: u64, to_ns: u64) -> f64 {
    if to_ns <= from_ns {
        return 0.0;
    }
    let at = |t: u64| -> u64 {
        let k = samples.partition_point(|s| s.0 <= t);
        if k == 0 {
            0
        } else {
            samples[k - 1].1
        }
    };
    (at(to_ns) - at(from_ns)) as f64 / ((to_ns - from_ns) as f64 / 1e9)
}

/// What a UDP burst saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBurst {
    /// Datagrams sent by A.
    pub sent: u64,
    /// Datagrams received by B.
    pub received: u64,
}

/// Sends `count` UDP datagrams of `payload_bytes` from A to B, `pace_pps`
/// datagrams per second (0: as fast as possible), and counts what arrives
/// until the link has been quiet for 2 × delay + 200 ms.
pub fn udp_burst(link: &WanLink, count: u64, payload_bytes: usize, pace_pps: u64) -> Result<UdpBurst, MeasureError> {
    let b_addr = SocketAddr::from((link.address(Side::B), 0));
    let sink = link.run_in(Side::B, || UdpSocket::bind(b_addr))?.map_err(io_err("binding the sink in B"))?;
    let quiet = Duration::from_nanos(link.spec().base_rtt().0) + Duration::from_millis(200);
    sink.set_read_timeout(Some(quiet)).map_err(io_err("sink timeout"))?;
    let sink_addr = sink.local_addr().map_err(io_err("sink address"))?;
    let a_addr = SocketAddr::from((link.address(Side::A), 0));
    let source = link.run_in(Side::A, || UdpSocket::bind(a_addr))?.map_err(io_err("binding the source in A"))?;
    source.connect(sink_addr).map_err(io_err("connecting the source"))?;
    let counting = std::thread::scope(|scope| {
        let counter = scope.spawn(|| {
            let mut buf = vec![0u8; 65536];
            let mut received = 0u64;
            while sink.recv(&mut buf).is_ok() {
                received += 1;
            }
            received
        });
        let payload = vec![0u8; payload_bytes];
        let start = Instant::now();
        let mut sent = 0u64;
        for k in 0..count {
            if let Some(due_ns) = (k * 1_000_000_000).checked_div(pace_pps) {
                if let Some(wait) = Duration::from_nanos(due_ns).checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            if source.send(&payload).is_ok() {
                sent += 1;
            }
        }
        let received = counter.join().unwrap_or(0);
        UdpBurst { sent, received }
    });
    Ok(counting)
}

/// The TCP-related sysctls in effect inside a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSysctls {
    /// `net.ipv4.tcp_rmem` (min default max).
    pub tcp_rmem: String,
    /// `net.ipv4.tcp_wmem` (min default max).
    pub tcp_wmem: String,
    /// `net.ipv4.tcp_congestion_control`.
    pub congestion_control: String,
    /// `net.core.rmem_max`.
    pub core_rmem_max: String,
    /// `net.core.wmem_max`.
    pub core_wmem_max: String,
}

/// Reads the TCP sysctls as a process inside `side`'s namespace sees them.
pub fn tcp_sysctls(link: &WanLink, side: Side) -> Result<TcpSysctls, MeasureError> {
    let read = |path: &str| std::fs::read_to_string(path).map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
    let r = link.run_in(side, || -> std::io::Result<TcpSysctls> {
        Ok(TcpSysctls {
            tcp_rmem: read("/proc/sys/net/ipv4/tcp_rmem")?,
            tcp_wmem: read("/proc/sys/net/ipv4/tcp_wmem")?,
            congestion_control: read("/proc/sys/net/ipv4/tcp_congestion_control")?,
            core_rmem_max: read("/proc/sys/net/core/rmem_max")?,
            core_wmem_max: read("/proc/sys/net/core/wmem_max")?,
        })
    })?;
    r.map_err(io_err("reading TCP sysctls"))
}

/// What the simulator predicts for one TCP stream over `spec`: its
/// `stream_cap` with the default window and MSS, capped by the link rate.
pub fn predicted_stream(spec: &LinkSpec) -> (BytesPerSecond, &'static str) {
    let (cap, limit) = stream_cap(spec.base_rtt(), spec.loss.0, DEFAULT_TCP_WINDOW, DEFAULT_MSS);
    if spec.rate.0 <= cap.0 {
        (spec.rate, "link")
    } else {
        let name = match limit {
            TcpLimit::Window => "window",
            TcpLimit::Loss => "loss",
            TcpLimit::None => "link",
        };
        (cap, name)
    }
}

/// Which parts of the table [`run_table`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// Probe RTT against the configured delay.
    Rtt,
    /// Single-stream TCP throughput against one-way delay.
    Delay,
    /// Single-stream TCP throughput against loss.
    Loss,
    /// Forwarding capacity: a very fast link with no delay.
    Capacity,
}

/// The whole measurement plan of `wan measure`.
#[derive(Debug, Clone)]
pub struct MeasurePlan {
    /// Parts to run, in this order.
    pub parts: Vec<Part>,
    /// Link rate of the RTT, delay and loss rows.
    pub rate: BytesPerSecond,
    /// One-way delays of the RTT and delay rows.
    pub delays: Vec<Nanos>,
    /// Loss rates of the loss rows.
    pub losses: Vec<Fraction>,
    /// One-way delay of the loss rows.
    pub loss_delay: Nanos,
    /// Congestion controls to run each TCP row with (`None`: namespace default).
    pub congestion: Vec<Option<String>>,
    /// Sending time of a delay or capacity row.
    pub duration: Duration,
    /// Sending time of a loss row.
    pub loss_duration: Duration,
    /// Left out of the goodput at the start of each row.
    pub warmup: Duration,
    /// Probes per RTT row.
    pub rtt_samples: usize,
    /// Link specs of the capacity rows.
    pub capacity_links: Vec<LinkSpec>,
    /// Seed of every link.
    pub seed: u64,
}

fn mbit(b: f64) -> String {
    format!("{:.1}", b * 8.0 / 1e6)
}

/// Runs `plan`, writing markdown tables to `out` as rows complete.
/// Stops between rows (and within a TCP row) with [`MeasureError::Cancelled`]
/// once `cancel` is set; every link is torn down on the way out.
pub fn run_table(plan: &MeasurePlan, out: &mut dyn Write, cancel: &'static AtomicBool) -> Result<(), MeasureError> {
    let check = || if cancel.load(Ordering::Relaxed) { Err(MeasureError::Cancelled) } else { Ok(()) };
    let w = |out: &mut dyn Write, s: String| {
        out.write_all(s.as_bytes()).and_then(|_| out.flush()).map_err(io_err("writing the table"))
    };
    for part in &plan.parts {
        match part {
            Part::Rtt => {
                w(
                    out,
                    format!("\n### RTT ({} probes of 64 B, UDP echo A→B→A, link {})\n\n", plan.rtt_samples, plan.rate),
                )?;
                w(out, "| one-way delay | configured RTT (2×delay) | measured median | min | max | median − configured | emulator lateness mean / max |\n|---:|---:|---:|---:|---:|---:|---:|\n".into())?;
                for &delay in &plan.delays {
                    check()?;
                    let link = WanLink::up(&LinkSpec::new(plan.rate, delay), plan.seed)?;
                    let r = rtt_probe(&link, plan.rtt_samples, Duration::from_millis(10))?;
                    let conf = link.spec().base_rtt().0;
                    let st = link.stats();
                    let late_mean_us = (st.a_to_b.late_ns_mean + st.b_to_a.late_ns_mean) as f64 / 2e3;
                    let late_max_us = st.a_to_b.late_ns_max.max(st.b_to_a.late_ns_max) as f64 / 1e3;
                    w(
                        out,
                        format!(
                            "| {} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:+.3} ms | {late_mean_us:.0} µs / {late_max_us:.0} µs |\n",
                            delay.as_millis_f64(),
                            conf as f64 / 1e6,
                            r.median_ns as f64 / 1e6,
                            r.min_ns as f64 / 1e6,
                            r.max_ns as f64 / 1e6,
                            (r.median_ns as f64 - conf as f64) / 1e6
                        ),
                    )?;
                }
            }
            Part::Delay | Part::Loss | Part::Capacity => {
                let (title, specs, duration): (&str, Vec<LinkSpec>, Duration) = match part {
                    Part::Delay => (
                        "single-stream TCP against one-way delay",
                        plan.delays.iter().map(|&d| LinkSpec::new(plan.rate, d)).collect(),
                        plan.duration,
                    ),
                    Part::Loss => (
                        "single-stream TCP against loss",
                        plan.losses
                            .iter()
                            .map(|&l| LinkSpec { loss: l, ..LinkSpec::new(plan.rate, plan.loss_delay) })
                            .collect(),
                        plan.loss_duration,
                    ),
                    _ => ("forwarding capacity", plan.capacity_links.clone(), plan.duration),
                };
                w(
                    out,
                    format!(
                        "\n### {title} ({} s per row, goodput after {} s)\n\n",
                        duration.as_secs_f64(),
                        plan.warmup.as_secs_f64()
                    ),
                )?;
                w(out, "| link | cc | predicted (sim) | bound | measured goodput | measured / predicted | TCP srtt | cwnd | retrans | queue drops | kernel drops | CPU A→B / B→A thread | process CPU |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n".into())?;
                for spec in &specs {
                    for cc in &plan.congestion {
                        check()?;
                        let link = WanLink::up(spec, plan.seed)?;
                        let run = tcp_throughput(
                            &link,
                            &TcpOptions { duration, warmup: plan.warmup, congestion: cc.clone(), cancel: Some(cancel) },
                        )?;
                        let (pred, bound) = predicted_stream(spec);
                        w(
                            out,
                            format!(
                                "| {} | {} | {} Mbit/s | {bound} | {} Mbit/s | {:.2} | {:.1} ms | {} | {} | {} | {} | {:.0}% / {:.0}% | {:.0}% |\n",
                                spec,
                                run.congestion,
                                mbit(pred.0),
                                mbit(run.goodput_bytes_per_s),
                                run.goodput_bytes_per_s / pred.0,
                                run.srtt_us as f64 / 1e3,
                                run.snd_cwnd,
                                run.retransmits,
                                run.queue_drops,
                                run.kernel_drops,
                                run.forwarder_a_to_b_cpu_cores * 100.0,
                                run.forwarder_b_to_a_cpu_cores * 100.0,
                                run.process_cpu_cores * 100.0
                            ),
                        )?;
                    }
                }
            }
        }
    }
    Ok(())
}

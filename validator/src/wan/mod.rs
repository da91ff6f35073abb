//! The packet-level WAN emulator: two site namespaces joined by one emulated
//! link (issue #6). This module owns the namespaces, their TUN devices and the
//! forwarding threads; [`spec`] owns the link description, [`model`] the timing
//! model, [`measure`] the probes and the measurement table, [`cli`] the `wan`
//! command. See `docs/wan.md` for the design and the measured figures.
//!
//! ```text
//!   netns mfwan-<pid>-<n>-a                            netns mfwan-<pid>-<n>-b
//!  ┌──────────────────────────┐                      ┌──────────────────────────┐
//!  │ lo up                    │                      │ lo up                    │
//!  │ mfwan0  10.199.0.1/30    │                      │ mfwan0  10.199.0.2/30    │
//!  │  (TUN, MTU 1500)         │                      │  (TUN, MTU 1500)         │
//!  └─────┬────────────────────┘                      └────────────────────┬─────┘
//!        │ fd                 this process                               fd │
//!        │    ┌─────────────────────────────────────────────────────┐      │
//!        └───►│ thread A→B: loss → queue → serializer → delay line  │─────►┘
//!        ┌◄───│ thread B→A: loss → queue → serializer → delay line  │◄─────┐
//!        │    └─────────────────────────────────────────────────────┘      │
//! ```
//!
//! Both TUN devices are created by a thread that has entered the namespace, so
//! they live there from the start; the fds are then used from the root
//! namespace. A namespace holds only `lo` and its TUN device, so the two sites
//! reach each other only through the forwarding threads. IPv6 is disabled on the
//! TUN devices so that no stray router solicitations use the link.
//!
//! Failure policy: [`WanLink::up`] fails (it never hands out an unshaped link)
//! if [`check_prerequisites`] fails or any step of the set-up fails; whatever was
//! created until then is removed. Dropping a [`WanLink`] stops the threads,
//! closes the TUN fds (which removes the devices) and deletes both namespaces.
//! Namespaces left by a process that died are removed by
//! [`WanLink::cleanup_stale`], which `up` calls first.

pub mod cli;
mod forward;
pub mod measure;
pub mod model;
pub mod spec;
mod sys;

pub use model::Direction;
pub use spec::{LinkSpec, LinkSpecError, QueueLimit};

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::thread::JoinHandleExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Prefix of every namespace this module creates: `mfwan-<pid>-<n>-<a|b>`.
pub const NETNS_PREFIX: &str = "mfwan-";

/// Name of the TUN device inside each namespace.
pub const TUN_DEVICE: &str = "mfwan0";

/// Address of site A; site B has [`ADDRESS_B`]. Every link has its own pair of
/// namespaces, so several links can use the same addresses at once.
pub const ADDRESS_A: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);

/// Address of site B.
pub const ADDRESS_B: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);

/// Prefix length of the sites' shared subnet (10.199.0.0/30).
pub const PREFIX_LEN: u8 = 30;

/// Length of the kernel's ring in front of each TUN device, in packets (TUN's
/// default is 500, Ethernet's 1000). Packets wait there only while a forwarding
/// thread is not reading: the ring is the sending host's NIC queue, which must
/// absorb a slow-start burst arriving faster than the thread reads while it is
/// briefly descheduled. Measured at 1 Gbit/s and 10 ms on 2 busy cores, 1000
/// overflowed (hundreds of drops per run) and 5000 did not. A longer ring would
/// hide a CPU-bound emulator behind unaccounted delay. Overflows are counted in
/// [`DirectionStats::kernel_drops`].
pub const TUN_TXQUEUELEN: u32 = 5000;

/// One end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Site A (address [`ADDRESS_A`]).
    A,
    /// Site B (address [`ADDRESS_B`]).
    B,
}

/// Why the emulator could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum WanError {
    /// The process is not root.
    #[error("not running as root (euid {euid}): creating network namespaces and TUN devices needs root")]
    NotRoot {
        /// The effective user id.
        euid: u32,
    },
    /// `/dev/net/tun` could not be opened.
    #[error("/dev/net/tun cannot be opened read-write (is the tun module available?)")]
    TunUnavailable(#[source] std::io::Error),
    /// The `ip` tool is missing or cannot manage namespaces.
    #[error("`ip netns` is not usable (iproute2 missing, or no permission on /var/run/netns): {detail}")]
    NetnsUnavailable {
        /// What failed.
        detail: String,
    },
    /// A command could not be started.
    #[error("could not run {command}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// A command exited with an error.
    #[error("{command} failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

impl WanError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WanError {
        let what = what.into();
        move |source| WanError::Io { what, source }
    }
}

/// Checks what [`WanLink::up`] needs: root, a usable `/dev/net/tun`, and a
/// working `ip netns`. The error names the first thing missing.
pub fn check_prerequisites() -> Result<(), WanError> {
    if !sys::is_root() {
        return Err(WanError::NotRoot { euid: sys::euid() });
    }
    sys::tun_openable().map_err(WanError::TunUnavailable)?;
    sys::ip(["netns", "list"]).map_err(|e| WanError::NetnsUnavailable { detail: e.to_string() })?;
    Ok(())
}

/// The counters of one direction of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DirectionStats {
    /// Packets delivered to the far side.
    pub packets_forwarded: u64,
    /// IP bytes delivered to the far side.
    pub bytes_forwarded: u64,
    /// Packets dropped because the queue was full.
    pub packets_dropped_queue: u64,
    /// Packets dropped by random loss.
    pub packets_dropped_loss: u64,
    /// Largest queue occupancy seen, in bytes (including the arriving packet).
    pub queue_bytes_max: u64,
    /// Packets the far side's TUN device refused (should stay 0).
    pub write_errors: u64,
    /// Largest lateness of a delivery against the model's time, in ns.
    pub late_ns_max: u64,
    /// Mean lateness of a delivery against the model's time, in ns.
    pub late_ns_mean: u64,
    /// CPU time used by this direction's forwarding thread, in ns.
    pub cpu_ns: u64,
    /// How late this thread's timed wake-ups currently come (its moving
    /// average); it sleeps that much less and spins the rest.
    pub wake_late_ns: u64,
    /// Packets the sending site's kernel dropped at its TUN device because this
    /// direction's thread did not read them in time (the device's `tx_dropped`).
    /// Non-zero means the emulator was CPU-bound and added loss of its own.
    pub kernel_drops: u64,
}

/// The counters of both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    /// Site A to site B.
    pub a_to_b: DirectionStats,
    /// Site B to site A.
    pub b_to_a: DirectionStats,
}

impl LinkStats {
    /// The counters of one direction.
    pub fn direction(&self, direction: Direction) -> &DirectionStats {
        match direction {
            Direction::AToB => &self.a_to_b,
            Direction::BToA => &self.b_to_a,
        }
    }
}

impl std::fmt::Display for LinkStats {
    /// A small markdown table, one row per direction.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| direction | packets | bytes | dropped (queue) | dropped (loss) | dropped (kernel) | max queue | late max | late mean | cpu |")?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for (name, d) in [("A→B", &self.a_to_b), ("B→A", &self.b_to_a)] {
            writeln!(
                f,
                "| {name} | {} | {} | {} | {} | {} | {} B | {:.1} µs | {:.1} µs | {:.2} s |",
                d.packets_forwarded,
                d.bytes_forwarded,
                d.packets_dropped_queue,
                d.packets_dropped_loss,
                d.kernel_drops,
                d.queue_bytes_max,
                d.late_ns_max as f64 / 1e3,
                d.late_ns_mean as f64 / 1e3,
                d.cpu_ns as f64 / 1e9
            )?;
        }
        Ok(())
    }
}

struct ForwardThread {
    handle: JoinHandle<std::io::Result<()>>,
    cpu_clock: Option<libc::clockid_t>,
    counters: Arc<forward::Counters>,
}

/// A running emulated link between two fresh network namespaces.
pub struct WanLink {
    spec: LinkSpec,
    seed: u64,
    namespaces: [String; 2],
    stop: Arc<AtomicBool>,
    threads: Vec<ForwardThread>,
    tuns: Vec<OwnedFd>,
    final_stats: Option<LinkStats>,
}

/// Distinguishes links made by the same process.
static NEXT_LINK: AtomicU64 = AtomicU64::new(0);

impl WanLink {
    /// Checks prerequisites, removes stale namespaces, creates the two site
    /// namespaces with their TUN devices and starts forwarding. `seed` drives the
    /// loss and jitter draws of both directions.
    pub fn up(spec: &LinkSpec, seed: u64) -> Result<WanLink, WanError> {
        check_prerequisites()?;
        WanLink::cleanup_stale()?;
        let n = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let namespaces = [format!("{NETNS_PREFIX}{pid}-{n}-a"), format!("{NETNS_PREFIX}{pid}-{n}-b")];
        // From here on, `link`'s Drop removes whatever exists if a step fails.
        let mut link = WanLink {
            spec: spec.clone(),
            seed,
            namespaces,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            tuns: Vec::new(),
            final_stats: None,
        };
        for side in [Side::A, Side::B] {
            let tun = link.make_site(side)?;
            link.tuns.push(tun);
        }
        link.start_forwarding()?;
        Ok(link)
    }

    /// Creates one namespace, its TUN device and addresses; returns the TUN fd.
    fn make_site(&self, side: Side) -> Result<OwnedFd, WanError> {
        let ns = self.namespace(side).to_string();
        sys::ip(["netns", "add", &ns])?;
        let tun = sys::in_netns(&ns, || sys::open_tun(TUN_DEVICE))
            .and_then(|r| r)
            .map_err(WanError::io(format!("creating TUN device {TUN_DEVICE} in namespace {ns}")))?;
        // Best effort: without IPv6 the file does not exist, which is fine.
        let _ =
            sys::in_netns(&ns, || std::fs::write(format!("/proc/sys/net/ipv6/conf/{TUN_DEVICE}/disable_ipv6"), "1"));
        let mtu = self.spec.mtu_bytes.to_string();
        let qlen = TUN_TXQUEUELEN.to_string();
        let addr = format!("{}/{PREFIX_LEN}", self.address(side));
        sys::ip(["-n", &ns, "link", "set", "dev", "lo", "up"])?;
        sys::ip(["-n", &ns, "link", "set", "dev", TUN_DEVICE, "mtu", &mtu, "txqueuelen", &qlen])?;
        sys::ip(["-n", &ns, "addr", "add", &addr, "dev", TUN_DEVICE])?;
        sys::ip(["-n", &ns, "link", "set", "dev", TUN_DEVICE, "up"])?;
        Ok(tun)
    }

    fn start_forwarding(&mut self) -> Result<(), WanError> {
        let epoch = Instant::now();
        let fds = [self.tuns[0].as_raw_fd(), self.tuns[1].as_raw_fd()];
        for (direction, from, to) in [(Direction::AToB, fds[0], fds[1]), (Direction::BToA, fds[1], fds[0])] {
            let counters = Arc::new(forward::Counters::default());
            let forwarder = forward::Forwarder {
                model: model::DirectionModel::new(&self.spec, self.seed, direction),
                from,
                to,
                mtu_bytes: self.spec.mtu_bytes as usize,
                counters: Arc::clone(&counters),
                stop: Arc::clone(&self.stop),
                epoch,
            };
            let name = match direction {
                Direction::AToB => "wan-a-to-b",
                Direction::BToA => "wan-b-to-a",
            };
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || forwarder.run())
                .map_err(WanError::io("starting a forwarding thread"))?;
            let cpu_clock = sys::thread_cpu_clock(handle.as_pthread_t());
            self.threads.push(ForwardThread { handle, cpu_clock, counters });
        }
        Ok(())
    }

    /// The link's parameters.
    pub fn spec(&self) -> &LinkSpec {
        &self.spec
    }

    /// The seed of the loss and jitter draws.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The name of one side's network namespace (as `ip netns` knows it).
    pub fn namespace(&self, side: Side) -> &str {
        match side {
            Side::A => &self.namespaces[0],
            Side::B => &self.namespaces[1],
        }
    }

    /// One side's IPv4 address, reachable from the other side through the link.
    pub fn address(&self, side: Side) -> Ipv4Addr {
        match side {
            Side::A => ADDRESS_A,
            Side::B => ADDRESS_B,
        }
    }

    /// A command that runs `program` inside one side's namespace
    /// (`ip netns exec NAME program`); add arguments with `.arg(..)`. End such
    /// programs before dropping the link: a program still running keeps an
    /// anonymous namespace without its TUN device, i.e. without network.
    pub fn command(&self, side: Side, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.namespace(side)]).arg(program);
        cmd
    }

    /// Runs `f` on a thread inside one side's namespace and returns its result.
    /// Sockets `f` creates stay in that namespace and can be used from any thread.
    pub fn run_in<T, F>(&self, side: Side, f: F) -> Result<T, WanError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        sys::in_netns(self.namespace(side), f)
            .map_err(WanError::io(format!("entering namespace {}", self.namespace(side))))
    }

    /// The counters of both directions so far (or at teardown, after [`WanLink::down`]).
    pub fn stats(&self) -> LinkStats {
        if let Some(s) = self.final_stats {
            return s;
        }
        let mut stats = LinkStats::default();
        for (t, slot) in self.threads.iter().zip([&mut stats.a_to_b, &mut stats.b_to_a]) {
            let c = &t.counters;
            let forwarded = c.packets_forwarded.load(Ordering::Relaxed);
            *slot = DirectionStats {
                packets_forwarded: forwarded,
                bytes_forwarded: c.bytes_forwarded.load(Ordering::Relaxed),
                packets_dropped_queue: c.packets_dropped_queue.load(Ordering::Relaxed),
                packets_dropped_loss: c.packets_dropped_loss.load(Ordering::Relaxed),
                queue_bytes_max: c.queue_bytes_max.load(Ordering::Relaxed),
                write_errors: c.write_errors.load(Ordering::Relaxed),
                late_ns_max: c.late_ns_max.load(Ordering::Relaxed),
                late_ns_mean: c.late_ns_sum.load(Ordering::Relaxed).checked_div(forwarded).unwrap_or(0),
                cpu_ns: t.cpu_clock.map(sys::clock_ns).unwrap_or(0),
                wake_late_ns: c.wake_late_ns.load(Ordering::Relaxed),
                kernel_drops: 0,
            };
        }
        for (side, slot) in [(Side::A, &mut stats.a_to_b), (Side::B, &mut stats.b_to_a)] {
            slot.kernel_drops = sys::tun_tx_dropped(self.namespace(side), TUN_DEVICE).unwrap_or(0);
        }
        stats
    }

    /// Tears the link down now and returns the final counters (dropping the link
    /// does the same silently). Errors from deleting namespaces are returned.
    pub fn down(mut self) -> Result<LinkStats, WanError> {
        let stats = self.teardown()?;
        Ok(stats)
    }

    fn teardown(&mut self) -> Result<LinkStats, WanError> {
        if let Some(s) = self.final_stats {
            return Ok(s);
        }
        self.stop.store(true, Ordering::Relaxed);
        // Read CPU clocks while the threads still exist.
        let mut stats = self.stats();
        for (t, slot) in std::mem::take(&mut self.threads).into_iter().zip([&mut stats.a_to_b, &mut stats.b_to_a]) {
            let cpu_ns = t.cpu_clock.map(sys::clock_ns).unwrap_or(0);
            match t.handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("wan: a forwarding thread of {} stopped early: {e}", self.namespaces[0]),
                Err(_) => eprintln!("wan: a forwarding thread of {} panicked", self.namespaces[0]),
            }
            slot.cpu_ns = slot.cpu_ns.max(cpu_ns);
        }
        self.final_stats = Some(stats);
        self.tuns.clear();
        let mut first_error = None;
        for ns in &self.namespaces {
            if std::path::Path::new(sys::NETNS_DIR).join(ns).exists() {
                if let Err(e) = sys::ip(["netns", "delete", ns]) {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Deletes namespaces named with [`NETNS_PREFIX`] whose owning process (the
    /// pid in the name) is no longer alive, and returns their names.
    pub fn cleanup_stale() -> Result<Vec<String>, WanError> {
        let dir = match std::fs::read_dir(sys::NETNS_DIR) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(WanError::io(format!("listing {}", sys::NETNS_DIR))(e)),
        };
        let mut removed = Vec::new();
        let mut names: Vec<String> =
            dir.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect();
        names.sort();
        for name in names {
            let Some(pid) = owner_pid(&name) else { continue };
            if sys::pid_alive(pid) {
                continue;
            }
            sys::ip(["netns", "delete", &name])?;
            removed.push(name);
        }
        Ok(removed)
    }
}

/// The pid in a namespace name `mfwan-<pid>-...`, if it is one of ours.
fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix(NETNS_PREFIX)?.split('-').next()?.parse().ok()
}

impl Drop for WanLink {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("wan: teardown of {} / {} incomplete: {e}", self.namespaces[0], self.namespaces[1]);
        }
    }
}

impl std::fmt::Debug for WanLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WanLink")
            .field("spec", &self.spec)
            .field("seed", &self.seed)
            .field("namespaces", &self.namespaces)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("mfwan-1234-0-a"), Some(1234));
        assert_eq!(owner_pid("mfwan-x-0-a"), None);
        assert_eq!(owner_pid("other-1234-0-a"), None);
    }
}

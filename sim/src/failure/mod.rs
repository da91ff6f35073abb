//! Host and site failures, and the HA restart policy.
//!
//! A scenario schedules failures (`[[failures]]`: a host or a whole site at
//! a time, optionally repaired after a while) and may give hosts a random
//! failure law (`mtbf`, `mttr`: exponential times to failure and to repair,
//! drawn from the seeded stream `failures/<host>`). [`failure_schedule`]
//! turns both into the list of host down/up instants the engine schedules.
//!
//! A failed host's VMs go down. [`HaRestart`] (present when the scenario has
//! an `[ha]` section) restarts them after the detection delay, in priority
//! order, on the surviving hosts of their site (or of any site with
//! `scope = "fabric"`), each booting for `boot_time`. A VM that cannot be
//! placed waits and is retried when a host comes back and every
//! `retry_interval`. Admission control (a reserve for N host failures or a
//! percentage of a site's RAM) is enforced by the engine's placement of
//! migrations; HA restarts may use the reserve, which is what it is for.

use crate::engine::RngStreams;
use crate::fabric::{Fabric, HostId, SiteId, VmId};
use crate::policy::{FabricEvent, Policy, PolicyCtx, RequestId};
use crate::scenario::{Destination, Scenario};
use crate::state::VmState;
use memfabric_migration::units::Nanos;
use rand::Rng;
use std::collections::BTreeMap;

/// Default failure-detection delay: vSphere HA declares a host failed when
/// it has missed network heartbeats for about 15 s (VMware vSphere
/// Availability guide, recalled).
pub const DEFAULT_DETECTION: Nanos = Nanos::from_secs(15);
/// Default boot time of a restarted VM (reasoned: a server OS and its
/// services; measure your own).
pub const DEFAULT_BOOT_TIME: Nanos = Nanos::from_secs(60);
/// Default interval at which HA retries VMs it could not place.
pub const DEFAULT_RETRY_INTERVAL: Nanos = Nanos::from_secs(60);

/// Restart priority of a VM (as vSphere HA's VM restart priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HaPriority {
    /// Restarted first.
    High,
    /// The default.
    #[default]
    Medium,
    /// Restarted last.
    Low,
    /// Never restarted.
    Disabled,
}

/// Capacity HA keeps free for restarts, per site.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Admission {
    /// No reserve.
    #[default]
    None,
    /// Free RAM at least that of the site's N largest usable hosts.
    HostFailures(u32),
    /// Free RAM at least this fraction of the site's usable RAM.
    Fraction(f64),
}

/// Where HA may restart a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HaScope {
    /// Only at the VM's site (an HA cluster is a site).
    #[default]
    Site,
    /// Its site first, then the other sites in declaration order.
    Fabric,
}

/// The `[ha]` section, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct HaSpec {
    /// Time from a host failure until HA acts.
    pub detection: Nanos,
    /// Boot time of a restarted VM.
    pub boot_time: Nanos,
    /// Reserve kept for restarts.
    pub admission: Admission,
    /// Where VMs may restart.
    pub scope: HaScope,
    /// Retry interval for VMs waiting for room.
    pub retry_interval: Nanos,
}

/// A scheduled failure of one host or a whole site.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledFailure {
    /// The hosts that fail (one, or every host of the site).
    pub hosts: Vec<HostId>,
    /// The site, when the whole site fails.
    pub site: Option<SiteId>,
    /// When.
    pub at: Nanos,
    /// Repair delay (never repaired when `None`).
    pub repair_after: Option<Nanos>,
}

/// A host's random failure law.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomFailure {
    /// The host.
    pub host: HostId,
    /// Mean time between failures.
    pub mtbf: Nanos,
    /// Mean time to repair.
    pub mttr: Nanos,
}

/// Why a host went down or up: the cause column of `fabric_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureCause {
    /// A `[[failures]]` entry naming the host.
    Scheduled,
    /// A `[[failures]]` entry naming its site.
    SiteFailure,
    /// A draw from the host's MTBF/MTTR.
    Random,
}

impl FailureCause {
    /// The name used in result tables.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Scheduled => "scheduled",
            FailureCause::SiteFailure => "site-failure",
            FailureCause::Random => "random",
        }
    }
}

/// One instant at which a host fails (`down`) or is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTransition {
    /// When.
    pub at: Nanos,
    /// The host.
    pub host: HostId,
    /// Fails (`true`) or is repaired.
    pub down: bool,
    /// Why.
    pub cause: FailureCause,
}

/// Every host failure and repair of a run up to `horizon`: the scheduled
/// ones in file order, then the random ones host by host (exponential draws:
/// up time with mean `mtbf`, then down time with mean `mttr`, repeated).
pub fn failure_schedule(
    scheduled: &[ScheduledFailure],
    random: &[RandomFailure],
    fabric: &Fabric,
    streams: &RngStreams,
    horizon: Nanos,
) -> Vec<HostTransition> {
    let mut out = Vec::new();
    for f in scheduled {
        let cause = if f.site.is_some() { FailureCause::SiteFailure } else { FailureCause::Scheduled };
        for &host in &f.hosts {
            out.push(HostTransition { at: f.at, host, down: true, cause });
            if let Some(r) = f.repair_after {
                out.push(HostTransition { at: Nanos(f.at.0.saturating_add(r.0)), host, down: false, cause });
            }
        }
    }
    for r in random {
        let mut rng = streams.stream(&format!("failures/{}", fabric.hosts[r.host.index()].name));
        let mut t = 0u64;
        loop {
            t = t.saturating_add(exponential(&mut rng, r.mtbf));
            if t > horizon.0 {
                break;
            }
            out.push(HostTransition { at: Nanos(t), host: r.host, down: true, cause: FailureCause::Random });
            t = t.saturating_add(exponential(&mut rng, r.mttr).max(1));
            out.push(HostTransition { at: Nanos(t), host: r.host, down: false, cause: FailureCause::Random });
        }
    }
    out
}

/// An exponential draw with the given mean, in whole nanoseconds.
fn exponential(rng: &mut impl Rng, mean: Nanos) -> u64 {
    let u: f64 = rng.random::<f64>();
    // 1 - u is in (0, 1]: the logarithm is finite.
    (-(1.0 - u).ln() * mean.0 as f64).round() as u64
}

/// The HA restart policy.
#[derive(Debug)]
pub struct HaRestart {
    spec: HaSpec,
    /// VMs detected down and waiting for a host, with their priority and
    /// site: restarted in (priority, VM id) order.
    waiting: BTreeMap<(HaPriority, VmId), SiteId>,
    /// VMs whose host failed, by the detection timer that will queue them.
    detecting: BTreeMap<u64, Vec<VmId>>,
    /// Restart requests in flight: the VM and the site tried.
    asked: BTreeMap<RequestId, (VmId, usize)>,
    next_tag: u64,
    retry_armed: bool,
    sweep_armed: bool,
}

/// Timer tag of the retry timer (detection timers count from 2).
const RETRY_TAG: u64 = 0;
/// Timer tag of the sweep that restarts, in priority order, every VM
/// detected at one instant (after all detection timers of that instant).
const SWEEP_TAG: u64 = 1;

impl HaRestart {
    /// The policy for `spec`.
    pub fn new(spec: HaSpec) -> HaRestart {
        HaRestart {
            spec,
            waiting: BTreeMap::new(),
            detecting: BTreeMap::new(),
            asked: BTreeMap::new(),
            next_tag: 2,
            retry_armed: false,
            sweep_armed: false,
        }
    }

    /// Sites to try for a VM of `home`, in order.
    fn sites(&self, sc: &Scenario, home: SiteId) -> Vec<SiteId> {
        let mut v = vec![home];
        if self.spec.scope == HaScope::Fabric {
            v.extend((0..sc.fabric.sites.len() as u32).map(SiteId).filter(|s| *s != home));
        }
        v
    }

    /// Asks to restart every waiting VM (in priority order) at its first site.
    fn try_all(&mut self, ctx: &mut PolicyCtx<'_>) {
        let queue: Vec<((HaPriority, VmId), SiteId)> = std::mem::take(&mut self.waiting).into_iter().collect();
        for ((prio, vm), site) in queue {
            if !matches!(ctx.view().state.vm_state(vm), VmState::Down { .. }) {
                continue; // restarted by someone else, or lost
            }
            self.waiting.insert((prio, vm), site);
            let r = ctx.restart(vm, Destination::Site(site), self.spec.boot_time);
            self.asked.insert(r, (vm, 0));
        }
    }

    fn arm_retry(&mut self, ctx: &mut PolicyCtx<'_>) {
        if !self.retry_armed && !self.waiting.is_empty() {
            self.retry_armed = true;
            ctx.set_timer(self.spec.retry_interval, RETRY_TAG);
        }
    }
}

impl Policy for HaRestart {
    fn start(&mut self, _ctx: &mut PolicyCtx<'_>) {}

    fn on_event(&mut self, ctx: &mut PolicyCtx<'_>, event: &FabricEvent) {
        let sc = ctx.view().scenario;
        match event {
            FabricEvent::HostDown { vms_down, .. } => {
                let vms: Vec<VmId> = vms_down.iter().copied().filter(|v| sc.vms[v.index()].ha_priority != HaPriority::Disabled).collect();
                if !vms.is_empty() {
                    let tag = self.next_tag;
                    self.next_tag += 1;
                    self.detecting.insert(tag, vms);
                    ctx.set_timer(self.spec.detection, tag);
                }
            }
            FabricEvent::Timer { tag: RETRY_TAG } => {
                self.retry_armed = false;
                self.try_all(ctx);
            }
            FabricEvent::Timer { tag: SWEEP_TAG } => {
                self.sweep_armed = false;
                self.try_all(ctx);
            }
            FabricEvent::Timer { tag } => {
                for vm in self.detecting.remove(tag).unwrap_or_default() {
                    let home = ctx.view().site_of(ctx.view().state.vm_host(vm));
                    self.waiting.insert((sc.vms[vm.index()].ha_priority, vm), home);
                }
                if !self.sweep_armed {
                    self.sweep_armed = true;
                    ctx.set_timer(Nanos(0), SWEEP_TAG);
                }
            }
            FabricEvent::HostUp { .. } | FabricEvent::PowerChanged { .. } => self.try_all(ctx),
            FabricEvent::Restarting { request, vm, .. } => {
                self.asked.remove(request);
                self.waiting.retain(|(_, v), _| v != vm);
            }
            FabricEvent::Refused { request, .. } => {
                if let Some((vm, tried)) = self.asked.remove(request) {
                    let home = ctx.view().site_of(ctx.view().state.vm_host(vm));
                    let sites = self.sites(sc, home);
                    if let Some(next) = sites.get(tried + 1) {
                        let r = ctx.restart(vm, Destination::Site(*next), self.spec.boot_time);
                        self.asked.insert(r, (vm, tried + 1));
                    }
                }
                self.arm_retry(ctx);
            }
            _ => {}
        }
    }
}

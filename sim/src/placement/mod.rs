//! Placement: which host takes a VM. One [`Placer`] serves both the scenario
//! loader (VMs given a `site` are placed first fit) and the engine (a
//! migration or restart to a site goes to the host with the most free RAM),
//! so the fit check — RAM, cores, host usable, CPU compatibility — lives
//! here only.

use crate::fabric::{Fabric, HostId};
use crate::policy::Refusal;
use serde::Deserialize;

/// How a host is chosen among the candidates that fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Placer {
    /// The first candidate in declaration order (the loader's rule).
    FirstFit,
    /// The candidate with the most free RAM, lowest id on ties (the engine's
    /// default rule: spreads load).
    #[default]
    MostFreeRam,
}

/// What a VM needs from a host.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// vCPUs (at most the host's cores; vCPUs are not a summed capacity:
    /// hosts may overcommit them, as hypervisors do).
    pub vcpus: u32,
}

/// Why one host cannot take a VM; the strongest reason wins when no host can.
fn rank(r: Refusal) -> u8 {
    match r {
        Refusal::HostDown => 0,
        Refusal::CpuIncompatible => 1,
        Refusal::Admission => 2,
        _ => 3,
    }
}

impl Placer {
    /// The host among `candidates` (in order) that takes `demand`, given the
    /// RAM in use per host and `usable`, which says whether a host can take
    /// the VM at all (up, on, CPU compatible, admission; `Err` with why not).
    /// When none fits, the refusal is the most telling reason met: no
    /// capacity if any usable host lacked room, else CPU incompatibility,
    /// else host down.
    pub fn choose(
        self,
        fabric: &Fabric,
        candidates: impl IntoIterator<Item = HostId>,
        ram_used: &[u64],
        demand: Demand,
        mut usable: impl FnMut(HostId) -> Result<(), Refusal>,
    ) -> Result<HostId, Refusal> {
        let mut why = Refusal::NoCapacity;
        let mut worst: Option<u8> = None;
        let mut best: Option<(u64, HostId)> = None;
        for h in candidates {
            let host = &fabric.hosts[h.index()];
            let fits = ram_used[h.index()].checked_add(demand.memory_bytes).is_some_and(|total| total <= host.ram.0) && demand.vcpus <= host.cores;
            let verdict = if fits { usable(h) } else { Err(Refusal::NoCapacity) };
            match verdict {
                Ok(()) => {
                    let free = host.ram.0 - ram_used[h.index()];
                    match self {
                        Placer::FirstFit => return Ok(h),
                        Placer::MostFreeRam => {
                            if best.is_none_or(|(f, _)| free > f) {
                                best = Some((free, h));
                            }
                        }
                    }
                }
                Err(r) => {
                    if worst.is_none_or(|w| rank(r) > w) {
                        worst = Some(rank(r));
                        why = r;
                    }
                }
            }
        }
        best.map(|(_, h)| h).ok_or(why)
    }

    /// [`Placer::MostFreeRam`] over candidates given most free RAM first
    /// (ties in candidate order), as
    /// [`crate::state::FabricState::hosts_by_free_ram`] lists a site's hosts:
    /// the first candidate that takes the VM is the one a scan of every
    /// candidate picks, and the walk stops at the first host without room for
    /// the VM's RAM, since no host after it has room (the refusal is then "no
    /// capacity", as a full scan would say). This keeps placing N VMs at a
    /// site of H hosts at O(N log H) instead of O(N·H).
    pub fn most_free_ram_sorted(
        fabric: &Fabric,
        by_free_ram: impl IntoIterator<Item = (u64, HostId)>,
        ram_used: &[u64],
        demand: Demand,
        usable: impl FnMut(HostId) -> Result<(), Refusal>,
    ) -> Result<HostId, Refusal> {
        let mut out_of_room = false;
        let with_room = by_free_ram
            .into_iter()
            .take_while(|&(free, _)| {
                out_of_room = free < demand.memory_bytes;
                !out_of_room
            })
            .map(|(_, h)| h);
        match Placer::FirstFit.choose(fabric, with_room, ram_used, demand, usable) {
            Err(_) if out_of_room => Err(Refusal::NoCapacity),
            found => found,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::{Host, Site, SiteId};
    use memfabric_migration::units::Bytes;

    fn fabric(rams_gib: &[u64]) -> Fabric {
        let hosts = rams_gib
            .iter()
            .enumerate()
            .map(|(i, r)| Host {
                name: format!("h{i}"),
                site: SiteId(0),
                cores: 8,
                ram: Bytes(r << 30),
                idle_watts: 100.0,
                peak_watts: 300.0,
                ..Host::default()
            })
            .collect();
        Fabric::new(vec![Site { name: "s".into(), hosts: vec![] }], hosts, vec![])
    }

    #[test]
    fn first_fit_takes_the_first_and_most_free_the_emptiest() {
        let f = fabric(&[8, 16, 16]);
        let used = [0, 4 << 30, 0];
        let d = Demand { memory_bytes: 4 << 30, vcpus: 2 };
        let all = [HostId(0), HostId(1), HostId(2)];
        assert_eq!(Placer::FirstFit.choose(&f, all, &used, d, |_| Ok(())), Ok(HostId(0)));
        assert_eq!(Placer::MostFreeRam.choose(&f, all, &used, d, |_| Ok(())), Ok(HostId(2)));
        // Ties go to the lowest id.
        assert_eq!(Placer::MostFreeRam.choose(&f, all, &[0, 0, 0], d, |_| Ok(())), Ok(HostId(1)));
    }

    #[test]
    fn most_free_ram_over_sorted_hosts_picks_what_a_full_scan_picks() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
        let (mut found, mut refused) = (0, 0);
        for _ in 0..2000 {
            let n = rng.random_range(1..12usize);
            // Few distinct sizes, so that free RAM often ties.
            let rams: Vec<u64> = (0..n).map(|_| rng.random_range(1..5u64)).collect();
            let f = fabric(&rams);
            let used: Vec<u64> = rams.iter().map(|&r| rng.random_range(0..=r) << 30).collect();
            let verdicts: Vec<Result<(), Refusal>> = (0..n)
                .map(|_| match rng.random_range(0..6) {
                    0 => Err(Refusal::HostDown),
                    1 => Err(Refusal::CpuIncompatible),
                    2 => Err(Refusal::Admission),
                    _ => Ok(()),
                })
                .collect();
            let d = Demand { memory_bytes: rng.random_range(0..4u64) << 30, vcpus: rng.random_range(1..10) };
            let all: Vec<HostId> = (0..n as u32).map(HostId).collect();
            let usable = |h: HostId| verdicts[h.index()];
            let scan = Placer::MostFreeRam.choose(&f, all.iter().copied(), &used, d, usable);
            let mut sorted: Vec<(u64, HostId)> = all.iter().map(|&h| ((rams[h.index()] << 30) - used[h.index()], h)).collect();
            sorted.sort_by_key(|&(free, h)| (std::cmp::Reverse(free), h));
            let walk = Placer::most_free_ram_sorted(&f, sorted, &used, d, usable);
            assert_eq!(walk, scan, "rams {rams:?} used {used:?} verdicts {verdicts:?} demand {d:?}");
            if scan.is_ok() { found += 1 } else { refused += 1 }
        }
        // Both outcomes were exercised.
        assert!(found > 200 && refused > 200, "found {found}, refused {refused}");
    }

    #[test]
    fn refusals_say_why() {
        let f = fabric(&[8, 8]);
        let all = [HostId(0), HostId(1)];
        let big = Demand { memory_bytes: 9 << 30, vcpus: 2 };
        assert_eq!(Placer::MostFreeRam.choose(&f, all, &[0, 0], big, |_| Ok(())), Err(Refusal::NoCapacity));
        let small = Demand { memory_bytes: 1 << 30, vcpus: 2 };
        assert_eq!(Placer::FirstFit.choose(&f, all, &[0, 0], small, |_| Err(Refusal::HostDown)), Err(Refusal::HostDown));
        let mixed = |h: HostId| if h == HostId(0) { Err(Refusal::HostDown) } else { Err(Refusal::CpuIncompatible) };
        assert_eq!(Placer::FirstFit.choose(&f, all, &[0, 0], small, mixed), Err(Refusal::CpuIncompatible));
        // A usable host without room outranks an incompatible one.
        let mixed = |h: HostId| if h == HostId(0) { Ok(()) } else { Err(Refusal::CpuIncompatible) };
        assert_eq!(Placer::FirstFit.choose(&f, all, &[8 << 30, 0], small, mixed), Err(Refusal::NoCapacity));
        let too_many = Demand { memory_bytes: 1 << 30, vcpus: 9 };
        assert_eq!(Placer::FirstFit.choose(&f, all, &[0, 0], too_many, |_| Ok(())), Err(Refusal::NoCapacity));
    }
}

//! The hosts of each site ordered by free RAM, kept up to date as RAM is
//! taken and released, so that placing a VM on the host with the most free
//! RAM ([`crate::placement::Placer::MostFreeRam`]) looks at the few hosts
//! that can take it instead of every host of the site: an evacuation of N
//! VMs to a site of H hosts costs O(N log H) instead of O(N·H).

use crate::fabric::{Fabric, HostId, SiteId};
use std::cmp::Reverse;
use std::collections::BTreeSet;

/// Per site: `(free RAM descending, position in the site's host list)`.
/// Positions, not host ids, break ties, so that the order among hosts of
/// equal free RAM is the site's declaration order, as a scan of the site's
/// list would meet them.
#[derive(Debug, Clone)]
pub(super) struct FreeRamIndex {
    by_site: Vec<BTreeSet<(Reverse<u64>, u32)>>,
    /// Per host: its site and its position in that site's list.
    slot: Vec<Option<(SiteId, u32)>>,
    /// Per host: its RAM, bytes.
    ram: Vec<u64>,
    /// Per site: its hosts in declaration order.
    site_hosts: Vec<Vec<HostId>>,
}

impl FreeRamIndex {
    /// The index with `ram_used` bytes in use on each host.
    pub(super) fn new(fabric: &Fabric, ram_used: &[u64]) -> FreeRamIndex {
        let mut slot = vec![None; fabric.hosts.len()];
        let mut by_site = Vec::with_capacity(fabric.sites.len());
        for (s, site) in fabric.sites.iter().enumerate() {
            let mut set = BTreeSet::new();
            for (pos, &h) in site.hosts.iter().enumerate() {
                slot[h.index()] = Some((SiteId(s as u32), pos as u32));
                set.insert((Reverse(fabric.hosts[h.index()].ram.0.saturating_sub(ram_used[h.index()])), pos as u32));
            }
            by_site.push(set);
        }
        FreeRamIndex {
            by_site,
            slot,
            ram: fabric.hosts.iter().map(|h| h.ram.0).collect(),
            site_hosts: fabric.sites.iter().map(|s| s.hosts.clone()).collect(),
        }
    }

    /// Moves `host` from `used_before` to `used_after` bytes in use.
    pub(super) fn update(&mut self, host: HostId, used_before: u64, used_after: u64) {
        let Some((site, pos)) = self.slot[host.index()] else { return };
        let ram = self.ram[host.index()];
        let set = &mut self.by_site[site.index()];
        set.remove(&(Reverse(ram.saturating_sub(used_before)), pos));
        set.insert((Reverse(ram.saturating_sub(used_after)), pos));
    }

    /// The hosts of `site` with their free RAM, most free first, declaration
    /// order on ties.
    pub(super) fn hosts(&self, site: SiteId) -> impl Iterator<Item = (u64, HostId)> + '_ {
        let hosts = &self.site_hosts[site.index()];
        self.by_site[site.index()].iter().map(move |&(Reverse(free), pos)| (free, hosts[pos as usize]))
    }

    /// Whether the index agrees with `ram_used` (for
    /// [`super::FabricState::check`]); `Err` names the site that disagrees.
    pub(super) fn agrees_with(&self, ram_used: &[u64]) -> Result<(), SiteId> {
        for (s, hosts) in self.site_hosts.iter().enumerate() {
            let set = &self.by_site[s];
            let exact = set.len() == hosts.len()
                && hosts.iter().enumerate().all(|(pos, h)| {
                    set.contains(&(Reverse(self.ram[h.index()].saturating_sub(ram_used[h.index()])), pos as u32))
                });
            if !exact {
                return Err(SiteId(s as u32));
            }
        }
        Ok(())
    }
}

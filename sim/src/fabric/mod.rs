//! The fabric: sites holding hosts, joined by WAN links into a graph, and the
//! routes migrations take through it.
//!
//! Links are full duplex: each direction is a separate network resource
//! ([`LinkDir`]) with the link's capacity, so a migration from A to B does not
//! compete with one from B to A. Routes are computed once, as the path of lowest
//! one-way latency (ties broken by hop count, then by declaration order), with
//! petgraph's A* search. Routes do not change when a link fails: a failed link
//! breaks the migrations that cross it.

use memfabric_migration::units::{Bytes, BytesPerSecond, Fraction, Nanos};
use petgraph::graph::{NodeIndex, UnGraph};

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u32);
        impl $name {
            /// The index into the owning table.
            pub fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}
pub(crate) use typed_id;

typed_id!(
    /// A site (data center).
    SiteId
);
typed_id!(
    /// A physical host.
    HostId
);
typed_id!(
    /// A WAN link between two sites.
    LinkId
);
typed_id!(
    /// A virtual machine.
    VmId
);

/// A data center.
#[derive(Debug, Clone)]
pub struct Site {
    /// Name from the scenario.
    pub name: String,
    /// Hosts in declaration order.
    pub hosts: Vec<HostId>,
}

/// A physical host.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Name from the scenario.
    pub name: String,
    /// The site it stands in.
    pub site: SiteId,
    /// Physical cores.
    pub cores: u32,
    /// Memory.
    pub ram: Bytes,
    /// Power drawn when idle, watts.
    pub idle_watts: f64,
    /// Power drawn at full load, watts.
    pub peak_watts: f64,
    /// Its CPU (vendor and features), for live-migration compatibility.
    pub cpu: crate::cpu::HostCpu,
    /// Power as a function of CPU utilisation (from `idle_watts` and
    /// `peak_watts`, or `power_table`).
    pub power: crate::energy::PowerModel,
}

/// A scheduled change of a link's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityChange {
    /// When it takes effect.
    pub at: Nanos,
    /// New capacity of each direction.
    pub bandwidth: BytesPerSecond,
}

/// A period during which a link carries nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// Start of the outage.
    pub at: Nanos,
    /// How long it lasts.
    pub duration: Nanos,
}

/// A WAN link.
#[derive(Debug, Clone)]
pub struct Link {
    /// Name from the scenario.
    pub name: String,
    /// One end.
    pub a: SiteId,
    /// The other end.
    pub b: SiteId,
    /// Capacity of each direction.
    pub bandwidth: BytesPerSecond,
    /// One-way propagation latency.
    pub latency: Nanos,
    /// Packet loss probability.
    pub loss: Fraction,
    /// Scheduled capacity changes, sorted by time.
    pub capacity_changes: Vec<CapacityChange>,
    /// Scheduled outages, sorted by time.
    pub outages: Vec<Outage>,
}

/// Direction of travel over a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From `a` to `b`.
    AtoB,
    /// From `b` to `a`.
    BtoA,
}

/// One direction of a link: the unit of capacity the flow solver shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkDir {
    /// The link.
    pub link: LinkId,
    /// The direction.
    pub dir: Direction,
}

impl LinkDir {
    /// Dense index of this resource (two per link).
    pub fn resource(self) -> usize {
        self.link.index() * 2 + usize::from(self.dir == Direction::BtoA)
    }
    /// The resource with dense index `r`.
    pub fn from_resource(r: usize) -> LinkDir {
        LinkDir { link: LinkId((r / 2) as u32), dir: if r % 2 == 0 { Direction::AtoB } else { Direction::BtoA } }
    }
}

/// The path between two sites.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Link directions traversed, in order. Empty within a site.
    pub hops: Vec<LinkDir>,
    /// Sum of one-way latencies.
    pub one_way_latency: Nanos,
    /// Probability that a packet is lost somewhere on the path: `1 - Π(1 - loss)`.
    pub loss: f64,
}

impl Route {
    /// Round-trip time of the path (twice the one-way latency).
    pub fn rtt(&self) -> Nanos {
        Nanos(self.one_way_latency.0.saturating_mul(2))
    }
}

/// Sites, hosts and links, with precomputed routes.
#[derive(Debug, Clone)]
pub struct Fabric {
    /// Sites by [`SiteId`].
    pub sites: Vec<Site>,
    /// Hosts by [`HostId`].
    pub hosts: Vec<Host>,
    /// Links by [`LinkId`].
    pub links: Vec<Link>,
    graph: UnGraph<SiteId, LinkId>,
    routes: Vec<Option<Route>>,
}

impl Fabric {
    /// Builds the graph and all routes.
    pub fn new(sites: Vec<Site>, hosts: Vec<Host>, links: Vec<Link>) -> Fabric {
        let mut graph = UnGraph::<SiteId, LinkId>::default();
        let nodes: Vec<NodeIndex> = (0..sites.len()).map(|i| graph.add_node(SiteId(i as u32))).collect();
        for (i, l) in links.iter().enumerate() {
            graph.add_edge(nodes[l.a.index()], nodes[l.b.index()], LinkId(i as u32));
        }
        let n = sites.len();
        let mut fabric = Fabric { sites, hosts, links, graph, routes: vec![None; n * n] };
        for s in 0..n {
            for d in 0..n {
                fabric.routes[s * n + d] = fabric.compute_route(SiteId(s as u32), SiteId(d as u32));
            }
        }
        fabric
    }

    // Cost of a hop: latency in ns, plus 1 ns so that fewer hops win ties.
    fn hop_cost(&self, link: LinkId) -> u64 {
        self.links[link.index()].latency.0.saturating_add(1)
    }

    fn compute_route(&self, src: SiteId, dst: SiteId) -> Option<Route> {
        let start = NodeIndex::new(src.index());
        let goal = NodeIndex::new(dst.index());
        let (_, path) = petgraph::algo::astar(
            &self.graph,
            start,
            |n| n == goal,
            |e| self.hop_cost(*e.weight()),
            |_| 0,
        )?;
        let mut hops = Vec::with_capacity(path.len().saturating_sub(1));
        let mut latency = 0u64;
        let mut keep = 1.0f64;
        for w in path.windows(2) {
            // The cheapest of possibly parallel links between the two sites
            // (first declared on ties).
            let link = self
                .graph
                .edges_connecting(w[0], w[1])
                .map(|e| *e.weight())
                .min_by_key(|l| (self.hop_cost(*l), *l))?;
            let l = &self.links[link.index()];
            let dir = if l.a == SiteId(w[0].index() as u32) { Direction::AtoB } else { Direction::BtoA };
            hops.push(LinkDir { link, dir });
            latency = latency.saturating_add(l.latency.0);
            keep *= 1.0 - l.loss.0;
        }
        Some(Route { hops, one_way_latency: Nanos(latency), loss: 1.0 - keep })
    }

    /// The route from `src` to `dst`, if the sites are connected.
    pub fn route(&self, src: SiteId, dst: SiteId) -> Option<&Route> {
        self.routes[src.index() * self.sites.len() + dst.index()].as_ref()
    }

    /// Number of link-direction resources.
    pub fn resource_count(&self) -> usize {
        self.links.len() * 2
    }

    /// Human-readable label of a link direction, e.g. `paris-london (paris->london)`.
    pub fn link_dir_label(&self, ld: LinkDir) -> (String, String, String) {
        let l = &self.links[ld.link.index()];
        let (from, to) = match ld.dir {
            Direction::AtoB => (l.a, l.b),
            Direction::BtoA => (l.b, l.a),
        };
        (l.name.clone(), self.sites[from.index()].name.clone(), self.sites[to.index()].name.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, a: u32, b: u32, latency_ms: u64, loss: f64) -> Link {
        Link {
            name: name.into(),
            a: SiteId(a),
            b: SiteId(b),
            bandwidth: BytesPerSecond(1e9),
            latency: Nanos::from_millis(latency_ms),
            loss: Fraction(loss),
            capacity_changes: vec![],
            outages: vec![],
        }
    }

    fn sites(n: usize) -> Vec<Site> {
        (0..n).map(|i| Site { name: format!("s{i}"), hosts: vec![] }).collect()
    }

    #[test]
    fn routes_follow_lowest_latency() {
        // s0 -- 50ms -- s2, and s0 -- 10ms -- s1 -- 10ms -- s2.
        let f = Fabric::new(
            sites(4),
            vec![],
            vec![link("direct", 0, 2, 50, 0.0), link("a", 0, 1, 10, 0.01), link("b", 2, 1, 10, 0.01)],
        );
        let r = f.route(SiteId(0), SiteId(2)).unwrap();
        assert_eq!(
            r.hops,
            vec![
                LinkDir { link: LinkId(1), dir: Direction::AtoB },
                LinkDir { link: LinkId(2), dir: Direction::BtoA }
            ]
        );
        assert_eq!(r.one_way_latency, Nanos::from_millis(20));
        assert_eq!(r.rtt(), Nanos::from_millis(40));
        assert!((r.loss - (1.0 - 0.99 * 0.99)).abs() < 1e-12);
        assert!(f.route(SiteId(0), SiteId(0)).unwrap().hops.is_empty());
        assert!(f.route(SiteId(0), SiteId(3)).is_none(), "s3 is not connected");
    }

    #[test]
    fn resources_are_dense() {
        for r in 0..8 {
            assert_eq!(LinkDir::from_resource(r).resource(), r);
        }
    }
}

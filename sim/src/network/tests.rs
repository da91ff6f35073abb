use super::*;

fn secs(t: SimTime) -> f64 {
    t.as_secs_f64()
}

#[test]
fn equal_flows_share_a_link_equally() {
    let mut n = Network::new(vec![1000.0, 1000.0]);
    let ids: Vec<_> = (0..4).map(|_| n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1000.0)).collect();
    n.settle(SimTime(0));
    for id in &ids {
        assert!((n.rate(*id) - 250.0).abs() < 1e-9);
        assert_eq!(n.limiter(*id), Limiter::Link(0));
    }
    // All finish together after 4 s.
    let (t, _) = n.next_completion().unwrap();
    assert!((secs(t) - 4.0).abs() < 1e-6);
}

#[test]
fn a_flow_bottlenecked_elsewhere_frees_bandwidth() {
    // Flow A crosses links 0 (cap 100) and 1 (cap 10); flow B crosses link 0 only.
    let mut n = Network::new(vec![100.0, 10.0]);
    let a = n.add_flow(SimTime(0), vec![0, 1], f64::INFINITY, 1.0, 1e6);
    let b = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1e6);
    n.settle(SimTime(0));
    assert!((n.rate(a) - 10.0).abs() < 1e-9);
    assert_eq!(n.limiter(a), Limiter::Link(1));
    assert!((n.rate(b) - 90.0).abs() < 1e-9);
    assert_eq!(n.limiter(b), Limiter::Link(0));
}

#[test]
fn caps_bind_before_links_and_leave_the_rest() {
    let mut n = Network::new(vec![100.0]);
    let capped = n.add_flow(SimTime(0), vec![0], 20.0, 1.0, 1e6);
    let free1 = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1e6);
    let free2 = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1e6);
    n.settle(SimTime(0));
    assert_eq!(n.rate(capped), 20.0);
    assert_eq!(n.limiter(capped), Limiter::Cap);
    assert!((n.rate(free1) - 40.0).abs() < 1e-9);
    assert!((n.rate(free2) - 40.0).abs() < 1e-9);
}

#[test]
fn removal_and_capacity_changes_resolve_rates() {
    let mut n = Network::new(vec![100.0]);
    let a = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 100.0);
    let b = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1000.0);
    n.settle(SimTime(0));
    // a finishes at t = 2 s (50 B/s), then b runs alone at 100 B/s.
    let (t, first) = n.next_completion().unwrap();
    assert_eq!(first, a);
    assert!((secs(t) - 2.0).abs() < 1e-6);
    let totals = n.remove_flow(t, a).unwrap();
    assert!((totals.sent - 100.0).abs() < 1e-6);
    n.settle(t);
    assert!((n.rate(b) - 100.0).abs() < 1e-9);
    // b has 900 B left; halve the capacity: 900 / 50 = 18 s more.
    n.set_capacity(0, 50.0);
    n.settle(t);
    let (t2, id) = n.next_completion().unwrap();
    assert_eq!(id, b);
    assert!((secs(t2) - 20.0).abs() < 1e-6);
    // An outage stops it: no completion is due.
    n.set_capacity(0, 0.0);
    n.settle(t2);
    assert!(n.next_completion().is_none() || n.remaining(b, t2) <= DONE_BYTES);
}

#[test]
fn only_the_touched_component_is_resolved() {
    let mut n = Network::new(vec![100.0, 100.0]);
    let a = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1e9);
    n.settle(SimTime(0));
    let solves = n.solves();
    let b = n.add_flow(SimTime(5), vec![1], f64::INFINITY, 1.0, 1e9);
    n.settle(SimTime(5));
    assert_eq!(n.solves(), solves + 1);
    assert_eq!(n.rate(a), 100.0);
    assert_eq!(n.rate(b), 100.0);
    // a's progress was not touched by b's solve: it still counts from t = 0.
    assert!((n.remaining(a, SimTime::from_secs(1)) - (1e9 - 100.0)).abs() < 1e-3);
    // Stale ids are refused.
    n.remove_flow(SimTime(6), b).unwrap();
    assert!(n.remove_flow(SimTime(6), b).is_none());
}

#[test]
fn load_samples_follow_changes() {
    let mut n = Network::new(vec![100.0]);
    let a = n.add_flow(SimTime(0), vec![0], 30.0, 1.0, 1e9);
    n.settle(SimTime(0));
    n.remove_flow(SimTime(10), a);
    n.settle(SimTime(10));
    let s = n.samples();
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].throughput, s[0].flows), (30.0, 1));
    assert_eq!((s[1].time, s[1].throughput, s[1].flows), (SimTime(10), 0.0, 0));
}

#[test]
fn flows_without_links_run_at_their_cap() {
    let mut n = Network::new(vec![100.0]);
    let lan = n.add_flow(SimTime(0), vec![], 50.0, 1.0, 100.0);
    n.settle(SimTime(0));
    assert_eq!(n.rate(lan), 50.0);
    assert_eq!(n.limiter(lan), Limiter::Cap);
    let (t, id) = n.next_completion().unwrap();
    assert_eq!(id, lan);
    assert!((secs(t) - 2.0).abs() < 1e-6);
}

#[test]
fn weights_give_multi_stream_flows_more_shares() {
    let mut n = Network::new(vec![100.0]);
    let four = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 4.0, 1e6);
    let one = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1e6);
    n.settle(SimTime(0));
    assert!((n.rate(four) - 80.0).abs() < 1e-9);
    assert!((n.rate(one) - 20.0).abs() < 1e-9);
    // A weighted flow capped below its share leaves the rest to the other.
    let mut n = Network::new(vec![100.0]);
    let capped = n.add_flow(SimTime(0), vec![0], 30.0, 4.0, 1e6);
    let other = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1e6);
    n.settle(SimTime(0));
    assert_eq!((n.rate(capped), n.limiter(capped)), (30.0, Limiter::Cap));
    assert!((n.rate(other) - 70.0).abs() < 1e-9);
}

#[test]
fn flows_finishing_together_are_due_together_in_slot_order() {
    let mut n = Network::new(vec![1000.0]);
    // 50 equal flows finish together at 50 s; one larger flow later.
    let ids: Vec<_> = (0..50).map(|_| n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 1000.0)).collect();
    let late = n.add_flow(SimTime(0), vec![0], f64::INFINITY, 1.0, 5000.0);
    n.settle(SimTime(0));
    let (t, first) = n.next_completion().unwrap();
    assert_eq!(first, ids[0]);
    assert!(n.due_flows(SimTime(t.0 - 1)).is_empty());
    let due = n.due_flows(t);
    assert_eq!(due, ids, "all 50, lowest slot first, not the larger one");
    // Removing some (as a cancel would) leaves the rest listed, and the list still valid.
    for id in &due[..10] {
        n.remove_flow(t, *id).unwrap();
    }
    assert_eq!(n.due_flows(t), ids[10..].to_vec());
    assert_eq!(n.next_completion().map(|x| x.1), Some(ids[10]));
    for id in &ids[10..] {
        n.remove_flow(t, *id).unwrap();
    }
    assert_eq!(n.next_completion().map(|x| x.1), Some(late));
}

/// The grouped solver against the per-flow reference (`super::reference`):
/// random flow sets and random event sequences give the same rates to 1e-9
/// relative, the same completion instants (to the nanosecond of rounding) and
/// the same bytes per limiter.
mod equivalence {
    use super::super::{reference, FlowId, FlowTotals, Network};
    use crate::engine::SimTime;
    use proptest::prelude::*;

    const CAPACITIES: [f64; 4] = [100.0, 250.0, 1000.0, 40.0];
    const CAPS: [f64; 4] = [f64::INFINITY, 50.0, 120.0, 333.3];

    #[derive(Debug, Clone)]
    enum Op {
        /// Route as a bit set over 4 link directions, cap index, weight, bytes.
        Add(u8, usize, u8, f64),
        /// Removes the i-th live flow (modulo their number).
        Remove(usize),
        /// Sets link direction r's capacity (0 for an outage).
        Capacity(usize, f64),
        /// Lets time pass (never past the next completion).
        Advance(u64),
        /// Jumps to the next completion and removes every flow due then.
        CompleteDue,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..16, 0usize..4, 1u8..5, 0.0f64..5e4).prop_map(|(r, c, w, b)| Op::Add(r, c, w, b)),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => (0usize..4, prop_oneof![Just(0.0), 10.0f64..2000.0]).prop_map(|(r, c)| Op::Capacity(r, c)),
            2 => (1u64..5_000_000_000).prop_map(Op::Advance),
            3 => Just(Op::CompleteDue),
        ]
    }

    fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
        (a - b).abs() <= abs + rel * a.abs().max(b.abs())
    }

    fn same_totals(a: &FlowTotals, b: &FlowTotals) -> Result<(), TestCaseError> {
        prop_assert!(close(a.sent, b.sent, 1e-9, 1e-6), "sent {} vs {}", a.sent, b.sent);
        prop_assert!(close(a.sent_cap_limited, b.sent_cap_limited, 1e-9, 1e-6));
        let mut la: Vec<(usize, f64)> = a.sent_by_link.iter().copied().filter(|x| x.1 > 1e-6).collect();
        let mut lb: Vec<(usize, f64)> = b.sent_by_link.iter().copied().filter(|x| x.1 > 1e-6).collect();
        la.sort_by_key(|x| x.0);
        lb.sort_by_key(|x| x.0);
        prop_assert_eq!(la.len(), lb.len(), "{:?} vs {:?}", a.sent_by_link, b.sent_by_link);
        for (x, y) in la.iter().zip(&lb) {
            prop_assert!(x.0 == y.0 && close(x.1, y.1, 1e-9, 1e-6), "{:?} vs {:?}", a.sent_by_link, b.sent_by_link);
        }
        Ok(())
    }

    /// Rates of every live flow agree, and so do the next completions.
    fn same_state(new: &mut Network, old: &mut reference::Network, live: &[FlowId]) -> Result<(), TestCaseError> {
        for &id in live {
            prop_assert!(close(new.rate(id), old.rate(id), 1e-9, 1e-12), "rate {} vs {}", new.rate(id), old.rate(id));
        }
        prop_assert_eq!(new.active_flows(), old.active_flows());
        match (new.next_completion(), old.next_completion()) {
            (Some((ta, _)), Some((tb, _))) => prop_assert!(ta.0.abs_diff(tb.0) <= 1, "next {:?} vs {:?}", ta, tb),
            (a, b) => prop_assert_eq!(a.is_none(), b.is_none(), "next {:?} vs {:?}", a, b),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_event_sequences_match_the_reference(ops in proptest::collection::vec(op(), 1..60)) {
            let mut new = Network::new(CAPACITIES.to_vec());
            let mut old = reference::Network::new(CAPACITIES.to_vec());
            let mut live: Vec<FlowId> = Vec::new();
            let mut now = SimTime(0);
            for op in ops {
                match op {
                    Op::Add(route, cap, weight, bytes) => {
                        let resources: Vec<usize> = (0..4).filter(|r| route & (1 << r) != 0).collect();
                        let a = new.add_flow(now, resources.clone(), CAPS[cap], weight as f64, bytes);
                        let b = old.add_flow(now, resources, CAPS[cap], weight as f64, bytes);
                        prop_assert_eq!(a, b);
                        live.push(a);
                    }
                    Op::Remove(i) => {
                        if !live.is_empty() {
                            let id = live.swap_remove(i % live.len());
                            same_totals(&new.remove_flow(now, id).unwrap(), &old.remove_flow(now, id).unwrap())?;
                        }
                    }
                    Op::Capacity(r, c) => {
                        new.set_capacity(r, c);
                        old.set_capacity(r, c);
                    }
                    Op::Advance(dt) => {
                        let limit = old.next_completion().map_or(u64::MAX, |(t, _)| t.0);
                        now = SimTime(now.0.saturating_add(dt).min(limit).max(now.0));
                    }
                    Op::CompleteDue => {
                        if let Some((t, _)) = old.next_completion() {
                            now = now.max(t);
                            // The batch is what one-at-a-time removal gives.
                            let mut probe = new.clone();
                            let mut one_by_one = Vec::new();
                            while let Some((t, id)) = probe.next_completion() {
                                if t > now {
                                    break;
                                }
                                probe.remove_flow(now, id).unwrap();
                                one_by_one.push(id);
                            }
                            prop_assert_eq!(new.due_flows(now), one_by_one);
                            while let Some((t, id)) = old.next_completion() {
                                if t > now {
                                    break;
                                }
                                same_totals(&new.remove_flow(now, id).unwrap(), &old.remove_flow(now, id).unwrap())?;
                                live.retain(|&x| x != id);
                            }
                        }
                    }
                }
                new.settle(now);
                old.settle(now);
                same_state(&mut new, &mut old, &live)?;
            }
        }

        #[test]
        fn random_flow_sets_get_the_reference_rates(
            flows in proptest::collection::vec((1u8..16, 0usize..4, 1u8..5), 1..200),
            caps in proptest::collection::vec(1.0f64..1e4, 4),
        ) {
            let mut new = Network::new(caps.clone());
            let mut old = reference::Network::new(caps);
            let ids: Vec<FlowId> = flows
                .iter()
                .map(|&(route, cap, weight)| {
                    let resources: Vec<usize> = (0..4).filter(|r| route & (1 << r) != 0).collect();
                    new.add_flow(SimTime(0), resources.clone(), CAPS[cap], weight as f64, 1e6);
                    old.add_flow(SimTime(0), resources, CAPS[cap], weight as f64, 1e6)
                })
                .collect();
            new.settle(SimTime(0));
            old.settle(SimTime(0));
            same_state(&mut new, &mut old, &ids)?;
            // Identical flows share one group.
            let distinct: std::collections::BTreeSet<_> = flows.iter().collect();
            prop_assert_eq!(new.active_groups(), distinct.len());
        }
    }
}

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

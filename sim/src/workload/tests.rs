use super::*;
use memfabric_migration::units::Fraction;
use rand::SeedableRng;

fn spec(popularity: Popularity, wws: f64, rate: f64) -> WorkloadSpec {
    let mut s = archetype::lookup("web").unwrap();
    s.popularity = popularity;
    s.working_set = Fraction(wws);
    s.page_write_rate = rate;
    s
}

#[test]
fn small_windows_dirty_linearly_and_large_ones_saturate() {
    let m = DirtyModel::new(&spec(Popularity::Uniform, 0.5, 1000.0), 1 << 20);
    // λT tiny: D ≈ w·T.
    let d = m.expected_dirty_pages(0.01);
    assert!((d - 10.0).abs() / 10.0 < 1e-4, "{d}");
    // Very long window: saturates at the working set.
    assert!((m.expected_dirty_pages(1e7) - (1u64 << 19) as f64).abs() < 1.0);
    assert_eq!(m.working_set_pages(), 1 << 19);
}

#[test]
fn hot_pages_rewritten_add_nothing() {
    // 80% of 1000 writes/s go to 100 hot pages: after 10 s all hot pages are
    // dirty, but 8000 writes hit them.
    let m = DirtyModel::new(
        &spec(Popularity::HotCold { hot_set: Fraction(100.0 / 100_000.0), hot_write_share: Fraction(0.8) }, 1.0, 1000.0),
        100_000,
    );
    let d = m.expected_dirty_pages(10.0);
    let expect = 100.0 * (1.0 - (-80.0f64).exp()) + 99_900.0 * (1.0 - (-2000.0f64 / 99_900.0).exp());
    assert!((d - expect).abs() < 1e-6);
    assert!(d < 10_000.0 * 0.25, "distinct pages far below writes: {d}");
}

#[test]
fn zipf_buckets_preserve_the_write_rate_and_skew() {
    let pages = 262_144;
    let m = DirtyModel::new(&spec(Popularity::Zipf { exponent: 0.99 }, 1.0, 50_000.0), pages);
    assert_eq!(m.working_set_pages(), pages);
    assert!((m.write_rate() - 50_000.0).abs() < 1e-6);
    let uniform = DirtyModel::new(&spec(Popularity::Uniform, 1.0, 50_000.0), pages);
    // Skewed writes dirty fewer distinct pages in the same time.
    assert!(m.expected_dirty_pages(1.0) < 0.8 * uniform.expected_dirty_pages(1.0));
}

#[test]
fn samples_center_on_the_expectation() {
    let m = DirtyModel::new(&spec(Popularity::Zipf { exponent: 0.99 }, 0.4, 20_000.0), 1 << 20);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let n = 200;
    let mean: f64 = (0..n).map(|_| m.sample_dirty_pages(0.5, &mut rng) as f64).sum::<f64>() / n as f64;
    let e = m.expected_dirty_pages(0.5);
    assert!((mean - e).abs() / e < 0.01, "mean {mean} vs expected {e}");
}

#[test]
fn postcopy_faults_bounds() {
    let m = DirtyModel::new(&spec(Popularity::Uniform, 1.0, 1000.0), 10_000);
    // A tiny push window gives ~ n·λT/2 faults; a very long one faults almost every page.
    let f = m.expected_postcopy_faults(Pending::All, 0.001, 1.0);
    assert!((f - 0.5).abs() < 1e-3, "{f}");
    assert!(m.expected_postcopy_faults(Pending::All, 1e6, 1.0) > 9_900.0);
    assert_eq!(m.expected_postcopy_faults(Pending::DirtiedIn { run_secs: 1.0, pages: 0.0 }, 5.0, 1.0), 0.0);
    // A slower guest touches fewer pages.
    assert!(m.expected_postcopy_faults(Pending::All, 5.0, 0.5) < m.expected_postcopy_faults(Pending::All, 5.0, 1.0));
}

#[test]
fn hybrid_pending_pages_are_the_hot_ones() {
    // 90% of writes to 1% of pages: the pages dirtied in a short round are
    // mostly hot, so they fault far more often than a uniform sample would.
    let m = DirtyModel::new(
        &spec(Popularity::HotCold { hot_set: Fraction(0.01), hot_write_share: Fraction(0.9) }, 1.0, 10_000.0),
        100_000,
    );
    let pending = m.expected_dirty_pages(0.5);
    let hot = m.expected_postcopy_faults(Pending::DirtiedIn { run_secs: 0.5, pages: pending }, 2.0, 1.0);
    // The same number of pages taken uniformly from memory.
    let uniform = m.expected_postcopy_faults(Pending::All, 2.0, 1.0) * pending / 100_000.0;
    assert!(hot > 3.0 * uniform, "hot {hot} vs uniform {uniform}");
}

#[test]
fn guest_speed_balances_stalls_and_accesses() {
    let m = DirtyModel::new(&spec(Popularity::Uniform, 1.0, 50_000.0), 262_144);
    // Nanosecond faults barely slow the guest.
    assert!(m.postcopy_guest_speed(Pending::All, 10.0, 1e-9, 2) > 0.9999);
    assert_eq!(m.postcopy_guest_speed(Pending::All, 10.0, 0.0, 2), 1.0);
    // 100 ms per fault: the guest is mostly stalled, and the balance holds.
    let (t, c, v) = (10.0, 0.1, 2);
    let s = m.postcopy_guest_speed(Pending::All, t, c, v);
    assert!(s > 0.0 && s < 0.1, "{s}");
    let stall = m.expected_postcopy_faults(Pending::All, t, s) * c;
    assert!((stall - (1.0 - s) * v as f64 * t).abs() < 1e-6 * t, "stall {stall}");
}

#[test]
fn empty_hot_or_cold_class_keeps_the_write_rate() {
    for hot_set in [0.0, 1.0] {
        let m = DirtyModel::new(
            &spec(Popularity::HotCold { hot_set: Fraction(hot_set), hot_write_share: Fraction(0.8) }, 1.0, 1000.0),
            10_000,
        );
        assert!((m.write_rate() - 1000.0).abs() < 1e-9, "hot_set {hot_set}");
    }
}

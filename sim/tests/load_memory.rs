//! The scenario loader's peak memory on a scenario that lists 10,000 VMs one
//! `[[vms]]` entry each (`memfabric bench --workload load`): a small multiple
//! of the text, and a small fraction of the whole-document parse's. One test
//! in this file, so no other test allocates in the process while it measures.
//! At 10,000 VMs a fixed few MiB (more in a debug build's test thread) is a
//! large part of the loader's figure, hence the loose bound; at 100,000 it
//! is 2.8 times the text (docs/development.md), the whole parse's 28 times.

use memfabric_sim::bench;

#[test]
fn loading_a_listed_scenario_peaks_at_a_small_multiple_of_its_text() {
    let rows = bench::run_load_bench(&[10_000], 1).unwrap();
    let r = &rows[0];
    assert_eq!(r.vms, 10_000);
    let (Some(load), Some(whole)) = (r.load_peak_bytes, r.whole_peak_bytes) else {
        eprintln!("skipped: the peak resident memory cannot be reset here (/proc/self/clear_refs)");
        return;
    };
    let text = r.text_bytes as u64;
    assert!(load < 8 * text, "the loader peaked {load} bytes over a text of {text} bytes");
    assert!(whole > 10 * text, "the whole-document parse peaked {whole} bytes over a text of {text}: the baseline measures nothing");
    assert!(load * 4 < whole, "loader {load} bytes, whole-document parse {whole} bytes");
}

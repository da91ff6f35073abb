//! One seed drives every draw: the same scenario and seed give byte-identical
//! results; another seed changes the stochastic ones.

mod common;
use common::*;
use memfabric_sim::{output, run::run, scenario};

fn write(seed: Option<u64>, dir: &std::path::Path) {
    let sc = scenario::load(&scenario_path("quickstart")).unwrap();
    let out = run(&sc, seed);
    output::write_results(std::slice::from_ref(&out), dir, false, false).unwrap();
}

#[test]
fn same_seed_gives_identical_bytes() {
    let tmp = std::env::temp_dir().join(format!("memfabric-det-{}", std::process::id()));
    let (a, b, c) = (tmp.join("a"), tmp.join("b"), tmp.join("c"));
    write(None, &a);
    write(None, &b);
    write(Some(999), &c);
    for table in ["migrations.parquet", "rounds.parquet", "links.parquet", "manifest.json"] {
        let x = std::fs::read(a.join(table)).unwrap();
        let y = std::fs::read(b.join(table)).unwrap();
        assert!(!x.is_empty());
        assert_eq!(x, y, "{table} differs between two runs with the same seed");
    }
    let x = std::fs::read(a.join("rounds.parquet")).unwrap();
    let z = std::fs::read(c.join("rounds.parquet")).unwrap();
    assert_ne!(x, z, "a different seed must change the sampled dirty sets");
    let manifest = std::fs::read_to_string(c.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"seed\": 999"), "{manifest}");
    // Each table carries its provenance in the Parquet footer too.
    let hash = scenario::load(&scenario_path("quickstart")).unwrap().source_hash;
    for table in ["migrations.parquet", "rounds.parquet", "links.parquet"] {
        let bytes = String::from_utf8_lossy(&std::fs::read(c.join(table)).unwrap()).into_owned();
        for needle in ["memfabric.scenario_hash", hash.as_str(), "memfabric.seed", "999", "memfabric.version"] {
            assert!(bytes.contains(needle), "{table} lacks {needle}");
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_seed_changes_sampled_dirty_sets_but_not_expected_ones() {
    let text = |sampling: &str| {
        two_sites(
            "bandwidth = \"1Gbit/s\"\nlatency = \"5ms\"",
            &format!(
                "[defaults]\ndirty_sampling = \"{sampling}\"\n[[vms]]\nname = \"db\"\nhost = \"a-h-0\"\narchetype = \"oltp-db\"\n[[migrations]]\nvm = \"db\"\nto = \"b\"\n"
            ),
        )
    };
    let sampled = parse(&text("binomial"));
    let expected = parse(&text("expected"));
    let pages = |sc: &memfabric_sim::scenario::Scenario, seed| -> Vec<u64> {
        run(sc, Some(seed)).rounds.iter().map(|r| r.pages).collect()
    };
    assert_ne!(pages(&sampled, 1), pages(&sampled, 2));
    assert_eq!(pages(&sampled, 1), pages(&sampled, 1));
    assert_eq!(pages(&expected, 1), pages(&expected, 2));
}

#[test]
fn parquet_tables_round_trip() {
    let sc = scenario::load(&scenario_path("quickstart")).unwrap();
    let out = run(&sc, None);
    let tmp = std::env::temp_dir().join(format!("memfabric-rt-{}", std::process::id()));
    output::write_results(std::slice::from_ref(&out), &tmp, false, false).unwrap();
    let df = output::read_parquet(&tmp.join("migrations.parquet")).unwrap();
    assert_eq!(df.height(), out.migrations.len());
    let total = df.column("total_time_s").unwrap().f64().unwrap().get(0).unwrap();
    assert_eq!(total, out.migrations[0].total_time_s);
    let vm = df.column("vm").unwrap().str().unwrap().get(2).unwrap().to_string();
    assert_eq!(vm, out.migrations[2].vm);
    let rounds = output::read_parquet(&tmp.join("rounds.parquet")).unwrap();
    assert_eq!(rounds.height(), out.rounds.len());
    let links = output::read_parquet(&tmp.join("links.parquet")).unwrap();
    assert_eq!(links.height(), out.links.len());
    let _ = std::fs::remove_dir_all(&tmp);
}

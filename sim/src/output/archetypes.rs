//! The table `memfabric archetypes` prints: every workload archetype's
//! defaults, one row each, with the unit of every column in its header.

use crate::workload::archetype::{default_memory_gib, lookup, NAMES};
use crate::workload::Popularity;
use memfabric_migration::PAGE_SIZE_BYTES;
use std::fmt::Write;

/// The popularity law in a few words: `uniform`, `hot 10%→90%`, `zipf s=0.99`.
fn popularity(p: &Popularity) -> String {
    match p {
        Popularity::Uniform => "uniform".into(),
        Popularity::HotCold { hot_set, hot_write_share } => {
            format!("hot {:.0}%→{:.0}%", hot_set.0 * 100.0, hot_write_share.0 * 100.0)
        }
        Popularity::Zipf { exponent } => format!("zipf s={exponent}"),
    }
}

/// The archetypes as an aligned table (under 100 columns) with a key.
pub fn archetype_table() -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<11} {:>6} {:>8} {:>7} {:>7} {:>5} {:>6} {:>5} {:>6} {:>6} {:>7}  popularity",
        "archetype", "memory", "writes", "writes", "working", "zero", "shared", "dup", "unique", "compr", "rewrite"
    );
    let _ = writeln!(
        s,
        "{:<11} {:>6} {:>8} {:>7} {:>7} {:>5} {:>6} {:>5} {:>6} {:>6} {:>7}",
        "", "GiB", "pages/s", "MiB/s", "set %", "%", "image%", "%", "%", "size %", "chg %"
    );
    for name in NAMES {
        let a = lookup(name).expect("every listed archetype resolves");
        let mem = default_memory_gib(name).expect("every listed archetype has a memory size");
        let c = &a.content;
        let _ = writeln!(
            s,
            "{:<11} {:>6} {:>8.0} {:>7.1} {:>7.0} {:>5.0} {:>6.0} {:>5.0} {:>6.0} {:>6.0} {:>7.0}  {}",
            name,
            mem,
            a.page_write_rate,
            a.page_write_rate * PAGE_SIZE_BYTES as f64 / (1024.0 * 1024.0),
            a.working_set.0 * 100.0,
            c.zero.0 * 100.0,
            c.shared_image.0 * 100.0,
            c.duplicate.0 * 100.0,
            c.unique() * 100.0,
            c.unique_compressed_mean.0 * 100.0,
            a.redirty_change.0 * 100.0,
            popularity(&a.popularity)
        );
    }
    s.push_str(
        "\nmemory: default VM size. writes: page writes per second (re-writes included), and\n\
         the same in MiB/s. working set: share of memory ever written. zero, shared image\n\
         (same as in VMs of the image), dup (duplicated within the VM), unique: shares of\n\
         pages. compr size: mean compressed size of a unique page. rewrite chg: mean share of\n\
         a page's bytes that a re-write changes. popularity: hot H%→W% (hot-cold), H% of the\n\
         working set takes W% of the writes; zipf s, rank exponent. Sources: docs/model.md §6.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::archetype_table;

    #[test]
    fn archetype_table_is_aligned_and_fits_100_columns() {
        let t = archetype_table();
        assert!(t.lines().all(|l| l.chars().count() <= 100), "{t}");
        assert!(!t.contains("Fraction(") && !t.contains('{'), "no debug dumps:\n{t}");
        // One row per archetype, each starting with its name; the column
        // "popularity" starts at the same place on every row.
        let rows: Vec<&str> = t.lines().skip(2).take(5).collect();
        let names: Vec<&str> = rows.iter().map(|r| r.split_whitespace().next().unwrap()).collect();
        assert_eq!(names, ["idle-linux", "web", "oltp-db", "memcached", "hpc"]);
        let at = t.lines().next().unwrap().find("popularity").unwrap();
        assert!(rows.iter().all(|r| r.chars().nth(at - 1) == Some(' ') && r.chars().nth(at) != Some(' ')), "{t}");
        // web: 4 GiB, 5000 writes/s = 19.5 MiB/s of 4 KiB pages, hot-cold 20/80.
        let web = rows[1].split_whitespace().collect::<Vec<_>>();
        assert_eq!(&web[..4], ["web", "4", "5000", "19.5"]);
        assert!(rows[1].ends_with("hot 20%→80%"), "{}", rows[1]);
    }
}

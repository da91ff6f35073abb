//! decode(encode(pages)) is byte-identical, through the wire format, for
//! every strategy, on random and adversarial page sequences.

use super::gen::{mutate, random_page, text_page};
use super::harness::{Fleet, Site};
use crate::pipeline::{DomainId, HashAlgo, Page, PAGE_SIZE};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// What a VM writes to one page index.
#[derive(Debug, Clone)]
enum Op {
    Zero,
    Ones,
    Random(u64),
    Text(u64),
    /// A page of the shared library (also resident at the site).
    Library(u8),
    /// A copy of an earlier page of this VM (by position in its history).
    CopyOf(u8),
    /// An earlier page with one bit flipped.
    BitFlip(u8, u16),
    /// The page's current content with `count` bytes changed.
    Rewrite {
        seed: u64,
        count: u8,
    },
}

type Script = Vec<Vec<(u8, Op)>>;

const LIBRARY_PAGES: usize = 8;
const PAGE_INDEXES: u8 = 12;
/// Small, so that eviction happens often.
const DELTA_CACHE_PAGES: usize = 4;

fn library() -> Vec<Box<Page>> {
    (0..LIBRARY_PAGES as u64).map(|i| if i % 2 == 0 { text_page(1000 + i) } else { random_page(2000 + i) }).collect()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Zero),
        1 => Just(Op::Ones),
        2 => any::<u64>().prop_map(Op::Random),
        2 => any::<u64>().prop_map(Op::Text),
        2 => (0..LIBRARY_PAGES as u8).prop_map(Op::Library),
        2 => any::<u8>().prop_map(Op::CopyOf),
        2 => (any::<u8>(), 0..(PAGE_SIZE * 8) as u16).prop_map(|(of, bit)| Op::BitFlip(of, bit)),
        3 => (any::<u64>(), 1u8..64).prop_map(|(seed, count)| Op::Rewrite { seed, count }),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    prop::collection::vec(prop::collection::vec((0..PAGE_INDEXES, op()), 1..10), 1..6)
}

/// Turns a script into batches of concrete pages.
fn materialize(script: &Script, library: &[Box<Page>]) -> Vec<Vec<(u64, Box<Page>)>> {
    let mut history: Vec<Box<Page>> = Vec::new();
    let mut memory: BTreeMap<u64, Box<Page>> = BTreeMap::new();
    let earlier = |history: &[Box<Page>], j: u8| history.get(j as usize % history.len().max(1)).cloned();
    script
        .iter()
        .map(|batch| {
            batch
                .iter()
                .map(|(index, op)| {
                    let index = u64::from(*index);
                    let page = match op {
                        Op::Zero => Box::new([0u8; PAGE_SIZE]),
                        Op::Ones => Box::new([0xFFu8; PAGE_SIZE]),
                        Op::Random(seed) => random_page(*seed),
                        Op::Text(seed) => text_page(*seed),
                        Op::Library(k) => library[*k as usize].clone(),
                        Op::CopyOf(j) => earlier(&history, *j).unwrap_or_else(|| random_page(u64::from(*j))),
                        Op::BitFlip(j, bit) => {
                            let mut p = earlier(&history, *j).unwrap_or_else(|| Box::new([0u8; PAGE_SIZE]));
                            p[*bit as usize / 8] ^= 1 << (bit % 8);
                            p
                        }
                        Op::Rewrite { seed, count } => {
                            let base = memory.get(&index).cloned().unwrap_or_else(|| text_page(*seed));
                            mutate(&base, *seed, usize::from(*count))
                        }
                    };
                    history.push(page.clone());
                    memory.insert(index, page.clone());
                    (index, page)
                })
                .collect()
        })
        .collect()
}

/// The strategies under test, with the site content each one sees.
fn cases() -> Vec<(&'static str, HashAlgo, Site)> {
    let d = DomainId(7);
    let lib = library();
    let exact = Site::Exact { domain: d, pages: lib.clone() };
    // Odd library pages are claimed by the summary but not held.
    let held: Vec<Box<Page>> = lib.iter().step_by(2).cloned().collect();
    let summary =
        Site::Summary { domain: d, summarized: lib.clone(), held: held.clone(), bits_per_item: 10, hash_count: 7 };
    // 2 bits per item, 1 hash: about 40% false positives on any content.
    let leaky = Site::Summary { domain: d, summarized: lib, held, bits_per_item: 2, hash_count: 1 };
    let x = HashAlgo::Xxh3_128;
    vec![
        ("none", x, Site::Empty),
        ("zero", x, Site::Empty),
        ("zero+lz4", x, Site::Empty),
        ("zero+zstd", x, Site::Empty),
        ("zero+zstd:3", x, Site::Empty),
        ("zero+xbzrle", x, Site::Empty),
        ("zero+xbzrle+zstd", x, Site::Empty),
        ("zero+dedup-vm+lz4", x, Site::Empty),
        ("zero+dedup-gang+lz4", x, Site::Empty),
        ("zero+dedup-site+zstd", x, exact.clone()),
        ("zero+dedup-site+zstd", x, summary),
        // Beyond the required list: stage interplay and the other hash.
        ("zero+dedup-site+zstd", HashAlgo::Blake3, exact),
        ("zero+dedup-site+xbzrle+lz4", x, leaky),
        ("dedup-vm+xbzrle", x, Site::Empty),
        ("zero+dedup-gang+xbzrle+zstd", x, Site::Empty),
        ("xbzrle+lz4", x, Site::Empty),
    ]
}

fn run(vm_scripts: &[Script; 2]) {
    let lib = library();
    let batches: Vec<_> = vm_scripts.iter().map(|s| materialize(s, &lib)).collect();
    for (name, algo, site) in cases() {
        let strategy = name.parse().unwrap();
        let mut fleet = Fleet::new(strategy, algo, DELTA_CACHE_PAGES, &[DomainId(7), DomainId(7)], &site);
        let rounds = batches.iter().map(Vec::len).max().unwrap_or(0);
        for round in 0..rounds {
            for (vm, vm_batches) in batches.iter().enumerate() {
                if let Some(batch) = vm_batches.get(round) {
                    fleet.send(vm, batch);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_strategy_round_trips(a in script(), b in script()) {
        run(&[a, b]);
    }
}

#[test]
fn adversarial_sequence_round_trips() {
    // All the adversarial kinds in one fixed script, re-sent several times.
    let batch: Vec<(u8, Op)> = vec![
        (0, Op::Zero),
        (1, Op::Ones),
        (2, Op::Random(1)),
        (3, Op::Text(2)),
        (4, Op::CopyOf(2)),
        (5, Op::BitFlip(3, 77)),
        (2, Op::Rewrite { seed: 3, count: 1 }),
        (6, Op::Library(1)),
        (7, Op::Library(1)),
        (0, Op::Ones),
        (1, Op::Zero),
    ];
    let script: Script = vec![batch.clone(), batch.clone(), batch];
    run(&[script.clone(), script]);
}

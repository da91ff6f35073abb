//! Property-based fuzzing of the scenario parser (issue 12): arbitrary
//! bytes and mutated committed scenarios never panic; every refusal is a
//! located `ScenarioError::Invalid` whose line and column exist in the text;
//! every accepted scenario obeys the documented bounds and parses the same
//! way twice. `MEMFABRIC_FUZZ_CASES` sets the number of cases (see the
//! Reliability section of docs/development.md for the longer run).

mod common;
mod fuzz_common;
use fuzz_common::{config, EXTREME_VALUES};
use memfabric_sim::scenario::{self, ScenarioError};
use proptest::prelude::*;
use proptest::sample::Index;

/// Every committed scenario's text (all of `scenarios/*.toml`, so a new
/// scenario is fuzzed as soon as it is committed).
fn committed() -> Vec<String> {
    let dir = common::scenario_path("quickstart").parent().unwrap().to_path_buf();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 7, "committed scenarios in {}: {paths:?}", dir.display());
    paths.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

/// One edit of a scenario's text.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the value of the i-th `key = value` line.
    Value(Index, &'static str),
    /// Delete a line.
    DeleteLine(Index),
    /// Repeat a line (duplicate keys, tables, entries).
    DuplicateLine(Index),
    /// Overwrite a byte.
    Byte(Index, u8),
    /// Cut the text.
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), prop::sample::select(EXTREME_VALUES)).prop_map(|(i, v)| Mutation::Value(i, v)),
        1 => any::<Index>().prop_map(Mutation::DeleteLine),
        1 => any::<Index>().prop_map(Mutation::DuplicateLine),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    match m {
        Mutation::Value(i, v) => {
            let keyed: Vec<usize> = (0..lines.len()).filter(|&l| lines[l].contains(" = ")).collect();
            if !keyed.is_empty() {
                let l = keyed[i.index(keyed.len())];
                let key = lines[l].split(" = ").next().unwrap().to_string();
                lines[l] = format!("{key} = {v}");
            }
        }
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(lines.len()));
        }
        Mutation::DuplicateLine(i) => {
            let l = i.index(lines.len());
            lines.insert(l, lines[l].clone());
        }
        Mutation::Byte(i, b) => {
            let mut bytes = lines.join("\n").into_bytes();
            let at = i.index(bytes.len().max(1)).min(bytes.len().saturating_sub(1));
            if !bytes.is_empty() {
                bytes[at] = *b;
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::Truncate(i) => {
            let s = lines.join("\n");
            let mut at = i.index(s.len().max(1));
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            return s[..at].to_string();
        }
    }
    lines.join("\n") + "\n"
}

/// The properties every parse result must have.
fn check(text: &str) -> Result<(), TestCaseError> {
    match scenario::parse(text, "fuzz.toml") {
        Ok(sc) => {
            prop_assert!(sc.vms.len() as u64 <= scenario::VMS_MAX);
            prop_assert!(sc.fabric.hosts.len() as u64 <= scenario::HOSTS_MAX);
            prop_assert!(scenario::folder_name_problem(&sc.name).is_none(), "accepted name {:?}", sc.name);
            for l in &sc.fabric.links {
                prop_assert!(l.bandwidth.0 > 0.0, "accepted link bandwidth {:?}", l.bandwidth);
            }
            let again = scenario::parse(text, "fuzz.toml").expect("accepted once, accepted twice");
            prop_assert_eq!(format!("{sc:?}"), format!("{again:?}"));
        }
        Err(ScenarioError::Invalid { path, line, column, field, message }) => {
            prop_assert_eq!(path, "fuzz.toml");
            prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "line {} of {}", line, text.lines().count());
            prop_assert!(column >= 1);
            prop_assert!(!field.is_empty() && !message.is_empty());
        }
        Err(other) => prop_assert!(false, "parse gave a non-located error: {other}"),
    }
    Ok(())
}

/// Exhaustive, deterministic: every value of every committed scenario
/// replaced by every extreme value, one at a time (about 12,000 parses).
/// The random properties below combine edits; this one guarantees that no
/// single-value edit is left to chance (a u64::MAX host RAM once reached an
/// unchecked addition in placement only on some CI runs).
#[test]
fn every_single_value_edit_of_every_committed_scenario_is_handled() {
    let mut checked = 0usize;
    let mut failures = Vec::new();
    for (s, text) in committed().iter().enumerate() {
        let lines: Vec<&str> = text.lines().collect();
        for (l, line) in lines.iter().enumerate() {
            let Some((key, _)) = line.split_once(" = ") else { continue };
            for v in EXTREME_VALUES {
                let mut edited: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
                edited[l] = format!("{key} = {v}");
                let edited = edited.join("\n") + "\n";
                let outcome = std::panic::catch_unwind(|| check(&edited));
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(format!("scenario #{s}, line {}: `{key} = {v}`: {e}", l + 1)),
                    Err(_) => failures.push(format!("scenario #{s}, line {}: `{key} = {v}` panicked", l + 1)),
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} edits mishandled:\n{}", failures.len(), failures.join("\n"));
    assert!(checked > 5_000, "only {checked} edits checked");
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_give_located_errors(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn mutated_committed_scenarios_never_panic(which in any::<Index>(), edits in prop::collection::vec(mutation(), 1..5)) {
        let seeds = committed();
        let mut text = seeds[which.index(seeds.len())].clone();
        for m in &edits {
            text = apply(&text, m);
        }
        check(&text)?;
    }
}

//! Property-based fuzzing of the trace reader (issue 12): a valid small
//! trace with its manifest values replaced by edge values, its Parquet
//! tables' bytes overwritten or cut, or its files swapped, never panics the
//! reader; every refusal is a `TraceError` naming a file of the trace; an
//! accepted trace writes and reads back equal. `MEMFABRIC_FUZZ_CASES` sets
//! the number of cases (docs/development.md, Reliability).

mod fuzz_common;
use fuzz_common::{config, EXTREME_VALUES};
use memfabric_sim::trace::gen::{generate, GenConfig};
use memfabric_sim::trace::{Trace, EPOCHS_FILE, MANIFEST_FILE, SNAPSHOT_FILE};
use proptest::prelude::*;
use proptest::sample::Index;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const FILES: [&str; 3] = [MANIFEST_FILE, SNAPSHOT_FILE, EPOCHS_FILE];

/// The three files of a valid 16-page, 3-epoch trace.
fn valid_files() -> [Vec<u8>; 3] {
    static FILES_CACHE: std::sync::OnceLock<[Vec<u8>; 3]> = std::sync::OnceLock::new();
    FILES_CACHE
        .get_or_init(|| {
            let mut cfg = GenConfig::for_archetype("web").unwrap();
            cfg.memory_bytes = 16 * 4096;
            cfg.duration_ns = 3 * cfg.epoch_ns;
            let dir = fresh_dir();
            generate(&cfg).unwrap().write(&dir).unwrap();
            let files = FILES.map(|f| std::fs::read(dir.join(f)).unwrap());
            std::fs::remove_dir_all(&dir).unwrap();
            files
        })
        .clone()
}

fn fresh_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir()
        .join(format!("memfabric-fuzz-trace-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Set a manifest value (by index among all keys, nested included).
    ManifestValue(Index, &'static str),
    /// Overwrite a byte of a table (0 = snapshot, 1 = epochs).
    TableByte(bool, Index, u8),
    /// Cut a file.
    Truncate(Index, Index),
    /// Put one file's bytes in another's place.
    Swap(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), prop::sample::select(EXTREME_VALUES)).prop_map(|(i, v)| Mutation::ManifestValue(i, v)),
        3 => (any::<bool>(), any::<Index>(), any::<u8>()).prop_map(|(t, i, b)| Mutation::TableByte(t, i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(f, i)| Mutation::Truncate(f, i)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
    ]
}

/// Every value slot of a JSON document, as a pointer.
fn pointers(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(x, p, out);
            }
        }
        _ => {}
    }
}

fn apply(files: &mut [Vec<u8>; 3], m: &Mutation) {
    match m {
        Mutation::ManifestValue(i, v) => {
            let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&files[0]) else { return };
            let mut ps = Vec::new();
            pointers(&doc, String::new(), &mut ps);
            if ps.is_empty() {
                return;
            }
            let p = &ps[i.index(ps.len())];
            // Not JSON (nan, inf): written as text, so the manifest is bad JSON.
            let value = serde_json::from_str(v).unwrap_or(serde_json::Value::String(format!("\u{1}{v}")));
            if let Some(slot) = doc.pointer_mut(p) {
                *slot = value;
            }
            files[0] = serde_json::to_vec_pretty(&doc).unwrap();
        }
        Mutation::TableByte(epochs, i, b) => {
            let f = &mut files[1 + usize::from(*epochs)];
            if !f.is_empty() {
                let at = i.index(f.len());
                f[at] = *b;
            }
        }
        Mutation::Truncate(f, i) => {
            let f = &mut files[f.index(3)];
            let at = i.index(f.len().max(1));
            f.truncate(at);
        }
        Mutation::Swap(a, b) => {
            let (a, b) = (a.index(3), b.index(3));
            files.swap(a, b);
        }
    }
}

fn write_files(dir: &Path, files: &[Vec<u8>; 3]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in FILES.iter().zip(files) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn mutated_traces_are_refused_by_file_or_round_trip(edits in prop::collection::vec(mutation(), 1..4)) {
        let mut files = valid_files();
        for m in &edits {
            apply(&mut files, m);
        }
        let dir = fresh_dir();
        write_files(&dir, &files);
        let result = Trace::read(&dir);
        let checked: Result<(), TestCaseError> = match result {
            Ok(trace) => {
                let again = fresh_dir();
                trace.write(&again).map_err(|e| TestCaseError::fail(format!("an accepted trace does not write: {e}")))?;
                let back = Trace::read(&again).map_err(|e| TestCaseError::fail(format!("written trace does not read: {e}")))?;
                std::fs::remove_dir_all(&again).unwrap();
                prop_assert_eq!(back, trace);
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                let names_a_file = FILES.iter().any(|f| msg.starts_with(&dir.join(f).display().to_string()));
                prop_assert!(names_a_file, "the error does not start with a file of the trace: {}", msg);
                Ok(())
            }
        };
        std::fs::remove_dir_all(&dir).unwrap();
        checked?;
    }
}

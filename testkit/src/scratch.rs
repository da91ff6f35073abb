//! Scratch folders for tests: `<tmp>/memfabric-<group>-<pid>-<name>`, owned
//! by the test that asked for one and removed when its thread ends (libtest
//! runs each test on its own thread) unless some test of the process failed,
//! so that a failure's files can be looked at. A test only ever removes a
//! folder whose name carries its own process id, that it asked for.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

/// Set by the panic hook [`owned_path`] installs: a test failed.
static A_TEST_FAILED: AtomicBool = AtomicBool::new(false);

/// The folders of the test running on this thread.
struct ThreadScratch(Vec<PathBuf>);

impl Drop for ThreadScratch {
    fn drop(&mut self) {
        if !A_TEST_FAILED.load(Ordering::SeqCst) {
            for d in &self.0 {
                remove(d);
            }
        }
    }
}

thread_local! {
    static THREAD_SCRATCH: RefCell<ThreadScratch> = const { RefCell::new(ThreadScratch(Vec::new())) };
}

/// Removes the folder or file at `p`, if any.
fn remove(p: &std::path::Path) {
    let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
}

/// `<tmp>/memfabric-<group>-<pid>-<name>`: where a test's scratch folder is.
pub fn path(group: &str, name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("memfabric-{group}-{}-{name}", std::process::id()))
}

/// A fresh, empty scratch folder that stays after the test (for tests that
/// share it across threads, or clean it themselves).
pub fn scratch(group: &str, name: &str) -> PathBuf {
    let d = path(group, name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// A scratch path that does not exist yet (for a program under test to
/// create, e.g. an `--out` folder it must create itself, or a report file),
/// removed with
/// everything under it when the calling test's thread ends, if every test so
/// far passed.
pub fn owned_path(group: &str, name: &str) -> PathBuf {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            A_TEST_FAILED.store(true, Ordering::SeqCst);
            default_hook(info)
        }));
    });
    let d = path(group, name);
    remove(&d);
    THREAD_SCRATCH.with(|t| t.borrow_mut().0.push(d.clone()));
    d
}

/// A fresh, empty scratch folder, removed as [`owned_path`]'s is.
pub fn owned_scratch(group: &str, name: &str) -> PathBuf {
    let d = owned_path(group, name);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
    d
}

/// Everything under `dir` (hidden entries included), as paths relative to
/// it, sorted: what a test checks a program left in a folder.
pub fn listing(dir: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, rel: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap_or_else(|e| panic!("read {}: {e}", root.join(rel).display())) {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            out.push(r.display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(root, &r, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, std::path::Path::new(""), &mut out);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owned_folder_is_removed_when_its_test_thread_ends() {
        let (made, path_only, file) = std::thread::spawn(|| {
            let d = owned_scratch("testkit", "removed");
            std::fs::write(d.join("f"), b"x").unwrap();
            let p = owned_path("testkit", "created-later");
            std::fs::create_dir_all(p.join("sub")).unwrap();
            let f = owned_path("testkit", "report.json");
            std::fs::write(&f, b"{}").unwrap();
            assert!(d.is_dir() && p.is_dir() && f.is_file());
            (d, p, f)
        })
        .join()
        .unwrap();
        assert!(!made.exists(), "{} left behind", made.display());
        assert!(!path_only.exists(), "{} left behind", path_only.display());
        assert!(!file.exists(), "{} left behind", file.display());
    }

    #[test]
    fn listing_walks_the_tree_relative_and_sorted() {
        let d = owned_scratch("testkit", "listing");
        std::fs::create_dir_all(d.join("b/c")).unwrap();
        std::fs::write(d.join("b/c/.hidden"), b"").unwrap();
        std::fs::write(d.join("a"), b"").unwrap();
        assert_eq!(listing(&d), ["a", "b", "b/c", "b/c/.hidden"]);
    }

    #[test]
    fn a_plain_scratch_folder_stays() {
        let d = std::thread::spawn(|| scratch("testkit", "stays")).join().unwrap();
        assert!(d.is_dir());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

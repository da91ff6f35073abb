//! Replacing a directory atomically: results and traces are written to a
//! hidden sibling (`.<name>.partial-<pid>`) and renamed into place only when
//! complete, so a failed write never leaves a half-written directory, and an
//! existing complete one is replaced only by another complete one.

use std::path::{Path, PathBuf};

/// Fills a staging directory with `fill`, then swaps it in as `dir`. `io`
/// turns a filesystem error on a path into the caller's error type.
pub fn replace_dir<E>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
    io: impl Fn(&Path, std::io::Error) -> E,
) -> Result<(), E> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
    let leaf = dir.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let staging = parent.join(format!(".{leaf}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    if let Err(e) = fill(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let old = parent.join(format!(".{leaf}.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| io(dir, e))?;
    }
    if let Err(source) = std::fs::rename(&staging, dir) {
        // Put the previous directory back.
        if old.exists() {
            let _ = std::fs::rename(&old, dir);
        }
        let _ = std::fs::remove_dir_all(&staging);
        return Err(io(dir, source));
    }
    // The new directory is complete and in place: removing the previous one
    // is cleanup, and a failure there (left as `.<name>.old-<pid>`) does not
    // make the write fail.
    if old.exists() {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_with_complete_content() {
        let base = std::env::temp_dir().join(format!("memfabric-atomic-{}", std::process::id()));
        let dir = base.join("out");
        let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        replace_dir(&dir, |s| std::fs::write(s.join("a"), "1").map_err(|e| io(s, e)), io).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        // A failing fill leaves the old content and no staging directory.
        let err = replace_dir(&dir, |_| Err("boom".to_string()), io).unwrap_err();
        assert_eq!(err, "boom");
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        let leftovers = std::fs::read_dir(&base).unwrap().count();
        assert_eq!(leftovers, 1, "only the result directory remains");
        // A successful fill replaces it whole.
        replace_dir(&dir, |s| std::fs::write(s.join("b"), "2").map_err(|e| io(s, e)), io).unwrap();
        assert!(!dir.join("a").exists() && dir.join("b").exists());
        let _ = std::fs::remove_dir_all(&base);
    }
}

//! Writing a result or trace folder (`--out`) all or nothing, without ever
//! deleting or moving what memfabric did not write.
//!
//! The rule, for every command that writes a folder (`memfabric run`,
//! `memfabric trace gen`, `memfabric-validator migrate` and `capture`):
//!
//! - the target may be missing (it is created, with its parents) or an empty
//!   folder;
//! - a non-empty target is replaced only if it is a previous memfabric folder
//!   of the **same kind** ([`DirKind`], read from its `manifest.json`: `tool`
//!   `memfabric-sim` or `memfabric-validator`, or `format` `memfabric-trace`)
//!   holding nothing but the files its manifest lists; anything else is
//!   refused ([`OutDirError`], exit code 2). `--force` (`force = true`) lets a
//!   memfabric folder of another kind, or one with extra files, be replaced —
//!   never a folder without a memfabric manifest, a file, a device, a symbolic
//!   link or a mount point;
//! - the content is written into a new hidden sibling
//!   `.<name>.partial-<pid>-<n>` and swapped in with one atomic
//!   `renameat2(RENAME_EXCHANGE)` (or a plain rename when the target does not
//!   exist or is empty); the previous result, now in the staging path, is
//!   then removed;
//! - on every failure path the staging folder, and any parent folder this
//!   call created, are removed; on SIGINT/SIGTERM [`remove_unfinished`] does
//!   the same (the binaries' `interrupt` modules call it).

use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// The name of the manifest that marks a memfabric folder.
pub const MANIFEST: &str = "manifest.json";

/// The manifest `tool` of a calibration report folder.
pub const CALIBRATION_REPORT_TOOL: &str = "memfabric-calibrate";

/// Which kind of folder a command writes; a previous folder is replaced only
/// by one of the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// `memfabric run`: manifest `tool = "memfabric-sim"`.
    SimResult,
    /// `memfabric-validator migrate`: manifest `tool = "memfabric-validator"`.
    ValidatorResult,
    /// `memfabric trace gen`, `memfabric-validator capture`: manifest
    /// `format = "memfabric-trace"`.
    Trace,
    /// `memfabric sweep`, `plan`, `merge`: manifest `tool = "memfabric-sim"`
    /// with a `study` key.
    Study,
    /// `memfabric calibrate --report`: manifest `tool = "memfabric-calibrate"`.
    CalibrationReport,
}

impl DirKind {
    /// Recognises a manifest, or `None` if it is not one of ours.
    pub fn of_manifest(manifest: &serde_json::Value) -> Option<DirKind> {
        let field = |k: &str| manifest.get(k).and_then(|v| v.as_str());
        match (field("tool"), field("format")) {
            (Some("memfabric-sim"), _) if manifest.get("study").is_some() => Some(DirKind::Study),
            (Some("memfabric-sim"), _) => Some(DirKind::SimResult),
            (Some("memfabric-validator"), _) => Some(DirKind::ValidatorResult),
            (Some(CALIBRATION_REPORT_TOOL), _) => Some(DirKind::CalibrationReport),
            (_, Some(crate::trace::FORMAT_NAME)) => Some(DirKind::Trace),
            _ => None,
        }
    }

    /// How the kind reads in messages.
    pub fn describe(self) -> &'static str {
        match self {
            DirKind::SimResult => "a memfabric run result",
            DirKind::ValidatorResult => "a memfabric-validator result",
            DirKind::Trace => "a memfabric trace",
            DirKind::Study => "a memfabric study result",
            DirKind::CalibrationReport => "a memfabric calibration report",
        }
    }

    /// The files a folder of this kind holds, from its manifest.
    fn files(self, manifest: &serde_json::Value) -> Vec<String> {
        match self {
            DirKind::Trace => {
                [crate::trace::MANIFEST_FILE, crate::trace::SNAPSHOT_FILE, crate::trace::EPOCHS_FILE].map(String::from).to_vec()
            }
            DirKind::SimResult | DirKind::ValidatorResult | DirKind::Study | DirKind::CalibrationReport => {
                let mut files: Vec<String> = manifest
                    .get("files")
                    .and_then(|f| f.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                files.push(MANIFEST.to_string());
                files
            }
        }
    }
}

/// `--out` names something that must not be replaced, or the write failed.
#[derive(Debug, thiserror::Error)]
pub enum OutDirError {
    /// The path does not end in a folder name.
    #[error("{path}: --out must end in a folder name, not '.', '..' or '/'")]
    NoName {
        /// As given.
        path: PathBuf,
    },
    /// A file, device, FIFO or socket: never replaced.
    #[error("{path}: is {what}, not a folder; it is never replaced (not even with --force)")]
    NotAFolder {
        /// As given.
        path: PathBuf,
        /// "a file", "a device", ...
        what: &'static str,
    },
    /// A symbolic link: never replaced.
    #[error("{path}: is a symbolic link; give the folder it points to, or a new name")]
    Symlink {
        /// As given.
        path: PathBuf,
    },
    /// A mount point cannot be renamed.
    #[error("{path}: is a mount point, which cannot be replaced; give a folder inside it")]
    MountPoint {
        /// As given.
        path: PathBuf,
    },
    /// A non-empty folder without a memfabric manifest.
    #[error("{path}: is a non-empty folder that is not a memfabric result (no memfabric {MANIFEST}); give a new or empty folder")]
    Foreign {
        /// As given.
        path: PathBuf,
    },
    /// A memfabric folder of another kind.
    #[error("{path}: holds {found}, not {expected}; give another folder, or pass --force to replace it")]
    OtherKind {
        /// As given.
        path: PathBuf,
        /// What is there.
        found: &'static str,
        /// What the command writes.
        expected: &'static str,
    },
    /// A memfabric folder with files its manifest does not list.
    #[error("{path}: holds {entry:?}, which memfabric did not write there; move it away, or pass --force to replace the folder")]
    ExtraFile {
        /// As given.
        path: PathBuf,
        /// The first such entry, relative to the folder.
        entry: String,
    },
    /// A single-file `--out` names an existing file that is not an earlier
    /// output of the same command, or something that is not a regular file.
    #[error("{path}: exists and is not {expected}; it is never replaced: give a new file name")]
    NotOurFile {
        /// As given.
        path: PathBuf,
        /// What the command writes ("a memfabric CPU profile").
        expected: &'static str,
    },
    /// A filesystem operation failed.
    #[error("{path}: cannot {action}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl OutDirError {
    /// Whether this is a refusal of the user's `--out` (bad input, exit code 2)
    /// rather than a failure of the system.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, OutDirError::Io { .. })
    }
}

/// Whether an error (or anything in its chain) is a refusal of `--out`, for
/// the binaries' exit codes (2 for bad input).
pub fn is_refusal(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let out = c
            .downcast_ref::<OutDirError>()
            .or_else(|| match c.downcast_ref::<crate::tables::OutputError>() {
                Some(crate::tables::OutputError::Out(o)) => Some(o),
                _ => None,
            })
            .or_else(|| match c.downcast_ref::<crate::trace::TraceError>() {
                Some(crate::trace::TraceError::Out(o)) => Some(o),
                _ => None,
            });
        out.is_some_and(OutDirError::is_refusal)
    })
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> OutDirError + 'a {
    move |source| OutDirError::Io { path: path.to_path_buf(), action, source }
}

/// What is at the target now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Nothing: the staging folder is renamed into place.
    Missing,
    /// An empty folder: a rename replaces it.
    Empty,
    /// A memfabric folder that may be replaced.
    Replaceable,
}

/// Checks that `dir` may be written as `kind` (see the module docs), without
/// changing anything: commands call it before their work so that a refusal
/// costs nothing.
pub fn check_target(dir: &Path, kind: DirKind, force: bool) -> Result<(), OutDirError> {
    inspect(dir, kind, force).map(|_| ())
}

/// `dir` without trailing slashes or `.` components, if its last part names
/// a folder (not `.`, `..` or `/`, which cannot be renamed).
fn normalized(dir: &Path) -> Result<PathBuf, OutDirError> {
    use std::os::unix::ffi::OsStrExt;
    let raw = dir.as_os_str().as_bytes();
    let end = raw.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
    let last = raw[..end].rsplit(|&b| b == b'/').next().unwrap_or_default();
    if matches!(last, b"" | b"." | b"..") || !matches!(dir.components().next_back(), Some(Component::Normal(_))) {
        return Err(OutDirError::NoName { path: dir.into() });
    }
    Ok(dir.components().collect())
}

fn inspect(dir: &Path, kind: DirKind, force: bool) -> Result<Existing, OutDirError> {
    let dir = &normalized(dir)?;
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Missing),
        Err(e) => return Err(io(dir, "inspect")(e)),
    };
    let t = meta.file_type();
    if t.is_symlink() {
        return Err(OutDirError::Symlink { path: dir.into() });
    }
    if !t.is_dir() {
        use std::os::unix::fs::FileTypeExt;
        let what = if t.is_file() {
            "a file"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_fifo() {
            "a FIFO"
        } else {
            "not a folder"
        };
        return Err(OutDirError::NotAFolder { path: dir.into(), what });
    }
    {
        use std::os::unix::fs::MetadataExt;
        let parent = parent_of(dir);
        let parent_meta = std::fs::metadata(&parent).map_err(io(&parent, "inspect"))?;
        if parent_meta.dev() != meta.dev() {
            return Err(OutDirError::MountPoint { path: dir.into() });
        }
    }
    if std::fs::read_dir(dir).map_err(io(dir, "list"))?.next().is_none() {
        return Ok(Existing::Empty);
    }
    let manifest = crate::input::read_bytes(&dir.join(MANIFEST), crate::input::TRACE_MANIFEST_BYTES_MAX, "a manifest")
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some((found, manifest)) = manifest.and_then(|m| DirKind::of_manifest(&m).map(|k| (k, m))) else {
        return Err(OutDirError::Foreign { path: dir.into() });
    };
    if force {
        return Ok(Existing::Replaceable);
    }
    if found != kind {
        return Err(OutDirError::OtherKind { path: dir.into(), found: found.describe(), expected: kind.describe() });
    }
    let listed = found.files(&manifest);
    if let Some(entry) = first_unlisted(dir, Path::new(""), &listed).map_err(io(dir, "list"))? {
        return Err(OutDirError::ExtraFile { path: dir.into(), entry });
    }
    Ok(Existing::Replaceable)
}

/// The first entry under `dir/rel` (depth first, by name) that is neither a
/// listed regular file nor a folder on the way to one; a listed entry ending
/// in `/` (a study's `tables/<hash>/`) covers its whole folder.
fn first_unlisted(dir: &Path, rel: &Path, listed: &[String]) -> std::io::Result<Option<String>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let name = r.to_string_lossy().into_owned();
        let t = e.file_type()?;
        if t.is_file() && listed.contains(&name) {
            continue;
        }
        if t.is_dir() && listed.contains(&format!("{name}/")) {
            continue;
        }
        if t.is_dir() && listed.iter().any(|l| l.starts_with(&format!("{name}/"))) {
            if let Some(found) = first_unlisted(dir, &r, listed)? {
                return Ok(Some(found));
            }
            continue;
        }
        return Ok(Some(name));
    }
    Ok(None)
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// What an unfinished write must remove if it is abandoned: its staging
/// folder, then the parents it created (deepest first, only if empty).
#[derive(Debug, Clone)]
struct Unfinished {
    staging: PathBuf,
    created_parents: Vec<PathBuf>,
}

impl Unfinished {
    fn remove(&self) {
        // A writer may still be adding files while this runs (on a signal),
        // but it never re-creates the staging folder itself, so a few passes
        // suffice.
        for _ in 0..5 {
            match std::fs::remove_dir_all(&self.staging) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => continue,
                _ => break,
            }
        }
        for p in &self.created_parents {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// Writes in progress, for [`remove_unfinished`]. The lock is also held while
/// a finished folder is swapped in, so a signal either removes the staging
/// folder or finds the swap done.
static UNFINISHED: Mutex<Vec<Unfinished>> = Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<Unfinished>> {
    UNFINISHED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes the staging folders of every write in progress (and the parents
/// they created) and returns their paths; for a signal handler thread that
/// then ends the process.
pub fn remove_unfinished() -> Vec<PathBuf> {
    let mut list = unfinished();
    let removed = list.iter().map(|u| u.staging.clone()).collect();
    for u in list.drain(..) {
        u.remove();
    }
    removed
}

/// Creates the missing ancestors of `dir` and returns them, deepest first.
fn create_parents(parent: &Path) -> Result<Vec<PathBuf>, OutDirError> {
    let mut missing = Vec::new();
    let mut p = parent.to_path_buf();
    while !p.as_os_str().is_empty() && std::fs::symlink_metadata(&p).is_err() {
        missing.push(p.clone());
        match p.parent() {
            Some(q) => p = q.to_path_buf(),
            None => break,
        }
    }
    let mut created = Vec::new();
    for m in missing.iter().rev() {
        match std::fs::create_dir(m) {
            Ok(()) => created.insert(0, m.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                for c in &created {
                    let _ = std::fs::remove_dir(c);
                }
                return Err(io(m, "create")(e));
            }
        }
    }
    Ok(created)
}

/// Creates a fresh staging folder next to `dir` (never reusing one).
fn create_staging(parent: &Path, leaf: &str) -> Result<PathBuf, OutDirError> {
    for n in 0u32.. {
        let staging = parent.join(format!(".{leaf}.partial-{}-{n}", std::process::id()));
        match std::fs::create_dir(&staging) {
            Ok(()) => return Ok(staging),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => continue,
            Err(e) => return Err(io(&staging, "create")(e)),
        }
    }
    unreachable!("the loop returns")
}

/// Fills a new staging folder with `fill`, then swaps it in as `dir` (see
/// the module docs for which targets are refused). On any failure nothing
/// this call created is left and `dir` is unchanged.
pub fn replace_dir<E: From<OutDirError>>(
    dir: &Path,
    kind: DirKind,
    force: bool,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    inspect(dir, kind, force)?;
    let dir = &normalized(dir)?;
    let parent = parent_of(dir);
    let leaf = dir.file_name().expect("inspect checked the name").to_string_lossy().into_owned();
    let created_parents = create_parents(&parent)?;
    let staging = match create_staging(&parent, &leaf) {
        Ok(s) => s,
        Err(e) => {
            Unfinished { staging: PathBuf::new(), created_parents }.remove();
            return Err(e.into());
        }
    };
    let job = Unfinished { staging: staging.clone(), created_parents };
    unfinished().push(job.clone());
    let forget = |list: &mut Vec<Unfinished>| list.retain(|u| u.staging != job.staging);
    if let Err(e) = fill(&staging) {
        let mut list = unfinished();
        forget(&mut list);
        job.remove();
        return Err(e);
    }
    let mut list = unfinished();
    forget(&mut list);
    // The target may have changed while the content was written.
    let swapped = inspect(dir, kind, force).and_then(|existing| swap_in(&staging, dir, existing));
    match swapped {
        Ok(Some(previous)) => {
            // The new folder is in place; removing the previous one (now at
            // the staging path) is cleanup and cannot fail the write.
            let _ = std::fs::remove_dir_all(previous);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            job.remove();
            Err(e.into())
        }
    }
}

/// Moves `staging` into place as `dir`; returns where the previous content
/// went, if there was any to remove.
fn swap_in(staging: &Path, dir: &Path, existing: Existing) -> Result<Option<PathBuf>, OutDirError> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match existing {
        Existing::Missing => {
            let action = "rename the finished folder into place";
            match renameat_with(CWD, staging, CWD, dir, RenameFlags::NOREPLACE) {
                Ok(()) => {}
                // A filesystem without RENAME_NOREPLACE.
                Err(rustix::io::Errno::INVAL) => std::fs::rename(staging, dir).map_err(io(dir, action))?,
                Err(e) => return Err(io(dir, action)(e.into())),
            }
            Ok(None)
        }
        // rename(2) replaces an empty folder atomically.
        Existing::Empty => {
            std::fs::rename(staging, dir).map_err(io(dir, "rename the finished folder into place"))?;
            Ok(None)
        }
        Existing::Replaceable => match renameat_with(CWD, staging, CWD, dir, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(Some(staging.to_path_buf())),
            // A filesystem without RENAME_EXCHANGE: move the previous result
            // aside, rename, and put it back if the rename fails.
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                let aside = PathBuf::from(format!("{}.old", staging.display()));
                std::fs::rename(dir, &aside).map_err(io(dir, "move the previous result aside"))?;
                if let Err(e) = std::fs::rename(staging, dir) {
                    let _ = std::fs::rename(&aside, dir);
                    return Err(io(dir, "rename the finished folder into place")(e));
                }
                Ok(Some(aside))
            }
            Err(e) => Err(io(dir, "swap the finished folder into place")(e.into())),
        },
    }
}

/// Checks, without changing anything, that [`replace_file`] may write `path`.
pub fn check_file_target(path: &Path, marker: &str, expected: &'static str) -> Result<(), OutDirError> {
    let path = &normalized(path)?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, "inspect")(e)),
        Ok(meta) => {
            let ours = meta.file_type().is_file()
                && crate::input::read_bytes(path, crate::input::PROFILE_BYTES_MAX, expected)
                    .is_ok_and(|b| b.starts_with(marker.as_bytes()));
            if ours {
                Ok(())
            } else {
                Err(OutDirError::NotOurFile { path: path.clone(), expected })
            }
        }
    }
}

/// Writes one file (e.g. `memfabric profile --out`) under the same rule as
/// a folder: a missing path is created; an existing one is replaced only if
/// it is a regular file whose text starts with `marker` (an earlier output of
/// the same command, `expected` in messages). The content goes to a hidden
/// sibling first and is renamed into place, so the file is never
/// half-written; on failure the sibling is removed.
pub fn replace_file(path: &Path, marker: &str, expected: &'static str, contents: &[u8]) -> Result<(), OutDirError> {
    check_file_target(path, marker, expected)?;
    let path = &normalized(path)?;
    let parent = parent_of(path);
    let leaf = path.file_name().expect("normalized has a name").to_string_lossy().into_owned();
    let created_parents = create_parents(&parent)?;
    let mut n = 0u32;
    let (staging, mut file) = loop {
        let staging = parent.join(format!(".{leaf}.partial-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&staging) {
            Ok(f) => break (staging, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
            Err(e) => {
                Unfinished { staging: PathBuf::new(), created_parents }.remove();
                return Err(io(&staging, "create")(e));
            }
        }
    };
    use std::io::Write;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io(&staging, "write"))
        .and_then(|()| std::fs::rename(&staging, path).map_err(io(path, "rename the finished file into place")));
    if written.is_err() {
        let _ = std::fs::remove_file(&staging);
        for p in &created_parents {
            let _ = std::fs::remove_dir(p);
        }
    }
    written
}

#[cfg(test)]
mod tests;

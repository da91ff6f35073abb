//! Reading the files the simulator is given (scenarios, CPU profiles, trace
//! manifests and tables): every such read goes through this module, which
//! refuses what is not a regular file (a FIFO, a device such as `/dev/zero`,
//! a folder) and anything larger than a cap chosen per kind of file, before
//! reading it. A read never grows past its cap, even if the file grows while
//! it is read.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest scenario file read: 64 MiB. Most scenarios expand hosts and VMs
/// with `count`, but a fabric exported from an inventory lists them: 100,000
/// `[[vms]]` entries of about 200 bytes are 20 MB, and the loader peaks at
/// about 4.4 times the file (docs/development.md), so a file at the cap
/// loads in under 300 MiB.
pub const SCENARIO_BYTES_MAX: u64 = 64 << 20;
/// Largest CPU-cost profile read: 1 MiB (`profiles/default.toml` is ~2 KiB).
pub const PROFILE_BYTES_MAX: u64 = 1 << 20;
/// Largest trace manifest (JSON) read: 16 MiB.
pub const TRACE_MANIFEST_BYTES_MAX: u64 = 16 << 20;
/// Largest trace table (Parquet) read: 4 GiB. A table is decoded whole into
/// memory; 4 GiB of Parquet is well beyond the traces of a 1 TiB guest
/// (the simulator's trace generator caps generated memory at 64 GiB).
pub const TRACE_TABLE_BYTES_MAX: u64 = 4 << 30;

/// A file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Opening or reading failed (not found, permission, ...).
    #[error("{path}: cannot read")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is a folder, a device, a FIFO or a socket.
    #[error("{path}: is {what}, not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// "a folder", "a device", ...
        what: &'static str,
    },
    /// It is larger than the cap for its kind.
    #[error("{path}: is larger than {cap_bytes} bytes, the most read for {kind}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        cap_bytes: u64,
        /// What the file was read as.
        kind: &'static str,
    },
    /// Text that is not UTF-8.
    #[error("{path}: is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
}

impl InputError {
    /// Whether the file simply does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, InputError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn kind_of(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Opens `path` for reading if it is a regular file of at most `cap_bytes`;
/// `kind` names what it is read as in the error ("a scenario"). The returned
/// reader stops at `cap_bytes + 1`, so a file that grows is still caught by
/// [`read_bytes`].
pub fn open(path: &Path, cap_bytes: u64, kind: &'static str) -> Result<std::io::Take<std::fs::File>, InputError> {
    let io = |source| InputError::Io { path: path.to_path_buf(), source };
    // Open without blocking on a FIFO, then look at what was opened (not at
    // the path, which could change in between).
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if let Some(what) = kind_of(&meta) {
        return Err(InputError::NotAFile { path: path.to_path_buf(), what });
    }
    if meta.len() > cap_bytes {
        return Err(InputError::TooLarge { path: path.to_path_buf(), cap_bytes, kind });
    }
    Ok(file.take(cap_bytes + 1))
}

/// Reads a whole file of at most `cap_bytes` (see [`open`]).
pub fn read_bytes(path: &Path, cap_bytes: u64, kind: &'static str) -> Result<Vec<u8>, InputError> {
    let mut reader = open(path, cap_bytes, kind)?;
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(|source| InputError::Io { path: path.to_path_buf(), source })?;
    if bytes.len() as u64 > cap_bytes {
        return Err(InputError::TooLarge { path: path.to_path_buf(), cap_bytes, kind });
    }
    Ok(bytes)
}

/// Reads a whole UTF-8 text file of at most `cap_bytes` (see [`open`]).
pub fn read_text(path: &Path, cap_bytes: u64, kind: &'static str) -> Result<String, InputError> {
    let bytes = read_bytes(path, cap_bytes, kind)?;
    String::from_utf8(bytes)
        .map_err(|e| InputError::NotUtf8 { path: path.to_path_buf(), offset: e.utf8_error().valid_up_to() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("memfabric-input-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_a_small_file_and_refuses_a_large_one() {
        let dir = scratch("cap");
        let f = dir.join("a.toml");
        std::fs::write(&f, "x = 1\n").unwrap();
        assert_eq!(read_text(&f, 6, "a test").unwrap(), "x = 1\n");
        let e = read_text(&f, 5, "a test").unwrap_err();
        assert!(matches!(e, InputError::TooLarge { cap_bytes: 5, .. }), "{e}");
        assert!(e.to_string().contains("larger than 5 bytes"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_devices_folders_and_fifos() {
        for (path, what) in [("/dev/zero", "a device"), ("/dev/urandom", "a device"), ("/", "a folder")] {
            match read_text(Path::new(path), 1 << 20, "a test") {
                Err(InputError::NotAFile { what: w, .. }) => assert_eq!(w, what, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        let dir = scratch("fifo");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().map(|s| s.success()).unwrap_or(false);
        if made {
            // Opening a FIFO with no writer would block without O_NONBLOCK.
            assert!(matches!(read_text(&fifo, 10, "a test"), Err(InputError::NotAFile { what: "a FIFO", .. })));
        } else {
            eprintln!("skipping the FIFO case: mkfifo is not available");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_invalid_utf8_and_missing_files() {
        let dir = scratch("utf8");
        let f = dir.join("bad");
        std::fs::write(&f, b"ok\xff").unwrap();
        assert!(matches!(read_text(&f, 100, "a test"), Err(InputError::NotUtf8 { offset: 2, .. })));
        assert!(read_text(&dir.join("missing"), 100, "a test").unwrap_err().is_not_found());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

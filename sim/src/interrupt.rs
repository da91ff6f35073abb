//! Ctrl-C (SIGINT) and SIGTERM for the `memfabric` commands that write a
//! folder: a watcher thread (signal-hook's self-pipe, so the handler itself
//! only writes a byte) removes every unfinished staging folder
//! ([`crate::atomic_dir::remove_unfinished`]), says so on stderr and ends the
//! process with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as
//! a shell does for a process killed by the signal. A finished result that
//! was already swapped into place stays.
//!
//! The validator has its own flag-based handler (`validator/src/interrupt.rs`)
//! because its commands must also stop child processes and tear down links;
//! it calls the same `remove_unfinished` through [`crate::atomic_dir`].

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Installs the watcher; call once, early in `main`.
pub fn install() -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("memfabric-signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let removed = crate::atomic_dir::remove_unfinished();
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if removed.is_empty() {
                eprintln!("interrupted by {name}");
            } else {
                for r in &removed {
                    eprintln!("interrupted by {name}: removed the unfinished folder {}", r.display());
                }
            }
            std::process::exit(128 + sig);
        }
    })?;
    Ok(())
}

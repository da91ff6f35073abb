//! Ctrl-C (SIGINT) and SIGTERM for the `memfabric` commands that write a
//! folder: a watcher thread (signal-hook's self-pipe, so the handler itself
//! only writes a byte) removes every unfinished staging folder
//! ([`crate::atomic_dir::remove_unfinished`]), says so on stderr and ends the
//! process with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as
//! a shell does for a process killed by the signal. A finished result that
//! was already swapped into place stays. `memfabric run --time-limit` stops
//! the same way after a wall-clock limit (exit 124). Either says how far the
//! simulation got ([`crate::progress`]).
//!
//! The validator has its own flag-based handler (`validator/src/interrupt.rs`)
//! because its commands must also stop child processes and tear down links;
//! it calls the same `remove_unfinished` through [`crate::atomic_dir`].

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Exit code of a run stopped by `--time-limit` (as `timeout(1)` exits).
pub const TIME_LIMIT_EXIT_CODE: i32 = 124;

/// Removes the unfinished folders, says why and how far the simulation got
/// ([`crate::progress`]), and ends the process with `code`.
fn stop(why: &str, code: i32) -> ! {
    let removed = crate::atomic_dir::remove_unfinished();
    if removed.is_empty() {
        eprintln!("{why}");
    } else {
        for r in &removed {
            eprintln!("{why}: removed the unfinished folder {}", r.display());
        }
    }
    if let Some(s) = crate::progress::snapshot() {
        eprintln!("stopped at {s}");
    }
    std::process::exit(code);
}

/// Installs the watcher; call once, early in `main`.
pub fn install() -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("memfabric-signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            stop(&format!("interrupted by {name}"), 128 + sig);
        }
    })?;
    Ok(())
}

/// Stops the process after `limit` of wall-clock time as Ctrl-C does
/// (unfinished folders removed, how far it got on stderr), with exit code
/// [`TIME_LIMIT_EXIT_CODE`]. The simulation never reads this clock.
pub fn stop_after(limit: std::time::Duration) -> std::io::Result<()> {
    std::thread::Builder::new().name("memfabric-time-limit".into()).spawn(move || {
        std::thread::sleep(limit);
        stop(&format!("stopped by --time-limit {:.3} s", limit.as_secs_f64()), TIME_LIMIT_EXIT_CODE);
    })?;
    Ok(())
}

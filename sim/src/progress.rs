//! How far the running simulation has got, for the person watching it: the
//! engine publishes its simulated time, events and migrations into a few
//! process-wide counters (only when a command has switched reporting on,
//! so sweeps that run many simulations at once are not mixed up), and
//! `memfabric run` shows them on stderr while it runs when stderr is a
//! terminal, and in its message when Ctrl-C or `--time-limit` stops it.
//!
//! The model writes the counters and never reads them, nor the wall clock:
//! results do not depend on whether anyone watches.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static SIMULATED_NS: AtomicU64 = AtomicU64::new(0);
static EVENTS: AtomicU64 = AtomicU64::new(0);
static MIGRATIONS_STARTED: AtomicU64 = AtomicU64::new(0);
static MIGRATIONS_ENDED: AtomicU64 = AtomicU64::new(0);

/// The engine publishes every this many events (and at the end): often
/// enough that a run stopped early on a slow or busy machine has something
/// to say (a debug build with 2,000 VMs checks its invariants after every
/// event and may do only a few thousand events a second); it costs four
/// relaxed stores per 256 events.
pub const PUBLISH_EVERY_EVENTS: u64 = 256;

/// Switches publishing on for this process (one simulation at a time).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether publishing is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where a simulation has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Simulated time reached, ns.
    pub simulated_ns: u64,
    /// Events processed.
    pub events: u64,
    /// Migrations started so far.
    pub migrations_started: u64,
    /// Migrations ended so far (any outcome).
    pub migrations_ended: u64,
}

impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulated time {:.3} s, {} of {} migrations started so far ended, {} events",
            self.simulated_ns as f64 / 1e9,
            self.migrations_ended,
            self.migrations_started,
            self.events
        )
    }
}

/// Publishes `s` (a no-op unless [`enable`]d).
pub fn publish(s: Snapshot) {
    if enabled() {
        SIMULATED_NS.store(s.simulated_ns, Ordering::Relaxed);
        EVENTS.store(s.events, Ordering::Relaxed);
        MIGRATIONS_STARTED.store(s.migrations_started, Ordering::Relaxed);
        MIGRATIONS_ENDED.store(s.migrations_ended, Ordering::Relaxed);
    }
}

/// The last published snapshot (None when publishing is off or nothing was
/// published yet).
pub fn snapshot() -> Option<Snapshot> {
    let s = Snapshot {
        simulated_ns: SIMULATED_NS.load(Ordering::Relaxed),
        events: EVENTS.load(Ordering::Relaxed),
        migrations_started: MIGRATIONS_STARTED.load(Ordering::Relaxed),
        migrations_ended: MIGRATIONS_ENDED.load(Ordering::Relaxed),
    };
    (enabled() && s.events > 0).then_some(s)
}

/// Shows the progress on stderr (a spinner line: simulated time,
/// migrations, events per second) until the returned guard is dropped.
/// Draws nothing when stderr is not a terminal.
pub fn show_on_stderr() -> ProgressLine {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() { indicatif::ProgressBar::new_spinner() } else { indicatif::ProgressBar::hidden() };
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let thread = (!bar.is_hidden()).then(|| {
        let (bar, stop) = (bar.clone(), stop.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if let Some(s) = snapshot() {
                    let secs = t0.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!("{s} ({:.0} events/s)", s.events as f64 / secs));
                    bar.tick();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    });
    ProgressLine { bar, stop, thread }
}

/// The progress line of [`show_on_stderr`]; dropping it clears the line.
pub struct ProgressLine {
    bar: indicatif::ProgressBar,
    stop: std::sync::Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_as_a_sentence() {
        let s = Snapshot { simulated_ns: 1_500_000_000, events: 42, migrations_started: 10, migrations_ended: 3 };
        assert_eq!(s.to_string(), "simulated time 1.500 s, 3 of 10 migrations started so far ended, 42 events");
    }
}

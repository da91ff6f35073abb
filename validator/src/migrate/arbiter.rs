//! The handover arbiter: settles who runs the guest when the source cannot
//! tell.
//!
//! Once the source has sent the vCPU state it may not resume its guest on
//! its own: the destination may already run it. If the destination's
//! `Resumed` then never arrives (the link died, the frame was corrupted,
//! the destination died), the source alone cannot know which. The
//! orchestrator can: it started the destination, which prints
//! [`RESUMED_LINE`] on stdout once its vCPU runs and before it confirms to
//! the source. So the orchestrator answers the source's question (on the
//! source's stdin) as soon as it knows:
//!
//! - the destination announced its resume: [`Verdict::Discard`];
//! - the destination exited without announcing it: [`Verdict::Resume`] (a
//!   destination killed between starting its vCPU and printing took that
//!   run with it, so the source's copy is the only one).
//!
//! The source asks only when the handover's end is unknown; otherwise the
//! answer is never read. Without an answer (the orchestrator died: stdin
//! closed) the source leaves its guest paused, as before.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::dest::RESUMED_LINE;
use super::source::Verdict;

/// Watches the destination's announcements and answers the source.
#[derive(Debug)]
pub struct Arbiter {
    announced: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    source_stdin: Option<ChildStdin>,
    /// The verdict given, once given.
    pub verdict: Option<Verdict>,
}

impl Arbiter {
    /// Reads the destination's stdout (after its `listening on` line) on a
    /// thread; answers on `source_stdin`.
    pub fn new(dest_stdout: BufReader<ChildStdout>, source_stdin: ChildStdin) -> Arbiter {
        let announced = Arc::new(AtomicBool::new(false));
        let a = announced.clone();
        let reader = std::thread::spawn(move || {
            for line in dest_stdout.lines() {
                match line {
                    Ok(l) if l.trim() == RESUMED_LINE => a.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Arbiter { announced, reader: Some(reader), source_stdin: Some(source_stdin), verdict: None }
    }

    /// Gives the verdict once it is known; call while waiting for the source.
    pub fn poll(&mut self, dest: &mut Child) -> std::io::Result<()> {
        if self.verdict.is_some() {
            return Ok(());
        }
        let verdict = if self.announced.load(Ordering::SeqCst) {
            Some(Verdict::Discard)
        } else if dest.try_wait()?.is_some() {
            // Its stdout is closed: read what it said to the end first.
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
            Some(if self.announced.load(Ordering::SeqCst) { Verdict::Discard } else { Verdict::Resume })
        } else {
            None
        };
        if let Some(v) = verdict {
            self.verdict = Some(v);
            if let Some(mut stdin) = self.source_stdin.take() {
                // The source may have exited without asking: nothing to tell then.
                let _ = writeln!(stdin, "{}", v.line()).and_then(|_| stdin.flush());
            }
        }
        Ok(())
    }
}

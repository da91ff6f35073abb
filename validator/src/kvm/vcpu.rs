//! The vCPU thread: runs KVM_RUN, serves the guest's port I/O, idles the
//! vCPU when the guest asks, and pauses and resumes it on command.
//!
//! Pausing follows KVM's contract for a clean stop: the controller sends a
//! real-time signal whose handler sets `immediate_exit` in the thread's
//! `kvm_run`, so KVM_RUN returns EINTR at once (or right away on the next
//! entry if the thread was outside it); one more KVM_RUN with
//! `immediate_exit` set completes any pending port I/O; only then are the
//! registers read. The pause instant is taken when the vCPU can no longer
//! run guest code, so downtime is measured from there.
//!
//! A throttle ([`super::throttle`]) makes the thread sleep a share of each
//! time slice between KVM_RUNs; a ticker thread kicks the vCPU out every
//! slice while the throttle is engaged.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::throttle::{SliceClock, Throttle, ThrottleRangeError, THROTTLE_TIMESLICE};
use super::{GuestRam, KvmError, VcpuState};
use crate::guest::abi::*;

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    KVM_RUN.with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: the pointer is this thread's own kvm_run mapping, set
            // by the vCPU thread for as long as it owns the VcpuFd; a byte
            // store is async-signal-safe.
            unsafe { std::ptr::write_volatile(&mut (*run).immediate_exit, 1) };
        }
    });
}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .expect("cannot install the vCPU kick signal handler");
    });
}

/// What the guest has reported, shared between the vCPU thread and the VMM.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU64,
    writes: AtomicU64,
    changed_writes: AtomicU64,
    checksum: AtomicU64,
    filled_pages: AtomicU64,
    verified_pages: AtomicU64,
    verify_errors: AtomicU64,
    reports: AtomicU64,
    exits: AtomicU64,
    idle_ns: AtomicU64,
    /// Throttle sleeps: total of those ended, and the start of the one in
    /// progress (so that a long sleep counts as it goes).
    throttled: Mutex<ThrottledTime>,
    first_bad_page: AtomicU64,
}

/// A copy of [`Progress`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ProgressSnapshot {
    /// Guest phase (`GUEST_PHASE_*`).
    pub phase: u64,
    /// Page writes since dirtying started.
    pub writes: u64,
    /// Writes that changed content.
    pub changed_writes: u64,
    /// The guest's hash chain over its writes.
    pub checksum: u64,
    /// Pages filled.
    pub filled_pages: u64,
    /// Pages the guest re-checked.
    pub verified_pages: u64,
    /// Pages that failed the guest's check.
    pub verify_errors: u64,
    /// Progress reports received.
    pub reports: u64,
    /// VM exits handled.
    pub exits: u64,
    /// Time the vCPU spent idle at the guest's request, ns.
    pub idle_ns: u64,
    /// Time the vCPU slept because of the VMM's throttle, ns (a sleep in
    /// progress included).
    #[serde(default)]
    pub throttled_ns: u64,
}

/// Time slept under the throttle.
#[derive(Debug, Default)]
struct ThrottledTime {
    ended_ns: u64,
    since: Option<Instant>,
}

impl Progress {
    /// The current values.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Acquire);
        ProgressSnapshot {
            phase: l(&self.phase),
            writes: l(&self.writes),
            changed_writes: l(&self.changed_writes),
            checksum: l(&self.checksum),
            filled_pages: l(&self.filled_pages),
            verified_pages: l(&self.verified_pages),
            verify_errors: l(&self.verify_errors),
            reports: l(&self.reports),
            exits: l(&self.exits),
            idle_ns: l(&self.idle_ns),
            throttled_ns: {
                let t = self.throttled.lock().expect("throttled lock");
                t.ended_ns + t.since.map_or(0, |s| s.elapsed().as_nanos() as u64)
            },
        }
    }

    fn throttle_sleep_starts(&self, at: Instant) {
        self.throttled.lock().expect("throttled lock").since = Some(at);
    }

    fn throttle_sleep_ends(&self) {
        let mut t = self.throttled.lock().expect("throttled lock");
        if let Some(s) = t.since.take() {
            t.ended_ns += s.elapsed().as_nanos() as u64;
        }
    }

    fn update_from(&self, ram: &GuestRam) {
        let s = read_guest_status(ram);
        if s.magic != GUEST_STATUS_MAGIC {
            return;
        }
        let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Release);
        st(&self.writes, s.writes);
        st(&self.changed_writes, s.changed_writes);
        st(&self.checksum, s.checksum);
        st(&self.filled_pages, s.filled_pages);
        st(&self.verified_pages, s.verified_pages);
        st(&self.verify_errors, s.verify_errors);
        self.reports.fetch_add(1, Ordering::AcqRel);
    }
}

/// The guest's status block as it is in `ram` now.
pub fn read_guest_status(ram: &GuestRam) -> GuestStatus {
    let mut b = [0u8; GuestStatus::SIZE];
    ram.read(GUEST_STATUS_GPA, &mut b);
    GuestStatus::from_bytes(&b)
}

/// Why the guest stopped running on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFailure {
    /// A CPU exception in the guest.
    #[error("guest CPU exception {vector} at rip {rip:#x} (error code {error_code:#x}, cr2 {cr2:#x})")]
    Exception {
        /// Vector.
        vector: u64,
        /// Faulting instruction.
        rip: u64,
        /// Error code (0 if none).
        error_code: u64,
        /// CR2 (page-fault address).
        cr2: u64,
    },
    /// The guest rejected its parameter block.
    #[error("the guest rejected its parameter block (ABI mismatch or invalid workload)")]
    BadParams,
    /// A VM exit the VMM does not handle.
    #[error("unexpected VM exit: {0}")]
    UnexpectedExit(String),
    /// KVM_RUN failed.
    #[error("KVM_RUN failed: {0}")]
    Run(String),
}

/// The vCPU was paused.
#[derive(Debug, Clone)]
pub struct Paused {
    /// When the vCPU stopped being able to run guest code.
    pub at: Instant,
    /// The same instant on CLOCK_MONOTONIC, ns (comparable across processes).
    pub at_monotonic_ns: u64,
    /// Its state at that instant.
    pub state: VcpuState,
    /// What the guest had reported.
    pub progress: ProgressSnapshot,
}

enum Command {
    Pause,
    Resume,
    Stop,
}

enum Event {
    Paused(Box<Result<Paused, String>>),
    /// About to enter KVM_RUN: CLOCK_MONOTONIC ns.
    Started(u64),
}

/// CLOCK_MONOTONIC in nanoseconds: the clock every process on the machine
/// shares (network namespaces do not change it), so a pause at the source
/// and a resume at the destination can be subtracted.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Controls a running vCPU thread.
pub struct VcpuHandle {
    thread: Option<JoinHandle<Result<(), GuestFailure>>>,
    commands: Sender<Command>,
    events: Receiver<Event>,
    progress: Arc<Progress>,
    failure: Arc<Mutex<Option<GuestFailure>>>,
    started_at_ns: u64,
    throttle: Arc<Throttle>,
    /// Kicks the vCPU every time slice while a throttle is engaged.
    ticker: Mutex<Option<Ticker>>,
}

/// The thread that kicks a throttled vCPU out of KVM_RUN every slice.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl std::fmt::Debug for VcpuHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VcpuHandle").field("progress", &self.progress.snapshot()).finish()
    }
}

impl VcpuHandle {
    /// Starts a thread that runs `vcpu` (already set up) on guest memory `ram`.
    pub fn spawn(vcpu: VcpuFd, ram: GuestRam) -> Result<VcpuHandle, KvmError> {
        install_kick_handler();
        let (commands, command_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let failure = Arc::new(Mutex::new(None));
        let throttle = Arc::new(Throttle::default());
        let (p, f, th) = (progress.clone(), failure.clone(), throttle.clone());
        let thread = std::thread::Builder::new()
            .name("vcpu0".into())
            .spawn(move || {
                let r = run_loop(vcpu, ram, &p, &th, command_rx, event_tx);
                if let Err(e) = &r {
                    *f.lock().expect("failure lock") = Some(e.clone());
                }
                r
            })
            .map_err(|e| KvmError::Config(format!("cannot start the vCPU thread: {e}")))?;
        let started_at_ns = match events.recv() {
            Ok(Event::Started(at)) => at,
            _ => monotonic_ns(),
        };
        Ok(VcpuHandle { thread: Some(thread), commands, events, progress, failure, started_at_ns, throttle, ticker: Mutex::new(None) })
    }

    /// When the thread first entered KVM_RUN (CLOCK_MONOTONIC ns).
    pub fn started_at_ns(&self) -> u64 {
        self.started_at_ns
    }

    /// What the guest has reported so far.
    pub fn progress(&self) -> ProgressSnapshot {
        self.progress.snapshot()
    }

    /// Throttles the vCPU to sleep `pct` percent of the time (0: off), as
    /// QEMU's `cpu-throttle-percentage` does; takes effect within a slice.
    pub fn set_throttle(&self, pct: u32) -> Result<(), ThrottleRangeError> {
        self.throttle.set_pct(pct)?;
        let mut ticker = self.ticker.lock().expect("ticker lock");
        if pct > 0 && ticker.is_none() {
            if let Some(t) = &self.thread {
                use std::os::unix::thread::JoinHandleExt;
                let (stop, throttle) = (Arc::new(AtomicBool::new(false)), self.throttle.clone());
                let (s, vcpu_thread) = (stop.clone(), t.as_pthread_t());
                let thread = std::thread::Builder::new()
                    .name("vcpu0-throttle".into())
                    .spawn(move || {
                        while !s.load(Ordering::Acquire) {
                            std::thread::sleep(THROTTLE_TIMESLICE);
                            if throttle.pct() > 0 {
                                // SAFETY: the vCPU thread is alive or still
                                // joinable: the handle joins this ticker
                                // before it joins the vCPU thread.
                                unsafe { libc::pthread_kill(vcpu_thread, kick_signal()) };
                            }
                        }
                    })
                    .expect("cannot start the vCPU throttle thread");
                *ticker = Some(Ticker { stop, thread });
            }
        }
        Ok(())
    }

    /// The throttle in force, percent.
    pub fn throttle_pct(&self) -> u32 {
        self.throttle.pct()
    }

    /// Why the guest stopped, if it did.
    pub fn failure(&self) -> Option<GuestFailure> {
        self.failure.lock().expect("failure lock").clone()
    }

    fn kick(&self) {
        if let Some(t) = &self.thread {
            use std::os::unix::thread::JoinHandleExt;
            // SAFETY: the pthread is alive or a zombie still joinable (we hold
            // its JoinHandle), so its id is valid for pthread_kill.
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
        }
    }

    /// Stops the vCPU and returns its state. Fails if the guest had already
    /// failed.
    pub fn pause(&self) -> Result<Paused, String> {
        if let Some(f) = self.failure() {
            return Err(f.to_string());
        }
        self.commands.send(Command::Pause).map_err(|_| "the vCPU thread has exited".to_string())?;
        self.kick();
        loop {
            match self.events.recv_timeout(Duration::from_secs(5)) {
                Ok(Event::Paused(r)) => return *r,
                Ok(Event::Started(_)) => continue,
                Err(RecvTimeoutError::Timeout) => self.kick(),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failure().map(|f| f.to_string()).unwrap_or_else(|| "the vCPU thread has exited".into()))
                }
            }
        }
    }

    /// Lets a paused vCPU run again; returns when it re-enters the guest
    /// (CLOCK_MONOTONIC ns).
    pub fn resume(&self) -> Result<u64, String> {
        self.commands.send(Command::Resume).map_err(|_| "the vCPU thread has exited".to_string())?;
        match self.events.recv_timeout(Duration::from_secs(5)) {
            Ok(Event::Started(at)) => Ok(at),
            _ => Err("the vCPU did not resume".into()),
        }
    }

    /// Stops the thread for good.
    pub fn stop(mut self) -> Result<(), GuestFailure> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), GuestFailure> {
        if let Some(t) = self.ticker.lock().expect("ticker lock").take() {
            t.stop.store(true, Ordering::Release);
            let _ = t.thread.join();
        }
        let _ = self.commands.send(Command::Stop);
        self.kick();
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err(GuestFailure::Run("the vCPU thread panicked".into()))),
            None => Ok(()),
        }
    }
}

impl Drop for VcpuHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Pauses in the thread: completes pending I/O, reads the state, reports it,
/// then waits for Resume or Stop. Returns false on Stop.
fn pause_here(vcpu: &mut VcpuFd, progress: &Progress, commands: &Receiver<Command>, events: &Sender<Event>) -> bool {
    vcpu.set_kvm_immediate_exit(1);
    let _ = vcpu.run(); // completes pending port I/O, then returns EINTR
    vcpu.set_kvm_immediate_exit(0);
    let (at, at_monotonic_ns) = (Instant::now(), monotonic_ns());
    let report = |vcpu: &VcpuFd| {
        let paused = VcpuState::capture(vcpu)
            .map(|state| Paused { at, at_monotonic_ns, state, progress: progress.snapshot() })
            .map_err(|e| e.to_string());
        let _ = events.send(Event::Paused(Box::new(paused)));
    };
    report(vcpu);
    loop {
        match commands.recv() {
            Ok(Command::Resume) => {
                let _ = events.send(Event::Started(monotonic_ns()));
                return true;
            }
            Ok(Command::Pause) => report(vcpu),
            Ok(Command::Stop) | Err(_) => return false,
        }
    }
}

fn run_loop(
    mut vcpu: VcpuFd,
    ram: GuestRam,
    progress: &Progress,
    throttle: &Throttle,
    commands: Receiver<Command>,
    events: Sender<Event>,
) -> Result<(), GuestFailure> {
    KVM_RUN.with(|p| p.set(vcpu.get_kvm_run() as *mut kvm_run));
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
        }
    }
    let _clear = Clear;
    let _ = events.send(Event::Started(monotonic_ns()));
    let mut idle_for: Option<Duration> = None;
    let mut slice = SliceClock::new(Instant::now());
    loop {
        // Commands arrive while idle (the guest asked to sleep, or the
        // throttle sleeps the vCPU) or after a kick.
        let throttled_for = slice.due(throttle.pct(), Instant::now());
        let command = match (idle_for.take(), throttled_for) {
            (None, None) => commands.try_recv().ok(),
            (idle, throttled) => {
                let t = Instant::now();
                if throttled.is_some() {
                    progress.throttle_sleep_starts(t);
                }
                let r = commands.recv_timeout(idle.unwrap_or_default().max(throttled.unwrap_or_default()));
                if throttled.is_some() {
                    progress.throttle_sleep_ends();
                    slice.restart(Instant::now());
                } else {
                    progress.idle_ns.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                match r {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(Command::Stop),
                }
            }
        };
        match command {
            Some(Command::Pause) => {
                if !pause_here(&mut vcpu, progress, &commands, &events) {
                    return Ok(());
                }
                slice.restart(Instant::now());
                continue;
            }
            Some(Command::Stop) => return Ok(()),
            Some(Command::Resume) | None => {}
        }
        let exit = vcpu.run();
        progress.exits.fetch_add(1, Ordering::Relaxed);
        match exit {
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut v = [0u8; 4];
                v[..data.len().min(4)].copy_from_slice(&data[..data.len().min(4)]);
                let value = u32::from_le_bytes(v);
                match port {
                    PORT_PROGRESS => progress.update_from(&ram),
                    PORT_PHASE => {
                        progress.update_from(&ram);
                        progress.phase.store(value as u64, Ordering::Release);
                        if value == GUEST_PHASE_BAD_PARAMS {
                            return Err(GuestFailure::BadParams);
                        }
                    }
                    PORT_IDLE => {
                        progress.update_from(&ram);
                        idle_for = Some(Duration::from_micros(value.min(1_000_000) as u64));
                    }
                    PORT_VERIFY_FAIL => {
                        progress.update_from(&ram);
                        progress.first_bad_page.compare_exchange(0, value as u64 + 1, Ordering::AcqRel, Ordering::Relaxed).ok();
                    }
                    PORT_EXCEPTION => {
                        let regs = vcpu.get_regs().map_err(|e| GuestFailure::Run(e.to_string()))?;
                        let cr2 = vcpu.get_sregs().map(|s| s.cr2).unwrap_or(0);
                        return Err(GuestFailure::Exception {
                            vector: ram.read_u64(regs.rsp),
                            error_code: ram.read_u64(regs.rsp + 8),
                            rip: ram.read_u64(regs.rsp + 16),
                            cr2,
                        });
                    }
                    other => return Err(GuestFailure::UnexpectedExit(format!("port write {other:#x} = {value:#x}"))),
                }
            }
            Ok(VcpuExit::Intr) => {}
            Ok(other) => return Err(GuestFailure::UnexpectedExit(format!("{other:?}"))),
            Err(e) if e.errno() == libc::EINTR => vcpu.set_kvm_immediate_exit(0),
            Err(e) => return Err(GuestFailure::Run(e.to_string())),
        }
    }
}

//! What a case's supervisor and scheduler wait on instead of timeouts.
//!
//! Two kinds of knowledge replace fixed waits:
//!
//! - **Pulses.** The case's threads [`pulse`](Events::pulse) after anything
//!   the supervisor waits for: an op returned, a thread is about to park or
//!   has woken, a thread finished, the teardown's closes returned. A waiter
//!   reads [`seq`](Events::seq), checks its condition, and sleeps in
//!   [`wait`](Events::wait) only while the sequence is unchanged, so a pulse
//!   between the check and the sleep is never lost: the waiter announces
//!   itself (`waiting`) before it compares `seq` under the lock, the pulser
//!   bumps `seq` before it looks at `waiting` (both `SeqCst`), so at least
//!   one of them sees the other, and a pulser that sees a waiter takes the
//!   lock before notifying.
//! - **The kernel's view of a thread.** A thread blocked where no sync point
//!   says so (a lock wait inside the protocol, Close waiting for the last
//!   reference) tells nobody. The kernel knows: `/proc/self/task/TID/status`
//!   gives its state and its count of voluntary context switches. A thread
//!   that is asleep (`S` or `D`) at two samples [`CONFIRM`] apart with the
//!   same count has slept throughout, i.e. it waits for something; one that
//!   ran, even once, in between, has a higher count, and one that was woken
//!   and waits for a CPU is `R`. [`slept_throughout`] is that test. The
//!   fixed timeouts stay as fallbacks for a kernel without `/proc`, and are
//!   counted when they fire ([`super::CaseTimings`]).

use super::taskfiles::TaskFiles;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Time between the two kernel samples that show a thread slept
/// throughout; also how often a waiter with nothing to wait for looks.
pub const CONFIRM: Duration = Duration::from_micros(300);

/// A case's pulses, and the kernel ids of its threads.
pub(super) struct Events {
    seq: AtomicU64,
    waiting: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    tids: Vec<AtomicI32>,
}

impl Events {
    pub(super) fn new(threads: usize) -> Events {
        Events {
            seq: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            tids: (0..threads).map(|_| AtomicI32::new(0)).collect(),
        }
    }

    /// Record the calling thread as the case's thread `t`.
    pub(super) fn register(&self, t: usize) {
        if let (Some(slot), Some(tid)) = (self.tids.get(t), current_tid()) {
            prepare_sampling(tid);
            slot.store(tid, Ordering::Release);
        }
    }

    /// The kernel id of the case's thread `t`, once it has registered.
    pub(super) fn tid(&self, t: usize) -> Option<i32> {
        let tid = self.tids.get(t)?.load(Ordering::Acquire);
        (tid > 0).then_some(tid)
    }

    pub(super) fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Something the supervisor may be waiting for happened.
    pub(super) fn pulse(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
            self.cv.notify_all();
        }
    }

    /// Sleep until a pulse after `seen` or until `until`.
    pub(super) fn wait(&self, seen: u64, until: Instant) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.seq.load(Ordering::SeqCst) == seen {
            let now = Instant::now();
            if now >= until {
                break;
            }
            g = self
                .cv
                .wait_timeout(g, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(g);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wait until `done()` holds (woken by pulses) or `until`; whether it
    /// holds.
    pub(super) fn wait_for(&self, done: impl Fn() -> bool, until: Instant) -> bool {
        loop {
            let seen = self.seq();
            if done() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            self.wait(seen, until);
        }
    }
}

/// A thread's state as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelSample {
    /// `S` (interruptible sleep) or `D` (uninterruptible).
    pub asleep: bool,
    pub voluntary_switches: u64,
}

/// The CPU time the calling thread has used so far
/// (`CLOCK_THREAD_CPUTIME_ID`), or `None` where that clock is missing.
pub fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live
    // local of that type and touches no other memory.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// How many times the calling thread has blocked so far (its voluntary
/// context switches, `getrusage(RUSAGE_THREAD)`), or `None` where that is
/// missing.
pub fn thread_sleeps() -> Option<u64> {
    // SAFETY: rusage is plain integers, for which all zeroes is a value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage through a pointer to a live local
    // of that type and touches no other memory.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    (rc == 0).then_some(ru.ru_nvcsw as u64)
}

/// The calling thread's kernel id (from `/proc/thread-self`).
pub fn current_tid() -> Option<i32> {
    // The harness's own look at the kernel: never judged, never a switch.
    let _own = crate::intercept::reported();
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

static STATUS_FILES: TaskFiles = TaskFiles::new("status");

fn status_file(tid: i32) -> Option<Arc<std::fs::File>> {
    STATUS_FILES.get(tid)
}

/// Open thread `tid`'s status file ahead of the first look (a case thread
/// does it as it registers, before its ops run).
pub fn prepare_sampling(tid: i32) {
    let _own = crate::intercept::reported();
    let _ = status_file(tid);
    super::runqueue::prepare(tid);
}

/// Close thread `tid`'s status file: the thread has exited (a
/// `threads_exit` case), and a file kept for every thread that ever ran a
/// case would be a descriptor leaked per exit.
pub(super) fn forget_sampling(tid: i32) {
    let _own = crate::intercept::reported();
    STATUS_FILES.forget(tid);
    super::runqueue::forget(tid);
}

fn read_status(tid: i32) -> Option<String> {
    use std::os::unix::fs::FileExt;
    for _ in 0..2 {
        let file = status_file(tid)?;
        let mut buf = vec![0u8; 4096];
        match file.read_at(&mut buf, 0) {
            Ok(n) if n > 0 => {
                buf.truncate(n);
                return String::from_utf8(buf).ok();
            }
            // The thread is gone (its id may be reused): open afresh.
            _ => STATUS_FILES.forget(tid),
        }
    }
    None
}

/// Sample thread `tid` of this process; `None` if `/proc` cannot say.
pub fn sample(tid: i32) -> Option<KernelSample> {
    let _own = crate::intercept::reported();
    let status = read_status(tid)?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let state = field("State:")?;
    let switches = field("voluntary_ctxt_switches:")?.parse().ok()?;
    Some(KernelSample {
        asleep: state.starts_with('S') || state.starts_with('D'),
        voluntary_switches: switches,
    })
}

/// Whether a thread sampled as `before` and later as `after` slept the whole
/// time between (it never ran: the same voluntary switch count).
pub fn slept_throughout(before: KernelSample, after: KernelSample) -> bool {
    before.asleep && after.asleep && before.voluntary_switches == after.voluntary_switches
}

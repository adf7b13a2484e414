//! How long threads waited for a CPU: what the timing rules take off the
//! time they judge.
//!
//! What it measures. For each thread the kernel keeps, in
//! `/proc/self/task/TID/schedstat`, the nanoseconds it ran on a CPU (first
//! field) and the nanoseconds it was runnable but waiting on a run queue
//! (second field). The second is the time the thread could have run and
//! did not, because every CPU was busy with something else. On an idle
//! machine it grows by microseconds per wake-up; on this 2-core machine at
//! load 14 a woken thread waited hundreds of milliseconds.
//!
//! Why. The rules that compare an elapsed time against a bound (`late_wakeup`,
//! `late_deadline`, `hang`, the stuck teardown, `busy_wait`'s CPU share)
//! judge the target's progress; time a thread spent queued for a CPU is
//! the machine's, not the target's (a false `late_wakeup` on
//! `peer_read_wakes_parked_write_tcp4` at load 14). So the elapsed time
//! that counts is the wall time minus the growth, over the interval, of
//! the run-queue wait of the threads the judged progress can depend on.
//! Those are taken as every thread of the case (the judged op's own; in
//! controlled mode the turn passes through the others; a peer op or
//! another op may be what it waits for) and netfd's poll server thread
//! (on the Server wait path every wake-up goes through it). A chain of
//! wake-ups is delayed by at most the sum of its threads' queueing, so
//! subtracting the sum over more threads than the chain used can only
//! make the time that counts smaller: a discount too big can hide a late
//! op, never invent one. Hiding is bounded by what those threads were
//! runnable for, and a target that lost a wake-up leaves the waiter
//! asleep, not runnable, so its lateness is not taken off.
//!
//! Protocol:
//! - [`CaseWaits::total`] is a case's monotone run-queue clock: the sum,
//!   since the case began, of the waits of its registered threads and of
//!   the poll server. A rule reads it at (or before) the start of the
//!   interval it judges and at (or after) the end; reading the base early
//!   or the end late only widens the discount.
//! - A thread's file is read only while the thread is known to exist: a
//!   case thread records its own figure at registration and again as its
//!   last act before it is marked done (a `threads_exit` thread exits
//!   after that), and from then on that last figure stands for it; the
//!   poll server lives as long as the process; the teardown closer is a
//!   pool thread, which outlives the case. A file is opened once and never
//!   reopened: a thread id can be reused, an open file keeps naming the
//!   task it was opened for (and reads nothing once that task is gone).
//! - Files are kept at high numbers, as the kernel-status files are
//!   ([`events`](super::events)): opening one at every look would take the
//!   lowest free number, the one a case's churner is about to get.
//! - Anything that cannot be read gives `None`, and every rule takes
//!   `None` as "cannot judge": a timing violation is never made from
//!   missing data.

use super::taskfiles::TaskFiles;
use super::Case;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const UNSET: u64 = u64::MAX;

/// Thread id → its open `schedstat` file, kept at a high number as the
/// status files are.
static FILES: TaskFiles = TaskFiles::new("schedstat");

fn file(tid: i32) -> Option<Arc<std::fs::File>> {
    FILES.get(tid)
}

/// Open thread `tid`'s file ahead of the first look (as it registers).
pub(super) fn prepare(tid: i32) {
    let _own = crate::intercept::reported();
    let _ = file(tid);
    if let Some(server) = netfd::poll::server::thread_id() {
        let _ = file(server);
    }
}

/// Close thread `tid`'s file: the thread has exited.
pub(super) fn forget(tid: i32) {
    let _own = crate::intercept::reported();
    FILES.forget(tid);
}

/// How long thread `tid` of this process has waited on a run queue so far.
pub(super) fn waited(tid: i32) -> Option<Duration> {
    use std::os::unix::fs::FileExt;
    let _own = crate::intercept::reported();
    let file = file(tid)?;
    let mut buf = [0u8; 96];
    let n = file.read_at(&mut buf, 0).ok().filter(|&n| n > 0)?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let ns: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The poll server's wait so far; `Some(0)` when it does not run (it
/// cannot then be on any wake-up's path).
fn server_waited() -> Option<Duration> {
    match netfd::poll::server::thread_id() {
        Some(tid) => waited(tid),
        None => Some(Duration::ZERO),
    }
}

/// `wall` minus `discount` (`None` when the discount is unknown).
pub(super) fn counted(wall: Duration, discount: Option<Duration>) -> Option<Duration> {
    discount.map(|d| wall.saturating_sub(d))
}

/// How much the run-queue clock moved from `base` to `now`.
pub(super) fn moved(base: Option<Duration>, now: Option<Duration>) -> Option<Duration> {
    Some(now?.saturating_sub(base?))
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(UNSET - 1)
}

fn load(a: &AtomicU64) -> Option<Duration> {
    match a.load(Ordering::Acquire) {
        UNSET => None,
        n => Some(Duration::from_nanos(n)),
    }
}

/// A case's run-queue figures.
pub(super) struct CaseWaits {
    /// Per case thread: its wait when it registered.
    base: Vec<AtomicU64>,
    /// Per case thread: its wait as it finished its ops.
    last: Vec<AtomicU64>,
    /// The poll server's wait when the case began (0 if it did not run:
    /// all of its waiting is then the case's time).
    server_base: AtomicU64,
    /// Per case thread: [`CaseWaits::total`] as its current read or write
    /// began.
    op_start: Vec<AtomicU64>,
}

impl CaseWaits {
    pub(super) fn new(threads: usize) -> CaseWaits {
        let unset = || (0..threads).map(|_| AtomicU64::new(UNSET)).collect();
        CaseWaits {
            base: unset(),
            last: unset(),
            server_base: AtomicU64::new(server_waited().map_or(UNSET, ns)),
            op_start: unset(),
        }
    }

    /// Case thread `t` (kernel id `tid`) registers.
    pub(super) fn register(&self, t: usize, tid: Option<i32>) {
        if let Some(w) = tid.and_then(waited) {
            self.base[t].store(ns(w), Ordering::Release);
        }
    }

    /// Case thread `t` (kernel id `tid`) has run its ops; its figure is
    /// fixed from now on (it may exit).
    pub(super) fn finish(&self, t: usize, tid: Option<i32>) {
        if let Some(w) = tid.and_then(waited) {
            self.last[t].store(ns(w), Ordering::Release);
        }
    }

    /// Case thread `t`'s read or write begins.
    pub(super) fn op_begins(&self, t: usize, total: Option<Duration>) {
        self.op_start[t].store(total.map_or(UNSET, ns), Ordering::Release);
    }

    /// [`CaseWaits::total`] as case thread `t`'s current read or write began.
    pub(super) fn at_op_start(&self, t: usize) -> Option<Duration> {
        load(&self.op_start[t])
    }
}

/// The case's run-queue clock now: how long, since it began, its threads
/// and the poll server waited for a CPU in all (see the module docs).
pub(super) fn total(case: &Case) -> Option<Duration> {
    let w = &case.waits;
    let mut sum = moved(
        load(&w.server_base).or(Some(Duration::ZERO)),
        server_waited(),
    )?;
    for t in 0..w.base.len() {
        let Some(base) = load(&w.base[t]) else {
            // Not registered yet: none of its waiting is the case's.
            continue;
        };
        let now = match load(&w.last[t]) {
            Some(last) => last,
            None => match case.events.tid(t).and_then(waited) {
                Some(now) => now,
                // It may have finished, and exited, since the first look.
                None => load(&w.last[t])?,
            },
        };
        sum += now.saturating_sub(base);
    }
    Some(sum)
}

/// How much the case's run-queue clock moved since case thread `t`'s
/// current read or write began.
pub(super) fn since_op_start(case: &Case, t: usize) -> Option<Duration> {
    moved(case.waits.at_op_start(t), total(case))
}

/// The most wall time a case is kept running, or a hang waited for, on
/// account of threads waiting for a CPU: ten times the bound the time
/// that counts is held to (the setup bound's factor). Past it the wall
/// time decides, so a starved case cannot keep the harness forever.
pub(super) const MOST_STRETCH: u32 = 10;

/// Whether the time that counts since `since` for case thread `t`'s
/// current op is still below `window` (the supervisor keeps the case
/// running meanwhile). The wall time decides while it is below `window`
/// (no file read) and once it passes [`MOST_STRETCH`] windows; an unknown
/// discount also lets the wall time decide, as before there was one.
pub(super) fn still_within(case: &Case, t: usize, since: Instant, window: Duration) -> bool {
    let wall = since.elapsed();
    if wall < window {
        return true;
    }
    if wall >= window * MOST_STRETCH {
        return false;
    }
    counted(wall, since_op_start(case, t)).is_some_and(|c| c < window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_wait_is_read_and_never_goes_back() {
        let tid = super::super::events::current_tid().expect("/proc/thread-self");
        let first = waited(tid).expect("schedstat of this thread");
        // More threads than CPUs that spin, so that some wait for one.
        let spin = || {
            let until = Instant::now() + Duration::from_millis(30);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        };
        std::thread::scope(|s| {
            let n = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
            for _ in 0..n {
                s.spawn(spin);
            }
            spin();
        });
        let second = waited(tid).expect("schedstat of this thread");
        assert!(second >= first);
        assert_eq!(moved(Some(first), Some(second)), Some(second - first));
        assert_eq!(moved(None, Some(second)), None);
        assert_eq!(
            counted(Duration::from_millis(5), Some(Duration::from_millis(8))),
            Some(Duration::ZERO)
        );
        assert_eq!(counted(Duration::from_millis(5), None), None);
        // A thread that is gone reads nothing (no file for it is opened).
        assert_eq!(waited(i32::MAX), None);
    }
}

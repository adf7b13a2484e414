//! The controlled scheduler: the case's threads run one at a time and switch
//! only at probe sync points and between scenario ops, in the order a
//! schedule gives.
//!
//! Protocol:
//! - Exactly one thread holds the turn (`current`); the others wait in
//!   [`Scheduler::switch`]. At each switch point the next thread is taken
//!   from the schedule: entry `k` names the thread to run at the `k`-th
//!   decision; a named thread that cannot run (finished, parked) passes the
//!   turn to the next runnable one in index order. Past the end of the
//!   schedule the running thread keeps the turn while it can, or, for a
//!   case run with [PCT priorities](super::pct), the eligible thread with
//!   the highest priority runs.
//! - A thread about to block in the kernel ([`park`](Scheduler::park), at the
//!   `before_park` sync point) gives up the turn without waiting for it back;
//!   when it wakes ([`unpark`](Scheduler::unpark)) it queues for the turn.
//!   So a blocking call counts as a switch, and a Close can run while a Read
//!   is parked.
//! - A thread that blocks where no sync point says so (a lock inside the
//!   protocol, Close waiting for the last reference) would stall everyone.
//!   Waiters look every [`CONFIRM`]: when the kernel reports the running
//!   thread asleep throughout two looks with no progress in between
//!   ([`events::slept_throughout`]), it waits for another thread, and a
//!   waiter takes the turn from it (a *blocked take-over*), unless a thread
//!   that is away (back from the kernel, or taken over) is runnable: the
//!   running one may wait for it, e.g. on a lock. A thread the
//!   kernel shows runnable keeps the turn (it waits for a CPU, not for
//!   another thread). Only if the kernel cannot say does the turn move after
//!   [`STALL`] without progress (the *stall fallback*). Both are counted. The taken-over thread rejoins
//!   the queue at its next switch point.
//! - Every decision is recorded ([`taken`](Scheduler::taken)): replaying a
//!   case with the recorded schedule repeats the interleaving.

use super::events::{self, KernelSample, CONFIRM};
use super::pct::Pct;
use netfd::probe::SyncPoint;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the turn may sit with a thread that makes no progress.
pub const STALL: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Started, waiting to be given the turn.
    Ready,
    Running,
    /// Blocked in the kernel, or stalled: not eligible until it comes back.
    Away,
    Done,
}

struct State {
    status: Vec<Status>,
    current: Option<usize>,
    choices: Vec<usize>,
    cursor: usize,
    taken: Vec<usize>,
    progress: u64,
    started: bool,
    /// Teardown: the schedule no longer applies, every thread runs freely.
    released: bool,
    /// Take-overs after the full [`STALL`], and the time they waited.
    stall_fallbacks: u64,
    stall_wait: Duration,
    blocked_takeovers: u64,
    blocked_wait: Duration,
    /// Kernel thread ids, recorded on arrival.
    tids: Vec<Option<i32>>,
    /// PCT priorities, deciding past the end of `choices`.
    pct: Option<Pct>,
    /// Switches made at a `before_syscall` sync point so far: the points
    /// PCT's change points are counted over.
    syscall_points: usize,
    /// Looking at a running thread that makes no progress: the progress
    /// count, since when, and the last kernel sample of it.
    watch: Option<Watch>,
}

#[derive(Clone, Copy)]
struct Watch {
    progress: u64,
    thread: usize,
    since: Instant,
    /// The last sample and when it was taken.
    last: Option<(KernelSample, Instant)>,
}

pub struct Scheduler {
    st: Mutex<State>,
    cv: Condvar,
}

impl Scheduler {
    pub fn new(threads: usize, choices: Vec<usize>) -> Scheduler {
        Scheduler {
            st: Mutex::new(State {
                status: vec![Status::Away; threads],
                current: None,
                choices,
                cursor: 0,
                taken: Vec::new(),
                progress: 0,
                started: false,
                released: false,
                stall_fallbacks: 0,
                stall_wait: Duration::ZERO,
                blocked_takeovers: 0,
                blocked_wait: Duration::ZERO,
                tids: vec![None; threads],
                pct: None,
                syscall_points: 0,
                watch: None,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decisions made so far.
    pub fn taken(&self) -> Vec<usize> {
        self.lock().taken.clone()
    }

    /// Decide past the end of the given choices by PCT priorities.
    pub fn with_pct(self, pct: Option<Pct>) -> Scheduler {
        self.lock().pct = pct;
        self
    }

    /// The take-overs so far, into `t`.
    pub fn record_timings(&self, t: &mut super::CaseTimings) {
        let st = self.lock();
        t.stall_fallbacks += st.stall_fallbacks;
        t.stall_wait += st.stall_wait;
        t.blocked_takeovers += st.blocked_takeovers;
        t.blocked_wait += st.blocked_wait;
    }

    /// Let the first thread run, once every thread has arrived.
    pub fn begin(&self) {
        let mut st = self.lock();
        while st.status.contains(&Status::Away) {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.started = true;
        self.pick(&mut st, None);
    }

    /// A thread arrives and waits for its first turn.
    pub fn arrive(&self, me: usize) {
        let tid = events::current_tid();
        let mut st = self.lock();
        st.tids[me] = tid;
        st.status[me] = Status::Ready;
        self.cv.notify_all();
        self.wait_turn(st, me);
    }

    /// A switch point: maybe hand the turn to another thread.
    pub fn switch(&self, me: usize) {
        self.switch_at(me, None);
    }

    /// A switch point at a named sync point (`None`: between ops).
    pub fn switch_at(&self, me: usize, point: Option<SyncPoint>) {
        let mut st = self.lock();
        if !st.started || st.released {
            return;
        }
        if point == Some(SyncPoint::BeforeSyscall) && st.current == Some(me) {
            st.syscall_points += 1;
        }
        st.status[me] = Status::Ready;
        let keep = if st.current == Some(me) {
            Some(me)
        } else {
            None
        };
        if st.current == Some(me) || st.current.is_none() {
            self.pick(&mut st, keep);
        }
        self.wait_turn(st, me);
    }

    /// About to block in the kernel: give up the turn.
    pub fn park(&self, me: usize) {
        let mut st = self.lock();
        if !st.started || st.released {
            return;
        }
        st.status[me] = Status::Away;
        if st.current == Some(me) {
            st.current = None;
            self.pick(&mut st, None);
        }
    }

    /// Back from the kernel: queue for the turn.
    pub fn unpark(&self, me: usize) {
        let mut st = self.lock();
        if !st.started || st.released {
            return;
        }
        st.status[me] = Status::Ready;
        if st.current.is_none() {
            self.pick(&mut st, None);
        }
        self.wait_turn(st, me);
    }

    /// The thread has run all its ops.
    pub fn done(&self, me: usize) {
        let mut st = self.lock();
        st.status[me] = Status::Done;
        if st.current == Some(me) || st.current.is_none() {
            st.current = None;
            self.pick(&mut st, None);
        }
        self.cv.notify_all();
    }

    /// End the controlled interleaving: every thread runs freely from now on
    /// (the case is being torn down; Close must reach parked threads and
    /// threads waiting for a turn alike).
    pub fn release_all(&self) {
        let mut st = self.lock();
        st.released = true;
        st.current = None;
        self.cv.notify_all();
    }

    /// Whether every unfinished thread is away (blocked in the kernel).
    pub fn all_away_or_done(&self) -> bool {
        let st = self.lock();
        st.current.is_none()
            && st
                .status
                .iter()
                .all(|s| matches!(s, Status::Away | Status::Done))
    }

    fn pick(&self, st: &mut State, keep: Option<usize>) {
        let n = st.status.len();
        let eligible =
            |st: &State, t: usize| matches!(st.status[t], Status::Ready | Status::Running);
        let next = if st.cursor < st.choices.len() {
            let want = st.choices[st.cursor] % n.max(1);
            st.cursor += 1;
            (0..n).map(|k| (want + k) % n).find(|&t| eligible(st, t))
        } else if st.pct.is_some() {
            let decision = st.syscall_points;
            let running = keep.or(st.current);
            let status = st.status.clone();
            st.pct.as_mut().and_then(|p| {
                p.choose(decision, running, |t| {
                    matches!(status[t], Status::Ready | Status::Running)
                })
            })
        } else {
            keep.filter(|&t| eligible(st, t))
                .or_else(|| (0..n).find(|&t| eligible(st, t)))
        };
        if let Some(t) = next {
            st.taken.push(t);
            st.status[t] = Status::Running;
        }
        st.current = next;
        st.progress += 1;
        self.cv.notify_all();
    }

    fn wait_turn(&self, mut st: std::sync::MutexGuard<'_, State>, me: usize) {
        loop {
            if st.current == Some(me) || st.released {
                return;
            }
            // A waiter is ready, even if a stall check marked it away: it
            // may have been handed the turn and not woken within STALL (a
            // loaded machine). Left away, no one is eligible and this loop
            // would spin on pick() holding the lock.
            if st.status[me] == Status::Away {
                st.status[me] = Status::Ready;
            }
            if st.started && st.current.is_none() {
                self.pick(&mut st, None);
                continue;
            }
            let seen = st.progress;
            let (g, timeout) = self
                .cv
                .wait_timeout(st, CONFIRM)
                .unwrap_or_else(|e| e.into_inner());
            st = g;
            if !timeout.timed_out() || st.progress != seen || !st.started {
                continue;
            }
            let Some(running) = st.current else { continue };
            self.look_at(&mut st, running);
        }
    }

    /// No progress for a [`CONFIRM`] while `running` holds the turn: take
    /// it away if the kernel shows it blocked, or after [`STALL`].
    fn look_at(&self, st: &mut State, running: usize) {
        let now = Instant::now();
        let mut w = match st.watch {
            Some(w) if w.progress == st.progress && w.thread == running => w,
            _ => Watch {
                progress: st.progress,
                thread: running,
                since: now,
                last: None,
            },
        };
        // Several waiters look: compare only samples a CONFIRM apart.
        if w.last
            .is_some_and(|(_, at)| now.duration_since(at) < CONFIRM)
        {
            st.watch = Some(w);
            return;
        }
        let sample = st.tids[running].and_then(events::sample);
        let blocked =
            matches!((w.last, sample), (Some((a, _)), Some(b)) if events::slept_throughout(a, b));
        let stalled = now.duration_since(w.since) >= STALL;
        if blocked || stalled {
            if blocked {
                st.blocked_takeovers += 1;
                st.blocked_wait += now.duration_since(w.since);
            } else {
                st.stall_fallbacks += 1;
                st.stall_wait += now.duration_since(w.since);
            }
            st.watch = None;
            st.status[running] = Status::Away;
            st.current = None;
            self.pick(st, None);
            return;
        }
        w.last = sample.map(|s| (s, now));
        st.watch = Some(w);
    }
}

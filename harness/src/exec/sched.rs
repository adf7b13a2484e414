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
//! - Teardown is scheduled too. The harness's closer, which closes what the
//!   case left open, joins as one more thread and takes the turn
//!   ([`enter_closer`](Scheduler::enter_closer)); its Closes switch at sync
//!   points like any op. When it has closed everything it waits for the
//!   threads its closes woke to queue ([`closer_done`](Scheduler::closer_done))
//!   before the turn goes on, so what runs after a teardown Close is the
//!   schedule's decision, not the kernel's wake-up order.
//! - Every decision is recorded ([`taken`](Scheduler::taken)): replaying a
//!   case with the recorded schedule repeats the interleaving, teardown
//!   included.

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
    /// The scenario's threads; past them, index `threads` is the
    /// harness's closer once teardown has begun.
    threads: usize,
    /// Teardown has begun: the closer is a thread of the schedule.
    teardown: bool,
    /// The closer has finished and waits for the threads its closes woke
    /// to come back: nobody takes the turn meanwhile.
    holding: bool,
    /// Threads that gave up the turn to block in the kernel at a
    /// `before_park` sync point and have not come back.
    in_kernel: Vec<bool>,
    /// The schedule no longer applies, every thread runs freely (only if
    /// the closer could not be started).
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
                threads,
                teardown: false,
                holding: false,
                in_kernel: vec![false; threads],
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
        if (st.current == Some(me) || st.current.is_none()) && !st.holding {
            self.pick(&mut st, keep);
        }
        if st.holding {
            self.cv.notify_all();
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
        st.in_kernel[me] = true;
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
        st.in_kernel[me] = false;
        if st.current.is_none() && !st.holding {
            self.pick(&mut st, None);
        }
        // The closer may be waiting for this thread to come back.
        self.cv.notify_all();
        self.wait_turn(st, me);
    }

    /// The thread has run all its ops.
    pub fn done(&self, me: usize) {
        let mut st = self.lock();
        st.status[me] = Status::Done;
        if st.current == Some(me) {
            st.current = None;
        }
        if st.current.is_none() && !st.holding {
            self.pick(&mut st, None);
        }
        self.cv.notify_all();
    }

    /// Teardown begins, on the harness's closer thread: the closer joins
    /// the schedule as thread `threads` and takes the turn at once. That is
    /// not a decision of the schedule (nothing is recorded): teardown
    /// begins when the supervisor sees every thread parked or done, the
    /// same state in a replay. A thread still holding the turn (a case
    /// taken as stuck) is taken over, as a stalled one would be, and
    /// rejoins the queue at its next switch point. Returns the closer's
    /// index, for its probe.
    pub fn enter_closer(&self) -> usize {
        let tid = events::current_tid();
        let mut st = self.lock();
        let me = st.status.len();
        st.teardown = true;
        if let Some(c) = st.current {
            st.status[c] = Status::Away;
        }
        st.status.push(Status::Running);
        st.tids.push(tid);
        st.in_kernel.push(false);
        st.current = Some(me);
        st.watch = None;
        st.progress += 1;
        self.cv.notify_all();
        me
    }

    /// The closer has closed everything. Before the turn goes back to the
    /// schedule, wait (until `until`) for the threads its closes woke to
    /// come back from the kernel and queue: which of them runs next is then
    /// the schedule's decision, not the order in which the kernel woke
    /// them. Only threads parked at a `before_park` point are waited for: a
    /// thread taken over while it blocked elsewhere may be waiting for one
    /// that needs the turn (a Close waiting for a reader to leave). A
    /// thread that does not come back by `until` (a hang) rejoins the queue
    /// whenever it does.
    pub fn closer_done(&self, me: usize, until: Instant) {
        let mut st = self.lock();
        st.status[me] = Status::Done;
        if st.current != Some(me) {
            // Taken over while it closed: the turn is already elsewhere.
            self.cv.notify_all();
            return;
        }
        st.current = None;
        st.holding = true;
        while (0..st.status.len()).any(|t| st.in_kernel[t] && st.status[t] == Status::Away) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            st = self
                .cv
                .wait_timeout(st, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.holding = false;
        if st.current.is_none() {
            self.pick(&mut st, None);
        }
        self.cv.notify_all();
    }

    /// End the controlled interleaving: every thread runs freely from now on
    /// (the fallback when the closer thread cannot be started: Close must
    /// still reach parked threads and threads waiting for a turn alike).
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
            // An entry names a scenario thread, or in teardown the closer
            // (index `threads`); other values wrap over the scenario's
            // threads, as they always have.
            let c = st.choices[st.cursor];
            let want = if c < n { c } else { c % st.threads.max(1) };
            st.cursor += 1;
            (0..n).map(|k| (want + k) % n).find(|&t| eligible(st, t))
        } else if st.pct.is_some() && !st.teardown {
            // PCT's priorities are the scenario threads'; teardown keeps
            // the running thread, below.
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
            if st.started && st.current.is_none() && !st.holding {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;

    /// `begin` gives out the first turn only once every thread has arrived:
    /// a schedule's first decision must see the same threads in every run.
    #[test]
    fn the_first_turn_waits_for_every_thread() {
        let s = Arc::new(Scheduler::new(2, vec![1]));
        let (began_tx, began) = mpsc::channel();
        let b = s.clone();
        std::thread::spawn(move || {
            b.begin();
            began_tx.send(()).unwrap();
        });
        let first = s.clone();
        std::thread::spawn(move || first.arrive(0));
        // Thread 1 has not arrived: begin must still be waiting.
        assert!(began.recv_timeout(Duration::from_millis(200)).is_err());
        let (ran_tx, ran) = mpsc::channel();
        let second = s.clone();
        std::thread::spawn(move || {
            second.arrive(1);
            ran_tx.send(1).unwrap();
        });
        began
            .recv_timeout(Duration::from_secs(10))
            .expect("begin returns");
        // The schedule's first entry names thread 1, which now holds the turn.
        assert_eq!(ran.recv_timeout(Duration::from_secs(10)), Ok(1));
        assert_eq!(s.taken(), vec![1]);
    }
}

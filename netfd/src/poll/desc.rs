//! The poll descriptor: the per-socket record of who is parked, until when,
//! and whether the socket is closing (Go's `pollDesc`).
//!
//! Protocol (all fields under one small mutex, never held across a syscall
//! other than a wake-up: an eventfd signal or a futex wake):
//! - A waiter *arms* its direction with a [`Waker`] and learns its deadline;
//!   arming fails at once if the socket is closing or the deadline passed.
//! - Anyone who wants the waiter to re-evaluate *takes* the waker out of the
//!   slot and signals it: Close ([`evict`](PollDesc::evict)), a deadline
//!   change, the poll server's readiness event or timer. Taking is what makes
//!   a wake-up count exactly once; a waiter whose slot is empty was woken.
//! - A waiter *disarms* before it returns, under the same mutex. A wake
//!   descriptor in the slot therefore stays open while it is there (its
//!   thread is parked on it), so signalling it can never hit a reused number.
//! - `closing` only goes from false to true. After it is set no arm succeeds,
//!   so a parked operation cannot miss Close: it was either woken by the
//!   eviction or it arms afterwards and fails.
//! - Deadline changes bump `seq`; a timer armed for an older `seq` is stale
//!   and wakes nobody.

use crate::error;
use crate::sync::{Mutex, Thread};
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// A direction of readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Read = 0,
    Write = 1,
}

/// How to wake a parked waiter.
pub(crate) enum Waker {
    /// The waiter polls its socket together with this eventfd.
    Fd(RawFd),
    /// The waiter is parked on its own futex word (`poll/park.rs`); the
    /// poll server or a closer unparks it.
    Thread(Thread),
}

impl Waker {
    fn wake(self) {
        match self {
            Waker::Fd(fd) => crate::sys::eventfd_signal(fd),
            Waker::Thread(t) => t.unpark(),
        }
    }
}

#[derive(Default)]
struct DirState {
    deadline: Option<Instant>,
    seq: u64,
    waiter: Option<Waker>,
    /// Poll-server path: readiness arrived since the waiter last armed.
    ready: bool,
}

#[derive(Default)]
struct State {
    closing: bool,
    dirs: [DirState; 2],
}

/// What a waiter learns when it arms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Armed {
    pub deadline: Option<Instant>,
    pub seq: u64,
}

/// See the module docs.
#[derive(Default)]
pub struct PollDesc {
    state: Mutex<State>,
}

fn deadline_passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| crate::sync::now() >= d)
}

impl PollDesc {
    pub fn new() -> PollDesc {
        PollDesc::default()
    }

    fn lock(&self) -> crate::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fail fast: the closed error if closing, the timeout if the deadline passed.
    pub fn check(&self, dir: Dir) -> io::Result<()> {
        let st = self.lock();
        check_state(&st, dir)
    }

    /// Start an operation in `dir`: fail like [`check`](Self::check), and
    /// forget readiness the poll server reported before now (Go's
    /// `pollDesc.prepare`). The caller tries its syscall next, which sees the
    /// socket as it is; a stale flag would only cost a spurious wake-up and
    /// an EAGAIN, e.g. the hang-up every socket reports when it is
    /// registered before it connects.
    pub fn prepare(&self, dir: Dir) -> io::Result<()> {
        let mut st = self.lock();
        check_state(&st, dir)?;
        st.dirs[dir as usize].ready = false;
        Ok(())
    }

    /// Register `waker` for `dir`. Fails like [`check`](Self::check). With
    /// `consume_ready`, a readiness seen since the last arm is returned as
    /// `Ok(None)` instead of arming (the poll-server path).
    pub(crate) fn arm(
        &self,
        dir: Dir,
        waker: Waker,
        consume_ready: bool,
    ) -> io::Result<Option<Armed>> {
        let mut st = self.lock();
        check_state(&st, dir)?;
        let d = &mut st.dirs[dir as usize];
        if consume_ready && d.ready {
            d.ready = false;
            return Ok(None);
        }
        d.waiter = Some(waker);
        Ok(Some(Armed {
            deadline: d.deadline,
            seq: d.seq,
        }))
    }

    /// Take the waiter out of its slot. Returns true if it was still armed
    /// (nobody woke it).
    pub(crate) fn disarm(&self, dir: Dir) -> bool {
        self.lock().dirs[dir as usize].waiter.take().is_some()
    }

    /// Whether a waiter is still in its slot (not yet woken).
    pub(crate) fn is_armed(&self, dir: Dir) -> bool {
        self.lock().dirs[dir as usize].waiter.is_some()
    }

    /// Close: mark closing and wake every parked waiter. Returns false if
    /// the descriptor was already closing.
    pub fn evict(&self) -> bool {
        let mut st = self.lock();
        if st.closing {
            return false;
        }
        st.closing = true;
        for d in st.dirs.iter_mut() {
            if let Some(w) = d.waiter.take() {
                w.wake();
            }
        }
        true
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// Store a new deadline (`None` clears it) and wake the waiter so it
    /// re-evaluates. Returns the new sequence number.
    pub fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> u64 {
        let mut st = self.lock();
        let d = &mut st.dirs[dir as usize];
        d.deadline = deadline;
        d.seq += 1;
        let seq = d.seq;
        if let Some(w) = d.waiter.take() {
            w.wake();
        }
        seq
    }

    pub fn deadline(&self, dir: Dir) -> Option<Instant> {
        self.lock().dirs[dir as usize].deadline
    }

    /// Poll server: the socket became ready in `dir`.
    pub(crate) fn notify_ready(&self, dir: Dir) {
        let mut st = self.lock();
        let d = &mut st.dirs[dir as usize];
        d.ready = true;
        if let Some(w) = d.waiter.take() {
            d.ready = false;
            w.wake();
        }
    }

    /// Whether readiness is pending that no waiter has consumed.
    #[cfg(test)]
    pub(crate) fn ready_pending(&self, dir: Dir) -> bool {
        self.lock().dirs[dir as usize].ready
    }

    /// Poll server: a timer armed at `seq` fired. Wakes the waiter only if
    /// the deadline it was armed for is still the current one.
    pub(crate) fn expire(&self, dir: Dir, seq: u64) -> bool {
        let mut st = self.lock();
        let d = &mut st.dirs[dir as usize];
        if d.seq != seq {
            return false;
        }
        match d.waiter.take() {
            Some(w) => {
                w.wake();
                true
            }
            None => false,
        }
    }
}

fn check_state(st: &State, dir: Dir) -> io::Result<()> {
    if st.closing {
        return Err(error::closed());
    }
    if deadline_passed(st.dirs[dir as usize].deadline) {
        return Err(error::timed_out());
    }
    Ok(())
}

//! The lifetime state word of a descriptor (Go's `internal/poll` fdMutex).
//!
//! One atomic `u64` holds everything a close race turns on:
//!
//! ```text
//! bit  0      closed: set once by Close; no new reference after it
//! bit  1      read lock held
//! bit  2      write lock held
//! bits 3-22   references (operations in flight, Close's own included)
//! bits 23-42  readers parked waiting for the read lock
//! bits 43-62  writers parked waiting for the write lock
//! ```
//!
//! Protocol and invariants:
//! - Every use of the descriptor number happens between a successful
//!   [`incref`](FdMutex::incref)/[`rwlock`](FdMutex::rwlock) and the matching
//!   [`decref`](FdMutex::decref)/[`rwunlock`](FdMutex::rwunlock). While a
//!   reference is held the number is open and belongs to this socket.
//! - Close is [`incref_and_close`](FdMutex::incref_and_close): it sets the
//!   closed bit and takes a reference in one step, so exactly one Close wins,
//!   and it wakes every lock waiter (they see the closed bit and fail).
//! - After the closed bit is set no reference can be taken, so the count only
//!   falls. The call that drops the last reference of a closed word is told so
//!   (it returns `true`) and is the one caller that may release the number.
//! - Counts never wrap: overflow panics with [`OVERFLOW_MESSAGE`].
//!
//! Read and write locks serialise readers among themselves and writers among
//! themselves (a read and a write run at once), so two reads never interleave
//! their bytes and a waiter parked in the poll server is alone in its
//! direction.

use crate::sync::{AtomicU64, Condvar, Mutex, Ordering};

const CLOSED: u64 = 1 << 0;
const RLOCK: u64 = 1 << 1;
const WLOCK: u64 = 1 << 2;
const REF: u64 = 1 << 3;
const REF_MASK: u64 = ((1 << 20) - 1) << 3;
const RWAIT: u64 = 1 << 23;
const RMASK: u64 = ((1 << 20) - 1) << 23;
const WWAIT: u64 = 1 << 43;
const WMASK: u64 = ((1 << 20) - 1) << 43;

/// The most operations that may be in flight on one socket at once.
pub const MAX_REFS: u64 = (1 << 20) - 1;

/// The panic message when more than [`MAX_REFS`] operations pile up.
pub const OVERFLOW_MESSAGE: &str =
    "netfd: too many concurrent operations on a single socket (max 1048575)";

const INCONSISTENT: &str = "netfd: inconsistent fdmutex (unlock without lock)";

/// Which of the two serialised directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Read,
    Write,
}

impl Side {
    #[inline]
    fn bits(self) -> (u64, u64, u64) {
        match self {
            Side::Read => (RLOCK, RWAIT, RMASK),
            Side::Write => (WLOCK, WWAIT, WMASK),
        }
    }
}

/// A counting semaphore for parked lock waiters.
#[derive(Default)]
struct Sema {
    permits: Mutex<u32>,
    cv: Condvar,
}

impl Sema {
    fn acquire(&self) {
        let mut n = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        while *n == 0 {
            n = self.cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n -= 1;
    }

    fn release(&self) {
        let mut n = self.permits.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        drop(n);
        self.cv.notify_one();
    }
}

/// See the module docs.
#[derive(Default)]
pub struct FdMutex {
    state: AtomicU64,
    rsema: Sema,
    wsema: Sema,
}

impl FdMutex {
    pub fn new() -> FdMutex {
        FdMutex::default()
    }

    /// Take a reference for an operation that needs neither lock.
    /// Returns false if the socket is closed.
    #[inline]
    pub fn incref(&self) -> bool {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & CLOSED != 0 {
                return false;
            }
            let new = old.wrapping_add(REF);
            if new & REF_MASK == 0 {
                panic!("{OVERFLOW_MESSAGE}");
            }
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => old = current,
            }
        }
    }

    /// Mark closed and take Close's reference, waking all lock waiters.
    /// Returns false if the socket was already closed (this Close lost).
    pub fn incref_and_close(&self) -> bool {
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & CLOSED != 0 {
                return false;
            }
            let mut new = (old | CLOSED).wrapping_add(REF);
            if new & REF_MASK == 0 {
                panic!("{OVERFLOW_MESSAGE}");
            }
            new &= !(RMASK | WMASK);
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    // Waiters see the closed bit when they wake and fail.
                    for _ in 0..((old & RMASK) / RWAIT) {
                        self.rsema.release();
                    }
                    for _ in 0..((old & WMASK) / WWAIT) {
                        self.wsema.release();
                    }
                    return true;
                }
                Err(current) => old = current,
            }
        }
    }

    /// Drop a reference. Returns true if this was the last reference of a
    /// closed socket: the caller must now release the descriptor.
    #[inline]
    pub fn decref(&self) -> bool {
        let old = self.state.fetch_sub(REF, Ordering::AcqRel);
        if old & REF_MASK == 0 {
            panic!("{INCONSISTENT}");
        }
        (old - REF) & (CLOSED | REF_MASK) == CLOSED
    }

    /// Take the read or write lock (and a reference), parking while another
    /// operation of the same side holds it. Returns false if the socket is
    /// closed, now or while parked.
    #[inline]
    pub fn rwlock(&self, side: Side) -> bool {
        let (bit, wait, mask) = side.bits();
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & CLOSED != 0 {
                return false;
            }
            let free = old & bit == 0;
            let new = if free {
                let new = (old | bit).wrapping_add(REF);
                if new & REF_MASK == 0 {
                    panic!("{OVERFLOW_MESSAGE}");
                }
                new
            } else {
                let new = old.wrapping_add(wait);
                if new & mask == 0 {
                    panic!("{OVERFLOW_MESSAGE}");
                }
                new
            };
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) if free => return true,
                Ok(_) => {
                    // The releaser subtracted our wait count before waking us.
                    self.sema(side).acquire();
                    old = self.state.load(Ordering::Relaxed);
                }
                Err(current) => old = current,
            }
        }
    }

    /// Release the lock taken by [`rwlock`](Self::rwlock) and its reference,
    /// handing the lock to one parked waiter. Returns true if this was the
    /// last reference of a closed socket.
    #[inline]
    pub fn rwunlock(&self, side: Side) -> bool {
        let (bit, wait, mask) = side.bits();
        let mut old = self.state.load(Ordering::Relaxed);
        loop {
            if old & bit == 0 || old & REF_MASK == 0 {
                panic!("{INCONSISTENT}");
            }
            let mut new = (old & !bit) - REF;
            if old & mask != 0 {
                new -= wait;
            }
            match self
                .state
                .compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if old & mask != 0 {
                        self.sema(side).release();
                    }
                    return new & (CLOSED | REF_MASK) == CLOSED;
                }
                Err(current) => old = current,
            }
        }
    }

    /// Whether Close has won (the number may still be open).
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// References currently held (for tests and diagnostics).
    pub fn refs(&self) -> u64 {
        (self.state.load(Ordering::Acquire) & REF_MASK) >> 3
    }

    /// The lock-waiter bookkeeping of `side`: the waiters the state word
    /// counts and the semaphore's permits nobody has taken. Once every
    /// operation has returned both are 0: each waiter counted is handed
    /// exactly one permit and takes it. (For tests and models: an unlock
    /// that forgets to uncount the waiter it wakes leaves both behind, and
    /// every later waiter of the side then wakes for nothing.)
    pub fn waiters_left(&self, side: Side) -> (u64, u32) {
        let (_, wait, mask) = side.bits();
        let counted = (self.state.load(Ordering::Acquire) & mask) / wait;
        let permits = *self
            .sema(side)
            .permits
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (counted, permits)
    }

    fn sema(&self, side: Side) -> &Sema {
        match side {
            Side::Read => &self.rsema,
            Side::Write => &self.wsema,
        }
    }
}

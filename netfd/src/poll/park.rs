//! Parking a server-path waiter: a per-thread futex word filed in the
//! kernel's global futex hash.
//!
//! Why not `std::thread::park`: it parks on a *private* futex, and since
//! Linux 6.16 a process's private futexes share a hash of as few as 16
//! buckets (2 CPUs). A wake walks its bucket, so with N waiters parked every
//! wake-up the poll server hands out cost O(N / 16): 100 µs per wake at
//! N = 10,000 (measured once with a test not kept; the `poll_server` bench,
//! docs/performance.md, "Poll server", shows the cost per expiry).
//! Retuning the process's hash (`PR_FUTEX_HASH`) is not a library's call.
//! [`sys::futex_hash`] files the word in the global hash instead (256 ×
//! CPUs buckets), as every futex was before 6.16, and no descriptor is
//! spent per parked thread (the direct path's eventfd would double the
//! server path's descriptors).
//!
//! Protocol (std's futex parker, unchanged): the word is EMPTY, NOTIFIED or
//! PARKED. `unpark` stores NOTIFIED and wakes the futex only if the owner
//! was PARKED. `park` turns NOTIFIED into EMPTY and returns, or EMPTY into
//! PARKED and sleeps until it finds NOTIFIED. So an unpark before the park
//! is not lost, and a park may return without one (a spurious wake-up); the
//! poll descriptor's slot, not the word, says whether the waiter was woken.
//! Only the owning thread parks.

use crate::sys::{self, FutexWord};
use std::io;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;

const EMPTY: u32 = 0;
const NOTIFIED: u32 = 1;
const PARKED: u32 = u32::MAX;

/// A handle to a thread's parker (`sync::Thread`): cloned into a poll
/// descriptor's slot, unparked by whoever takes it out.
#[derive(Clone)]
pub(crate) struct Thread(Arc<FutexWord>);

impl Thread {
    /// The calling thread's parker.
    pub(crate) fn current() -> io::Result<Thread> {
        thread_local! {
            static PARKER: Thread = Thread(Arc::new(FutexWord::new(EMPTY)));
        }
        PARKER
            .try_with(Thread::clone)
            .map_err(|_| io::Error::other("netfd: wait during thread exit"))
    }

    /// Sleep until unparked (or spuriously). Call only from the thread
    /// [`current`](Self::current) was called on.
    pub(crate) fn park(&self) {
        let state = &self.0.value;
        // EMPTY -> PARKED (wraps to u32::MAX), or NOTIFIED -> EMPTY.
        if state.fetch_sub(1, Acquire) == NOTIFIED {
            return;
        }
        loop {
            sys::futex_wait(&self.0, PARKED);
            if state
                .compare_exchange(NOTIFIED, EMPTY, Acquire, Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    pub(crate) fn unpark(&self) {
        if self.0.value.swap(NOTIFIED, Release) == PARKED {
            sys::futex_wake(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Bound for a wake-up that a correct parker delivers at once; a lost
    /// one fails the test instead of hanging it.
    const HANG: Duration = Duration::from_secs(20);

    #[test]
    fn an_unpark_before_the_park_is_kept() {
        let me = Thread::current().unwrap();
        me.unpark();
        me.park(); // returns at once: the token was stored
        assert_eq!(me.0.value.load(Ordering::Relaxed), EMPTY);
    }

    #[test]
    fn unpark_wakes_a_parked_thread() {
        let flag = Arc::new(AtomicBool::new(false));
        let (handle_tx, handle_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let flag2 = flag.clone();
        std::thread::spawn(move || {
            let me = Thread::current().unwrap();
            handle_tx.send(me.clone()).unwrap();
            while !flag2.load(Ordering::Acquire) {
                me.park();
            }
            done_tx.send(()).unwrap();
        });
        let handle = handle_rx.recv_timeout(HANG).unwrap();
        flag.store(true, Ordering::Release);
        handle.unpark();
        done_rx
            .recv_timeout(HANG)
            .expect("the parked thread was not woken");
    }

    /// Both hashes: a thread blocked on a word wakes when another changes
    /// the word and wakes it in the same hash.
    #[test]
    fn futex_wake_reaches_a_waiter_in_either_hash() {
        for hash in [sys::FutexHash::GlobalNuma, sys::FutexHash::GlobalShared] {
            if hash == sys::FutexHash::GlobalShared || sys::futex_hash() == hash {
                let word = Arc::new(FutexWord::new(0));
                let (done_tx, done_rx) = mpsc::channel();
                let w = word.clone();
                std::thread::spawn(move || {
                    while w.value.load(Ordering::Acquire) == 0 {
                        sys::futex_wait_in(hash, &w, 0);
                    }
                    done_tx.send(()).unwrap();
                });
                word.value.store(1, Ordering::Release);
                sys::futex_wake_in(hash, &word);
                done_rx
                    .recv_timeout(HANG)
                    .unwrap_or_else(|_| panic!("{hash:?}: the waiter was not woken"));
            }
        }
    }
}

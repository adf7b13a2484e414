//! The lifetime state word, `netfd::fdmutex::FdMutex` (issue 2, contract
//! point 7), tested in the spirit of Go's `internal/poll/fd_mutex_test.go`:
//! lock, close, close unblocking lock waiters, misuse panics, reference
//! overflow panics with a clear message and never wraps, and a stress test
//! that checks mutual exclusion of readers and of writers. The loom models
//! (`tests/loom_fdmutex.rs`) check the same word exhaustively on small
//! cases; these run it on real threads at scale.

use netfd::fdmutex::{FdMutex, Side, MAX_REFS, OVERFLOW_MESSAGE};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const HANG: Duration = Duration::from_secs(10);

#[test]
fn lock() {
    let mu = FdMutex::new();
    assert!(mu.incref());
    assert_eq!(mu.refs(), 1);
    assert!(!mu.decref(), "decref of an open mutex is never the last");
    for side in [Side::Read, Side::Write] {
        assert!(mu.rwlock(side));
        assert_eq!(mu.refs(), 1);
        assert!(!mu.rwunlock(side));
    }
    // The two sides are independent, and references stack on locks.
    assert!(mu.rwlock(Side::Read));
    assert!(mu.rwlock(Side::Write));
    assert!(mu.incref());
    assert_eq!(mu.refs(), 3);
    assert!(!mu.rwunlock(Side::Read));
    assert!(!mu.decref());
    assert!(!mu.rwunlock(Side::Write));
    assert_eq!(mu.refs(), 0);
    assert!(!mu.is_closed());
}

#[test]
fn close() {
    let mu = FdMutex::new();
    assert!(mu.incref_and_close());
    assert!(mu.is_closed());
    assert!(!mu.incref());
    assert!(!mu.rwlock(Side::Read));
    assert!(!mu.rwlock(Side::Write));
    assert!(!mu.incref_and_close(), "a second close must lose");
    assert_eq!(mu.refs(), 1, "refused operations took no reference");
    assert!(mu.decref(), "close's own reference is the last");
}

/// Exactly the call that drops the last reference of a closed word is told
/// to release the descriptor, whoever it is.
#[test]
fn last_reference_after_close_is_reported_once() {
    for last in [Side::Read, Side::Write] {
        let mu = FdMutex::new();
        assert!(mu.incref());
        assert!(mu.rwlock(last));
        assert!(mu.incref_and_close());
        assert!(!mu.decref());
        assert!(!mu.decref());
        assert!(mu.rwunlock(last));
        assert_eq!(mu.refs(), 0);
    }
}

#[test]
fn close_unblocks_lock_waiters() {
    let mu = FdMutex::new();
    assert!(mu.rwlock(Side::Read));
    assert!(mu.rwlock(Side::Write));
    let returned = AtomicUsize::new(0);
    thread::scope(|s| {
        let hs: Vec<_> = [Side::Read, Side::Write, Side::Read, Side::Write]
            .into_iter()
            .map(|side| {
                let (mu, returned) = (&mu, &returned);
                s.spawn(move || {
                    let got = mu.rwlock(side);
                    returned.fetch_add(1, Ordering::SeqCst);
                    got
                })
            })
            .collect();
        // Concurrent threads must not get the locks.
        thread::sleep(Duration::from_millis(50));
        assert_eq!(
            returned.load(Ordering::SeqCst),
            0,
            "a waiter got a held lock"
        );
        let t0 = Instant::now();
        assert!(mu.incref_and_close(), "must unblock the waiters");
        for h in hs {
            assert!(
                !h.join().unwrap(),
                "a waiter got the lock of a closed mutex"
            );
        }
        assert!(t0.elapsed() < HANG);
    });
    assert!(!mu.decref());
    assert!(!mu.rwunlock(Side::Read));
    assert!(mu.rwunlock(Side::Write));
}

#[test]
fn unlock_hands_the_lock_to_a_waiter() {
    for side in [Side::Read, Side::Write] {
        let mu = FdMutex::new();
        assert!(mu.rwlock(side));
        thread::scope(|s| {
            let h = s.spawn(|| {
                let got = mu.rwlock(side);
                if got {
                    assert!(!mu.rwunlock(side));
                }
                got
            });
            thread::sleep(Duration::from_millis(20));
            assert!(!h.is_finished(), "{side:?}: the waiter did not wait");
            assert!(!mu.rwunlock(side));
            assert!(h.join().unwrap(), "{side:?}: the waiter never got the lock");
        });
        assert_eq!(mu.refs(), 0);
    }
}

fn panic_message(r: std::thread::Result<impl Sized>) -> String {
    let payload = match r {
        Ok(_) => panic!("expected a panic"),
        Err(p) => p,
    };
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    if let Some(s) = payload.downcast_ref::<&str>() {
        return (*s).to_string();
    }
    panic!("panic payload is not a string")
}

#[test]
fn misuse_panics() {
    let m = panic_message(catch_unwind(|| FdMutex::new().decref()));
    assert!(
        m.contains("inconsistent fdmutex"),
        "decref without incref: {m}"
    );
    for side in [Side::Read, Side::Write] {
        let m = panic_message(catch_unwind(|| FdMutex::new().rwunlock(side)));
        assert!(
            m.contains("inconsistent fdmutex"),
            "{side:?} unlock without lock: {m}"
        );
    }
    // The other side's lock does not count.
    let mu = FdMutex::new();
    assert!(mu.rwlock(Side::Read));
    let m = panic_message(catch_unwind(AssertUnwindSafe(|| mu.rwunlock(Side::Write))));
    assert!(
        m.contains("inconsistent fdmutex"),
        "write unlock under a read lock: {m}"
    );
    // A plain reference is not a lock either.
    let mu = FdMutex::new();
    assert!(mu.incref());
    let m = panic_message(catch_unwind(AssertUnwindSafe(|| mu.rwunlock(Side::Read))));
    assert!(
        m.contains("inconsistent fdmutex"),
        "unlock of a plain reference: {m}"
    );
}

#[test]
fn reference_overflow_panics_with_a_clear_message_and_never_wraps() {
    assert!(
        OVERFLOW_MESSAGE.contains(&MAX_REFS.to_string()),
        "{OVERFLOW_MESSAGE}"
    );
    assert!(OVERFLOW_MESSAGE.contains("too many concurrent operations"));
    let mu = FdMutex::new();
    for _ in 0..MAX_REFS {
        assert!(mu.incref());
    }
    assert_eq!(mu.refs(), MAX_REFS);
    let m = panic_message(catch_unwind(AssertUnwindSafe(|| mu.incref())));
    assert_eq!(m, OVERFLOW_MESSAGE, "incref");
    let m = panic_message(catch_unwind(AssertUnwindSafe(|| mu.rwlock(Side::Read))));
    assert_eq!(m, OVERFLOW_MESSAGE, "rwlock");
    let m = panic_message(catch_unwind(AssertUnwindSafe(|| mu.incref_and_close())));
    assert_eq!(m, OVERFLOW_MESSAGE, "incref_and_close");
    // Nothing wrapped: the count is intact, the word is still open and
    // unlocked, and it unwinds to zero.
    assert_eq!(mu.refs(), MAX_REFS);
    assert!(!mu.is_closed());
    assert!(!mu.decref());
    assert!(mu.rwlock(Side::Write));
    assert!(!mu.rwunlock(Side::Write));
    for _ in 1..MAX_REFS {
        assert!(!mu.decref());
    }
    assert_eq!(mu.refs(), 0);
}

/// Go's TestMutexStress: threads × iterations of random incref/decref,
/// read lock and write lock; inside a lock, a shared counter proves nobody
/// else holds the same side.
#[test]
fn stress() {
    const THREADS: u64 = 4;
    const ITERS: u64 = 20_000;
    let mu = FdMutex::new();
    let readers = AtomicI32::new(0);
    let writers = AtomicI32::new(0);
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..THREADS {
            let (mu, readers, writers) = (&mu, &readers, &writers);
            s.spawn(move || {
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                for i in 0..ITERS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match x % 3 {
                        0 => {
                            assert!(mu.incref());
                            assert!(!mu.decref());
                        }
                        r => {
                            let (side, held) = if r == 1 {
                                (Side::Read, readers)
                            } else {
                                (Side::Write, writers)
                            };
                            assert!(mu.rwlock(side));
                            assert_eq!(
                                held.fetch_add(1, Ordering::SeqCst),
                                0,
                                "{side:?} held twice"
                            );
                            if i % 8 == 0 {
                                thread::yield_now();
                            }
                            assert_eq!(
                                held.fetch_sub(1, Ordering::SeqCst),
                                1,
                                "{side:?} held twice"
                            );
                            assert!(!mu.rwunlock(side));
                        }
                    }
                }
            });
        }
    });
    assert_eq!(mu.refs(), 0);
    assert!(!mu.is_closed());
    assert!(start.elapsed() < Duration::from_secs(60));
}

/// The stress test with a Close in the middle: every thread runs until the
/// word refuses it; the last reference is reported exactly once, whoever
/// drops it, and no lock is granted after close.
#[test]
fn stress_with_close() {
    for round in 0..20 {
        let mu = FdMutex::new();
        let readers = AtomicI32::new(0);
        let writers = AtomicI32::new(0);
        let lasts = AtomicUsize::new(0);
        thread::scope(|s| {
            for t in 0..4u64 {
                let (mu, readers, writers, lasts) = (&mu, &readers, &writers, &lasts);
                s.spawn(move || {
                    let mut i = t;
                    loop {
                        i += 1;
                        let (side, held) = match i % 3 {
                            0 => {
                                if !mu.incref() {
                                    return;
                                }
                                if mu.decref() {
                                    lasts.fetch_add(1, Ordering::SeqCst);
                                }
                                continue;
                            }
                            1 => (Side::Read, readers),
                            _ => (Side::Write, writers),
                        };
                        if !mu.rwlock(side) {
                            return;
                        }
                        assert_eq!(held.fetch_add(1, Ordering::SeqCst), 0);
                        thread::yield_now();
                        held.fetch_sub(1, Ordering::SeqCst);
                        if mu.rwunlock(side) {
                            lasts.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
            thread::sleep(Duration::from_micros(200 * round));
            assert!(mu.incref_and_close());
            if mu.decref() {
                lasts.fetch_add(1, Ordering::SeqCst);
            }
        });
        assert_eq!(lasts.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(mu.refs(), 0);
    }
}

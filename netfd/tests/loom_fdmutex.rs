//! Loom model checks of the production lifetime protocol, `fdmutex`.
//!
//! What is checked is the production source itself: this crate includes
//! `src/fd.rs` (the Close protocol: incref/rwlock -> syscall -> decref;
//! close = incref_and_close -> evict -> decref -> final close -> release
//! signal -> close waits), `src/fdmutex.rs` and `src/poll/desc.rs` unchanged,
//! compiled against loom's primitives (`loom_support::sync`), a simulated
//! kernel (`loom_support::sys`) and a loom copy of the poller's two wait
//! loops (`loom_support::poll`; the only code here that is not production's).
//! See `loom_support/mod.rs` for how, and `loom_support/models.rs` for what
//! each model asserts. Every model must pass.
//!
//! Bounds and times: each test states loom's preemption bound and what it
//! cost on the 2-core machine in the test profile (opt-level 1), as printed
//! by `cargo test -p netfd --test loom_fdmutex -- --nocapture`. The whole
//! file: about 17 s with one test thread, 15 s with the default two
//! (`close_returns_after_final_close` is half of it); with
//! `loom_historical` (2 s) the loom suite stays far under its 5-minute
//! budget.
//! `LOOM_MAX_PREEMPTIONS=N` overrides every bound, to search deeper by hand.
//!
//! A failing model prints the commands that replay it (also when the
//! failure is a deadlock that makes loom abort the process):
//! 1. `NETFD_LOOM_CHECKPOINT=/tmp/netfd-loom cargo test -p netfd --test
//!    loom_fdmutex -- --exact <model>` records the failing interleaving in
//!    `/tmp/netfd-loom/loom_fdmutex-<model>.json`;
//! 2. `LOOM_CHECKPOINT_FILE=/tmp/netfd-loom/loom_fdmutex-<model>.json
//!    LOOM_MAX_PREEMPTIONS=<bound> LOOM_LOG=trace LOOM_LOCATION=1 cargo test
//!    -p netfd --test loom_fdmutex -- --exact <model> --nocapture` replays
//!    just that interleaving with loom's trace, and a deadlock report names
//!    the source line each thread is blocked at.
//!
//! Note: `src/error.rs`'s unit tests are compiled into this crate too (they
//! are plain, loom-free tests). A `#[cfg(test)]` module added to
//! `fdmutex.rs`, `poll/desc.rs` or `fd.rs` would also land here and run
//! outside a loom model, where loom's primitives panic: keep unit tests of
//! those files in `tests/`.

#[allow(dead_code)]
#[path = "../src/poll/desc.rs"]
mod desc;
#[allow(dead_code)]
#[path = "../src/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../src/fd.rs"]
mod fd;
#[allow(dead_code)]
#[path = "../src/fdmutex.rs"]
mod fdmutex;
#[allow(dead_code)]
#[path = "../src/probe.rs"]
mod probe;
#[allow(dead_code)]
#[path = "../src/variants/shared.rs"]
mod shared;
/// `crate::variants::shared` is where `fd.rs` finds the operation loop.
mod variants {
    pub(crate) use crate::shared;
}

mod loom_support;

use loom_support::{check, models, poll, sync, sys, EXHAUSTIVE};

use fd::Fd;
use loom_support::models::{Judge, Sock};
use poll::{Dir, WaitPath};
use probe::OwnerId;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// The production protocol as the models drive it: `src/fd.rs`'s `Fd`.
struct Production(Fd);

impl Sock for Production {
    fn new(fd: RawFd, owner: OwnerId, path: WaitPath) -> Self {
        Production(Fd::new(fd, owner, path).expect("Fd::new"))
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn accept(&self, new_owner: OwnerId) -> io::Result<RawFd> {
        self.0.accept(new_owner).map(|(n, _)| n)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.0.set_deadline(dir, deadline)
    }
    fn waiters_left(&self, side: Dir) -> Option<(u64, u32)> {
        Some(self.0.waiters_left(match side {
            Dir::Read => fdmutex::Side::Read,
            Dir::Write => fdmutex::Side::Write,
        }))
    }
}

use WaitPath::{Direct, Server};

// Each test: what it races, loom's preemption bound, and its cost as
// measured on the 2-core machine (test profile, `--test-threads 1`, load
// ~7): interleavings explored and wall time. "Exhaustive" means no bound:
// every interleaving loom's DPOR distinguishes. With 3-4 threads an
// exhaustive search does not fit the budget, so the bound is the largest
// that keeps the model in a few seconds (one more preemption costs 5-10x).

/// Read (data waiting) vs Close. Exhaustive: 324 interleavings, 0.04 s.
#[test]
fn close_vs_read() {
    check("close_vs_read", EXHAUSTIVE, || {
        models::close_vs_read::<Production>(Direct)
    });
}

/// Write (room to send) vs Close. Exhaustive: 324 interleavings, 0.04 s.
#[test]
fn close_vs_write() {
    check("close_vs_write", EXHAUSTIVE, || {
        models::close_vs_write::<Production>(Direct)
    });
}

/// Accept (a connection waiting) vs Close; the accepted number is the
/// lowest free one and must not be the listener's. Exhaustive: 912
/// interleavings, 0.12 s.
#[test]
fn close_vs_accept() {
    check("close_vs_accept", EXHAUSTIVE, || {
        models::close_vs_accept::<Production>(Direct)
    });
}

/// Close vs Close: exactly one wins; the winner returns after the final
/// close (with the poll-server deregistration). Exhaustive: 25
/// interleavings, < 0.01 s.
#[test]
fn close_vs_close() {
    check("close_vs_close", EXHAUSTIVE, || {
        models::close_vs_close::<Production>(Server)
    });
}

/// A read parked on the poll-server path (`Waker::Thread`: arm, then
/// `park()` while armed) vs Close: evict must wake it, no lost wake-up.
/// Exhaustive: 442 interleavings, 0.05 s.
#[test]
fn close_vs_parked_reader_server_path() {
    check("close_vs_parked_reader_server_path", EXHAUSTIVE, || {
        models::close_vs_parked_reader::<Production>(Server, Judge::All)
    });
}

/// The same on the direct path (`Waker::Fd`: ppoll on the socket and the
/// thread's wake eventfd, which Close signals). Exhaustive: 652
/// interleavings, 0.08 s.
#[test]
fn close_vs_parked_reader_direct_path() {
    check("close_vs_parked_reader_direct_path", EXHAUSTIVE, || {
        models::close_vs_parked_reader::<Production>(Direct, Judge::All)
    });
}

/// A parked read and a parked write (3 threads) vs Close: both directions
/// are woken. Bound 3: 13 685 interleavings, 1.9 s (bound 4: 122 305, ~20 s).
#[test]
fn close_vs_parked_reader_and_writer() {
    check("close_vs_parked_reader_and_writer", Some(3), || {
        models::close_vs_parked_reader_and_writer::<Production>(Server)
    });
}

/// A parked read holding the read lock and a read queued on the lock's
/// semaphore (3 threads) vs Close: the queued one is released by
/// `incref_and_close`. Bound 3: 8 265 interleavings, 1.3 s.
#[test]
fn close_vs_parked_and_queued_readers() {
    check("close_vs_parked_and_queued_readers", Some(3), || {
        models::close_vs_parked_and_queued_readers::<Production>(Server)
    });
}

/// A read that waited for its data, then a second read that polls first
/// (production's poll-first hint, direct path), vs data from a peer vs
/// Close (3 threads). Bound 4: 14 773 interleavings, 0.7 s.
#[test]
fn close_vs_poll_first_reader() {
    check("close_vs_poll_first_reader", Some(4), || {
        models::close_vs_poll_first_reader::<Production>(Direct)
    });
}

/// A read parked with a deadline vs the deadline passing (the simulated
/// clock moves, the server's timer calls `expire(dir, seq)`) vs data
/// arriving (`notify_ready`) vs Close: 4 threads. Bound 3: 31 063
/// interleavings, 2.3 s.
#[test]
fn deadline_vs_close_vs_readiness_server_path() {
    check(
        "deadline_vs_close_vs_readiness_server_path",
        Some(3),
        || models::deadline_vs_close_vs_readiness::<Production>(Server),
    );
}

/// The same on the direct path (the deadline is ppoll's timeout on the
/// simulated clock). Bound 3: 34 046 interleavings, 4.4 s.
#[test]
fn deadline_vs_close_vs_readiness_direct_path() {
    check(
        "deadline_vs_close_vs_readiness_direct_path",
        Some(3),
        || models::deadline_vs_close_vs_readiness::<Production>(Direct),
    );
}

/// Expiry by SetDeadline to a past instant vs a parked read vs Close (3
/// threads). Bound 4: 24 317 interleavings, 1.8 s.
#[test]
fn set_deadline_vs_parked_reader_vs_close() {
    check("set_deadline_vs_parked_reader_vs_close", Some(4), || {
        models::set_deadline_vs_parked_reader_vs_close::<Production>(Server)
    });
}

/// Close, then a third thread opens a socket and gets the same number
/// while a read and a write on the old socket are under way. Exhaustive:
/// 6 950 interleavings, 0.4 s.
#[test]
fn reopen_during_io() {
    check("reopen_during_io", EXHAUSTIVE, || {
        models::reopen_during_io::<Production>(Direct, Judge::All)
    });
}

/// Close while a parked read holds a reference and a write runs (3
/// threads): whoever drops the last reference makes the final close, and
/// close() returns only after it. Bound 4: 49 408 interleavings, 7.0 s.
#[test]
fn close_returns_after_final_close() {
    check("close_returns_after_final_close", Some(4), || {
        models::close_returns_after_final_close::<Production>(Server, Judge::All)
    });
}

/// Two readers on one side with a byte each (3 threads): the second queues
/// on the read lock, the first's unlock must hand it on; Close after both.
/// Catches an unlock that forgets the next waiter of the same side (a loom
/// deadlock: only the hand-off can release the queued reader; planting
/// exactly that in `rwunlock` fails this model and the next, and no other).
/// Exhaustive: 207 interleavings, 0.09 s.
#[test]
fn two_readers_hand_off_then_close() {
    check("two_readers_hand_off_then_close", EXHAUSTIVE, || {
        models::two_readers_hand_off_then_close::<Production>(Direct)
    });
}

/// The same for two writers, on the server path. Exhaustive: 207
/// interleavings, 0.17 s.
#[test]
fn two_writers_hand_off_then_close() {
    check("two_writers_hand_off_then_close", EXHAUSTIVE, || {
        models::two_writers_hand_off_then_close::<Production>(Server)
    });
}

/// A parked read whose deadline another thread sets in the past, with no
/// Close to rescue it: SetDeadline must wake it (server path: the waiter
/// slot's thread; direct path: the wake eventfd). A `set_deadline` that
/// stores the deadline without waking the waiter fails both paths' models
/// (and passes every other). Exhaustive: 1 005 interleavings, 0.55 s.
#[test]
fn deadline_set_past_wakes_parked_reader_server_path() {
    check(
        "deadline_set_past_wakes_parked_reader_server_path",
        EXHAUSTIVE,
        || models::deadline_set_past_wakes_parked_reader::<Production>(Server),
    );
}

/// The same on the direct path. Exhaustive: 1 491 interleavings, 0.85 s.
#[test]
fn deadline_set_past_wakes_parked_reader_direct_path() {
    check(
        "deadline_set_past_wakes_parked_reader_direct_path",
        EXHAUSTIVE,
        || models::deadline_set_past_wakes_parked_reader::<Production>(Direct),
    );
}

/// A socket read from and then dropped without Close: the drop releases
/// the number (the kernel's leak check), on the server path, where the drop
/// also leaves the poll server (a `Drop` that skips the close fails it with
/// `leak: still open at the end of the model: fd 3`). Exhaustive: 1
/// interleaving (the read is joined before the drop), < 0.01 s.
#[test]
fn drop_without_close_keeps_no_number() {
    check("drop_without_close_keeps_no_number", EXHAUSTIVE, || {
        models::drop_without_close_keeps_no_number::<Production>(Server)
    });
}

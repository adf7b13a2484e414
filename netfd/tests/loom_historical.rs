//! The loom models must FIND the races of the historical lifetime protocols.
//!
//! The same model bodies that `tests/loom_fdmutex.rs` proves clean for
//! production (`loom_support/models.rs`) run here against loom ports of
//! `src/variants/{naive_close,go2009_closeack,go2009_refcount}.rs`. Each
//! test asserts that loom finds a violation AND that its message names the
//! race (`fd reuse`, `use after close`, `close returned before the final
//! close`, a deadlock for a lost wake-up, ...). If a change to the kernel,
//! the models or loom made them blind, these tests fail.
//!
//! Why ports and not the files themselves: the variants hold `std::sync`
//! atomics and mutexes directly, which loom cannot schedule. The ports below
//! are those files line for line with loom's `AtomicI32`/`AtomicBool`/
//! `Mutex`, and they run the real `src/variants/shared.rs` operation loop,
//! the real `src/poll/desc.rs`, and the loom poller of `loom_support`. If the
//! variants took their primitives from `crate::sync` (as `fdmutex.rs` does),
//! this file could include them as they are; see the loom report.
//!
//! Each model runs in a child process (the test binary re-run with
//! `--exact <test>` and `NETFD_LOOM_EXPECTED_FAILURE_CHILD=1`): a model that
//! deadlocks can make loom abort the process it runs in. Each test states
//! its bound, the message loom stops at, and its time; a failing model stops
//! at its first violation, so the whole file takes about 2 s.
//!
//! To watch one of these races interleaving by interleaving (the test prints
//! these commands under `--nocapture`):
//! 1. `NETFD_LOOM_CHECKPOINT=/tmp/netfd-loom cargo test -p netfd --test
//!    loom_historical -- --exact <test>` records the failing interleaving in
//!    `/tmp/netfd-loom/loom_historical-<test>.json`;
//! 2. `LOOM_CHECKPOINT_FILE=/tmp/netfd-loom/loom_historical-<test>.json
//!    NETFD_LOOM_EXPECTED_FAILURE_CHILD=1 LOOM_LOG=trace LOOM_LOCATION=1
//!    cargo test -p netfd --test loom_historical -- --exact <test>
//!    --nocapture` replays it with loom's trace (add
//!    `LOOM_MAX_PREEMPTIONS=<bound>` for a bounded test).

#[allow(dead_code)]
#[path = "../src/poll/desc.rs"]
mod desc;
#[allow(dead_code)]
#[path = "../src/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../src/probe.rs"]
mod probe;
#[allow(dead_code)]
#[path = "../src/variants/shared.rs"]
mod shared;

mod loom_support;

use loom_support::{expect_violation, models, poll, sync, sys, Bound, EXHAUSTIVE};

use loom::sync::atomic::{AtomicBool, AtomicI32, Ordering::Relaxed};
use loom::sync::{Mutex, MutexGuard};
use loom_support::models::{Judge, Sock};
use poll::{Dir, Poller, WaitPath};
use probe::OwnerId;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `src/variants/naive_close.rs`: the number is a field anyone reads with a
/// relaxed load; Close closes it at once, then stores -1, then wakes
/// parked operations.
struct NaiveClose {
    sysfd: AtomicI32,
    owner: OwnerId,
    rio: Mutex<()>,
    wio: Mutex<()>,
    poller: Poller,
}

impl NaiveClose {
    fn number(&self) -> io::Result<RawFd> {
        match self.sysfd.load(Relaxed) {
            n if n < 0 => Err(error::closed()),
            n => Ok(n),
        }
    }

    fn check(&self) -> io::Result<()> {
        self.number().map(drop)
    }

    fn io<T>(&self, dir: Dir, op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        shared::io_loop(&self.poller, self.owner, dir, || self.number(), op)
    }
}

impl Sock for NaiveClose {
    fn new(fd: RawFd, owner: OwnerId, path: WaitPath) -> Self {
        NaiveClose {
            sysfd: AtomicI32::new(fd),
            owner,
            rio: Mutex::new(()),
            wio: Mutex::new(()),
            poller: Poller::new(path, fd, owner).expect("poller"),
        }
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let _rio = lock(&self.rio);
        self.io(Dir::Read, |fd| sys::read(fd, self.owner, buf))
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let _wio = lock(&self.wio);
        shared::write_all(&self.poller, buf, |rest| {
            self.io(Dir::Write, |fd| sys::write(fd, self.owner, rest))
        })
    }
    fn accept(&self, new_owner: OwnerId) -> io::Result<RawFd> {
        self.check()?;
        self.io(Dir::Read, |fd| sys::accept(fd, self.owner, new_owner))
            .map(|(n, _)| n)
    }
    fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.check()?;
        self.poller.desc().set_deadline(dir, deadline);
        Ok(())
    }
    fn close(&self) -> io::Result<()> {
        let fd = self.number()?;
        let r = sys::close(fd, self.owner);
        self.sysfd.store(-1, Relaxed);
        self.poller.forget();
        self.poller.desc().evict();
        r
    }
}

impl Drop for NaiveClose {
    fn drop(&mut self) {
        if self.sysfd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
    }
}

/// `src/variants/go2009_closeack.rs`: operations load the number
/// optimistically; Close hands the fd to the poll server, which stores -1
/// ("WaitCloseAck"), then closes the saved number. Close wakes nobody.
struct CloseAck {
    sysfd: AtomicI32,
    owner: OwnerId,
    rio: Mutex<()>,
    wio: Mutex<()>,
    poller: Poller,
}

impl CloseAck {
    fn number(&self) -> io::Result<RawFd> {
        match self.sysfd.load(Relaxed) {
            n if n < 0 => Err(error::closed()),
            n => Ok(n),
        }
    }

    fn check(&self) -> io::Result<()> {
        self.number().map(drop)
    }

    fn io<T>(&self, dir: Dir, op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        shared::io_loop(&self.poller, self.owner, dir, || self.number(), op)
    }
}

impl Sock for CloseAck {
    fn new(fd: RawFd, owner: OwnerId, path: WaitPath) -> Self {
        CloseAck {
            sysfd: AtomicI32::new(fd),
            owner,
            rio: Mutex::new(()),
            wio: Mutex::new(()),
            poller: Poller::new(path, fd, owner).expect("poller"),
        }
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let _rio = lock(&self.rio);
        self.io(Dir::Read, |fd| sys::read(fd, self.owner, buf))
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let _wio = lock(&self.wio);
        shared::write_all(&self.poller, buf, |rest| {
            self.io(Dir::Write, |fd| sys::write(fd, self.owner, rest))
        })
    }
    fn accept(&self, new_owner: OwnerId) -> io::Result<RawFd> {
        self.check()?;
        self.io(Dir::Read, |fd| sys::accept(fd, self.owner, new_owner))
            .map(|(n, _)| n)
    }
    fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.poller.desc().set_deadline(dir, deadline);
        Ok(())
    }
    fn close(&self) -> io::Result<()> {
        self.check()?;
        let saved = self.number()?;
        self.sysfd.store(-1, Relaxed);
        sys::close(saved, self.owner)
    }
}

impl Drop for CloseAck {
    fn drop(&mut self) {
        if self.sysfd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
        self.poller.forget();
    }
}

/// `src/variants/go2009_refcount.rs` (Go eb16346): `sysmu` + `sysref`,
/// `closing` stored outside the lock, an unlocked closed check, an incref
/// that never refuses, the final close by whoever's decref ends at zero with
/// `closing` set; Close = check, incref, shutdown, closing = true, decref —
/// it neither waits for the final close nor wakes anyone but through the
/// shutdown's readiness.
struct Refcount {
    sysfd: AtomicI32,
    owner: OwnerId,
    sysref: Mutex<u64>,
    closing: AtomicBool,
    rio: Mutex<()>,
    wio: Mutex<()>,
    poller: Poller,
}

/// Go's deferred `decref`.
struct Ref<'a>(&'a Refcount);

impl Drop for Ref<'_> {
    fn drop(&mut self) {
        self.0.decref();
    }
}

impl Refcount {
    fn check(&self) -> io::Result<()> {
        if self.sysfd.load(Relaxed) < 0 {
            return Err(error::closed());
        }
        Ok(())
    }

    fn incref(&self) -> Ref<'_> {
        *lock(&self.sysref) += 1;
        Ref(self)
    }

    fn decref(&self) {
        let mut sysref = lock(&self.sysref);
        *sysref -= 1;
        let fd = self.sysfd.load(Relaxed);
        if self.closing.load(Relaxed) && *sysref == 0 && fd >= 0 {
            self.poller.deregister(fd, self.owner);
            let _ = sys::close(fd, self.owner);
            self.sysfd.store(-1, Relaxed);
        }
    }

    fn number(&self) -> io::Result<RawFd> {
        Ok(self.sysfd.load(Relaxed))
    }
}

impl Sock for Refcount {
    fn new(fd: RawFd, owner: OwnerId, path: WaitPath) -> Self {
        Refcount {
            sysfd: AtomicI32::new(fd),
            owner,
            sysref: Mutex::new(0),
            closing: AtomicBool::new(false),
            rio: Mutex::new(()),
            wio: Mutex::new(()),
            poller: Poller::new(path, fd, owner).expect("poller"),
        }
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let _rio = lock(&self.rio);
        let _ref = self.incref();
        shared::io_loop(
            &self.poller,
            self.owner,
            Dir::Read,
            || self.number(),
            |fd| sys::read(fd, self.owner, buf),
        )
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let _wio = lock(&self.wio);
        let _ref = self.incref();
        shared::write_all(&self.poller, buf, |rest| {
            shared::io_loop(
                &self.poller,
                self.owner,
                Dir::Write,
                || self.number(),
                |fd| sys::write(fd, self.owner, rest),
            )
        })
    }
    fn accept(&self, new_owner: OwnerId) -> io::Result<RawFd> {
        self.check()?;
        let _ref = self.incref();
        shared::io_loop(
            &self.poller,
            self.owner,
            Dir::Read,
            || self.number(),
            |fd| sys::accept(fd, self.owner, new_owner),
        )
        .map(|(n, _)| n)
    }
    fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.poller.desc().set_deadline(dir, deadline);
        Ok(())
    }
    fn close(&self) -> io::Result<()> {
        self.check()?;
        let r = self.incref();
        let _ = sys::shutdown(
            self.sysfd.load(Relaxed),
            self.owner,
            std::net::Shutdown::Both,
        );
        self.closing.store(true, Relaxed);
        drop(r);
        Ok(())
    }
}

impl Drop for Refcount {
    fn drop(&mut self) {
        if !self.closing.load(Relaxed) && self.sysfd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
    }
}

use WaitPath::{Direct, Server};

/// What the kernel and the models say for each kind of race.
const FD_REUSE: &str = "fd reuse";
const USE_AFTER_CLOSE: &str = "use after close";
const EARLY_RETURN: &str = "close returned before";
const CLOSE_IN_FLIGHT: &str = "close_in_flight";
const LOST_WAKEUP: &str = "deadlock";

fn expect(name: &'static str, bound: Bound, expected: &[&str], model: fn()) {
    expect_violation(name, bound, expected, model);
}

// Each test: the race loom finds first (its message), the bound, and the
// time of the whole test, child process included (2-core machine, test
// profile, `--test-threads 1`). A bound is given only where a blind model
// would otherwise search for minutes before the test could fail.

// ---- naive-close ---------------------------------------------------------

/// The read loaded 3 before Close released it: `call on free fd 3 on behalf of
/// #1 (read): use after close`. 0.10 s. Bound: exhaustive.
#[test]
fn naive_close_vs_read() {
    expect(
        "naive_close_vs_read",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_read::<NaiveClose>(Direct),
    );
}

/// `call on free fd 3 on behalf of #1 (write): use after close`. 0.10 s. Bound:
/// exhaustive.
#[test]
fn naive_close_vs_write() {
    expect(
        "naive_close_vs_write",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_write::<NaiveClose>(Direct),
    );
}

/// `call on free fd 3 on behalf of #1 (accept): use after close`. 0.06 s.
/// Bound: exhaustive.
#[test]
fn naive_close_vs_accept() {
    expect(
        "naive_close_vs_accept",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_accept::<NaiveClose>(Direct),
    );
}

/// Both Closes load 3; the second closes it again: `call on free fd 3 on behalf
/// of #1 (close)`. 0.07 s. Bound: exhaustive.
#[test]
fn naive_close_vs_close() {
    expect(
        "naive_close_vs_close",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_close::<NaiveClose>(Direct),
    );
}

/// Close releases the number a parked read is polling: `close of fd 3 on behalf
/// of #1 while a poll on it is in flight on behalf of #1: close_in_flight`.
/// 0.05 s. Bound: exhaustive.
#[test]
fn naive_close_vs_parked_reader() {
    expect(
        "naive_close_vs_parked_reader",
        EXHAUSTIVE,
        &[CLOSE_IN_FLIGHT],
        || models::close_vs_parked_reader::<NaiveClose>(Direct, Judge::LifetimeOnly),
    );
}

/// `call on free fd 3 on behalf of #1 (read): use after close`. 0.19 s. Bound:
/// bound 2.
#[test]
fn naive_deadline_vs_close_vs_readiness() {
    expect(
        "naive_deadline_vs_close_vs_readiness",
        Some(2),
        &[USE_AFTER_CLOSE],
        || models::deadline_vs_close_vs_readiness::<NaiveClose>(Direct),
    );
}

/// The old socket writes into the new one: `use of fd 3 owned by #2 on behalf
/// of #1 (write): fd reuse`. 0.09 s. Bound: exhaustive.
#[test]
fn naive_reopen_during_io() {
    expect("naive_reopen_during_io", EXHAUSTIVE, &[FD_REUSE], || {
        models::reopen_during_io::<NaiveClose>(Direct, Judge::LifetimeOnly)
    });
}

// ---- go2009-closeack -----------------------------------------------------

/// The optimistic load (the commit's own TODO): `call on free fd 3 on behalf of
/// #1 (read): use after close`. 0.07 s. Bound: exhaustive.
#[test]
fn closeack_close_vs_read() {
    expect(
        "closeack_close_vs_read",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_read::<CloseAck>(Direct),
    );
}

/// `call on free fd 3 on behalf of #1 (write): use after close`. 0.10 s. Bound:
/// exhaustive.
#[test]
fn closeack_close_vs_write() {
    expect(
        "closeack_close_vs_write",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_write::<CloseAck>(Direct),
    );
}

/// `call on free fd 3 on behalf of #1 (accept): use after close`. 0.07 s.
/// Bound: exhaustive.
#[test]
fn closeack_close_vs_accept() {
    expect(
        "closeack_close_vs_accept",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_accept::<CloseAck>(Direct),
    );
}

/// `call on free fd 3 on behalf of #1 (close): use after close`. 0.09 s. Bound:
/// exhaustive.
#[test]
fn closeack_close_vs_close() {
    expect(
        "closeack_close_vs_close",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_close::<CloseAck>(Direct),
    );
}

/// Go #271: Close wakes nobody, the read parked in the poll server sleeps
/// forever: loom reports `deadlock`. 0.08 s. Bound: exhaustive.
#[test]
fn closeack_close_vs_parked_reader() {
    expect(
        "closeack_close_vs_parked_reader",
        EXHAUSTIVE,
        &[LOST_WAKEUP],
        || models::close_vs_parked_reader::<CloseAck>(Server, Judge::LifetimeOnly),
    );
}

/// `call on free fd 3 on behalf of #1 (read): use after close`. 0.09 s. Bound:
/// bound 2.
#[test]
fn closeack_deadline_vs_close_vs_readiness() {
    expect(
        "closeack_deadline_vs_close_vs_readiness",
        Some(2),
        &[USE_AFTER_CLOSE],
        || models::deadline_vs_close_vs_readiness::<CloseAck>(Server),
    );
}

/// `use of fd 3 owned by #2 on behalf of #1 (read): fd reuse`. 0.05 s. Bound:
/// exhaustive.
#[test]
fn closeack_reopen_during_io() {
    expect("closeack_reopen_during_io", EXHAUSTIVE, &[FD_REUSE], || {
        models::reopen_during_io::<CloseAck>(Direct, Judge::LifetimeOnly)
    });
}

// ---- go2009-refcount -----------------------------------------------------

/// The unlocked check passed, Close ran to the end, the incref that never
/// refuses let the read pass -1 to the kernel (raw EBADF): `call on free fd -1
/// on behalf of #1 (read): use after close`. 0.16 s. Bound: exhaustive.
#[test]
fn refcount_close_vs_read() {
    expect(
        "refcount_close_vs_read",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_read::<Refcount>(Direct),
    );
}

/// `call on free fd -1 on behalf of #1 (write): use after close`. 0.09 s.
/// Bound: exhaustive.
#[test]
fn refcount_close_vs_write() {
    expect(
        "refcount_close_vs_write",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_write::<Refcount>(Direct),
    );
}

/// `call on free fd -1 on behalf of #1 (accept): use after close`. 0.07 s.
/// Bound: exhaustive.
#[test]
fn refcount_close_vs_accept() {
    expect(
        "refcount_close_vs_accept",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_accept::<Refcount>(Direct),
    );
}

/// The second Close shuts down -1: `call on free fd -1 on behalf of #1
/// (shutdown): use after close`. 0.05 s. Bound: exhaustive.
#[test]
fn refcount_close_vs_close() {
    expect(
        "refcount_close_vs_close",
        EXHAUSTIVE,
        &[USE_AFTER_CLOSE],
        || models::close_vs_close::<Refcount>(Direct),
    );
}

/// Go #10527: the parked read's reference keeps the number open after Close
/// returned: `close() of #1 returned while fd 3 is still open (owned by #1):
/// close returned before the final close`. 0.07 s. Bound: exhaustive.
#[test]
fn refcount_close_vs_parked_reader() {
    expect(
        "refcount_close_vs_parked_reader",
        EXHAUSTIVE,
        &[EARLY_RETURN],
        || models::close_vs_parked_reader::<Refcount>(Server, Judge::LifetimeOnly),
    );
}

/// `close() of #1 returned while fd 3 is still open (owned by #1)`. 0.16 s.
/// Bound: bound 3.
#[test]
fn refcount_close_returns_after_final_close() {
    expect(
        "refcount_close_returns_after_final_close",
        Some(3),
        &[EARLY_RETURN],
        || models::close_returns_after_final_close::<Refcount>(Server, Judge::LifetimeOnly),
    );
}

/// `call on free fd -1 on behalf of #1 (read): use after close`. 0.12 s. Bound:
/// bound 2.
#[test]
fn refcount_deadline_vs_close_vs_readiness() {
    expect(
        "refcount_deadline_vs_close_vs_readiness",
        Some(2),
        &[USE_AFTER_CLOSE],
        || models::deadline_vs_close_vs_readiness::<Refcount>(Server),
    );
}

/// Close returns with the number still held, so the reopened socket cannot get
/// it: `close() of #1 returned while fd 3 is still open`. (No reuse: the number
/// is loaded after incref, under `sysmu`.) 0.09 s. Bound: exhaustive.
#[test]
fn refcount_reopen_during_io() {
    expect(
        "refcount_reopen_during_io",
        EXHAUSTIVE,
        &[EARLY_RETURN],
        || models::reopen_during_io::<Refcount>(Direct, Judge::LifetimeOnly),
    );
}

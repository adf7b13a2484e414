//! The model bodies, written once against [`Sock`] and run for every
//! protocol: production `fdmutex` (`tests/loom_fdmutex.rs`, where every
//! model must pass) and the historical ones (`tests/loom_historical.rs`,
//! where the models must find their races).
//!
//! Every model checks, besides its own assertions:
//! - every syscall's number belongs to the caller (the kernel panics with the
//!   owner ids otherwise);
//! - when `close()` returns Ok, the number is released
//!   ([`Kernel::close_returned`](super::kernel::Kernel::close_returned)), so
//!   any later syscall of the socket is caught as a use after close or reuse;
//! - an operation racing Close returns its result or the closed error, a
//!   parked one is woken (loom reports a deadlock otherwise);
//! - nothing leaks.

use super::kernel::File;
use super::poll::{Dir, WaitPath};
use super::{at, world, ACCEPTED, REOPENED, SOCK};
use crate::error;
use crate::probe::OwnerId;
use loom::thread;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

/// A lifetime protocol, as the models drive it.
pub trait Sock: Send + Sync + Sized + 'static {
    /// Wrap the open number `fd`, owned by `owner`.
    fn new(fd: RawFd, owner: OwnerId, path: WaitPath) -> Self;
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Accept one connection; the returned number belongs to `new_owner`.
    fn accept(&self, new_owner: OwnerId) -> io::Result<RawFd>;
    fn close(&self) -> io::Result<()>;
    fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()>;
    /// The lock waiters of `side` (reads or writes) still counted and the
    /// lock's wake-up permits nobody took, for a protocol that keeps them
    /// (production's fdmutex); `None` for one that does not. Both must be 0
    /// once every operation has returned.
    fn waiters_left(&self, _side: Dir) -> Option<(u64, u32)> {
        None
    }
}

/// Once both ops of `side` have returned, no waiter is still counted and no
/// wake-up permit is left over: an unlock that hands the lock on must
/// uncount the waiter it wakes, or every later waiter of the side wakes for
/// nothing (and loops).
fn assert_lock_idle<S: Sock>(s: &S, side: Dir, what: &str) {
    if let Some(left) = s.waiters_left(side) {
        assert_eq!(
            left,
            (0, 0),
            "netfd-loom: after {what} returned, the {side:?} lock still counts waiters / holds \
             wake-up permits (waiters, permits): the unlock that handed the lock on did not \
             uncount its waiter"
        );
    }
}

/// What a model fails on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    /// Everything: every call's number, the results of the racing
    /// operations, the lifetime properties below.
    All,
    /// Only the number's lifetime: fd reuse, close of a number a call is
    /// blocked on, close returning before the final close, lost wake-ups
    /// (deadlock), leaks. A call on a free number gets EBADF as from the
    /// real kernel, and results are not judged. For showing one specific
    /// race of a historical protocol that also gets simpler things wrong
    /// (which loom would otherwise find first).
    LifetimeOnly,
}

impl Judge {
    fn setup(self) {
        if self == Judge::LifetimeOnly {
            world().kernel.reuse_only();
        }
    }
}

/// The deadline the deadline models arm; the clock starts at [`at(0)`](at).
pub const DEADLINE_SECS: u64 = 10;

fn open<S: Sock>(file: File, path: WaitPath) -> (RawFd, Arc<S>) {
    let fd = world().kernel.open(SOCK, file);
    (fd, Arc::new(S::new(fd, SOCK, path)))
}

/// Close; if this Close won, the number must be gone when it returns.
fn close<S: Sock>(s: &S, fd: RawFd) -> io::Result<()> {
    let r = s.close();
    if r.is_ok() {
        world().kernel.close_returned(fd, SOCK);
    }
    r
}

#[track_caller]
fn ok_or_closed<T: std::fmt::Debug>(what: &str, r: io::Result<T>, ok: impl Fn(&T) -> bool) {
    match r {
        Ok(v) if ok(&v) => {}
        Err(e) if error::is_closed(&e) => {}
        other => panic!(
            "netfd-loom: {what} racing close returned {other:?}; expected its result or \
             the closed error"
        ),
    }
}

#[track_caller]
fn closed(what: &str, r: io::Result<usize>) {
    match r {
        Err(e) if error::is_closed(&e) => {}
        other => panic!(
            "netfd-loom: {what} parked across close returned {other:?}; expected the closed error"
        ),
    }
}

fn spawn<S: Sock, T: 'static>(
    s: &Arc<S>,
    f: impl FnOnce(&S) -> T + 'static,
) -> thread::JoinHandle<T> {
    let s = s.clone();
    thread::spawn(move || f(&s))
}

fn finish<S: Sock>(s: Arc<S>) {
    drop(s);
    world().kernel.assert_no_leaks();
}

/// A read with data waiting races Close.
pub fn close_vs_read<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::stream(1), path);
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    close(&*s, fd).expect("close");
    ok_or_closed("read", r.join().unwrap(), |&n| n > 0);
    finish(s);
}

/// A write with room in the send buffer races Close.
pub fn close_vs_write<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::stream(0), path);
    let w = spawn(&s, |s| s.write(b"hi"));
    close(&*s, fd).expect("close");
    ok_or_closed("write", w.join().unwrap(), |&n| n == 2);
    finish(s);
}

/// An accept with a connection waiting races Close; the accepted number is
/// the new connection's and is closed by it.
pub fn close_vs_accept<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::Listener { backlog: 1 }, path);
    let a = spawn(&s, |s| {
        let r = s.accept(ACCEPTED);
        if let Ok(n) = r {
            crate::sys::close(n, ACCEPTED).unwrap();
        }
        r
    });
    close(&*s, fd).expect("close");
    ok_or_closed("accept", a.join().unwrap(), |_| true);
    finish(s);
}

/// Two Closes: exactly one wins, the other gets the closed error.
pub fn close_vs_close<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::stream(0), path);
    let c = spawn(&s, move |s| close(s, fd));
    let mine = close(&*s, fd);
    let theirs = c.join().unwrap();
    let wins = [&mine, &theirs].iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        wins, 1,
        "netfd-loom: two closes: {mine:?} and {theirs:?}; exactly one must win"
    );
    for r in [mine, theirs] {
        ok_or_closed("close", r, |_| true);
    }
    finish(s);
}

/// A read parked for data that never comes: Close must wake it (loom
/// reports a deadlock if the wake-up is lost) with the closed error.
pub fn close_vs_parked_reader<S: Sock>(path: WaitPath, judge: Judge) {
    judge.setup();
    let (fd, s) = open::<S>(File::EMPTY_STREAM, path);
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    close(&*s, fd).expect("close");
    let r = r.join().unwrap();
    if judge == Judge::All {
        closed("read", r);
    }
    finish(s);
}

/// A parked reader and a parked writer: Close wakes both directions.
pub fn close_vs_parked_reader_and_writer<S: Sock>(path: WaitPath) {
    let file = File::Stream {
        data: 0,
        shut: false,
        send_full: true,
    };
    let (fd, s) = open::<S>(file, path);
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    let w = spawn(&s, |s| s.write(b"hi"));
    close(&*s, fd).expect("close");
    closed("read", r.join().unwrap());
    closed("write", w.join().unwrap());
    finish(s);
}

/// One read parked for data holds the read lock; a second read queues for
/// the lock (fdmutex parks it on the lock's semaphore). Close must fail
/// both: the parked one through the poll descriptor, the queued one through
/// the lock.
pub fn close_vs_parked_and_queued_readers<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::EMPTY_STREAM, path);
    let r1 = spawn(&s, |s| s.read(&mut [0; 4]));
    let r2 = spawn(&s, |s| s.read(&mut [0; 4]));
    close(&*s, fd).expect("close");
    closed("read", r1.join().unwrap());
    closed("queued read", r2.join().unwrap());
    finish(s);
}

/// A read that had to wait for its data, then a second read, which (on the
/// direct path) polls before it tries; data arrives from a peer; Close
/// races both. The second read can only end with the closed error.
pub fn close_vs_poll_first_reader<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::EMPTY_STREAM, path);
    let r = spawn(&s, |s| {
        let first = s.read(&mut [0; 4]);
        let second = first.is_ok().then(|| s.read(&mut [0; 4]));
        (first, second)
    });
    let peer = thread::spawn(|| {
        let w = world();
        w.kernel.peer_send(SOCK, 1);
        w.server.dispatch(SOCK, Dir::Read);
    });
    close(&*s, fd).expect("close");
    let (first, second) = r.join().unwrap();
    ok_or_closed("read", first, |&n| n == 1);
    if let Some(second) = second {
        closed("second read", second);
    }
    peer.join().unwrap();
    finish(s);
}

/// A read parked with a deadline, while the deadline passes (the poll
/// server's timer fires `expire(dir, seq)`; on the direct path the poll
/// times out), data arrives (the poll server delivers readiness) and Close
/// runs. The read returns data, the timeout or the closed error; never
/// hangs.
pub fn deadline_vs_close_vs_readiness<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::EMPTY_STREAM, path);
    s.set_deadline(Dir::Read, Some(at(DEADLINE_SECS)))
        .expect("set deadline");
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    let timer = thread::spawn(|| {
        let w = world();
        w.advance_clock(at(DEADLINE_SECS));
        w.server.fire_due();
    });
    let peer = thread::spawn(|| {
        let w = world();
        w.kernel.peer_send(SOCK, 1);
        w.server.dispatch(SOCK, Dir::Read);
    });
    close(&*s, fd).expect("close");
    match r.join().unwrap() {
        Ok(n) if n > 0 => {}
        Err(e) if error::is_closed(&e) || error::is_timeout(&e) => {}
        other => panic!(
            "netfd-loom: read with a deadline racing close and data returned {other:?}; \
             expected data, the timeout or the closed error"
        ),
    }
    timer.join().unwrap();
    peer.join().unwrap();
    finish(s);
}

/// A read parked without a deadline while another thread sets one in the
/// past (expiry by SetDeadline) and Close runs: the read fails with the
/// timeout or the closed error.
pub fn set_deadline_vs_parked_reader_vs_close<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::EMPTY_STREAM, path);
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    let d = spawn(&s, |s| s.set_deadline(Dir::Read, Some(at(0))));
    close(&*s, fd).expect("close");
    match r.join().unwrap() {
        Err(e) if error::is_closed(&e) || error::is_timeout(&e) => {}
        other => panic!(
            "netfd-loom: parked read racing an expired deadline and close returned \
             {other:?}; expected the timeout or the closed error"
        ),
    }
    ok_or_closed("set_deadline", d.join().unwrap(), |_| true);
    finish(s);
}

/// Close returns; a third thread opens a socket and gets the SAME number
/// (lowest free) while a read and then a write on the old socket are under
/// way. Neither may touch the new socket's number.
pub fn reopen_during_io<S: Sock>(path: WaitPath, judge: Judge) {
    judge.setup();
    let (fd, s) = open::<S>(File::stream(1), path);
    let io = spawn(&s, move |s| {
        let r = s.read(&mut [0; 4]);
        let w = s.write(b"hi");
        if judge == Judge::All {
            ok_or_closed("read", r, |&n| n > 0);
            ok_or_closed("write", w, |&n| n == 2);
        }
    });
    close(&*s, fd).expect("close");
    let reopen = thread::spawn(move || {
        let k = &world().kernel;
        let n = k.open(REOPENED, File::stream(1));
        assert_eq!(
            n, fd,
            "netfd-loom: a socket opened after close() returned got fd {n}, not the \
             closed fd {fd}: close returned before releasing it"
        );
        crate::sys::read(n, REOPENED, &mut [0; 4]).unwrap();
        crate::sys::write(n, REOPENED, b"new").unwrap();
        crate::sys::close(n, REOPENED).unwrap();
    });
    io.join().unwrap();
    reopen.join().unwrap();
    finish(s);
}

/// Close while a parked read holds a reference and a write runs: whoever
/// drops the last reference makes the final close, and close() returns only
/// after it (checked by [`close`] through the kernel).
pub fn close_returns_after_final_close<S: Sock>(path: WaitPath, judge: Judge) {
    judge.setup();
    let (fd, s) = open::<S>(File::EMPTY_STREAM, path);
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    let w = spawn(&s, |s| s.write(b"hi"));
    close(&*s, fd).expect("close");
    let (r, w) = (r.join().unwrap(), w.join().unwrap());
    if judge == Judge::All {
        closed("read", r);
        ok_or_closed("write", w, |&n| n == 2);
    }
    finish(s);
}

/// Two readers on one side, data for both: the second queues on the read
/// lock while the first holds it, and the first's unlock must hand the lock
/// on (an unlock that forgets the next waiter of the same side leaves it
/// queued forever: a loom deadlock). Close runs once both have read, so
/// nothing but the hand-off can release the queued reader.
pub fn two_readers_hand_off_then_close<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::stream(2), path);
    let r1 = spawn(&s, |s| s.read(&mut [0; 1]));
    let r2 = spawn(&s, |s| s.read(&mut [0; 1]));
    for (what, r) in [("first read", r1), ("second read", r2)] {
        match r.join().unwrap() {
            Ok(1) => {}
            other => panic!(
                "netfd-loom: {what} of two on one side with a byte each returned {other:?}; \
                 expected 1 byte"
            ),
        }
    }
    assert_lock_idle(&*s, Dir::Read, "two reads");
    close(&*s, fd).expect("close");
    finish(s);
}

/// The same for two writers (room in the send buffer for both).
pub fn two_writers_hand_off_then_close<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::stream(0), path);
    let w1 = spawn(&s, |s| s.write(b"a"));
    let w2 = spawn(&s, |s| s.write(b"b"));
    for (what, w) in [("first write", w1), ("second write", w2)] {
        match w.join().unwrap() {
            Ok(1) => {}
            other => {
                panic!("netfd-loom: {what} of two on one side returned {other:?}; expected 1 byte")
            }
        }
    }
    assert_lock_idle(&*s, Dir::Write, "two writes");
    close(&*s, fd).expect("close");
    finish(s);
}

/// A read parked for data that never comes; another thread sets its
/// deadline in the past. The change must wake it to re-evaluate and fail
/// with the timeout: no Close, no data and no timer can end the read
/// otherwise (a deadline stored without a wake-up is a loom deadlock).
/// Close runs after the read has returned.
pub fn deadline_set_past_wakes_parked_reader<S: Sock>(path: WaitPath) {
    let (fd, s) = open::<S>(File::EMPTY_STREAM, path);
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    let d = spawn(&s, |s| s.set_deadline(Dir::Read, Some(at(0))));
    d.join().unwrap().expect("set_deadline");
    match r.join().unwrap() {
        Err(e) if error::is_timeout(&e) => {}
        other => panic!(
            "netfd-loom: parked read whose deadline was set in the past returned {other:?}; \
             expected the timeout"
        ),
    }
    close(&*s, fd).expect("close");
    finish(s);
}

/// A socket used and then dropped without Close: dropping the last handle
/// must release the number (the kernel's leak check fails otherwise), after
/// a read that found data, so that the drop runs with the lock word back at
/// rest.
pub fn drop_without_close_keeps_no_number<S: Sock>(path: WaitPath) {
    let (_fd, s) = open::<S>(File::stream(1), path);
    let r = spawn(&s, |s| s.read(&mut [0; 4]));
    assert!(
        matches!(r.join().unwrap(), Ok(1)),
        "netfd-loom: read with a byte waiting did not return it"
    );
    finish(s);
}

//! `fdmutex`: the production lifetime protocol.
//!
//! Every operation takes its reference through the [`FdMutex`] (reads and
//! writes take the side's lock, which also serialises them), uses the number
//! only while it holds it, and drops it at the end. Close:
//!
//! 1. `incref_and_close` — sets the closed bit; the first Close wins, a second
//!    gets the closed error; no operation can take a reference from now on;
//!    lock waiters wake and fail.
//! 2. evict — wakes every operation parked in the poll descriptor; they see
//!    `closing` and return the closed error, dropping their references.
//! 3. decref — whoever drops the last reference (Close itself, or the last
//!    operation to leave) deregisters from the poll server and closes the
//!    number, then signals `destroyed`.
//! 4. Close waits for `destroyed`, so when it returns the number is released
//!    (Go #10527, #21856: re-listening on the port right away succeeds).
//!
//! No syscall ever receives the number outside a reference, so none can reach
//! a number the kernel has given to someone else.

use crate::error;
use crate::fdmutex::{FdMutex, Side};
use crate::poll::{Dir, Poller, WaitPath};
use crate::probe::{self, OwnerId, SyncPoint};
use crate::sync::{Condvar, Mutex};
use crate::sys::{self, SockAddr};
use crate::variants::shared;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// One released-or-not flag Close can wait on.
#[derive(Default)]
struct Released {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Released {
    fn signal(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }
    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub(crate) struct Fd {
    sysfd: RawFd,
    owner: OwnerId,
    mu: FdMutex,
    poller: Poller,
    released: Released,
}

/// A held reference; dropping it releases it (and the number, if last).
struct Ref<'a> {
    fd: &'a Fd,
    side: Option<Side>,
}

impl Drop for Ref<'_> {
    fn drop(&mut self) {
        let last = match self.side {
            Some(side) => self.fd.mu.rwunlock(side),
            None => self.fd.mu.decref(),
        };
        if last {
            self.fd.destroy();
        }
    }
}

impl Fd {
    pub(crate) fn new(sysfd: RawFd, owner: OwnerId, path: WaitPath) -> io::Result<Fd> {
        let poller = Poller::new(path, sysfd, owner)?;
        Ok(Fd {
            sysfd,
            owner,
            mu: FdMutex::new(),
            poller,
            released: Released::default(),
        })
    }

    fn acquire(&self, side: Option<Side>) -> io::Result<Ref<'_>> {
        probe::sync_point(SyncPoint::AfterClosedCheck, self.owner);
        let ok = match side {
            Some(side) => self.mu.rwlock(side),
            None => self.mu.incref(),
        };
        if !ok {
            return Err(error::closed());
        }
        probe::sync_point(SyncPoint::AfterIncref, self.owner);
        Ok(Ref { fd: self, side })
    }

    fn destroy(&self) {
        probe::sync_point(SyncPoint::BeforeFinalClose, self.owner);
        self.poller.deregister(self.sysfd, self.owner);
        // The number is released whatever close(2) reports.
        let _ = sys::close(self.sysfd, self.owner);
        self.released.signal();
    }

    /// Run `op` until it stops reporting EAGAIN, parking in between. The
    /// number is a constant here: the caller's reference keeps it ours.
    #[inline]
    fn io_loop<T>(&self, dir: Dir, op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        shared::io_loop(&self.poller, self.owner, dir, || Ok(self.sysfd), op)
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let _r = self.acquire(Some(Side::Read))?;
        self.io_loop(Dir::Read, |fd| sys::read(fd, self.owner, buf))
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let _r = self.acquire(Some(Side::Write))?;
        shared::write_all(&self.poller, buf, |rest| {
            self.io_loop(Dir::Write, |fd| sys::write(fd, self.owner, rest))
        })
    }

    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        let _r = self.acquire(Some(Side::Read))?;
        self.io_loop(Dir::Read, |fd| sys::recv_from(fd, self.owner, buf))
    }

    pub(crate) fn send_to(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        let _r = self.acquire(Some(Side::Write))?;
        self.io_loop(Dir::Write, |fd| sys::send_to(fd, self.owner, buf, addr))
    }

    /// Run `op` under the read side, waiting for readability between
    /// attempts (peek, recv, readv: the reads that are not plain read(2)).
    pub(crate) fn read_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        let _r = self.acquire(Some(Side::Read))?;
        self.io_loop(Dir::Read, |fd| op(fd, self.owner))
    }

    /// Run `op` once to completion under the write side (a datagram send, a
    /// vectored write: one syscall's worth, no write-all loop).
    pub(crate) fn write_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        let _r = self.acquire(Some(Side::Write))?;
        self.io_loop(Dir::Write, |fd| op(fd, self.owner))
    }

    pub(crate) fn accept(&self, new_owner: OwnerId) -> io::Result<(RawFd, SockAddr)> {
        let _r = self.acquire(Some(Side::Read))?;
        self.io_loop(Dir::Read, |fd| sys::accept(fd, self.owner, new_owner))
    }

    pub(crate) fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        let _r = self.acquire(Some(Side::Write))?;
        if shared::connect_started(self.sysfd, self.owner, addr)? {
            return Ok(());
        }
        // Writable means the handshake finished, one way or the other.
        self.io_loop(Dir::Write, |fd| shared::connect_finished(fd, self.owner))
    }

    /// Run `f` with the number, under a reference (socket options, names).
    pub(crate) fn control<T>(
        &self,
        f: impl FnOnce(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        let _r = self.acquire(None)?;
        f(self.sysfd, self.owner)
    }

    pub(crate) fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        // A deadline on a closed socket is an error, as every other use.
        let _r = self.acquire(None)?;
        self.poller.desc().set_deadline(dir, deadline);
        probe::sync_point(SyncPoint::AfterSetDeadline, self.owner);
        Ok(())
    }

    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        if !self.mu.incref_and_close() {
            return Err(error::closed());
        }
        probe::sync_point(SyncPoint::BeforeEvict, self.owner);
        self.poller.desc().evict();
        drop(Ref {
            fd: self,
            side: None,
        });
        self.released.wait();
        probe::sync_point(SyncPoint::BeforeCloseReturn, self.owner);
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.mu.is_closed()
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // Nobody else can hold a reference now; a socket never closed is
        // closed here, as std's types do.
        if !self.mu.is_closed() {
            let _ = self.close();
        }
    }
}

// Kept below the operations so that adding it moved no line the mutation
// runs name (`ci/mutants-equivalent.txt` cites mutants by line).
impl Fd {
    /// The lock-waiter bookkeeping of `side`, [`FdMutex::waiters_left`]
    /// (the loom models check it once every operation has returned).
    #[allow(dead_code)]
    pub(crate) fn waiters_left(&self, side: Side) -> (u64, u32) {
        self.mu.waiters_left(side)
    }
}

//! `go2009-refcount`: a port of Go commit eb16346 "net: fix netFD.Close
//! races" (CL 163052, December 2009), residual races intact.
//!
//! The Go code, field for field:
//! - `sysmu` + `sysref`: a mutex-protected reference count.
//! - `closing`: set by Close *without* `sysmu` (an [`AtomicBool`] here, so the
//!   unsynchronised write is a relaxed store, not undefined behaviour).
//! - `sysfd` / `sysfile`: the number, and the `*os.File` whose `nil` meant
//!   "closed". Both are the one [`AtomicI32`] `sysfd` here: `-1` stands for
//!   `sysfile == nil`; decref's final close stores it, under `sysmu`.
//! - `rio` / `wio`: one mutex per direction, taken before the reference.
//!
//! Protocol (the Go code's, not a correct one):
//! - An operation checks `sysfd < 0` *without* `sysmu` (the `sysfile == nil`
//!   check), then takes its direction lock, then `incref`s — which never
//!   refuses — and loads `sysfd` before each syscall.
//! - Close: the same unlocked check, `incref`, shutdown(2) of the number,
//!   `closing = true`, `decref`. Whoever's decref leaves the count at zero
//!   with `closing` set closes the number and stores -1. Close does not wait
//!   for that, and wakes nobody: a parked operation wakes only if the
//!   shutdown makes its socket ready.
//!
//! Consequences (the crate docs list them with the sync points that open
//! them): an operation that passed the unlocked check before Close ran to
//! the end increfs anyway and passes -1 to the kernel (raw EBADF); Close
//! returns while an operation's reference keeps the number open; a parked
//! operation returns whatever the shut-down socket says (EOF, EPIPE, EINVAL)
//! or, where shutdown makes it ready only once, parks again.
//!
//! Two deliberate translations: the unlocked check fails with netfd's closed
//! error (Go's `os.EINVAL` of the time meant exactly that), so only the race
//! itself — never a plain use after Close — shows a raw errno; and
//! `SetNonblock(fd, false)` before the final close (for SO_LINGER) is left
//! out, as it changes nothing in the race and would let a stray read block in
//! the kernel forever.

use super::shared::{self, lock};
use crate::error;
use crate::poll::{Dir, Poller, WaitPath};
use crate::probe::{self, OwnerId, SyncPoint};
use crate::sys::{self, SockAddr};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

pub(crate) struct Go2009Refcount {
    sysfd: AtomicI32,
    owner: OwnerId,
    /// `sysmu` guarding `sysref`.
    sysref: Mutex<u64>,
    closing: AtomicBool,
    rio: Mutex<()>,
    wio: Mutex<()>,
    poller: Poller,
}

/// A reference taken by `incref`; dropping it is Go's deferred `decref`.
struct Ref<'a>(&'a Go2009Refcount);

impl Drop for Ref<'_> {
    fn drop(&mut self) {
        self.0.decref();
    }
}

impl Go2009Refcount {
    pub(crate) fn new(sysfd: RawFd, owner: OwnerId, path: WaitPath) -> io::Result<Self> {
        Ok(Go2009Refcount {
            sysfd: AtomicI32::new(sysfd),
            owner,
            sysref: Mutex::new(0),
            closing: AtomicBool::new(false),
            rio: Mutex::new(()),
            wio: Mutex::new(()),
            poller: Poller::new(path, sysfd, owner)?,
        })
    }

    /// Go's `if fd.sysfile == nil { return os.EINVAL }`: no lock, no reference.
    fn check(&self) -> io::Result<()> {
        if self.sysfd.load(Relaxed) < 0 {
            return Err(error::closed());
        }
        probe::sync_point(SyncPoint::AfterClosedCheck, self.owner);
        Ok(())
    }

    /// Never refuses, whatever `closing` says.
    fn incref(&self) -> Ref<'_> {
        *lock(&self.sysref) += 1;
        probe::sync_point(SyncPoint::AfterIncref, self.owner);
        Ref(self)
    }

    fn decref(&self) {
        let mut sysref = lock(&self.sysref);
        *sysref -= 1;
        let fd = self.sysfd.load(Relaxed);
        if self.closing.load(Relaxed) && *sysref == 0 && fd >= 0 {
            // As in Go, the final close runs with sysmu held.
            probe::sync_point(SyncPoint::BeforeFinalClose, self.owner);
            self.poller.deregister(fd, self.owner);
            let _ = sys::close(fd, self.owner);
            probe::sync_point(SyncPoint::AfterCloseSyscall, self.owner);
            self.sysfd.store(-1, Relaxed);
        }
    }

    /// Go loads `fd.sysfd` (or `fd.sysfile`) afresh for every syscall.
    fn number(&self) -> io::Result<RawFd> {
        Ok(self.sysfd.load(Relaxed))
    }

    /// The shared I/O loop on the number as loaded before each attempt.
    fn io<T>(&self, dir: Dir, op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        shared::io_loop(&self.poller, self.owner, dir, || self.number(), op)
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let _rio = lock(&self.rio);
        let _ref = self.incref();
        self.io(Dir::Read, |fd| sys::read(fd, self.owner, buf))
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let _wio = lock(&self.wio);
        let _ref = self.incref();
        shared::write_all(&self.poller, buf, |rest| {
            self.io(Dir::Write, |fd| sys::write(fd, self.owner, rest))
        })
    }

    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        self.check()?;
        let _rio = lock(&self.rio);
        let _ref = self.incref();
        self.io(Dir::Read, |fd| sys::recv_from(fd, self.owner, buf))
    }

    pub(crate) fn send_to(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        self.check()?;
        let _wio = lock(&self.wio);
        let _ref = self.incref();
        self.io(Dir::Write, |fd| sys::send_to(fd, self.owner, buf, addr))
    }

    /// Reads that are not plain read(2) (peek, recv, readv), as Read.
    pub(crate) fn read_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        self.check()?;
        let _rio = lock(&self.rio);
        let _ref = self.incref();
        self.io(Dir::Read, |fd| op(fd, self.owner))
    }

    /// One send or vectored write, as Write without the write-all loop.
    pub(crate) fn write_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        self.check()?;
        let _wio = lock(&self.wio);
        let _ref = self.incref();
        self.io(Dir::Write, |fd| op(fd, self.owner))
    }

    /// Go's `accept` took a reference but no direction lock.
    pub(crate) fn accept(&self, new_owner: OwnerId) -> io::Result<(RawFd, SockAddr)> {
        self.check()?;
        let _ref = self.incref();
        self.io(Dir::Read, |fd| sys::accept(fd, self.owner, new_owner))
    }

    /// Go connected before the descriptor became a netFD; here connect is one
    /// more referenced operation, with Read's check-then-incref window.
    pub(crate) fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        self.check()?;
        let _wio = lock(&self.wio);
        let _ref = self.incref();
        if shared::connect_started(self.sysfd.load(Relaxed), self.owner, addr)? {
            return Ok(());
        }
        self.io(Dir::Write, |fd| shared::connect_finished(fd, self.owner))
    }

    /// Socket options: Go's `setReadBuffer` & co. (incref, syscall, decref).
    pub(crate) fn control<T>(
        &self,
        f: impl FnOnce(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        self.check()?;
        let _ref = self.incref();
        f(self.sysfd.load(Relaxed), self.owner)
    }

    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    /// Go's `setReadTimeout` touched neither the reference nor the check.
    pub(crate) fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.poller.desc().set_deadline(dir, deadline);
        probe::sync_point(SyncPoint::AfterSetDeadline, self.owner);
        Ok(())
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        self.check()?;
        let r = self.incref();
        // Go ignored shutdown's result (ENOTCONN on an unconnected socket).
        let _ = sys::shutdown(
            self.sysfd.load(Relaxed),
            self.owner,
            std::net::Shutdown::Both,
        );
        probe::sync_point(SyncPoint::AfterShutdown, self.owner);
        self.closing.store(true, Relaxed);
        drop(r);
        probe::sync_point(SyncPoint::BeforeCloseReturn, self.owner);
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closing.load(Relaxed) || self.sysfd.load(Relaxed) < 0
    }
}

impl Drop for Go2009Refcount {
    fn drop(&mut self) {
        // Nobody holds a reference any more: Close's decref is the last one.
        if !self.closing.load(Relaxed) && self.sysfd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
    }
}

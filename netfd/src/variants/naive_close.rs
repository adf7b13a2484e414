//! `naive-close`: the plain mistake found in real code — the number is a
//! field anyone may read at any time, and Close releases it at once.
//!
//! Protocol (none): `sysfd` is an [`AtomicI32`] read with a relaxed load and
//! no reference. An operation loads it before each syscall and uses it if it
//! is not -1. Close loads it, calls close(2), and only then stores -1; then
//! it wakes parked operations (they see the socket closed).
//!
//! Consequences: an operation that loaded the number before close(2) uses it
//! afterwards; an operation that starts between close(2) and the store of -1
//! loads the already-released number. Either one lands on a closed number
//! (EBADF) or on whatever socket the kernel has given that number since — its
//! bytes are read, or ours are written into its connection.
//!
//! Same-direction operations are serialised by a mutex each, and Close wakes
//! parked operations, so that the one thing wrong here is the number.

use super::shared::{self, lock};
use crate::error;
use crate::poll::{Dir, Poller, WaitPath};
use crate::probe::{self, OwnerId, SyncPoint};
use crate::sys::{self, SockAddr};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

pub(crate) struct NaiveClose {
    sysfd: AtomicI32,
    owner: OwnerId,
    rio: Mutex<()>,
    wio: Mutex<()>,
    poller: Poller,
}

impl NaiveClose {
    pub(crate) fn new(sysfd: RawFd, owner: OwnerId, path: WaitPath) -> io::Result<Self> {
        Ok(NaiveClose {
            sysfd: AtomicI32::new(sysfd),
            owner,
            rio: Mutex::new(()),
            wio: Mutex::new(()),
            poller: Poller::new(path, sysfd, owner)?,
        })
    }

    fn number(&self) -> io::Result<RawFd> {
        match self.sysfd.load(Relaxed) {
            n if n < 0 => Err(error::closed()),
            n => Ok(n),
        }
    }

    fn check(&self) -> io::Result<()> {
        self.number()?;
        probe::sync_point(SyncPoint::AfterClosedCheck, self.owner);
        Ok(())
    }

    fn io<T>(&self, dir: Dir, op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        shared::io_loop(&self.poller, self.owner, dir, || self.number(), op)
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let _rio = lock(&self.rio);
        self.io(Dir::Read, |fd| sys::read(fd, self.owner, buf))
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let _wio = lock(&self.wio);
        shared::write_all(buf, |rest| {
            self.io(Dir::Write, |fd| sys::write(fd, self.owner, rest))
        })
    }

    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        self.check()?;
        let _rio = lock(&self.rio);
        self.io(Dir::Read, |fd| sys::recv_from(fd, self.owner, buf))
    }

    pub(crate) fn send_to(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        self.check()?;
        let _wio = lock(&self.wio);
        self.io(Dir::Write, |fd| sys::send_to(fd, self.owner, buf, addr))
    }

    pub(crate) fn accept(&self, new_owner: OwnerId) -> io::Result<(RawFd, SockAddr)> {
        self.check()?;
        self.io(Dir::Read, |fd| sys::accept(fd, self.owner, new_owner))
    }

    pub(crate) fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        self.check()?;
        let _wio = lock(&self.wio);
        if shared::connect_started(self.number()?, self.owner, addr)? {
            return Ok(());
        }
        self.io(Dir::Write, |fd| shared::connect_finished(fd, self.owner))
    }

    pub(crate) fn control<T>(
        &self,
        f: impl FnOnce(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        self.check()?;
        f(self.number()?, self.owner)
    }

    pub(crate) fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.check()?;
        self.poller.desc().set_deadline(dir, deadline);
        probe::sync_point(SyncPoint::AfterSetDeadline, self.owner);
        Ok(())
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        let fd = self.number()?;
        probe::sync_point(SyncPoint::AfterClosedCheck, self.owner);
        probe::sync_point(SyncPoint::BeforeFinalClose, self.owner);
        let r = sys::close(fd, self.owner);
        probe::sync_point(SyncPoint::AfterCloseSyscall, self.owner);
        self.sysfd.store(-1, Relaxed);
        probe::sync_point(SyncPoint::BeforeEvict, self.owner);
        // close(2) dropped the kernel's registration; free the slot.
        self.poller.forget();
        self.poller.desc().evict();
        probe::sync_point(SyncPoint::BeforeCloseReturn, self.owner);
        r
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sysfd.load(Relaxed) < 0
    }
}

impl Drop for NaiveClose {
    fn drop(&mut self) {
        if self.sysfd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
    }
}

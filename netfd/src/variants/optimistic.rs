//! The number as a field read with no reference: the shared body of the two
//! protocols that use the descriptor optimistically, `go2009-closeack` and
//! `naive-close`. They differ only in Close (and in whether SetDeadline
//! checks for it), which each defines; everything an operation does —
//! load the number, check it is not -1, take the direction's lock, run the
//! shared I/O loop on whatever number the field holds at each attempt — is
//! here, once. Nothing keeps the loaded number valid: that is the race.

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

pub(crate) struct OptimisticFd {
    /// The number, or -1 once Close has cleared it.
    pub(crate) sysfd: AtomicI32,
    pub(crate) owner: OwnerId,
    rio: Mutex<()>,
    wio: Mutex<()>,
    pub(crate) poller: Poller,
}

impl OptimisticFd {
    pub(crate) fn new(sysfd: RawFd, owner: OwnerId, path: WaitPath) -> io::Result<Self> {
        Ok(OptimisticFd {
            sysfd: AtomicI32::new(sysfd),
            owner,
            rio: Mutex::new(()),
            wio: Mutex::new(()),
            poller: Poller::new(path, sysfd, owner)?,
        })
    }

    /// The optimistic load: whatever the field holds right now.
    pub(crate) fn number(&self) -> io::Result<RawFd> {
        match self.sysfd.load(Relaxed) {
            n if n < 0 => Err(error::closed()),
            n => Ok(n),
        }
    }

    /// Go's `if fd.file == nil { return os.EINVAL }`, answered with the
    /// closed error.
    pub(crate) fn check(&self) -> io::Result<()> {
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
        shared::write_all(&self.poller, buf, |rest| {
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

    /// Reads that are not plain read(2) (peek, recv, readv), as Read.
    pub(crate) fn read_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        self.check()?;
        let _rio = lock(&self.rio);
        self.io(Dir::Read, |fd| op(fd, self.owner))
    }

    /// One send or vectored write, as Write without the write-all loop.
    pub(crate) fn write_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        self.check()?;
        let _wio = lock(&self.wio);
        self.io(Dir::Write, |fd| op(fd, self.owner))
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

    /// Store a deadline (no closed check: the caller decides).
    pub(crate) fn store_deadline(&self, dir: Dir, deadline: Option<Instant>) {
        self.poller.desc().set_deadline(dir, deadline);
        probe::sync_point(SyncPoint::AfterSetDeadline, self.owner);
    }

    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sysfd.load(Relaxed) < 0
    }
}

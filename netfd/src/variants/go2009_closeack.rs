//! `go2009-closeack`: Go's `netFD` before commit eb16346 (the `-` side of
//! the diff in `shared/reference/`), race intact.
//!
//! The Go code: `fd.fd`/`fd.file` were "immutable until Close". Close made a
//! round trip to the poll server (`WaitCloseAck`): the server set
//! `fd.file = nil` and `fd.fd = -1`, acknowledged, and only then did Close
//! close the saved file. So the poll server never saw a number the kernel had
//! released. Read and Write, though, used the number optimistically and
//! called the poll server only on EAGAIN — the commit's own TODO: "There is
//! still a race in Read and Write, because they optimistically try to use
//! the fd and don't call into the PollServer unless they get EAGAIN."
//!
//! Here: `sysfd` is an [`AtomicI32`] loaded with no reference and no lock
//! (`-1` stands for `file == nil`). Close checks it, "hands the fd to the
//! poll server": stores -1 as the server did (the registration is left to
//! the kernel, which drops it on close(2), and the slot is freed when the
//! socket is dropped — the server only forgot the fields), then closes the
//! saved number. An operation that loaded the number before the ack uses it
//! after the close: on a closed number, or on whatever socket the kernel has
//! since given that number. Close wakes nobody (Go #271, fixed by the
//! commit): a parked operation stays parked until its deadline.
//!
//! As in the refcount port, the unlocked checks fail with netfd's closed
//! error, and `SetNonblock(fd, false)` before the close is left out.

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

pub(crate) struct Go2009CloseAck {
    sysfd: AtomicI32,
    owner: OwnerId,
    rio: Mutex<()>,
    wio: Mutex<()>,
    poller: Poller,
}

impl Go2009CloseAck {
    pub(crate) fn new(sysfd: RawFd, owner: OwnerId, path: WaitPath) -> io::Result<Self> {
        Ok(Go2009CloseAck {
            sysfd: AtomicI32::new(sysfd),
            owner,
            rio: Mutex::new(()),
            wio: Mutex::new(()),
            poller: Poller::new(path, sysfd, owner)?,
        })
    }

    /// The optimistic load: whatever the field holds right now.
    fn number(&self) -> io::Result<RawFd> {
        match self.sysfd.load(Relaxed) {
            n if n < 0 => Err(error::closed()),
            n => Ok(n),
        }
    }

    /// Go's `if fd.file == nil { return os.EINVAL }`.
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

    /// Go's `setReadTimeout` only stored the timeout.
    pub(crate) fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.poller.desc().set_deadline(dir, deadline);
        probe::sync_point(SyncPoint::AfterSetDeadline, self.owner);
        Ok(())
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        self.check()?;
        let saved = self.number()?;
        // WaitCloseAck: the poll server forgets the fields; from here on a
        // *new* operation sees the socket closed.
        self.sysfd.store(-1, Relaxed);
        probe::sync_point(SyncPoint::BeforeFinalClose, self.owner);
        // Go returned f.Close()'s error.
        let r = sys::close(saved, self.owner);
        probe::sync_point(SyncPoint::BeforeCloseReturn, self.owner);
        r
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.sysfd.load(Relaxed) < 0
    }
}

impl Drop for Go2009CloseAck {
    fn drop(&mut self) {
        if self.sysfd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
        // The kernel dropped its registration with the close; free the slot.
        self.poller.forget();
    }
}

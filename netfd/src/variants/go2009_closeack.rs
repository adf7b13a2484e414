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

use super::optimistic::OptimisticFd;
use crate::poll::{Dir, WaitPath};
use crate::probe::{self, OwnerId, SyncPoint};
use crate::sys;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Every operation but Close is [`OptimisticFd`]'s.
pub(crate) struct Go2009CloseAck(OptimisticFd);

impl std::ops::Deref for Go2009CloseAck {
    type Target = OptimisticFd;
    fn deref(&self) -> &OptimisticFd {
        &self.0
    }
}

impl Go2009CloseAck {
    pub(crate) fn new(sysfd: RawFd, owner: OwnerId, path: WaitPath) -> io::Result<Self> {
        OptimisticFd::new(sysfd, owner, path).map(Go2009CloseAck)
    }

    /// Go's `setReadTimeout` only stored the timeout.
    pub(crate) fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.store_deadline(dir, deadline);
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

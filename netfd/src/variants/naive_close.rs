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

use super::optimistic::OptimisticFd;
use crate::poll::{Dir, WaitPath};
use crate::probe::{self, OwnerId, SyncPoint};
use crate::sys;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// Every operation but Close is [`OptimisticFd`]'s.
pub(crate) struct NaiveClose(OptimisticFd);

impl std::ops::Deref for NaiveClose {
    type Target = OptimisticFd;
    fn deref(&self) -> &OptimisticFd {
        &self.0
    }
}

impl NaiveClose {
    pub(crate) fn new(sysfd: RawFd, owner: OwnerId, path: WaitPath) -> io::Result<Self> {
        OptimisticFd::new(sysfd, owner, path).map(NaiveClose)
    }

    pub(crate) fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.check()?;
        self.store_deadline(dir, deadline);
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
}
impl Drop for NaiveClose {
    fn drop(&mut self) {
        if self.sysfd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
    }
}

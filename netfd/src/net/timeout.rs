//! std's relative timeouts, expressed on top of netfd's absolute deadlines.
//!
//! Protocol, per direction:
//! - The user's absolute deadline (`set_read_deadline`) is kept here as well
//!   as in the poll descriptor, so an operation's timeout can be combined
//!   with it and taken away again.
//! - With a timeout set (`set_read_timeout(Some(d))`), an operation starts by
//!   storing `start + d` as its own deadline; the poll descriptor's deadline
//!   becomes the earlier of the two, and goes back to the user's deadline
//!   when the operation returns. A deadline set while the operation is
//!   parked is combined the same way, so it still wakes the operation.
//! - Timed operations of one direction take `serial` for their whole run
//!   (reads of one direction are serialised by the lifetime protocol anyway):
//!   one operation's deadline is in force at a time, and never outlives it.
//!   `state` is only held for the few instructions that update it, so a
//!   deadline change from another thread never waits for a parked operation.
//! - Without a timeout an operation pays one relaxed load here, and a
//!   deadline is stored without `state` held across the store (concurrent
//!   setters race as in Go: the last store wins).
//!
//! What the caller sees: a timed-out operation fails with netfd's timeout
//! error (`ErrorKind::TimedOut`; std on Unix reports `WouldBlock`). Close
//! wins over a timeout: a closed socket reports the closed error, also when
//! its timeout expired at the same time.

use crate::netfd::NetFd;
use crate::poll::Dir;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Deadlines {
    /// What `set_*_deadline` stored.
    user: Option<Instant>,
    /// The running timed operation's `start + timeout`.
    op: Option<Instant>,
}

impl Deadlines {
    fn effective(&self) -> Option<Instant> {
        match (self.user, self.op) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Default)]
struct DirTimeout {
    /// The timeout in nanoseconds; 0 is none (std refuses a zero timeout).
    nanos: AtomicU64,
    state: Mutex<Deadlines>,
    serial: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read and write timeouts of one socket.
#[derive(Default)]
pub(crate) struct Timeouts {
    dirs: [DirTimeout; 2],
}

fn index(dir: Dir) -> usize {
    match dir {
        Dir::Read => 0,
        Dir::Write => 1,
    }
}

impl Timeouts {
    /// std's `set_read_timeout`/`set_write_timeout`: `Some(0)` is refused.
    pub(crate) fn set_timeout(
        &self,
        fd: &NetFd,
        dir: Dir,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        // As every other use of a closed socket.
        fd.control(|_, _| Ok(()))?;
        let nanos = timeout.map_or(0, |d| d.as_nanos().clamp(1, u64::MAX as u128) as u64);
        self.dirs[index(dir)].nanos.store(nanos, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn timeout(&self, fd: &NetFd, dir: Dir) -> io::Result<Option<Duration>> {
        fd.control(|_, _| Ok(()))?;
        Ok(match self.dirs[index(dir)].nanos.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        })
    }

    /// `set_*_deadline`: the user's absolute deadline, combined with the
    /// running operation's timeout.
    pub(crate) fn set_deadline(
        &self,
        fd: &NetFd,
        dir: Dir,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let d = &self.dirs[index(dir)];
        {
            let mut st = lock(&d.state);
            st.user = deadline;
            if st.op.is_some() {
                return fd.set_deadline(dir, st.effective());
            }
        }
        // No timed operation running: store it without holding `state`, so
        // the protocol's sync point in `set_deadline` is never reached with
        // this lock held (a controlled scheduler pausing there would
        // otherwise block every other setter on the lock, unseen).
        fd.set_deadline(dir, deadline)?;
        let st = lock(&d.state);
        if st.op.is_some() {
            // A timed operation started meanwhile and our store may have
            // replaced its deadline: put the combined one back.
            fd.set_deadline(dir, st.effective())?;
        }
        Ok(())
    }

    /// Run `op` (one operation in `dir`) under the direction's timeout.
    #[inline]
    pub(crate) fn run<T>(
        &self,
        fd: &NetFd,
        dir: Dir,
        op: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let d = &self.dirs[index(dir)];
        match d.nanos.load(Ordering::Relaxed) {
            0 => op(),
            nanos => self.run_timed(fd, d, dir, Duration::from_nanos(nanos), op),
        }
    }

    #[cold]
    fn run_timed<T>(
        &self,
        fd: &NetFd,
        d: &DirTimeout,
        dir: Dir,
        timeout: Duration,
        op: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let _serial = lock(&d.serial);
        {
            let mut st = lock(&d.state);
            st.op = Instant::now().checked_add(timeout);
            if let Err(e) = fd.set_deadline(dir, st.effective()) {
                st.op = None;
                return Err(e);
            }
        }
        let result = op();
        let mut st = lock(&d.state);
        st.op = None;
        // Fails only when the socket was closed meanwhile: nothing to restore.
        let _ = fd.set_deadline(dir, st.effective());
        result
    }
}

//! Waiting for readiness, deadlines and close.
//!
//! Two wait paths share one [`PollDesc`] protocol:
//! - [`WaitPath::Direct`] (the default): the parked thread polls its own
//!   socket together with a per-thread eventfd, with its deadline as the
//!   timeout. Close and deadline changes signal that eventfd. No other thread
//!   is involved in a wake-up, which is what keeps request/response latency
//!   near blocking I/O (see docs/performance.md).
//! - [`WaitPath::Server`]: the socket is registered with the process's
//!   [poll server](server) (one epoll thread, edge-triggered, generation-tagged
//!   registrations, a timer heap for deadlines); the parked thread sleeps on
//!   its own futex word in the kernel's global futex hash ([`park`]) and the
//!   server wakes it. This is the path the historical protocols were
//!   built on.
//!
//! std's `set_nonblocking` is a per-socket flag here, not the kernel's
//! O_NONBLOCK (every netfd descriptor has that): `Poller::wait`, the one
//! place either path parks, answers `WouldBlock` instead of parking, after
//! the closing and deadline checks, so the Close contract still wins.

pub(crate) mod desc;
pub(crate) mod park;
pub mod server;
mod timers;
pub mod trace;

pub use desc::{Dir, PollDesc};
pub use server::{stats, PollStats};

use crate::probe::{self, OwnerId, SyncPoint};
use crate::sys::{self, Interest};
use desc::Waker;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How a parked operation is woken. See the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WaitPath {
    #[default]
    Direct,
    Server,
}

impl WaitPath {
    pub fn name(self) -> &'static str {
        match self {
            WaitPath::Direct => "direct",
            WaitPath::Server => "server",
        }
    }
}

/// One socket's poll state and, on the server path, its registration.
pub(crate) struct Poller {
    pd: Arc<PollDesc>,
    token: Option<server::Token>,
    /// Direct path, per direction: the last operation found the socket not
    /// ready, so the next one polls before it tries (see [`Poller::expects_wait`]).
    expect_wait: [AtomicBool; 2],
    /// std's `set_nonblocking`: an operation that would park returns
    /// `WouldBlock` instead (see [`Poller::wait`]).
    nonblocking: AtomicBool,
}

impl Poller {
    /// Set up waiting for `fd`; registers with the poll server on that path.
    pub(crate) fn new(path: WaitPath, fd: RawFd, owner: OwnerId) -> io::Result<Poller> {
        let pd = Arc::new(PollDesc::new());
        let token = match path {
            WaitPath::Direct => None,
            WaitPath::Server => Some(server::get().register(fd, owner, pd.clone())?),
        };
        Ok(Poller {
            pd,
            token,
            expect_wait: [AtomicBool::new(false), AtomicBool::new(false)],
            nonblocking: AtomicBool::new(false),
        })
    }

    /// Whether an operation in `dir` should wait before its first attempt.
    ///
    /// On a request/response stream a read almost always finds nothing yet:
    /// trying first costs read (EAGAIN) + poll + read, polling first costs
    /// poll + read. So after an operation had to wait, the next one polls
    /// first; a poll that returns at once (the data was already there) turns
    /// this off again, so a streaming reader keeps one syscall per read.
    /// Direct path only: the server path's readiness is edge-triggered state.
    #[inline]
    pub(crate) fn expects_wait(&self, dir: Dir) -> bool {
        self.token.is_none()
            && self.expect_wait[dir as usize].load(Ordering::Relaxed)
            && !self.is_nonblocking()
    }

    /// std's `set_nonblocking`. The kernel descriptor is O_NONBLOCK either
    /// way; this only decides whether [`wait`](Self::wait) parks. An
    /// operation already parked when it is turned on stays parked until it
    /// is woken (as a blocking syscall does in std); only its next wait
    /// answers `WouldBlock`.
    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn is_nonblocking(&self) -> bool {
        self.nonblocking.load(Ordering::Relaxed)
    }

    /// Record whether the last attempt in `dir` found the socket not ready.
    #[inline]
    pub(crate) fn set_expects_wait(&self, dir: Dir, expect: bool) {
        let flag = &self.expect_wait[dir as usize];
        if flag.load(Ordering::Relaxed) != expect {
            flag.store(expect, Ordering::Relaxed);
        }
    }

    /// [`wait`](Self::wait) before a first attempt, noting whether the socket
    /// was in fact ready already (the poll returned without blocking).
    pub(crate) fn wait_before_trying(&self, dir: Dir, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        // A poll that blocked took at least a context switch; one that found
        // the socket ready returns in about a syscall's time.
        const BLOCKED: std::time::Duration = std::time::Duration::from_micros(5);
        let started = Instant::now();
        self.wait(dir, fd, owner)?;
        if started.elapsed() < BLOCKED {
            self.set_expects_wait(dir, false);
        }
        Ok(())
    }

    pub(crate) fn desc(&self) -> &PollDesc {
        &self.pd
    }

    /// Wait until `fd` may be ready in `dir`, its deadline passes (timed-out
    /// error) or the socket closes (closed error). `Ok` means: try the
    /// syscall again. The caller holds a reference, so `fd` stays open.
    ///
    /// A non-blocking socket never parks: this is the one place an operation
    /// would, on both paths, so it answers `WouldBlock` (EAGAIN, as std) here,
    /// after the closed and deadline checks, so Close still wins.
    pub(crate) fn wait(&self, dir: Dir, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        if self.is_nonblocking() {
            self.pd.check(dir)?;
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        match self.token {
            None => self.wait_direct(dir, fd, owner),
            Some(token) => self.wait_server(dir, token, owner),
        }
    }

    fn wait_direct(&self, dir: Dir, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        let wake = thread_wake_fd()?;
        let armed = self
            .pd
            .arm(dir, Waker::Fd(wake), false)?
            .expect("direct waiters never consume readiness");
        probe::sync_point(SyncPoint::BeforePark, owner);
        let timeout = armed
            .deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        let interest = match dir {
            Dir::Read => Interest::Read,
            Dir::Write => Interest::Write,
        };
        let outcome = sys::poll_with_wake(fd, owner, interest, wake, timeout);
        // Whoever took the waker out of the slot signalled the eventfd under
        // the poll descriptor's lock, so once `disarm` finds the slot empty
        // the signal is there, even when poll(2) returned for readiness
        // before it came. Drain it now: left behind, it would cut short this
        // thread's next wait, on whatever socket that is.
        let taken = !self.pd.disarm(dir);
        if taken || matches!(outcome, Ok(o) if o.woken) {
            sys::eventfd_drain(wake);
        }
        probe::sync_point(SyncPoint::AfterWake, owner);
        outcome?;
        self.pd.check(dir)
    }

    fn wait_server(&self, dir: Dir, token: server::Token, owner: OwnerId) -> io::Result<()> {
        let me = crate::sync::Thread::current()?;
        let Some(armed) = self.pd.arm(dir, Waker::Thread(me.clone()), true)? else {
            return Ok(());
        };
        if let Some(at) = armed.deadline {
            server::get().add_timer(at, token, dir, armed.seq);
        }
        probe::sync_point(SyncPoint::BeforePark, owner);
        while self.pd.is_armed(dir) {
            me.park();
        }
        probe::sync_point(SyncPoint::AfterWake, owner);
        self.pd.check(dir)
    }

    /// Stop watching `fd` before it is closed (server path).
    /// Called once, by whoever releases the number.
    pub(crate) fn deregister(&self, fd: RawFd, owner: OwnerId) {
        if let Some(token) = self.token {
            server::get().deregister(token, fd, owner);
        }
    }

    /// Forget the registration without a syscall (the number is already gone).
    pub(crate) fn forget(&self) {
        if let Some(token) = self.token {
            server::get().release(token);
        }
    }
}

/// This thread's wake eventfd, created on first park and closed when the
/// thread exits.
fn thread_wake_fd() -> io::Result<RawFd> {
    struct WakeFd(RawFd);
    impl Drop for WakeFd {
        fn drop(&mut self) {
            let _ = sys::close(self.0, OwnerId::INTERNAL);
        }
    }
    thread_local! {
        static WAKE: std::cell::OnceCell<WakeFd> = const { std::cell::OnceCell::new() };
    }
    WAKE.try_with(|cell| {
        if let Some(w) = cell.get() {
            return Ok(w.0);
        }
        let fd = sys::eventfd()?;
        Ok(cell.get_or_init(|| WakeFd(fd)).0)
    })
    .map_err(|_| io::Error::other("netfd: wait during thread exit"))?
}

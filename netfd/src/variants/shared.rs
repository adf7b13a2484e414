//! The parts of an operation every lifetime protocol does the same way.
//!
//! The protocols differ only in how an operation gets hold of the
//! descriptor number and what keeps it valid (a reference, a lock, or
//! nothing at all). Everything after that — try the syscall, wait through the
//! poll descriptor on EAGAIN, retry on EINTR, finish a non-blocking connect,
//! write a whole buffer — is written once here, so a difference between two
//! variants is always a difference in their lifetime protocol.
//!
//! Contract of [`io_loop`]: `number` is called before every attempt and is
//! the protocol's way to load the number (it may fail with the closed error);
//! the [`SyncPoint::BeforeSyscall`] point is reached after it returns and
//! right before the syscall, in every variant.

use crate::poll::{Dir, Poller};
use crate::probe::{self, OwnerId, SyncPoint};
use crate::sys::{self, SockAddr};
use std::io;
use std::os::fd::RawFd;

/// Run `op` on the number `number` gives until it stops reporting EAGAIN,
/// parking in `poller` in between. Fails at once if the poll descriptor is
/// closing or its deadline has passed; readiness reported before the first
/// attempt is forgotten (the attempt itself sees it).
#[inline]
pub(crate) fn io_loop<T>(
    poller: &Poller,
    owner: OwnerId,
    dir: Dir,
    mut number: impl FnMut() -> io::Result<RawFd>,
    mut op: impl FnMut(RawFd) -> io::Result<T>,
) -> io::Result<T> {
    poller.desc().prepare(dir)?;
    let mut first = true;
    loop {
        let fd = number()?;
        if first && poller.expects_wait(dir) {
            poller.wait_before_trying(dir, fd, owner)?;
        }
        first = false;
        probe::sync_point(SyncPoint::BeforeSyscall, owner);
        match op(fd) {
            Err(e) if sys::is_would_block(&e) => {
                poller.set_expects_wait(dir, true);
                poller.wait(dir, fd, owner)?
            }
            Err(e) if sys::is_interrupted(&e) => {}
            other => return other,
        }
    }
}

/// Write all of `buf` through `chunk`, which writes some prefix of what it is
/// given (waiting as it needs to) and reports how much. On a non-blocking
/// socket one chunk is the answer, as std's `write`: a second could only
/// report `WouldBlock` and lose the count of what the first wrote.
#[inline]
pub(crate) fn write_all(
    poller: &Poller,
    buf: &[u8],
    mut chunk: impl FnMut(&[u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    if poller.is_nonblocking() {
        return chunk(buf);
    }
    let mut done = 0;
    while done < buf.len() {
        // A write parked on a full buffer must fail with the closed error
        // when the socket closes (the contract), even if part of the
        // buffer went out before: as Go's Write, which returns both.
        done += chunk(&buf[done..])?;
    }
    Ok(done)
}

/// Start a non-blocking connect. `Ok(true)`: connected already;
/// `Ok(false)`: the handshake is in progress — wait for writability and ask
/// [`connect_finished`].
pub(crate) fn connect_started(fd: RawFd, owner: OwnerId, addr: &SockAddr) -> io::Result<bool> {
    match sys::connect(fd, owner, addr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the handshake [`connect_started`] began has finished: `Ok` when
/// connected, the handshake's error when it failed, EAGAIN while it is still
/// in progress (so [`io_loop`] waits for writability and asks again).
pub(crate) fn connect_finished(fd: RawFd, owner: OwnerId) -> io::Result<()> {
    match sys::getsockopt_int(fd, owner, libc::SOL_SOCKET, libc::SO_ERROR)? {
        0 => match sys::getpeername(fd, owner) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                Err(io::Error::from_raw_os_error(libc::EAGAIN))
            }
            Err(e) => Err(e),
        },
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Lock a mutex that guards no data a panic could leave inconsistent.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

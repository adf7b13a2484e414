//! A socket wrapper as its author writes it, with no thought of the
//! harness: the raw number in an `AtomicI32`, blocking std sockets,
//! `close(&self)` = shutdown(2) + close(2), its own closed error.
//!
//! [`RawSocket::new`]`(fd, false)` is the racy version: an op loads the
//! number and then uses it, so a Close (and another socket taking the freed
//! number) can fall in between. `RawSocket::new(fd, true)` is its fixed
//! twin: an `RwLock` held across each syscall (shared by ops, exclusive by
//! the close(2)), shutdown(2) first and under the shared lock so it wakes a
//! blocked op without waiting for it.
//!
//! `tests/close_safety.rs` checks both with `harness::check`.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::SeqCst};
use std::sync::RwLock;

/// The wrapper's own closed error.
pub fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "raw socket is closed")
}

pub fn is_closed(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotConnected && e.to_string() == "raw socket is closed"
}

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub struct RawSocket {
    fd: AtomicI32,
    closing: AtomicBool,
    lock: Option<RwLock<()>>,
}

impl RawSocket {
    pub fn new(fd: RawFd, guarded: bool) -> RawSocket {
        RawSocket {
            fd: AtomicI32::new(fd),
            closing: AtomicBool::new(false),
            lock: guarded.then(|| RwLock::new(())),
        }
    }

    /// `f` on the current number; an error after Close began is the closed
    /// error (a shut-down socket fails with EPIPE, EINVAL...).
    fn with<T>(&self, f: impl FnOnce(RawFd) -> io::Result<T>) -> io::Result<T> {
        let _shared = self.lock.as_ref().map(|l| l.read().unwrap());
        let fd = self.fd.load(SeqCst);
        if fd < 0 {
            return Err(closed());
        }
        match f(fd) {
            Err(_) if self.closing.load(SeqCst) => Err(closed()),
            r => r,
        }
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        self.with(|fd| cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }))
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            done += self.with(|fd| {
                // SAFETY: `rest` is valid for reads of its length.
                let n =
                    unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
                cvt(n)
            })?;
        }
        Ok(done)
    }

    pub fn accept(&self) -> io::Result<RawFd> {
        self.with(|fd| {
            // SAFETY: null address arguments are allowed.
            let r = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            cvt(r as isize).map(|n| n as RawFd)
        })
    }

    pub fn close(&self) -> io::Result<()> {
        if self.lock.is_none() {
            // Racy: take the number and release it at once.
            let fd = self.fd.swap(-1, SeqCst);
            if fd < 0 {
                return Err(closed());
            }
            self.closing.store(true, SeqCst);
            // SAFETY: plain syscalls on a number this wrapper owned.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
                return cvt(libc::close(fd) as isize).map(drop);
            }
        }
        if self.closing.swap(true, SeqCst) {
            return Err(closed());
        }
        // Wake blocked ops first, without waiting for them.
        let _ = self.with(|fd| {
            // SAFETY: the shared lock keeps `fd` ours.
            cvt(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) } as isize)
        });
        let _excl = self.lock.as_ref().map(|l| l.write().unwrap());
        let fd = self.fd.swap(-1, SeqCst);
        // SAFETY: no op holds the number (the exclusive lock).
        cvt(unsafe { libc::close(fd) } as isize).map(drop)
    }
}

impl Drop for RawSocket {
    fn drop(&mut self) {
        let fd = self.fd.swap(-1, SeqCst);
        if fd >= 0 {
            // SAFETY: the last user of the number.
            unsafe { libc::close(fd) };
        }
    }
}

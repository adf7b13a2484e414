//! The simulated kernel: a descriptor table that hands out numbers the way
//! POSIX requires and checks every call made on a number.
//!
//! Invariants it enforces (a breach panics, which fails the loom model):
//! - `socket`/`accept`/`eventfd` return the LOWEST free number (from 3 up), so
//!   a number released by one socket is the next one another socket gets:
//!   exactly the reuse that turns a late syscall into somebody else's I/O.
//! - Every call names the number and the owner (the never-reused
//!   [`OwnerId`]) on whose behalf it is made. A call on a number that another
//!   owner holds is `fd reuse`; a call on a free number is `use after close`.
//!   Both messages name the owner ids.
//! - A blocking call (`poll`) is in flight on its number until it returns;
//!   `close` of that number meanwhile is `close_in_flight`.
//! - [`Kernel::close_returned`]: when a socket's `close()` returns, its number
//!   is already released (Close returns only after the final close).
//! - [`Kernel::assert_no_leaks`]: at the end of a model every socket number is
//!   closed (wake eventfds are per thread, like production's, and exempt).
//!
//! The table sits behind one loom mutex, so each syscall is one atomic step
//! and a scheduling point: loom tries every placement of the call relative to
//! the other threads' steps.

use crate::probe::OwnerId;
use loom::sync::{Condvar, Mutex, MutexGuard};
use std::io;
use std::os::fd::RawFd;

/// 0, 1 and 2 are stdio, as in a real process.
pub const FIRST_FD: RawFd = 3;

/// What an open number refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    /// A connected stream: `data` bytes queued to read, peer shut down or
    /// not, send buffer full or not.
    Stream {
        data: usize,
        shut: bool,
        send_full: bool,
    },
    /// A listening socket with `backlog` connections waiting to be accepted.
    Listener { backlog: usize },
    /// An eventfd (the direct wait path's wake descriptor).
    EventFd { signaled: bool },
}

impl File {
    pub const EMPTY_STREAM: File = File::Stream {
        data: 0,
        shut: false,
        send_full: false,
    };

    /// A stream with `data` bytes to read and room to send.
    pub fn stream(data: usize) -> File {
        File::Stream {
            data,
            shut: false,
            send_full: false,
        }
    }

    fn readable(&self) -> bool {
        match *self {
            File::Stream { data, shut, .. } => data > 0 || shut,
            File::Listener { backlog } => backlog > 0,
            File::EventFd { signaled } => signaled,
        }
    }

    fn writable(&self) -> bool {
        match *self {
            File::Stream {
                send_full, shut, ..
            } => !send_full || shut,
            File::Listener { .. } => false,
            File::EventFd { .. } => true,
        }
    }
}

struct Open {
    owner: OwnerId,
    file: File,
}

#[derive(Default)]
struct Slot {
    open: Option<Open>,
    /// Who held the number last, for the message of a use after close.
    last_owner: Option<OwnerId>,
}

#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    /// Blocking calls under way: (number, owner, call).
    in_flight: Vec<(RawFd, OwnerId, &'static str)>,
    /// See [`Kernel::reuse_only`].
    reuse_only: bool,
}

/// What a call on a number is, for the caller it is made for.
enum Verdict {
    Ok,
    /// A free number the kernel answers with EBADF (reuse-only mode).
    Ebadf,
    Violation(String),
}

impl Table {
    /// Whether `op` on `fd` for `owner` is allowed.
    fn verdict(&self, op: &str, fd: RawFd, owner: OwnerId) -> Verdict {
        let slot = usize::try_from(fd).ok().and_then(|i| self.slots.get(i));
        match slot.and_then(|s| s.open.as_ref()) {
            Some(open) if open.owner == owner => Verdict::Ok,
            Some(open) => Verdict::Violation(format!(
                "netfd-loom: use of fd {fd} owned by {} on behalf of {owner} ({op}): fd reuse",
                open.owner
            )),
            None if self.reuse_only => Verdict::Ebadf,
            None => {
                let last = slot
                    .and_then(|s| s.last_owner)
                    .map(|o| format!(", last held by {o}"))
                    .unwrap_or_default();
                Verdict::Violation(format!(
                    "netfd-loom: call on free fd {fd} on behalf of {owner} ({op}): \
                     use after close{last}"
                ))
            }
        }
    }

    fn file(&mut self, fd: RawFd) -> &mut File {
        &mut self.slots[fd as usize]
            .open
            .as_mut()
            .expect("checked open")
            .file
    }

    fn alloc(&mut self, owner: OwnerId, file: File) -> RawFd {
        let first = FIRST_FD as usize;
        if self.slots.len() < first {
            self.slots.resize_with(first, Slot::default);
        }
        let i = match (first..self.slots.len()).find(|&i| self.slots[i].open.is_none()) {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        self.slots[i].open = Some(Open { owner, file });
        i as RawFd
    }
}

/// See the module docs.
#[derive(Default)]
pub struct Kernel {
    table: Mutex<Table>,
    /// Signalled whenever readiness, the clock or the table changes, for
    /// blocked `poll` calls.
    changed: Condvar,
}

fn again() -> io::Error {
    io::Error::from_raw_os_error(libc::EAGAIN)
}

impl Kernel {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the table if `owner` holds `fd`; otherwise fail the model
    /// (or, in reuse-only mode, answer EBADF for a free number). The guard is
    /// dropped before panicking so the panic leaves loom's mutex unlocked.
    fn call<R>(
        &self,
        op: &'static str,
        fd: RawFd,
        owner: OwnerId,
        f: impl FnOnce(&mut Table) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut t = self.lock();
        match t.verdict(op, fd, owner) {
            Verdict::Ok => f(&mut t),
            Verdict::Ebadf => Err(io::Error::from_raw_os_error(libc::EBADF)),
            Verdict::Violation(msg) => {
                drop(t);
                panic!("{msg}");
            }
        }
    }

    /// From now on a call on a free number gets EBADF, as from the real
    /// kernel, instead of failing the model; fd reuse and close_in_flight
    /// still fail it. For models that show one specific race of a
    /// historical protocol (see `models::Judge::LifetimeOnly`).
    pub fn reuse_only(&self) {
        self.lock().reuse_only = true;
    }

    /// `socket()` (or any call that creates a number): the lowest free one.
    pub fn open(&self, owner: OwnerId, file: File) -> RawFd {
        let fd = self.lock().alloc(owner, file);
        fd
    }

    pub fn read(&self, fd: RawFd, owner: OwnerId, buf: &mut [u8]) -> io::Result<usize> {
        self.call("read", fd, owner, |t| match t.file(fd) {
            File::Stream { data, .. } if *data > 0 => {
                let n = (*data).min(buf.len());
                *data -= n;
                buf[..n].fill(b'x');
                Ok(n)
            }
            File::Stream { shut: true, .. } => Ok(0),
            File::Stream { .. } => Err(again()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        })
    }

    pub fn write(&self, fd: RawFd, owner: OwnerId, buf: &[u8]) -> io::Result<usize> {
        self.call("write", fd, owner, |t| match t.file(fd) {
            File::Stream { shut: true, .. } => Err(io::Error::from_raw_os_error(libc::EPIPE)),
            File::Stream {
                send_full: true, ..
            } => Err(again()),
            File::Stream { .. } => Ok(buf.len()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        })
    }

    pub fn accept(&self, fd: RawFd, owner: OwnerId, new_owner: OwnerId) -> io::Result<RawFd> {
        self.call("accept", fd, owner, |t| match t.file(fd) {
            File::Listener { backlog } if *backlog > 0 => {
                *backlog -= 1;
                Ok(t.alloc(new_owner, File::stream(0)))
            }
            File::Listener { .. } => Err(again()),
            _ => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        })
    }

    /// Any other call that only needs the number to be the caller's.
    pub fn touch(&self, op: &'static str, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        self.call(op, fd, owner, |_| Ok(()))
    }

    /// shutdown(SHUT_RDWR): the stream reads EOF from now on.
    pub fn shutdown(&self, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        self.call("shutdown", fd, owner, |t| {
            if let File::Stream { shut, .. } = t.file(fd) {
                *shut = true;
            }
            Ok(())
        })?;
        self.changed.notify_all();
        Ok(())
    }

    pub fn close(&self, fd: RawFd, owner: OwnerId) -> io::Result<()> {
        let mut t = self.lock();
        let msg = match t.verdict("close", fd, owner) {
            Verdict::Ok => t
                .in_flight
                .iter()
                .find(|&&(n, _, _)| n == fd)
                .map(|&(_, o, op)| {
                    format!(
                        "netfd-loom: close of fd {fd} on behalf of {owner} while a {op} on it \
                     is in flight on behalf of {o}: close_in_flight"
                    )
                }),
            Verdict::Ebadf => return Err(io::Error::from_raw_os_error(libc::EBADF)),
            Verdict::Violation(msg) => Some(msg),
        };
        if let Some(msg) = msg {
            drop(t);
            panic!("{msg}");
        }
        let slot = &mut t.slots[fd as usize];
        slot.open = None;
        slot.last_owner = Some(owner);
        drop(t);
        self.changed.notify_all();
        Ok(())
    }

    pub fn eventfd_signal(&self, fd: RawFd) {
        let _ = self.call("eventfd write", fd, OwnerId::INTERNAL, |t| {
            if let File::EventFd { signaled } = t.file(fd) {
                *signaled = true;
            }
            Ok(())
        });
        self.changed.notify_all();
    }

    pub fn eventfd_drain(&self, fd: RawFd) {
        let _ = self.call("eventfd read", fd, OwnerId::INTERNAL, |t| {
            if let File::EventFd { signaled } = t.file(fd) {
                *signaled = false;
            }
            Ok(())
        });
    }

    /// ppoll() on `fd` and the wake eventfd. Returns (fd ready, woken);
    /// both false means the timeout passed. `timed_out` is asked under the
    /// table lock, so a clock change made through [`Kernel::tick`] is never
    /// missed.
    pub fn poll(
        &self,
        fd: RawFd,
        owner: OwnerId,
        read: bool,
        wake: RawFd,
        timed_out: impl Fn() -> bool,
    ) -> (bool, bool) {
        let mut t = self.lock();
        for (n, o) in [(fd, owner), (wake, OwnerId::INTERNAL)] {
            match t.verdict("poll", n, o) {
                Verdict::Ok => {}
                // POLLNVAL: poll reports the number at once.
                Verdict::Ebadf => return (true, false),
                Verdict::Violation(msg) => {
                    drop(t);
                    panic!("{msg}");
                }
            }
        }
        t.in_flight.push((fd, owner, "poll"));
        let outcome = loop {
            let f = *t.file(fd);
            let ready = if read { f.readable() } else { f.writable() };
            let woken = t.file(wake).readable();
            if ready || woken || timed_out() {
                break (ready, woken);
            }
            t = self.changed.wait(t).unwrap_or_else(|e| e.into_inner());
        };
        let i = t
            .in_flight
            .iter()
            .position(|&(n, o, _)| (n, o) == (fd, owner))
            .expect("registered above");
        t.in_flight.swap_remove(i);
        outcome
    }

    /// Change the world under the table lock (the peer sends data, the
    /// clock moves) and wake blocked polls to look again.
    pub fn tick(&self, f: impl FnOnce()) {
        let t = self.lock();
        f();
        drop(t);
        self.changed.notify_all();
    }

    /// The peer sends `n` bytes to `owner`'s stream, if it is still open.
    pub fn peer_send(&self, owner: OwnerId, n: usize) {
        let mut t = self.lock();
        for slot in t.slots.iter_mut() {
            if let Some(Open {
                owner: o,
                file: File::Stream { data, .. },
            }) = slot.open.as_mut()
            {
                if *o == owner {
                    *data += n;
                }
            }
        }
        drop(t);
        self.changed.notify_all();
    }

    /// `owner`'s close() has returned: its number must be released by now.
    /// (Any later call on its behalf then finds the number free or someone
    /// else's, which [`Kernel::call`] reports.)
    pub fn close_returned(&self, fd: RawFd, owner: OwnerId) {
        if self.owner_of(fd) == Some(owner) {
            panic!(
                "netfd-loom: close() of {owner} returned while fd {fd} is still open \
                 (owned by {owner}): close returned before the final close"
            );
        }
    }

    /// Who holds `fd` now, if anyone.
    pub fn owner_of(&self, fd: RawFd) -> Option<OwnerId> {
        let t = self.lock();
        let owner = t
            .slots
            .get(fd as usize)
            .and_then(|s| s.open.as_ref())
            .map(|o| o.owner);
        owner
    }

    /// Every socket number is closed (wake eventfds excepted: they belong
    /// to their thread, as in production).
    pub fn assert_no_leaks(&self) {
        let t = self.lock();
        let leaked: Vec<String> = t
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.open.as_ref().map(|o| (i, o)))
            .filter(|(_, o)| o.owner != OwnerId::INTERNAL)
            .map(|(i, o)| format!("fd {i} (owned by {})", o.owner))
            .collect();
        drop(t);
        assert!(
            leaked.is_empty(),
            "netfd-loom: leak: still open at the end of the model: {}",
            leaked.join(", ")
        );
    }
}

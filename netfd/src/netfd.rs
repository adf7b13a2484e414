//! `NetFd`: one socket under one lifetime protocol, chosen at open.

use crate::fd::Fd;
use crate::net::Options;
use crate::poll::Dir;
use crate::probe::OwnerId;
use crate::sys::{self, SockAddr};
use crate::variants::go2009_closeack::Go2009CloseAck;
use crate::variants::go2009_refcount::Go2009Refcount;
use crate::variants::naive_close::NaiveClose;
use crate::variants::Variant;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

enum Imp {
    FdMutex(Fd),
    Go2009Refcount(Go2009Refcount),
    Go2009CloseAck(Go2009CloseAck),
    NaiveClose(NaiveClose),
}

/// Dispatch a call to the protocol the socket was opened with: a plain match,
/// so the production protocol pays one predictable branch for the choice.
macro_rules! dispatch {
    ($self:expr, $imp:ident => $call:expr) => {
        match &$self.imp {
            Imp::FdMutex($imp) => $call,
            Imp::Go2009Refcount($imp) => $call,
            Imp::Go2009CloseAck($imp) => $call,
            Imp::NaiveClose($imp) => $call,
        }
    };
}

pub(crate) struct NetFd {
    owner: OwnerId,
    family: i32,
    opts: Options,
    imp: Imp,
}

impl NetFd {
    /// A new socket of `domain`/`ty`, non-blocking and close-on-exec.
    pub(crate) fn socket(domain: i32, ty: i32, opts: Options) -> io::Result<NetFd> {
        let owner = OwnerId::next();
        let sysfd = sys::socket(domain, ty, owner)?;
        NetFd::adopt(sysfd, owner, domain, opts)
    }

    /// Wrap a number fresh from the kernel; closes it if that fails.
    fn adopt(sysfd: RawFd, owner: OwnerId, family: i32, opts: Options) -> io::Result<NetFd> {
        let imp = match opts.variant {
            Variant::FdMutex => Fd::new(sysfd, owner, opts.wait).map(Imp::FdMutex),
            Variant::Go2009Refcount => {
                Go2009Refcount::new(sysfd, owner, opts.wait).map(Imp::Go2009Refcount)
            }
            Variant::Go2009CloseAck => {
                Go2009CloseAck::new(sysfd, owner, opts.wait).map(Imp::Go2009CloseAck)
            }
            Variant::NaiveClose => NaiveClose::new(sysfd, owner, opts.wait).map(Imp::NaiveClose),
        };
        match imp {
            Ok(imp) => Ok(NetFd {
                owner,
                family,
                opts,
                imp,
            }),
            Err(e) => {
                let _ = sys::close(sysfd, owner);
                Err(e)
            }
        }
    }

    /// Adopt a descriptor from elsewhere (a std socket, an `OwnedFd`): made
    /// non-blocking and given a fresh owner; closed if adopting fails. A
    /// descriptor that was O_NONBLOCK already (a std socket after
    /// `set_nonblocking(true)`) keeps std's behaviour: `WouldBlock`.
    pub(crate) fn adopt_foreign(sysfd: RawFd, opts: Options) -> io::Result<NetFd> {
        let owner = OwnerId::next();
        let named = sys::is_nonblocking(sysfd, owner).and_then(|was| {
            sys::set_nonblocking(sysfd, owner, true)?;
            Ok((was, sys::getsockname(sysfd, owner)?))
        });
        let (was_nonblocking, family) = match named {
            Ok((was, addr)) => (was, addr.family()),
            Err(e) => {
                let _ = sys::close(sysfd, owner);
                return Err(e);
            }
        };
        let fd = NetFd::adopt(sysfd, owner, family, opts)?;
        if was_nonblocking {
            fd.set_nonblocking(true)?;
        }
        Ok(fd)
    }

    /// A connected pair of Unix sockets of type `ty`.
    pub(crate) fn pair(ty: i32, opts: Options) -> io::Result<(NetFd, NetFd)> {
        let owners = [OwnerId::next(), OwnerId::next()];
        let [a, b] = sys::socketpair(ty, owners)?;
        let first = match NetFd::adopt(a, owners[0], libc::AF_UNIX, opts) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys::close(b, owners[1]);
                return Err(e);
            }
        };
        let second = NetFd::adopt(b, owners[1], libc::AF_UNIX, opts)?;
        Ok((first, second))
    }

    /// A second socket object for the same kernel socket (std's
    /// `try_clone`): its own number, owner and lifetime; same options.
    pub(crate) fn try_clone(&self) -> io::Result<NetFd> {
        let new_owner = OwnerId::next();
        let sysfd = self.control(|n, owner| sys::dup(n, owner, new_owner))?;
        let clone = NetFd::adopt(sysfd, new_owner, self.family, self.opts)?;
        if self.is_nonblocking() {
            clone.set_nonblocking(true)?;
        }
        Ok(clone)
    }

    pub(crate) fn owner(&self) -> OwnerId {
        self.owner
    }

    pub(crate) fn options(&self) -> Options {
        self.opts
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        dispatch!(self, fd => fd.read(buf))
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        dispatch!(self, fd => fd.write(buf))
    }

    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        dispatch!(self, fd => fd.recv_from(buf))
    }

    pub(crate) fn send_to(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        dispatch!(self, fd => fd.send_to(buf, addr))
    }

    pub(crate) fn read_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        dispatch!(self, fd => fd.read_with(&mut op))
    }

    pub(crate) fn write_with<T>(
        &self,
        mut op: impl FnMut(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        dispatch!(self, fd => fd.write_with(&mut op))
    }

    pub(crate) fn accept(&self) -> io::Result<(NetFd, SockAddr)> {
        let new_owner = OwnerId::next();
        let (sysfd, addr) = dispatch!(self, fd => fd.accept(new_owner))?;
        Ok((
            NetFd::adopt(sysfd, new_owner, self.family, self.opts)?,
            addr,
        ))
    }

    pub(crate) fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        dispatch!(self, fd => fd.connect(addr))
    }

    /// Run `f` with the number under a reference (options, names, listen).
    pub(crate) fn control<T>(
        &self,
        f: impl FnOnce(RawFd, OwnerId) -> io::Result<T>,
    ) -> io::Result<T> {
        dispatch!(self, fd => fd.control(f))
    }

    pub(crate) fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        dispatch!(self, fd => fd.set_deadline(dir, deadline))
    }

    /// std's `set_nonblocking` (see `poll/mod.rs`): under a reference, so
    /// a closed socket answers with the closed error.
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.control(|_, _| {
            dispatch!(self, fd => fd.poller().set_nonblocking(on));
            Ok(())
        })
    }

    pub(crate) fn is_nonblocking(&self) -> bool {
        dispatch!(self, fd => fd.poller().is_nonblocking())
    }

    pub(crate) fn close(&self) -> io::Result<()> {
        dispatch!(self, fd => fd.close())
    }

    pub(crate) fn is_closed(&self) -> bool {
        dispatch!(self, fd => fd.is_closed())
    }
}

//! What the harness drives: a small trait a socket implementation plugs into.
//!
//! The harness never names netfd's socket types outside this module. A
//! [`Target`] opens listeners, dials, and binds datagram sockets; the
//! returned [`Listener`]s and [`Conn`]s do the operations of a scenario. For
//! the ledger to check anything, the implementation reports every syscall
//! that passes a descriptor number to the kernel through netfd's probe:
//! either by making its syscalls through [`netfd::sys`] (which reports them),
//! or by calling [`netfd::probe::before_syscall`] and
//! [`netfd::probe::after_syscall`] around its own. Sync points
//! ([`netfd::probe::sync_point`]) are where a controlled schedule may switch
//! threads; a target that reports none still runs, switching only between
//! scenario ops.
//!
//! A complete target, wrapping `std::net` TCP sockets whose numbers it
//! reports. Its Close can only shutdown(2) — std has no way to close a socket
//! another thread may be reading — so the number stays open until the value
//! drops after the case, and the ledger reports each socket as a `leak`:
//! the gap netfd's Close contract closes. A report names a custom target
//! `custom:<name>`.
//!
//! ```
//! use harness::target::{Addr, Conn, Listener, Target};
//! use harness::scenario::Direction;
//! use netfd::probe::{self, OwnerId, SysOp, Syscall};
//! use std::io::{self, Read, Write};
//! use std::net::SocketAddr;
//! use std::os::fd::AsRawFd;
//! use std::time::Instant;
//!
//! struct StdTarget;
//! struct StdConn(std::net::TcpStream, OwnerId);
//! struct StdListener(std::net::TcpListener, OwnerId);
//!
//! /// Tell the ledger that `fd` now belongs to a fresh owner: without this it
//! /// knows none of the target's sockets and has nothing to check.
//! fn created(fd: i32) -> OwnerId {
//!     let owner = OwnerId::next();
//!     let call = Syscall { op: SysOp::Socket, fd: -1, owner: OwnerId::NONE, new_owner: owner };
//!     probe::before_syscall(&call);
//!     probe::after_syscall(&call, Ok(i64::from(fd)));
//!     owner
//! }
//!
//! /// Report one syscall on `fd` for `owner` around `f`.
//! fn observed<T>(op: SysOp, fd: i32, owner: OwnerId, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
//!     let call = Syscall { op, fd, owner, new_owner: OwnerId::NONE };
//!     probe::before_syscall(&call);
//!     let r = f();
//!     probe::after_syscall(&call, r.as_ref().map(|_| 0).map_err(|e| e.raw_os_error().unwrap_or(0)));
//!     r
//! }
//!
//! impl Conn for StdConn {
//!     fn owner(&self) -> OwnerId { self.1 }
//!     fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
//!         observed(SysOp::Read, self.0.as_raw_fd(), self.1, || (&self.0).read(buf))
//!     }
//!     fn write(&self, buf: &[u8]) -> io::Result<usize> {
//!         observed(SysOp::Write, self.0.as_raw_fd(), self.1, || (&self.0).write_all(buf).map(|_| buf.len()))
//!     }
//!     fn set_deadline(&self, _dir: Direction, _at: Option<Instant>) -> io::Result<()> {
//!         Err(io::Error::new(io::ErrorKind::Unsupported, "std has no absolute deadlines"))
//!     }
//!     fn close(&self) -> io::Result<()> {
//!         observed(SysOp::Shutdown, self.0.as_raw_fd(), self.1, || self.0.shutdown(std::net::Shutdown::Both))
//!     }
//! }
//!
//! impl Listener for StdListener {
//!     fn owner(&self) -> OwnerId { self.1 }
//!     fn accept(&self) -> io::Result<Box<dyn Conn>> {
//!         let (s, _) = self.0.accept()?;
//!         let owner = created(s.as_raw_fd());
//!         Ok(Box::new(StdConn(s, owner)))
//!     }
//!     fn close(&self) -> io::Result<()> { Ok(()) }
//!     fn local_addr(&self) -> io::Result<Addr> { self.0.local_addr().map(Addr::Inet) }
//! }
//!
//! impl Target for StdTarget {
//!     fn name(&self) -> String { "custom:std".into() }
//!     fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
//!         let Addr::Inet(a) = addr else { return Err(io::ErrorKind::Unsupported.into()) };
//!         let l = std::net::TcpListener::bind(a)?;
//!         let owner = created(l.as_raw_fd());
//!         Ok(Box::new(StdListener(l, owner)))
//!     }
//!     fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
//!         let Addr::Inet(a) = addr else { return Err(io::ErrorKind::Unsupported.into()) };
//!         let s = std::net::TcpStream::connect(a)?;
//!         let owner = created(s.as_raw_fd());
//!         Ok(Box::new(StdConn(s, owner)))
//!     }
//!     fn bind_datagram(&self, _local: SocketAddr, _peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
//!         Err(io::ErrorKind::Unsupported.into())
//!     }
//! }
//! # let _ = StdTarget.name();
//! ```

use crate::scenario::Direction;
use netfd::probe::OwnerId;
use netfd::{Options, Variant};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Inet(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Inet(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A socket implementation under test. See the module docs.
pub trait Target: Send + Sync {
    /// Shown in reports (`fdmutex`, `go2009-refcount`, or your own).
    fn name(&self) -> String;
    /// A listening stream socket on `addr`.
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>>;
    /// A stream connection to `addr`.
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>>;
    /// A datagram socket bound to `local` whose writes go to `peer`.
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>>;
    /// The wait path of this target's sockets, for the report; `None` (the
    /// default) for a target that has no such choice.
    fn wait_path(&self) -> Option<netfd::WaitPath> {
        None
    }
}

/// A listening socket under test.
pub trait Listener: Send + Sync {
    fn owner(&self) -> OwnerId;
    fn accept(&self) -> io::Result<Box<dyn Conn>>;
    fn close(&self) -> io::Result<()>;
    fn local_addr(&self) -> io::Result<Addr>;
}

/// A connected socket under test (stream, or datagram with a fixed peer).
pub trait Conn: Send + Sync {
    fn owner(&self) -> OwnerId;
    /// Read (stream) or receive one datagram.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Write all of `buf` (stream) or send it as one datagram to the peer.
    fn write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Absolute deadline; `None` clears it.
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()>;
    fn close(&self) -> io::Result<()>;
    /// The address a peer reaches this socket at (datagram sockets).
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        Ok(None)
    }
}

/// netfd under one of its lifetime protocols.
#[derive(Clone, Copy, Debug)]
pub struct NetfdTarget {
    pub options: Options,
}

impl NetfdTarget {
    /// `variant` on the wait path it was designed with.
    pub fn new(variant: Variant) -> NetfdTarget {
        NetfdTarget {
            options: Options::for_variant(variant),
        }
    }

    /// `variant` on wait path `wait` (`None`: its usual one).
    pub fn with_wait(variant: Variant, wait: Option<netfd::WaitPath>) -> NetfdTarget {
        let options = Options::for_variant(variant);
        NetfdTarget {
            options: wait.map_or(options, |w| options.with_wait(w)),
        }
    }
}

enum NetfdConn {
    Tcp(netfd::TcpStream),
    Unix(netfd::UnixStream),
    Udp(netfd::UdpSocket, SocketAddr),
}

enum NetfdListener {
    Tcp(netfd::TcpListener),
    Unix(netfd::UnixListener),
}

/// Apply `f` to whichever socket type `$v` holds.
macro_rules! each {
    ($v:expr, $s:ident => $e:expr) => {
        match $v {
            NetfdConn::Tcp($s) => $e,
            NetfdConn::Unix($s) => $e,
            NetfdConn::Udp($s, _) => $e,
        }
    };
}

impl Conn for NetfdConn {
    fn owner(&self) -> OwnerId {
        each!(self, s => s.owner_id())
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        match self {
            NetfdConn::Tcp(s) => (&*s).read(buf),
            NetfdConn::Unix(s) => (&*s).read(buf),
            NetfdConn::Udp(s, _) => s.recv_from(buf).map(|(n, _)| n),
        }
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        match self {
            NetfdConn::Tcp(s) => (&*s).write(buf),
            NetfdConn::Unix(s) => (&*s).write(buf),
            NetfdConn::Udp(s, peer) => s.send_to(buf, *peer),
        }
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        each!(self, s => match dir {
            Direction::Read => s.set_read_deadline(at),
            Direction::Write => s.set_write_deadline(at),
            Direction::Both => s.set_deadline(at),
        })
    }
    fn close(&self) -> io::Result<()> {
        each!(self, s => s.close())
    }
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        match self {
            NetfdConn::Tcp(s) => s.local_addr().map(Some),
            NetfdConn::Unix(_) => Ok(None),
            NetfdConn::Udp(s, _) => s.local_addr().map(Some),
        }
    }
}

impl Listener for NetfdListener {
    fn owner(&self) -> OwnerId {
        match self {
            NetfdListener::Tcp(l) => l.owner_id(),
            NetfdListener::Unix(l) => l.owner_id(),
        }
    }
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        Ok(match self {
            NetfdListener::Tcp(l) => Box::new(NetfdConn::Tcp(l.accept()?.0)),
            NetfdListener::Unix(l) => Box::new(NetfdConn::Unix(l.accept()?)),
        })
    }
    fn close(&self) -> io::Result<()> {
        match self {
            NetfdListener::Tcp(l) => l.close(),
            NetfdListener::Unix(l) => l.close(),
        }
    }
    fn local_addr(&self) -> io::Result<Addr> {
        match self {
            NetfdListener::Tcp(l) => l.local_addr().map(Addr::Inet),
            NetfdListener::Unix(l) => l
                .local_path()?
                .map(Addr::Unix)
                .ok_or_else(|| io::Error::other("unix listener has no path")),
        }
    }
}

impl Target for NetfdTarget {
    fn name(&self) -> String {
        self.options.variant.name().to_string()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Ok(match addr {
            Addr::Inet(a) => Box::new(NetfdListener::Tcp(netfd::TcpListener::bind_with(
                *a,
                self.options,
            )?)),
            Addr::Unix(p) => Box::new(NetfdListener::Unix(netfd::UnixListener::bind_with(
                p,
                self.options,
            )?)),
        })
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        Ok(match addr {
            Addr::Inet(a) => Box::new(NetfdConn::Tcp(netfd::TcpStream::connect_with(
                *a,
                self.options,
            )?)),
            Addr::Unix(p) => Box::new(NetfdConn::Unix(netfd::UnixStream::connect_with(
                p,
                self.options,
            )?)),
        })
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let s = netfd::UdpSocket::bind_with(local, self.options)?;
        Ok(Box::new(NetfdConn::Udp(s, peer)))
    }
    fn wait_path(&self) -> Option<netfd::WaitPath> {
        Some(self.options.wait)
    }
}

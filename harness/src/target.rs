//! What the harness drives: a small trait a socket implementation plugs into.
//!
//! The harness never names netfd's socket types outside this module. A
//! [`Target`] opens listeners, dials, and binds datagram sockets (UDP, and
//! Unix-domain for the `unixgram` transport if it implements
//! [`Target::bind_unix_datagram`]); the returned [`Listener`]s and [`Conn`]s
//! do the operations of a scenario.
//!
//! The adapter is all a user writes: no probe calls, no sync points. The
//! harness observes a target's syscalls through its interposer
//! ([`crate::intercept`]): numbers created while a listen, dial or accept
//! runs belong to the object it returns, calls made while an op on X runs
//! are calls for X, every such call is a switch point for a controlled
//! schedule, and the ledger's rules (`fd_reuse`, `use_after_close`,
//! `close_in_flight`, `double_close`, `leak`) apply as they do to netfd.
//! [`Conn::is_closed_error`] and [`Listener::is_closed_error`] say what the
//! target's "closed" error is (default: netfd's), so it is judged by its own
//! contract. netfd itself reports every call through its probe and says so
//! ([`Target::reports_syscalls`]); a target that does the same may too.
//! [`StdNetTarget`] is a ready-made one for `std::net` with
//! shutdown-to-cancel.
//!
//! A complete target: a wrapper around raw numbers, as written with no
//! thought of the harness. Its Close releases the number while another
//! thread may have loaded it: the harness reports that as `fd_reuse` when
//! another socket took the number in between (`tests/uninstrumented_racy.rs`
//! runs the same shape). A report names a custom target `custom:<name>`.
//! The binary that runs it calls [`crate::intercept::link`] once.
//!
//! ```
//! use harness::target::{Addr, Conn, Listener, Target};
//! use harness::scenario::Direction;
//! use std::io;
//! use std::net::SocketAddr;
//! use std::os::fd::{IntoRawFd, RawFd};
//! use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
//! use std::time::Instant;
//!
//! struct RawTarget;
//! struct RawConn(AtomicI32);
//!
//! fn closed() -> io::Error {
//!     io::Error::new(io::ErrorKind::NotConnected, "raw socket is closed")
//! }
//!
//! fn cvt(r: isize) -> io::Result<usize> {
//!     if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r as usize) }
//! }
//!
//! impl Conn for RawConn {
//!     fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
//!         let fd = self.0.load(SeqCst);
//!         if fd < 0 { return Err(closed()) }
//!         // SAFETY: `buf` is valid for writes of its length.
//!         cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
//!     }
//!     fn write(&self, buf: &[u8]) -> io::Result<usize> {
//!         let fd = self.0.load(SeqCst);
//!         if fd < 0 { return Err(closed()) }
//!         // SAFETY: `buf` is valid for reads of its length.
//!         cvt(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
//!     }
//!     fn set_deadline(&self, _dir: Direction, _at: Option<Instant>) -> io::Result<()> {
//!         Err(io::Error::new(io::ErrorKind::Unsupported, "no deadlines"))
//!     }
//!     fn close(&self) -> io::Result<()> {
//!         let fd = self.0.swap(-1, SeqCst);
//!         if fd < 0 { return Err(closed()) }
//!         // SAFETY: plain syscalls on the number this wrapper owned.
//!         unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
//!         cvt(unsafe { libc::close(fd) } as isize).map(drop)
//!     }
//!     fn is_closed_error(&self, e: &io::Error) -> bool {
//!         e.kind() == io::ErrorKind::NotConnected
//!     }
//! }
//!
//! impl Target for RawTarget {
//!     fn name(&self) -> String { "custom:raw".into() }
//!     fn listen(&self, _addr: &Addr) -> io::Result<Box<dyn Listener>> {
//!         Err(io::ErrorKind::Unsupported.into())
//!     }
//!     fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
//!         let Addr::Inet(a) = addr else { return Err(io::ErrorKind::Unsupported.into()) };
//!         let fd: RawFd = std::net::TcpStream::connect(a)?.into_raw_fd();
//!         Ok(Box::new(RawConn(AtomicI32::new(fd))))
//!     }
//!     fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
//!         let s = std::net::UdpSocket::bind(local)?;
//!         s.connect(peer)?;
//!         Ok(Box::new(RawConn(AtomicI32::new(s.into_raw_fd()))))
//!     }
//! }
//! # harness::intercept::link();
//! # let _ = RawTarget.name();
//! ```
//!
//! Check it from a test with one call, `harness::check(RawTarget).run()`
//! ([`crate::check`]), or with [`crate::run::run`] over scenario files
//! (`docs/check-your-own-type.md`).

mod std_net;

pub use std_net::StdNetTarget;

use crate::scenario::Direction;
use netfd::probe::OwnerId;
use netfd::{Options, Variant};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a listener listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Inet(SocketAddr),
    /// A Unix-domain stream socket's path.
    Unix(PathBuf),
    /// A Unix-domain sequenced-packet socket's path (`SOCK_SEQPACKET`, the
    /// `unixpacket` transport). A target without such sockets returns
    /// `Unsupported` for it and says so in [`Target::has_unix_seqpacket`].
    UnixPacket(PathBuf),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Inet(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
            Addr::UnixPacket(p) => write!(f, "unixpacket:{}", p.display()),
        }
    }
}

/// What a target supports ([`Target::capabilities`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// Absolute deadlines ([`Conn::set_deadline`]).
    pub deadlines: bool,
    /// UDP sockets ([`Target::bind_datagram`]: `udp4`, `udp6`).
    pub udp: bool,
    /// IPv6 loopback (`tcp6`, `udp6`).
    pub ipv6: bool,
    /// Unix-domain stream sockets ([`Addr::Unix`]: `unix`).
    pub unix_stream: bool,
    /// Unix-domain datagram sockets ([`Target::bind_unix_datagram`]: `unixgram`).
    pub unix_datagram: bool,
    /// Unix sequenced-packet sockets ([`Addr::UnixPacket`]: `unixpacket`).
    pub unix_seqpacket: bool,
}

/// One thing a target may lack ([`Capabilities`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    Deadlines,
    Udp,
    Ipv6,
    UnixStream,
    UnixDatagram,
    UnixSeqpacket,
}

impl Capabilities {
    /// Everything: netfd's.
    pub const ALL: Capabilities = Capabilities {
        deadlines: true,
        udp: true,
        ipv6: true,
        unix_stream: true,
        unix_datagram: true,
        unix_seqpacket: true,
    };

    /// These capabilities without `c`.
    pub fn without(mut self, c: Capability) -> Capabilities {
        *self.flag(c) = false;
        self
    }

    /// Whether `c` is among them.
    pub fn has(mut self, c: Capability) -> bool {
        *self.flag(c)
    }

    fn flag(&mut self, c: Capability) -> &mut bool {
        match c {
            Capability::Deadlines => &mut self.deadlines,
            Capability::Udp => &mut self.udp,
            Capability::Ipv6 => &mut self.ipv6,
            Capability::UnixStream => &mut self.unix_stream,
            Capability::UnixDatagram => &mut self.unix_datagram,
            Capability::UnixSeqpacket => &mut self.unix_seqpacket,
        }
    }

    /// What a scenario needs that these lack, as a reason to skip it;
    /// `None` when it can run.
    pub fn lacks_for(self, s: &crate::scenario::Scenario) -> Option<String> {
        use crate::scenario::{Op, Transport};
        let need = match s.transport {
            Transport::Tcp4 => None,
            Transport::Tcp6 => (!self.ipv6).then_some(Capability::Ipv6),
            Transport::Udp4 => (!self.udp).then_some(Capability::Udp),
            Transport::Udp6 => (!self.udp)
                .then_some(Capability::Udp)
                .or((!self.ipv6).then_some(Capability::Ipv6)),
            Transport::Unix => (!self.unix_stream).then_some(Capability::UnixStream),
            Transport::Unixgram => (!self.unix_datagram).then_some(Capability::UnixDatagram),
            Transport::Unixpacket => (!self.unix_seqpacket).then_some(Capability::UnixSeqpacket),
        };
        if let Some(c) = need {
            return Some(format!("transport {} needs {c:?}", s.transport));
        }
        let deadline = s
            .threads
            .iter()
            .flat_map(|t| &t.ops)
            .any(|op| matches!(op, Op::SetDeadline { .. }));
        (deadline && !self.deadlines).then(|| "set_deadline needs Deadlines".to_string())
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
    /// A Unix-domain datagram socket bound to the path `local` (which does
    /// not exist yet) and connected to the socket bound at `peer`: what the
    /// `unixgram` transport runs on. The default says the target has none,
    /// and a `unixgram` scenario fails to set up with that message; a
    /// target without Unix datagram sockets need not implement it (nor
    /// [`Target::has_unix_datagram`]).
    fn bind_unix_datagram(&self, local: &Path, peer: &Path) -> io::Result<Box<dyn Conn>> {
        let _ = (local, peer);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "target {} has no Unix datagram sockets (Target::bind_unix_datagram)",
                self.name()
            ),
        ))
    }
    /// Whether [`Target::bind_unix_datagram`] is implemented. Generated cases
    /// draw the `unixgram` transport only for a target that says so (for
    /// one that does not, those draws run on `udp4`). Default: no.
    fn has_unix_datagram(&self) -> bool {
        false
    }
    /// Whether [`Target::listen`] and [`Target::dial`] take
    /// [`Addr::UnixPacket`] (Unix sequenced-packet sockets, the `unixpacket`
    /// transport). Default: no; a `unixpacket` scenario then fails to set up
    /// with the target's `Unsupported` error.
    fn has_unix_seqpacket(&self) -> bool {
        false
    }
    /// What this target can do, declared once: scenario files and
    /// generated ops that need something it lacks are skipped (and counted
    /// as skipped) by [`crate::check`], never failed. Default: from
    /// [`Target::has_unix_datagram`] and [`Target::has_unix_seqpacket`],
    /// everything else yes.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            unix_datagram: self.has_unix_datagram(),
            unix_seqpacket: self.has_unix_seqpacket(),
            ..Capabilities::ALL
        }
    }
    /// Whether every syscall the target makes is reported through netfd's
    /// probe (netfd itself). If so the harness relies on those reports
    /// alone; otherwise (the default) its objects are observed through the
    /// interposer ([`crate::intercept`]).
    fn reports_syscalls(&self) -> bool {
        false
    }

    /// The wait path of this target's sockets, for the report; `None` (the
    /// default) for a target that has no such choice.
    fn wait_path(&self) -> Option<netfd::WaitPath> {
        None
    }

    /// The owners of the registrations this target's readiness machinery
    /// holds now (netfd: its poll server's), if it can say; `None` (the
    /// default) for a target without one. A socket whose Close returned
    /// must hold none: at the end of a case, one that does is a `leak`.
    fn live_registrations(&self) -> Option<Vec<OwnerId>> {
        None
    }
}

/// A listening socket under test.
pub trait Listener: Send + Sync {
    /// The id the probe reports this socket's calls under; `NONE` (the
    /// default) lets the harness name it.
    fn owner(&self) -> OwnerId {
        OwnerId::NONE
    }
    fn accept(&self) -> io::Result<Box<dyn Conn>>;
    fn close(&self) -> io::Result<()>;
    fn local_addr(&self) -> io::Result<Addr>;
    /// Whether `e` is this socket's "closed" error: what an accept racing
    /// or following Close may return. Default: netfd's.
    fn is_closed_error(&self, e: &io::Error) -> bool {
        netfd::is_closed(e)
    }
}

/// A connected socket under test (stream, or datagram with a fixed peer).
pub trait Conn: Send + Sync {
    /// The id the probe reports this socket's calls under; `NONE` (the
    /// default) lets the harness name it.
    fn owner(&self) -> OwnerId {
        OwnerId::NONE
    }
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
    /// Whether `e` is this socket's "closed" error: what an op racing or
    /// following Close may return instead of its result. Default: netfd's.
    fn is_closed_error(&self, e: &io::Error) -> bool {
        netfd::is_closed(e)
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
    /// Connected to its peer, so that the kernel reports the peer's
    /// ICMP errors (a closed port) on it, as on any connected UDP socket.
    Udp(netfd::UdpSocket),
    UnixDatagram(netfd::UnixDatagram),
    Seqpacket(netfd::unix::UnixSeqpacket),
}

enum NetfdListener {
    Tcp(netfd::TcpListener),
    Unix(netfd::UnixListener),
    Seqpacket(netfd::unix::UnixSeqpacketListener),
}

/// Apply `f` to whichever socket type `$v` holds.
macro_rules! each {
    ($v:expr, $s:ident => $e:expr) => {
        match $v {
            NetfdConn::Tcp($s) => $e,
            NetfdConn::Unix($s) => $e,
            NetfdConn::Udp($s) => $e,
            NetfdConn::UnixDatagram($s) => $e,
            NetfdConn::Seqpacket($s) => $e,
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
            NetfdConn::Udp(s) => s.recv_from(buf).map(|(n, _)| n),
            // recvfrom(2), as UDP's; the socket is connected, so only its
            // peer's datagrams arrive.
            NetfdConn::UnixDatagram(s) => s.recv_from(buf).map(|(n, _)| n),
            // One record; a `bytes` shorter than it truncates it, as recv(2).
            NetfdConn::Seqpacket(s) => s.recv(buf),
        }
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        match self {
            NetfdConn::Tcp(s) => (&*s).write(buf),
            NetfdConn::Unix(s) => (&*s).write(buf),
            NetfdConn::Udp(s) => s.send(buf),
            NetfdConn::UnixDatagram(s) => s.send(buf),
            NetfdConn::Seqpacket(s) => s.send(buf),
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
            NetfdConn::Udp(s) => s.local_addr().map(Some),
            NetfdConn::UnixDatagram(_) | NetfdConn::Seqpacket(_) => Ok(None),
        }
    }
}

impl Listener for NetfdListener {
    fn owner(&self) -> OwnerId {
        match self {
            NetfdListener::Tcp(l) => l.owner_id(),
            NetfdListener::Unix(l) => l.owner_id(),
            NetfdListener::Seqpacket(l) => l.owner_id(),
        }
    }
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        Ok(match self {
            NetfdListener::Tcp(l) => Box::new(NetfdConn::Tcp(l.accept()?.0)),
            NetfdListener::Unix(l) => Box::new(NetfdConn::Unix(l.accept()?.0)),
            NetfdListener::Seqpacket(l) => Box::new(NetfdConn::Seqpacket(l.accept()?.0)),
        })
    }
    fn close(&self) -> io::Result<()> {
        match self {
            NetfdListener::Tcp(l) => l.close(),
            NetfdListener::Unix(l) => l.close(),
            NetfdListener::Seqpacket(l) => l.close(),
        }
    }
    fn local_addr(&self) -> io::Result<Addr> {
        match self {
            NetfdListener::Tcp(l) => l.local_addr().map(Addr::Inet),
            NetfdListener::Unix(l) => l
                .local_path()?
                .map(Addr::Unix)
                .ok_or_else(|| io::Error::other("unix listener has no path")),
            NetfdListener::Seqpacket(l) => l
                .local_path()?
                .map(Addr::UnixPacket)
                .ok_or_else(|| io::Error::other("unix seqpacket listener has no path")),
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
            Addr::UnixPacket(p) => Box::new(NetfdListener::Seqpacket(
                netfd::unix::UnixSeqpacketListener::bind_with(p, self.options)?,
            )),
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
            Addr::UnixPacket(p) => Box::new(NetfdConn::Seqpacket(
                netfd::unix::UnixSeqpacket::connect_with(p, self.options)?,
            )),
        })
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let s = netfd::UdpSocket::bind_with(local, self.options)?;
        s.connect(peer)?;
        Ok(Box::new(NetfdConn::Udp(s)))
    }
    fn bind_unix_datagram(&self, local: &Path, peer: &Path) -> io::Result<Box<dyn Conn>> {
        let s = netfd::UnixDatagram::bind_with(local, self.options)?;
        s.connect(peer)?;
        Ok(Box::new(NetfdConn::UnixDatagram(s)))
    }
    fn has_unix_datagram(&self) -> bool {
        true
    }
    fn has_unix_seqpacket(&self) -> bool {
        true
    }
    fn reports_syscalls(&self) -> bool {
        true
    }

    fn wait_path(&self) -> Option<netfd::WaitPath> {
        Some(self.options.wait)
    }

    fn live_registrations(&self) -> Option<Vec<OwnerId>> {
        Some(netfd::poll::server::registered_owners())
    }
}

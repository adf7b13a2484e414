//! Public socket types, shaped like `std::net` and `std::os::unix::net`.
//!
//! Every method takes `&self`: share a socket between threads (by reference
//! or `Arc`) and read in one, write in another and close from a third. After
//! [`close`](TcpStream::close) every operation fails with the closed error
//! ([`crate::is_closed`]); Close returns once the descriptor number has been
//! released.
//!
//! The signatures are std's (`bind(impl ToSocketAddrs)`, `accept() ->
//! (stream, addr)`, `incoming()`, `peek`, `ttl`, timeouts, `Read`/`Write` for
//! `T` and `&T`, conversions from and to std's types and `OwnedFd`), so code
//! written against `std::net` compiles against netfd by changing its `use`
//! line (`netfd/tests/std_dropin.rs` checks exactly that). Where std's
//! semantics meet the Close contract, the contract wins:
//! - an operation racing or following Close fails with the closed error, even
//!   when its timeout expired at the same moment;
//! - `incoming()` yields the closed error once after Close, then ends (std's
//!   never ends);
//! - a datagram `recv` parked at Close returns the closed error.
//!
//! Borrowing the number ([`AsRawFd`](std::os::fd::AsRawFd)) is a hazard std
//! does not have: a concurrent Close releases it and the kernel may give it
//! to the next socket. A `BorrowedFd` promises the number stays open, which
//! `close(&self)` cannot keep for netfd's own number, so
//! [`AsFd`](std::os::fd::AsFd) lends a duplicate that lives as long as the
//! socket value (`lend.rs`: Close shuts the socket down through it, but the
//! kernel socket lives on until the value drops); `with_fd` lends netfd's
//! own number for the length of a closure, under a reference that keeps it
//! open.

mod lend;
mod seqpacket;
mod tcp;
mod timeout;
mod udp;
pub mod unix;

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};

use crate::netfd::NetFd;
use crate::poll::WaitPath;
use crate::sys::{self, SockAddr};
use crate::variants::Variant;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// How a socket is opened: its lifetime protocol and its wait path.
/// Sockets accepted from a listener inherit the listener's options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options {
    pub variant: Variant,
    pub wait: WaitPath,
}

impl Options {
    /// `variant` with the wait path it was designed with: the historical
    /// protocols wait through the poll server, `fdmutex` polls directly.
    pub fn for_variant(variant: Variant) -> Options {
        let wait = if variant == Variant::FdMutex {
            WaitPath::Direct
        } else {
            WaitPath::Server
        };
        Options { variant, wait }
    }

    pub fn with_wait(self, wait: WaitPath) -> Options {
        Options { wait, ..self }
    }
}

/// Backlog for listening sockets: the kernel caps it at somaxconn.
const LISTEN_BACKLOG: i32 = 4096;

fn domain_of(addr: &SocketAddr) -> i32 {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

/// std's resolution loop: try `f` on every address `addr` resolves to and
/// return the first success, else the last error.
fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(&a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

fn inet_addr(sa: SockAddr) -> io::Result<SocketAddr> {
    sa.as_inet().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "address is not an IP socket address",
        )
    })
}

/// socket + SO_REUSEADDR (IP only) + bind + listen; `ty` is SOCK_STREAM or
/// (Unix) SOCK_SEQPACKET.
fn listen_on(domain: i32, ty: i32, addr: &SockAddr, opts: Options) -> io::Result<NetFd> {
    let fd = NetFd::socket(domain, ty, opts)?;
    fd.control(|n, owner| {
        if domain != libc::AF_UNIX {
            sys::setsockopt_int(n, owner, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        }
        sys::bind(n, owner, addr)?;
        sys::listen(n, owner, LISTEN_BACKLOG)
    })?;
    Ok(fd)
}

/// Debug output shaped like std's: `TcpStream { addr: .., peer: .., fd: 7 }`,
/// or `TcpStream { closed: true }` once closed.
fn debug_socket(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    fd: &NetFd,
    with_peer: bool,
) -> std::fmt::Result {
    struct Addr(SockAddr);
    impl std::fmt::Debug for Addr {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self.0.as_inet() {
                Some(a) => write!(f, "{a:?}"),
                None => write!(f, "{:?}", unix::SocketAddr::from_sys(self.0)),
            }
        }
    }
    let mut d = f.debug_struct(name);
    if fd.is_closed() {
        return d.field("closed", &true).finish();
    }
    if let Ok(a) = fd.control(sys::getsockname) {
        d.field("addr", &Addr(a));
    }
    if with_peer {
        if let Ok(a) = fd.control(sys::getpeername) {
            d.field("peer", &Addr(a));
        }
    }
    if let Ok(n) = fd.control(|n, _| Ok(n)) {
        d.field("fd", &n);
    }
    d.finish()
}

/// Methods and conversions every socket type has, written once. Each type
/// has the fields `fd: NetFd` and `timeouts: Timeouts`.
macro_rules! socket_common {
    ($ty:ident) => {
        impl $ty {
            fn from_netfd_plain(fd: crate::netfd::NetFd) -> $ty {
                $ty {
                    fd,
                    timeouts: crate::net::timeout::Timeouts::default(),
                    lent: crate::net::lend::Lent::default(),
                }
            }

            /// Close the socket: wakes every parked operation (they fail with
            /// the closed error) and returns once the descriptor number is
            /// released. A second close returns the closed error.
            pub fn close(&self) -> std::io::Result<()> {
                let r = self.fd.close();
                // A descriptor `as_fd` lent keeps the kernel socket open;
                // end it for the peer and the borrower (`net/lend.rs`).
                self.lent.shut_down();
                r
            }

            /// Whether `close` has been called.
            pub fn is_closed(&self) -> bool {
                self.fd.is_closed()
            }

            /// std's `set_nonblocking`: when on, an operation that would
            /// wait (read, recv, accept, write, send, ...) fails with
            /// `WouldBlock` instead; a write then writes what fits and
            /// reports it, as std's. Close still wins: on a closed socket
            /// every operation, this one included, fails with the closed
            /// error. The flag belongs to this socket object, not to the
            /// kernel's file description: a `try_clone` starts with this
            /// socket's setting but changes it on its own (std's clones
            /// share one), an accepted stream starts blocking (as std's),
            /// an adopted descriptor keeps its O_NONBLOCK. An operation
            /// parked when it is turned on stays parked until it is woken;
            /// if its retry then finds nothing it returns `WouldBlock`.
            pub fn set_nonblocking(&self, nonblocking: bool) -> std::io::Result<()> {
                self.fd.set_nonblocking(nonblocking)
            }

            /// Absolute deadline for reads (and accepts); `None` clears it.
            /// A parked read re-evaluates at once. A read timeout, if set,
            /// shortens it for each read (the earlier of the two applies).
            pub fn set_read_deadline(
                &self,
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<()> {
                self.timeouts
                    .set_deadline(&self.fd, crate::poll::Dir::Read, deadline)
            }

            /// Absolute deadline for writes (and connects); `None` clears it.
            pub fn set_write_deadline(
                &self,
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<()> {
                self.timeouts
                    .set_deadline(&self.fd, crate::poll::Dir::Write, deadline)
            }

            /// Both deadlines at once.
            pub fn set_deadline(
                &self,
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<()> {
                self.set_read_deadline(deadline)?;
                self.set_write_deadline(deadline)
            }

            /// This socket's never-reused identity (what the probe reports).
            pub fn owner_id(&self) -> crate::probe::OwnerId {
                self.fd.owner()
            }

            /// The options the socket was opened with.
            pub fn options(&self) -> crate::net::Options {
                self.fd.options()
            }

            /// SO_ERROR: the pending socket error, cleared by reading it.
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                match self.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR)? {
                    0 => Ok(None),
                    errno => Ok(Some(std::io::Error::from_raw_os_error(errno))),
                }
            }

            /// A second socket object for the same kernel socket, with its
            /// own descriptor number and its own lifetime: closing one does
            /// not close the other (as std's `try_clone`).
            pub fn try_clone(&self) -> std::io::Result<$ty> {
                Ok($ty::from_netfd_plain(self.fd.try_clone()?))
            }

            /// Run `f` with the descriptor borrowed under a reference: the
            /// number stays open until `f` returns, even if another thread
            /// calls `close` meanwhile (that Close returns after `f`). Do not
            /// close this socket from inside `f`: it would wait for itself.
            pub fn with_fd<T>(
                &self,
                f: impl FnOnce(std::os::fd::BorrowedFd<'_>) -> T,
            ) -> std::io::Result<T> {
                self.fd.control(|n, _| Ok(crate::sys::with_borrowed(n, f)))
            }

            /// Hand the kernel socket over as an `OwnedFd` (a new number for
            /// it, in blocking mode as std's sockets are unless
            /// `set_nonblocking(true)` was called) and close this one.
            /// It takes the socket by value, so no other thread can be using
            /// it (an `Arc`'d socket must be unwrapped first); a closed
            /// socket has no descriptor left: the closed error.
            pub fn into_owned_fd(self) -> std::io::Result<std::os::fd::OwnedFd> {
                let owned = self.fd.control(|n, owner| {
                    let owned = crate::sys::dup_owned(n, owner)?;
                    crate::sys::set_nonblocking(n, owner, self.fd.is_nonblocking())?;
                    Ok(owned)
                })?;
                self.fd.close()?;
                Ok(owned)
            }

            /// Adopt a descriptor (made non-blocking) with `opts`.
            pub fn from_fd_with(
                fd: std::os::fd::OwnedFd,
                opts: crate::net::Options,
            ) -> std::io::Result<$ty> {
                use std::os::fd::IntoRawFd;
                let fd = crate::netfd::NetFd::adopt_foreign(fd.into_raw_fd(), opts)?;
                Ok($ty::from_netfd_plain(fd))
            }

            /// SO_RCVBUF.
            pub fn set_read_buffer(&self, bytes: usize) -> std::io::Result<()> {
                self.setsockopt(
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    crate::net::clamp_int(bytes),
                )
            }

            /// SO_SNDBUF.
            pub fn set_write_buffer(&self, bytes: usize) -> std::io::Result<()> {
                self.setsockopt(
                    libc::SOL_SOCKET,
                    libc::SO_SNDBUF,
                    crate::net::clamp_int(bytes),
                )
            }

            /// SO_REUSEADDR.
            pub fn set_reuse_addr(&self, on: bool) -> std::io::Result<()> {
                self.setsockopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, i32::from(on))
            }

            /// SO_KEEPALIVE.
            pub fn set_keepalive(&self, on: bool) -> std::io::Result<()> {
                self.setsockopt(libc::SOL_SOCKET, libc::SO_KEEPALIVE, i32::from(on))
            }

            /// SO_DONTROUTE.
            pub fn set_dont_route(&self, on: bool) -> std::io::Result<()> {
                self.setsockopt(libc::SOL_SOCKET, libc::SO_DONTROUTE, i32::from(on))
            }

            /// SO_LINGER: `None` turns lingering off.
            pub fn set_linger(&self, linger: Option<std::time::Duration>) -> std::io::Result<()> {
                self.fd
                    .control(|n, owner| crate::sys::set_linger(n, owner, linger))
            }

            /// Read an integer socket option (for example `SO_RCVBUF`).
            pub fn getsockopt(&self, level: i32, name: i32) -> std::io::Result<i32> {
                self.fd
                    .control(|n, owner| crate::sys::getsockopt_int(n, owner, level, name))
            }

            fn setsockopt(&self, level: i32, name: i32, value: i32) -> std::io::Result<()> {
                self.fd
                    .control(|n, owner| crate::sys::setsockopt_int(n, owner, level, name, value))
            }
        }

        /// The number, or -1 once closed. A hazard std does not have: a
        /// concurrent `close` releases the number and the kernel may hand it
        /// to the next socket, so use it only while no other thread can close
        /// this socket (or use `with_fd`).
        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.fd.control(|n, _| Ok(n)).unwrap_or(-1)
            }
        }

        /// A duplicate of the descriptor, made on first use and open until
        /// this value drops, so the `BorrowedFd` keeps its promise whatever
        /// `close` does (netfd's own number cannot: `close(&self)`
        /// releases it). The hazard: after `close`, which shuts the socket
        /// down, the kernel socket lives on through the duplicate until the
        /// value drops (a listener's port stays bound until then). On a
        /// socket closed before any `as_fd`: a placeholder that is not this
        /// socket (its calls fail). `with_fd` lends netfd's own number for
        /// the length of a closure instead. See `net/lend.rs`.
        ///
        /// # Panics
        /// If the process is out of descriptors on the first call.
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.lent
                    .get_or_dup(|| self.fd.control(|n, owner| crate::sys::dup_owned(n, owner)))
            }
        }

        /// As [`into_owned_fd`]($ty::into_owned_fd).
        ///
        /// # Panics
        /// On a closed socket: it has no descriptor left to give.
        impl From<$ty> for std::os::fd::OwnedFd {
            fn from(socket: $ty) -> std::os::fd::OwnedFd {
                socket.into_owned_fd().unwrap_or_else(|e| {
                    panic!("netfd: converting a {} into OwnedFd: {e}", stringify!($ty))
                })
            }
        }

        /// As `From<OwnedFd>`: the number is adopted (made non-blocking in
        /// the kernel; the socket blocks as std's do).
        ///
        /// # Safety
        /// As std's: `fd` must be an open socket the caller owns and gives up.
        ///
        /// # Panics
        /// As `From<OwnedFd>`.
        impl std::os::fd::FromRawFd for $ty {
            unsafe fn from_raw_fd(fd: std::os::fd::RawFd) -> $ty {
                let fd = crate::netfd::NetFd::adopt_foreign(fd, crate::net::Options::default())
                    .unwrap_or_else(|e| {
                        panic!("netfd: adopting a descriptor as {}: {e}", stringify!($ty))
                    });
                $ty::from_netfd_plain(fd)
            }
        }

        /// As [`into_owned_fd`]($ty::into_owned_fd), giving up the number.
        ///
        /// # Panics
        /// On a closed socket: it has no descriptor left to give.
        impl std::os::fd::IntoRawFd for $ty {
            fn into_raw_fd(self) -> std::os::fd::RawFd {
                std::os::fd::OwnedFd::from(self).into_raw_fd()
            }
        }

        /// Adopt a descriptor with the default options (made non-blocking).
        ///
        /// # Panics
        /// If the descriptor cannot be made non-blocking or named (it is not
        /// a socket).
        impl From<std::os::fd::OwnedFd> for $ty {
            fn from(fd: std::os::fd::OwnedFd) -> $ty {
                $ty::from_fd_with(fd, crate::net::Options::default()).unwrap_or_else(|e| {
                    panic!("netfd: adopting a descriptor as {}: {e}", stringify!($ty))
                })
            }
        }
    };
}
pub(crate) use socket_common;

/// std's relative timeouts, on top of the deadlines (see `timeout.rs`).
macro_rules! socket_timeouts {
    ($ty:ty) => {
        impl $ty {
            /// std's read timeout: each read fails with `TimedOut` when it
            /// waits longer than `timeout`; `Some(Duration::ZERO)` is refused
            /// (as std). Combined with a read deadline, the earlier applies.
            pub fn set_read_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.timeouts
                    .set_timeout(&self.fd, crate::poll::Dir::Read, timeout)
            }

            /// std's write timeout, as [`set_read_timeout`](Self::set_read_timeout).
            pub fn set_write_timeout(
                &self,
                timeout: Option<std::time::Duration>,
            ) -> std::io::Result<()> {
                self.timeouts
                    .set_timeout(&self.fd, crate::poll::Dir::Write, timeout)
            }

            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                self.timeouts.timeout(&self.fd, crate::poll::Dir::Read)
            }

            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                self.timeouts.timeout(&self.fd, crate::poll::Dir::Write)
            }
        }
    };
}
pub(crate) use socket_timeouts;

/// IP_TTL, as std sets it on every IP socket.
macro_rules! socket_ttl {
    ($ty:ty) => {
        impl $ty {
            /// IP_TTL.
            pub fn set_ttl(&self, ttl: u32) -> std::io::Result<()> {
                self.setsockopt(
                    libc::IPPROTO_IP,
                    libc::IP_TTL,
                    crate::net::clamp_int(ttl as usize),
                )
            }

            pub fn ttl(&self) -> std::io::Result<u32> {
                Ok(self.getsockopt(libc::IPPROTO_IP, libc::IP_TTL)? as u32)
            }
        }
    };
}
pub(crate) use socket_ttl;

/// Stream I/O over `T` and `&T` (one thread reads while another writes),
/// under the timeouts; `write` writes the whole buffer or fails (Go's Write),
/// `write_vectored` makes one syscall and may write part.
macro_rules! stream_io {
    ($ty:ty) => {
        impl std::io::Read for &$ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.timeouts
                    .run(&self.fd, crate::poll::Dir::Read, || self.fd.read(buf))
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                self.timeouts.run(&self.fd, crate::poll::Dir::Read, || {
                    self.fd
                        .read_with(|n, owner| crate::sys::readv(n, owner, bufs))
                })
            }
        }
        impl std::io::Write for &$ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.timeouts
                    .run(&self.fd, crate::poll::Dir::Write, || self.fd.write(buf))
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.timeouts.run(&self.fd, crate::poll::Dir::Write, || {
                    self.fd
                        .write_with(|n, owner| crate::sys::writev(n, owner, bufs))
                })
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }
        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl $ty {
            /// shutdown(2) one or both directions; the socket stays open.
            pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
                self.fd
                    .control(|n, owner| crate::sys::shutdown(n, owner, how))
            }

            /// Read without consuming: the next read sees the same bytes.
            /// Waits for data as `read` does.
            pub fn peek(&self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.timeouts.run(&self.fd, crate::poll::Dir::Read, || {
                    self.fd
                        .read_with(|n, owner| crate::sys::recv(n, owner, buf, libc::MSG_PEEK))
                })
            }
        }
    };
}
pub(crate) use stream_io;

pub(crate) fn clamp_int(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

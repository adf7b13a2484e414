//! Unix sockets, shaped like `std::os::unix::net`: `use netfd::unix::{..}`
//! where std code has `use std::os::unix::net::{..}`.

use super::timeout::Timeouts;
use super::{debug_socket, listen_on, socket_common, socket_timeouts, stream_io, Options};
use crate::netfd::NetFd;
use crate::poll::Dir;
use crate::sys::{self, SockAddr};
use std::io;
use std::path::{Path, PathBuf};

/// A Unix socket address: a path, a Linux abstract name, or unnamed (std's
/// `std::os::unix::net::SocketAddr`, which cannot be built outside std).
///
/// ```
/// use netfd::unix::{SocketAddr, UnixDatagram};
///
/// // Linux autobind: the kernel picks a unique abstract name.
/// let server = UnixDatagram::bind_addr(&SocketAddr::autobind())?;
/// let name = server.local_addr()?;
/// assert!(name.as_abstract_name().is_some());
///
/// let client = UnixDatagram::unbound()?;
/// client.send_to_addr(b"hi", &name)?;
/// let (n, from) = server.recv_from(&mut [0u8; 8])?;
/// assert_eq!((n, from.is_unnamed()), (2, true));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct SocketAddr {
    addr: SockAddr,
    path: Option<PathBuf>,
    abstract_name: Option<Vec<u8>>,
}

impl SocketAddr {
    pub(crate) fn from_sys(addr: SockAddr) -> SocketAddr {
        // Linux reports an unbound datagram sender with a zero length.
        let addr = if addr.len() == 0 {
            SockAddr::unix_unnamed()
        } else {
            addr
        };
        SocketAddr {
            addr,
            path: addr.as_unix_path(),
            abstract_name: addr.as_abstract_name(),
        }
    }

    /// The address of the socket file at `path`.
    pub fn from_pathname(path: impl AsRef<Path>) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from_sys(SockAddr::from_unix_path(
            path.as_ref(),
        )?))
    }

    /// A Linux abstract address (no file; `name` without the leading NUL).
    pub fn from_abstract_name(name: impl AsRef<[u8]>) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from_sys(SockAddr::from_abstract_name(
            name.as_ref(),
        )?))
    }

    /// Linux autobind: binding to this address makes the kernel choose a
    /// unique abstract name (read it back with `local_addr`).
    pub fn autobind() -> SocketAddr {
        SocketAddr::from_sys(SockAddr::unix_unnamed())
    }

    /// Whether the address has no name (an unbound socket).
    pub fn is_unnamed(&self) -> bool {
        self.addr.is_unix_unnamed()
    }

    pub fn as_pathname(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        self.abstract_name.as_deref()
    }
}

/// As std's: `(unnamed)`, `"/path" (pathname)`, `"name" (abstract)`.
impl std::fmt::Debug for SocketAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.path, &self.abstract_name) {
            (Some(p), _) => write!(f, "{p:?} (pathname)"),
            (None, Some(n)) => write!(f, "\"{}\" (abstract)", n.escape_ascii()),
            (None, None) => f.write_str("(unnamed)"),
        }
    }
}

/// A Unix stream listening socket: std's `UnixListener` plus `close(&self)`.
///
/// ```
/// use netfd::unix::{UnixListener, UnixStream};
/// use std::io::{Read, Write};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("sock");
/// let listener = UnixListener::bind(&path)?;
/// let mut client = UnixStream::connect(&path)?;
/// let (mut server, _addr) = listener.accept()?;
/// client.write_all(b"hi")?;
/// let mut buf = [0u8; 2];
/// server.read_exact(&mut buf)?;
///
/// // Close from another thread wakes the parked accept with the closed error.
/// std::thread::scope(|s| {
///     let parked = s.spawn(|| listener.accept().map(|_| ()));
///     listener.close().unwrap();
///     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixListener {
    fd: NetFd,
    timeouts: Timeouts,
}

/// A Unix stream connection: std's `UnixStream` plus `close(&self)` and
/// deadlines.
///
/// ```
/// use netfd::unix::UnixStream;
/// use std::io::{Read, Write};
///
/// let (a, mut b) = UnixStream::pair()?;
/// b.write_all(b"x")?;
/// let mut buf = [0u8; 1];
/// (&a).read_exact(&mut buf)?;
///
/// std::thread::scope(|s| {
///     let parked = s.spawn(|| (&a).read(&mut buf));
///     a.close().unwrap();
///     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixStream {
    fd: NetFd,
    timeouts: Timeouts,
}

/// A Unix datagram socket: std's `UnixDatagram` plus `close(&self)` and
/// deadlines, under the same Close contract as every netfd socket (a `recv`
/// or `recv_from` parked at Close returns the closed error).
///
/// ```
/// use netfd::unix::UnixDatagram;
///
/// let (a, b) = UnixDatagram::pair()?;
/// a.send(b"one")?;
/// let mut buf = [0u8; 8];
/// assert_eq!(b.recv(&mut buf)?, 3);
///
/// std::thread::scope(|s| {
///     let parked = s.spawn(|| b.recv(&mut [0u8; 8]));
///     b.close().unwrap();
///     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixDatagram {
    fd: NetFd,
    timeouts: Timeouts,
}

socket_common!(UnixListener);
socket_common!(UnixStream);
socket_common!(UnixDatagram);
socket_timeouts!(UnixStream);
socket_timeouts!(UnixDatagram);
stream_io!(UnixStream);

impl std::fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_socket(f, "UnixListener", &self.fd, false)
    }
}

impl std::fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_socket(f, "UnixStream", &self.fd, true)
    }
}

impl std::fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_socket(f, "UnixDatagram", &self.fd, true)
    }
}

/// The connections of [`UnixListener::incoming`]: after the listener is
/// closed it yields the closed error once, then ends (std's never ends).
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a UnixListener,
    done: bool,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        if self.done {
            return None;
        }
        let r = self.listener.accept().map(|(s, _)| s);
        if let Err(e) = &r {
            self.done = crate::is_closed(e);
        }
        Some(r)
    }
}

fn unix_addr(
    fd: &NetFd,
    name: fn(i32, crate::probe::OwnerId) -> io::Result<SockAddr>,
) -> io::Result<SocketAddr> {
    Ok(SocketAddr::from_sys(fd.control(name)?))
}

impl UnixListener {
    /// Listen on `path` (which must not exist) with the production protocol.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::bind_with(path, Options::default())
    }

    pub fn bind_with(path: impl AsRef<Path>, opts: Options) -> io::Result<UnixListener> {
        UnixListener::bind_addr_with(&SocketAddr::from_pathname(path)?, opts)
    }

    /// Listen on `addr`: a path, an abstract name, or
    /// [`SocketAddr::autobind`].
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        UnixListener::bind_addr_with(addr, Options::default())
    }

    pub fn bind_addr_with(addr: &SocketAddr, opts: Options) -> io::Result<UnixListener> {
        let fd = listen_on(libc::AF_UNIX, &addr.addr, opts)?;
        Ok(UnixListener::from_netfd_plain(fd))
    }

    /// Wait for a connection. The new stream inherits this listener's options.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (fd, addr) = self.fd.accept()?;
        Ok((UnixStream::from_netfd_plain(fd), SocketAddr::from_sys(addr)))
    }

    /// An iterator over accepted connections (see [`Incoming`]).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            listener: self,
            done: false,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&self.fd, sys::getsockname)
    }

    /// The path this listener is bound to.
    pub fn local_path(&self) -> io::Result<Option<PathBuf>> {
        Ok(self.fd.control(sys::getsockname)?.as_unix_path())
    }
}

impl UnixStream {
    /// Connect to the listener at `path` with the production protocol.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        UnixStream::connect_with(path, Options::default())
    }

    pub fn connect_with(path: impl AsRef<Path>, opts: Options) -> io::Result<UnixStream> {
        UnixStream::connect_addr_with(&SocketAddr::from_pathname(path)?, opts)
    }

    /// Connect to the listener at `addr` (a path or an abstract name).
    pub fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        UnixStream::connect_addr_with(addr, Options::default())
    }

    pub fn connect_addr_with(addr: &SocketAddr, opts: Options) -> io::Result<UnixStream> {
        let fd = NetFd::socket(libc::AF_UNIX, libc::SOCK_STREAM, opts)?;
        fd.connect(&addr.addr)?;
        Ok(UnixStream::from_netfd_plain(fd))
    }

    /// A connected pair of unnamed sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        UnixStream::pair_with(Options::default())
    }

    pub fn pair_with(opts: Options) -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = NetFd::pair(libc::SOCK_STREAM, opts)?;
        Ok((
            UnixStream::from_netfd_plain(a),
            UnixStream::from_netfd_plain(b),
        ))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&self.fd, sys::getsockname)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&self.fd, sys::getpeername)
    }

    /// The path of the peer, if it is bound to one.
    pub fn peer_path(&self) -> io::Result<Option<PathBuf>> {
        Ok(self.fd.control(sys::getpeername)?.as_unix_path())
    }
}

impl UnixDatagram {
    /// A datagram socket bound to `path` (which must not exist).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::bind_with(path, Options::default())
    }

    pub fn bind_with(path: impl AsRef<Path>, opts: Options) -> io::Result<UnixDatagram> {
        UnixDatagram::bind_addr_with(&SocketAddr::from_pathname(path)?, opts)
    }

    /// Bound to `addr`: a path, an abstract name, or [`SocketAddr::autobind`].
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixDatagram> {
        UnixDatagram::bind_addr_with(addr, Options::default())
    }

    pub fn bind_addr_with(addr: &SocketAddr, opts: Options) -> io::Result<UnixDatagram> {
        let sock = UnixDatagram::unbound_with(opts)?;
        sock.fd
            .control(|n, owner| sys::bind(n, owner, &addr.addr))?;
        Ok(sock)
    }

    /// A datagram socket bound to nothing (it can send, and receive replies
    /// only once bound or connected).
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::unbound_with(Options::default())
    }

    pub fn unbound_with(opts: Options) -> io::Result<UnixDatagram> {
        let fd = NetFd::socket(libc::AF_UNIX, libc::SOCK_DGRAM, opts)?;
        Ok(UnixDatagram::from_netfd_plain(fd))
    }

    /// A connected pair of unnamed datagram sockets.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        UnixDatagram::pair_with(Options::default())
    }

    pub fn pair_with(opts: Options) -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = NetFd::pair(libc::SOCK_DGRAM, opts)?;
        Ok((
            UnixDatagram::from_netfd_plain(a),
            UnixDatagram::from_netfd_plain(b),
        ))
    }

    /// Set the peer: `send` goes to it and only its datagrams are received.
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.connect_addr(&SocketAddr::from_pathname(path)?)
    }

    pub fn connect_addr(&self, addr: &SocketAddr) -> io::Result<()> {
        self.fd.connect(&addr.addr)
    }

    /// Send one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Write, || {
            self.fd.write_with(|fd, owner| sys::write(fd, owner, buf))
        })
    }

    /// Receive one datagram, waiting for it. Parked at Close: the closed error.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Read, || {
            self.fd.read_with(|fd, owner| sys::recv(fd, owner, buf, 0))
        })
    }

    /// Send one datagram to the socket bound to `path`.
    pub fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        self.send_to_addr(buf, &SocketAddr::from_pathname(path)?)
    }

    pub fn send_to_addr(&self, buf: &[u8], addr: &SocketAddr) -> io::Result<usize> {
        self.timeouts
            .run(&self.fd, Dir::Write, || self.fd.send_to(buf, &addr.addr))
    }

    /// Receive one datagram and its sender's address, waiting for it.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self
            .timeouts
            .run(&self.fd, Dir::Read, || self.fd.recv_from(buf))?;
        Ok((n, SocketAddr::from_sys(addr)))
    }

    /// The next datagram, left in the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Read, || {
            self.fd
                .read_with(|fd, owner| sys::recv(fd, owner, buf, libc::MSG_PEEK))
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&self.fd, sys::getsockname)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(&self.fd, sys::getpeername)
    }

    /// shutdown(2) one or both directions; the socket stays open.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.fd.control(|n, owner| sys::shutdown(n, owner, how))
    }
}

/// Adopts the descriptor (made non-blocking) with the default options.
impl From<std::os::unix::net::UnixListener> for UnixListener {
    fn from(l: std::os::unix::net::UnixListener) -> UnixListener {
        UnixListener::from(std::os::fd::OwnedFd::from(l))
    }
}

/// Adopts the descriptor (made non-blocking) with the default options.
impl From<std::os::unix::net::UnixStream> for UnixStream {
    fn from(s: std::os::unix::net::UnixStream) -> UnixStream {
        UnixStream::from(std::os::fd::OwnedFd::from(s))
    }
}

/// Adopts the descriptor (made non-blocking) with the default options.
impl From<std::os::unix::net::UnixDatagram> for UnixDatagram {
    fn from(s: std::os::unix::net::UnixDatagram) -> UnixDatagram {
        UnixDatagram::from(std::os::fd::OwnedFd::from(s))
    }
}

//! Unix sockets, shaped like `std::os::unix::net`: `use netfd::unix::{..}`
//! where std code has `use std::os::unix::net::{..}`. Also what std lacks:
//! sequenced-packet sockets ([`UnixSeqpacketListener`], [`UnixSeqpacket`];
//! Go's "unixpacket"), from the stream code with the socket type changed.

pub use super::seqpacket::{SeqpacketIncoming, UnixSeqpacket, UnixSeqpacketListener};
use super::timeout::Timeouts;
use super::{debug_socket, socket_common, socket_timeouts, stream_io, Options};
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
    pub(crate) fn as_sys(&self) -> &SockAddr {
        &self.addr
    }

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
    lent: crate::net::lend::Lent,
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
    lent: crate::net::lend::Lent,
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
    lent: crate::net::lend::Lent,
}

socket_common!(UnixListener);
socket_common!(UnixStream);
socket_common!(UnixDatagram);
socket_timeouts!(UnixStream);
socket_timeouts!(UnixDatagram);
stream_io!(UnixStream);

impl std::fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_socket(f, "UnixDatagram", &self.fd, true)
    }
}

/// What a Unix listener and its connections have whatever the socket type
/// (SOCK_STREAM: [`UnixListener`] and [`UnixStream`]; SOCK_SEQPACKET:
/// [`UnixSeqpacketListener`] and [`UnixSeqpacket`]), written once: the
/// listener, its `incoming` iterator and the connection's
/// connect/pair/names. `$sock_type` is the only difference.
macro_rules! unix_listener {
    ($listener:ident, $conn:ident, $incoming:ident, $sock_type:expr) => {
        #[doc = concat!(
            "The connections of [`", stringify!($listener), "::incoming`]: after the ",
            "listener is closed it yields the closed error once, then ends (std's never ends)."
        )]
        #[derive(Debug)]
        pub struct $incoming<'a> {
            listener: &'a $listener,
            done: bool,
        }

        impl Iterator for $incoming<'_> {
            type Item = std::io::Result<$conn>;
            fn next(&mut self) -> Option<std::io::Result<$conn>> {
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

        impl $listener {
            /// Listen on `path` (which must not exist) with the production protocol.
            pub fn bind(path: impl AsRef<std::path::Path>) -> std::io::Result<$listener> {
                $listener::bind_with(path, crate::net::Options::default())
            }

            pub fn bind_with(
                path: impl AsRef<std::path::Path>,
                opts: crate::net::Options,
            ) -> std::io::Result<$listener> {
                $listener::bind_addr_with(&crate::net::unix::SocketAddr::from_pathname(path)?, opts)
            }

            /// Listen on `addr`: a path, an abstract name, or
            /// [`SocketAddr::autobind`](crate::net::unix::SocketAddr::autobind).
            pub fn bind_addr(addr: &crate::net::unix::SocketAddr) -> std::io::Result<$listener> {
                $listener::bind_addr_with(addr, crate::net::Options::default())
            }

            pub fn bind_addr_with(
                addr: &crate::net::unix::SocketAddr,
                opts: crate::net::Options,
            ) -> std::io::Result<$listener> {
                let fd = crate::net::listen_on(libc::AF_UNIX, $sock_type, addr.as_sys(), opts)?;
                Ok($listener::from_netfd_plain(fd))
            }

            /// Wait for a connection. It inherits this listener's options.
            pub fn accept(&self) -> std::io::Result<($conn, crate::net::unix::SocketAddr)> {
                let (fd, addr) = self.fd.accept()?;
                Ok((
                    $conn::from_netfd_plain(fd),
                    crate::net::unix::SocketAddr::from_sys(addr),
                ))
            }

            #[doc = concat!("An iterator over accepted connections (see [`", stringify!($incoming), "`]).")]
            pub fn incoming(&self) -> $incoming<'_> {
                $incoming {
                    listener: self,
                    done: false,
                }
            }

            pub fn local_addr(&self) -> std::io::Result<crate::net::unix::SocketAddr> {
                crate::net::unix::unix_addr(&self.fd, crate::sys::getsockname)
            }

            /// The path this listener is bound to.
            pub fn local_path(&self) -> std::io::Result<Option<std::path::PathBuf>> {
                Ok(self.fd.control(crate::sys::getsockname)?.as_unix_path())
            }
        }

        impl std::fmt::Debug for $listener {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                crate::net::debug_socket(f, stringify!($listener), &self.fd, false)
            }
        }

        impl $conn {
            /// Connect to the listener at `path` with the production protocol.
            pub fn connect(path: impl AsRef<std::path::Path>) -> std::io::Result<$conn> {
                $conn::connect_with(path, crate::net::Options::default())
            }

            pub fn connect_with(
                path: impl AsRef<std::path::Path>,
                opts: crate::net::Options,
            ) -> std::io::Result<$conn> {
                $conn::connect_addr_with(&crate::net::unix::SocketAddr::from_pathname(path)?, opts)
            }

            /// Connect to the listener at `addr` (a path or an abstract name).
            pub fn connect_addr(addr: &crate::net::unix::SocketAddr) -> std::io::Result<$conn> {
                $conn::connect_addr_with(addr, crate::net::Options::default())
            }

            pub fn connect_addr_with(
                addr: &crate::net::unix::SocketAddr,
                opts: crate::net::Options,
            ) -> std::io::Result<$conn> {
                let fd = crate::netfd::NetFd::socket(libc::AF_UNIX, $sock_type, opts)?;
                fd.connect(addr.as_sys())?;
                Ok($conn::from_netfd_plain(fd))
            }

            /// A connected pair of unnamed sockets.
            pub fn pair() -> std::io::Result<($conn, $conn)> {
                $conn::pair_with(crate::net::Options::default())
            }

            pub fn pair_with(opts: crate::net::Options) -> std::io::Result<($conn, $conn)> {
                let (a, b) = crate::netfd::NetFd::pair($sock_type, opts)?;
                Ok(($conn::from_netfd_plain(a), $conn::from_netfd_plain(b)))
            }

            pub fn local_addr(&self) -> std::io::Result<crate::net::unix::SocketAddr> {
                crate::net::unix::unix_addr(&self.fd, crate::sys::getsockname)
            }

            pub fn peer_addr(&self) -> std::io::Result<crate::net::unix::SocketAddr> {
                crate::net::unix::unix_addr(&self.fd, crate::sys::getpeername)
            }

            /// The path of the peer, if it is bound to one.
            pub fn peer_path(&self) -> std::io::Result<Option<std::path::PathBuf>> {
                Ok(self.fd.control(crate::sys::getpeername)?.as_unix_path())
            }
        }

        impl std::fmt::Debug for $conn {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                crate::net::debug_socket(f, stringify!($conn), &self.fd, true)
            }
        }
    };
}
pub(crate) use unix_listener;

unix_listener!(UnixListener, UnixStream, Incoming, libc::SOCK_STREAM);

pub(crate) fn unix_addr(
    fd: &NetFd,
    name: fn(i32, crate::probe::OwnerId) -> io::Result<SockAddr>,
) -> io::Result<SocketAddr> {
    Ok(SocketAddr::from_sys(fd.control(name)?))
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

use super::timeout::Timeouts;
use super::{
    debug_socket, domain_of, each_addr, inet_addr, listen_on, socket_common, socket_timeouts,
    socket_ttl, stream_io, Options,
};
use crate::netfd::NetFd;
use crate::poll::Dir;
use crate::sys::{self, SockAddr};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// A TCP listening socket: std's `TcpListener` plus `close(&self)`, which
/// wakes a thread parked in `accept`.
///
/// ```
/// use netfd::TcpListener;
/// use std::io::{Read, Write};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let addr = listener.local_addr()?;
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         let mut c = std::net::TcpStream::connect(addr).unwrap();
///         c.write_all(b"hi").unwrap();
///     });
///     let (mut conn, _peer) = listener.accept().unwrap();
///     let mut buf = [0u8; 2];
///     conn.read_exact(&mut buf).unwrap();
///     assert_eq!(&buf, b"hi");
/// });
///
/// // Close from another thread: the parked accept fails with the closed error.
/// std::thread::scope(|s| {
///     let parked = s.spawn(|| listener.accept().map(|_| ()));
///     listener.close().unwrap();
///     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpListener {
    fd: NetFd,
    timeouts: Timeouts,
    lent: crate::net::lend::Lent,
}

/// A TCP connection: std's `TcpStream` plus `close(&self)` and absolute
/// deadlines.
///
/// ```
/// use netfd::{TcpListener, TcpStream};
/// use std::io::{Read, Write};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let mut client = TcpStream::connect(listener.local_addr()?)?;
/// let (server, _) = listener.accept()?;
/// client.write_all(b"ping")?;
/// let mut buf = [0u8; 4];
/// (&server).read_exact(&mut buf)?;
/// assert_eq!(&buf, b"ping");
///
/// // A read parked in one thread, Close from another: the read returns the
/// // closed error (std has no way to do this).
/// std::thread::scope(|s| {
///     let reader = s.spawn(|| (&server).read(&mut [0u8; 16]));
///     server.close().unwrap();
///     let err = reader.join().unwrap().unwrap_err();
///     assert!(netfd::is_closed(&err));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct TcpStream {
    fd: NetFd,
    timeouts: Timeouts,
    lent: crate::net::lend::Lent,
}

socket_common!(TcpListener);
socket_common!(TcpStream);
socket_ttl!(TcpListener);
socket_ttl!(TcpStream);
socket_timeouts!(TcpStream);
stream_io!(TcpStream);

/// The connections of [`TcpListener::incoming`].
///
/// Unlike std's, it ends: after the listener is closed it yields the closed
/// error once, then `None`.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
    done: bool,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
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

impl TcpListener {
    /// Listen on the first address `addr` resolves to that binds, with the
    /// production protocol (std's signature).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, Options::default())
    }

    /// [`bind`](Self::bind) with a lifetime protocol and wait path.
    pub fn bind_with(addr: impl ToSocketAddrs, opts: Options) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let fd = listen_on(
                domain_of(a),
                libc::SOCK_STREAM,
                &SockAddr::from_inet(*a),
                opts,
            )?;
            Ok(TcpListener::from_netfd_plain(fd))
        })
    }

    /// Wait for a connection. The new stream inherits this listener's options.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = self.fd.accept()?;
        let stream = TcpStream::from_netfd(fd)?;
        Ok((stream, inet_addr(addr)?))
    }

    /// An iterator over accepted connections (see [`Incoming`]).
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming {
            listener: self,
            done: false,
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.fd.control(sys::getsockname)?)
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_socket(f, "TcpListener", &self.fd, false)
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_socket(f, "TcpStream", &self.fd, true)
    }
}

impl TcpStream {
    /// Connect to the first address `addr` resolves to that accepts, with
    /// the production protocol (std's signature).
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        TcpStream::connect_with(addr, Options::default())
    }

    /// [`connect`](Self::connect) with a lifetime protocol and wait path.
    pub fn connect_with(addr: impl ToSocketAddrs, opts: Options) -> io::Result<TcpStream> {
        each_addr(addr, |a| {
            let stream = TcpStream::socket_for(a, opts)?;
            stream.connect_to(a)?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    }

    /// Connect, failing with `TimedOut` if the handshake takes longer than
    /// `timeout` (std's signature; a zero timeout is refused, as std).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        TcpStream::connect_timeout_with(addr, timeout, Options::default())
    }

    /// [`connect_timeout`](Self::connect_timeout) with options.
    pub fn connect_timeout_with(
        addr: &SocketAddr,
        timeout: Duration,
        opts: Options,
    ) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        let stream = TcpStream::socket_for(addr, opts)?;
        stream.set_write_deadline(Instant::now().checked_add(timeout))?;
        stream.connect_to(addr)?;
        stream.set_write_deadline(None)?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// A TCP socket of `family`'s address family, not connected yet: connect
    /// it with [`connect_to`](Self::connect_to) in one thread while another
    /// can `close` it or move its write deadline (a dial that Close or a
    /// deadline interrupts).
    pub fn unconnected(family: &SocketAddr, opts: Options) -> io::Result<TcpStream> {
        let stream = TcpStream::socket_for(family, opts)?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// A socket for `family` without options set: `connect` sets TCP_NODELAY
    /// after the handshake, in the order the socket's syscalls always had.
    fn socket_for(family: &SocketAddr, opts: Options) -> io::Result<TcpStream> {
        let fd = NetFd::socket(domain_of(family), libc::SOCK_STREAM, opts)?;
        Ok(TcpStream::from_netfd_plain(fd))
    }

    /// Connect this socket to `addr`, waiting for the handshake. The wait
    /// ends with the closed error when the socket is closed, with `TimedOut`
    /// at the write deadline (or the write timeout), whichever comes first.
    pub fn connect_to(&self, addr: &SocketAddr) -> io::Result<()> {
        self.timeouts.run(&self.fd, Dir::Write, || {
            self.fd.connect(&SockAddr::from_inet(*addr))
        })
    }

    fn from_netfd(fd: NetFd) -> io::Result<TcpStream> {
        let stream = TcpStream::from_netfd_plain(fd);
        // As Go's newTCPConn: small request/response messages go out at once.
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.fd.control(sys::getsockname)?)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.fd.control(sys::getpeername)?)
    }

    /// TCP_NODELAY (on by default, as in Go; std leaves it off).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY, i32::from(on))
    }

    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.getsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0)
    }

    /// TCP_QUICKACK (std's Linux `TcpStreamExt::set_quickack`; inherent
    /// here, so std code that imports the trait still compiles).
    pub fn set_quickack(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_QUICKACK, i32::from(on))
    }

    pub fn quickack(&self) -> io::Result<bool> {
        Ok(self.getsockopt(libc::IPPROTO_TCP, libc::TCP_QUICKACK)? != 0)
    }
}

/// Adopts the descriptor (made non-blocking) with the default options.
impl From<std::net::TcpListener> for TcpListener {
    fn from(l: std::net::TcpListener) -> TcpListener {
        TcpListener::from(std::os::fd::OwnedFd::from(l))
    }
}

/// Adopts the descriptor (made non-blocking) with the default options.
impl From<std::net::TcpStream> for TcpStream {
    fn from(s: std::net::TcpStream) -> TcpStream {
        TcpStream::from(std::os::fd::OwnedFd::from(s))
    }
}

use super::{dial, domain_of, inet_addr, listen_on, socket_common, stream_io, Options};
use crate::netfd::NetFd;
use crate::sys::{self, SockAddr};
use std::io;
use std::net::SocketAddr;

/// A TCP listening socket.
pub struct TcpListener {
    fd: NetFd,
}

/// A TCP connection.
pub struct TcpStream {
    fd: NetFd,
}

socket_common!(TcpListener);
socket_common!(TcpStream);
stream_io!(TcpStream);

impl TcpListener {
    /// Listen on `addr` with the production protocol.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, Options::default())
    }

    pub fn bind_with(addr: SocketAddr, opts: Options) -> io::Result<TcpListener> {
        let fd = listen_on(domain_of(&addr), &SockAddr::from_inet(addr), opts)?;
        Ok(TcpListener { fd })
    }

    /// Wait for a connection. The new stream inherits this listener's options.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (fd, addr) = self.fd.accept()?;
        let stream = TcpStream::from_netfd(fd)?;
        Ok((stream, inet_addr(addr)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.fd.control(sys::getsockname)?)
    }
}

impl TcpStream {
    /// Connect to `addr` with the production protocol.
    pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_with(addr, Options::default())
    }

    pub fn connect_with(addr: SocketAddr, opts: Options) -> io::Result<TcpStream> {
        let fd = dial(domain_of(&addr), &SockAddr::from_inet(addr), opts)?;
        TcpStream::from_netfd(fd)
    }

    fn from_netfd(fd: NetFd) -> io::Result<TcpStream> {
        let stream = TcpStream { fd };
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

    /// TCP_NODELAY.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY, i32::from(on))
    }
}

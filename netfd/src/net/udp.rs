use super::{domain_of, inet_addr, socket_common, Options};
use crate::netfd::NetFd;
use crate::sys::{self, SockAddr};
use std::io;
use std::net::SocketAddr;

/// A UDP socket.
pub struct UdpSocket {
    fd: NetFd,
}

socket_common!(UdpSocket);

impl UdpSocket {
    /// Bind to `addr` with the production protocol.
    pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
        UdpSocket::bind_with(addr, Options::default())
    }

    pub fn bind_with(addr: SocketAddr, opts: Options) -> io::Result<UdpSocket> {
        let fd = NetFd::socket(domain_of(&addr), libc::SOCK_DGRAM, opts)?;
        let sa = SockAddr::from_inet(addr);
        fd.control(|n, owner| {
            // As Go's newUDPConn.
            sys::setsockopt_int(n, owner, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)?;
            sys::bind(n, owner, &sa)
        })?;
        Ok(UdpSocket { fd })
    }

    /// Receive one datagram, waiting for it.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self.fd.recv_from(buf)?;
        Ok((n, inet_addr(addr)?))
    }

    /// Send one datagram to `addr`.
    pub fn send_to(&self, buf: &[u8], addr: SocketAddr) -> io::Result<usize> {
        self.fd.send_to(buf, &SockAddr::from_inet(addr))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.fd.control(sys::getsockname)?)
    }
}

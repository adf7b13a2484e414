use super::timeout::Timeouts;
use super::{
    debug_socket, domain_of, each_addr, inet_addr, socket_common, socket_timeouts, socket_ttl,
    Options,
};
use crate::netfd::NetFd;
use crate::poll::Dir;
use crate::sys::{self, SockAddr};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// A UDP socket: std's `UdpSocket` plus `close(&self)` and deadlines.
/// Connected (`connect`, then `send`/`recv`) or not (`send_to`/`recv_from`).
///
/// ```
/// use netfd::UdpSocket;
///
/// let a = UdpSocket::bind("127.0.0.1:0")?;
/// let b = UdpSocket::bind("127.0.0.1:0")?;
/// b.connect(a.local_addr()?)?;
/// b.send(b"datagram")?;
/// let mut buf = [0u8; 16];
/// let (n, from) = a.recv_from(&mut buf)?;
/// assert_eq!((&buf[..n], from), (&b"datagram"[..], b.local_addr()?));
///
/// // A recv parked in one thread, Close from another: the closed error.
/// std::thread::scope(|s| {
///     let parked = s.spawn(|| b.recv(&mut [0u8; 16]));
///     b.close().unwrap();
///     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UdpSocket {
    fd: NetFd,
    timeouts: Timeouts,
    lent: crate::net::lend::Lent,
}

socket_common!(UdpSocket);
socket_ttl!(UdpSocket);
socket_timeouts!(UdpSocket);

impl std::fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        debug_socket(f, "UdpSocket", &self.fd, false)
    }
}

impl UdpSocket {
    /// Bind to the first address `addr` resolves to that binds, with the
    /// production protocol (std's signature).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        UdpSocket::bind_with(addr, Options::default())
    }

    /// [`bind`](Self::bind) with a lifetime protocol and wait path. Like
    /// Go's, the socket may send broadcasts (SO_BROADCAST on); std's starts
    /// with it off.
    pub fn bind_with(addr: impl ToSocketAddrs, opts: Options) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let fd = NetFd::socket(domain_of(a), libc::SOCK_DGRAM, opts)?;
            let sa = SockAddr::from_inet(*a);
            fd.control(|n, owner| {
                // As Go's newUDPConn.
                sys::setsockopt_int(n, owner, libc::SOL_SOCKET, libc::SO_BROADCAST, 1)?;
                sys::bind(n, owner, &sa)
            })?;
            Ok(UdpSocket::from_netfd_plain(fd))
        })
    }

    /// Receive one datagram, waiting for it.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self
            .timeouts
            .run(&self.fd, Dir::Read, || self.fd.recv_from(buf))?;
        Ok((n, inet_addr(addr)?))
    }

    /// The next datagram and its sender, left in the queue.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, addr) = self.timeouts.run(&self.fd, Dir::Read, || {
            self.fd
                .read_with(|fd, owner| sys::recv_from_flags(fd, owner, buf, libc::MSG_PEEK))
        })?;
        Ok((n, inet_addr(addr)?))
    }

    /// Send one datagram to the first address `addr` resolves to (std's
    /// signature).
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        let sa = SockAddr::from_inet(addr);
        self.timeouts
            .run(&self.fd, Dir::Write, || self.fd.send_to(buf, &sa))
    }

    /// Set the peer: `send` goes to it and only its datagrams are received.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        each_addr(addr, |a| self.fd.connect(&SockAddr::from_inet(*a)))
    }

    /// Send one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Write, || {
            self.fd.write_with(|fd, owner| sys::write(fd, owner, buf))
        })
    }

    /// Receive one datagram from the connected peer, waiting for it. A recv
    /// parked when the socket is closed returns the closed error.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Read, || {
            self.fd.read_with(|fd, owner| sys::recv(fd, owner, buf, 0))
        })
    }

    /// The next datagram, left in the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Read, || {
            self.fd
                .read_with(|fd, owner| sys::recv(fd, owner, buf, libc::MSG_PEEK))
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.fd.control(sys::getsockname)?)
    }

    /// The connected peer (ENOTCONN when there is none, as std).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.fd.control(sys::getpeername)?)
    }

    /// SO_BROADCAST.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::SOL_SOCKET, libc::SO_BROADCAST, i32::from(on))
    }

    pub fn broadcast(&self) -> io::Result<bool> {
        Ok(self.getsockopt(libc::SOL_SOCKET, libc::SO_BROADCAST)? != 0)
    }

    /// IP_MULTICAST_LOOP: whether multicast sent from here loops back to
    /// this host.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP, i32::from(on))
    }

    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        Ok(self.getsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP)? != 0)
    }

    /// IP_MULTICAST_TTL.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.setsockopt(
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_TTL,
            super::clamp_int(ttl as usize),
        )
    }

    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        Ok(self.getsockopt(libc::IPPROTO_IP, libc::IP_MULTICAST_TTL)? as u32)
    }

    /// IPV6_MULTICAST_LOOP.
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.setsockopt(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP, i32::from(on))
    }

    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        Ok(self.getsockopt(libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP)? != 0)
    }

    /// IP_ADD_MEMBERSHIP: join the IPv4 group `multiaddr` on the interface
    /// with address `interface` (`Ipv4Addr::UNSPECIFIED`: the kernel's choice).
    pub fn join_multicast_v4(
        &self,
        multiaddr: &std::net::Ipv4Addr,
        interface: &std::net::Ipv4Addr,
    ) -> io::Result<()> {
        self.fd.control(|n, owner| {
            sys::multicast_membership_v4(n, owner, true, *multiaddr, *interface)
        })
    }

    /// IP_DROP_MEMBERSHIP, as [`join_multicast_v4`](Self::join_multicast_v4).
    pub fn leave_multicast_v4(
        &self,
        multiaddr: &std::net::Ipv4Addr,
        interface: &std::net::Ipv4Addr,
    ) -> io::Result<()> {
        self.fd.control(|n, owner| {
            sys::multicast_membership_v4(n, owner, false, *multiaddr, *interface)
        })
    }

    /// IPV6_ADD_MEMBERSHIP: join the IPv6 group `multiaddr` on interface
    /// index `interface` (0: the kernel's choice).
    pub fn join_multicast_v6(
        &self,
        multiaddr: &std::net::Ipv6Addr,
        interface: u32,
    ) -> io::Result<()> {
        self.fd
            .control(|n, owner| sys::multicast_membership_v6(n, owner, true, *multiaddr, interface))
    }

    /// IPV6_DROP_MEMBERSHIP, as [`join_multicast_v6`](Self::join_multicast_v6).
    pub fn leave_multicast_v6(
        &self,
        multiaddr: &std::net::Ipv6Addr,
        interface: u32,
    ) -> io::Result<()> {
        self.fd.control(|n, owner| {
            sys::multicast_membership_v6(n, owner, false, *multiaddr, interface)
        })
    }
}

/// Adopts the descriptor (made non-blocking) with the default options.
impl From<std::net::UdpSocket> for UdpSocket {
    fn from(s: std::net::UdpSocket) -> UdpSocket {
        UdpSocket::from(std::os::fd::OwnedFd::from(s))
    }
}

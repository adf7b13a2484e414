//! Public socket types, shaped like `std::net` and `std::os::unix::net`.
//!
//! Every method takes `&self`: share a socket between threads (by reference
//! or `Arc`) and read in one, write in another and close from a third. After
//! [`close`](TcpStream::close) every operation fails with the closed error
//! ([`crate::is_closed`]); Close returns once the descriptor number has been
//! released.

mod tcp;
mod udp;
mod unix;

pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};

use crate::netfd::NetFd;
use crate::poll::WaitPath;
use crate::sys::{self, SockAddr};
use crate::variants::Variant;
use std::io;
use std::net::SocketAddr;

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

fn inet_addr(sa: SockAddr) -> io::Result<SocketAddr> {
    sa.as_inet().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "address is not an IP socket address",
        )
    })
}

/// socket + SO_REUSEADDR + bind + listen.
fn listen_on(domain: i32, addr: &SockAddr, opts: Options) -> io::Result<NetFd> {
    let fd = NetFd::socket(domain, libc::SOCK_STREAM, opts)?;
    fd.control(|n, owner| {
        if domain != libc::AF_UNIX {
            sys::setsockopt_int(n, owner, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        }
        sys::bind(n, owner, addr)?;
        sys::listen(n, owner, LISTEN_BACKLOG)
    })?;
    Ok(fd)
}

/// socket + connect, waiting for the handshake through the poll descriptor.
fn dial(domain: i32, addr: &SockAddr, opts: Options) -> io::Result<NetFd> {
    let fd = NetFd::socket(domain, libc::SOCK_STREAM, opts)?;
    fd.connect(addr)?;
    Ok(fd)
}

/// Methods every socket type has, written once.
macro_rules! socket_common {
    ($ty:ty) => {
        impl $ty {
            /// Close the socket: wakes every parked operation (they fail with
            /// the closed error) and returns once the descriptor number is
            /// released. A second close returns the closed error.
            pub fn close(&self) -> std::io::Result<()> {
                self.fd.close()
            }

            /// Whether `close` has been called.
            pub fn is_closed(&self) -> bool {
                self.fd.is_closed()
            }

            /// Absolute deadline for reads (and accepts); `None` clears it.
            /// A parked read re-evaluates at once.
            pub fn set_read_deadline(
                &self,
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<()> {
                self.fd.set_deadline(crate::poll::Dir::Read, deadline)
            }

            /// Absolute deadline for writes; `None` clears it.
            pub fn set_write_deadline(
                &self,
                deadline: Option<std::time::Instant>,
            ) -> std::io::Result<()> {
                self.fd.set_deadline(crate::poll::Dir::Write, deadline)
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

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("owner", &self.fd.owner())
                    .field("variant", &self.fd.options().variant)
                    .field("closed", &self.fd.is_closed())
                    .finish()
            }
        }
    };
}
pub(crate) use socket_common;

/// Stream read/write over `&T`, so one thread reads while another writes.
macro_rules! stream_io {
    ($ty:ty) => {
        impl std::io::Read for &$ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.fd.read(buf)
            }
        }
        impl std::io::Write for &$ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.fd.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl std::io::Read for $ty {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.fd.read(buf)
            }
        }
        impl std::io::Write for $ty {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.fd.write(buf)
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
        }
    };
}
pub(crate) use stream_io;

pub(crate) fn clamp_int(n: usize) -> i32 {
    n.min(i32::MAX as usize) as i32
}

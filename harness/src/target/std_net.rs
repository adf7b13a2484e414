//! `std::net` as people use it to cancel a blocking read: each socket keeps
//! a `try_clone`d handle, and Close is `shutdown(Both)` through it from
//! whichever thread wants the blocked op to return; the clone is then
//! dropped. Nothing here reports a syscall: the harness sees it through the
//! interposer, as it would see any user's code.
//!
//! Its contract, which [`Conn::is_closed_error`] states: after Close, ops
//! fail with what a shut-down socket returns (`BrokenPipe`, `NotConnected`,
//! `InvalidInput` for an accept woken by shutdown(2)), or reads return 0.
//! The verdict the harness gives it (docs/check-your-own-type.md, "What it
//! finds"):
//! no `fd_reuse`, no `use_after_close` — the number an op uses stays open
//! until the value drops, so it can never be handed to another socket — but
//! `leak`: Close cannot release the descriptor (std closes only on drop,
//! which a socket shared with a blocked reader cannot do), so the number
//! outlives Close, and a listener's port stays taken after Close (a rebind
//! fails).

use super::{Addr, Conn, Listener, Target};
use crate::scenario::Direction;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// See the module docs.
pub struct StdNetTarget;

enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket),
    UnixDatagram(UnixDatagram),
}

/// A socket and the clone its Close shuts it down through.
struct Cancellable<T> {
    socket: T,
    canceller: Mutex<Option<OwnedFd>>,
    closed: AtomicBool,
}

impl<T: AsFd> Cancellable<T> {
    fn new(socket: T) -> io::Result<Cancellable<T>> {
        let canceller = socket.as_fd().try_clone_to_owned()?;
        Ok(Cancellable {
            socket,
            canceller: Mutex::new(Some(canceller)),
            closed: AtomicBool::new(false),
        })
    }

    /// shutdown(2) through the clone (std has no shutdown for listeners
    /// and UDP sockets, so through the number), then drop the clone.
    fn cancel(&self) -> io::Result<()> {
        let clone = self
            .canceller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        self.closed.store(true, Ordering::SeqCst);
        let Some(clone) = clone else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "already closed",
            ));
        };
        // SAFETY: shutdown(2) on a number `clone` owns and keeps open.
        let r = unsafe { libc::shutdown(clone.as_raw_fd(), libc::SHUT_RDWR) };
        if r < 0 {
            let e = io::Error::last_os_error();
            // An unconnected socket says so, and is woken all the same.
            if e.raw_os_error() != Some(libc::ENOTCONN) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn is_closed_error(&self, e: &io::Error) -> bool {
        self.closed.load(Ordering::SeqCst)
            && matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::NotConnected
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::ConnectionReset
            )
    }
}

struct StdConn(Cancellable<Socket>);

impl AsFd for Socket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Socket::Tcp(s) => s.as_fd(),
            Socket::Unix(s) => s.as_fd(),
            Socket::Udp(s) => s.as_fd(),
            Socket::UnixDatagram(s) => s.as_fd(),
        }
    }
}

impl Conn for StdConn {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.0.socket {
            Socket::Tcp(s) => (&*s).read(buf),
            Socket::Unix(s) => (&*s).read(buf),
            Socket::Udp(s) => s.recv(buf),
            Socket::UnixDatagram(s) => s.recv(buf),
        }
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match &self.0.socket {
            Socket::Tcp(s) => (&*s).write_all(buf).map(|()| buf.len()),
            Socket::Unix(s) => (&*s).write_all(buf).map(|()| buf.len()),
            Socket::Udp(s) => s.send(buf),
            Socket::UnixDatagram(s) => s.send(buf),
        }
    }
    fn set_deadline(&self, _dir: Direction, _at: Option<Instant>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "std::net has timeouts, not absolute deadlines",
        ))
    }
    fn close(&self) -> io::Result<()> {
        // The value is shared with threads blocked in it: shutting it down
        // is all std lets us do; the number is released when it drops.
        self.0.cancel()
    }
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        match &self.0.socket {
            Socket::Tcp(s) => s.local_addr().map(Some),
            Socket::Unix(_) | Socket::UnixDatagram(_) => Ok(None),
            Socket::Udp(s) => s.local_addr().map(Some),
        }
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        self.0.is_closed_error(e)
    }
}

enum StdListener {
    Tcp(Cancellable<TcpListener>),
    Unix(Cancellable<UnixListener>, std::path::PathBuf),
}

impl Listener for StdListener {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        let s = match self {
            StdListener::Tcp(l) => Socket::Tcp(l.socket.accept()?.0),
            StdListener::Unix(l, _) => Socket::Unix(l.socket.accept()?.0),
        };
        Ok(Box::new(StdConn(Cancellable::new(s)?)))
    }
    fn close(&self) -> io::Result<()> {
        match self {
            StdListener::Tcp(l) => l.cancel(),
            StdListener::Unix(l, _) => l.cancel(),
        }
    }
    fn local_addr(&self) -> io::Result<Addr> {
        match self {
            StdListener::Tcp(l) => l.socket.local_addr().map(Addr::Inet),
            StdListener::Unix(_, p) => Ok(Addr::Unix(p.clone())),
        }
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        match self {
            StdListener::Tcp(l) => l.is_closed_error(e),
            StdListener::Unix(l, _) => l.is_closed_error(e),
        }
    }
}

/// std has no sequenced-packet sockets.
fn no_seqpacket() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "std::net has no Unix sequenced-packet sockets (the unixpacket transport)",
    )
}

impl Target for StdNetTarget {
    fn name(&self) -> String {
        "std-net".into()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Ok(Box::new(match addr {
            Addr::Inet(a) => StdListener::Tcp(Cancellable::new(TcpListener::bind(a)?)?),
            Addr::Unix(p) => {
                StdListener::Unix(Cancellable::new(UnixListener::bind(p)?)?, p.clone())
            }
            Addr::UnixPacket(_) => return Err(no_seqpacket()),
        }))
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let s = match addr {
            Addr::Inet(a) => Socket::Tcp(TcpStream::connect(a)?),
            Addr::Unix(p) => Socket::Unix(UnixStream::connect(p)?),
            Addr::UnixPacket(_) => return Err(no_seqpacket()),
        };
        Ok(Box::new(StdConn(Cancellable::new(s)?)))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let s = UdpSocket::bind(local)?;
        s.connect(peer)?;
        Ok(Box::new(StdConn(Cancellable::new(Socket::Udp(s))?)))
    }
    fn bind_unix_datagram(&self, local: &Path, peer: &Path) -> io::Result<Box<dyn Conn>> {
        let s = UnixDatagram::bind(local)?;
        s.connect(peer)?;
        Ok(Box::new(StdConn(Cancellable::new(Socket::UnixDatagram(
            s,
        ))?)))
    }
    fn has_unix_datagram(&self) -> bool {
        true
    }
}

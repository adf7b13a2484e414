//! Unix sequenced-packet sockets (SOCK_SEQPACKET, Go's "unixpacket"):
//! connection-oriented like a Unix stream (listen, accept, connect, EOF when
//! the peer goes), with a datagram's record boundaries: each `send` is one
//! record and each `recv` returns at most one, the part that does not fit
//! the buffer discarded (as recv(2) does).
//!
//! The listener and the connection's connect/pair/names are the Unix stream
//! code with the socket type changed (`unix_listener!` in `unix.rs`); the
//! I/O is the datagram shape (`send`/`recv`/`peek`, one syscall each). The
//! Close contract is every netfd socket's: a `recv`, `send` or `accept`
//! parked at Close returns the closed error, and every operation after Close
//! fails with it.

use super::timeout::Timeouts;
use super::unix::unix_listener;
use super::{socket_common, socket_timeouts};
use crate::netfd::NetFd;
use crate::poll::Dir;
use crate::sys;
use std::io;

/// A listening Unix seqpacket socket: accepts [`UnixSeqpacket`] connections.
///
/// ```
/// use netfd::unix::{UnixSeqpacket, UnixSeqpacketListener};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("packets");
/// let listener = UnixSeqpacketListener::bind(&path)?;
/// let client = UnixSeqpacket::connect(&path)?;
/// let (server, _addr) = listener.accept()?;
/// client.send(b"one")?;
/// client.send(b"two")?;
/// let mut buf = [0u8; 16];
/// assert_eq!(server.recv(&mut buf)?, 3); // one record at a time
/// assert_eq!(&buf[..3], b"one");
///
/// // Close from another thread wakes the parked accept with the closed error.
/// std::thread::scope(|s| {
///     let parked = s.spawn(|| listener.accept().map(drop));
///     listener.close().unwrap();
///     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixSeqpacketListener {
    fd: NetFd,
    timeouts: Timeouts,
    lent: crate::net::lend::Lent,
}

/// A Unix seqpacket connection: records with boundaries over a connection,
/// plus `close(&self)`, deadlines and std-style timeouts.
///
/// ```
/// use netfd::unix::UnixSeqpacket;
///
/// let (a, b) = UnixSeqpacket::pair()?;
/// a.send(b"hello")?;
/// a.send(b"")?; // an empty record is a record
/// let mut buf = [0u8; 2];
/// assert_eq!(b.recv(&mut buf)?, 2); // the rest of "hello" is discarded
/// assert_eq!(b.recv(&mut buf)?, 0);
///
/// // A recv parked in one thread, Close from another: the closed error.
/// std::thread::scope(|s| {
///     let parked = s.spawn(|| b.recv(&mut [0u8; 8]));
///     b.close().unwrap();
///     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
/// });
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct UnixSeqpacket {
    fd: NetFd,
    timeouts: Timeouts,
    lent: crate::net::lend::Lent,
}

socket_common!(UnixSeqpacketListener);
socket_common!(UnixSeqpacket);
socket_timeouts!(UnixSeqpacket);
unix_listener!(
    UnixSeqpacketListener,
    UnixSeqpacket,
    SeqpacketIncoming,
    libc::SOCK_SEQPACKET
);

impl UnixSeqpacket {
    /// Send one record (all of `buf` or an error: EMSGSIZE when it can
    /// never fit the socket's buffer).
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Write, || {
            self.fd.write_with(|fd, owner| sys::write(fd, owner, buf))
        })
    }

    /// Receive one record, waiting for it; what does not fit `buf` is
    /// discarded. `Ok(0)` is an empty record or, once the peer has shut
    /// down or closed, the end. Parked at Close: the closed error.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Read, || {
            self.fd.read_with(|fd, owner| sys::recv(fd, owner, buf, 0))
        })
    }

    /// The next record, left in the queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.timeouts.run(&self.fd, Dir::Read, || {
            self.fd
                .read_with(|fd, owner| sys::recv(fd, owner, buf, libc::MSG_PEEK))
        })
    }

    /// shutdown(2) one or both directions; the socket stays open.
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.fd.control(|n, owner| sys::shutdown(n, owner, how))
    }
}

//! A socket wrapper as its author writes it first, outside this repository
//! and with no idea of the harness: the raw number in an `AtomicI32`,
//! blocking std sockets, `close(&self)` = shutdown(2) + close(2), its own
//! closed error. No probe calls, no sync points: the harness sees it only
//! through the interposer.
//!
//! `guarded: false` is the racy version: an op loads the number and then
//! uses it, so a Close (and another socket taking the freed number) can fall
//! in between. `guarded: true` is its correct twin: an `RwLock` held across
//! each syscall (shared by ops, exclusive by the close(2)), shutdown(2)
//! first and under the shared lock so it wakes a blocked op without waiting
//! for it.

#![allow(dead_code)]

use harness::scenario::Direction;
use harness::target::{Addr, Conn, Listener, Target};
use std::io;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::time::Instant;

// The wrapper itself is the example crate's (examples/raw-wrapper), so the
// harness's tests and a user's example check the same code.
pub use raw_wrapper::{is_closed, RawSocket};

pub struct RawConn(pub RawSocket);
pub struct RawListener(RawSocket, Addr, bool);

impl Conn for RawConn {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn set_deadline(&self, _dir: Direction, _at: Option<Instant>) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no deadlines"))
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        is_closed(e)
    }
}

impl Listener for RawListener {
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        let fd = self.0.accept()?;
        Ok(Box::new(RawConn(RawSocket::new(fd, self.2))))
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn local_addr(&self) -> io::Result<Addr> {
        Ok(self.1.clone())
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        is_closed(e)
    }
}

pub struct RawTarget {
    pub guarded: bool,
}

impl Target for RawTarget {
    fn name(&self) -> String {
        format!(
            "custom:raw-{}",
            if self.guarded { "guarded" } else { "racy" }
        )
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        let Addr::Inet(a) = addr else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let l = std::net::TcpListener::bind(a)?;
        let at = Addr::Inet(l.local_addr()?);
        Ok(Box::new(RawListener(
            RawSocket::new(l.into_raw_fd(), self.guarded),
            at,
            self.guarded,
        )))
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let Addr::Inet(a) = addr else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let s = std::net::TcpStream::connect(a)?;
        Ok(Box::new(RawConn(RawSocket::new(
            s.into_raw_fd(),
            self.guarded,
        ))))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let s = std::net::UdpSocket::bind(local)?;
        s.connect(peer)?;
        Ok(Box::new(RawConn(RawSocket::new(
            s.into_raw_fd(),
            self.guarded,
        ))))
    }
}

/// Close races reads while another thread opens sockets that may take the
/// freed number.
pub const CLOSE_VS_READ: &str = r#"{
  "name": "raw_close_vs_read_with_churn",
  "description": "Close races reads on an uninstrumented wrapper while another thread opens sockets that take the freed number.",
  "transport": "tcp4",
  "connections": 1,
  "threads": [
    { "name": "reader", "ops": [
      { "op": "peer_write", "conn": 0, "bytes": 16 },
      { "op": "read", "conn": 0, "bytes": 16 },
      { "op": "read", "conn": 0, "bytes": 16 },
      { "op": "read", "conn": 0, "bytes": 16 }
    ] },
    { "name": "closer", "ops": [
      { "op": "yield" },
      { "op": "close", "conn": 0 }
    ] },
    { "name": "churner", "ops": [
      { "op": "open", "count": 2 },
      { "op": "open", "count": 2 }
    ] }
  ]
}"#;

/// Close of a listener races an accept and a dial.
pub const CLOSE_VS_ACCEPT: &str = r#"{
  "name": "raw_close_listener_vs_accept",
  "description": "Close of an uninstrumented listener races an accept while another thread dials it.",
  "transport": "tcp4",
  "connections": 0,
  "listeners": 1,
  "slots": 2,
  "threads": [
    { "name": "acceptor", "ops": [
      { "op": "accept", "listener": 0, "conn": 0 },
      { "op": "read", "conn": 0, "bytes": 8 }
    ] },
    { "name": "dialer", "ops": [
      { "op": "dial", "listener": 0, "conn": 1 },
      { "op": "write", "conn": 1, "bytes": 8 }
    ] },
    { "name": "closer", "ops": [
      { "op": "yield" },
      { "op": "close_listener", "listener": 0 },
      { "op": "close", "conn": 0 }
    ] }
  ]
}"#;

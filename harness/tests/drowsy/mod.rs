//! A target whose reads come back 700 ms after their bytes
//! (`late_wakeup`), shared by the tests that need one.

use harness::scenario::Direction;
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A target whose reads come back 700 ms after their bytes: a reader
/// woken late, as by a readiness notification that was lost and a later
/// one that came by chance.
pub struct Drowsy(pub NetfdTarget);
pub struct DrowsyConn(Box<dyn Conn>);

impl Conn for DrowsyConn {
    fn owner(&self) -> OwnerId {
        self.0.owner()
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.0.read(buf);
        if matches!(r, Ok(n) if n > 0) {
            std::thread::sleep(Duration::from_millis(700));
        }
        r
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        self.0.set_deadline(dir, at)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
}

impl Target for Drowsy {
    fn name(&self) -> String {
        "custom:drowsy".into()
    }
    fn listen(&self, _addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(DrowsyConn(self.0.dial(addr)?)))
    }
    fn bind_datagram(&self, _local: SocketAddr, _peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

//! A target whose reads poll instead of sleeping (`busy_wait`), and a
//! scenario whose reads wait, shared by the tests that need them.

use harness::scenario::{self, Direction};
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One thread's read waits out a 250 ms deadline, then its read of a
/// second connection waits until that connection's Close 250 ms later. One
/// thread waits at a time: in controlled mode two spinners would take turns
/// and each be on a CPU for only half of its op.
pub const WAITS: &str = r#"{
  "name": "reads_that_wait",
  "description": "A read that waits for its deadline, then one that waits for Close: both must sleep.",
  "transport": "tcp4",
  "connections": 2,
  "threads": [
    { "name": "reader", "ops": [
      { "op": "set_deadline", "conn": 0, "dir": "read", "in_ms": 250 },
      { "op": "read", "conn": 0, "bytes": 64 },
      { "op": "read", "conn": 1, "bytes": 64 }
    ] },
    { "name": "closer", "ops": [
      { "op": "sleep", "ms": 500 },
      { "op": "close", "conn": 1 }
    ] }
  ],
  "expect": "The first read times out at its deadline, the second returns the closed error; the thread is on a CPU for neither wait."
}"#;

/// A target whose reads poll: each try has a deadline 100 µs ahead, and
/// after a try that found nothing the thread spins on the CPU for `.1`
/// (maybe zero) before the next, until bytes, the closed error or the
/// caller's own deadline.
pub struct Polling(pub NetfdTarget, pub Duration);

struct PollingConn {
    inner: Box<dyn Conn>,
    read_deadline: Mutex<Option<Instant>>,
    spin: Duration,
}

impl Conn for PollingConn {
    fn owner(&self) -> OwnerId {
        self.inner.owner()
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let due = *self.read_deadline.lock().unwrap();
            let now = Instant::now();
            if let Some(d) = due.filter(|&d| now >= d) {
                // The inner socket's own timeout error, as a caller expects.
                self.inner.set_deadline(Direction::Read, Some(d))?;
                return self.inner.read(buf);
            }
            self.inner
                .set_deadline(Direction::Read, Some(now + Duration::from_micros(100)))?;
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    let until = Instant::now() + self.spin;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                r => return r,
            }
        }
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        if matches!(dir, Direction::Read | Direction::Both) {
            *self.read_deadline.lock().unwrap() = at;
        }
        if matches!(dir, Direction::Write | Direction::Both) {
            self.inner.set_deadline(Direction::Write, at)?;
        }
        Ok(())
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
}

impl Target for Polling {
    fn name(&self) -> String {
        "custom:polling".into()
    }
    fn listen(&self, _addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(PollingConn {
            inner: self.0.dial(addr)?,
            read_deadline: Mutex::new(None),
            spin: self.1,
        }))
    }
    fn bind_datagram(&self, _local: SocketAddr, _peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

pub fn waits() -> scenario::Scenario {
    scenario::parse_str(WAITS, "reads_that_wait.json").expect("the case loads")
}

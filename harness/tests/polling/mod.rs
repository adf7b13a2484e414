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

/// A target whose reads poll until bytes, the closed error or the caller's
/// own deadline, waiting between tries as `.1` says.
pub struct Polling(pub NetfdTarget, pub Between);

/// How a [`Polling`] read waits between two tries that found nothing.
#[derive(Clone, Copy)]
#[allow(dead_code)] // each test binary that shares this module uses some
pub enum Between {
    /// Each try parks in the inner socket with a deadline `park` ahead;
    /// after it times out the thread spins on the CPU for `spin` (maybe
    /// zero: then the read parks in laps, once per `park`).
    ParkThenSpin { park: Duration, spin: Duration },
    /// Each try has a deadline already passed, so it returns at once without
    /// parking; the thread then sleeps for the duration (`thread::sleep`:
    /// woken thousands of times a second, parked never).
    Sleep(Duration),
}

struct PollingConn {
    inner: Box<dyn Conn>,
    read_deadline: Mutex<Option<Instant>>,
    between: Between,
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
            let try_until = match self.between {
                Between::ParkThenSpin { park, .. } => now + park,
                Between::Sleep(_) => now,
            };
            self.inner.set_deadline(Direction::Read, Some(try_until))?;
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => match self.between {
                    Between::ParkThenSpin { spin, .. } => {
                        let until = Instant::now() + spin;
                        while Instant::now() < until {
                            std::hint::spin_loop();
                        }
                    }
                    Between::Sleep(d) => std::thread::sleep(d),
                },
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
            between: self.1,
        }))
    }
    fn bind_datagram(&self, _local: SocketAddr, _peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

pub fn waits() -> scenario::Scenario {
    scenario::parse_str(WAITS, "reads_that_wait.json").expect("the case loads")
}

//! A target whose reads poll instead of sleeping (`busy_wait`), and a
//! scenario whose reads wait, shared by the tests that need them.

use harness::scenario::{self, Direction};
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::{self, OwnerId, Probe, SyncPoint, SysResult, Syscall};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
///
/// What the busy-wait rule sees of it is decided by its code, not by the
/// machine's load: a spin is measured on the thread's own CPU clock, and a
/// read honours the caller's deadline only after [`Between::laps`] laps
/// that found nothing (a polled wait bounded by wall time alone would get
/// fewer laps and less CPU the more loaded the machine; the laps end well
/// within the 250 ms deadline of [`WAITS`] on an idle machine, so there
/// the read is not late, and a loaded one is discounted for it). A lap
/// of parking counts only if the inner read really parked (netfd's
/// `BeforePark`, seen by a probe the read puts in front of the case's):
/// a try whose 1 ms deadline passed before it got to park, as free mode's
/// jitter yields beside CPU hogs make it do, returns without parking.
pub struct Polling(pub NetfdTarget, pub Between);

/// How a [`Polling`] read waits between two tries that found nothing.
#[derive(Clone, Copy)]
#[allow(dead_code)] // each test binary that shares this module uses some
pub enum Between {
    /// Each try parks in the inner socket with a deadline `park` ahead;
    /// after it times out the thread spins for `spin` of its own CPU time
    /// (maybe zero: then the read parks in laps, once per `park`).
    ParkThenSpin { park: Duration, spin: Duration },
    /// Each try has a deadline already passed, so it returns at once without
    /// parking; the thread then sleeps for the duration (`thread::sleep`:
    /// woken thousands of times a second, parked never).
    Sleep(Duration),
}

impl Between {
    /// Laps a read makes before it honours a passed deadline: over what
    /// each trigger of the rule needs, whatever the load: 60 spins of 4 ms
    /// of CPU are 240 ms (the floor is 50 ms); 150 parks (the floor is
    /// 100); 1,500 sleeps (the floor is 1,000).
    fn laps(self) -> u64 {
        match self {
            Between::ParkThenSpin { spin, .. } if spin.is_zero() => 150,
            Between::ParkThenSpin { .. } => 60,
            Between::Sleep(_) => 1500,
        }
    }

    /// Whether a lap is a park (else a try).
    fn counts_parks(self) -> bool {
        matches!(self, Between::ParkThenSpin { spin, .. } if spin.is_zero())
    }
}

/// Counts the parks of the calling thread and passes everything on to the
/// probe it stands in front of (the case's).
struct CountParks {
    inner: Option<Arc<dyn Probe>>,
    parks: AtomicU64,
}

impl Probe for CountParks {
    fn before_syscall(&self, call: &Syscall) {
        if let Some(p) = &self.inner {
            p.before_syscall(call);
        }
    }
    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        if let Some(p) = &self.inner {
            p.after_syscall(call, result);
        }
    }
    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        if point == SyncPoint::BeforePark {
            self.parks.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(p) = &self.inner {
            p.sync_point(point, owner);
        }
    }
}

/// The calling thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a pointer to a live
    // local of that type.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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
        let counter = Arc::new(CountParks {
            inner: probe::current(),
            parks: AtomicU64::new(0),
        });
        let _counting = probe::install(counter.clone());
        let mut tries = 0;
        loop {
            let due = *self.read_deadline.lock().unwrap();
            let now = Instant::now();
            let laps = if self.between.counts_parks() {
                counter.parks.load(Ordering::Relaxed)
            } else {
                tries
            };
            if let Some(d) = due.filter(|&d| now >= d && laps >= self.between.laps()) {
                // The inner socket's own timeout error, as a caller expects.
                self.inner.set_deadline(Direction::Read, Some(d))?;
                return self.inner.read(buf);
            }
            let try_until = match self.between {
                Between::ParkThenSpin { park, .. } => now + park,
                Between::Sleep(_) => now,
            };
            self.inner.set_deadline(Direction::Read, Some(try_until))?;
            tries += 1;
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => match self.between {
                    Between::ParkThenSpin { spin, .. } => {
                        let until = thread_cpu() + spin;
                        while thread_cpu() < until {
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

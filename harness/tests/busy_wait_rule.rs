//! The busy-wait rule (`no_busy_wait`, `harness/src/exec/busy.rs`): an op
//! that waits sleeps until what it waits for happens. fdmutex keeps it on
//! both wait paths and in both modes; a target whose reads poll breaks it,
//! though every result it returns is right: one that spins on the CPU
//! between tries (the CPU trigger), and one that sleeps only 100 µs per try
//! (the sleeps trigger, free mode: thousands of wake-ups in one wait, little
//! CPU).

use harness::exec::{self, CaseConfig};
use harness::report::{Mode, ViolationKind};
use harness::scenario::{self, Direction};
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use netfd::{Variant, WaitPath};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One thread's read waits out a 250 ms deadline, then its read of a
/// second connection waits until that connection's Close 250 ms later. One
/// thread waits at a time: in controlled mode two spinners would take turns
/// and each be on a CPU for only half of its op.
const WAITS: &str = r#"{
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
struct Polling(NetfdTarget, Duration);

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

fn waits() -> scenario::Scenario {
    scenario::parse_str(WAITS, "reads_that_wait.json").expect("the case loads")
}

#[test]
fn fdmutex_sleeps_while_it_waits_on_both_wait_paths() {
    let s = waits();
    for wait in [WaitPath::Direct, WaitPath::Server] {
        let target: Arc<dyn Target> =
            Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
        for mode in [Mode::Free, Mode::Controlled] {
            for i in 0..3 {
                let mut cc = CaseConfig::new(mode, i);
                cc.hang_bound = Duration::from_secs(3);
                let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
                assert!(
                    o.found.is_empty(),
                    "{wait:?} {mode:?} case {i}: {:?}",
                    o.found
                        .iter()
                        .map(|f| (f.kind, f.message.clone()))
                        .collect::<Vec<_>>()
                );
                // The rule looked at the reads, the set_deadline and the Close.
                let judged = o
                    .checks
                    .iter()
                    .find(|(k, _)| *k == ViolationKind::BusyWait)
                    .map_or(0, |&(_, n)| n);
                assert!(
                    judged >= 4,
                    "{wait:?} {mode:?} case {i}: {judged} ops judged"
                );
            }
        }
    }
}

fn polling_is_busy(spin: Duration, says: &str, modes: &[Mode]) {
    let s = waits();
    let target: Arc<dyn Target> = Arc::new(Polling(NetfdTarget::new(Variant::FdMutex), spin));
    for &mode in modes {
        for i in 0..3 {
            let mut cc = CaseConfig::new(mode, i);
            cc.hang_bound = Duration::from_secs(3);
            let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
            let busy: Vec<_> = o
                .found
                .iter()
                .filter(|f| f.kind == ViolationKind::BusyWait)
                .collect();
            assert!(
                busy.len() == o.found.len(),
                "{mode:?} case {i}: only busy_wait expected, got {:?}",
                o.found
                    .iter()
                    .map(|f| (f.kind, f.message.clone()))
                    .collect::<Vec<_>>()
            );
            // The deadline read polls for its 250 ms in every schedule; the
            // second read waits for the Close too, unless the controlled
            // schedule ran the closer first and that read found the socket
            // closed.
            let want = if mode == Mode::Free { 2..=2 } else { 1..=2 };
            assert!(
                want.contains(&busy.len())
                    && busy[0].op.contains("conn=0")
                    && busy.iter().all(|f| f.message.contains(says)),
                "{mode:?} case {i}: {:?}",
                busy.iter().map(|f| &f.message).collect::<Vec<_>>()
            );
            assert!(busy.iter().all(|f| f.op.starts_with("read")));
        }
    }
}

#[test]
fn a_reader_that_spins_between_tries_is_a_busy_wait() {
    polling_is_busy(
        Duration::from_millis(4),
        "on a CPU",
        &[Mode::Free, Mode::Controlled],
    );
}

#[test]
fn a_reader_that_sleeps_100_us_between_tries_is_a_busy_wait() {
    // Free mode only: in controlled mode every turn handed out wakes a
    // thread that waits for one, so the rule does not count sleeps there.
    polling_is_busy(Duration::ZERO, "woken", &[Mode::Free]);
}

//! Helpers shared by the contract test binaries.
//!
//! - [`Recorder`] is a probe that keeps every syscall and sync point of the
//!   threads it is installed on. It is the evidence behind "no syscall on a
//!   released number" and "no leaked number": netfd reports every call with
//!   the never-reused owner id, so the checks hold even though the other
//!   tests of the binary open and close descriptors at the same time.
//! - [`watchdog`] turns a hang into a failure: a contract test that does not
//!   finish within its bound aborts the process with the test's name.
//! - [`check_error`] is the contract's list of errors an operation racing or
//!   following close may return.

#![allow(dead_code)]

use netfd::probe::{self, OwnerId, Probe, ProbeGuard, SyncPoint, SysOp, SysResult, Syscall};
use netfd::{Options, TcpListener, TcpStream, UnixListener, UnixStream, WaitPath};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Both wait paths of the production variant.
pub const PATHS: [WaitPath; 2] = [WaitPath::Direct, WaitPath::Server];

pub fn opts(path: WaitPath) -> Options {
    Options::default().with_wait(path)
}

pub fn v4() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `[::1]:0`, or `None` (with a note on stderr) when this host has no IPv6
/// loopback.
pub fn v6() -> Option<SocketAddr> {
    match std::net::UdpSocket::bind("[::1]:0") {
        Ok(_) => Some("[::1]:0".parse().unwrap()),
        Err(e) => {
            eprintln!("note: ::1 is unavailable ({e}); skipping the IPv6 case");
            None
        }
    }
}

/// The loopback addresses this host has.
pub fn loopbacks() -> Vec<SocketAddr> {
    let mut v = vec![v4()];
    v.extend(v6());
    v
}

/// One thing a probed thread did.
#[derive(Clone, Copy, Debug)]
pub enum Event {
    Sys {
        op: SysOp,
        fd: RawFd,
        owner: OwnerId,
        new_owner: OwnerId,
        result: SysResult,
    },
    Sync {
        point: SyncPoint,
        owner: OwnerId,
    },
}

/// A probe that records everything, in the order the calls completed.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<Event>>,
    parked: Mutex<Option<mpsc::Sender<OwnerId>>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// A recorder that also reports every `BeforePark` on the channel, so a
    /// test can act once an operation is really about to sleep.
    pub fn with_park_signal() -> (Arc<Recorder>, mpsc::Receiver<OwnerId>) {
        let (tx, rx) = mpsc::channel();
        let rec = Recorder {
            parked: Mutex::new(Some(tx)),
            ..Recorder::default()
        };
        (Arc::new(rec), rx)
    }

    /// Install on the calling thread until the guard drops.
    pub fn install(self: &Arc<Self>) -> ProbeGuard {
        probe::install(self.clone())
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.events.lock().unwrap().clear();
    }

    /// Syscalls of kind `op` made on behalf of `owner`.
    pub fn count_sys(&self, op: SysOp, owner: OwnerId) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Sys { op: o, owner: w, .. } if *o == op && *w == owner))
            .count()
    }

    /// All syscalls made on behalf of `owner`.
    pub fn syscalls_of(&self, owner: OwnerId) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| matches!(e, Event::Sys { owner: w, .. } if *w == owner))
            .copied()
            .collect()
    }

    /// Times `owner` passed `point`.
    pub fn count_sync(&self, point: SyncPoint, owner: OwnerId) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(
                |e| matches!(e, Event::Sync { point: p, owner: w } if *p == point && *w == owner),
            )
            .count()
    }

    /// The descriptor number the kernel handed to `owner`.
    pub fn fd_of(&self, owner: OwnerId) -> Option<RawFd> {
        self.events.lock().unwrap().iter().find_map(|e| match *e {
            Event::Sys {
                op,
                new_owner,
                result: Ok(n),
                ..
            } if op.creates_descriptor() && new_owner == owner => Some(n as RawFd),
            _ => None,
        })
    }

    /// Every socket number created on a recorded thread was closed exactly
    /// once, and no syscall named an owner after its close(2). Returns the
    /// number of sockets checked.
    pub fn check_lifetimes(&self) -> Result<usize, String> {
        #[derive(Default)]
        struct Life {
            created: bool,
            closes: usize,
        }
        let events = self.events.lock().unwrap();
        let mut lives: HashMap<OwnerId, Life> = HashMap::new();
        for (i, e) in events.iter().enumerate() {
            let Event::Sys {
                op,
                fd,
                owner,
                new_owner,
                result,
            } = *e
            else {
                continue;
            };
            if op.creates_descriptor() && result.is_ok() && new_owner != OwnerId::INTERNAL {
                lives.entry(new_owner).or_default().created = true;
            }
            if owner == OwnerId::NONE || owner == OwnerId::INTERNAL {
                continue;
            }
            let life = lives.entry(owner).or_default();
            if life.closes > 0 {
                return Err(format!(
                    "event {i}: {op} on fd {fd} for {owner} after its close(2)"
                ));
            }
            if op == SysOp::Close {
                life.closes += 1;
            }
        }
        let mut checked = 0;
        for (owner, life) in &lives {
            if life.created {
                checked += 1;
                if life.closes != 1 {
                    return Err(format!(
                        "{owner}: created, closed {} times (leak or double close)",
                        life.closes
                    ));
                }
            }
        }
        Ok(checked)
    }
}

impl Probe for Recorder {
    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        self.events.lock().unwrap().push(Event::Sys {
            op: call.op,
            fd: call.fd,
            owner: call.owner,
            new_owner: call.new_owner,
            result,
        });
    }

    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        self.events
            .lock()
            .unwrap()
            .push(Event::Sync { point, owner });
        if point == SyncPoint::BeforePark {
            if let Some(tx) = &*self.parked.lock().unwrap() {
                let _ = tx.send(owner);
            }
        }
    }
}

/// Wait for the next `BeforePark` reported by `parked`, then give the
/// thread a moment to enter the kernel wait proper.
pub fn await_park(parked: &mpsc::Receiver<OwnerId>, what: &str) -> OwnerId {
    let owner = await_park_now(parked, what);
    std::thread::sleep(Duration::from_millis(20));
    owner
}

/// Wait for the next `BeforePark` reported by `parked` and return at once
/// (the operation is between arming its wake-up and sleeping).
pub fn await_park_now(parked: &mpsc::Receiver<OwnerId>, what: &str) -> OwnerId {
    parked
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: the operation never parked"))
}

/// Aborts the process if dropped later than `limit` after creation.
pub struct Watchdog {
    _done: mpsc::Sender<()>,
}

/// A hang bound for the calling test: past `limit` the process aborts with
/// `name` on stderr (a hang never returns, so it cannot fail politely).
pub fn watchdog(name: &'static str, limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            // Straight to stderr: the test harness captures `eprintln!`
            // (in spawned threads too) and an abort would lose it.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "watchdog: {name} did not finish within {limit:?}: hang"
            );
            std::process::abort();
        }
    });
    Watchdog { _done: tx }
}

/// The closed error, exactly as the contract spells it.
pub fn assert_closed_error(e: &io::Error, what: &str) {
    assert!(
        netfd::is_closed(e),
        "{what}: expected the closed error, got {e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{what}");
    assert_eq!(e.to_string(), netfd::CLOSED_MESSAGE, "{what}");
    assert_eq!(e.raw_os_error(), None, "{what}");
}

pub fn expect_closed<T: std::fmt::Debug>(r: io::Result<T>, what: &str) {
    match r {
        Err(e) => assert_closed_error(&e, what),
        Ok(v) => panic!("{what}: expected the closed error, got Ok({v:?})"),
    }
}

/// An error an operation racing close may return: closed, timed out, or
/// the peer going away. Returns whether it was the closed error. Anything
/// else (EBADF, EINVAL, ENOTSOCK, ...) fails the test.
pub fn check_error(e: &io::Error, what: &str) -> bool {
    if netfd::is_closed(e) {
        assert_closed_error(e, what);
        return true;
    }
    if netfd::is_timeout(e) {
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{what}");
        return false;
    }
    match e.raw_os_error() {
        Some(libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED) => false,
        _ => panic!("{what}: error outside the contract: {e:?}"),
    }
}

/// A connected TCP pair (client, server side) over a fresh listener.
pub fn tcp_pair(addr: SocketAddr, o: Options) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind_with(addr, o).unwrap();
    let c = TcpStream::connect_with(l.local_addr().unwrap(), o).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// A connected Unix stream pair (client, server side) through `l`.
pub fn unix_pair(l: &UnixListener, path: &Path, o: Options) -> (UnixStream, UnixStream) {
    let c = UnixStream::connect_with(path, o).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// A small deterministic generator, so a failing round can be rerun.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Delay the calling thread by one of a few shapes (none, a yield, a spin,
/// a short sleep), so a racing close lands at different points.
pub fn jitter(rng: &mut Rng) {
    match rng.below(4) {
        0 => {}
        1 => std::thread::yield_now(),
        2 => {
            for _ in 0..rng.below(2000) {
                std::hint::spin_loop();
            }
        }
        _ => std::thread::sleep(Duration::from_micros(rng.below(200))),
    }
}

/// Open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

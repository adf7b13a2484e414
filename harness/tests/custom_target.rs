//! A target plugged in as a library user would: an fd wrapper defined only
//! in this file, driven by `harness::run::run` through the public
//! `harness::target` traits.
//!
//! The wrapper keeps the raw number in an `AtomicI32` that any operation
//! loads at any time, and Close releases the number at once (close(2), then
//! -1): the classic mistake. Its syscalls go through `netfd::sys`, so the
//! probe sees them, and it reports the sockets it creates (made with `std`)
//! so the ledger knows their owners. Its `BeforeSyscall` sync point, between
//! loading the number and using it, is where a controlled schedule can let
//! Close and the churner run: the harness must catch it (`fd_reuse` or
//! `use_after_close`). The same wrapper with a lock that keeps the number
//! valid across each syscall must be found clean, so the verdict is about
//! the protocol, not about the wrapper being foreign.
//!
//! This is also the mixed case: the wrapper creates its sockets with `std`
//! (seen by the interposer, whose calls are attributed to the object the
//! op returns) and reports the rest through netfd's probe (which the
//! interposer passes through). Were a reported call counted twice, the
//! interposer's copy would be a call for the std-made owner the report
//! replaced, and the guarded twin would not be clean: it is what fails when
//! the case probe stops marking reported calls.
//!
//! Only reads touch a stale number here (and only sockets of this process's
//! own cases can have taken it), so no other test is disturbed.

use harness::report::{schema, Mode, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario::{self, Direction};
use harness::target::{Addr, Conn, Listener, Target};
use netfd::probe::{self, OwnerId, SyncPoint, SysOp, Syscall};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Tell the probe that `fd` now belongs to `owner` (the socket was made by
/// `std`, which netfd's probe does not see).
fn report_created(fd: RawFd, owner: OwnerId) {
    let call = Syscall {
        op: SysOp::Socket,
        fd: -1,
        owner: OwnerId::NONE,
        new_owner: owner,
    };
    probe::before_syscall(&call);
    probe::after_syscall(&call, Ok(i64::from(fd)));
}

/// The user's wrapper. With `guard`, a syscall and the Close that releases
/// the number exclude each other; without, nothing keeps the number valid.
struct AtomicFd {
    fd: AtomicI32,
    owner: OwnerId,
    guard: Option<RwLock<()>>,
}

impl AtomicFd {
    fn adopt(fd: RawFd, guarded: bool) -> AtomicFd {
        let owner = OwnerId::next();
        report_created(fd, owner);
        AtomicFd {
            fd: AtomicI32::new(fd),
            owner,
            guard: guarded.then(|| RwLock::new(())),
        }
    }

    /// One attempt of `op` on the current number.
    fn attempt<T>(&self, op: &mut impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        probe::sync_point(SyncPoint::AfterClosedCheck, self.owner);
        let _held = self.guard.as_ref().map(|g| g.read().unwrap());
        let fd = self.fd.load(Relaxed);
        if fd < 0 {
            return Err(netfd::error::closed());
        }
        if self.guard.is_none() {
            // The window: the number is loaded and nothing keeps it ours.
            probe::sync_point(SyncPoint::BeforeSyscall, self.owner);
        }
        op(fd)
    }

    /// `op` until it stops saying EAGAIN, waiting in between.
    fn io<T>(&self, mut op: impl FnMut(RawFd) -> io::Result<T>) -> io::Result<T> {
        loop {
            match self.attempt(&mut op) {
                Err(e) if netfd::sys::is_would_block(&e) => {
                    // Long enough for the harness to see everyone blocked.
                    probe::sync_point(SyncPoint::BeforePark, self.owner);
                    std::thread::sleep(Duration::from_millis(5));
                    probe::sync_point(SyncPoint::AfterWake, self.owner);
                }
                r => return r,
            }
        }
    }

    fn close(&self) -> io::Result<()> {
        let _held = self.guard.as_ref().map(|g| g.write().unwrap());
        let fd = self.fd.load(Relaxed);
        if fd < 0 {
            return Err(netfd::error::closed());
        }
        probe::sync_point(SyncPoint::BeforeFinalClose, self.owner);
        let r = netfd::sys::close(fd, self.owner);
        self.fd.store(-1, Relaxed);
        r
    }
}

impl Drop for AtomicFd {
    fn drop(&mut self) {
        if self.fd.load(Relaxed) >= 0 {
            let _ = self.close();
        }
    }
}

impl Conn for AtomicFd {
    fn owner(&self) -> OwnerId {
        self.owner
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io(|fd| netfd::sys::read(fd, self.owner, buf))
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            done += self.io(|fd| netfd::sys::write(fd, self.owner, &buf[done..]))?;
        }
        Ok(done)
    }
    fn set_deadline(&self, _dir: Direction, _at: Option<Instant>) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no deadlines in this wrapper",
        ))
    }
    fn close(&self) -> io::Result<()> {
        AtomicFd::close(self)
    }
}

struct AtomicFdTarget {
    guarded: bool,
}

impl Target for AtomicFdTarget {
    fn name(&self) -> String {
        let name = if self.guarded { "guarded" } else { "racy" };
        format!("custom:atomic-fd-{name}")
    }
    fn listen(&self, _addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let Addr::Inet(a) = addr else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let s = std::net::TcpStream::connect(a)?;
        s.set_nonblocking(true)?;
        Ok(Box::new(AtomicFd::adopt(s.into_raw_fd(), self.guarded)))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let s = std::net::UdpSocket::bind(local)?;
        s.connect(peer)?;
        s.set_nonblocking(true)?;
        Ok(Box::new(AtomicFd::adopt(s.into_raw_fd(), self.guarded)))
    }
}

/// Close races two reads while a third thread takes the freed number.
const SCENARIO: &str = r#"{
  "name": "custom_close_vs_read_with_churn",
  "description": "Close races reads on a user's own fd wrapper while another thread opens sockets that take the freed number.",
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
      { "op": "open", "count": 4 },
      { "op": "open", "count": 4 }
    ] }
  ]
}"#;

/// The tests of this file run one at a time: the racy wrapper closes
/// numbers it no longer owns, and in one process such a stray Close can hit
/// the guarded wrapper's socket in the other test (seen: the guarded run
/// got EBADF from a read no Close had touched).
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_against(guarded: bool, mode: Mode) -> harness::report::Report {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let s = scenario::parse_str(SCENARIO, "custom.json").unwrap_or_else(|e| panic!("{e}"));
    let reports = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode,
        seed: 2024,
        cases: 60,
        budget: Duration::from_secs(8),
        case_dir: Some(reports.path().join("cases")),
        hang_bound: Duration::from_millis(500),
        jobs: 0,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let target: Arc<dyn Target> = Arc::new(AtomicFdTarget { guarded });
    let sources = [Source {
        scenario: s,
        file: "custom.json".into(),
    }];
    let report = run::run(target, &sources, &cfg, &|_, _| {}).expect("run");
    let path = report.write_atomic(reports.path()).expect("write report");
    schema::validate_report_file(&path).unwrap_or_else(|e| panic!("{e}"));
    report
}

#[test]
fn a_racy_wrapper_defined_in_this_file_is_caught() {
    let report = run_against(false, Mode::Controlled);
    assert_eq!(report.variant, "custom:atomic-fd-racy");
    let kinds = run::kinds_found(&report);
    assert!(
        kinds.contains(&ViolationKind::FdReuse) || kinds.contains(&ViolationKind::UseAfterClose),
        "caught as {kinds:?}"
    );
    assert!(!report.summary.passed);
    let sc = &report.scenarios[0];
    assert!(sc.syscalls_checked > 0, "the ledger checked its calls");
    // A violation says who and where, and how to replay it.
    let v = sc
        .violations
        .iter()
        .find(|v| {
            matches!(
                v.kind,
                ViolationKind::FdReuse | ViolationKind::UseAfterClose
            )
        })
        .expect("a ledger violation");
    assert_eq!(v.thread, "reader");
    assert_eq!(v.op, "read");
    assert!(v.fd >= 0 && v.owner > 0);
    assert!(!v.trace.is_empty() && !v.schedule.is_empty());
    assert!(
        v.replay.contains("custom_close_vs_read_with_churn"),
        "{}",
        v.replay
    );
    if v.kind == ViolationKind::FdReuse {
        assert!(v.evidence.as_deref().is_some_and(|e| e.contains("inode")));
    }
}

#[test]
fn the_same_wrapper_with_a_lock_around_each_syscall_is_clean() {
    for mode in [Mode::Controlled, Mode::Free] {
        let report = run_against(true, mode);
        assert_eq!(report.variant, "custom:atomic-fd-guarded");
        assert!(
            report.summary.passed,
            "{mode}: {:#?}",
            report.violations().map(|(_, v)| v).collect::<Vec<_>>()
        );
        assert!(report.summary.cases > 0 && report.summary.syscalls_checked > 0);
    }
}

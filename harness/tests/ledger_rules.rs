//! The oracle's rules, one by one: every violation kind is provoked and
//! detected.
//!
//! Three layers:
//! - synthetic: `Syscall` events fed straight to a [`Ledger`], on numbers far
//!   above any descriptor limit (so the kernel never has them open and its
//!   evidence is "not open");
//! - real sockets: a probe installed on the test thread forwards netfd's
//!   calls to a ledger; raw `netfd::sys` calls are then made for a closed
//!   socket's owner on its old number, so the kernel evidence
//!   (`netfd::sys::file_identity`) is real. Raw calls only ever touch numbers
//!   this test holds (or harmless `getsockname`), so the other tests of this
//!   process, which share the descriptor table, are never disturbed;
//! - exec level (`hang`, `bad_error`, `crosstalk`, `early_deadline`, `leak`):
//!   a deliberately broken [`Target`] wrapping netfd, run by
//!   `exec::run_case` on a small scenario; the same scenario against
//!   `fdmutex` must be found clean.

use harness::exec::{self, CaseConfig, CaseOutcome};
use harness::ledger::Ledger;
use harness::report::{Mode, ViolationKind};
use harness::scenario::{self, Direction, Scenario};
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::{self, OwnerId, Probe, SyncPoint, SysOp, SysResult, Syscall};
use netfd::Variant;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Synthetic events
// ---------------------------------------------------------------------------

/// Numbers no kernel hands out (far above any RLIMIT_NOFILE): fstat says
/// "not open", so only the ledger's own bookkeeping decides.
const FAKE: RawFd = 1_900_000_000;

fn call(op: SysOp, fd: RawFd, owner: OwnerId) -> Syscall {
    Syscall {
        op,
        fd,
        owner,
        new_owner: OwnerId::NONE,
    }
}

/// `socket()` on `thread` returned `fd` for a new owner.
fn create(l: &Ledger, thread: usize, fd: RawFd) -> OwnerId {
    let owner = OwnerId::next();
    let c = Syscall {
        op: SysOp::Socket,
        fd: -1,
        owner: OwnerId::NONE,
        new_owner: owner,
    };
    l.before_syscall(thread, &c);
    l.after_syscall(thread, &c, Ok(i64::from(fd)));
    owner
}

/// A complete syscall (start and result) on `thread`.
fn sys(l: &Ledger, thread: usize, op: SysOp, fd: RawFd, owner: OwnerId, result: SysResult) {
    let c = call(op, fd, owner);
    l.before_syscall(thread, &c);
    l.after_syscall(thread, &c, result);
}

fn kinds(l: &Ledger) -> Vec<ViolationKind> {
    l.violations().iter().map(|v| v.kind).collect()
}

#[test]
fn a_clean_lifecycle_raises_nothing_and_counts_its_checks() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE);
    sys(&l, 0, SysOp::Write, FAKE, a, Ok(64));
    sys(&l, 1, SysOp::Read, FAKE, a, Err(libc::EAGAIN));
    sys(&l, 1, SysOp::Close, FAKE, a, Ok(0));
    assert!(l.violations().is_empty(), "{:?}", l.violations());
    assert!(l.unreleased().is_empty());
    assert_eq!(l.is_released(a), Some(true));
    let c = l.counts();
    assert_eq!(c.syscalls_checked, 3, "write, read, close");
    assert_eq!(c.closes_checked, 1);
}

#[test]
fn use_after_close_is_a_call_for_an_owner_whose_number_was_released() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 1);
    sys(&l, 0, SysOp::Close, FAKE + 1, a, Ok(0));
    assert!(l.violations().is_empty());
    sys(&l, 1, SysOp::Read, FAKE + 1, a, Err(libc::EBADF));
    let v = l.violations();
    assert_eq!(kinds(&l), [ViolationKind::UseAfterClose], "{v:?}");
    let v = &v[0];
    assert_eq!(
        (v.fd, v.owner, v.holder, v.op, v.thread),
        (FAKE + 1, a, None, SysOp::Read, 1)
    );
    assert!(v.message.contains("read"), "{}", v.message);
}

#[test]
fn double_close_is_a_second_close_for_a_released_owner() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 2);
    sys(&l, 0, SysOp::Close, FAKE + 2, a, Ok(0));
    sys(&l, 1, SysOp::Close, FAKE + 2, a, Err(libc::EBADF));
    let v = l.violations();
    assert_eq!(kinds(&l), [ViolationKind::DoubleClose], "{v:?}");
    assert_eq!((v[0].owner, v[0].thread, v[0].op), (a, 1, SysOp::Close));
}

#[test]
fn double_close_names_the_owner_the_number_was_handed_to() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 3);
    sys(&l, 0, SysOp::Close, FAKE + 3, a, Ok(0));
    let b = create(&l, 2, FAKE + 3);
    // A's stale close releases B's number...
    sys(&l, 1, SysOp::Close, FAKE + 3, a, Ok(0));
    let v = l.violations();
    assert_eq!(kinds(&l), [ViolationKind::DoubleClose], "{v:?}");
    assert_eq!(v[0].holder, Some(b));
    assert!(v[0].message.contains(&b.to_string()), "{}", v[0].message);
    // ...so B lost it: B's own close later is a second close of the number
    // (it may reach yet another socket), not a leak of B.
    assert!(
        l.unreleased().is_empty(),
        "B's number was closed under it: {:?}",
        l.unreleased()
    );
    sys(&l, 2, SysOp::Close, FAKE + 3, b, Err(libc::EBADF));
    assert_eq!(
        kinds(&l),
        [ViolationKind::DoubleClose, ViolationKind::DoubleClose],
        "{:?}",
        l.violations()
    );
    assert_eq!(l.violations()[1].owner, b);
}

#[test]
fn a_close_reported_after_its_number_was_handed_out_again_leaves_the_new_owner_alone() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 16);
    let close = call(SysOp::Close, FAKE + 16, a);
    l.before_syscall(1, &close);
    // The kernel released the number and gave it to B before the close's
    // result was reported.
    let b = create(&l, 2, FAKE + 16);
    l.after_syscall(1, &close, Ok(0));
    sys(&l, 2, SysOp::Write, FAKE + 16, b, Ok(8));
    sys(&l, 2, SysOp::Close, FAKE + 16, b, Ok(0));
    assert!(l.violations().is_empty(), "{:?}", l.violations());
    assert!(l.unreleased().is_empty());
}

#[test]
fn double_close_when_two_closes_of_one_owner_overlap_in_the_kernel() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 4);
    let first = call(SysOp::Close, FAKE + 4, a);
    l.before_syscall(1, &first);
    // The second close starts before the first has returned.
    let second = call(SysOp::Close, FAKE + 4, a);
    l.before_syscall(2, &second);
    l.after_syscall(1, &first, Ok(0));
    l.after_syscall(2, &second, Err(libc::EBADF));
    let v = l.violations();
    assert_eq!(kinds(&l), [ViolationKind::DoubleClose], "{v:?}");
    assert_eq!((v[0].owner, v[0].thread), (a, 2));
}

#[test]
fn fd_reuse_is_a_call_on_a_number_the_owner_does_not_hold() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 5);
    let b = create(&l, 0, FAKE + 6);
    // A's call reaches B's number (a stale or corrupted number field).
    sys(&l, 1, SysOp::Write, FAKE + 6, a, Ok(8));
    let v = l.violations();
    assert_eq!(kinds(&l), [ViolationKind::FdReuse], "{v:?}");
    assert_eq!((v[0].fd, v[0].owner, v[0].holder), (FAKE + 6, a, Some(b)));
}

#[test]
fn close_in_flight_is_a_close_while_another_thread_is_in_a_call_on_the_number() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 7);
    let read = call(SysOp::Poll, FAKE + 7, a);
    l.before_syscall(1, &read);
    sys(&l, 2, SysOp::Close, FAKE + 7, a, Ok(0));
    l.after_syscall(1, &read, Ok(1));
    let v = l.violations();
    assert_eq!(kinds(&l), [ViolationKind::CloseInFlight], "{v:?}");
    assert_eq!((v[0].owner, v[0].thread, v[0].op), (a, 2, SysOp::Close));
    assert!(
        v[0].message.contains("poll") && v[0].message.contains("thread 1"),
        "names the call in flight: {}",
        v[0].message
    );
}

#[test]
fn close_in_flight_when_a_call_starts_while_close_is_in_the_kernel() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 8);
    let close = call(SysOp::Close, FAKE + 8, a);
    l.before_syscall(2, &close);
    // Whichever the kernel runs first, this read may meet a released number.
    let read = call(SysOp::Read, FAKE + 8, a);
    l.before_syscall(1, &read);
    l.after_syscall(2, &close, Ok(0));
    l.after_syscall(1, &read, Err(libc::EBADF));
    let v = l.violations();
    assert_eq!(kinds(&l), [ViolationKind::CloseInFlight], "{v:?}");
    assert_eq!((v[0].owner, v[0].thread, v[0].op), (a, 1, SysOp::Read));
}

#[test]
fn a_late_report_from_an_earlier_owner_of_the_number_is_not_close_in_flight() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 9);
    // Thread 1's poll for A is reported late: the kernel finished it before
    // the number was handed out again.
    let poll = call(SysOp::Poll, FAKE + 9, a);
    l.before_syscall(1, &poll);
    sys(&l, 2, SysOp::Close, FAKE + 9, a, Ok(0));
    assert_eq!(kinds(&l), [ViolationKind::CloseInFlight]);
    let b = create(&l, 3, FAKE + 9);
    sys(&l, 3, SysOp::Close, FAKE + 9, b, Ok(0));
    l.after_syscall(1, &poll, Ok(1));
    assert_eq!(
        kinds(&l),
        [ViolationKind::CloseInFlight],
        "B's close is not racing A's old poll: {:?}",
        l.violations()
    );
}

#[test]
fn leak_is_an_owner_whose_number_was_never_released() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 10);
    let b = create(&l, 0, FAKE + 11);
    sys(&l, 0, SysOp::Close, FAKE + 11, b, Ok(0));
    assert_eq!(l.unreleased(), [(a, FAKE + 10)]);
    // A close that failed with EBADF released nothing.
    let c = create(&l, 0, FAKE + 12);
    sys(&l, 0, SysOp::Close, FAKE + 12, c, Err(libc::EBADF));
    assert_eq!(l.unreleased(), [(a, FAKE + 10), (c, FAKE + 12)]);
    assert_eq!(l.is_released(a), Some(false));
}

/// netfd's own wake-ups must reach an eventfd: on a real eventfd nothing
/// is found; on a socket (its number went to someone else) `fd_reuse`,
/// naming what the number is; on a number not open `use_after_close`.
#[test]
fn a_wake_up_must_reach_an_eventfd() {
    let l = Ledger::new();
    let wake = netfd::sys::eventfd().expect("eventfd");
    sys(&l, 0, SysOp::Write, wake, OwnerId::INTERNAL, Ok(8));
    sys(&l, 0, SysOp::Read, wake, OwnerId::INTERNAL, Ok(8));
    assert!(l.violations().is_empty(), "{:?}", l.violations());
    assert_eq!(l.counts().syscalls_checked, 2);
    netfd::sys::close(wake, OwnerId::INTERNAL).unwrap();

    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    use std::os::fd::AsRawFd;
    sys(
        &l,
        1,
        SysOp::Write,
        socket.as_raw_fd(),
        OwnerId::INTERNAL,
        Ok(8),
    );
    sys(
        &l,
        1,
        SysOp::Read,
        FAKE + 20,
        OwnerId::INTERNAL,
        Err(libc::EBADF),
    );
    assert_eq!(
        kinds(&l),
        [ViolationKind::FdReuse, ViolationKind::UseAfterClose],
        "{:?}",
        l.violations()
    );
    let reuse = &l.violations()[0];
    assert!(
        reuse
            .evidence
            .as_deref()
            .is_some_and(|e| e.contains("socket:[")),
        "{reuse:?}"
    );
    assert_eq!(reuse.thread, 1);
}

#[test]
fn calls_for_owners_the_ledger_never_saw_created_are_not_checked() {
    let l = Ledger::new();
    let stranger = OwnerId::next();
    sys(&l, 0, SysOp::Read, FAKE + 13, stranger, Ok(1));
    sys(&l, 0, SysOp::Close, FAKE + 13, stranger, Ok(0));
    sys(&l, 0, SysOp::Close, FAKE + 13, stranger, Err(libc::EBADF));
    assert!(l.violations().is_empty(), "{:?}", l.violations());
    assert_eq!(l.counts().syscalls_checked, 0);
    assert_eq!(l.is_released(stranger), None);
    assert!(l.unreleased().is_empty());
}

#[test]
fn adopted_numbers_are_checked_like_created_ones() {
    let l = Ledger::new();
    let a = OwnerId::next();
    l.adopt(FAKE + 14, a);
    sys(&l, 0, SysOp::Close, FAKE + 14, a, Ok(0));
    sys(&l, 1, SysOp::Write, FAKE + 14, a, Err(libc::EBADF));
    assert_eq!(kinds(&l), [ViolationKind::UseAfterClose]);
}

#[test]
fn a_violation_carries_the_trace_that_led_to_it() {
    let l = Ledger::new();
    let a = create(&l, 0, FAKE + 15);
    l.note(1, a, SyncPoint::AfterClosedCheck.name(), None);
    sys(&l, 0, SysOp::Close, FAKE + 15, a, Ok(0));
    sys(&l, 1, SysOp::Read, FAKE + 15, a, Err(libc::EBADF));
    let v = &l.violations()[0];
    let names = ["opener".to_string(), "reader".to_string()];
    let trace = l.trace(v.event, &names);
    let last = trace.last().expect("trace");
    assert_eq!(
        (
            last.what.as_str(),
            last.thread.as_str(),
            last.owner,
            last.fd
        ),
        ("read", "reader", a.0, Some(FAKE + 15))
    );
    let whats: Vec<&str> = trace.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "socket",
            "socket returned",
            "after_closed_check",
            "close",
            "close returned",
            "read"
        ]
    );
    assert_eq!(trace[4].result.as_deref(), Some("ok 0"));
    assert!(trace.windows(2).all(|w| w[0].seq < w[1].seq));
}

// ---------------------------------------------------------------------------
// Real sockets
// ---------------------------------------------------------------------------

/// What the forwarding probes saw, shared by the threads of one test.
#[derive(Default)]
struct Seen {
    created: Mutex<HashMap<OwnerId, RawFd>>,
    polls_started: AtomicUsize,
}

impl Seen {
    fn fd_of(&self, owner: OwnerId) -> RawFd {
        *self
            .created
            .lock()
            .unwrap()
            .get(&owner)
            .unwrap_or_else(|| panic!("the probe saw no socket() for {owner}"))
    }
}

/// Installed on a test thread: every netfd call it makes goes to the ledger.
struct Forward {
    ledger: Arc<Ledger>,
    thread: usize,
    seen: Arc<Seen>,
}

impl Probe for Forward {
    fn before_syscall(&self, call: &Syscall) {
        self.ledger.before_syscall(self.thread, call);
        if call.op == SysOp::Poll {
            self.seen.polls_started.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        self.ledger.after_syscall(self.thread, call, result);
        if let (true, Ok(n)) = (call.op.creates_descriptor(), result) {
            self.seen
                .created
                .lock()
                .unwrap()
                .insert(call.new_owner, n as RawFd);
        }
    }
    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        self.ledger.note(self.thread, owner, point.name(), None);
    }
}

fn forward(ledger: &Arc<Ledger>, seen: &Arc<Seen>, thread: usize) -> probe::ProbeGuard {
    probe::install(Arc::new(Forward {
        ledger: ledger.clone(),
        thread,
        seen: seen.clone(),
    }))
}

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn inode(fd: RawFd) -> u64 {
    netfd::sys::file_identity(fd).expect("open").1
}

/// Bind netfd UDP sockets until one gets number `n`. The kernel hands out
/// the lowest free number, so the ones below `n` are held until then; if a
/// socket lands above `n`, another thread of this process has `n`.
fn netfd_socket_on(n: RawFd, seen: &Seen) -> Option<(netfd::UdpSocket, Vec<netfd::UdpSocket>)> {
    let mut spare = Vec::new();
    for _ in 0..64 {
        let s = netfd::UdpSocket::bind(lo()).expect("bind");
        let fd = seen.fd_of(s.owner_id());
        if fd == n {
            return Some((s, spare));
        }
        spare.push(s);
        if fd > n {
            break;
        }
    }
    for s in spare {
        s.close().expect("close spare");
    }
    None
}

/// The same with plain `std` sockets, which netfd's probe never sees.
fn std_socket_on(n: RawFd) -> Option<std::net::UdpSocket> {
    let mut spare = Vec::new();
    for _ in 0..64 {
        let s = std::net::UdpSocket::bind(lo()).expect("bind");
        let fd = s.as_raw_fd();
        if fd == n {
            return Some(s);
        }
        spare.push(s);
        if fd > n {
            break;
        }
    }
    None
}

#[test]
fn real_fd_reuse_a_read_for_a_closed_socket_reaches_the_socket_that_got_its_number() {
    let ledger = Arc::new(Ledger::new());
    let seen = Arc::new(Seen::default());
    let _g = forward(&ledger, &seen, 0);
    for _attempt in 0..20 {
        let a = netfd::UdpSocket::bind(lo()).expect("bind");
        let (a_owner, n) = (a.owner_id(), seen.fd_of(a.owner_id()));
        let a_inode = inode(n);
        a.close().expect("close");
        let Some((b, spare)) = netfd_socket_on(n, &seen) else {
            continue;
        };
        let b_inode = inode(n);
        let before = ledger.violations().len();
        // What a racy protocol does: the number it loaded before Close.
        let mut buf = [0u8; 16];
        let r = netfd::sys::read(n, a_owner, &mut buf);
        assert_eq!(r.map_err(|e| e.raw_os_error()), Err(Some(libc::EAGAIN)));
        let found = ledger.violations();
        assert_eq!(found.len(), before + 1, "{found:?}");
        let v = &found[before];
        assert_eq!(v.kind, ViolationKind::FdReuse, "{v:?}");
        assert_eq!(
            (v.fd, v.owner, v.holder, v.op),
            (n, a_owner, Some(b.owner_id()), SysOp::Read)
        );
        let evidence = v.evidence.as_deref().expect("kernel evidence");
        assert!(
            evidence.contains(&a_inode.to_string()) && evidence.contains(&b_inode.to_string()),
            "evidence names both inodes ({a_inode}, {b_inode}): {evidence}"
        );
        b.close().expect("close b");
        for s in spare {
            s.close().expect("close spare");
        }
        assert_eq!(
            ledger
                .violations()
                .iter()
                .map(|v| v.kind)
                .collect::<Vec<_>>(),
            [ViolationKind::FdReuse],
            "nothing else"
        );
        assert!(ledger.unreleased().is_empty(), "{:?}", ledger.unreleased());
        return;
    }
    panic!("never got the closed number back");
}

#[test]
fn real_use_after_close_a_call_on_a_released_number_that_is_not_open() {
    let ledger = Arc::new(Ledger::new());
    let seen = Arc::new(Seen::default());
    let _g = forward(&ledger, &seen, 0);
    for _attempt in 0..20 {
        let a = netfd::UdpSocket::bind(lo()).expect("bind");
        let (a_owner, n) = (a.owner_id(), seen.fd_of(a.owner_id()));
        a.close().expect("close");
        let before = ledger.violations().len();
        // getsockname is harmless if another test took the number meanwhile.
        let r = netfd::sys::getsockname(n, a_owner);
        let v = ledger.violations()[before].clone();
        if v.evidence.is_some() {
            // Another test's socket got the number first: that is fd_reuse.
            assert_eq!(v.kind, ViolationKind::FdReuse);
            continue;
        }
        assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(libc::EBADF));
        assert_eq!(v.kind, ViolationKind::UseAfterClose, "{v:?}");
        assert_eq!(
            (v.fd, v.owner, v.holder, v.op),
            (n, a_owner, None, SysOp::GetSockName)
        );
        return;
    }
    panic!("the closed number was always taken by another test");
}

#[test]
fn real_double_close_closes_a_number_that_is_open_as_another_file_now() {
    let ledger = Arc::new(Ledger::new());
    let seen = Arc::new(Seen::default());
    let _g = forward(&ledger, &seen, 0);
    for _attempt in 0..20 {
        let a = netfd::UdpSocket::bind(lo()).expect("bind");
        let (a_owner, n) = (a.owner_id(), seen.fd_of(a.owner_id()));
        a.close().expect("close");
        // A socket the ledger never saw takes the number; the stale close
        // closes it (this test's own socket, so nobody else is hurt).
        let Some(other) = std_socket_on(n) else {
            continue;
        };
        let other_inode = inode(n);
        netfd::sys::close(n, a_owner).expect("the number was open");
        // `other`'s number is gone: give it up without a second close(2).
        let _ = other.into_raw_fd();
        let v = ledger.violations();
        assert_eq!(
            v.iter().map(|v| v.kind).collect::<Vec<_>>(),
            [ViolationKind::DoubleClose],
            "{v:?}"
        );
        assert_eq!((v[0].fd, v[0].owner, v[0].holder), (n, a_owner, None));
        assert!(v[0].message.contains("another file"), "{}", v[0].message);
        assert!(
            v[0].evidence
                .as_deref()
                .is_some_and(|e| e.contains(&other_inode.to_string())),
            "{:?}",
            v[0].evidence
        );
        return;
    }
    panic!("never got the closed number back");
}

#[test]
fn real_close_in_flight_close_while_a_poll_on_the_number_is_in_the_kernel() {
    let ledger = Arc::new(Ledger::new());
    let seen = Arc::new(Seen::default());
    let _g = forward(&ledger, &seen, 0);
    let a = netfd::UdpSocket::bind(lo()).expect("bind");
    let (a_owner, n) = (a.owner_id(), seen.fd_of(a.owner_id()));
    let wake = netfd::sys::eventfd().expect("eventfd");
    let poller = {
        let (ledger, seen) = (ledger.clone(), seen.clone());
        std::thread::spawn(move || {
            let _g = forward(&ledger, &seen, 1);
            // Blocks: nothing is sent to `a`; only the eventfd ends it.
            netfd::sys::poll_with_wake(
                n,
                a_owner,
                netfd::sys::Interest::Read,
                wake,
                Some(Duration::from_secs(20)),
            )
        })
    };
    let t0 = Instant::now();
    while seen.polls_started.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "poll never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    // netfd does not know about the raw poll: its close(2) runs at once.
    a.close().expect("close");
    netfd::sys::eventfd_signal(wake);
    let outcome = poller.join().expect("poller").expect("poll");
    assert!(outcome.woken);
    netfd::sys::close(wake, OwnerId::INTERNAL).expect("close eventfd");
    let v = ledger.violations();
    assert_eq!(
        v.iter().map(|v| v.kind).collect::<Vec<_>>(),
        [ViolationKind::CloseInFlight],
        "{v:?}"
    );
    assert_eq!(
        (v[0].fd, v[0].owner, v[0].op, v[0].thread),
        (n, a_owner, SysOp::Close, 0)
    );
    assert!(v[0].message.contains("poll"), "{}", v[0].message);
}

#[test]
fn real_leak_a_socket_still_open_is_unreleased_until_closed() {
    let ledger = Arc::new(Ledger::new());
    let seen = Arc::new(Seen::default());
    let _g = forward(&ledger, &seen, 0);
    let a = netfd::UdpSocket::bind(lo()).expect("bind");
    let b = netfd::UdpSocket::bind(lo()).expect("bind");
    b.close().expect("close");
    let n = seen.fd_of(a.owner_id());
    assert_eq!(ledger.unreleased(), [(a.owner_id(), n)]);
    a.close().expect("close");
    assert!(ledger.unreleased().is_empty());
    assert!(ledger.violations().is_empty(), "{:?}", ledger.violations());
}

// ---------------------------------------------------------------------------
// Exec level: broken targets
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// After Close, a read blocks until the test lets it go.
    ReadHangsAfterClose,
    /// After Close, a read returns the kernel's EBADF.
    RawEbadfAfterClose,
    /// Connection `i` reads from connection `i ^ 1`.
    ReadsWrongConnection,
    /// Once a deadline is set, a read times out at once.
    TimesOutEarly,
    /// Close does nothing.
    CloseReleasesNothing,
}

/// netfd's fdmutex with one deliberate fault.
struct Broken {
    inner: NetfdTarget,
    fault: Fault,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Every connection opened, in order.
    conns: Mutex<Vec<Arc<dyn Conn>>>,
    /// Lets hung reads go.
    released: Mutex<bool>,
    cv: Condvar,
}

impl Shared {
    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.cv.notify_all();
    }
    /// Close what the faulty target never closed.
    fn close_all(&self) {
        for c in self.conns.lock().unwrap().iter() {
            let _ = c.close();
        }
    }
}

struct BrokenConn {
    inner: Arc<dyn Conn>,
    index: usize,
    fault: Fault,
    shared: Arc<Shared>,
    closed: AtomicBool,
    deadline_set: AtomicBool,
}

impl Broken {
    fn new(fault: Fault) -> Arc<Broken> {
        Arc::new(Broken {
            inner: NetfdTarget::new(Variant::FdMutex),
            fault,
            shared: Arc::new(Shared::default()),
        })
    }
    fn wrap(&self, c: Box<dyn Conn>) -> Box<dyn Conn> {
        let inner: Arc<dyn Conn> = Arc::from(c);
        let mut all = self.shared.conns.lock().unwrap();
        all.push(inner.clone());
        Box::new(BrokenConn {
            inner,
            index: all.len() - 1,
            fault: self.fault,
            shared: self.shared.clone(),
            closed: AtomicBool::new(false),
            deadline_set: AtomicBool::new(false),
        })
    }
}

impl Conn for BrokenConn {
    fn owner(&self) -> OwnerId {
        self.inner.owner()
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let closed = self.closed.load(Ordering::SeqCst);
        match self.fault {
            Fault::ReadHangsAfterClose if closed => {
                let mut r = self.shared.released.lock().unwrap();
                while !*r {
                    r = self.shared.cv.wait(r).unwrap();
                }
                Err(netfd::error::closed())
            }
            Fault::RawEbadfAfterClose if closed => Err(io::Error::from_raw_os_error(libc::EBADF)),
            Fault::ReadsWrongConnection => {
                let other = self.shared.conns.lock().unwrap()[self.index ^ 1].clone();
                other.read(buf)
            }
            Fault::TimesOutEarly if self.deadline_set.load(Ordering::SeqCst) => {
                Err(netfd::error::timed_out())
            }
            _ => self.inner.read(buf),
        }
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        self.deadline_set.store(at.is_some(), Ordering::SeqCst);
        self.inner.set_deadline(dir, at)
    }
    fn close(&self) -> io::Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        if self.fault == Fault::CloseReleasesNothing {
            return Ok(());
        }
        self.inner.close()
    }
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.inner.local_addr()
    }
}

impl Target for Broken {
    fn name(&self) -> String {
        format!("custom:broken-{:?}", self.fault)
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        self.inner.listen(addr)
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        Ok(self.wrap(self.inner.dial(addr)?))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Ok(self.wrap(self.inner.bind_datagram(local, peer)?))
    }
}

fn scenario(threads: &str, connections: usize) -> Scenario {
    let text = format!(
        r#"{{ "name": "broken", "description": "A broken target.", "transport": "tcp4",
             "connections": {connections}, "threads": [{threads}] }}"#
    );
    scenario::parse_str(&text, "broken.json").unwrap_or_else(|e| panic!("{e}"))
}

fn run(target: Arc<dyn Target>, s: &Scenario, mode: Mode) -> CaseOutcome {
    let mut cfg = CaseConfig::new(mode, 7);
    cfg.hang_bound = Duration::from_millis(300);
    exec::run_case(target, s, &cfg).expect("case set up")
}

fn found_kinds(o: &CaseOutcome) -> Vec<ViolationKind> {
    let mut k: Vec<ViolationKind> = o.found.iter().map(|f| f.kind).collect();
    k.sort();
    k.dedup();
    k
}

/// The scenario against fdmutex: nothing found.
fn assert_fdmutex_clean(s: &Scenario) {
    for mode in [Mode::Controlled, Mode::Free] {
        let o = run(Arc::new(NetfdTarget::new(Variant::FdMutex)), s, mode);
        assert!(o.found.is_empty(), "fdmutex, {mode}: {:#?}", o.found);
        assert!(!o.hung);
    }
}

#[test]
fn hang_an_op_that_does_not_return_after_close() {
    let s = scenario(
        r#"{ "name": "reader", "ops": [ { "op": "close", "conn": 0 }, { "op": "read", "conn": 0, "bytes": 64 } ] }"#,
        1,
    );
    let target = Broken::new(Fault::ReadHangsAfterClose);
    let o = run(target.clone(), &s, Mode::Controlled);
    target.shared.release();
    assert!(o.hung, "{:#?}", o.found);
    let hang: Vec<_> = o
        .found
        .iter()
        .filter(|f| f.kind == ViolationKind::Hang)
        .collect();
    assert_eq!(hang.len(), 1, "{:#?}", o.found);
    assert_eq!(hang[0].thread, "reader");
    assert_eq!(hang[0].op, "read conn=0 bytes=64");
    let conn_owner = target.shared.conns.lock().unwrap()[0].owner();
    assert_eq!(hang[0].owner, conn_owner.0);
    assert_fdmutex_clean(&s);
}

#[test]
fn bad_error_a_raw_ebadf_after_close() {
    let s = scenario(
        r#"{ "name": "user", "ops": [ { "op": "close", "conn": 0 }, { "op": "read", "conn": 0, "bytes": 64 } ] }"#,
        1,
    );
    let target = Broken::new(Fault::RawEbadfAfterClose);
    let o = run(target, &s, Mode::Controlled);
    assert_eq!(found_kinds(&o), [ViolationKind::BadError], "{:#?}", o.found);
    let f = &o.found[0];
    assert_eq!(
        (f.thread.as_str(), f.op.as_str()),
        ("user", "read conn=0 bytes=64")
    );
    assert!(
        f.message.contains("after Close") && f.message.contains("os error 9"),
        "{}",
        f.message
    );
    assert_fdmutex_clean(&s);
}

#[test]
fn crosstalk_a_read_that_returns_another_connections_bytes() {
    let s = scenario(
        r#"{ "name": "user", "ops": [
             { "op": "peer_write", "conn": 0, "bytes": 16 },
             { "op": "peer_write", "conn": 1, "bytes": 16 },
             { "op": "read", "conn": 0, "bytes": 16 },
             { "op": "close", "conn": 0 },
             { "op": "close", "conn": 1 } ] }"#,
        2,
    );
    let target = Broken::new(Fault::ReadsWrongConnection);
    let o = run(target, &s, Mode::Controlled);
    assert_eq!(
        found_kinds(&o),
        [ViolationKind::Crosstalk],
        "{:#?}",
        o.found
    );
    assert!(
        o.found[0].message.contains("data sent to connection 1"),
        "{}",
        o.found[0].message
    );
    assert_fdmutex_clean(&s);
}

#[test]
fn early_deadline_a_timeout_before_the_deadline() {
    let s = scenario(
        r#"{ "name": "user", "ops": [
             { "op": "set_deadline", "conn": 0, "dir": "read", "in_ms": 300 },
             { "op": "read", "conn": 0, "bytes": 16 },
             { "op": "close", "conn": 0 } ] }"#,
        1,
    );
    let target = Broken::new(Fault::TimesOutEarly);
    let o = run(target, &s, Mode::Controlled);
    assert_eq!(
        found_kinds(&o),
        [ViolationKind::EarlyDeadline],
        "{:#?}",
        o.found
    );
    assert!(
        o.found[0].message.contains("before its deadline"),
        "{}",
        o.found[0].message
    );
    assert_fdmutex_clean(&s);
}

#[test]
fn leak_a_close_that_releases_nothing() {
    let s = scenario(
        r#"{ "name": "user", "ops": [ { "op": "close", "conn": 0 } ] }"#,
        1,
    );
    let target = Broken::new(Fault::CloseReleasesNothing);
    let o = run(target.clone(), &s, Mode::Controlled);
    let owner = target.shared.conns.lock().unwrap()[0].owner();
    target.shared.close_all();
    assert_eq!(found_kinds(&o), [ViolationKind::Leak], "{:#?}", o.found);
    assert_eq!(o.found.len(), 1);
    assert_eq!(o.found[0].owner, owner.0);
    assert!(
        o.found[0]
            .evidence
            .as_deref()
            .is_some_and(|e| e.contains("still inode")),
        "{:?}",
        o.found[0].evidence
    );
    assert_fdmutex_clean(&s);
}

#[test]
fn no_leak_for_sockets_a_woken_thread_opens_after_the_supervisor_closed_everything() {
    // The accept parks until the supervisor closes the listener; the thread
    // then closes it again and listens anew on its address.
    let text = r#"{ "name": "rebind-after-wake", "description": "Rebind after a woken accept.",
        "transport": "tcp4", "listeners": 1, "slots": 1,
        "threads": [ { "name": "t0", "ops": [
            { "op": "accept", "listener": 0, "conn": 0 },
            { "op": "close_listener", "listener": 0 },
            { "op": "rebind", "listener": 0 } ] } ] }"#;
    let s = scenario::parse_str(text, "rebind.json").unwrap_or_else(|e| panic!("{e}"));
    assert_fdmutex_clean(&s);
}

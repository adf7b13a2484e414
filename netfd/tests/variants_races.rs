//! Each historical lifetime protocol's race, forced deterministically with
//! the probe's sync points against real loopback sockets, and shown with the
//! kernel's own evidence; and `fdmutex` under the very same schedules,
//! showing none of it.
//!
//! How a schedule is forced: the thread under test installs a [`Tap`] that
//! blocks it at one named place (a sync point, or right after one syscall)
//! until the test releases it; meanwhile the test runs Close, and — where the
//! number is free — makes a new socket take the same descriptor number. The
//! tap also records every syscall the thread makes, with the kernel identity
//! (device, inode) of the file behind the number right before the call:
//! that is what proves whose socket a read or write really reached. Payloads
//! are tagged so the bytes themselves say whose they were.
//!
//! Tests run one at a time ([`serial`]): they reason about which descriptor
//! number the kernel hands out next, and other tests' sockets would take them.

use netfd::probe::{self, OwnerId, Probe, SyncPoint, SysOp, SysResult, Syscall};
use netfd::sys::file_identity;
use netfd::{
    is_closed, is_timeout, Options, TcpListener, TcpStream, UdpSocket, UnixListener, Variant,
};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Bound on anything that must happen (a held thread arriving, a thread
/// finishing): only a hang ever waits this long.
const HANG: Duration = Duration::from_secs(10);
/// How long a Close gets to return while another thread is held, and a
/// parked operation to be woken by Close. Where it happens it takes
/// microseconds; where it must not happen (`fdmutex` returning before the
/// held thread lets go of the number, closeack waking anyone) the test
/// waits this long to make sure.
const GRACE: Duration = Duration::from_secs(1);

/// Bytes the test sends to the new socket B through B's peer.
const TO_B: &[u8] = b"<bytes sent to new socket B>";
/// Bytes a thread writes through the old socket A.
const FROM_A: &[u8] = b"<bytes written through old socket A>";
/// Marks the end of what a test wants to collect from a stream.
const END: &[u8] = b"<end>";

type FileId = (u64, u64);

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// The tap: a probe that records, and holds its thread at one place.

#[derive(Clone, Debug)]
enum Event {
    Point(SyncPoint, OwnerId),
    Sys {
        call: Syscall,
        result: SysResult,
        /// The file behind `call.fd` right before the kernel saw the call.
        file: Option<FileId>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// At the first time the thread reaches this sync point for this owner.
    Point(SyncPoint, OwnerId),
    /// Right after the thread's first syscall of this kind for this owner.
    AfterSyscall(SysOp, OwnerId),
}

#[derive(Default)]
struct TapState {
    events: Vec<Event>,
    pending_file: Option<FileId>,
    hold_used: bool,
    held: bool,
    released: bool,
}

struct Tap {
    hold: Option<Hold>,
    st: Mutex<TapState>,
    cv: Condvar,
}

impl Tap {
    fn new(hold: Option<Hold>) -> Arc<Tap> {
        Arc::new(Tap {
            hold,
            st: Mutex::new(TapState::default()),
            cv: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, TapState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn maybe_hold(&self, here: Hold) {
        let mut st = self.lock();
        if self.hold != Some(here) || st.hold_used {
            return;
        }
        st.hold_used = true;
        st.held = true;
        self.cv.notify_all();
        while !st.released {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.held = false;
    }

    /// Wait until `pred` holds, or panic naming `what` after [`HANG`].
    fn wait_for(&self, what: &str, pred: impl Fn(&TapState) -> bool) {
        let deadline = Instant::now() + HANG;
        let mut st = self.lock();
        while !pred(&st) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("waited {HANG:?} for {what}; events: {:#?}", st.events);
            }
            st = self
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn wait_held(&self) {
        self.wait_for("the thread to reach its hold", |st| st.held);
    }

    fn is_held(&self) -> bool {
        self.lock().held
    }

    fn release(&self) {
        self.lock().released = true;
        self.cv.notify_all();
    }

    fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    fn count(&self, point: SyncPoint, owner: OwnerId) -> usize {
        count_point(&self.lock(), point, owner)
    }

    /// The syscalls of kind `op` made for `owner`: (call, result, file seen).
    fn syscalls(&self, op: SysOp, owner: OwnerId) -> Vec<(Syscall, SysResult, Option<FileId>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Sys { call, result, file } if call.op == op && call.owner == owner => {
                    Some((call, result, file))
                }
                _ => None,
            })
            .collect()
    }

    /// The descriptor number the kernel gave `owner` on this thread.
    fn created_number(&self, owner: OwnerId) -> RawFd {
        self.events()
            .into_iter()
            .find_map(|e| match e {
                Event::Sys {
                    call,
                    result: Ok(fd),
                    ..
                } if call.op.creates_descriptor() && call.new_owner == owner => Some(fd as RawFd),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no descriptor was created for {owner}"))
    }
}

/// Runs its closure when dropped: if a test fails half-way, the threads it
/// holds or left parked are let go, so the failure is reported instead of
/// hanging the thread scope that waits for them.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn count_point(st: &TapState, point: SyncPoint, owner: OwnerId) -> usize {
    st.events
        .iter()
        .filter(|e| matches!(e, Event::Point(p, o) if (*p, *o) == (point, owner)))
        .count()
}

impl Probe for Tap {
    fn before_syscall(&self, call: &Syscall) {
        self.lock().pending_file = file_identity(call.fd);
    }

    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        {
            let mut st = self.lock();
            let file = st.pending_file.take();
            st.events.push(Event::Sys {
                call: *call,
                result,
                file,
            });
            self.cv.notify_all();
        }
        self.maybe_hold(Hold::AfterSyscall(call.op, call.owner));
    }

    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        {
            let mut st = self.lock();
            st.events.push(Event::Point(point, owner));
            self.cv.notify_all();
        }
        self.maybe_hold(Hold::Point(point, owner));
    }
}

// ---------------------------------------------------------------------------
// Sockets and descriptor numbers.

fn lo() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A blocking std loopback pair from `l`: (connecting end, accepted end).
fn std_pair(l: &std::net::TcpListener) -> (std::net::TcpStream, std::net::TcpStream) {
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

/// A new connection, one end of which has descriptor number `n` (which must
/// be free): (that end, its peer, the pairs made on the way, to drop later).
/// The kernel hands out the lowest free number, so filling the free numbers
/// below `n` ends with `n`.
fn claim_number(
    n: RawFd,
    l: &std::net::TcpListener,
) -> (
    std::net::TcpStream,
    std::net::TcpStream,
    Vec<std::net::TcpStream>,
) {
    let mut filler = Vec::new();
    for _ in 0..1024 {
        let (c, s) = std_pair(l);
        if c.as_raw_fd() == n {
            return (c, s, filler);
        }
        if s.as_raw_fd() == n {
            return (s, c, filler);
        }
        filler.extend([c, s]);
    }
    panic!("descriptor number {n} never came back from the kernel");
}

fn identity_of(s: &impl AsRawFd) -> FileId {
    file_identity(s.as_raw_fd()).expect("an open socket has an identity")
}

/// Block until `s` has `want` bytes queued (so a read of it cannot miss them).
fn await_queued(s: &std::net::TcpStream, want: usize) {
    let deadline = Instant::now() + HANG;
    let mut buf = vec![0u8; want];
    s.set_read_timeout(Some(HANG)).unwrap();
    while s.peek(&mut buf).unwrap() < want {
        assert!(Instant::now() < deadline, "bytes never arrived");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Everything `s` receives up to (not including) the [`END`] marker.
fn read_until_end(mut s: &std::net::TcpStream) -> String {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.ends_with(END) {
        let n = s.read(&mut buf).expect("the END marker never came");
        assert!(n > 0, "EOF before the END marker; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got.truncate(got.len() - END.len());
    text(&got)
}

/// Everything `s` receives until its peer's EOF.
fn read_to_eof(mut s: &std::net::TcpStream) -> String {
    s.set_read_timeout(Some(HANG)).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("no EOF");
    text(&got)
}

fn raw_errno<T: std::fmt::Debug>(r: &io::Result<T>) -> Option<i32> {
    r.as_ref().err().and_then(io::Error::raw_os_error)
}

fn closed_err<T>(r: &io::Result<T>) -> bool {
    r.as_ref().is_err_and(is_closed)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ---------------------------------------------------------------------------
// Schedule 1: an operation on A held at `hold`, Close of A, a new socket B
// that takes A's number if Close freed it, then the operation goes on.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

#[derive(Debug)]
struct Reuse {
    /// A's descriptor number, and the file behind it while A owned it.
    n: RawFd,
    id_a: FileId,
    /// B's file; `b_has_n` when the kernel gave B the number `n`.
    id_b: FileId,
    b_has_n: bool,
    /// Close returned while the operation was held.
    close_while_held: bool,
    close: io::Result<()>,
    /// The operation's result: the bytes it read, or the bytes it wrote.
    op: io::Result<String>,
    /// The operation's read/write syscalls on behalf of A.
    op_syscalls: Vec<(Syscall, SysResult, Option<FileId>)>,
    /// What A's peer received, up to EOF.
    a_peer_got: String,
    /// What B's peer received from B's connection.
    b_peer_got: String,
    /// What B itself still found to read.
    b_kept: String,
}

fn held_op_close_reuse(variant: Variant, op: Op, at: SyncPoint) -> Reuse {
    let _serial = serial();
    let main_tap = Tap::new(None);
    let _probe = probe::install(main_tap.clone());
    let la = std::net::TcpListener::bind(lo()).unwrap();
    let lb = std::net::TcpListener::bind(lo()).unwrap();
    let a =
        TcpStream::connect_with(la.local_addr().unwrap(), Options::for_variant(variant)).unwrap();
    let (a_peer, _) = la.accept().unwrap();
    let owner = a.owner_id();
    let n = main_tap.created_number(owner);
    let id_a = file_identity(n).unwrap();
    let tap = Tap::new(Some(Hold::Point(at, owner)));

    thread::scope(|sc| {
        let _let_go = OnDrop(|| {
            tap.release();
            let _ = a.set_deadline(Some(Instant::now()));
        });
        let op_thread = sc.spawn(|| {
            let _probe = probe::install(tap.clone());
            match op {
                Op::Read => {
                    let mut buf = [0u8; 256];
                    (&a).read(&mut buf).map(|k| text(&buf[..k]))
                }
                Op::Write => (&a).write(FROM_A).map(|k| text(&FROM_A[..k])),
            }
        });
        tap.wait_held();

        let (tx, rx) = mpsc::channel();
        let a = &a;
        let closer = sc.spawn(move || tx.send(a.close()).unwrap());
        let early = rx.recv_timeout(GRACE).ok();
        let close_while_held = early.is_some();

        // If Close released the number, a new socket takes it.
        let (b, b_peer, _filler) = if file_identity(n).is_none() {
            claim_number(n, &lb)
        } else {
            let (b, b_peer) = std_pair(&lb);
            (b, b_peer, Vec::new())
        };
        let id_b = identity_of(&b);
        let b_has_n = b.as_raw_fd() == n;
        if op == Op::Read {
            (&b_peer).write_all(TO_B).unwrap();
            await_queued(&b, TO_B.len());
        }

        tap.release();
        let op = op_thread.join().unwrap();
        let close = early.unwrap_or_else(|| rx.recv_timeout(HANG).expect("Close never returned"));
        closer.join().unwrap();

        // What is left on each connection, delimited so nothing is missed.
        (&b).write_all(END).unwrap();
        let b_peer_got = read_until_end(&b_peer);
        (&b_peer).write_all(END).unwrap();
        let b_kept = read_until_end(&b);
        let a_peer_got = read_to_eof(&a_peer);

        let mut op_syscalls = tap.syscalls(SysOp::Read, owner);
        op_syscalls.extend(tap.syscalls(SysOp::Write, owner));
        Reuse {
            n,
            id_a,
            id_b,
            b_has_n,
            close_while_held,
            close,
            op,
            op_syscalls,
            a_peer_got,
            b_peer_got,
            b_kept,
        }
    })
}

/// The race's full evidence: Close returned while the operation was in
/// flight, B got A's number, and A's operation moved B's bytes.
fn assert_lands_on_b(r: &Reuse, op: Op) {
    assert!(r.close_while_held, "Close returned at once: {r:#?}");
    r.close.as_ref().unwrap();
    assert!(
        r.b_has_n,
        "the new socket B took A's number {}: {r:#?}",
        r.n
    );
    assert_ne!(r.id_a, r.id_b, "B is another file");
    // The kernel's view: A's syscall went to number n while n was B's file.
    let (call, result, file) = r.op_syscalls.last().expect("A's operation made a syscall");
    assert_eq!(call.fd, r.n, "{r:#?}");
    assert_eq!(*file, Some(r.id_b), "A's syscall reached B's file: {r:#?}");
    assert!(result.is_ok(), "{r:#?}");
    match op {
        Op::Read => {
            // A's reader got the bytes sent to B; B lost them.
            assert_eq!(r.op.as_deref().unwrap(), text(TO_B), "{r:#?}");
            assert_eq!(r.b_kept, "", "B's bytes were taken by A's reader");
        }
        Op::Write => {
            // A's bytes went down B's connection, not A's.
            assert_eq!(r.op.as_deref().unwrap(), text(FROM_A), "{r:#?}");
            assert_eq!(r.b_peer_got, text(FROM_A), "{r:#?}");
            assert_eq!(r.a_peer_got, "", "A's peer got nothing");
        }
    }
}

/// `fdmutex` under the same schedule: Close waits for the operation, the
/// number stays A's, the operation touches only A, B's bytes stay B's.
fn assert_fdmutex_clean(r: &Reuse, op: Op) {
    assert!(
        !r.close_while_held,
        "fdmutex Close must wait for the operation's reference: {r:#?}"
    );
    r.close.as_ref().unwrap();
    assert!(!r.b_has_n, "A's number was never free while A used it");
    for (call, _, file) in &r.op_syscalls {
        assert_eq!(
            (call.fd, *file),
            (r.n, Some(r.id_a)),
            "only A's file: {r:#?}"
        );
    }
    assert_eq!(r.b_peer_got, "", "nothing of A's reached B's peer");
    match op {
        Op::Read => {
            assert!(closed_err(&r.op), "{r:#?}");
            assert_eq!(r.b_kept, text(TO_B), "B kept its bytes");
        }
        // The write was in flight before Close: it completes, on A.
        Op::Write => {
            assert_eq!(r.op.as_deref().unwrap(), text(FROM_A), "{r:#?}");
            assert_eq!(r.a_peer_got, text(FROM_A), "A's bytes reached A's peer");
        }
    }
}

#[test]
fn go2009_closeack_read_in_flight_reads_the_new_sockets_bytes() {
    let r = held_op_close_reuse(Variant::Go2009CloseAck, Op::Read, SyncPoint::BeforeSyscall);
    assert_lands_on_b(&r, Op::Read);
}

#[test]
fn go2009_closeack_write_in_flight_lands_in_the_new_sockets_connection() {
    let r = held_op_close_reuse(Variant::Go2009CloseAck, Op::Write, SyncPoint::BeforeSyscall);
    assert_lands_on_b(&r, Op::Write);
}

#[test]
fn naive_close_read_in_flight_reads_the_new_sockets_bytes() {
    let r = held_op_close_reuse(Variant::NaiveClose, Op::Read, SyncPoint::BeforeSyscall);
    assert_lands_on_b(&r, Op::Read);
}

#[test]
fn naive_close_write_in_flight_lands_in_the_new_sockets_connection() {
    let r = held_op_close_reuse(Variant::NaiveClose, Op::Write, SyncPoint::BeforeSyscall);
    assert_lands_on_b(&r, Op::Write);
}

#[test]
fn fdmutex_read_and_write_in_flight_keep_their_own_socket() {
    for op in [Op::Read, Op::Write] {
        let r = held_op_close_reuse(Variant::FdMutex, op, SyncPoint::BeforeSyscall);
        assert_fdmutex_clean(&r, op);
    }
}

/// The refcount port fixed the in-flight case — the operation's reference
/// keeps the number — but Close returns anyway, with the number still open,
/// and the read returns the shut-down socket's end of file instead of the
/// closed error.
#[test]
fn go2009_refcount_read_in_flight_keeps_the_number_but_close_returns_first() {
    let r = held_op_close_reuse(Variant::Go2009Refcount, Op::Read, SyncPoint::BeforeSyscall);
    assert!(r.close_while_held && r.close.is_ok(), "{r:#?}");
    assert!(!r.b_has_n, "the reference kept the number: {r:#?}");
    let (call, result, file) = r.op_syscalls.last().unwrap();
    assert_eq!((call.fd, *file, *result), (r.n, Some(r.id_a), Ok(0)));
    assert_eq!(r.op.as_deref().unwrap(), "", "EOF, not the closed error");
    assert_eq!(r.b_kept, text(TO_B));
}

/// The refcount port's check-then-incref window: the operation passed the
/// unlocked `sysfd < 0` check, Close ran to the end (final close included),
/// and the operation's incref, which never refuses, let it go on with -1.
#[test]
fn go2009_refcount_op_past_the_unlocked_check_passes_minus_one_to_the_kernel() {
    for op in [Op::Read, Op::Write] {
        let r = held_op_close_reuse(Variant::Go2009Refcount, op, SyncPoint::AfterClosedCheck);
        assert!(r.close_while_held && r.close.is_ok(), "{r:#?}");
        assert!(r.b_has_n, "the number was free again: {r:#?}");
        assert_eq!(raw_errno(&r.op), Some(libc::EBADF), "raw EBADF: {r:#?}");
        assert!(!closed_err(&r.op));
        let [(call, result, file)] = r.op_syscalls[..] else {
            panic!("one syscall: {r:#?}")
        };
        assert_eq!((call.fd, result, file), (-1, Err(libc::EBADF), None));
        // -1 is no one's number: B was not touched.
        assert_eq!(r.b_peer_got, "");
        if op == Op::Read {
            assert_eq!(r.b_kept, text(TO_B));
        }
    }
}

/// The same window in the other protocols: the closed error, no syscall.
#[test]
fn fdmutex_closeack_naive_op_past_the_closed_check_gets_the_closed_error() {
    for variant in [
        Variant::FdMutex,
        Variant::Go2009CloseAck,
        Variant::NaiveClose,
    ] {
        let r = held_op_close_reuse(variant, Op::Read, SyncPoint::AfterClosedCheck);
        assert!(r.close_while_held && r.close.is_ok(), "{variant}: {r:#?}");
        assert!(closed_err(&r.op), "{variant}: {r:#?}");
        assert!(r.op_syscalls.is_empty(), "{variant}: {r:#?}");
        assert_eq!(r.b_kept, text(TO_B), "{variant}");
    }
}

// ---------------------------------------------------------------------------
// Schedule 2: Close held right after its close(2); a new socket B takes the
// number; then a read of A *starts*.

#[derive(Debug)]
struct LateRead {
    n: RawFd,
    id_b: FileId,
    b_has_n: bool,
    read: io::Result<String>,
    read_syscalls: Vec<(Syscall, SysResult, Option<FileId>)>,
    b_kept: String,
}

fn late_read(variant: Variant, hold: fn(OwnerId) -> Hold) -> LateRead {
    let _serial = serial();
    let main_tap = Tap::new(None);
    let _probe = probe::install(main_tap.clone());
    let la = std::net::TcpListener::bind(lo()).unwrap();
    let lb = std::net::TcpListener::bind(lo()).unwrap();
    let a =
        TcpStream::connect_with(la.local_addr().unwrap(), Options::for_variant(variant)).unwrap();
    let (_a_peer, _) = la.accept().unwrap();
    let owner = a.owner_id();
    let n = main_tap.created_number(owner);
    let closer_tap = Tap::new(Some(hold(owner)));

    thread::scope(|sc| {
        let _let_go = OnDrop(|| closer_tap.release());
        let closer = sc.spawn(|| {
            let _probe = probe::install(closer_tap.clone());
            a.close()
        });
        closer_tap.wait_held();
        assert_eq!(file_identity(n), None, "close(2) has released {n}");
        let (b, b_peer, _filler) = claim_number(n, &lb);
        (&b_peer).write_all(TO_B).unwrap();
        await_queued(&b, TO_B.len());

        let mark = main_tap.syscalls(SysOp::Read, owner).len();
        let mut buf = [0u8; 256];
        let read = (&a).read(&mut buf).map(|k| text(&buf[..k]));
        let read_syscalls = main_tap.syscalls(SysOp::Read, owner)[mark..].to_vec();

        closer_tap.release();
        closer.join().unwrap().unwrap();
        (&b_peer).write_all(END).unwrap();
        LateRead {
            n,
            id_b: identity_of(&b),
            b_has_n: b.as_raw_fd() == n,
            read,
            read_syscalls,
            b_kept: read_until_end(&b),
        }
    })
}

/// naive-close clears the field only after close(2): a read that starts in
/// between loads the released number and reads B's bytes.
#[test]
fn naive_close_read_started_after_close_syscall_reads_the_new_sockets_bytes() {
    let r = late_read(Variant::NaiveClose, |o| {
        Hold::Point(SyncPoint::AfterCloseSyscall, o)
    });
    assert!(r.b_has_n, "{r:#?}");
    assert_eq!(r.read.as_deref().unwrap(), text(TO_B), "{r:#?}");
    let [(call, result, file)] = r.read_syscalls[..] else {
        panic!("one read: {r:#?}")
    };
    assert_eq!((call.fd, file), (r.n, Some(r.id_b)));
    assert_eq!(result, Ok(TO_B.len() as i64));
    assert_eq!(r.b_kept, "", "B lost its bytes");
}

/// The same place — right after Close's close(2) — in the protocols that
/// never leave a released number where an operation can load it.
#[test]
fn fdmutex_and_closeack_read_started_after_close_syscall_gets_the_closed_error() {
    for variant in [Variant::FdMutex, Variant::Go2009CloseAck] {
        let r = late_read(variant, |o| Hold::AfterSyscall(SysOp::Close, o));
        assert!(r.b_has_n, "{variant}: {r:#?}");
        assert!(closed_err(&r.read), "{variant}: {r:#?}");
        assert!(r.read_syscalls.is_empty(), "{variant}: {r:#?}");
        assert_eq!(r.b_kept, text(TO_B), "{variant}");
    }
}

// ---------------------------------------------------------------------------
// Schedule 3: an operation parked waiting for readiness; Close; the parked
// operation held right after it wakes, if it wakes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    TcpRead,
    TcpWrite,
    TcpAccept,
    UdpRecv,
    UnixAccept,
}

const TARGETS: [Target; 5] = [
    Target::TcpRead,
    Target::TcpWrite,
    Target::TcpAccept,
    Target::UdpRecv,
    Target::UnixAccept,
];

enum Sock {
    Stream(TcpStream),
    Listener(TcpListener),
    Udp(UdpSocket),
    Unix(UnixListener),
}

impl Sock {
    fn owner(&self) -> OwnerId {
        match self {
            Sock::Stream(s) => s.owner_id(),
            Sock::Listener(s) => s.owner_id(),
            Sock::Udp(s) => s.owner_id(),
            Sock::Unix(s) => s.owner_id(),
        }
    }

    fn close(&self) -> io::Result<()> {
        match self {
            Sock::Stream(s) => s.close(),
            Sock::Listener(s) => s.close(),
            Sock::Udp(s) => s.close(),
            Sock::Unix(s) => s.close(),
        }
    }

    /// The target's operation; `Ok(n)`: bytes moved (accept: 0).
    fn op(&self, target: Target) -> io::Result<usize> {
        let mut buf = [0u8; 256];
        match (self, target) {
            (Sock::Stream(s), Target::TcpRead) => (&*s).read(&mut buf),
            // Far more than both socket buffers hold: it parks once they fill.
            (Sock::Stream(s), Target::TcpWrite) => (&*s).write(&vec![1u8; 64 << 20]),
            (Sock::Listener(l), _) => l.accept().map(|_| 0),
            (Sock::Udp(u), _) => u.recv_from(&mut buf).map(|(n, _)| n),
            (Sock::Unix(l), _) => l.accept().map(|_| 0),
            _ => unreachable!(),
        }
    }

    /// Make the parked operation give up: its deadline is now.
    fn expire(&self, target: Target) -> io::Result<()> {
        let now = Some(Instant::now());
        match self {
            Sock::Stream(s) if target == Target::TcpWrite => s.set_write_deadline(now),
            Sock::Stream(s) => s.set_read_deadline(now),
            Sock::Listener(s) => s.set_read_deadline(now),
            Sock::Udp(s) => s.set_read_deadline(now),
            Sock::Unix(s) => s.set_read_deadline(now),
        }
    }
}

/// Things a target needs alive (peers, the temp dir) for the whole test.
type Keep = Vec<Box<dyn std::any::Any>>;

fn make_target(target: Target, opts: Options) -> (Sock, Keep) {
    match target {
        Target::TcpRead | Target::TcpWrite => {
            let l = std::net::TcpListener::bind(lo()).unwrap();
            let s = TcpStream::connect_with(l.local_addr().unwrap(), opts).unwrap();
            let (peer, _) = l.accept().unwrap();
            s.set_write_buffer(16 << 10).unwrap();
            (Sock::Stream(s), vec![Box::new(l), Box::new(peer)])
        }
        Target::TcpAccept => (
            Sock::Listener(TcpListener::bind_with(lo(), opts).unwrap()),
            Vec::new(),
        ),
        Target::UdpRecv => (
            Sock::Udp(UdpSocket::bind_with(lo(), opts).unwrap()),
            Vec::new(),
        ),
        Target::UnixAccept => {
            let dir = tempfile::tempdir().unwrap();
            let l = UnixListener::bind_with(dir.path().join("l"), opts).unwrap();
            (Sock::Unix(l), vec![Box::new(dir)])
        }
    }
}

#[derive(Debug)]
struct Parked {
    target: Target,
    /// Close returned while the operation was still parked or held right
    /// after waking.
    close_while_held: bool,
    close: io::Result<()>,
    /// Close (nothing else) woke the parked operation.
    woken_by_close: bool,
    /// The number was still open, with A's file behind it, after Close had
    /// returned.
    open_after_close_returned: bool,
    /// A second Close, made while the operation was held after waking.
    second_close: io::Result<()>,
    /// After waking, the operation went back to wait.
    parked_again: bool,
    /// The operation's result (after the test expired its deadline, if it
    /// was still waiting).
    op: io::Result<usize>,
    /// The thread of the parked operation made the final close(2).
    final_close_by_op_thread: bool,
}

fn parked_op_close(variant: Variant, target: Target) -> Parked {
    let _serial = serial();
    let main_tap = Tap::new(None);
    let _probe = probe::install(main_tap.clone());
    let (sock, _keep) = make_target(target, Options::for_variant(variant));
    let owner = sock.owner();
    let n = main_tap.created_number(owner);
    let id = file_identity(n).unwrap();
    let tap = Tap::new(Some(Hold::Point(SyncPoint::AfterWake, owner)));

    thread::scope(|sc| {
        let _let_go = OnDrop(|| {
            tap.release();
            let _ = sock.expire(target);
        });
        let op_thread = sc.spawn(|| {
            let _probe = probe::install(tap.clone());
            sock.op(target)
        });
        tap.wait_for("the operation to park", |st| {
            count_point(st, SyncPoint::BeforePark, owner) >= 1
        });

        let (tx, rx) = mpsc::channel();
        let sock = &sock;
        let closer = sc.spawn(move || tx.send(sock.close()).unwrap());
        let early = rx.recv_timeout(GRACE).ok();
        let close_while_held = early.is_some();
        let deadline = Instant::now() + GRACE;
        while !tap.is_held() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        let woken_by_close = tap.is_held();
        let open_after_close_returned = close_while_held && file_identity(n) == Some(id);
        if !woken_by_close {
            sock.expire(target).expect("set a deadline after Close");
        }
        tap.wait_held();
        let second_close = sock.close();
        tap.release();

        // Either it returns, or it goes back to wait: then end it.
        let t = Instant::now();
        while !op_thread.is_finished() && tap.count(SyncPoint::BeforePark, owner) < 2 {
            assert!(
                t.elapsed() < HANG,
                "{target:?}: neither returned nor parked"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let parked_again = tap.count(SyncPoint::BeforePark, owner) >= 2;
        if parked_again {
            sock.expire(target).expect("set a deadline after Close");
        }
        let op = op_thread.join().unwrap();
        let close = early.unwrap_or_else(|| rx.recv_timeout(HANG).expect("Close never returned"));
        closer.join().unwrap();
        let final_close_by_op_thread = tap
            .syscalls(SysOp::Close, owner)
            .iter()
            .any(|(call, result, file)| call.fd == n && result.is_ok() && *file == Some(id));
        Parked {
            target,
            close_while_held,
            close,
            woken_by_close,
            open_after_close_returned,
            second_close,
            parked_again,
            op,
            final_close_by_op_thread,
        }
    })
}

/// What every go2009-refcount parked operation shows: Close returns while
/// the parked operation's reference keeps the number open (the kernel still
/// has A's file behind it), a second Close succeeds too, and the number is
/// finally closed by the operation's own thread, after Close returned.
fn assert_refcount_close_does_not_wait(p: &Parked) {
    assert!(p.close_while_held && p.close.is_ok(), "{p:#?}");
    assert!(p.woken_by_close, "shutdown made the socket ready: {p:#?}");
    assert!(p.open_after_close_returned, "{p:#?}");
    assert!(p.second_close.is_ok(), "a second Close succeeds: {p:#?}");
    assert!(p.final_close_by_op_thread, "{p:#?}");
}

#[test]
fn go2009_refcount_parked_tcp_read_gets_end_of_file_not_the_closed_error() {
    let p = parked_op_close(Variant::Go2009Refcount, Target::TcpRead);
    assert_refcount_close_does_not_wait(&p);
    assert!(!p.parked_again);
    assert_eq!(p.op.as_ref().ok(), Some(&0), "EOF: {p:#?}");
}

#[test]
fn go2009_refcount_parked_tcp_write_gets_raw_epipe() {
    let p = parked_op_close(Variant::Go2009Refcount, Target::TcpWrite);
    assert_refcount_close_does_not_wait(&p);
    assert!(!p.parked_again);
    assert_eq!(raw_errno(&p.op), Some(libc::EPIPE), "{p:#?}");
}

#[test]
fn go2009_refcount_parked_tcp_accept_gets_raw_einval() {
    let p = parked_op_close(Variant::Go2009Refcount, Target::TcpAccept);
    assert_refcount_close_does_not_wait(&p);
    assert!(!p.parked_again);
    assert_eq!(raw_errno(&p.op), Some(libc::EINVAL), "{p:#?}");
}

/// shutdown(2) makes an unconnected UDP socket and a Unix listener ready
/// once; the retried syscall says EAGAIN, and the operation waits again on a
/// socket that was closed: only its deadline can end it.
#[test]
fn go2009_refcount_parked_udp_recv_and_unix_accept_wait_again_after_close() {
    for target in [Target::UdpRecv, Target::UnixAccept] {
        let p = parked_op_close(Variant::Go2009Refcount, target);
        assert_refcount_close_does_not_wait(&p);
        assert!(p.parked_again, "{p:#?}");
        assert!(p.op.as_ref().is_err_and(is_timeout), "{p:#?}");
    }
}

/// Before eb16346 Close woke nobody (Go #271): the parked read stays parked
/// after Close returned, on a number already released, until its deadline.
#[test]
fn go2009_closeack_close_does_not_wake_a_parked_read() {
    let p = parked_op_close(Variant::Go2009CloseAck, Target::TcpRead);
    assert!(p.close_while_held && p.close.is_ok(), "{p:#?}");
    assert!(!p.woken_by_close, "{p:#?}");
    assert!(!p.open_after_close_returned, "closeack released the number");
    assert!(p.op.as_ref().is_err_and(is_timeout), "{p:#?}");
}

/// fdmutex under the same schedule, for every target: Close wakes the
/// operation, does not return while it holds the number, a second Close
/// fails, and the operation gets the closed error.
#[test]
fn fdmutex_parked_ops_get_the_closed_error_and_close_waits_for_them() {
    for target in TARGETS {
        let p = parked_op_close(Variant::FdMutex, target);
        assert_eq!(p.target, target);
        assert!(!p.close_while_held, "{p:#?}");
        p.close.as_ref().unwrap();
        assert!(p.woken_by_close, "{p:#?}");
        assert!(closed_err(&p.second_close), "{p:#?}");
        assert!(!p.parked_again, "{p:#?}");
        assert!(closed_err(&p.op), "{p:#?}");
        // The last reference was the operation's: its thread released the
        // number, and only then did Close return.
        assert!(p.final_close_by_op_thread, "{p:#?}");
    }
}

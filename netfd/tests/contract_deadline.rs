//! Deadlines of the production variant on real sockets, both wait paths
//! (issue 2, contract point 5):
//! - a deadline in the past fails at once with `TimedOut`, before any
//!   syscall on the socket;
//! - a parked operation times out no earlier than its deadline;
//! - moving a deadline (earlier, later, clearing it, into the past) wakes
//!   the parked operation, which re-evaluates against the new deadline;
//! - SetDeadline, Read and Close from three threads at once, 10,000 rounds
//!   per wait path: no hang (watchdog), no panic, no leaked number.
//!
//! Every case runs for each parkable operation: TCP read, write on a full
//! buffer and accept; UDP recv_from; Unix read, write and accept. The cases
//! of one test run on their own threads at once, so waiting for deadlines
//! does not add up.

mod common;

use common::*;
use netfd::probe::{OwnerId, Probe, SyncPoint, SysOp, SysResult, Syscall};
use netfd::{TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream, WaitPath};
use std::any::Any;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

const HANG: Duration = Duration::from_secs(5);
const WRITE_SIZE: usize = 1 << 20;

/// One operation that parks until its socket is ready, and what it needs.
enum Case {
    TcpRead(TcpStream, TcpStream),
    TcpWrite(TcpStream, TcpStream, Vec<u8>),
    TcpAccept(TcpListener, SocketAddr),
    UdpRecv(UdpSocket, UdpSocket),
    UnixRead(UnixStream, UnixStream),
    UnixWrite(UnixStream, UnixStream, Vec<u8>),
    UnixAccept(UnixListener, PathBuf),
}

fn unique(dir: &Path, what: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    dir.join(format!("{what}-{}.sock", N.fetch_add(1, Ordering::Relaxed)))
}

impl Case {
    fn all(path: WaitPath, dir: &Path) -> Vec<(String, Case)> {
        let o = opts(path);
        let mut v = Vec::new();
        let (c, s) = tcp_pair(v4(), o);
        v.push(("tcp read", Case::TcpRead(c, s)));
        let (c, s) = tcp_pair(v4(), o);
        // Small enough that the write parks; not tiny on the receiving side,
        // where a 4 KiB window makes loopback TCP crawl (some 20 s per MiB,
        // delayed ACKs of a nearly closed window) once the peer drains.
        c.set_write_buffer(4096).unwrap();
        s.set_read_buffer(64 << 10).unwrap();
        v.push(("tcp write", Case::TcpWrite(c, s, vec![5u8; WRITE_SIZE])));
        let l = TcpListener::bind_with(v4(), o).unwrap();
        let a = l.local_addr().unwrap();
        v.push(("tcp accept", Case::TcpAccept(l, a)));
        let u = UdpSocket::bind_with(v4(), o).unwrap();
        let peer = UdpSocket::bind_with(v4(), o).unwrap();
        v.push(("udp recv_from", Case::UdpRecv(u, peer)));
        let sock = unique(dir, "pair");
        let l = UnixListener::bind_with(&sock, o).unwrap();
        let (c, s) = unix_pair(&l, &sock, o);
        v.push(("unix read", Case::UnixRead(c, s)));
        let (c, s) = unix_pair(&l, &sock, o);
        c.set_write_buffer(4096).unwrap();
        s.set_read_buffer(4096).unwrap();
        v.push(("unix write", Case::UnixWrite(c, s, vec![6u8; WRITE_SIZE])));
        let sock = unique(dir, "accept");
        let l = UnixListener::bind_with(&sock, o).unwrap();
        v.push(("unix accept", Case::UnixAccept(l, sock)));
        v.into_iter()
            .map(|(n, c)| (format!("{path:?} {n}"), c))
            .collect()
    }

    /// The operation; parks when nobody has fed it.
    fn op(&self) -> io::Result<()> {
        let mut buf = [0u8; 64];
        match self {
            Case::TcpRead(c, _) => (&*c).read(&mut buf).map(drop),
            Case::TcpWrite(c, _, big) => (&*c).write(big).map(drop),
            Case::TcpAccept(l, _) => l.accept().map(drop),
            Case::UdpRecv(u, _) => u.recv_from(&mut buf).map(drop),
            Case::UnixRead(c, _) => (&*c).read(&mut buf).map(drop),
            Case::UnixWrite(c, _, big) => (&*c).write(big).map(drop),
            Case::UnixAccept(l, _) => l.accept().map(drop),
        }
    }

    /// Set the deadline of the operation's direction.
    fn set(&self, d: Option<Instant>) -> io::Result<()> {
        match self {
            Case::TcpRead(c, _) => c.set_read_deadline(d),
            Case::TcpWrite(c, _, _) => c.set_write_deadline(d),
            Case::TcpAccept(l, _) => l.set_read_deadline(d),
            Case::UdpRecv(u, _) => u.set_read_deadline(d),
            Case::UnixRead(c, _) => c.set_read_deadline(d),
            Case::UnixWrite(c, _, _) => c.set_write_deadline(d),
            Case::UnixAccept(l, _) => l.set_read_deadline(d),
        }
    }

    fn owner(&self) -> OwnerId {
        match self {
            Case::TcpRead(c, _) | Case::TcpWrite(c, _, _) => c.owner_id(),
            Case::TcpAccept(l, _) => l.owner_id(),
            Case::UdpRecv(u, _) => u.owner_id(),
            Case::UnixRead(c, _) | Case::UnixWrite(c, _, _) => c.owner_id(),
            Case::UnixAccept(l, _) => l.owner_id(),
        }
    }

    /// Make the parked operation able to complete; the returned value keeps
    /// whatever that took (a client connection) alive.
    fn feed(&self) -> Box<dyn Any> {
        match self {
            Case::TcpRead(_, s) => {
                (&*s).write_all(b"data").unwrap();
                Box::new(())
            }
            Case::UnixRead(_, s) => {
                (&*s).write_all(b"data").unwrap();
                Box::new(())
            }
            // Drains everything the writer writes: only when nothing
            // interrupted it.
            Case::TcpWrite(_, s, big) => {
                let mut sink = vec![0u8; big.len()];
                (&*s).read_exact(&mut sink).unwrap();
                Box::new(())
            }
            Case::UnixWrite(_, s, big) => {
                let mut sink = vec![0u8; big.len()];
                (&*s).read_exact(&mut sink).unwrap();
                Box::new(())
            }
            Case::TcpAccept(l, a) => Box::new(TcpStream::connect_with(*a, l.options()).unwrap()),
            Case::UdpRecv(u, peer) => {
                peer.send_to(b"data", u.local_addr().unwrap()).unwrap();
                Box::new(())
            }
            Case::UnixAccept(l, p) => Box::new(UnixStream::connect_with(p, l.options()).unwrap()),
        }
    }

    fn is_write(&self) -> bool {
        matches!(self, Case::TcpWrite(..) | Case::UnixWrite(..))
    }
}

/// Run `body` for every case of both paths, each on its own thread, all at
/// once; a failing case fails the test with its name.
fn each_case(test: &'static str, body: impl Fn(&str, &Case) + Sync) {
    let _w = watchdog(test, Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(String, Case)> = PATHS
        .iter()
        .flat_map(|&p| Case::all(p, dir.path()))
        .collect();
    let failures: Vec<String> = thread::scope(|s| {
        let hs: Vec<_> = cases
            .iter()
            .map(|(name, case)| (name, s.spawn(|| body(name, case))))
            .collect();
        hs.into_iter()
            .filter_map(|(name, h)| h.join().err().map(|_| name.clone()))
            .collect()
    });
    assert!(failures.is_empty(), "{test}: failed cases: {failures:?}");
}

/// Start `case.op()` on a probed thread, return once it has parked.
fn spawn_parked<'s, 'e>(
    s: &'s thread::Scope<'s, 'e>,
    name: &str,
    case: &'e Case,
    rec: &'e Arc<Recorder>,
    parked: &std::sync::mpsc::Receiver<OwnerId>,
) -> thread::ScopedJoinHandle<'s, (io::Result<()>, Instant)> {
    let h = s.spawn(move || {
        let _g = rec.install();
        let r = case.op();
        (r, Instant::now())
    });
    await_park_now(parked, name);
    h
}

fn expect_timeout(r: &io::Result<()>, what: &str) {
    match r {
        Err(e) => {
            assert!(
                netfd::is_timeout(e),
                "{what}: expected a timeout, got {e:?}"
            );
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{what}");
            assert_eq!(e.raw_os_error(), None, "{what}");
        }
        Ok(()) => panic!("{what}: expected a timeout, got Ok"),
    }
}

#[test]
fn past_deadline_fails_at_once_without_a_syscall() {
    let rec = Recorder::new();
    each_case(
        "past_deadline_fails_at_once_without_a_syscall",
        |name, case| {
            let _g = rec.install();
            for past in [
                Instant::now(),
                Instant::now() - Duration::from_millis(1),
                Instant::now() - Duration::from_secs(3600),
            ] {
                case.set(Some(past)).unwrap();
                let before = rec.syscalls_of(case.owner()).len();
                let t0 = Instant::now();
                expect_timeout(&case.op(), name);
                assert!(t0.elapsed() < HANG);
                // "At once": the deadline is checked before the socket is
                // touched, even when the operation could have gone through.
                assert_eq!(rec.syscalls_of(case.owner()).len(), before, "{name}");
                assert_eq!(
                    rec.count_sync(SyncPoint::BeforePark, case.owner()),
                    0,
                    "{name}"
                );
            }
        },
    );
}

#[test]
fn parked_op_times_out_no_earlier_than_its_deadline_and_socket_survives() {
    each_case(
        "parked_op_times_out_no_earlier_than_its_deadline",
        |name, case| {
            for wait in [Duration::from_millis(50), Duration::from_millis(5)] {
                let deadline = Instant::now() + wait;
                case.set(Some(deadline)).unwrap();
                let r = case.op();
                let returned = Instant::now();
                expect_timeout(&r, name);
                assert!(
                    returned >= deadline,
                    "{name}: timed out {:?} early",
                    deadline - returned
                );
                assert!(
                    returned - deadline < HANG,
                    "{name}: {:?} late",
                    returned - deadline
                );
            }
            // A timeout does not close the socket: with the deadline cleared,
            // the next operation goes through. (A timed-out write has written
            // an unknown part of its buffer, so the drain would not match.)
            if !case.is_write() {
                case.set(None).unwrap();
                let _keep = case.feed();
                case.op()
                    .unwrap_or_else(|e| panic!("{name}: after a timeout: {e:?}"));
            }
        },
    );
}

#[test]
fn moving_deadline_earlier_wakes_parked_op() {
    each_case("moving_deadline_earlier_wakes_parked_op", |name, case| {
        let (rec, parked) = Recorder::with_park_signal();
        let started = Instant::now();
        case.set(Some(started + Duration::from_secs(600))).unwrap();
        thread::scope(|s| {
            let h = spawn_parked(s, name, case, &rec, &parked);
            let earlier = Instant::now() + Duration::from_millis(30);
            case.set(Some(earlier)).unwrap();
            let (r, returned) = h.join().unwrap();
            expect_timeout(&r, name);
            assert!(
                returned >= earlier,
                "{name}: timed out before the new deadline"
            );
            assert!(
                returned - started < HANG,
                "{name}: still parked on the old deadline"
            );
        });
    });
}

#[test]
fn moving_deadline_later_wakes_parked_op_which_parks_again() {
    each_case("moving_deadline_later_wakes_parked_op", |name, case| {
        let (rec, parked) = Recorder::with_park_signal();
        let first = Instant::now() + Duration::from_millis(300);
        case.set(Some(first)).unwrap();
        thread::scope(|s| {
            let h = spawn_parked(s, name, case, &rec, &parked);
            let later = first + Duration::from_millis(300);
            case.set(Some(later)).unwrap();
            let (r, returned) = h.join().unwrap();
            expect_timeout(&r, name);
            assert!(returned >= later, "{name}: timed out on the old deadline");
            assert!(returned - later < HANG);
        });
        // It woke for the change, found the new deadline ahead and parked
        // again (more than twice only for a write that made progress).
        let parks = rec.count_sync(SyncPoint::BeforePark, case.owner());
        assert!(parks >= 2, "{name}: parked {parks} times");
    });
}

#[test]
fn clearing_deadline_keeps_op_parked_until_it_can_complete() {
    each_case("clearing_deadline_keeps_op_parked", |name, case| {
        let (rec, parked) = Recorder::with_park_signal();
        let first = Instant::now() + Duration::from_millis(100);
        case.set(Some(first)).unwrap();
        thread::scope(|s| {
            let h = spawn_parked(s, name, case, &rec, &parked);
            case.set(None).unwrap();
            // Well past the cleared deadline the operation is still waiting.
            thread::sleep(
                (first + Duration::from_millis(200)).saturating_duration_since(Instant::now()),
            );
            assert!(
                !h.is_finished(),
                "{name}: returned although its deadline was cleared"
            );
            let _keep = case.feed();
            let (r, _) = h.join().unwrap();
            r.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        });
    });
}

#[test]
fn past_deadline_set_while_parked_wakes_at_once() {
    each_case(
        "past_deadline_set_while_parked_wakes_at_once",
        |name, case| {
            let (rec, parked) = Recorder::with_park_signal();
            case.set(None).unwrap();
            thread::scope(|s| {
                let h = spawn_parked(s, name, case, &rec, &parked);
                let t0 = Instant::now();
                case.set(Some(t0 - Duration::from_millis(1))).unwrap();
                let (r, returned) = h.join().unwrap();
                expect_timeout(&r, name);
                assert!(returned - t0 < HANG);
            });
        },
    );
}

/// A parked operation with a deadline that Close overtakes reports the
/// closed error, not the timeout.
#[test]
fn close_overtakes_a_pending_deadline() {
    each_case("close_overtakes_a_pending_deadline", |name, case| {
        let (rec, parked) = Recorder::with_park_signal();
        case.set(Some(Instant::now() + Duration::from_secs(600)))
            .unwrap();
        thread::scope(|s| {
            let h = spawn_parked(s, name, case, &rec, &parked);
            let t0 = Instant::now();
            match case {
                Case::TcpRead(c, _) | Case::TcpWrite(c, _, _) => c.close(),
                Case::TcpAccept(l, _) => l.close(),
                Case::UdpRecv(u, _) => u.close(),
                Case::UnixRead(c, _) | Case::UnixWrite(c, _, _) => c.close(),
                Case::UnixAccept(l, _) => l.close(),
            }
            .unwrap();
            let (r, returned) = h.join().unwrap();
            expect_closed(r, name);
            assert!(returned - t0 < HANG);
            expect_closed(case.set(None), name);
        });
    });
}

// ---------------------------------------------------------------------------
// SetDeadline, Read and Close from three threads at once.

/// The socket read and closed; a stream keeps its peer open.
enum Target {
    Udp(UdpSocket),
    Unix(UnixStream, #[allow(dead_code)] UnixStream),
    Tcp(TcpStream, #[allow(dead_code)] TcpStream),
}

impl Target {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Target::Udp(u) => u.recv_from(buf).map(|(n, _)| n),
            Target::Unix(c, _) => (&*c).read(buf),
            Target::Tcp(c, _) => (&*c).read(buf),
        }
    }
    fn set_read_deadline(&self, d: Option<Instant>) -> io::Result<()> {
        match self {
            Target::Udp(u) => u.set_read_deadline(d),
            Target::Unix(c, _) => c.set_read_deadline(d),
            Target::Tcp(c, _) => c.set_read_deadline(d),
        }
    }
    fn close(&self) -> io::Result<()> {
        match self {
            Target::Udp(u) => u.close(),
            Target::Unix(c, _) => c.close(),
            Target::Tcp(c, _) => c.close(),
        }
    }
}

const ROUNDS: u64 = 10_000;

fn three_way(path: WaitPath, dir: &Path) {
    let o = opts(path);
    let sock = unique(dir, "three");
    let ul = UnixListener::bind_with(&sock, o).unwrap();
    let tl = TcpListener::bind_with(v4(), o).unwrap();
    let ta = tl.local_addr().unwrap();
    let rec = Recorder::new();
    let _g = rec.install();
    let slot: RwLock<Option<Arc<Target>>> = RwLock::new(None);
    let (start, end) = (Barrier::new(3), Barrier::new(3));
    let mut counts = [0u64; 3]; // rounds whose read ended closed / timed out first / got data
    thread::scope(|s| {
        let setter = s.spawn(|| {
            let _g = rec.install();
            for round in 0..ROUNDS {
                start.wait();
                let t = slot.read().unwrap().clone().unwrap();
                let mut rng = Rng::new(round);
                for _ in 0..1 + rng.below(3) {
                    let d = match rng.below(4) {
                        0 => None,
                        1 => Some(Instant::now() - Duration::from_micros(1)),
                        2 => Some(Instant::now() + Duration::from_micros(rng.below(500))),
                        _ => Some(Instant::now() + Duration::from_secs(600)),
                    };
                    if let Err(e) = t.set_read_deadline(d) {
                        assert_closed_error(&e, "set_read_deadline racing close");
                        break;
                    }
                }
                drop(t);
                end.wait();
            }
        });
        let reader = s.spawn(|| {
            let _g = rec.install();
            let mut counts = [0u64; 3];
            for _ in 0..ROUNDS {
                start.wait();
                let t = slot.read().unwrap().clone().unwrap();
                let mut buf = [0u8; 64];
                let mut first = None;
                // Until Close ends it; a timeout is retried (the deadline
                // may have moved since).
                loop {
                    match t.read(&mut buf) {
                        Ok(_) => {
                            first.get_or_insert(2);
                        }
                        Err(e) if check_error(&e, "read racing close") => break,
                        Err(_) => {
                            first.get_or_insert(1);
                            thread::yield_now();
                        }
                    }
                }
                counts[first.unwrap_or(0)] += 1;
                drop(t);
                end.wait();
            }
            counts
        });
        let mut rng = Rng::new(ROUNDS);
        for round in 0..ROUNDS {
            let t = Arc::new(match round % 4 {
                0 | 1 => Target::Udp(UdpSocket::bind_with(v4(), o).unwrap()),
                2 => {
                    let (c, s) = unix_pair(&ul, &sock, o);
                    Target::Unix(c, s)
                }
                _ => {
                    let c = TcpStream::connect_with(ta, o).unwrap();
                    let (s, _) = tl.accept().unwrap();
                    // RST on close, so 10,000 rounds leave no TIME_WAIT.
                    c.set_linger(Some(Duration::ZERO)).unwrap();
                    Target::Tcp(c, s)
                }
            });
            *slot.write().unwrap() = Some(t.clone());
            start.wait();
            jitter(&mut rng);
            t.close()
                .unwrap_or_else(|e| panic!("{path:?} round {round}: close: {e:?}"));
            end.wait();
            slot.write().unwrap().take();
        }
        setter.join().unwrap();
        counts = reader.join().unwrap();
    });
    let checked = rec.check_lifetimes().unwrap();
    assert!(checked as u64 >= ROUNDS, "{checked}");
    eprintln!(
        "{path:?}: {ROUNDS} rounds, {checked} sockets checked; reads ended: closed at once {}, after a timeout {}",
        counts[0], counts[1]
    );
}

#[test]
fn set_deadline_read_close_three_threads_10k_rounds() {
    let _w = watchdog(
        "set_deadline_read_close_three_threads_10k_rounds",
        Duration::from_secs(120),
    );
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        three_way(path, dir.path());
    }
}

// ---------------------------------------------------------------------------
// A wake-up meant for one socket never reaches the same thread's wait on
// another socket.

/// Passes everything to a [`Recorder`]; the first time `owner`'s poll(2)
/// returns, holds the thread there (woken by readiness, its waker not yet
/// disarmed) until the test says go.
struct HoldAfterPoll {
    rec: Arc<Recorder>,
    owner: OwnerId,
    held: std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl Probe for HoldAfterPoll {
    fn after_syscall(&self, call: &Syscall, result: SysResult) {
        self.rec.after_syscall(call, result);
        if call.op == SysOp::Poll && call.owner == self.owner {
            let held = self.held.lock().unwrap().take();
            if let Some((hit, go)) = held {
                hit.send(()).unwrap();
                go.recv_timeout(HANG).unwrap();
            }
        }
    }
    fn sync_point(&self, point: SyncPoint, owner: OwnerId) {
        self.rec.sync_point(point, owner);
    }
}

/// Direct path: a deadline change takes a parked reader's waker and signals
/// its thread's wake descriptor just as readiness ends the wait. The signal
/// is then meant for a wait that is over; it must not cut short the
/// thread's next wait, on another socket (which would show as an extra
/// wake-up and an extra EAGAIN read of that socket). The server path
/// re-checks its slot after every unpark, so a leftover unpark is harmless
/// there by construction.
#[test]
fn deadline_wake_that_lost_to_readiness_does_not_leak_into_the_next_wait() {
    let _w = watchdog(
        "deadline_wake_that_lost_to_readiness",
        Duration::from_secs(30),
    );
    let o = opts(WaitPath::Direct);
    let (a, a_peer) = tcp_pair(v4(), o);
    let (b, _b_peer) = tcp_pair(v4(), o);
    let (rec, parked) = Recorder::with_park_signal();
    let (hit_tx, hit_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let hold = Arc::new(HoldAfterPoll {
        rec: rec.clone(),
        owner: a.owner_id(),
        held: std::sync::Mutex::new(Some((hit_tx, go_rx))),
    });
    thread::scope(|s| {
        let h = s.spawn(|| {
            let _g = netfd::probe::install(hold.clone());
            let n = (&a).read(&mut [0u8; 8]).unwrap();
            let deadline = Instant::now() + Duration::from_millis(20);
            b.set_read_deadline(Some(deadline)).unwrap();
            (n, (&b).read(&mut [0u8; 8]).map(drop))
        });
        await_park_now(&parked, "read of a");
        (&a_peer).write_all(b"x").unwrap();
        hit_rx
            .recv_timeout(HANG)
            .expect("the read of a never left poll(2)");
        // The reader is out of poll(2) but still armed: this takes its
        // waker and signals its thread.
        a.set_read_deadline(Some(Instant::now() + Duration::from_secs(600)))
            .unwrap();
        go_tx.send(()).unwrap();
        let (n, r) = h.join().unwrap();
        assert_eq!(n, 1);
        expect_timeout(&r, "read of b");
    });
    let owner = b.owner_id();
    assert_eq!(
        (
            rec.count_sys(SysOp::Read, owner),
            rec.count_sync(SyncPoint::AfterWake, owner)
        ),
        (1, 1),
        "the wait on b was cut short by a wake-up meant for a: {:?}",
        rec.events()
    );
}

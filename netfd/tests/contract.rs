//! The Close contract of the production variant (`fdmutex`), on real
//! sockets, for both wait paths (issue 2, contract points 1-4), and the
//! plain socket behaviour around it (round trips, options, addresses).
//!
//! 1. A parked Read, Write, Accept or RecvFrom returns the closed error
//!    within 1 s of another thread's close (a hang bound, not a speed test).
//! 2. The closed error is one matchable error; nothing racing close sees a
//!    raw errno such as EBADF, EINVAL or ENOTSOCK.
//! 3. Close returns only after the number is released: the port can be
//!    bound again at once.
//! 4. A second close, and every operation after close, fail at once with
//!    the closed error.

mod common;

use common::*;
use netfd::probe::{OwnerId, SyncPoint, SysOp};
use netfd::{
    Options, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream, Variant, WaitPath,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

const HANG: Duration = Duration::from_secs(1);

/// One racing worker: hammers the socket until it sees the closed error.
type Worker<'a, S> = dyn Fn(&S, &mut Rng) + Sync + 'a;
/// Named operations to try after close.
type AfterClose<'a> = Vec<(&'a str, Box<dyn FnOnce() -> io::Result<()> + 'a>)>;

// ---------------------------------------------------------------------------
// 1. Close unparks every parked operation.

/// Run `op` on its own (probed) thread; once it parks, `close` from this
/// thread. The op must fail with the closed error within [`HANG`] of the
/// close, close must succeed and, per the probe, no syscall may name the
/// socket after its close(2).
fn close_unparks<T: Send + std::fmt::Debug>(
    what: &str,
    op: impl FnOnce() -> io::Result<T> + Send,
    close: impl FnOnce() -> io::Result<()>,
) {
    let (rec, parked) = Recorder::with_park_signal();
    let _g = rec.install();
    thread::scope(|s| {
        let h = s.spawn(|| {
            let _g = rec.install();
            let r = op();
            (r, Instant::now())
        });
        await_park(&parked, what);
        let t0 = Instant::now();
        close().unwrap_or_else(|e| panic!("{what}: first close failed: {e:?}"));
        let close_took = t0.elapsed();
        let (r, returned) = h.join().unwrap();
        expect_closed(r, what);
        let woke_after = returned.saturating_duration_since(t0);
        assert!(woke_after < HANG, "{what}: woke {woke_after:?} after close");
        assert!(close_took < HANG, "{what}: close took {close_took:?}");
    });
    rec.check_lifetimes()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// Shrink the buffers between `w` and its peer so a big write parks soon.
fn small_buffers(
    set_w: impl Fn(usize) -> io::Result<()>,
    set_peer: impl Fn(usize) -> io::Result<()>,
) {
    set_w(4096).unwrap();
    set_peer(4096).unwrap();
}

const BIG: usize = 8 << 20;

fn tcp_close_unparks(addr: SocketAddr, path: WaitPath) {
    let o = opts(path);
    let fam = if addr.is_ipv4() { "v4" } else { "v6" };

    // Read.
    let (c, _s) = tcp_pair(addr, o);
    close_unparks(
        &format!("tcp {fam} {path:?}: read"),
        || (&c).read(&mut [0u8; 64]),
        || c.close(),
    );

    // Write parked on a full send buffer.
    let (c, s) = tcp_pair(addr, o);
    small_buffers(|n| c.set_write_buffer(n), |n| s.set_read_buffer(n));
    let big = vec![7u8; BIG];
    close_unparks(
        &format!("tcp {fam} {path:?}: write on a full buffer"),
        || (&c).write(&big),
        || c.close(),
    );

    // Accept.
    let l = TcpListener::bind_with(addr, o).unwrap();
    close_unparks(
        &format!("tcp {fam} {path:?}: accept"),
        || l.accept().map(|(_, a)| a),
        || l.close(),
    );
}

#[test]
fn close_unparks_tcp_v4_read_write_accept() {
    let _w = watchdog(
        "close_unparks_tcp_v4_read_write_accept",
        Duration::from_secs(30),
    );
    for path in PATHS {
        tcp_close_unparks(v4(), path);
    }
}

#[test]
fn close_unparks_tcp_v6_read_write_accept() {
    let _w = watchdog(
        "close_unparks_tcp_v6_read_write_accept",
        Duration::from_secs(30),
    );
    let Some(addr) = v6() else { return };
    for path in PATHS {
        tcp_close_unparks(addr, path);
    }
}

#[test]
fn close_unparks_udp_recv_from() {
    let _w = watchdog("close_unparks_udp_recv_from", Duration::from_secs(30));
    for addr in loopbacks() {
        for path in PATHS {
            let u = UdpSocket::bind_with(addr, opts(path)).unwrap();
            close_unparks(
                &format!("udp {addr} {path:?}: recv_from"),
                || u.recv_from(&mut [0u8; 64]),
                || u.close(),
            );
        }
    }
}

#[test]
fn close_unparks_unix_read_write_accept() {
    let _w = watchdog(
        "close_unparks_unix_read_write_accept",
        Duration::from_secs(30),
    );
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let o = opts(path);
        let sock = dir.path().join(format!("{}.sock", path.name()));
        let l = UnixListener::bind_with(&sock, o).unwrap();

        let (c, _s) = unix_pair(&l, &sock, o);
        close_unparks(
            &format!("unix {path:?}: read"),
            || (&c).read(&mut [0u8; 64]),
            || c.close(),
        );

        let (c, s) = unix_pair(&l, &sock, o);
        small_buffers(|n| c.set_write_buffer(n), |n| s.set_read_buffer(n));
        let big = vec![7u8; BIG];
        close_unparks(
            &format!("unix {path:?}: write on a full buffer"),
            || (&c).write(&big),
            || c.close(),
        );

        close_unparks(
            &format!("unix {path:?}: accept"),
            || l.accept().map(|_| ()),
            || l.close(),
        );
    }
}

/// Several operations parked at once on one socket (read and write of a
/// stream, plus a second reader waiting for the read lock) all wake.
#[test]
fn close_unparks_everything_parked_on_one_socket() {
    let _w = watchdog(
        "close_unparks_everything_parked_on_one_socket",
        Duration::from_secs(30),
    );
    for path in PATHS {
        let (c, s) = tcp_pair(v4(), opts(path));
        small_buffers(|n| c.set_write_buffer(n), |n| s.set_read_buffer(n));
        let big = vec![1u8; BIG];
        let (rec, parked) = Recorder::with_park_signal();
        thread::scope(|sc| {
            let r1 = sc.spawn(|| {
                let _g = rec.install();
                (&c).read(&mut [0u8; 8])
            });
            let w = sc.spawn(|| {
                let _g = rec.install();
                (&c).write(&big)
            });
            await_park(&parked, "read");
            await_park(&parked, "write");
            // Waits for the read lock, not in the poll descriptor.
            let r2 = sc.spawn(|| (&c).read(&mut [0u8; 8]));
            thread::sleep(Duration::from_millis(20));
            let t0 = Instant::now();
            c.close().unwrap();
            for (what, r) in [
                ("read", r1.join().unwrap()),
                ("queued read", r2.join().unwrap()),
            ] {
                expect_closed(r, what);
            }
            expect_closed(w.join().unwrap(), "write");
            assert!(t0.elapsed() < HANG, "{path:?}: {:?}", t0.elapsed());
        });
    }
}

// ---------------------------------------------------------------------------
// 2. One matchable closed error; nothing racing close sees a raw errno.

#[test]
fn closed_error_is_one_matchable_error() {
    let u = UdpSocket::bind(v4()).unwrap();
    u.close().unwrap();
    let e = u.recv_from(&mut [0u8; 4]).unwrap_err();
    assert_closed_error(&e, "recv_from after close");
    assert_eq!(e.to_string(), "use of closed network connection");
    assert!(!netfd::is_timeout(&e));
    // Callers that only know std can match on the kind.
    assert!(matches!(e.kind(), io::ErrorKind::NotConnected));
    // A raw ENOTCONN from the kernel is not netfd's closed error.
    assert!(!netfd::is_closed(&io::Error::from_raw_os_error(
        libc::ENOTCONN
    )));
}

/// Drive `rounds` rounds: each opens a socket with `open`, lets every worker
/// hammer it until it sees the closed error, and closes it from this thread
/// after a jitter. Every error a worker sees goes through [`check_error`];
/// the probe checks that no syscall named a socket after its close(2) and
/// that every socket number was closed exactly once.
fn race_close<S: Send + Sync>(
    what: &str,
    rounds: u64,
    mut open: impl FnMut(u64) -> S,
    close: impl Fn(&S) -> io::Result<()>,
    workers: &[&Worker<'_, S>],
) {
    let rec = Recorder::new();
    let _g = rec.install();
    let slot: RwLock<Option<Arc<S>>> = RwLock::new(None);
    let start = Barrier::new(workers.len() + 1);
    let end = Barrier::new(workers.len() + 1);
    thread::scope(|sc| {
        for (i, work) in workers.iter().enumerate() {
            let (rec, slot, start, end) = (&rec, &slot, &start, &end);
            sc.spawn(move || {
                let _g = rec.install();
                for round in 0..rounds {
                    start.wait();
                    let s = slot.read().unwrap().clone().unwrap();
                    let mut rng = Rng::new(round * 31 + i as u64);
                    work(&s, &mut rng);
                    drop(s);
                    end.wait();
                }
            });
        }
        let mut rng = Rng::new(rounds);
        for round in 0..rounds {
            let s = Arc::new(open(round));
            *slot.write().unwrap() = Some(s.clone());
            start.wait();
            jitter(&mut rng);
            close(&s).unwrap_or_else(|e| panic!("{what}: round {round}: close: {e:?}"));
            end.wait();
            slot.write().unwrap().take();
        }
    });
    let checked = rec
        .check_lifetimes()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        checked as u64 >= rounds,
        "{what}: only {checked} sockets seen"
    );
}

/// Call `op` until it returns the closed error, checking every error.
/// Yields between calls: on two cores, workers that never park would
/// otherwise starve the closer.
fn until_closed<T>(what: &str, mut op: impl FnMut() -> io::Result<T>) {
    loop {
        if let Err(e) = op() {
            if check_error(&e, what) {
                return;
            }
        }
        thread::yield_now();
    }
}

fn pick_deadline(rng: &mut Rng) -> Option<Instant> {
    match rng.below(4) {
        0 => None,
        1 => Some(Instant::now() - Duration::from_millis(1)),
        2 => Some(Instant::now() + Duration::from_micros(rng.below(300))),
        _ => Some(Instant::now() + Duration::from_secs(60)),
    }
}

const RACE_ROUNDS: u64 = 1000;

fn stream_workers<S: Send + Sync + 'static>(
    get: fn(&S) -> &dyn StreamLike,
) -> [Box<Worker<'static, S>>; 3] {
    [
        Box::new(move |s: &S, _rng: &mut Rng| {
            let c = get(s);
            let mut buf = [0u8; 256];
            until_closed("read", || c.read_some(&mut buf));
        }),
        Box::new(move |s: &S, _rng: &mut Rng| {
            let c = get(s);
            let buf = [9u8; 1024];
            until_closed("write", || c.write_some(&buf));
        }),
        Box::new(move |s: &S, rng: &mut Rng| {
            let c = get(s);
            let mut i = rng.next();
            until_closed("control", || {
                i += 1;
                c.control(i, pick_deadline(rng))
            });
        }),
    ]
}

/// What the racing workers need of a stream socket.
trait StreamLike: Sync {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_some(&self, buf: &[u8]) -> io::Result<usize>;
    /// One of the non-I/O operations, chosen by `i`.
    fn control(&self, i: u64, deadline: Option<Instant>) -> io::Result<()>;
}

impl StreamLike for TcpStream {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn control(&self, i: u64, deadline: Option<Instant>) -> io::Result<()> {
        match i % 8 {
            0 => self.set_read_deadline(deadline),
            1 => self.set_write_deadline(deadline),
            2 => self.set_nodelay(i % 16 < 8),
            3 => self.set_read_buffer(64 << 10),
            4 => self.local_addr().map(drop),
            5 => self.peer_addr().map(drop),
            6 => self.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR).map(drop),
            _ => self.set_keepalive(true),
        }
    }
}

impl StreamLike for UnixStream {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn control(&self, i: u64, deadline: Option<Instant>) -> io::Result<()> {
        match i % 5 {
            0 => self.set_read_deadline(deadline),
            1 => self.set_write_deadline(deadline),
            2 => self.set_write_buffer(32 << 10),
            3 => self.peer_path().map(drop),
            _ => self.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR).map(drop),
        }
    }
}

fn as_dyn<'a, S>(ws: &'a [Box<Worker<'static, S>>]) -> Vec<&'a Worker<'static, S>> {
    ws.iter().map(|w| &**w).collect()
}

#[test]
fn tcp_ops_racing_close_see_only_contract_errors() {
    let _w = watchdog(
        "tcp_ops_racing_close_see_only_contract_errors",
        Duration::from_secs(60),
    );
    for path in PATHS {
        let o = opts(path);
        let l = TcpListener::bind_with(v4(), o).unwrap();
        let addr = l.local_addr().unwrap();
        let workers = stream_workers::<(TcpStream, TcpStream)>(|s| &s.0);
        race_close(
            &format!("tcp {path:?}"),
            RACE_ROUNDS,
            |round| {
                let c = TcpStream::connect_with(addr, o).unwrap();
                let (s, _) = l.accept().unwrap();
                // Something to read in some rounds.
                if round % 2 == 0 {
                    (&s).write_all(&[1u8; 300]).unwrap();
                }
                (c, s)
            },
            |(c, _)| c.close(),
            &as_dyn(&workers),
        );
    }
}

#[test]
fn unix_ops_racing_close_see_only_contract_errors() {
    let _w = watchdog(
        "unix_ops_racing_close_see_only_contract_errors",
        Duration::from_secs(60),
    );
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let o = opts(path);
        let sock = dir.path().join(format!("race-{}.sock", path.name()));
        let l = UnixListener::bind_with(&sock, o).unwrap();
        let workers = stream_workers::<(UnixStream, UnixStream)>(|s| &s.0);
        race_close(
            &format!("unix {path:?}"),
            RACE_ROUNDS,
            |round| {
                let (c, s) = unix_pair(&l, &sock, o);
                if round % 2 == 0 {
                    (&s).write_all(&[1u8; 300]).unwrap();
                }
                (c, s)
            },
            |(c, _)| c.close(),
            &as_dyn(&workers),
        );
    }
}

#[test]
fn udp_ops_racing_close_see_only_contract_errors() {
    let _w = watchdog(
        "udp_ops_racing_close_see_only_contract_errors",
        Duration::from_secs(60),
    );
    for path in PATHS {
        let o = opts(path);
        let recv = |u: &(UdpSocket, SocketAddr), _: &mut Rng| {
            let mut buf = [0u8; 256];
            until_closed("recv_from", || u.0.recv_from(&mut buf));
        };
        // Sends to itself, so the receiver has something to read.
        let send = |u: &(UdpSocket, SocketAddr), _: &mut Rng| {
            until_closed("send_to", || u.0.send_to(&[3u8; 100], u.1));
        };
        let control = |u: &(UdpSocket, SocketAddr), rng: &mut Rng| {
            let mut i = rng.next();
            until_closed("udp control", || {
                i += 1;
                match i % 5 {
                    0 => u.0.set_read_deadline(pick_deadline(rng)),
                    1 => u.0.set_write_deadline(pick_deadline(rng)),
                    2 => u.0.set_read_buffer(64 << 10),
                    3 => u.0.local_addr().map(drop),
                    _ => u.0.getsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF).map(drop),
                }
            });
        };
        race_close(
            &format!("udp {path:?}"),
            RACE_ROUNDS,
            |_| {
                let u = UdpSocket::bind_with(v4(), o).unwrap();
                let a = u.local_addr().unwrap();
                (u, a)
            },
            |u| u.0.close(),
            &[&recv, &send, &control],
        );
    }
}

#[test]
fn accept_racing_close_sees_only_contract_errors() {
    let _w = watchdog(
        "accept_racing_close_sees_only_contract_errors",
        Duration::from_secs(60),
    );
    for path in PATHS {
        let o = opts(path);
        let accept = |l: &(TcpListener, SocketAddr), _: &mut Rng| {
            until_closed("accept", || l.0.accept());
        };
        // A client for the acceptor in some rounds; its own errors (refused,
        // reset when the listener goes) are not the listener's.
        let dial = |l: &(TcpListener, SocketAddr), rng: &mut Rng| {
            if rng.below(2) == 0 {
                let _ = TcpStream::connect_with(l.1, o);
            }
        };
        let control = |l: &(TcpListener, SocketAddr), rng: &mut Rng| {
            let mut i = rng.next();
            until_closed("listener control", || {
                i += 1;
                match i % 3 {
                    0 => l.0.set_read_deadline(pick_deadline(rng)),
                    1 => l.0.local_addr().map(drop),
                    _ => {
                        l.0.getsockopt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)
                            .map(drop)
                    }
                }
            });
        };
        race_close(
            &format!("accept {path:?}"),
            RACE_ROUNDS,
            |_| {
                let l = TcpListener::bind_with(v4(), o).unwrap();
                let a = l.local_addr().unwrap();
                (l, a)
            },
            |l| l.0.close(),
            &[&accept, &dial, &control],
        );
    }
}

/// Two closes at once: exactly one wins, the other gets the closed error,
/// and both return only once the number is released.
#[test]
fn concurrent_closes_one_wins() {
    let _w = watchdog("concurrent_closes_one_wins", Duration::from_secs(30));
    let rec = Recorder::new();
    let _g = rec.install();
    for path in PATHS {
        for _ in 0..300 {
            let (c, _s) = tcp_pair(v4(), opts(path));
            let results: Vec<io::Result<()>> = thread::scope(|sc| {
                let hs: Vec<_> = (0..2)
                    .map(|_| {
                        sc.spawn(|| {
                            let _g = rec.install();
                            c.close()
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let wins = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(wins, 1, "{path:?}: {results:?}");
            for r in results {
                if let Err(e) = r {
                    assert_closed_error(&e, "losing close");
                }
            }
        }
    }
    rec.check_lifetimes().unwrap();
}

// ---------------------------------------------------------------------------
// 3. Close returns only after the number is released.

fn rebind_after_close(addr: SocketAddr, path: WaitPath, rounds: usize) {
    let o = opts(path);
    let (rec, parked) = Recorder::with_park_signal();
    let mut l = TcpListener::bind_with(addr, o).unwrap();
    let bound = l.local_addr().unwrap();
    for round in 0..rounds {
        let again = thread::scope(|sc| {
            let lr = &l;
            let rec = &rec;
            let h = sc.spawn(move || {
                let _g = rec.install();
                lr.accept().map(drop)
            });
            // Half the rounds close while accept is parked, half while it
            // may still be on its way in.
            if round % 2 == 0 {
                await_park_now(&parked, "accept");
            }
            l.close().unwrap();
            // The listening socket must be gone: a bind to the same port
            // fails with EADDRINUSE while it is still open.
            let again = TcpListener::bind_with(bound, o).unwrap_or_else(|e| {
                panic!("{path:?} round {round}: re-bind {bound} right after close: {e:?}")
            });
            expect_closed(h.join().unwrap(), "accept in flight");
            again
        });
        l = again;
        while parked.try_recv().is_ok() {}
    }
    rec.check_lifetimes().unwrap();
}

#[test]
fn close_releases_port_before_returning() {
    let _w = watchdog(
        "close_releases_port_before_returning",
        Duration::from_secs(30),
    );
    for addr in loopbacks() {
        for path in PATHS {
            rebind_after_close(addr, path, 200);
        }
    }
}

// ---------------------------------------------------------------------------
// 4. A second close, and everything after close, fails at once.

/// After `close`, every listed operation fails with the closed error
/// without a single syscall on the socket's behalf and without parking.
fn all_fail_after_close(what: &str, owner: OwnerId, rec: &Recorder, ops: AfterClose<'_>) {
    rec.clear();
    let t0 = Instant::now();
    for (name, op) in ops {
        expect_closed(op(), &format!("{what}: {name} after close"));
    }
    assert!(t0.elapsed() < HANG, "{what}: {:?}", t0.elapsed());
    assert_eq!(
        rec.syscalls_of(owner).len(),
        0,
        "{what}: syscalls after close: {:?}",
        rec.syscalls_of(owner)
    );
    assert_eq!(
        rec.count_sync(SyncPoint::BeforePark, owner),
        0,
        "{what}: parked after close"
    );
}

#[test]
fn second_close_and_every_op_after_close_fail_at_once() {
    let _w = watchdog(
        "second_close_and_every_op_after_close_fail_at_once",
        Duration::from_secs(30),
    );
    let dir = tempfile::tempdir().unwrap();
    let rec = Recorder::new();
    let _g = rec.install();
    for path in PATHS {
        let o = opts(path);
        let far = Some(Instant::now() + Duration::from_secs(60));
        // TCP stream and listener.
        let l = TcpListener::bind_with(v4(), o).unwrap();
        let addr = l.local_addr().unwrap();
        let (c, _s) = tcp_pair(v4(), o);
        c.close().unwrap();
        l.close().unwrap();
        let mut buf = [0u8; 8];
        all_fail_after_close(
            &format!("tcp {path:?}"),
            c.owner_id(),
            &rec,
            vec![
                ("close", Box::new(|| c.close())),
                ("read", Box::new(|| (&c).read(&mut buf).map(drop))),
                ("write", Box::new(|| (&c).write(b"x").map(drop))),
                ("set_deadline", Box::new(|| c.set_deadline(far))),
                (
                    "set_read_deadline(None)",
                    Box::new(|| c.set_read_deadline(None)),
                ),
                ("shutdown", Box::new(|| c.shutdown(Shutdown::Both))),
                ("local_addr", Box::new(|| c.local_addr().map(drop))),
                ("peer_addr", Box::new(|| c.peer_addr().map(drop))),
                ("set_nodelay", Box::new(|| c.set_nodelay(true))),
                ("set_read_buffer", Box::new(|| c.set_read_buffer(4096))),
                ("set_write_buffer", Box::new(|| c.set_write_buffer(4096))),
                ("set_keepalive", Box::new(|| c.set_keepalive(true))),
                ("set_linger", Box::new(|| c.set_linger(None))),
                ("set_reuse_addr", Box::new(|| c.set_reuse_addr(true))),
                (
                    "getsockopt",
                    Box::new(|| c.getsockopt(libc::SOL_SOCKET, libc::SO_ERROR).map(drop)),
                ),
            ],
        );
        assert!(c.is_closed());
        all_fail_after_close(
            &format!("tcp listener {path:?}"),
            l.owner_id(),
            &rec,
            vec![
                ("close", Box::new(|| l.close())),
                ("accept", Box::new(|| l.accept().map(drop))),
                ("local_addr", Box::new(|| l.local_addr().map(drop))),
                ("set_read_deadline", Box::new(|| l.set_read_deadline(far))),
            ],
        );
        // The listener is really gone: nobody accepts on its port.
        let refused = TcpStream::connect_with(addr, o).unwrap_err();
        assert_eq!(
            refused.kind(),
            io::ErrorKind::ConnectionRefused,
            "{refused:?}"
        );

        // UDP.
        let u = UdpSocket::bind_with(v4(), o).unwrap();
        let ua = u.local_addr().unwrap();
        u.close().unwrap();
        let mut buf = [0u8; 8];
        all_fail_after_close(
            &format!("udp {path:?}"),
            u.owner_id(),
            &rec,
            vec![
                ("close", Box::new(|| u.close())),
                ("recv_from", Box::new(|| u.recv_from(&mut buf).map(drop))),
                ("send_to", Box::new(|| u.send_to(b"x", ua).map(drop))),
                ("set_deadline", Box::new(|| u.set_deadline(None))),
                ("local_addr", Box::new(|| u.local_addr().map(drop))),
            ],
        );

        // Unix stream and listener.
        let sock = dir.path().join(format!("after-{}.sock", path.name()));
        let ul = UnixListener::bind_with(&sock, o).unwrap();
        let (uc, _us) = unix_pair(&ul, &sock, o);
        uc.close().unwrap();
        ul.close().unwrap();
        let mut buf = [0u8; 8];
        all_fail_after_close(
            &format!("unix {path:?}"),
            uc.owner_id(),
            &rec,
            vec![
                ("close", Box::new(|| uc.close())),
                ("read", Box::new(|| (&uc).read(&mut buf).map(drop))),
                ("write", Box::new(|| (&uc).write(b"x").map(drop))),
                ("shutdown", Box::new(|| uc.shutdown(Shutdown::Write))),
                ("peer_path", Box::new(|| uc.peer_path().map(drop))),
            ],
        );
        all_fail_after_close(
            &format!("unix listener {path:?}"),
            ul.owner_id(),
            &rec,
            vec![
                ("close", Box::new(|| ul.close())),
                ("accept", Box::new(|| ul.accept().map(drop))),
                ("local_path", Box::new(|| ul.local_path().map(drop))),
            ],
        );
    }
    rec.check_lifetimes().unwrap();
}

// ---------------------------------------------------------------------------
// Plain socket behaviour.

fn tcp_round_trip(addr: SocketAddr, o: Options) {
    let l = TcpListener::bind_with(addr, o).unwrap();
    let la = l.local_addr().unwrap();
    thread::scope(|s| {
        let h = s.spawn(|| {
            let (c, peer) = l.accept().unwrap();
            let mut buf = [0u8; 5];
            (&c).read_exact(&mut buf).unwrap();
            (&c).write_all(&buf).unwrap();
            (c.local_addr().unwrap(), c.peer_addr().unwrap(), peer)
        });
        let c = TcpStream::connect_with(la, o).unwrap();
        (&c).write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        (&c).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let (s_local, s_peer, accepted_from) = h.join().unwrap();
        assert_eq!(c.peer_addr().unwrap(), la);
        assert_eq!(c.peer_addr().unwrap(), s_local);
        assert_eq!(c.local_addr().unwrap(), s_peer);
        assert_eq!(accepted_from, s_peer);
        assert_eq!(la.ip(), addr.ip());
        assert!(la.port() != 0);
        assert!(c.local_addr().unwrap().ip().is_loopback());
        c.close().unwrap();
    });
}

#[test]
fn tcp_round_trip_and_addresses_v4_v6() {
    for addr in loopbacks() {
        for path in PATHS {
            tcp_round_trip(addr, opts(path));
        }
    }
    // The production variant waits directly by default.
    assert_eq!(Options::default(), Options::for_variant(Variant::FdMutex));
    assert_eq!(Options::default().wait, WaitPath::Direct);
}

#[test]
fn unix_stream_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let o = opts(path);
        let sock = dir.path().join(format!("rt-{}.sock", path.name()));
        let l = UnixListener::bind_with(&sock, o).unwrap();
        assert_eq!(l.local_path().unwrap().as_deref(), Some(sock.as_path()));
        thread::scope(|s| {
            let h = s.spawn(|| {
                let (c, _) = l.accept().unwrap();
                let mut buf = [0u8; 4];
                (&c).read_exact(&mut buf).unwrap();
                (&c).write_all(&buf).unwrap();
                (&c).write_all(b"bye").unwrap();
                c.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                (&c).read_to_end(&mut rest).unwrap();
                c.close().unwrap();
                rest
            });
            let c = UnixStream::connect_with(&sock, o).unwrap();
            assert_eq!(c.peer_path().unwrap().as_deref(), Some(sock.as_path()));
            (&c).write_all(b"ping").unwrap();
            let mut got = Vec::new();
            (&c).read_to_end(&mut got).unwrap();
            assert_eq!(got, b"pingbye");
            (&c).write_all(b"last").unwrap();
            c.close().unwrap();
            assert_eq!(h.join().unwrap(), b"last");
        });
        l.close().unwrap();
        expect_closed(l.close(), "second close of a unix listener");
    }
}

#[test]
fn udp_send_to_recv_from_v4_v6() {
    for addr in loopbacks() {
        for path in PATHS {
            let o = opts(path);
            let a = UdpSocket::bind_with(addr, o).unwrap();
            let b = UdpSocket::bind_with(addr, o).unwrap();
            let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            assert!(aa.ip().is_loopback() && aa.port() != 0);
            thread::scope(|s| {
                // Parks first on purpose: the datagram has to wake it.
                let h = s.spawn(|| {
                    let mut buf = [0u8; 64];
                    let (n, from) = b.recv_from(&mut buf).unwrap();
                    b.send_to(&buf[..n], from).unwrap();
                    (buf[..n].to_vec(), from)
                });
                thread::sleep(Duration::from_millis(10));
                assert_eq!(a.send_to(b"datagram", ba).unwrap(), 8);
                let (got, from) = h.join().unwrap();
                assert_eq!(got, b"datagram");
                assert_eq!(from, aa);
                let mut buf = [0u8; 64];
                let (n, from) = a.recv_from(&mut buf).unwrap();
                assert_eq!((&buf[..n], from), (&b"datagram"[..], ba));
            });
        }
    }
}

#[test]
fn socket_options_set_and_get() {
    let sol = libc::SOL_SOCKET;
    for path in PATHS {
        let o = opts(path);
        let (c, _s) = tcp_pair(v4(), o);
        // The kernel doubles buffer sizes for its bookkeeping.
        c.set_read_buffer(64 << 10).unwrap();
        assert!(c.getsockopt(sol, libc::SO_RCVBUF).unwrap() >= 64 << 10);
        c.set_write_buffer(96 << 10).unwrap();
        assert!(c.getsockopt(sol, libc::SO_SNDBUF).unwrap() >= 96 << 10);
        c.set_read_buffer(8 << 10).unwrap();
        assert!(c.getsockopt(sol, libc::SO_RCVBUF).unwrap() < 64 << 10);
        for on in [true, false] {
            c.set_reuse_addr(on).unwrap();
            assert_eq!(
                c.getsockopt(sol, libc::SO_REUSEADDR).unwrap(),
                i32::from(on)
            );
            c.set_keepalive(on).unwrap();
            assert_eq!(
                c.getsockopt(sol, libc::SO_KEEPALIVE).unwrap(),
                i32::from(on)
            );
            c.set_nodelay(on).unwrap();
            assert_eq!(
                c.getsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY).unwrap(),
                i32::from(on)
            );
            c.set_dont_route(on).unwrap();
            assert_eq!(
                c.getsockopt(sol, libc::SO_DONTROUTE).unwrap(),
                i32::from(on)
            );
        }
        // A 4-byte read of SO_LINGER is its l_onoff.
        c.set_linger(Some(Duration::from_secs(3))).unwrap();
        assert_eq!(c.getsockopt(sol, libc::SO_LINGER).unwrap(), 1);
        c.set_linger(None).unwrap();
        assert_eq!(c.getsockopt(sol, libc::SO_LINGER).unwrap(), 0);
        // Accepted and dialled streams start with TCP_NODELAY, as Go's.
        let (c2, s2) = tcp_pair(v4(), o);
        for t in [&c2, &s2] {
            assert_eq!(
                t.getsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY).unwrap(),
                1
            );
        }
        // Listeners are SO_REUSEADDR.
        let l = TcpListener::bind_with(v4(), o).unwrap();
        assert_eq!(l.getsockopt(sol, libc::SO_REUSEADDR).unwrap(), 1);
        assert_eq!(l.getsockopt(sol, libc::SO_ACCEPTCONN).unwrap(), 1);
        // UDP and Unix sockets take the buffer options too.
        let u = UdpSocket::bind_with(v4(), o).unwrap();
        u.set_read_buffer(128 << 10).unwrap();
        assert!(u.getsockopt(sol, libc::SO_RCVBUF).unwrap() >= 128 << 10);
        assert_eq!(u.getsockopt(sol, libc::SO_TYPE).unwrap(), libc::SOCK_DGRAM);
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("opts.sock");
        let ul = UnixListener::bind_with(&sock, o).unwrap();
        let (uc, _us) = unix_pair(&ul, &sock, o);
        uc.set_write_buffer(64 << 10).unwrap();
        assert!(uc.getsockopt(sol, libc::SO_SNDBUF).unwrap() >= 64 << 10);
        // A bad option is the kernel's error, passed through as is.
        let e = c.getsockopt(sol, -1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOPROTOOPT), "{e:?}");
    }
}

/// A bound close: a read on a fresh socket blocks, and close is what ends it
/// (the socket has no deadline and the peer stays silent).
#[test]
fn probe_sees_the_park_and_the_eviction() {
    for path in PATHS {
        let (c, _s) = tcp_pair(v4(), opts(path));
        let (rec, parked) = Recorder::with_park_signal();
        thread::scope(|s| {
            let h = s.spawn(|| {
                let _g = rec.install();
                (&c).read(&mut [0u8; 4])
            });
            await_park(&parked, "read");
            c.close().unwrap();
            expect_closed(h.join().unwrap(), "read");
        });
        let owner = c.owner_id();
        // Every park ended in a wake-up. Not exactly one of each: on the
        // server path a freshly dialled socket's own registration event
        // (EPOLLOUT|EPOLLHUP, reported before it connected) may be
        // dispatched after the read began, waking it once for nothing; it
        // reads EAGAIN and parks again (contract_stale.rs counts this).
        let parks = rec.count_sync(SyncPoint::BeforePark, owner);
        assert!(parks >= 1, "{path:?}: the read never parked");
        assert_eq!(
            rec.count_sync(SyncPoint::AfterWake, owner),
            parks,
            "{path:?}: a park without its wake-up"
        );
        // Each park follows a read that found nothing, and the wake-up that
        // said "closed" is the last: the socket is not read after it.
        let reads = rec.count_sys(SysOp::Read, owner);
        assert!(
            reads >= parks,
            "{path:?}: {parks} parks after {reads} reads"
        );
        let events = rec.events();
        let last_wake = events.iter().rposition(
            |e| matches!(e, Event::Sync { point: SyncPoint::AfterWake, owner: o } if *o == owner),
        );
        let last_read = events.iter().rposition(
            |e| matches!(e, Event::Sys { op: SysOp::Read, owner: o, .. } if *o == owner),
        );
        assert!(
            last_read < last_wake,
            "{path:?}: read after the closing wake-up: {events:?}"
        );
    }
}

//! std's `set_nonblocking` on every socket type, on both wait paths: an
//! operation that would park returns `WouldBlock` (EAGAIN, as std) instead;
//! data that is there is read; `set_nonblocking(false)` parks again; a
//! nonblocking write reports what fit; and the Close contract still wins:
//! an operation on a closed socket returns the closed error, not
//! `WouldBlock`.

mod close_support;
mod common;

use close_support::*;
use common::*;
use netfd::unix::{UnixDatagram, UnixListener, UnixStream};
use netfd::{TcpListener, TcpStream, UdpSocket};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

fn expect_would_block<T: std::fmt::Debug>(r: io::Result<T>, what: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{what}: {e:?}");
            assert_eq!(e.raw_os_error(), Some(libc::EAGAIN), "{what}: {e:?}");
        }
        Ok(v) => panic!("{what}: expected WouldBlock, got Ok({v:?})"),
    }
}

/// Retry a nonblocking `op` until it stops answering `WouldBlock` (what a
/// std user's event loop does), bounded by [`HANG`].
fn until_ready<T>(what: &str, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let t0 = Instant::now();
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(
                    t0.elapsed() < HANG,
                    "{what}: still WouldBlock after {HANG:?}"
                );
                std::thread::yield_now();
            }
            other => return other,
        }
    }
}

#[test]
fn tcp_stream_read_write_and_parking_again() {
    let _w = watchdog("nonblocking tcp stream", Duration::from_secs(60));
    for path in PATHS {
        for addr in loopbacks() {
            let what = format!("{path:?} {addr}");
            let (c, s) = tcp_pair(addr, opts(path));
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 8];
            expect_would_block((&s).read(&mut buf), &format!("{what}: read, empty"));
            expect_would_block(s.peek(&mut buf), &format!("{what}: peek, empty"));
            // The read timeout does not turn WouldBlock into a timeout.
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            expect_would_block((&s).read(&mut buf), &format!("{what}: read, timeout set"));
            s.set_read_timeout(None).unwrap();

            (&c).write_all(b"data").unwrap();
            let n = until_ready(&what, || (&s).read(&mut buf)).unwrap();
            assert_eq!(&buf[..n], &b"data"[..n], "{what}");
            let mut got = n;
            while got < 4 {
                got += until_ready(&what, || (&s).read(&mut buf[got..4])).unwrap();
            }
            assert_eq!(&buf[..4], b"data", "{what}");

            // Back to blocking: the read parks until the peer writes.
            s.set_nonblocking(false).unwrap();
            let r = park_then(
                &format!("{what}: read after set_nonblocking(false)"),
                || (&s).read(&mut [0u8; 8]),
                || (&c).write_all(b"x").unwrap(),
            );
            assert_eq!(r.unwrap(), 1, "{what}");

            // A nonblocking writer fills the buffers, then hears WouldBlock;
            // every write before that reported how much went out.
            c.set_nonblocking(true).unwrap();
            let chunk = vec![1u8; 1 << 20];
            let mut sent = 0usize;
            let err = loop {
                match (&c).write(&chunk) {
                    Ok(n) => {
                        assert!(n > 0 && n <= chunk.len(), "{what}: wrote {n}");
                        sent += n;
                    }
                    Err(e) => break e,
                }
            };
            expect_would_block(Err::<(), _>(err), &format!("{what}: write, full"));
            assert!(sent > 0, "{what}: nothing fit before WouldBlock");
            // Exactly what was reported sent arrives: no write that
            // answered WouldBlock had sent part of its buffer.
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut received = 0usize;
            let mut sink = vec![0u8; 1 << 16];
            loop {
                match (&s).read(&mut sink).unwrap() {
                    0 => break,
                    n => received += n,
                }
            }
            assert_eq!(received, sent, "{what}");
        }
    }
}

#[test]
fn accept_on_a_nonblocking_listener() {
    let _w = watchdog("nonblocking accept", Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let what = format!("{path:?}");
        let l = TcpListener::bind_with(v4(), opts(path)).unwrap();
        l.set_nonblocking(true).unwrap();
        expect_would_block(l.accept(), &format!("{what}: tcp accept, no client"));
        let c = TcpStream::connect_with(l.local_addr().unwrap(), opts(path)).unwrap();
        let (s, peer) = until_ready(&what, || l.accept()).unwrap();
        assert_eq!(peer, c.local_addr().unwrap(), "{what}");
        // The accepted stream blocks, as std's: its read parks.
        let r = park_then(
            &format!("{what}: read on the accepted stream"),
            || (&s).read(&mut [0u8; 4]),
            || (&c).write_all(b"y").unwrap(),
        );
        assert_eq!(r.unwrap(), 1, "{what}");
        // incoming() on a nonblocking listener yields WouldBlock, as std's.
        expect_would_block(
            l.incoming().next().unwrap(),
            &format!("{what}: incoming, no client"),
        );

        let sock = dir.path().join(format!("{}.sock", path.name()));
        let ul = UnixListener::bind_with(&sock, opts(path)).unwrap();
        ul.set_nonblocking(true).unwrap();
        expect_would_block(ul.accept(), &format!("{what}: unix accept, no client"));
        let _uc = UnixStream::connect_with(&sock, opts(path)).unwrap();
        let (us, _) = until_ready(&what, || ul.accept()).unwrap();
        drop(us);

        // Back to blocking: accept parks until a client connects.
        ul.set_nonblocking(false).unwrap();
        let r = park_then(
            &format!("{what}: unix accept after set_nonblocking(false)"),
            || ul.accept().map(drop),
            || drop(UnixStream::connect(&sock).unwrap()),
        );
        r.unwrap();
    }
}

#[test]
fn datagrams_and_unix_streams() {
    let _w = watchdog("nonblocking datagrams", Duration::from_secs(60));
    for path in PATHS {
        let what = format!("{path:?}");
        let mut buf = [0u8; 16];

        let a = UdpSocket::bind_with(v4(), opts(path)).unwrap();
        let b = UdpSocket::bind_with(v4(), opts(path)).unwrap();
        a.set_nonblocking(true).unwrap();
        expect_would_block(a.recv_from(&mut buf), &format!("{what}: udp recv_from"));
        expect_would_block(a.peek_from(&mut buf), &format!("{what}: udp peek_from"));
        a.connect(b.local_addr().unwrap()).unwrap();
        expect_would_block(a.recv(&mut buf), &format!("{what}: udp recv"));
        expect_would_block(a.peek(&mut buf), &format!("{what}: udp peek"));
        b.send_to(b"dgram", a.local_addr().unwrap()).unwrap();
        let n = until_ready(&what, || a.recv(&mut buf)).unwrap();
        assert_eq!(&buf[..n], b"dgram", "{what}");
        a.set_nonblocking(false).unwrap();
        let r = park_then(
            &format!("{what}: udp recv after set_nonblocking(false)"),
            || a.recv(&mut [0u8; 16]),
            || {
                b.send_to(b"z", a.local_addr().unwrap()).unwrap();
            },
        );
        assert_eq!(r.unwrap(), 1, "{what}");

        let (x, y) = UnixDatagram::pair_with(opts(path)).unwrap();
        y.set_nonblocking(true).unwrap();
        expect_would_block(y.recv(&mut buf), &format!("{what}: unixgram recv"));
        expect_would_block(
            y.recv_from(&mut buf),
            &format!("{what}: unixgram recv_from"),
        );
        x.send(b"one").unwrap();
        assert_eq!(y.recv(&mut buf).unwrap(), 3, "{what}");
        // A full peer queue: a nonblocking send answers WouldBlock.
        x.set_nonblocking(true).unwrap();
        let err = loop {
            if let Err(e) = x.send(&[0u8; 1024]) {
                break e;
            }
        };
        expect_would_block(Err::<(), _>(err), &format!("{what}: unixgram send, full"));

        let (p, q) = UnixStream::pair_with(opts(path)).unwrap();
        q.set_nonblocking(true).unwrap();
        expect_would_block((&q).read(&mut buf), &format!("{what}: unix stream read"));
        (&p).write_all(b"abc").unwrap();
        assert_eq!((&q).read(&mut buf).unwrap(), 3, "{what}");
    }
}

#[test]
fn a_clone_starts_with_the_setting_then_has_its_own() {
    for path in PATHS {
        let what = format!("{path:?}");
        let (p, q) = UnixStream::pair_with(opts(path)).unwrap();
        q.set_nonblocking(true).unwrap();
        let clone = q.try_clone().unwrap();
        expect_would_block((&clone).read(&mut [0u8; 4]), &format!("{what}: clone"));
        clone.set_nonblocking(false).unwrap();
        expect_would_block((&q).read(&mut [0u8; 4]), &format!("{what}: original"));
        let r = park_then(
            &format!("{what}: the clone blocks again"),
            || (&clone).read(&mut [0u8; 4]),
            || (&p).write_all(b"c").unwrap(),
        );
        assert_eq!(r.unwrap(), 1, "{what}");
    }
}

#[test]
fn close_wins_over_would_block() {
    let _w = watchdog("nonblocking close", Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let what = format!("{path:?}");
        let mut buf = [0u8; 8];

        let (c, s) = tcp_pair(v4(), opts(path));
        s.set_nonblocking(true).unwrap();
        s.close().unwrap();
        expect_closed((&s).read(&mut buf), &format!("{what}: tcp read"));
        expect_closed((&s).write(b"x"), &format!("{what}: tcp write"));
        expect_closed(s.peek(&mut buf), &format!("{what}: tcp peek"));
        expect_closed(
            s.set_nonblocking(false),
            &format!("{what}: set_nonblocking"),
        );
        drop(c);

        let l = TcpListener::bind_with(v4(), opts(path)).unwrap();
        l.set_nonblocking(true).unwrap();
        l.close().unwrap();
        expect_closed(l.accept(), &format!("{what}: tcp accept"));

        let u = UdpSocket::bind_with(v4(), opts(path)).unwrap();
        u.set_nonblocking(true).unwrap();
        u.close().unwrap();
        expect_closed(u.recv_from(&mut buf), &format!("{what}: udp recv_from"));
        expect_closed(u.recv(&mut buf), &format!("{what}: udp recv"));

        let sock = dir.path().join(format!("{}.sock", path.name()));
        let ul = UnixListener::bind_with(&sock, opts(path)).unwrap();
        ul.set_nonblocking(true).unwrap();
        ul.close().unwrap();
        expect_closed(ul.accept(), &format!("{what}: unix accept"));

        let (p, _q) = UnixStream::pair_with(opts(path)).unwrap();
        p.set_nonblocking(true).unwrap();
        p.close().unwrap();
        expect_closed((&p).read(&mut buf), &format!("{what}: unix read"));

        let (x, _y) = UnixDatagram::pair_with(opts(path)).unwrap();
        x.set_nonblocking(true).unwrap();
        x.close().unwrap();
        expect_closed(x.recv(&mut buf), &format!("{what}: unixgram recv"));
        expect_closed(x.send(b"x"), &format!("{what}: unixgram send"));

        // A parked blocking read that Close wakes still gets the closed
        // error after a set_nonblocking(true) from a third party.
        let (r, _w2) = UnixStream::pair_with(opts(path)).unwrap();
        close_unparks(
            &format!("{what}: parked read, nonblocking set, then Close"),
            || (&r).read(&mut [0u8; 8]),
            || {
                r.set_nonblocking(true)?;
                r.close()
            },
        );
    }
}

/// WouldBlock is a nonblocking socket's "not now": the race helper's
/// workers retry it like a success and stop only at the closed error.
fn not_now_is_ok(r: io::Result<usize>) -> io::Result<usize> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

#[test]
fn nonblocking_ops_racing_close_see_only_contract_errors() {
    let _w = watchdog("nonblocking race", Duration::from_secs(120));
    for path in PATHS {
        let read = |p: &(UnixStream, UnixStream)| not_now_is_ok((&p.0).read(&mut [0u8; 64]));
        let write = |p: &(UnixStream, UnixStream)| not_now_is_ok((&p.0).write(&[1u8; 4096]));
        let peer = |p: &(UnixStream, UnixStream)| {
            // Keeps data arriving for the nonblocking reader; the peer's own
            // errors end the worker only through Close of p.0.
            let _ = (&p.1).write(&[2u8; 64]);
            not_now_is_ok(p.0.peek(&mut [0u8; 8]))
        };
        race_close(
            &format!("{path:?}: nonblocking unix stream"),
            150,
            || {
                let p = UnixStream::pair_with(opts(path)).unwrap();
                p.0.set_nonblocking(true).unwrap();
                p.1.set_nonblocking(true).unwrap();
                p
            },
            |p| p.0.close(),
            &[&read, &write, &peer],
        );
    }
}

#[test]
fn every_lifetime_protocol_honours_the_flag() {
    // The flag sits in the poller every protocol shares, so the historical
    // protocols answer WouldBlock too (and refuse it once closed: each
    // protocol's own closed check).
    for variant in netfd::Variant::ALL {
        for path in PATHS {
            let what = format!("{variant} {path:?}");
            let o = netfd::Options::for_variant(variant).with_wait(path);
            let (p, q) = UnixStream::pair_with(o).unwrap();
            q.set_nonblocking(true).unwrap();
            expect_would_block((&q).read(&mut [0u8; 4]), &format!("{what}: read"));
            (&p).write_all(b"v").unwrap();
            assert_eq!((&q).read(&mut [0u8; 4]).unwrap(), 1, "{what}");
            q.set_nonblocking(false).unwrap();
            let r = park_then(
                &format!("{what}: blocking again"),
                || (&q).read(&mut [0u8; 4]),
                || (&p).write_all(b"w").unwrap(),
            );
            assert_eq!(r.unwrap(), 1, "{what}");
            q.close().unwrap();
            expect_closed(q.set_nonblocking(true), &format!("{what}: after close"));
        }
    }
}

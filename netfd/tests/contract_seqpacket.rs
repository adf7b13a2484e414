//! The Close contract on Unix seqpacket sockets (`UnixSeqpacketListener`,
//! `UnixSeqpacket`), on both wait paths: Close wakes a parked recv, send
//! and accept with the closed error; every operation after Close fails with
//! it; deadlines and timeouts end a parked recv or accept; operations racing
//! Close see only contract errors and no syscall names a released number.
//! And what makes the type worth having: record boundaries are kept.

mod close_support;
mod common;

use close_support::*;
use common::*;
use netfd::unix::{SocketAddr, UnixSeqpacket, UnixSeqpacketListener};
use std::time::{Duration, Instant};

/// A connected pair through a listener bound in `dir` (client, server).
fn connected(
    dir: &std::path::Path,
    name: &str,
    o: netfd::Options,
) -> (UnixSeqpacketListener, UnixSeqpacket, UnixSeqpacket) {
    let path = dir.join(name);
    let l = UnixSeqpacketListener::bind_with(&path, o).unwrap();
    let c = UnixSeqpacket::connect_with(&path, o).unwrap();
    let (s, _) = l.accept().unwrap();
    (l, c, s)
}

#[test]
fn record_boundaries_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let (_l, c, s) = connected(dir.path(), &format!("rec-{}", path.name()), opts(path));
        let (x, y) = UnixSeqpacket::pair_with(opts(path)).unwrap();
        for (what, a, b) in [("accepted", &c, &s), ("pair", &x, &y)] {
            let what = format!("{path:?} {what}");
            for rec in [&b"first"[..], b"", b"third record", b"4"] {
                assert_eq!(a.send(rec).unwrap(), rec.len(), "{what}");
            }
            let mut buf = [0u8; 64];
            // Peek shows the next record and leaves it.
            assert_eq!(b.peek(&mut buf).unwrap(), 5, "{what}");
            for rec in [&b"first"[..], b"", b"third record", b"4"] {
                let n = b.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], rec, "{what}");
            }
            // A short buffer takes the start of one record; the rest of it
            // is gone, the next record is whole.
            a.send(b"truncated").unwrap();
            a.send(b"next").unwrap();
            let mut short = [0u8; 4];
            assert_eq!(b.recv(&mut short).unwrap(), 4, "{what}");
            assert_eq!(&short, b"trun", "{what}");
            assert_eq!(b.recv(&mut buf).unwrap(), 4, "{what}");
            assert_eq!(&buf[..4], b"next", "{what}");
        }
        // The peer gone: recv reports the end.
        drop(c);
        assert_eq!(s.recv(&mut [0u8; 8]).unwrap(), 0, "{path:?}: eof");
        y.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(x.recv(&mut [0u8; 8]).unwrap(), 0, "{path:?}: eof");
    }
}

#[test]
fn names_abstract_and_autobind() {
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let p = dir.path().join(format!("names-{}", path.name()));
        let (l, c, s) = {
            let l = UnixSeqpacketListener::bind_with(&p, opts(path)).unwrap();
            let c = UnixSeqpacket::connect_with(&p, opts(path)).unwrap();
            let (s, from) = l.accept().unwrap();
            assert!(from.is_unnamed(), "{from:?}");
            (l, c, s)
        };
        assert_eq!(l.local_addr().unwrap().as_pathname(), Some(p.as_path()));
        assert_eq!(l.local_path().unwrap().as_deref(), Some(p.as_path()));
        assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
        assert_eq!(s.local_addr().unwrap().as_pathname(), Some(p.as_path()));
        assert!(c.local_addr().unwrap().is_unnamed());
        let dbg = format!("{l:?} {c:?}");
        assert!(dbg.contains("UnixSeqpacketListener") && dbg.contains("UnixSeqpacket {"));

        let auto =
            UnixSeqpacketListener::bind_addr_with(&SocketAddr::autobind(), opts(path)).unwrap();
        let name = auto.local_addr().unwrap();
        assert!(name.as_abstract_name().is_some(), "{name:?}");
        let c2 = UnixSeqpacket::connect_addr_with(&name, opts(path)).unwrap();
        let (s2, _) = auto.accept().unwrap();
        c2.send(b"abstract").unwrap();
        assert_eq!(s2.recv(&mut [0u8; 16]).unwrap(), 8);
        // incoming() yields connections, then the closed error once, then ends.
        let c3 = UnixSeqpacket::connect_addr_with(&name, opts(path)).unwrap();
        let mut incoming = auto.incoming();
        let s3 = incoming.next().unwrap().unwrap();
        c3.send(b"x").unwrap();
        assert_eq!(s3.recv(&mut [0u8; 4]).unwrap(), 1);
        auto.close().unwrap();
        expect_closed(incoming.next().unwrap(), "incoming after close");
        assert!(incoming.next().is_none());
    }
}

#[test]
fn close_unparks_recv_send_and_accept() {
    let _w = watchdog("seqpacket close_unparks", Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let (a, _b) = UnixSeqpacket::pair_with(opts(path)).unwrap();
        close_unparks(
            &format!("{path:?}: recv on a pair"),
            || a.recv(&mut [0u8; 64]),
            || a.close(),
        );

        let (l, _c, s) = connected(dir.path(), &format!("cu-{}", path.name()), opts(path));
        close_unparks(
            &format!("{path:?}: recv on an accepted connection"),
            || s.peek(&mut [0u8; 64]),
            || s.close(),
        );
        close_unparks(
            &format!("{path:?}: accept"),
            || l.accept().map(drop),
            || l.close(),
        );

        // A send parks once the peer's receive queue is full.
        let (a, b) = UnixSeqpacket::pair_with(opts(path)).unwrap();
        close_unparks(
            &format!("{path:?}: send to a full peer"),
            || -> std::io::Result<()> {
                loop {
                    a.send(&[7u8; 1024])?;
                }
            },
            || a.close(),
        );
        drop(b);
    }
}

#[test]
fn every_operation_after_close_fails_with_the_closed_error() {
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let (l, c, _s) = connected(dir.path(), &format!("ac-{}", path.name()), opts(path));
        c.close().unwrap();
        let mut buf = [0u8; 8];
        expect_closed(c.close(), "second close");
        expect_closed(c.send(b"x"), "send");
        expect_closed(c.recv(&mut buf), "recv");
        expect_closed(c.peek(&mut buf), "peek");
        expect_closed(c.local_addr(), "local_addr");
        expect_closed(c.peer_addr(), "peer_addr");
        expect_closed(c.shutdown(std::net::Shutdown::Both), "shutdown");
        expect_closed(c.set_read_timeout(None), "set_read_timeout");
        expect_closed(c.set_read_deadline(None), "set_read_deadline");
        expect_closed(c.set_nonblocking(true), "set_nonblocking");
        expect_closed(c.try_clone(), "try_clone");
        expect_closed(c.take_error(), "take_error");
        l.close().unwrap();
        expect_closed(l.accept(), "accept");
        expect_closed(l.local_addr(), "listener local_addr");
        expect_closed(l.set_read_deadline(None), "listener set_read_deadline");
    }
}

#[test]
fn deadlines_and_timeouts_end_a_parked_recv_and_accept() {
    let _w = watchdog("seqpacket deadlines", Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let (a, _b) = UnixSeqpacket::pair_with(opts(path)).unwrap();
        a.set_read_deadline(Some(Instant::now())).unwrap();
        expect_timeout(a.recv(&mut [0u8; 8]), "recv past its deadline");
        a.set_read_deadline(None).unwrap();

        let r = park_then(
            &format!("{path:?}: recv, deadline moved into the past"),
            || a.recv(&mut [0u8; 8]),
            || a.set_read_deadline(Some(Instant::now())).unwrap(),
        );
        expect_timeout(r, "recv");
        a.set_read_deadline(None).unwrap();

        let timeout = Duration::from_millis(50);
        a.set_read_timeout(Some(timeout)).unwrap();
        let t0 = Instant::now();
        expect_timeout(a.recv(&mut [0u8; 8]), "recv with a timeout");
        assert!(t0.elapsed() >= timeout, "{path:?}: timed out early");
        // The timeout still set: a recv parked at Close reports Close.
        a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        close_unparks(
            &format!("{path:?}: recv with a timeout, then Close"),
            || a.recv(&mut [0u8; 8]),
            || a.close(),
        );

        let l = UnixSeqpacketListener::bind_with(
            dir.path().join(format!("dl-{}", path.name())),
            opts(path),
        )
        .unwrap();
        let r = park_then(
            &format!("{path:?}: accept, deadline moved into the past"),
            || l.accept().map(drop),
            || l.set_read_deadline(Some(Instant::now())).unwrap(),
        );
        expect_timeout(r, "accept");
    }
}

#[test]
fn nonblocking_recv_and_accept() {
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let (l, c, s) = connected(dir.path(), &format!("nb-{}", path.name()), opts(path));
        s.set_nonblocking(true).unwrap();
        let e = s.recv(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{path:?}: {e:?}");
        c.send(b"rec").unwrap();
        assert_eq!(s.recv(&mut [0u8; 8]).unwrap(), 3);
        l.set_nonblocking(true).unwrap();
        let e = l.accept().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{path:?}: {e:?}");
    }
}

#[test]
fn ops_racing_close_see_only_contract_errors() {
    let _w = watchdog("seqpacket race", Duration::from_secs(120));
    for path in PATHS {
        let recv = |p: &(UnixSeqpacket, UnixSeqpacket)| p.0.recv(&mut [0u8; 64]);
        let send = |p: &(UnixSeqpacket, UnixSeqpacket)| p.0.send(&[1u8; 256]);
        let peer_send = |p: &(UnixSeqpacket, UnixSeqpacket)| {
            // Keeps the closing side's queue busy; the peer's own errors
            // (its peer closed) end the worker only through Close of p.0.
            let _ = p.1.send(&[2u8; 64]);
            p.0.peek(&mut [0u8; 8])
        };
        race_close(
            &format!("{path:?}: seqpacket"),
            150,
            || UnixSeqpacket::pair_with(opts(path)).unwrap(),
            |p| p.0.close(),
            &[&recv, &send, &peer_send],
        );
    }
}

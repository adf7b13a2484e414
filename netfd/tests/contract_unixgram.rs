//! The Close contract on Unix datagram sockets (`UnixDatagram`), on both
//! wait paths: a parked recv, recv_from or send returns the closed error;
//! every operation after Close fails with it at once; operations racing
//! Close see only contract errors and no syscall names a released number.
//! Also Linux's abstract names and autobind.

mod close_support;
mod common;

use close_support::*;
use common::*;
use netfd::unix::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

#[test]
fn close_unparks_recv_recv_from_and_send() {
    let _w = watchdog("unixgram close_unparks", Duration::from_secs(60));
    let dir = tempfile::tempdir().unwrap();
    for path in PATHS {
        let (a, b) = UnixDatagram::pair_with(opts(path)).unwrap();
        close_unparks(
            &format!("{path:?}: recv"),
            || a.recv(&mut [0u8; 64]),
            || a.close(),
        );
        drop(b);

        let bound = dir.path().join(format!("{}.sock", path.name()));
        let s = UnixDatagram::bind_with(&bound, opts(path)).unwrap();
        close_unparks(
            &format!("{path:?}: recv_from"),
            || s.recv_from(&mut [0u8; 64]),
            || s.close(),
        );

        // A send parks once the peer's receive queue is full.
        let (a, b) = UnixDatagram::pair_with(opts(path)).unwrap();
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
        let target = dir.path().join(format!("t-{}.sock", path.name()));
        let _t = UnixDatagram::bind_with(&target, opts(path)).unwrap();
        let (a, _b) = UnixDatagram::pair_with(opts(path)).unwrap();
        a.close().unwrap();
        let mut buf = [0u8; 8];
        expect_closed(a.close(), "second close");
        expect_closed(a.send(b"x"), "send");
        expect_closed(a.recv(&mut buf), "recv");
        expect_closed(a.peek(&mut buf), "peek");
        expect_closed(a.send_to(b"x", &target), "send_to");
        expect_closed(a.recv_from(&mut buf), "recv_from");
        expect_closed(a.connect(&target), "connect");
        expect_closed(a.local_addr(), "local_addr");
        expect_closed(
            a.set_read_timeout(Some(Duration::from_secs(1))),
            "set_read_timeout",
        );
        expect_closed(a.set_read_deadline(None), "set_read_deadline");
        expect_closed(a.try_clone(), "try_clone");
        expect_closed(a.take_error(), "take_error");
    }
}

#[test]
fn deadlines_and_timeouts_end_a_parked_recv() {
    let _w = watchdog("unixgram deadlines", Duration::from_secs(60));
    for path in PATHS {
        let (a, _b) = UnixDatagram::pair_with(opts(path)).unwrap();
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
    }
}

#[test]
fn ops_racing_close_see_only_contract_errors() {
    let _w = watchdog("unixgram race", Duration::from_secs(120));
    for path in PATHS {
        let recv = |p: &(UnixDatagram, UnixDatagram)| p.0.recv(&mut [0u8; 64]);
        let send = |p: &(UnixDatagram, UnixDatagram)| p.0.send(&[1u8; 256]);
        let peer_send = |p: &(UnixDatagram, UnixDatagram)| {
            // Keeps the closing side's receive queue busy; its own errors
            // (the peer closed) end the worker only through Close of p.0.
            let _ = p.1.send(&[2u8; 64]);
            p.0.peek(&mut [0u8; 8])
        };
        race_close(
            &format!("{path:?}: unixgram"),
            150,
            || UnixDatagram::pair_with(opts(path)).unwrap(),
            |p| p.0.close(),
            &[&recv, &send, &peer_send],
        );
    }
}

#[test]
fn abstract_names_and_autobind() {
    for path in PATHS {
        let auto = UnixDatagram::bind_addr_with(&SocketAddr::autobind(), opts(path)).unwrap();
        let name = auto.local_addr().unwrap();
        let chosen = name
            .as_abstract_name()
            .expect("autobind gives an abstract name");
        assert!(!chosen.is_empty());
        assert!(name.as_pathname().is_none() && !name.is_unnamed());

        let sender = UnixDatagram::unbound_with(opts(path)).unwrap();
        sender.send_to_addr(b"to autobound", &name).unwrap();
        let mut buf = [0u8; 32];
        assert_eq!(auto.recv(&mut buf).unwrap(), 12);

        let wanted = format!("netfd-test-{}-{}", std::process::id(), path.name());
        let named = UnixDatagram::bind_addr_with(
            &SocketAddr::from_abstract_name(&wanted).unwrap(),
            opts(path),
        )
        .unwrap();
        assert_eq!(
            named.local_addr().unwrap().as_abstract_name(),
            Some(wanted.as_bytes())
        );
        sender
            .connect_addr(&SocketAddr::from_abstract_name(&wanted).unwrap())
            .unwrap();
        sender.send(b"abc").unwrap();
        let (n, from) = named.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"abc");
        assert!(from.is_unnamed(), "{from:?}");
        assert_eq!(format!("{from:?}"), "(unnamed)");
    }
}

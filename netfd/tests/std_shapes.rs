//! Where netfd's std-shaped API meets the Close contract: `incoming()`
//! after Close, conversions of closed sockets, `try_clone` lifetimes,
//! adopted std sockets under the contract, and std-like `Debug`.

mod close_support;
mod common;

use close_support::*;
use common::*;
use netfd::{TcpListener, TcpStream, UdpSocket};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

#[test]
fn incoming_yields_the_closed_error_once_then_ends() {
    let _w = watchdog("incoming after close", Duration::from_secs(30));
    for path in PATHS {
        let l = TcpListener::bind_with("127.0.0.1:0", opts(path)).unwrap();
        let addr = l.local_addr().unwrap();
        let _c = TcpStream::connect(addr).unwrap();
        let mut it = l.incoming();
        assert!(it.next().unwrap().is_ok(), "{path:?}: first connection");
        std::thread::scope(|s| {
            let h = s.spawn(move || it.collect::<Vec<_>>());
            l.close().unwrap();
            let rest = h.join().unwrap();
            assert_eq!(rest.len(), 1, "{path:?}: {rest:?}");
            expect_closed(rest.into_iter().next().unwrap(), "incoming after close");
        });
    }
}

#[test]
fn an_adopted_std_socket_is_under_the_close_contract() {
    let _w = watchdog("adopted std socket", Duration::from_secs(30));
    let std_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let u = UdpSocket::from(std_udp);
    close_unparks(
        "adopted udp: recv_from",
        || u.recv_from(&mut [0u8; 8]),
        || u.close(),
    );

    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let l = TcpListener::from(std_l);
    close_unparks(
        "adopted listener: accept",
        || l.accept().map(drop),
        || l.close(),
    );
}

#[test]
fn into_owned_fd_hands_over_a_blocking_descriptor_and_refuses_a_closed_socket() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    let mut std_side = std::net::TcpStream::from(OwnedFd::from(s));
    (&c).write_all(b"abc").unwrap();
    let mut buf = [0u8; 3];
    // Blocking, as std's sockets are: read_exact waits rather than WouldBlock.
    std_side.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"abc");

    c.close().unwrap();
    assert_eq!(c.as_raw_fd(), -1);
    expect_closed(c.into_owned_fd(), "into_owned_fd after close");
    let closed = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    closed.close().unwrap();
    let panic = std::panic::catch_unwind(move || OwnedFd::from(closed)).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(msg.contains(netfd::CLOSED_MESSAGE), "{msg}");
}

#[test]
fn into_owned_fd_keeps_a_nonblocking_socket_nonblocking() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    let mut std_side = std::net::TcpStream::from(OwnedFd::from(s));
    let e = std_side.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e:?}");
}

#[test]
fn quickack_round_trips_and_refuses_a_closed_socket() {
    // std's Linux TcpStreamExt has it since 1.89, past the MSRV, so it is
    // not in std_dropin.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_quickack(true).unwrap();
    assert!(c.quickack().unwrap());
    c.set_quickack(false).unwrap();
    assert!(!c.quickack().unwrap());
    c.close().unwrap();
    expect_closed(c.set_quickack(true), "set_quickack after close");
    expect_closed(c.quickack(), "quickack after close");
}

#[test]
fn a_clone_has_its_own_lifetime() {
    for path in PATHS {
        let (a, b) = tcp_pair(v4(), opts(path));
        let a2 = a.try_clone().unwrap();
        assert_ne!(a.owner_id(), a2.owner_id());
        a.close().unwrap();
        (&a2).write_all(b"still open").unwrap();
        let mut buf = [0u8; 10];
        (&b).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"still open");
        expect_closed((&a).write(b"x"), "write on the closed original");
    }
}

#[test]
fn debug_is_shaped_like_std() {
    let (a, _b) = tcp_pair(v4(), opts(netfd::WaitPath::Direct));
    let text = format!("{a:?}");
    let fd = a.as_raw_fd();
    let (local, peer) = (a.local_addr().unwrap(), a.peer_addr().unwrap());
    assert_eq!(
        text,
        format!("TcpStream {{ addr: {local:?}, peer: {peer:?}, fd: {fd} }}")
    );
    a.close().unwrap();
    assert_eq!(format!("{a:?}"), "TcpStream { closed: true }");
}

#[test]
fn with_fd_lends_the_open_descriptor() {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let n = u.with_fd(|fd| fd.as_raw_fd()).unwrap();
    assert_eq!(n, u.as_raw_fd());
    u.close().unwrap();
    expect_closed(u.with_fd(|_| ()), "with_fd after close");
}

#[test]
fn a_timeout_and_a_deadline_combine_to_the_earlier() {
    let _w = watchdog("timeout and deadline", Duration::from_secs(60));
    for path in PATHS {
        let (a, _b) = tcp_pair(v4(), opts(path));
        let mut buf = [0u8; 8];

        // The deadline is the earlier: it applies, timeout set or not.
        a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_millis(100);
        a.set_read_deadline(Some(deadline)).unwrap();
        expect_timeout((&a).read(&mut buf), &format!("{path:?}: deadline first"));
        let now = std::time::Instant::now();
        assert!(now >= deadline, "{path:?}: timed out before the deadline");
        assert!(now < deadline + HANG, "{path:?}: timed out late");

        // The timeout is the earlier: it applies, and the deadline is put
        // back afterwards (a deadline in the past fails at once).
        a.set_read_deadline(Some(std::time::Instant::now() + Duration::from_secs(30)))
            .unwrap();
        a.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let t0 = std::time::Instant::now();
        expect_timeout((&a).read(&mut buf), &format!("{path:?}: timeout first"));
        assert!(t0.elapsed() >= Duration::from_millis(50), "{path:?}: early");

        // A deadline moved while a timed read is parked still wakes it.
        a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let r = park_then(
            &format!("{path:?}: timed read, deadline moved into the past"),
            || (&a).read(&mut [0u8; 8]),
            || {
                a.set_read_deadline(Some(std::time::Instant::now()))
                    .unwrap()
            },
        );
        expect_timeout(r, &format!("{path:?}: timed read"));

        // Cleared, both: the read parks until Close.
        a.set_read_timeout(None).unwrap();
        a.set_read_deadline(None).unwrap();
        assert_eq!(a.read_timeout().unwrap(), None);
        close_unparks(
            &format!("{path:?}: read, no timeout"),
            || (&a).read(&mut [0u8; 8]),
            || a.close(),
        );
    }
}

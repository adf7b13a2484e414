//! The Close contract on connected UDP sockets (`connect`, then `send`,
//! `recv`, `peek`), on both wait paths and on IPv4 and IPv6 loopback.

mod close_support;
mod common;

use close_support::*;
use common::*;
use netfd::UdpSocket;
use std::time::{Duration, Instant};

fn connected(addr: std::net::SocketAddr, o: netfd::Options) -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind_with(addr, o).unwrap();
    let b = UdpSocket::bind_with(addr, o).unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

#[test]
fn close_unparks_recv_and_peek() {
    let _w = watchdog("udp connected close_unparks", Duration::from_secs(60));
    for addr in loopbacks() {
        for path in PATHS {
            let (a, _b) = connected(addr, opts(path));
            close_unparks(
                &format!("{addr} {path:?}: recv"),
                || a.recv(&mut [0u8; 64]),
                || a.close(),
            );
            let (a, _b) = connected(addr, opts(path));
            close_unparks(
                &format!("{addr} {path:?}: peek"),
                || a.peek(&mut [0u8; 64]),
                || a.close(),
            );
        }
    }
}

#[test]
fn connected_socket_talks_only_to_its_peer() {
    for path in PATHS {
        let (a, b) = connected(v4(), opts(path));
        let stranger = UdpSocket::bind_with(v4(), opts(path)).unwrap();
        stranger.send_to(b"noise", a.local_addr().unwrap()).unwrap();
        b.send(b"from b").unwrap();
        let mut buf = [0u8; 16];
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"from b", "{path:?}");
        assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
    }
}

#[test]
fn every_operation_after_close_fails_with_the_closed_error() {
    for path in PATHS {
        let (a, b) = connected(v4(), opts(path));
        let peer = b.local_addr().unwrap();
        a.close().unwrap();
        let mut buf = [0u8; 8];
        expect_closed(a.send(b"x"), "send");
        expect_closed(a.recv(&mut buf), "recv");
        expect_closed(a.peek(&mut buf), "peek");
        expect_closed(a.peek_from(&mut buf), "peek_from");
        expect_closed(a.connect(peer), "connect");
        expect_closed(a.peer_addr(), "peer_addr");
        expect_closed(a.set_read_timeout(None), "set_read_timeout");
        expect_closed(a.read_timeout(), "read_timeout");
        expect_closed(a.ttl(), "ttl");
        let lo = std::net::Ipv4Addr::LOCALHOST;
        expect_closed(a.set_multicast_loop_v4(true), "set_multicast_loop_v4");
        expect_closed(a.multicast_ttl_v4(), "multicast_ttl_v4");
        expect_closed(a.set_multicast_loop_v6(true), "set_multicast_loop_v6");
        expect_closed(a.join_multicast_v4(&lo, &lo), "join_multicast_v4");
        expect_closed(
            a.leave_multicast_v6(&std::net::Ipv6Addr::LOCALHOST, 0),
            "leave_multicast_v6",
        );
        expect_closed(a.set_nonblocking(true), "set_nonblocking");
    }
}

#[test]
fn a_timeout_ends_a_parked_recv_and_close_wins_after() {
    let _w = watchdog("udp connected timeouts", Duration::from_secs(60));
    for path in PATHS {
        let (a, _b) = connected(v4(), opts(path));
        let timeout = Duration::from_millis(50);
        a.set_read_timeout(Some(timeout)).unwrap();
        let t0 = Instant::now();
        expect_timeout(a.recv(&mut [0u8; 8]), "recv with a timeout");
        assert!(t0.elapsed() >= timeout, "{path:?}: timed out early");
        // The timeout still set: a recv parked at Close reports Close.
        a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        close_unparks(
            &format!("{path:?}: recv with a timeout"),
            || a.recv(&mut [0u8; 8]),
            || a.close(),
        );
    }
}

#[test]
fn ops_racing_close_see_only_contract_errors() {
    let _w = watchdog("udp connected race", Duration::from_secs(120));
    for path in PATHS {
        let recv = |p: &(UdpSocket, UdpSocket)| p.0.recv(&mut [0u8; 64]);
        let send = |p: &(UdpSocket, UdpSocket)| p.0.send(&[1u8; 64]);
        let peek = |p: &(UdpSocket, UdpSocket)| {
            let _ = p.1.send(&[2u8; 16]);
            p.0.peek(&mut [0u8; 8])
        };
        race_close(
            &format!("{path:?}: connected udp"),
            150,
            || connected(v4(), opts(path)),
            |p| p.0.close(),
            &[&recv, &send, &peek],
        );
    }
}

//! `AsFd` on every socket type, on both wait paths (`net/lend.rs`): the
//! `BorrowedFd` is open for as long as the borrow, whatever `close` does.
//! - it names the same kernel socket (same address, same data);
//! - every call lends the same descriptor;
//! - Close still ends the socket for the peer (end of stream) and for the
//!   borrower's own calls, while the lent descriptor stays open;
//! - a socket closed before any `as_fd` lends a placeholder: open, not the
//!   socket (not connected);
//! - `as_fd` racing `close` from another thread, 2,000 rounds per wait
//!   path: either the socket's duplicate or the placeholder, always open.

mod common;

use common::*;
use netfd::unix::{UnixDatagram, UnixListener, UnixSeqpacket, UnixStream};
use netfd::{TcpListener, UdpSocket};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// Whether `fd` is an open descriptor (F_GETFD through a duplicate, safely).
fn is_open(fd: BorrowedFd<'_>) -> bool {
    fd.try_clone_to_owned().is_ok()
}

/// A std view of the lent descriptor (a duplicate of it, owned by std).
fn std_tcp(fd: BorrowedFd<'_>) -> std::net::TcpStream {
    let owned: OwnedFd = fd.try_clone_to_owned().expect("dup of the lent fd");
    let s = std::net::TcpStream::from(owned);
    s.set_nonblocking(false).unwrap();
    s
}

#[test]
fn tcp_the_lent_descriptor_is_the_socket_and_outlives_close() {
    let _w = watchdog("as_fd tcp", Duration::from_secs(60));
    for path in PATHS {
        for addr in loopbacks() {
            let what = format!("{path:?} {addr}");
            let (c, s) = tcp_pair(addr, opts(path));
            let lent = s.as_fd();
            assert_eq!(
                lent.as_raw_fd(),
                s.as_fd().as_raw_fd(),
                "{what}: one duplicate"
            );
            assert_ne!(
                lent.as_raw_fd(),
                s.as_raw_fd(),
                "{what}: a duplicate, not netfd's number"
            );
            let view = std_tcp(lent);
            assert_eq!(
                view.local_addr().unwrap(),
                s.local_addr().unwrap(),
                "{what}"
            );
            assert_eq!(view.peer_addr().unwrap(), s.peer_addr().unwrap(), "{what}");
            // Data written by the peer is read through the lent descriptor.
            (&c).write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            (&view).read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"ping", "{what}");

            s.close().unwrap();
            assert!(
                is_open(lent),
                "{what}: the lent descriptor closed with the socket"
            );
            assert_eq!(s.as_raw_fd(), -1, "{what}: netfd's number is released");
            // The peer sees the end, and the borrower's calls end too.
            let mut rest = Vec::new();
            assert_eq!(
                (&c).read_to_end(&mut rest).unwrap(),
                0,
                "{what}: peer saw no end"
            );
            assert_eq!(
                (&view).read(&mut buf).unwrap(),
                0,
                "{what}: borrower reads on"
            );
            assert!(
                (&view).write_all(b"x").is_err(),
                "{what}: borrower writes on"
            );
            // The lent descriptor is still the same one after Close.
            assert_eq!(s.as_fd().as_raw_fd(), lent.as_raw_fd(), "{what}");
        }
    }
}

#[test]
fn a_socket_closed_before_any_as_fd_lends_a_placeholder() {
    for path in PATHS {
        let (a, b) = UnixStream::pair_with(opts(path)).unwrap();
        a.close().unwrap();
        b.close().unwrap();
        let (pa, pb) = (a.as_fd(), b.as_fd());
        assert!(
            is_open(pa) && is_open(pb),
            "{path:?}: a placeholder must be open"
        );
        assert_eq!(pa.as_raw_fd(), pb.as_raw_fd(), "{path:?}: one placeholder");
        let view = std::os::unix::net::UnixStream::from(pa.try_clone_to_owned().unwrap());
        let e = view
            .peer_addr()
            .expect_err("the placeholder is not connected");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{path:?}: {e}");
    }
}

/// Every type lends an open descriptor of its own socket.
#[test]
fn every_type_lends_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    for (i, path) in PATHS.into_iter().enumerate() {
        let o = opts(path);
        let tl = TcpListener::bind_with(v4(), o).unwrap();
        let std_l = std::net::TcpListener::from(tl.as_fd().try_clone_to_owned().unwrap());
        assert_eq!(std_l.local_addr().unwrap(), tl.local_addr().unwrap());

        let u = UdpSocket::bind_with(v4(), o).unwrap();
        let std_u = std::net::UdpSocket::from(u.as_fd().try_clone_to_owned().unwrap());
        assert_eq!(std_u.local_addr().unwrap(), u.local_addr().unwrap());

        let p = dir.path().join(format!("l{i}.sock"));
        let ul = UnixListener::bind_with(&p, o).unwrap();
        let std_ul =
            std::os::unix::net::UnixListener::from(ul.as_fd().try_clone_to_owned().unwrap());
        assert_eq!(
            std_ul.local_addr().unwrap().as_pathname(),
            Some(p.as_path())
        );

        let g = dir.path().join(format!("g{i}.sock"));
        let ud = UnixDatagram::bind_with(&g, o).unwrap();
        let std_ud =
            std::os::unix::net::UnixDatagram::from(ud.as_fd().try_clone_to_owned().unwrap());
        assert_eq!(
            std_ud.local_addr().unwrap().as_pathname(),
            Some(g.as_path())
        );

        let (sa, sb) = UnixSeqpacket::pair_with(o).unwrap();
        assert!(is_open(sa.as_fd()) && is_open(sb.as_fd()));
        assert_ne!(sa.as_fd().as_raw_fd(), sb.as_fd().as_raw_fd());
        for s in [&sa, &sb] {
            s.close().unwrap();
        }
        tl.close().unwrap();
        u.close().unwrap();
        ul.close().unwrap();
        ud.close().unwrap();
    }
}

/// `as_fd` in one thread, `close` in another: whichever wins, the lent
/// descriptor is open, and it is the socket's duplicate only if `as_fd`
/// came first (then Close shut it down: the peer sees the end).
#[test]
fn as_fd_racing_close_always_lends_an_open_descriptor() {
    let _w = watchdog("as_fd vs close", Duration::from_secs(120));
    for path in PATHS {
        let (mut dup, mut placeholder) = (0, 0);
        for _ in 0..2000 {
            let (a, b) = UnixStream::pair_with(opts(path)).unwrap();
            let lent_raw = std::thread::scope(|s| {
                let lender = s.spawn(|| {
                    let fd = a.as_fd();
                    assert!(is_open(fd));
                    fd.as_raw_fd()
                });
                a.close().unwrap();
                lender.join().unwrap()
            });
            let lent = a.as_fd();
            assert_eq!(
                lent.as_raw_fd(),
                lent_raw,
                "{path:?}: as_fd changed its answer"
            );
            assert!(is_open(lent), "{path:?}");
            let view = std::os::unix::net::UnixStream::from(lent.try_clone_to_owned().unwrap());
            match view.peer_addr() {
                Ok(_) => {
                    dup += 1;
                    let mut buf = [0u8; 1];
                    assert_eq!((&b).read(&mut buf).unwrap(), 0, "{path:?}: peer saw no end");
                }
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{path:?}: {e}");
                    placeholder += 1;
                }
            }
            b.close().unwrap();
        }
        eprintln!("{path:?}: {dup} duplicates, {placeholder} placeholders");
    }
}

#[test]
fn the_borrowed_fd_keeps_its_promise_through_a_concurrent_close() {
    // The kernel hands out the lowest free number: if the lent descriptor
    // were netfd's own, a socket opened right after Close would take it.
    for path in PATHS {
        let (c, s) = tcp_pair(v4(), opts(path));
        let lent = s.as_fd();
        let before = lent.as_raw_fd();
        std::thread::scope(|t| {
            t.spawn(|| s.close().unwrap());
        });
        let newcomer = std::net::UdpSocket::bind(v4()).unwrap();
        assert_ne!(
            newcomer.as_raw_fd(),
            before,
            "{path:?}: the lent number was reused"
        );
        assert_eq!(lent.as_raw_fd(), before);
        assert!(is_open(lent));
        drop(c);
    }
}

//! Every lifetime protocol serves the newer socket kinds and operations
//! correctly when nobody races Close (connected UDP, Unix datagrams and
//! seqpacket sockets, peek, vectored I/O, connect_timeout, try_clone), each
//! on the wait path it was designed with and on the other one, and fails
//! with the closed error after Close. These are the constructors a harness
//! transport calls: `UdpSocket::bind_with(addr, opts)` + `connect`,
//! `UnixDatagram::bind_with` / `unbound_with` / `pair_with(opts)`,
//! `UnixSeqpacketListener::bind_with` and `UnixSeqpacket::connect_with` /
//! `pair_with`, `TcpStream::unconnected(addr, opts)` + `connect_to`.

mod common;

use common::*;
use netfd::unix::{UnixDatagram, UnixSeqpacket, UnixSeqpacketListener};
use netfd::{Options, TcpListener, TcpStream, UdpSocket, Variant, WaitPath};
use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::time::Duration;

fn all_options() -> Vec<Options> {
    let mut v = Vec::new();
    for variant in Variant::ALL {
        for wait in [WaitPath::Direct, WaitPath::Server] {
            v.push(Options::for_variant(variant).with_wait(wait));
        }
    }
    v
}

#[test]
fn connected_udp_under_every_variant() {
    for o in all_options() {
        let a = UdpSocket::bind_with("127.0.0.1:0", o).unwrap();
        let b = UdpSocket::bind_with("127.0.0.1:0", o).unwrap();
        a.connect(b.local_addr().unwrap()).unwrap();
        b.connect(a.local_addr().unwrap()).unwrap();
        let mut buf = [0u8; 16];
        // recv first, so it waits on every protocol's wait path.
        std::thread::scope(|s| {
            let h = s.spawn(|| b.recv(&mut buf));
            a.send(b"hello").unwrap();
            assert_eq!(h.join().unwrap().unwrap(), 5, "{o:?}");
        });
        a.send(b"peeked").unwrap();
        assert_eq!(b.peek(&mut buf).unwrap(), 6, "{o:?}");
        let (n, from) = b.peek_from(&mut buf).unwrap();
        assert_eq!((n, from), (6, a.local_addr().unwrap()), "{o:?}");
        assert_eq!(b.recv(&mut buf).unwrap(), 6, "{o:?}");
        assert_eq!(&buf[..6], b"peeked");
        b.close().unwrap();
        expect_closed(b.recv(&mut buf), &format!("{o:?}: recv after close"));
        expect_closed(b.send(b"x"), &format!("{o:?}: send after close"));
    }
}

#[test]
fn unix_datagrams_under_every_variant() {
    let dir = tempfile::tempdir().unwrap();
    for (i, o) in all_options().into_iter().enumerate() {
        let (x, y) = UnixDatagram::pair_with(o).unwrap();
        let mut buf = [0u8; 16];
        std::thread::scope(|s| {
            let h = s.spawn(|| y.recv(&mut buf));
            x.send(b"pair").unwrap();
            assert_eq!(h.join().unwrap().unwrap(), 4, "{o:?}");
        });
        let path = dir.path().join(format!("{i}.sock"));
        let bound = UnixDatagram::bind_with(&path, o).unwrap();
        let sender = UnixDatagram::unbound_with(o).unwrap();
        sender.send_to(b"to path", &path).unwrap();
        let (n, from) = bound.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"to path", "{o:?}");
        assert!(from.is_unnamed(), "{o:?}");
        bound.close().unwrap();
        expect_closed(
            bound.recv_from(&mut buf),
            &format!("{o:?}: recv_from after close"),
        );
    }
}

#[test]
fn unix_seqpackets_under_every_variant() {
    let dir = tempfile::tempdir().unwrap();
    for (i, o) in all_options().into_iter().enumerate() {
        let path = dir.path().join(format!("{i}.seq"));
        let l = UnixSeqpacketListener::bind_with(&path, o).unwrap();
        // accept and recv first, so they wait on every protocol's wait path.
        let (c, s) = std::thread::scope(|sc| {
            let h = sc.spawn(|| l.accept());
            let c = UnixSeqpacket::connect_with(&path, o).unwrap();
            (c, h.join().unwrap().unwrap().0)
        });
        std::thread::scope(|sc| {
            let h = sc.spawn(|| s.recv(&mut [0u8; 16]));
            c.send(b"rec").unwrap();
            assert_eq!(h.join().unwrap().unwrap(), 3, "{o:?}");
        });
        c.send(b"one").unwrap();
        c.send(b"two!").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.peek(&mut buf).unwrap(), 3, "{o:?}");
        assert_eq!(s.recv(&mut buf).unwrap(), 3, "{o:?}");
        assert_eq!(s.recv(&mut buf).unwrap(), 4, "{o:?}");
        let (x, y) = UnixSeqpacket::pair_with(o).unwrap();
        x.send(b"pair").unwrap();
        assert_eq!(y.recv(&mut buf).unwrap(), 4, "{o:?}");
        s.close().unwrap();
        expect_closed(s.recv(&mut buf), &format!("{o:?}: recv after close"));
        l.close().unwrap();
        expect_closed(l.accept(), &format!("{o:?}: accept after close"));
    }
}

#[test]
fn streams_peek_vectored_clone_and_dial_timeout_under_every_variant() {
    for o in all_options() {
        let l = TcpListener::bind_with("127.0.0.1:0", o).unwrap();
        let addr = l.local_addr().unwrap();
        let c = TcpStream::connect_timeout_with(&addr, Duration::from_secs(10), o).unwrap();
        let (s, _) = l.accept().unwrap();
        let wrote = (&c)
            .write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")])
            .unwrap();
        assert!(wrote > 0, "{o:?}");
        (&c).write_all(&b"abcd"[wrote..]).unwrap();
        let mut peeked = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            n = s.peek(&mut peeked).unwrap();
        }
        assert_eq!(&peeked, b"abcd", "{o:?}");
        let (mut p, mut q) = ([0u8; 1], [0u8; 3]);
        let mut got = 0;
        while got < 4 {
            let mut bufs = [IoSliceMut::new(&mut p), IoSliceMut::new(&mut q)];
            let mut rest = &mut bufs[..];
            IoSliceMut::advance_slices(&mut rest, got);
            got += (&s).read_vectored(rest).unwrap();
        }
        assert_eq!((&p, &q), (b"a", b"bcd"), "{o:?}");

        let c2 = c.try_clone().unwrap();
        c.close().unwrap();
        if o.variant == Variant::Go2009Refcount {
            // Its Close wakes parked operations with shutdown(2), which acts
            // on the kernel socket every clone shares: the clone's write sees
            // the shut-down socket. The 2009 protocol had no dup.
            let e = (&c2).write_all(b"z").unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{o:?}: {e:?}");
        } else {
            (&c2)
                .write_all(b"z")
                .unwrap_or_else(|e| panic!("{o:?}: {e:?}"));
            let mut z = [0u8; 1];
            (&s).read_exact(&mut z).unwrap();
            assert_eq!(&z, b"z", "{o:?}");
        }
        expect_closed(c.connect_to(&addr), &format!("{o:?}: connect after close"));
    }
}

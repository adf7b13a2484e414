//! The single-threaded contract every lifetime protocol keeps: a user who
//! never races Close against another operation sees correct socket
//! behaviour from all four variants, on both wait paths, on real loopback
//! sockets. (What the historical variants do under a race is in
//! `variants_races.rs`.)

use netfd::{
    is_closed, is_timeout, Options, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream,
    Variant, WaitPath,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

const LO4: &str = "127.0.0.1:0";

/// Every wait path a variant can be opened with, its default first.
fn option_sets(variant: Variant) -> [Options; 2] {
    let default = Options::for_variant(variant);
    let other = match default.wait {
        WaitPath::Direct => WaitPath::Server,
        WaitPath::Server => WaitPath::Direct,
    };
    [default, default.with_wait(other)]
}

fn assert_closed<T: std::fmt::Debug>(what: &str, r: io::Result<T>) {
    match r {
        Err(e) if is_closed(&e) => {}
        other => panic!("{what}: expected the closed error, got {other:?}"),
    }
}

fn assert_timeout<T: std::fmt::Debug>(what: &str, r: io::Result<T>) {
    match r {
        Err(e) if is_timeout(&e) => {}
        other => panic!("{what}: expected the timeout error, got {other:?}"),
    }
}

fn tcp_pair(opts: Options, bind: &str) -> (TcpListener, TcpStream, TcpStream) {
    let l = TcpListener::bind_with(bind, opts).unwrap();
    let c = TcpStream::connect_with(l.local_addr().unwrap(), opts).unwrap();
    let (s, peer) = l.accept().unwrap();
    assert_eq!(peer, c.local_addr().unwrap());
    assert_eq!(s.options(), opts, "accepted sockets inherit the options");
    (l, c, s)
}

fn tcp_read_write_close(opts: Options, bind: &str) {
    let (l, c, s) = tcp_pair(opts, bind);
    assert_eq!(c.peer_addr().unwrap(), l.local_addr().unwrap());
    assert_eq!(c.options().variant, opts.variant);

    (&c).write_all(b"ping from client").unwrap();
    let mut buf = [0u8; 16];
    (&s).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping from client");
    (&s).write_all(b"pong").unwrap();
    let mut buf = [0u8; 4];
    (&c).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");

    // A bigger transfer than one socket buffer: both sides must wait.
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::thread::scope(|sc| {
        sc.spawn(|| (&c).write_all(&big).unwrap());
        let mut got = vec![0u8; big.len()];
        (&s).read_exact(&mut got).unwrap();
        assert!(got == big, "stream bytes arrive in order");
    });

    c.set_nodelay(true).unwrap();
    assert_ne!(
        c.getsockopt(libc::IPPROTO_TCP, libc::TCP_NODELAY).unwrap(),
        0
    );
    c.set_read_buffer(64 << 10).unwrap();
    assert!(c.getsockopt(libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap() >= 64 << 10);
    c.set_keepalive(true).unwrap();
    c.set_linger(None).unwrap();

    // The peer's shutdown is an end of file, not an error.
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!((&c).read(&mut [0u8; 8]).unwrap(), 0);

    assert!(!c.is_closed());
    c.close().unwrap();
    assert!(c.is_closed());
    assert_closed("read after close", (&c).read(&mut [0u8; 8]));
    assert_closed("write after close", (&c).write(b"x"));
    assert_closed("option after close", c.set_nodelay(true));
    assert_closed("second close", c.close());
    s.close().unwrap();

    // Close released the number and the port: listening again right away works.
    let addr = l.local_addr().unwrap();
    l.close().unwrap();
    assert_closed("accept after close", l.accept());
    let again = TcpListener::bind_with(addr, opts).unwrap();
    assert_eq!(again.local_addr().unwrap(), addr);
}

fn tcp_deadlines(opts: Options) {
    let (l, c, s) = tcp_pair(opts, LO4);

    let t = Instant::now();
    c.set_read_deadline(Some(t + Duration::from_millis(30)))
        .unwrap();
    assert_timeout("read past its deadline", (&c).read(&mut [0u8; 8]));
    assert!(t.elapsed() >= Duration::from_millis(30), "timed out early");

    // A deadline already in the past fails at once, even with data waiting.
    (&s).write_all(b"data").unwrap();
    c.set_read_deadline(Some(Instant::now() - Duration::from_millis(1)))
        .unwrap();
    assert_timeout("read with a past deadline", (&c).read(&mut [0u8; 8]));
    c.set_read_deadline(None).unwrap();
    let mut buf = [0u8; 4];
    (&c).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"data");

    l.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))
        .unwrap();
    assert_timeout("accept past its deadline", l.accept().map(drop));

    // Nobody reads s: the write fills both buffers, then waits, then times out.
    c.set_write_buffer(16 << 10).unwrap();
    s.set_read_buffer(16 << 10).unwrap();
    c.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)))
        .unwrap();
    let big = vec![7u8; 32 << 20];
    assert_timeout("write past its deadline", (&c).write(&big));
}

fn udp(opts: Options) {
    let a = UdpSocket::bind_with(LO4, opts).unwrap();
    let b = UdpSocket::bind_with(LO4, opts).unwrap();
    let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());

    assert_eq!(a.send_to(b"datagram one", ba).unwrap(), 12);
    let mut buf = [0u8; 64];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"datagram one"[..], aa));

    // recv_from waits for a datagram sent after it parked.
    std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            let mut buf = [0u8; 64];
            let (n, from) = a.recv_from(&mut buf).unwrap();
            (buf[..n].to_vec(), from)
        });
        std::thread::sleep(Duration::from_millis(20));
        b.send_to(b"late", aa).unwrap();
        assert_eq!(h.join().unwrap(), (b"late".to_vec(), ba));
    });

    b.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))
        .unwrap();
    assert_timeout("recv_from past its deadline", b.recv_from(&mut buf));

    a.close().unwrap();
    assert_closed("recv_from after close", a.recv_from(&mut buf));
    assert_closed("send_to after close", a.send_to(b"x", ba));
    assert_closed("second close", a.close());
    // The port is free again.
    UdpSocket::bind_with(aa, opts).unwrap();
}

fn unix(opts: Options) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sock");
    let l = UnixListener::bind_with(&path, opts).unwrap();
    assert_eq!(l.local_path().unwrap().as_deref(), Some(path.as_path()));
    let c = UnixStream::connect_with(&path, opts).unwrap();
    let (s, _) = l.accept().unwrap();
    assert_eq!(c.peer_path().unwrap().as_deref(), Some(path.as_path()));

    (&c).write_all(b"over unix").unwrap();
    let mut buf = [0u8; 9];
    (&s).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"over unix");
    (&s).write_all(b"back").unwrap();
    let mut buf = [0u8; 4];
    (&c).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"back");

    s.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)))
        .unwrap();
    assert_timeout("unix read past its deadline", (&s).read(&mut buf));
    s.set_read_deadline(None).unwrap();

    c.close().unwrap();
    assert_eq!(
        (&s).read(&mut buf).unwrap_or(usize::MAX),
        0,
        "peer sees EOF"
    );
    assert_closed("read after close", (&c).read(&mut buf));
    assert_closed("second close", c.close());
    l.close().unwrap();
    assert_closed("accept after close", l.accept().map(drop));
}

fn dial_refused(opts: Options) {
    // A port nobody listens on: bind, note the port, close. Tests run in
    // parallel in this process, so another test may take the freed port
    // before the dial: then try another port.
    for _ in 0..5 {
        let l = TcpListener::bind_with(LO4, opts).unwrap();
        let addr: SocketAddr = l.local_addr().unwrap();
        l.close().unwrap();
        match TcpStream::connect_with(addr, opts) {
            Err(err) => {
                assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
                return;
            }
            Ok(taken) => taken.close().unwrap(),
        }
    }
    panic!("five closed ports in a row were taken by other tests before the dial");
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

macro_rules! contract {
    ($name:ident, $variant:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn tcp_read_write_accept_close() {
                for opts in option_sets($variant) {
                    tcp_read_write_close(opts, LO4);
                    if ipv6_available() {
                        tcp_read_write_close(opts, "[::1]:0");
                    }
                }
            }

            #[test]
            fn tcp_deadlines() {
                for opts in option_sets($variant) {
                    super::tcp_deadlines(opts);
                }
            }

            #[test]
            fn udp_send_recv_deadline_close() {
                for opts in option_sets($variant) {
                    udp(opts);
                }
            }

            #[test]
            fn unix_stream_read_write_accept_close() {
                for opts in option_sets($variant) {
                    unix(opts);
                }
            }

            #[test]
            fn dial_to_closed_port_is_refused() {
                for opts in option_sets($variant) {
                    dial_refused(opts);
                }
            }
        }
    };
}

contract!(fdmutex, Variant::FdMutex);
contract!(go2009_refcount, Variant::Go2009Refcount);
contract!(go2009_closeack, Variant::Go2009CloseAck);
contract!(naive_close, Variant::NaiveClose);

#[test]
fn historical_variants_default_to_the_poll_server() {
    for v in Variant::ALL {
        let want = if v == Variant::FdMutex {
            WaitPath::Direct
        } else {
            WaitPath::Server
        };
        assert_eq!(Options::for_variant(v).wait, want, "{v}");
        let l = TcpListener::bind_with(LO4, Options::for_variant(v)).unwrap();
        assert_eq!(l.options(), Options::for_variant(v));
    }
}

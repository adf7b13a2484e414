// Typical std::net code. `std_dropin.rs` compiles this file twice: once
// after `use std::net; use std::os::unix::net as unix;` and once after
// `use netfd as net; use netfd::unix;` — nothing else differs.

use std::io::{self, BufRead, BufReader, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::Duration;

fn timed_out(e: &io::Error) -> bool {
    // Portable std code accepts both: std on Unix says WouldBlock.
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

pub fn tcp_echo() -> io::Result<()> {
    let listener = net::TcpListener::bind("127.0.0.1:0")?;
    let addr: net::SocketAddr = listener.local_addr()?;
    listener.set_ttl(64)?;
    assert_eq!(listener.ttl()?, 64);
    assert!(listener.take_error()?.is_none());
    let server = thread::spawn(move || -> io::Result<()> {
        for stream in listener.incoming().take(1) {
            let mut stream = stream?;
            let mut reader = BufReader::new(stream.try_clone()?);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                stream.write_all(line.to_uppercase().as_bytes())?;
                line.clear();
            }
            stream.shutdown(net::Shutdown::Write)?;
        }
        Ok(())
    });

    let mut stream = net::TcpStream::connect(("127.0.0.1", addr.port()))?;
    assert_eq!(stream.peer_addr()?, addr);
    assert_eq!(stream.local_addr()?.ip(), net::IpAddr::V4(net::Ipv4Addr::LOCALHOST));
    stream.set_nodelay(true)?;
    assert!(stream.nodelay()?);
    stream.set_ttl(32)?;
    assert_eq!(stream.ttl()?, 32);
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    assert_eq!(stream.read_timeout()?, Some(Duration::from_secs(10)));
    assert_eq!(stream.write_timeout()?, Some(Duration::from_secs(10)));
    assert!(stream.set_read_timeout(Some(Duration::ZERO)).is_err());
    assert!(stream.take_error()?.is_none());
    assert!(stream.as_raw_fd() >= 0);
    // Code that borrows the descriptor (rustix, nix, an event loop) does so
    // through AsFd: a view of the same socket.
    let borrowed = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
    assert_eq!(borrowed.local_addr()?, stream.local_addr()?);
    let _ = format!("{stream:?}");

    stream.write_all(b"hello\n")?;
    let mut peeked = [0u8; 6];
    let mut n = 0;
    while n < peeked.len() {
        n = stream.peek(&mut peeked)?;
    }
    assert_eq!(&peeked, b"HELLO\n");
    let mut got = [0u8; 6];
    stream.read_exact(&mut got)?;
    assert_eq!(&got, b"HELLO\n");

    let wrote = (&stream).write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"c\n")])?;
    if wrote < 4 {
        stream.write_all(&b"abc\n"[wrote..])?;
    }
    let (mut a, mut b) = ([0u8; 2], [0u8; 2]);
    let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
    let mut read = 0;
    while read < 4 {
        let n = (&stream).read_vectored(&mut bufs)?;
        assert!(n > 0, "eof before the echo");
        read += n;
        IoSliceMut::advance_slices(&mut &mut bufs[..], n);
    }
    assert_eq!((&a, &b), (b"AB", b"C\n"));

    stream.shutdown(net::Shutdown::Write)?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest)?;
    assert!(rest.is_empty());
    server.join().unwrap()
}

pub fn tcp_connect_timeout_and_conversions() -> io::Result<()> {
    let listener = net::TcpListener::bind(("127.0.0.1", 0))?;
    let addr = listener.local_addr()?;
    let stream = net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    assert!(net::TcpStream::connect_timeout(&addr, Duration::ZERO).is_err());
    let (accepted, peer) = listener.accept()?;
    assert_eq!(peer, stream.local_addr()?);

    // Into a descriptor and back, and from std's own type.
    let fd: OwnedFd = accepted.into();
    let mut accepted = net::TcpStream::from(fd);
    let mut std_side = std::net::TcpStream::from(OwnedFd::from(stream));
    std_side.write_all(b"x")?;
    let mut buf = [0u8; 1];
    accepted.read_exact(&mut buf)?;
    let _adopted = net::TcpStream::from(std_side);

    // A read that times out.
    accepted.set_read_timeout(Some(Duration::from_millis(20)))?;
    let err = accepted.read(&mut buf).unwrap_err();
    assert!(timed_out(&err), "{err:?}");
    Ok(())
}

pub fn udp() -> io::Result<()> {
    let a = net::UdpSocket::bind("127.0.0.1:0")?;
    let b = net::UdpSocket::bind(net::SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let a_addr = a.local_addr()?;
    let b_addr = b.local_addr()?;

    b.send_to(b"to a", a_addr)?;
    let mut buf = [0u8; 16];
    let (n, from) = a.peek_from(&mut buf)?;
    assert_eq!((&buf[..n], from), (&b"to a"[..], b_addr));
    let (n, from) = a.recv_from(&mut buf)?;
    assert_eq!((&buf[..n], from), (&b"to a"[..], b_addr));

    a.send_to(b"to b", ("127.0.0.1", b_addr.port()))?;
    b.connect(a_addr)?;
    assert_eq!(b.peer_addr()?, a_addr);
    assert_eq!(b.peek(&mut buf)?, 4);
    assert_eq!(b.recv(&mut buf)?, 4);
    b.send(b"connected")?;
    assert_eq!(a.recv(&mut buf)?, 9);

    a.set_broadcast(true)?;
    assert!(a.broadcast()?);
    a.set_ttl(7)?;
    assert_eq!(a.ttl()?, 7);
    assert!(a.take_error()?.is_none());
    a.set_read_timeout(Some(Duration::from_millis(20)))?;
    let err = a.recv_from(&mut buf).unwrap_err();
    assert!(timed_out(&err), "{err:?}");
    let _ = format!("{a:?}");
    Ok(())
}

pub fn unix_stream(dir: &Path) -> io::Result<()> {
    let path = dir.join("stream.sock");
    let listener = unix::UnixListener::bind(&path)?;
    assert_eq!(listener.local_addr()?.as_pathname(), Some(path.as_path()));
    let client = thread::spawn({
        let path = path.clone();
        move || -> io::Result<()> {
            let mut s = unix::UnixStream::connect(&path)?;
            s.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf)?;
            assert_eq!(&buf, b"pong");
            Ok(())
        }
    });
    let (mut conn, addr) = listener.accept()?;
    assert!(addr.is_unnamed());
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf)?;
    conn.write_all(b"pong")?;
    client.join().unwrap()?;

    let (mut x, mut y) = unix::UnixStream::pair()?;
    x.write_all(b"pair")?;
    y.set_read_timeout(Some(Duration::from_secs(10)))?;
    y.read_exact(&mut buf)?;
    assert_eq!(&buf, b"pair");
    x.shutdown(net::Shutdown::Both)?;
    assert_eq!(y.read(&mut buf)?, 0);

    let taken = thread::spawn({
        let path = path.clone();
        move || unix::UnixStream::connect(path).map(drop)
    });
    if let Some(s) = listener.incoming().next() {
        s?;
    }
    taken.join().unwrap()
}

pub fn unix_datagram(dir: &Path) -> io::Result<()> {
    let a_path = dir.join("a.sock");
    let a = unix::UnixDatagram::bind(&a_path)?;
    let b = unix::UnixDatagram::unbound()?;
    b.send_to(b"hello", &a_path)?;
    let mut buf = [0u8; 16];
    let (n, from) = a.recv_from(&mut buf)?;
    assert_eq!(&buf[..n], b"hello");
    assert!(from.is_unnamed());

    b.connect(&a_path)?;
    assert_eq!(b.peer_addr()?.as_pathname(), Some(a_path.as_path()));
    b.send(b"again")?;
    assert_eq!(a.recv(&mut buf)?, 5);

    let (x, y) = unix::UnixDatagram::pair()?;
    x.send(b"")?;
    x.send(b"two")?;
    assert_eq!(y.recv(&mut buf)?, 0);
    assert_eq!(y.recv(&mut buf)?, 3);
    y.set_read_timeout(Some(Duration::from_millis(20)))?;
    let err = y.recv(&mut buf).unwrap_err();
    assert!(timed_out(&err), "{err:?}");
    assert!(y.take_error()?.is_none());
    let _ = format!("{y:?} {:?}", a.local_addr()?);
    Ok(())
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A std event loop's retry: `op` until it stops answering WouldBlock.
fn retry<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let t0 = std::time::Instant::now();
    loop {
        match op() {
            Err(e) if would_block(&e) && t0.elapsed() < Duration::from_secs(10) => {
                thread::yield_now()
            }
            other => return other,
        }
    }
}

pub fn nonblocking(dir: &Path) -> io::Result<()> {
    let mut buf = [0u8; 8];
    let listener = net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    assert!(would_block(&listener.accept().unwrap_err()));
    let mut client = net::TcpStream::connect(listener.local_addr()?)?;
    let (mut server, _) = retry(|| listener.accept())?;
    server.set_nonblocking(true)?;
    assert!(would_block(&server.read(&mut buf).unwrap_err()));
    assert!(would_block(&server.peek(&mut buf).unwrap_err()));
    client.write_all(b"nb")?;
    assert_eq!(retry(|| server.read(&mut buf))?, 2);
    server.set_nonblocking(false)?;
    client.write_all(b"b")?;
    assert_eq!(server.read(&mut buf)?, 1);

    // A std socket made nonblocking stays nonblocking when converted.
    let std_udp = std::net::UdpSocket::bind("127.0.0.1:0")?;
    std_udp.set_nonblocking(true)?;
    let udp = net::UdpSocket::from(std_udp);
    assert!(would_block(&udp.recv_from(&mut buf).unwrap_err()));
    udp.send_to(b"self", udp.local_addr()?)?;
    assert_eq!(retry(|| udp.recv_from(&mut buf))?.0, 4);

    let path = dir.join("nb.sock");
    let ul = unix::UnixListener::bind(&path)?;
    ul.set_nonblocking(true)?;
    assert!(would_block(&ul.accept().unwrap_err()));
    let (p, mut q) = unix::UnixStream::pair()?;
    p.set_nonblocking(true)?;
    q.set_nonblocking(true)?;
    assert!(would_block(&q.read(&mut buf).unwrap_err()));
    let (x, y) = unix::UnixDatagram::pair()?;
    x.set_nonblocking(true)?;
    y.set_nonblocking(true)?;
    assert!(would_block(&y.recv(&mut buf).unwrap_err()));
    Ok(())
}

/// How a call came out: "ok", or its error's kind and errno.
fn outcome<T>(r: io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{:?} {:?}", e.kind(), e.raw_os_error()),
    }
}

/// Multicast options round-trip; joins and leaves are tried only with a
/// loopback address as the "group", which both refuse (no real group is
/// ever joined or sent to). Returns the outcomes for the caller to compare.
pub fn udp_multicast() -> io::Result<Vec<String>> {
    let mut seen = Vec::new();
    let a = net::UdpSocket::bind("127.0.0.1:0")?;
    a.set_multicast_loop_v4(false)?;
    assert!(!a.multicast_loop_v4()?);
    a.set_multicast_loop_v4(true)?;
    assert!(a.multicast_loop_v4()?);
    a.set_multicast_ttl_v4(5)?;
    assert_eq!(a.multicast_ttl_v4()?, 5);
    let lo = net::Ipv4Addr::LOCALHOST;
    let join = a.join_multicast_v4(&lo, &lo);
    assert!(join.is_err(), "127.0.0.1 is no multicast group");
    seen.push(outcome(join));
    seen.push(outcome(a.leave_multicast_v4(&lo, &net::Ipv4Addr::UNSPECIFIED)));
    seen.push(outcome(a.set_multicast_loop_v6(false)));
    seen.push(outcome(a.multicast_loop_v6()));
    if let Ok(b) = net::UdpSocket::bind("[::1]:0") {
        b.set_multicast_loop_v6(false)?;
        assert!(!b.multicast_loop_v6()?);
        b.set_multicast_loop_v6(true)?;
        assert!(b.multicast_loop_v6()?);
        let join = b.join_multicast_v6(&net::Ipv6Addr::LOCALHOST, 0);
        assert!(join.is_err(), "::1 is no multicast group");
        seen.push(outcome(join));
        seen.push(outcome(b.leave_multicast_v6(&net::Ipv6Addr::LOCALHOST, 0)));
        seen.push(outcome(b.set_multicast_ttl_v4(3)));
        seen.push(outcome(b.multicast_loop_v4()));
    }
    Ok(seen)
}

/// Raw descriptors in and out, as std code moves sockets between libraries.
pub fn raw_fds(dir: &Path) -> io::Result<()> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let listener = net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // SAFETY: the number was just given up by `into_raw_fd`; nothing else owns it.
    let listener = unsafe { net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
    let stream = net::TcpStream::connect(addr)?;
    // SAFETY: as above.
    let mut stream = unsafe { net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
    let (mut server, _) = listener.accept()?;
    stream.write_all(b"raw")?;
    let mut buf = [0u8; 3];
    server.read_exact(&mut buf)?;
    assert_eq!(&buf, b"raw");

    let udp = net::UdpSocket::bind("127.0.0.1:0")?;
    // SAFETY: as above.
    let udp = unsafe { net::UdpSocket::from_raw_fd(udp.into_raw_fd()) };
    udp.send_to(b"u", udp.local_addr()?)?;
    assert_eq!(udp.recv(&mut buf)?, 1);

    let path = dir.join("raw.sock");
    let ul = unix::UnixListener::bind(&path)?;
    // SAFETY: as above.
    let ul = unsafe { unix::UnixListener::from_raw_fd(ul.into_raw_fd()) };
    let us = unix::UnixStream::connect(&path)?;
    // SAFETY: as above.
    let mut us = unsafe { unix::UnixStream::from_raw_fd(us.into_raw_fd()) };
    let (mut peer, _) = ul.accept()?;
    us.write_all(b"u")?;
    peer.read_exact(&mut buf[..1])?;
    let (x, y) = unix::UnixDatagram::pair()?;
    // SAFETY: as above.
    let x = unsafe { unix::UnixDatagram::from_raw_fd(x.into_raw_fd()) };
    x.send(b"d")?;
    assert_eq!(y.recv(&mut buf)?, 1);
    Ok(())
}

/// std's Linux `SocketAddrExt`. netfd has its methods as inherent ones, so
/// the trait import is unused in the netfd build (hence the allow).
/// (`TcpStreamExt::quickack` is std's since 1.89, past this crate's MSRV:
/// netfd's is tested in `std_shapes.rs`.)
pub fn linux_ext() -> io::Result<()> {
    #[allow(unused_imports)]
    use std::os::linux::net::SocketAddrExt;
    let name = unix::SocketAddr::from_abstract_name(b"netfd-dropin-unused")?;
    assert_eq!(name.as_abstract_name(), Some(&b"netfd-dropin-unused"[..]));
    assert!(name.as_pathname().is_none());
    Ok(())
}

/// Every remaining stable method of std's socket types, called once each
/// (most of what matters here is that it compiles both ways).
pub fn every_method(dir: &Path) -> io::Result<()> {
    let t = Some(Duration::from_secs(10));
    let listener = net::TcpListener::bind("127.0.0.1:0")?;
    let listener2 = listener.try_clone()?;
    assert_eq!(listener2.local_addr()?, listener.local_addr()?);
    listener2.set_nonblocking(false)?;
    let stream = net::TcpStream::connect(listener.local_addr()?)?;
    let (accepted, _) = listener2.accept()?;
    let stream2 = stream.try_clone()?;
    stream2.set_write_timeout(t)?;
    assert_eq!(stream2.write_timeout()?, t);
    assert_eq!(stream2.read_timeout()?, None);
    assert!(accepted.take_error()?.is_none());
    let _ = format!("{listener:?}");

    let udp = net::UdpSocket::bind("127.0.0.1:0")?;
    let udp2 = udp.try_clone()?;
    udp2.set_write_timeout(t)?;
    udp2.set_read_timeout(t)?;
    assert_eq!((udp2.read_timeout()?, udp2.write_timeout()?), (t, t));
    assert!(udp2.peer_addr().is_err());

    let path = dir.join("every.sock");
    let addr = unix::SocketAddr::from_pathname(&path)?;
    let ul = unix::UnixListener::bind_addr(&addr)?;
    let ul2 = ul.try_clone()?;
    assert!(ul2.take_error()?.is_none());
    let _ = format!("{ul:?}");
    let us = unix::UnixStream::connect_addr(&addr)?;
    let (peer, from) = ul.accept()?;
    assert!(from.is_unnamed() && from.clone().as_pathname().is_none());
    let us2 = us.try_clone()?;
    us2.set_read_timeout(t)?;
    us2.set_write_timeout(t)?;
    assert_eq!((us2.read_timeout()?, us2.write_timeout()?), (t, t));
    assert_eq!(us2.peer_addr()?.as_pathname(), Some(path.as_path()));
    assert!(us2.local_addr()?.is_unnamed());
    assert!(us2.take_error()?.is_none());
    (&us2).write_all(b"r")?;
    let mut buf = [0u8; 4];
    (&peer).read_exact(&mut buf[..1])?;
    us2.shutdown(net::Shutdown::Both)?;

    let d_path = dir.join("every-d.sock");
    let d_addr = unix::SocketAddr::from_pathname(&d_path)?;
    let d = unix::UnixDatagram::bind_addr(&d_addr)?;
    let sender = unix::UnixDatagram::unbound()?;
    sender.send_to_addr(b"a", &d_addr)?;
    sender.connect_addr(&d_addr)?;
    sender.send(b"b")?;
    let d2 = d.try_clone()?;
    d2.set_read_timeout(t)?;
    d2.set_write_timeout(t)?;
    assert_eq!((d2.read_timeout()?, d2.write_timeout()?), (t, t));
    assert_eq!(d2.recv(&mut buf)?, 1);
    assert_eq!(d2.recv_from(&mut buf)?.0, 1);
    assert_eq!(d2.local_addr()?.as_pathname(), Some(d_path.as_path()));
    assert!(d2.peer_addr().is_err());
    d2.shutdown(net::Shutdown::Read)?;
    Ok(())
}

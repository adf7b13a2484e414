use netfd::{Options, TcpListener, TcpStream, Variant, WaitPath};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn roundtrip(opts: Options) {
    let l = TcpListener::bind_with("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let (c, _) = l.accept().unwrap();
            let mut buf = [0u8; 5];
            (&c).read_exact(&mut buf).unwrap();
            (&c).write_all(&buf).unwrap();
        });
        let c = TcpStream::connect_with(addr, opts).unwrap();
        (&c).write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        (&c).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        h.join().unwrap();
        c.close().unwrap();
        assert!(netfd::is_closed(&c.close().unwrap_err()));
    });
}

#[test]
fn tcp_roundtrip_direct_and_server() {
    roundtrip(Options::default());
    roundtrip(Options::for_variant(Variant::FdMutex).with_wait(WaitPath::Server));
}

#[test]
fn close_wakes_parked_read_both_paths() {
    for wait in [WaitPath::Direct, WaitPath::Server] {
        let opts = Options::default().with_wait(wait);
        let l = TcpListener::bind_with("127.0.0.1:0".parse().unwrap(), opts).unwrap();
        let c = TcpStream::connect_with(l.local_addr().unwrap(), opts).unwrap();
        let (_peer, _) = l.accept().unwrap();
        std::thread::scope(|s| {
            let h = s.spawn(|| (&c).read(&mut [0u8; 8]));
            std::thread::sleep(Duration::from_millis(50));
            let t = Instant::now();
            c.close().unwrap();
            let err = h.join().unwrap().unwrap_err();
            assert!(netfd::is_closed(&err), "{wait:?}: {err}");
            assert!(t.elapsed() < Duration::from_secs(1));
        });
        let t = Instant::now();
        let c2 = TcpStream::connect_with(l.local_addr().unwrap(), opts).unwrap();
        c2.set_read_deadline(Some(Instant::now() + Duration::from_millis(30)))
            .unwrap();
        let err = (&c2).read(&mut [0u8; 8]).unwrap_err();
        assert!(netfd::is_timeout(&err), "{wait:?}: {err}");
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}

//! The README's "netfd in one screen", verbatim between the markers
//! (`tests/readme.rs` checks that the README shows exactly these lines).
//! Run it: `cargo run -p netfd --example one_screen`.

pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README BEGIN
    use netfd::{TcpListener, TcpStream};
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let listener = TcpListener::bind("127.0.0.1:0")?; // std's signatures...
    let mut conn = TcpStream::connect(listener.local_addr()?)?;
    let (mut peer, _addr) = listener.accept()?;
    conn.write_all(b"ping")?;
    peer.read_exact(&mut [0u8; 4])?;

    conn.set_read_deadline(Some(Instant::now() + Duration::from_secs(5)))?; // ...plus deadlines
    std::thread::scope(|s| {
        let reader = s.spawn(|| (&conn).read(&mut [0u8; 512])); // parks...
        conn.close().unwrap(); // ...and Close from another thread wakes it
        assert!(netfd::is_closed(&reader.join().unwrap().unwrap_err()));
    });
    // README END
    Ok(())
}

//! No descriptor leaks (issue 2, contract point 8): the process's open
//! descriptors (`/proc/self/fd`) are counted before and after a churn of
//! 10,000 connections per wait path (connect, accept, write, read, close):
//! in half of them the server is parked in a read when the client's close
//! resets the connection, and a quarter of the clients are closed by Drop.
//!
//! This binary holds one test: `cargo test` runs the tests of a binary as
//! threads of one process, and any other test would open descriptors of its
//! own while this one counts.

mod common;

use common::*;
use netfd::{TcpListener, TcpStream, WaitPath};
use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

const CONNECTIONS: usize = 10_000;

fn churn(path: WaitPath) {
    let o = opts(path);
    let l = TcpListener::bind_with(v4(), o).unwrap();
    let addr = l.local_addr().unwrap();
    thread::scope(|s| {
        // Echo server: one connection at a time.
        let server = s.spawn(|| {
            for i in 0..CONNECTIONS {
                let (c, _) = l.accept().unwrap();
                let mut buf = [0u8; 8];
                (&c).read_exact(&mut buf).unwrap();
                (&c).write_all(&buf).unwrap();
                if i % 2 == 0 {
                    // Parks until the client's close (RST) ends the read.
                    let r = (&c).read(&mut buf);
                    assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
                }
                c.close().unwrap();
            }
        });
        for i in 0..CONNECTIONS {
            let c = TcpStream::connect_with(addr, o).unwrap();
            (&c).write_all(&(i as u64).to_le_bytes()).unwrap();
            let mut buf = [0u8; 8];
            (&c).read_exact(&mut buf).unwrap();
            assert_eq!(u64::from_le_bytes(buf), i as u64);
            // RST on close: 20,000 connections leave no TIME_WAIT behind to
            // run the ephemeral ports dry.
            c.set_linger(Some(Duration::ZERO)).unwrap();
            if i % 4 == 1 {
                // Sometimes the Drop of an unclosed socket does the closing.
                drop(c);
            } else {
                c.close().unwrap();
            }
        }
        server.join().unwrap();
    });
    l.close().unwrap();
}

#[test]
fn churn_of_10k_connections_per_wait_path_leaks_no_descriptor() {
    let _w = watchdog(
        "churn_of_10k_connections_leaks_no_descriptor",
        Duration::from_secs(120),
    );
    // Warm up what netfd keeps for the life of the process or of a thread
    // (the poll server's epoll and eventfd, this thread's wake eventfd), so
    // the count before is the steady state.
    for path in PATHS {
        let (c, s) = tcp_pair(v4(), opts(path));
        c.set_read_deadline(Some(std::time::Instant::now() + Duration::from_millis(1)))
            .unwrap();
        assert!((&c).read(&mut [0u8; 1]).is_err());
        drop((c, s));
    }
    let before = open_fds();
    for path in PATHS {
        churn(path);
        let now = open_fds();
        assert_eq!(
            now, before,
            "{path:?}: {before} descriptors open before {CONNECTIONS} connections, {now} after"
        );
    }
    eprintln!(
        "{} connections per wait path; open descriptors before and after: {before}",
        CONNECTIONS
    );
}

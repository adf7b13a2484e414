//! Dial deadlines: `connect_timeout`, and a connect in progress that Close
//! or a deadline interrupts, on both wait paths.
//!
//! A connect that stays in progress, on loopback only: a listener with a
//! backlog of 0 that never accepts. Once its accept queue is full, Linux
//! drops further SYNs, so a new connect waits (SYN retries) far longer than
//! any test here. The queue is filled with blocking std connects, each
//! given a second; the first that does not finish marks the queue full.

mod close_support;
mod common;

use close_support::*;
use common::*;
use netfd::probe::OwnerId;
use netfd::sys::{self, SockAddr};
use netfd::{TcpListener, TcpStream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A loopback address where a connect stays in progress; alive while held.
struct Blackhole {
    fd: i32,
    owner: OwnerId,
    addr: SocketAddr,
    _queued: Vec<std::net::TcpStream>,
}

impl Blackhole {
    fn new() -> Blackhole {
        let owner = OwnerId::next();
        let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM, owner).unwrap();
        sys::bind(fd, owner, &SockAddr::from_inet(v4())).unwrap();
        sys::listen(fd, owner, 0).unwrap();
        let addr = sys::getsockname(fd, owner).unwrap().as_inet().unwrap();
        let mut queued = Vec::new();
        for _ in 0..64 {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(s) => queued.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Blackhole {
                        fd,
                        owner,
                        addr,
                        _queued: queued,
                    }
                }
                Err(e) => panic!("filling the accept queue of {addr}: {e:?}"),
            }
        }
        panic!("{addr}: 64 connects to a backlog-0 listener all finished; no full queue");
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = sys::close(self.fd, self.owner);
    }
}

#[test]
fn connect_timeout_times_out_no_earlier_than_its_timeout() {
    let _w = watchdog("connect_timeout_times_out", Duration::from_secs(60));
    let hole = Blackhole::new();
    for path in PATHS {
        let timeout = Duration::from_millis(100);
        let t0 = Instant::now();
        let r = TcpStream::connect_timeout_with(&hole.addr, timeout, opts(path));
        let took = t0.elapsed();
        expect_timeout(r, &format!("{path:?}: connect_timeout"));
        assert!(
            took >= timeout,
            "{path:?}: timed out after {took:?} < {timeout:?}"
        );
        assert!(took < timeout + HANG, "{path:?}: timed out after {took:?}");
    }
}

#[test]
fn connect_timeout_connects_and_clears_its_deadline() {
    let _w = watchdog(
        "connect_timeout_connects_and_clears_its_deadline",
        Duration::from_secs(60),
    );
    for path in PATHS {
        let l = TcpListener::bind_with(v4(), opts(path)).unwrap();
        let addr = l.local_addr().unwrap();
        let timeout = Duration::from_millis(200);
        let connected_by = Instant::now() + timeout;
        let c = TcpStream::connect_timeout_with(&addr, timeout, opts(path)).unwrap();
        let (s, peer) = l.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        assert_eq!(c.peer_addr().unwrap(), addr);
        // The dial's deadline is gone: a write parked on a full buffer past
        // the dial's timeout is still parked, and only Close ends it.
        c.set_write_buffer(4096).unwrap();
        s.set_read_buffer(4096).unwrap();
        let r = park_then(
            &format!("{path:?}: write after connect_timeout"),
            || {
                use std::io::Write;
                (&c).write(&vec![0u8; 8 << 20])
            },
            || {
                let past = connected_by + Duration::from_millis(100);
                std::thread::sleep(past.saturating_duration_since(Instant::now()));
                c.close().unwrap();
            },
        );
        expect_closed(r, &format!("{path:?}: write after connect_timeout"));
    }
}

#[test]
fn zero_connect_timeout_is_refused_as_std() {
    let e = TcpStream::connect_timeout(&v4(), Duration::ZERO).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn close_interrupts_a_connect_in_progress() {
    let _w = watchdog(
        "close_interrupts_a_connect_in_progress",
        Duration::from_secs(60),
    );
    let hole = Blackhole::new();
    for path in PATHS {
        let c = TcpStream::unconnected(&hole.addr, opts(path)).unwrap();
        close_unparks(
            &format!("{path:?}: connect"),
            || c.connect_to(&hole.addr),
            || c.close(),
        );
        expect_closed(c.connect_to(&hole.addr), "connect after close");
    }
}

#[test]
fn a_deadline_interrupts_a_connect_in_progress() {
    let _w = watchdog(
        "a_deadline_interrupts_a_connect_in_progress",
        Duration::from_secs(60),
    );
    let hole = Blackhole::new();
    for path in PATHS {
        let c = TcpStream::unconnected(&hole.addr, opts(path)).unwrap();
        let r = park_then(
            &format!("{path:?}: connect, deadline moved into the past"),
            || c.connect_to(&hole.addr),
            || c.set_write_deadline(Some(Instant::now())).unwrap(),
        );
        expect_timeout(r, &format!("{path:?}: connect"));
        // A write timeout bounds a connect as well.
        let c = TcpStream::unconnected(&hole.addr, opts(path)).unwrap();
        c.set_write_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        expect_timeout(
            c.connect_to(&hole.addr),
            &format!("{path:?}: connect, timeout"),
        );
        c.close().unwrap();
    }
}

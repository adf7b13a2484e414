//! Stale readiness (issue 2, contract point 6; Go #59545): a readiness
//! event meant for a socket that was closed is never delivered to the new
//! socket that got the same descriptor number.
//!
//! Each round closes a socket with readiness pending (its peer has just
//! written to it), opens a new one at once (the kernel hands out the lowest
//! free number, so it gets the same number: the test checks that it did in
//! most rounds), and reads the new, silent socket with a short deadline.
//! A fresh socket with no data must never be woken for read: the probe on
//! the reading thread must show exactly one read(2) (the EAGAIN before
//! parking) and exactly one wake-up (the deadline) for the new owner. A
//! stale delivery would show up as an extra wake-up and an extra EAGAIN
//! read. While the rounds run, a ping-pong on other sockets keeps the poll
//! server busy, so events sit harvested but not yet dispatched while
//! descriptors are closed and reopened.
//!
//! The poll server is where stale readiness could come from (events
//! harvested by epoll_wait before a deregistration, dispatched after it);
//! the direct path runs the same rounds as a control, since its waits poll
//! the socket itself. (A direct-path wake-up left over from one socket's
//! wait and cutting short the next wait of the same thread is tested in
//! `contract_deadline.rs`.)
//!
//! This binary holds one test, so the poll server's counters and the
//! descriptor numbers belong to it alone. The deterministic version (an old
//! registration's token handed straight to the dispatcher) is the unit test
//! in `src/poll/server.rs`.

mod common;

use common::*;
use netfd::probe::{SyncPoint, SysOp};
use netfd::{TcpListener, TcpStream, WaitPath};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: usize = 300;

fn churn(path: WaitPath) {
    let o = opts(path);
    let l = TcpListener::bind_with(v4(), o).unwrap();
    let addr = l.local_addr().unwrap();
    let stop = AtomicBool::new(false);
    // Stops the noise even when an assertion fails, or the scope never ends.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let before = netfd::poll::stats();
    let rec = Recorder::new();
    let _g = rec.install();
    let mut reused = 0;
    thread::scope(|s| {
        // Noise: a ping-pong whose every message is a readiness event.
        let (n1, n2) = tcp_pair(v4(), o);
        let stop = &stop;
        s.spawn(move || {
            let mut buf = [0u8; 16];
            while !stop.load(Ordering::Relaxed) {
                (&n1).write_all(&buf).unwrap();
                (&n1).read_exact(&mut buf).unwrap();
            }
            n1.close().unwrap();
        });
        s.spawn(move || {
            let mut buf = [0u8; 16];
            while (&n2).read_exact(&mut buf).is_ok() {
                if (&n2).write_all(&buf).is_err() {
                    break;
                }
            }
        });

        let _stop = StopOnDrop(stop);
        for round in 0..ROUNDS {
            let old = TcpStream::connect_with(addr, o).unwrap();
            let (old_peer, _) = l.accept().unwrap();
            (&old_peer).write_all(b"pending readiness").unwrap();
            let old_fd = rec.fd_of(old.owner_id()).unwrap();
            old.close().unwrap();

            let new = TcpStream::connect_with(addr, o).unwrap();
            let (_new_peer, _) = l.accept().unwrap();
            let new_fd = rec.fd_of(new.owner_id()).unwrap();
            if new_fd == old_fd {
                reused += 1;
            }
            let deadline = Instant::now() + Duration::from_millis(2);
            new.set_read_deadline(Some(deadline)).unwrap();
            let err = (&new).read(&mut [0u8; 64]).unwrap_err();
            assert!(
                netfd::is_timeout(&err),
                "{path:?} round {round}: the silent socket read {err:?}"
            );
            assert!(Instant::now() >= deadline);
            let owner = new.owner_id();
            let reads = rec.count_sys(SysOp::Read, owner);
            let wakes = rec.count_sync(SyncPoint::AfterWake, owner);
            assert_eq!(
                (reads, wakes),
                (1, 1),
                "{path:?} round {round}: fd {new_fd} (was fd {old_fd}) was woken for read \
                 without data: {:?}",
                rec.syscalls_of(owner)
            );
            new.close().unwrap();
            drop(old_peer);
            rec.clear();
        }
    });
    let after = netfd::poll::stats();
    eprintln!(
        "{path:?}: {ROUNDS} rounds, number reused in {reused}; poll server: {} events delivered, \
         {} stale events dropped, {} timers fired",
        after.delivered - before.delivered,
        after.stale_dropped - before.stale_dropped,
        after.timers_fired - before.timers_fired,
    );
    // The test is about number reuse: it must actually have happened.
    assert!(
        reused >= ROUNDS / 2,
        "{path:?}: number reused in only {reused} rounds"
    );
    if path == WaitPath::Server {
        assert!(
            after.delivered > before.delivered,
            "the server path saw no events"
        );
    }
}

#[test]
fn readiness_for_a_closed_socket_never_reaches_its_successor() {
    let _w = watchdog(
        "readiness_for_a_closed_socket_never_reaches_its_successor",
        Duration::from_secs(60),
    );
    for path in [WaitPath::Server, WaitPath::Direct] {
        churn(path);
    }
}

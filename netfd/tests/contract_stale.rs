//! Stale readiness (contract point 6; Go #59545): a readiness event meant
//! for a socket that was closed is never delivered to the new socket that
//! got the same descriptor number.
//!
//! The property is checked on the poll server's delivery trace
//! (`netfd::poll::trace`): for every event it hands out, the socket the
//! kernel event was harvested for (named by the token issued at
//! registration) and the socket whose poll descriptor was notified must be
//! the same. That is what the contract says, and it does not depend on how
//! the threads happen to be scheduled.
//!
//! Two tests, run one at a time (they share the process's poll server and
//! descriptor table):
//! - `held`: the race made certain. The poll thread is held with a batch
//!   it harvested for socket A (a datagram arrived); A is closed, B gets
//!   A's number and A's registration slot, a reader parks on B with a
//!   deadline, and only then is the batch dispatched. The event must be
//!   dropped as stale and the reader woken only by its deadline. Removing
//!   the generation check in `Server::lookup` fails this test every time.
//! - `churn`: the same shape at speed, 300 rounds of close-with-readiness-
//!   pending and reopen while a ping-pong keeps the poll server busy, on
//!   both wait paths (Direct as a control). Besides the trace check it
//!   reports how often the new socket's reader was woken by an event of its
//!   own registration: a dialled Server-path socket is registered before it
//!   connects and the kernel reports EPOLLOUT|EPOLLHUP for it at once; if
//!   the poll thread dispatches that after the first read cleared the ready
//!   flag, the read wakes once for nothing (an EAGAIN more). The contract
//!   allows that, so it is counted, not asserted.

mod common;

use common::*;
use netfd::poll::trace::{self, Delivery, Hold};
use netfd::probe::{SyncPoint, SysOp};
use netfd::{TcpListener, TcpStream, UdpSocket, WaitPath};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The two tests share the poll server, its trace and the lowest free
/// descriptor numbers.
static SERIAL: Mutex<()> = Mutex::new(());

fn misdelivered(deliveries: &[Delivery]) -> Vec<Delivery> {
    deliveries
        .iter()
        .copied()
        .filter(Delivery::misdelivered)
        .collect()
}

/// Wait (bounded) until the poll server has delivered something to `owner`.
fn await_delivery(owner: netfd::probe::OwnerId, what: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !trace::deliveries().iter().any(|d| d.delivered_to == owner) {
        assert!(Instant::now() < until, "{what}: no delivery within 10 s");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn held_event_for_a_closed_socket_is_dropped_not_delivered_to_its_successor() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog("held", Duration::from_secs(60));
    let o = opts(WaitPath::Server);
    let (rec, parked) = Recorder::with_park_signal();
    let _g = rec.install();
    trace::start();
    let before = netfd::poll::stats();

    let sender = std::net::UdpSocket::bind(v4()).unwrap();
    let old = UdpSocket::bind_with(v4(), o).unwrap();
    let old_id = old.owner_id();
    let old_fd = rec.fd_of(old_id).unwrap();
    // The registration's first event (EPOLLOUT) goes out on its own; the
    // batch to hold is the one with the datagram's EPOLLIN.
    await_delivery(old_id, "the old socket's registration event");
    let hold = Hold::first_batch_for(old_id);
    sender
        .send_to(b"for the old socket", old.local_addr().unwrap())
        .unwrap();
    assert!(
        hold.wait_held(Duration::from_secs(10)),
        "the poll thread never harvested the datagram's readiness"
    );
    old.close().unwrap();

    let new = UdpSocket::bind_with(v4(), o).unwrap();
    let new_id = new.owner_id();
    assert_eq!(
        rec.fd_of(new_id),
        Some(old_fd),
        "the new socket must get the closed socket's number (lowest free)"
    );
    let deadline = Instant::now() + Duration::from_millis(300);
    new.set_read_deadline(Some(deadline)).unwrap();
    let result = thread::scope(|s| {
        let reader = s.spawn(|| {
            let _g = rec.install();
            new.recv_from(&mut [0u8; 64])
        });
        assert_eq!(await_park(&parked, "the new socket's reader"), new_id);
        hold.release();
        reader.join().unwrap()
    });
    let after = netfd::poll::stats();
    let deliveries = trace::stop();

    let err = result.expect_err("the new socket has no data");
    assert!(netfd::is_timeout(&err), "the reader got {err:?}");
    assert!(Instant::now() >= deadline);
    let wrong = misdelivered(&deliveries);
    assert!(
        wrong.is_empty(),
        "events harvested for #{} (fd {old_fd}) reached its successor: {wrong:?}",
        old_id.0
    );
    assert!(
        after.stale_dropped > before.stale_dropped,
        "the held event was not dropped as stale: the window was not exercised"
    );
    // Only its deadline woke the reader: nothing is readable on the new
    // socket, and its own registration reports EPOLLOUT, the other side.
    assert_eq!(
        rec.count_sync(SyncPoint::AfterWake, new_id),
        1,
        "the new socket's reader was woken for data it does not have: {:?}",
        rec.syscalls_of(new_id)
    );
    new.close().unwrap();
}

const ROUNDS: usize = 300;

fn churn(path: WaitPath) {
    let o = opts(path);
    trace::start();
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
    let mut woken_by_own_event = 0;
    // Event bits delivered to the sockets whose read woke for nothing.
    let mut own_event_bits = std::collections::BTreeMap::<u32, usize>::new();
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
            if rec.count_sys(SysOp::Read, owner) > 1 {
                woken_by_own_event += 1;
                for d in trace::deliveries()
                    .iter()
                    .filter(|d| d.delivered_to == owner)
                {
                    *own_event_bits.entry(d.events).or_insert(0) += 1;
                }
            }
            new.close().unwrap();
            drop(old_peer);
            rec.clear();
        }
    });
    let after = netfd::poll::stats();
    let deliveries = trace::stop();
    eprintln!(
        "{path:?}: {ROUNDS} rounds, number reused in {reused}; poll server: {} events delivered, \
         {} stale events dropped, {} timers fired; {woken_by_own_event} reads woken once by \
         their own socket's registration event (event bits: count {own_event_bits:x?})",
        after.delivered - before.delivered,
        after.stale_dropped - before.stale_dropped,
        after.timers_fired - before.timers_fired,
    );
    let wrong = misdelivered(&deliveries);
    assert!(
        wrong.is_empty(),
        "{path:?}: {} events reached a socket they were not harvested for, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(
        "readiness_for_a_closed_socket_never_reaches_its_successor",
        Duration::from_secs(60),
    );
    for path in [WaitPath::Server, WaitPath::Direct] {
        churn(path);
    }
}

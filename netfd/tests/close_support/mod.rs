//! Close-contract helpers for the contract suites of the newer socket kinds
//! (connect, connected UDP, Unix datagrams), on top of `common`.

#![allow(dead_code)]

use crate::common::*;
use std::io;
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long an operation may take to return after Close or its deadline.
pub const HANG: Duration = Duration::from_secs(5);

/// Run `op` on its own probed thread; once it parks, run `interrupt` from
/// this thread. Returns what `op` returned and how long after the interrupt
/// it did (bounded by [`HANG`]). The probe checks that no syscall named a
/// socket after its close(2) and that every socket was closed once.
pub fn park_then<T: Send>(
    what: &str,
    op: impl FnOnce() -> io::Result<T> + Send,
    interrupt: impl FnOnce(),
) -> io::Result<T> {
    let (rec, parked) = Recorder::with_park_signal();
    let _g = rec.install();
    let r = thread::scope(|s| {
        let h = s.spawn(|| {
            let _g = rec.install();
            let r = op();
            (r, Instant::now())
        });
        await_park(&parked, what);
        let t0 = Instant::now();
        interrupt();
        let (r, returned) = h.join().unwrap();
        let woke_after = returned.saturating_duration_since(t0);
        assert!(
            woke_after < HANG,
            "{what}: returned {woke_after:?} after the interrupt"
        );
        r
    });
    r
}

/// [`park_then`] with Close as the interrupt: `op` must fail with the closed
/// error, Close must succeed, and the socket's lifetime must be clean.
pub fn close_unparks<T: Send + std::fmt::Debug>(
    what: &str,
    op: impl FnOnce() -> io::Result<T> + Send,
    close: impl FnOnce() -> io::Result<()>,
) {
    let (rec, parked) = Recorder::with_park_signal();
    let _g = rec.install();
    thread::scope(|s| {
        let h = s.spawn(|| {
            let _g = rec.install();
            let r = op();
            (r, Instant::now())
        });
        await_park(&parked, what);
        let t0 = Instant::now();
        close().unwrap_or_else(|e| panic!("{what}: close failed: {e:?}"));
        let (r, returned) = h.join().unwrap();
        expect_closed(r, what);
        let woke_after = returned.saturating_duration_since(t0);
        assert!(woke_after < HANG, "{what}: woke {woke_after:?} after close");
    });
    rec.check_lifetimes()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// One racing operation on the socket (or pair) of a round.
pub type Worker<S> = dyn Fn(&S) -> io::Result<usize> + Sync;

/// `rounds` rounds of: open a socket with `open`, let every worker call its
/// op until it sees the closed error (every error checked against the
/// contract), close from this thread after a jitter. The probe then checks
/// every socket's lifetime.
pub fn race_close<S: Send + Sync>(
    what: &str,
    rounds: u64,
    mut open: impl FnMut() -> S,
    close: impl Fn(&S) -> io::Result<()>,
    workers: &[&Worker<S>],
) {
    let rec = Recorder::new();
    let _g = rec.install();
    let slot: RwLock<Option<Arc<S>>> = RwLock::new(None);
    let start = Barrier::new(workers.len() + 1);
    let end = Barrier::new(workers.len() + 1);
    thread::scope(|sc| {
        for work in workers {
            let (rec, slot, start, end) = (&rec, &slot, &start, &end);
            sc.spawn(move || {
                let _g = rec.install();
                for _ in 0..rounds {
                    start.wait();
                    let s = slot.read().unwrap().clone().unwrap();
                    loop {
                        if let Err(e) = work(&s) {
                            if check_error(&e, what) {
                                break;
                            }
                        }
                        thread::yield_now();
                    }
                    drop(s);
                    end.wait();
                }
            });
        }
        let mut rng = Rng::new(rounds);
        for round in 0..rounds {
            let s = Arc::new(open());
            *slot.write().unwrap() = Some(s.clone());
            start.wait();
            jitter(&mut rng);
            close(&s).unwrap_or_else(|e| panic!("{what}: round {round}: close: {e:?}"));
            end.wait();
            slot.write().unwrap().take();
        }
    });
    let checked = rec
        .check_lifetimes()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        checked as u64 >= rounds,
        "{what}: only {checked} sockets seen"
    );
}

/// A timeout error as the contract spells it.
pub fn expect_timeout<T: std::fmt::Debug>(r: io::Result<T>, what: &str) {
    match r {
        Err(e) => {
            assert!(
                netfd::is_timeout(&e),
                "{what}: expected a timeout, got {e:?}"
            );
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{what}");
        }
        Ok(v) => panic!("{what}: expected a timeout, got Ok({v:?})"),
    }
}

//! Loom model checks of the production lifetime protocol, `fdmutex`.
//!
//! What is checked is the production source itself: this crate includes
//! `src/fd.rs` (the Close protocol: incref/rwlock -> syscall -> decref;
//! close = incref_and_close -> evict -> decref -> final close -> release
//! signal -> close waits), `src/fdmutex.rs` and `src/poll/desc.rs` unchanged,
//! compiled against loom's primitives (`loom_support::sync`), a simulated
//! kernel (`loom_support::sys`) and a loom copy of the poller's two wait
//! loops (`loom_support::poll`; the only code here that is not production's).
//! See `loom_support/mod.rs` for how, and `loom_support/models.rs` for what
//! each model asserts. Every model must pass.
//!
//! Bounds and times: each test states loom's preemption bound and the time
//! it took on the 2-core CI machine in the test profile (opt-level 1), as
//! measured with `cargo test -p netfd --test loom_fdmutex -- --nocapture`
//! (each model prints its time). The whole file runs in about 30 s with two
//! test threads.
//!
//! A failing model prints the commands that replay it: run it once with
//! `NETFD_LOOM_CHECKPOINT=/tmp/netfd-loom` to record the failing
//! interleaving, then with `LOOM_CHECKPOINT_FILE=<that file>
//! LOOM_MAX_PREEMPTIONS=<bound> LOOM_LOG=trace LOOM_LOCATION=1` to replay just
//! it with a log.
//!
//! Note: `src/error.rs`'s unit tests are compiled into this crate too (they
//! are plain, loom-free tests). A `#[cfg(test)]` module added to
//! `fdmutex.rs`, `poll/desc.rs` or `fd.rs` would also land here and run
//! outside a loom model, where loom's primitives panic: keep unit tests of
//! those files in `tests/`.

#[allow(dead_code)]
#[path = "../src/poll/desc.rs"]
mod desc;
#[allow(dead_code)]
#[path = "../src/error.rs"]
mod error;
#[allow(dead_code)]
#[path = "../src/fd.rs"]
mod fd;
#[allow(dead_code)]
#[path = "../src/fdmutex.rs"]
mod fdmutex;
#[allow(dead_code)]
#[path = "../src/probe.rs"]
mod probe;
#[allow(dead_code)]
#[path = "../src/variants/shared.rs"]
mod shared;
/// `crate::variants::shared` is where `fd.rs` finds the operation loop.
mod variants {
    pub(crate) use crate::shared;
}

mod loom_support;

use loom_support::{check, models, poll, sync, sys, EXHAUSTIVE};

use fd::Fd;
use loom_support::models::{Judge, Sock};
use poll::{Dir, WaitPath};
use probe::OwnerId;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// The production protocol as the models drive it: `src/fd.rs`'s `Fd`.
struct Production(Fd);

impl Sock for Production {
    fn new(fd: RawFd, owner: OwnerId, path: WaitPath) -> Self {
        Production(Fd::new(fd, owner, path).expect("Fd::new"))
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn accept(&self, new_owner: OwnerId) -> io::Result<RawFd> {
        self.0.accept(new_owner).map(|(n, _)| n)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn set_deadline(&self, dir: Dir, deadline: Option<Instant>) -> io::Result<()> {
        self.0.set_deadline(dir, deadline)
    }
}

use WaitPath::{Direct, Server};

#[test]
fn close_vs_read() {
    check("close_vs_read", EXHAUSTIVE, || {
        models::close_vs_read::<Production>(Direct)
    });
}

#[test]
fn close_vs_write() {
    check("close_vs_write", EXHAUSTIVE, || {
        models::close_vs_write::<Production>(Direct)
    });
}

#[test]
fn close_vs_accept() {
    check("close_vs_accept", EXHAUSTIVE, || {
        models::close_vs_accept::<Production>(Direct)
    });
}

#[test]
fn close_vs_close() {
    check("close_vs_close", EXHAUSTIVE, || {
        models::close_vs_close::<Production>(Server)
    });
}

#[test]
fn close_vs_parked_reader_server_path() {
    check("close_vs_parked_reader_server_path", EXHAUSTIVE, || {
        models::close_vs_parked_reader::<Production>(Server, Judge::All)
    });
}

#[test]
fn close_vs_parked_reader_direct_path() {
    check("close_vs_parked_reader_direct_path", EXHAUSTIVE, || {
        models::close_vs_parked_reader::<Production>(Direct, Judge::All)
    });
}

#[test]
fn close_vs_parked_reader_and_writer() {
    check("close_vs_parked_reader_and_writer", Some(3), || {
        models::close_vs_parked_reader_and_writer::<Production>(Server)
    });
}

#[test]
fn close_vs_parked_and_queued_readers() {
    check("close_vs_parked_and_queued_readers", Some(3), || {
        models::close_vs_parked_and_queued_readers::<Production>(Server)
    });
}

#[test]
fn deadline_vs_close_vs_readiness_server_path() {
    check(
        "deadline_vs_close_vs_readiness_server_path",
        Some(3),
        || models::deadline_vs_close_vs_readiness::<Production>(Server),
    );
}

#[test]
fn deadline_vs_close_vs_readiness_direct_path() {
    check(
        "deadline_vs_close_vs_readiness_direct_path",
        Some(3),
        || models::deadline_vs_close_vs_readiness::<Production>(Direct),
    );
}

#[test]
fn set_deadline_vs_parked_reader_vs_close() {
    check("set_deadline_vs_parked_reader_vs_close", Some(4), || {
        models::set_deadline_vs_parked_reader_vs_close::<Production>(Server)
    });
}

#[test]
fn reopen_during_io() {
    check("reopen_during_io", EXHAUSTIVE, || {
        models::reopen_during_io::<Production>(Direct, Judge::All)
    });
}

#[test]
fn close_returns_after_final_close() {
    check("close_returns_after_final_close", Some(4), || {
        models::close_returns_after_final_close::<Production>(Server, Judge::All)
    });
}

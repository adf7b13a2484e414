//! Isolation by worker process (`harness::worker`): a case's stray calls
//! reach only that case.
//!
//! - A racy wrapper and its correct twin, checked side by side in one test
//!   process (the way plain `cargo test` runs two tests of one binary): the
//!   twin is clean, the racy one caught. Without workers the racy one's
//!   stale reads and closes land on the twin's sockets.
//! - A target that closes numbers it never owned, at random, in a loop:
//!   the run ends with a report that shows it (and validates), with no
//!   panic and no hang, whatever it closed (the worker's channel included).

mod uninstrumented_wrapper;

use harness::report::{schema, Mode, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario::{self, Direction};
use harness::target::{Addr, Conn, Listener, Target};
use harness::worker::Workers;
use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uninstrumented_wrapper::{RawTarget, CLOSE_VS_READ};

fn sources() -> [Source; 1] {
    let s = scenario::parse_str(CLOSE_VS_READ, "raw.json").unwrap_or_else(|e| panic!("{e}"));
    [Source {
        scenario: s,
        file: "raw.json".into(),
    }]
}

/// Check `target` the way a user's test does: cases in workers re-run
/// from this test binary, several at once.
fn check_in_workers(target: Arc<dyn Target>, cases: u64) -> harness::report::Report {
    harness::intercept::link();
    let workers = Workers::for_this_test(&target);
    assert!(workers.is_some(), "a test's thread names the test");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = RunConfig::new(Mode::Controlled, 11);
    cfg.cases = cases;
    cfg.budget = Duration::from_secs(120);
    cfg.hang_bound = Duration::from_millis(500);
    cfg.case_dir = Some(dir.path().join("cases"));
    cfg.workers = workers;
    let report = run::run(target, &sources(), &cfg, &|_, _| {}).expect("run");
    let path = report.write_atomic(dir.path()).expect("write report");
    schema::validate_report_file(&path).unwrap_or_else(|e| panic!("{e}"));
    report
}

#[test]
#[ignore = "run beside its twin by racy_and_twin_side_by_side_in_one_process"]
fn racy_wrapper_in_workers_is_caught() {
    let report = check_in_workers(Arc::new(RawTarget { guarded: false }), 300);
    let kinds = run::kinds_found(&report);
    assert!(kinds.contains(&ViolationKind::FdReuse), "found {kinds:?}");
}

#[test]
#[ignore = "run beside its racy twin by racy_and_twin_side_by_side_in_one_process"]
fn guarded_wrapper_in_workers_is_clean() {
    let report = check_in_workers(Arc::new(RawTarget { guarded: true }), 300);
    let sc = &report.scenarios[0];
    assert!(sc.cases >= 100, "ran {} cases", sc.cases);
    assert!(
        sc.violations.is_empty(),
        "the correct twin was charged with {:?}",
        sc.violations
            .iter()
            .map(|v| (v.kind, &v.message))
            .collect::<Vec<_>>()
    );
}

/// The two tests above in one process, at once, as `cargo test` runs them.
#[test]
fn racy_and_twin_side_by_side_in_one_process() {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--ignored",
            "--exact",
            "--test-threads=2",
            "racy_wrapper_in_workers_is_caught",
            "guarded_wrapper_in_workers_is_clean",
        ])
        .output()
        .expect("run the test binary");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 passed"), "{text}");
}

/// A wrapper around the correct twin whose every read and write first
/// closes numbers it never owned, drawn at random: mostly low ones (where
/// the case's sockets and the harness's files live), now and then any
/// number up to past where a worker keeps its channel.
struct Vandal {
    inner: RawTarget,
    /// Close every number up to 8192 instead of a few drawn at random.
    sweep: bool,
}
struct VandalConn(Box<dyn Conn>, bool);

static DRAWS: AtomicU64 = AtomicU64::new(0x9E37_79B9);

fn close_strangers(sweep: bool) {
    if sweep {
        for fd in 3..8192 {
            // SAFETY: as below.
            unsafe { libc::close(fd) };
        }
        return;
    }
    for _ in 0..8 {
        let mut x = DRAWS.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let range = if x & 15 == 0 { 4200 } else { 60 };
        let fd = 3 + (x >> 40) % range;
        // SAFETY: close(2) on a number touches no memory of this process
        // that Rust tracks; that it may release another owner's descriptor
        // is the lifetime bug this target plants on purpose.
        unsafe { libc::close(fd as i32) };
    }
}

impl Conn for VandalConn {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        close_strangers(self.1);
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        close_strangers(self.1);
        self.0.write(buf)
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        self.0.set_deadline(dir, at)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn is_closed_error(&self, e: &io::Error) -> bool {
        self.0.is_closed_error(e)
    }
}

impl Target for Vandal {
    fn name(&self) -> String {
        format!("custom:vandal{}", if self.sweep { "-sweep" } else { "" })
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        self.inner.listen(addr)
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(VandalConn(self.inner.dial(addr)?, self.sweep)))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(VandalConn(
            self.inner.bind_datagram(local, peer)?,
            self.sweep,
        )))
    }
}

#[test]
fn a_target_closing_numbers_it_never_owned_is_reported_not_a_crash() {
    let started = Instant::now();
    let vandal = Vandal {
        inner: RawTarget { guarded: true },
        sweep: false,
    };
    let report = check_in_workers(Arc::new(vandal), 60);
    let sc = &report.scenarios[0];
    assert!(
        !sc.violations.is_empty(),
        "{} cases of a target closing strangers' numbers were clean",
        sc.cases
    );
    assert!(!report.summary.passed);
    // Every violation is one the ledger or the worker pool can state: a
    // call on a number the case did not own, or a case its stray closes
    // broke (a hang, a leak, an error where a result was due).
    eprintln!(
        "{} cases in {:?}: {:?}",
        sc.cases,
        started.elapsed(),
        run::kinds_found(&report)
    );
}

/// A target that closes every number, the worker's channel included: each
/// case's worker is lost, and each such case is reported as a call that
/// reached a descriptor the case never owned.
#[test]
fn a_target_closing_every_number_loses_its_worker_and_is_reported() {
    let vandal = Vandal {
        inner: RawTarget { guarded: true },
        sweep: true,
    };
    let report = check_in_workers(Arc::new(vandal), 10);
    let sc = &report.scenarios[0];
    let lost = sc
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::FdReuse && v.message.contains("worker process"))
        .unwrap_or_else(|| panic!("no lost worker in {:?}", sc.violations));
    assert!(
        lost.replay.contains("raw_close_vs_read_with_churn"),
        "{}",
        lost.replay
    );
}

//! A TCP dial may come back late without a fault in the target: a SYN the
//! kernel drops (soaks saw it when a dial raced the Close of its listener,
//! under load) is sent again after 1 s, and again 2 s later. So a TCP dial
//! is a `hang` only once it has overstayed the hang bound plus those
//! retransmissions (`exec/supervise.rs`, `SYN_RETRANSMITS`); a dial that
//! never returns is still one.

use harness::report::{Mode, Report, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario;
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::Variant;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// netfd's target, except that `dial` first waits `delay` (or until the
/// test lets it go), as a connect whose SYN was dropped does.
struct LateDial {
    inner: NetfdTarget,
    delay: Duration,
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl Target for LateDial {
    fn name(&self) -> String {
        "custom:late-dial".into()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        self.inner.listen(addr)
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let (lock, cv) = &*self.released;
        let go = lock.lock().unwrap();
        let _ = cv.wait_timeout_while(go, self.delay, |go| !*go).unwrap();
        self.inner.dial(addr)
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        self.inner.bind_datagram(local, peer)
    }
}

const DIAL: &str = r#"{ "name": "dial_while_closed", "description": "a dial the teardown's Close of its listener races",
     "transport": "tcp4", "listeners": 1, "slots": 1,
     "threads": [ { "name": "dialer", "ops": [ { "op": "dial", "listener": 0, "conn": 0 } ] } ] }"#;

const BOUND: Duration = Duration::from_millis(300);

fn run_late(delay: Duration) -> Report {
    harness::intercept::link();
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let target: Arc<dyn Target> = Arc::new(LateDial {
        inner: NetfdTarget::new(Variant::FdMutex),
        delay,
        released: released.clone(),
    });
    let sources = [Source {
        scenario: scenario::parse_str(DIAL, "dial.json").unwrap_or_else(|e| panic!("{e}")),
        file: "dial.json".into(),
    }];
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode: Mode::Free,
        seed: 5,
        cases: 1,
        budget: Duration::from_secs(60),
        case_dir: Some(dir.path().join("cases")),
        hang_bound: BOUND,
        jobs: 1,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let report = run::run(target, &sources, &cfg, &|_, _| {}).expect("run");
    // Let a dial still waiting go, so no thread outlives the test.
    *released.0.lock().unwrap() = true;
    released.1.notify_all();
    report
}

#[test]
fn a_tcp_dial_back_within_the_syn_retransmissions_is_not_a_hang() {
    // Over the hang bound, as a dial whose first SYN was dropped is.
    let report = run_late(Duration::from_millis(1300));
    let s = &report.scenarios[0];
    assert_eq!(s.cases, 1);
    assert!(s.violations.is_empty(), "{:#?}", s.violations);
}

#[test]
fn a_tcp_dial_that_does_not_come_back_is_a_hang() {
    let report = run_late(Duration::from_secs(60));
    let v = &report.scenarios[0].violations;
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].kind, ViolationKind::Hang);
    assert_eq!(v[0].op, "dial listener=0 conn=0");
    assert!(
        v[0].message.contains("did not return 3.3s after Close"),
        "{}",
        v[0].message
    );
}

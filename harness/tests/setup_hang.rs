//! A target that blocks while a case is set up (its `dial` never returns:
//! seen with a mutant whose failed connect's Close waited forever) is
//! reported as a `hang` of that case, and the run goes on and ends: setup
//! is bounded like every op (`exec/setup.rs`, at least 10 s), so the
//! harness itself never hangs on a target.

use harness::report::{Mode, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario;
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::Variant;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// netfd's target, except that `dial` blocks until the test lets it go.
struct StuckDial {
    inner: NetfdTarget,
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl Target for StuckDial {
    fn name(&self) -> String {
        "custom:stuck-dial".into()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        self.inner.listen(addr)
    }
    fn dial(&self, _addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let (lock, cv) = &*self.released;
        let mut go = lock.lock().unwrap();
        while !*go {
            go = cv.wait(go).unwrap();
        }
        Err(io::Error::other("released at the end of the test"))
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        self.inner.bind_datagram(local, peer)
    }
}

const SCENARIOS: [&str; 2] = [
    r#"{ "name": "needs_a_dial", "description": "one pre-established TCP connection",
         "transport": "tcp4", "connections": 1,
         "threads": [ { "name": "t", "ops": [ { "op": "read", "conn": 0, "bytes": 1 } ] } ] }"#,
    r#"{ "name": "needs_no_dial", "description": "a UDP socket only",
         "transport": "udp4", "connections": 1,
         "threads": [ { "name": "t", "ops": [ { "op": "write_to", "conn": 0, "bytes": 1 } ] } ] }"#,
];

#[test]
fn a_setup_that_never_returns_is_a_hang_and_the_run_ends() {
    harness::intercept::link();
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let target: Arc<dyn Target> = Arc::new(StuckDial {
        inner: NetfdTarget::new(Variant::FdMutex),
        released: released.clone(),
    });
    let sources: Vec<Source> = SCENARIOS
        .iter()
        .enumerate()
        .map(|(i, text)| Source {
            scenario: scenario::parse_str(text, format!("s{i}.json"))
                .unwrap_or_else(|e| panic!("{e}")),
            file: format!("s{i}.json"),
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode: Mode::Controlled,
        seed: 3,
        cases: 5,
        budget: Duration::from_secs(120),
        case_dir: Some(dir.path().join("cases")),
        hang_bound: Duration::from_millis(200),
        jobs: 1,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let started = Instant::now();
    // On a thread, so that a harness that hangs in setup fails this test
    // (after a generous bound) instead of hanging the suite.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(run::run(target, &sources, &cfg, &|_, _| {}).expect("run"));
    });
    let report = rx.recv_timeout(Duration::from_secs(90));
    // Let the stuck dials go (they fail), so no thread outlives the test.
    *released.0.lock().unwrap() = true;
    released.1.notify_all();
    let report =
        report.unwrap_or_else(|_| panic!("the run hung in setup ({:?})", started.elapsed()));

    let stuck = &report.scenarios[0];
    assert_eq!(stuck.name, "needs_a_dial");
    assert_eq!(stuck.cases, 1, "a hang stops the scenario");
    let v = &stuck.violations[0];
    assert_eq!(v.kind, ViolationKind::Hang);
    assert_eq!(
        (v.op.as_str(), v.thread.as_str()),
        ("case setup", "harness")
    );
    assert!(v.message.contains("did not return"), "{}", v.message);
    // The next scenario, which needs no dial, ran and is clean.
    let next = &report.scenarios[1];
    assert_eq!(next.name, "needs_no_dial");
    assert!(
        next.cases >= 1 && next.violations.is_empty(),
        "{:?}",
        next.violations
    );
}

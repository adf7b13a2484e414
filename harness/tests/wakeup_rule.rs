//! The late-wake-up rule (`no_late_wakeup`, `harness/src/exec/wakeup.rs`):
//! a read running when the peer's bytes arrive must return within the
//! tolerance of them. fdmutex keeps it on both wait paths and in both
//! modes on the `peer_write_wakes_parked_read_*` files (one per transport);
//! a target whose reader comes back 700 ms after its bytes (past the 500 ms tolerance) breaks it;
//! and a read on a connection two threads read, whose bytes the other
//! reader may have taken, is not judged.

mod drowsy;

use drowsy::Drowsy;
use harness::exec::{self, CaseConfig};
use harness::report::{Mode, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario;
use harness::target::{NetfdTarget, Target};
use netfd::{Variant, WaitPath};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TRANSPORTS: [&str; 5] = ["tcp4", "udp4", "unix", "unixgram", "unixpacket"];

fn shipped() -> Vec<Source> {
    TRANSPORTS
        .iter()
        .map(|t| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scenarios")
                .join(format!("peer_write_wakes_parked_read_{t}.json"));
            Source {
                scenario: scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}")),
                file: path.display().to_string(),
            }
        })
        .collect()
}

fn run_all(target: Arc<dyn Target>, mode: Mode, cases: u64) -> harness::report::Report {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode,
        seed: 31,
        cases,
        budget: Duration::from_secs(120),
        case_dir: Some(dir.path().join("cases")),
        hang_bound: Duration::from_secs(2),
        jobs: 0,
        shard: None,
        fail_fast: false,
    };
    run::run(target, &shipped(), &cfg, &|_, _| {}).expect("run")
}

#[test]
fn fdmutex_wakes_on_the_peers_bytes_on_both_wait_paths() {
    for wait in [WaitPath::Direct, WaitPath::Server] {
        for mode in [Mode::Free, Mode::Controlled] {
            let target = Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
            let report = run_all(target, mode, 40);
            for s in &report.scenarios {
                assert!(
                    s.violations.is_empty(),
                    "{wait:?} {mode:?} {}: {:?}",
                    s.name,
                    s.violations
                        .iter()
                        .map(|v| (v.kind, v.message.clone()))
                        .collect::<Vec<_>>()
                );
                // The rule looked: some read had its bytes arrive while it ran.
                assert!(
                    s.assertions.no_late_wakeup.count > 0,
                    "{wait:?} {mode:?} {}: no read was judged",
                    s.name
                );
            }
        }
    }
}

#[test]
fn a_reader_back_700_ms_after_its_bytes_is_late() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios/peer_write_wakes_parked_read_tcp4.json");
    let s = scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let target: Arc<dyn Target> = Arc::new(Drowsy(NetfdTarget::new(Variant::FdMutex)));
    for mode in [Mode::Free, Mode::Controlled] {
        let mut late = 0;
        for i in 0..6 {
            let mut cc = CaseConfig::new(mode, i);
            cc.hang_bound = Duration::from_secs(3);
            let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
            let kinds: Vec<_> = o.found.iter().map(|f| f.kind).collect();
            assert!(
                kinds.iter().all(|&k| k == ViolationKind::LateWakeup),
                "{mode:?} case {i}: only late_wakeup expected, got {kinds:?}"
            );
            late += usize::from(!kinds.is_empty());
        }
        // Every case has a read that gets bytes, unless the schedule ran
        // both peer writes before both reads (controlled mode may).
        assert!(late >= 3, "{mode:?}: late_wakeup in only {late} of 6 cases");
    }
}

/// Two threads read one connection; the peer writes once. One reader gets
/// the bytes, the other rightly stays parked until teardown's Close: not a
/// late wake-up.
const TWO_READERS: &str = r#"{
  "name": "one_write_two_readers",
  "description": "Two readers parked on one connection, one peer write: one reader takes the bytes, the other waits for Close.",
  "transport": "tcp4",
  "connections": 1,
  "threads": [
    { "name": "r1", "ops": [ { "op": "read", "conn": 0, "bytes": 64 } ] },
    { "name": "r2", "ops": [ { "op": "read", "conn": 0, "bytes": 64 } ] },
    { "name": "peer", "ops": [
      { "op": "sleep", "ms": 5 },
      { "op": "peer_write", "conn": 0, "bytes": 16 }
    ] }
  ],
  "expect": "One read returns the bytes, the other the closed error at teardown."
}"#;

#[test]
fn a_reader_whose_bytes_another_took_is_not_judged() {
    let s = scenario::parse_str(TWO_READERS, "one_write_two_readers.json").expect("the case loads");
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::FdMutex));
    for mode in [Mode::Free, Mode::Controlled] {
        for i in 0..5 {
            let mut cc = CaseConfig::new(mode, i);
            cc.hang_bound = Duration::from_secs(2);
            let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
            assert!(
                o.found.is_empty(),
                "{mode:?} case {i}: {:?}",
                o.found
                    .iter()
                    .map(|f| (f.kind, f.message.clone()))
                    .collect::<Vec<_>>()
            );
        }
    }
}

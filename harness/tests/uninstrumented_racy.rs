//! The racy uninstrumented wrapper (see `uninstrumented_wrapper`): no probe
//! calls, yet the interposer lets a controlled schedule switch between its
//! load of the number and the syscall that uses it, and the ledger sees the
//! read reach the socket that took the freed number: `fd_reuse`, with the
//! two inodes as evidence.
//!
//! In its own test binary: the racy wrapper's stale reads may reach any
//! socket of the process, so no other test shares it.

mod uninstrumented_wrapper;

use harness::exec::{self, CaseConfig};
use harness::report::{schema, Mode, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario;
use harness::target::Target;
use std::sync::Arc;
use std::time::Duration;
use uninstrumented_wrapper::{RawTarget, CLOSE_VS_READ};

#[test]
fn the_racy_wrapper_is_caught_as_fd_reuse_with_inode_evidence() {
    harness::intercept::link();
    let s = scenario::parse_str(CLOSE_VS_READ, "raw.json").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode: Mode::Controlled,
        seed: 7,
        cases: 300,
        budget: Duration::from_secs(120),
        case_dir: Some(dir.path().join("cases")),
        hang_bound: Duration::from_millis(500),
        // One case at a time: the racy wrapper's stale numbers reach any socket
        // in the process, a neighbouring case's too.
        jobs: 1,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let target: Arc<dyn Target> = Arc::new(RawTarget { guarded: false });
    let sources = [Source {
        scenario: s,
        file: "raw.json".into(),
    }];
    let report = run::run(target, &sources, &cfg, &|_, _| {}).expect("run");
    let path = report.write_atomic(dir.path()).expect("write report");
    schema::validate_report_file(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.variant, "custom:raw-racy");
    let sc = &report.scenarios[0];
    assert!(sc.syscalls_checked > 0, "the ledger checked its calls");
    let kinds = run::kinds_found(&report);
    let v = sc
        .violations
        .iter()
        .find(|v| v.kind == ViolationKind::FdReuse)
        .unwrap_or_else(|| panic!("no fd_reuse in {} cases; found {kinds:?}", sc.cases));
    assert_eq!(v.thread, "reader");
    assert_eq!(v.op, "read");
    let evidence = v.evidence.as_deref().unwrap_or("");
    assert!(evidence.contains("inode"), "evidence: {evidence:?}");
    assert!(!v.schedule.is_empty() && !v.trace.is_empty());
    assert!(
        v.replay.contains("raw_close_vs_read_with_churn"),
        "{}",
        v.replay
    );
    eprintln!(
        "first fd_reuse in case {} of {}: {}",
        v.case, sc.cases, v.message
    );

    // The saved schedule replays the interleaving, as a case of netfd does:
    // switch points inside the foreign op are as deterministic as netfd's.
    let s = scenario::parse_str(CLOSE_VS_READ, "raw.json").unwrap_or_else(|e| panic!("{e}"));
    let target: Arc<dyn Target> = Arc::new(RawTarget { guarded: false });
    let replays = 5;
    let mut reproduced = 0;
    for _ in 0..replays {
        let mut cc = CaseConfig::new(Mode::Controlled, v.seed);
        cc.hang_bound = Duration::from_millis(500);
        cc.schedule = v.schedule.clone();
        let o = exec::run_case(target.clone(), &s, &cc).expect("replay runs");
        if o.found.iter().any(|f| f.kind == ViolationKind::FdReuse) {
            reproduced += 1;
        }
        if o.hung {
            break;
        }
    }
    assert!(
        reproduced >= replays - 1,
        "the saved schedule reproduced fd_reuse in {reproduced} of {replays} replays"
    );
}

//! The `unixpacket` transport: Unix-domain sequenced-packet sockets
//! (`SOCK_SEQPACKET`, Go's `unixpacket`) under test, connected to a
//! harness-owned peer or accepted from a listener in the case's private
//! directory. The shipped `*_unixpacket` scenarios are clean against fdmutex
//! on both wait paths and catch every historical variant; the target API
//! behind them keeps record boundaries; a target without such sockets (std)
//! fails to set them up with a message that says so; and a write larger
//! than a record can be is refused when the scenario loads.

mod transport_support;

use harness::gen::{self, case_rng, proptest_config, Bounds, GenConfig, TargetKinds};
use harness::report::{Mode, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario::{self, Transport};
use harness::target::{Addr, NetfdTarget, StdNetTarget, Target};
use netfd::{Variant, WaitPath};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// The tests of this file run one at a time: the historical variants close
/// numbers they no longer own, and in one process such a stray Close can
/// hit another test's sockets.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn unixpacket_scenarios() -> Vec<Source> {
    transport_support::shipped_on(Transport::Unixpacket)
}

#[test]
fn the_shipped_unixpacket_scenarios_cover_reads_writes_accepts_and_deadlines() {
    let sources = unixpacket_scenarios();
    assert!(
        sources.len() >= 5,
        "only {} unixpacket files",
        sources.len()
    );
    let has = |name: &str| {
        sources.iter().any(|src| {
            src.scenario
                .threads
                .iter()
                .flat_map(|t| t.ops.iter())
                .any(|o| o.name() == name)
        })
    };
    for op in [
        "read",
        "write",
        "accept",
        "dial",
        "close_listener",
        "set_deadline",
        "peer_close",
        "open",
    ] {
        assert!(has(op), "no unixpacket scenario has {op}");
    }
    for src in &sources {
        assert!(
            src.scenario.name.ends_with("_unixpacket"),
            "{}",
            src.scenario.name
        );
    }
}

#[test]
fn fdmutex_is_clean_on_unixpacket_on_both_wait_paths_and_modes() {
    let _alone = alone();
    let sources = unixpacket_scenarios();
    for wait in [WaitPath::Direct, WaitPath::Server] {
        for mode in [Mode::Controlled, Mode::Free] {
            let target: Arc<dyn Target> =
                Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
            let report = transport_support::run_on(target, &sources, 100, mode);
            assert!(
                report.summary.passed,
                "{} {mode}: {:#?}",
                wait.name(),
                report.violations().map(|(_, v)| v).collect::<Vec<_>>()
            );
            assert_eq!(report.scenarios.len(), sources.len());
            for sr in &report.scenarios {
                assert!(
                    sr.cases >= 20,
                    "{} {mode}: {} ran {} cases",
                    wait.name(),
                    sr.name,
                    sr.cases
                );
                assert!(
                    sr.syscalls_checked > sr.cases,
                    "{} {mode}: {}",
                    wait.name(),
                    sr.name
                );
            }
        }
    }
}

#[test]
fn every_historical_variant_is_caught_on_unixpacket() {
    let _alone = alone();
    let sources = unixpacket_scenarios();
    for variant in [
        Variant::Go2009Refcount,
        Variant::Go2009CloseAck,
        Variant::NaiveClose,
    ] {
        let target: Arc<dyn Target> = Arc::new(NetfdTarget::new(variant));
        let report = transport_support::run_on(target, &sources, 100, Mode::Controlled);
        let kinds = run::kinds_found(&report);
        eprintln!("{} on unixpacket: {kinds:?}", variant.name());
        assert!(
            !report.summary.passed,
            "{} passed on unixpacket",
            variant.name()
        );
    }
    // naive-close is caught by the ledger's rules, not only a wrong error:
    // its Close released a number another thread still used.
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::NaiveClose));
    let kinds = run::kinds_found(&transport_support::run_on(
        target,
        &sources,
        100,
        Mode::Controlled,
    ));
    assert!(
        kinds.contains(&ViolationKind::UseAfterClose) || kinds.contains(&ViolationKind::FdReuse),
        "{kinds:?}"
    );
}

#[test]
fn netfd_target_keeps_record_boundaries_and_close_wakes_a_parked_accept() {
    let _alone = alone();
    for wait in [WaitPath::Direct, WaitPath::Server] {
        let t = NetfdTarget::with_wait(Variant::FdMutex, Some(wait));
        assert!(t.has_unix_seqpacket());
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = Addr::UnixPacket(dir.path().join("l.sock"));
        let listener = t.listen(&addr).expect("listen");
        assert_eq!(listener.local_addr().expect("local_addr"), addr);
        let dialled = t.dial(&addr).expect("dial");
        let accepted = listener.accept().expect("accept");
        assert_eq!(dialled.write(b"one").expect("write"), 3);
        assert_eq!(dialled.write(b"second").expect("write"), 6);
        let mut buf = [0u8; 64];
        assert_eq!(
            accepted.read(&mut buf).expect("read"),
            3,
            "one record per read"
        );
        assert_eq!(&buf[..3], b"one");
        assert_eq!(accepted.read(&mut buf).expect("read"), 6);
        assert_eq!(&buf[..6], b"second");
        std::thread::scope(|s| {
            let parked = s.spawn(|| listener.accept().map(drop));
            listener.close().expect("close");
            let r = parked.join().expect("acceptor");
            assert!(
                r.as_ref().is_err_and(netfd::is_closed),
                "{}: parked accept after Close returned {:?}",
                wait.name(),
                r.map_err(|e| e.to_string())
            );
        });
        dialled.close().expect("close");
        accepted.close().expect("close");
    }
}

#[test]
fn a_target_without_seqpacket_sockets_says_so() {
    let _alone = alone();
    assert!(!StdNetTarget.has_unix_seqpacket());
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = Addr::UnixPacket(dir.path().join("l.sock"));
    for e in [
        StdNetTarget.listen(&addr).map(drop).unwrap_err(),
        StdNetTarget.dial(&addr).map(drop).unwrap_err(),
    ] {
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("sequenced-packet"), "{e}");
    }
    // A scenario run does not set it up: no case runs.
    let sources = unixpacket_scenarios();
    let one = &sources[..1];
    harness::intercept::link();
    let cases = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode: Mode::Controlled,
        seed: 1,
        cases: 3,
        budget: Duration::from_secs(30),
        case_dir: Some(cases.path().to_path_buf()),
        hang_bound: Duration::from_secs(1),
        jobs: 1,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    // It is skipped, not failed: std declares no sequenced-packet sockets.
    let report = run::run(Arc::new(StdNetTarget), one, &cfg, &|_, _| {}).expect("run");
    assert!(
        report.scenarios.is_empty(),
        "a unixpacket scenario ran on std"
    );
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert!(report.skipped[0].reason.contains("UnixSeqpacket"));
}

#[test]
fn a_record_larger_than_a_datagram_is_refused_at_load() {
    let text = r#"{
      "name": "too_big_unixpacket",
      "description": "one record too large",
      "transport": "unixpacket",
      "connections": 1,
      "threads": [ { "name": "w", "ops": [ { "op": "write", "conn": 0, "bytes": 70000 } ] } ]
    }"#;
    let err = scenario::parse_str(text, "too_big.json").expect_err("70,000 bytes in one record");
    let msg = err.to_string();
    assert!(
        msg.contains("too_big.json") && msg.contains("65507"),
        "{msg}"
    );
}

#[test]
fn generated_cases_draw_unixpacket_only_for_a_target_that_has_it() {
    let cfg = GenConfig::new(Mode::Controlled, 3, 600);
    let config = proptest_config(&cfg);
    let with = gen::case_strategy(Bounds::default());
    let without = gen::case_strategy_for(
        Bounds::default(),
        TargetKinds {
            unix_seqpacket: false,
            ..TargetKinds::ALL
        },
    );
    assert!(!TargetKinds::of(&StdNetTarget).unix_seqpacket);
    let mut drawn = 0;
    for i in 0..cfg.cases {
        let draw = |s: &proptest::strategy::BoxedStrategy<gen::GenCase>| {
            let mut runner = TestRunner::new_with_rng(config.clone(), case_rng(cfg.seed, i));
            s.new_tree(&mut runner).expect("draw").current()
        };
        let (a, b) = (draw(&with), draw(&without));
        assert_ne!(b.scenario.transport, Transport::Unixpacket);
        b.scenario.validate().expect("valid");
        if a.scenario.transport == Transport::Unixpacket {
            drawn += 1;
            a.scenario
                .validate()
                .expect("a generated unixpacket case is valid");
            assert_eq!(b.scenario.transport, Transport::Unix, "case {i}");
            assert_eq!(a.schedule, b.schedule, "case {i}");
        } else {
            assert_eq!(a, b, "case {i}");
        }
    }
    assert!(drawn > 0, "no unixpacket case in {} draws", cfg.cases);
}

/// Generated cases on the `unixpacket` transport alone (the other draws
/// skipped) against fdmutex on both wait paths, in both modes: all clean.
/// `UNIXPACKET_SOAK_CASES` sets the cases per path and mode (default 60).
#[test]
fn fdmutex_is_clean_on_generated_unixpacket_cases() {
    let _alone = alone();
    let per_run = transport_support::cases_from_env("UNIXPACKET_SOAK_CASES", 60);
    transport_support::fdmutex_is_clean_on_generated(Transport::Unixpacket, 22, per_run);
}

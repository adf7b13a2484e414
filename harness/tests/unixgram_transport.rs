//! The `unixgram` transport: Unix-domain datagram sockets under test, each
//! bound in the case's private directory and connected to a harness-owned
//! peer. The shipped `*_unixgram` scenarios are clean against fdmutex on
//! both wait paths and catch naive-close; the target API behind them works
//! on its own (netfd's and std's Unix datagram sockets, the default for a
//! target that has none); and generated cases draw the transport only for a
//! target that has it.

mod transport_support;

use harness::gen::{self, case_rng, proptest_config, Bounds, GenConfig};
use harness::report::{Mode, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario::{self, Op, Transport};
use harness::target::{Addr, Conn, NetfdTarget, StdNetTarget, Target};
use netfd::{Variant, WaitPath};
use proptest::strategy::{BoxedStrategy, Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The tests of this file run one at a time: naive-close closes numbers it
/// no longer owns, and in one process such a stray Close can hit another
/// test's sockets.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn unixgram_scenarios() -> Vec<Source> {
    transport_support::shipped_on(Transport::Unixgram)
}

#[test]
fn the_shipped_unixgram_scenarios_cover_parked_reads_writes_and_deadlines() {
    let sources = unixgram_scenarios();
    let ops = |s: &scenario::Scenario| -> Vec<Op> {
        s.threads.iter().flat_map(|t| t.ops.clone()).collect()
    };
    let has = |name: &str| {
        sources
            .iter()
            .any(|src| ops(&src.scenario).iter().any(|o| o.name() == name))
    };
    assert!(sources.len() >= 5, "only {} unixgram files", sources.len());
    for op in ["read_from", "write_to", "set_deadline", "close", "open"] {
        assert!(has(op), "no unixgram scenario has {op}");
    }
    for src in &sources {
        assert!(
            src.scenario.name.ends_with("_unixgram"),
            "{}",
            src.scenario.name
        );
        assert_eq!(src.scenario.listeners, 0, "{}", src.scenario.name);
    }
}

#[test]
fn fdmutex_is_clean_on_unixgram_on_both_wait_paths() {
    let _alone = alone();
    let sources = unixgram_scenarios();
    for wait in [WaitPath::Direct, WaitPath::Server] {
        let target: Arc<dyn Target> =
            Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
        let report = transport_support::run_on(target, &sources, 150, Mode::Controlled);
        assert!(
            report.summary.passed,
            "{}: {:#?}",
            wait.name(),
            report.violations().map(|(_, v)| v).collect::<Vec<_>>()
        );
        assert_eq!(report.scenarios.len(), sources.len());
        for sr in &report.scenarios {
            assert!(
                sr.cases >= 20,
                "{}: {} ran {} cases",
                wait.name(),
                sr.name,
                sr.cases
            );
            assert!(
                sr.syscalls_checked > sr.cases,
                "{}: {}",
                wait.name(),
                sr.name
            );
        }
    }
}

#[test]
fn naive_close_is_caught_on_unixgram() {
    let _alone = alone();
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::new(Variant::NaiveClose));
    let report = transport_support::run_on(target, &unixgram_scenarios(), 100, Mode::Controlled);
    let kinds = run::kinds_found(&report);
    eprintln!("naive-close on unixgram: {kinds:?}");
    assert!(!report.summary.passed, "naive-close passed on unixgram");
    // The ledger's rules, not only a wrong error: its Close released a
    // number another thread still used.
    assert!(
        kinds.contains(&ViolationKind::UseAfterClose) || kinds.contains(&ViolationKind::FdReuse),
        "{kinds:?}"
    );
}

/// A connected pair as the harness sets one up: a std peer bound at `p`,
/// the target's socket bound at `g` and connected to it.
fn pair_of(
    target: &dyn Target,
    dir: &std::path::Path,
) -> (Box<dyn Conn>, std::os::unix::net::UnixDatagram) {
    let (g, p) = (dir.join("g.sock"), dir.join("p.sock"));
    let peer = std::os::unix::net::UnixDatagram::bind(&p).expect("peer");
    let conn = target
        .bind_unix_datagram(&g, &p)
        .expect("bind_unix_datagram");
    peer.connect(&g).expect("peer connects back");
    (conn, peer)
}

fn exchange_then_close_wakes_a_parked_read(target: &dyn Target, closed: fn(&io::Error) -> bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (conn, peer) = pair_of(target, dir.path());
    assert_eq!(conn.write(b"ping").expect("send"), 4);
    let mut buf = [0u8; 16];
    assert_eq!(peer.recv(&mut buf).expect("peer recv"), 4);
    assert_eq!(&buf[..4], b"ping");
    peer.send(b"pong!").expect("peer send");
    assert_eq!(conn.read(&mut buf).expect("recv"), 5, "one datagram");
    assert_eq!(&buf[..5], b"pong!");
    std::thread::scope(|s| {
        let parked = s.spawn(|| conn.read(&mut [0u8; 16]));
        // The read parks (nothing is sent); Close must end it whenever it
        // runs, before or after the read parks.
        conn.close().expect("close");
        match parked.join().expect("reader") {
            Err(e) => assert!(closed(&e), "parked read returned {e}"),
            // std's shutdown-to-cancel: a shut-down socket reads 0.
            Ok(n) => assert_eq!(n, 0),
        }
    });
}

#[test]
fn netfd_target_makes_connected_unix_datagram_sockets() {
    let _alone = alone();
    for wait in [WaitPath::Direct, WaitPath::Server] {
        let t = NetfdTarget::with_wait(Variant::FdMutex, Some(wait));
        assert!(t.has_unix_datagram());
        exchange_then_close_wakes_a_parked_read(&t, netfd::is_closed);
    }
}

#[test]
fn std_net_target_makes_connected_unix_datagram_sockets() {
    let _alone = alone();
    assert!(StdNetTarget.has_unix_datagram());
    exchange_then_close_wakes_a_parked_read(&StdNetTarget, |e| {
        matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::NotConnected
        )
    });
}

/// A target with only the required methods.
struct InetOnly(NetfdTarget);

impl Target for InetOnly {
    fn name(&self) -> String {
        "custom:inet-only".into()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn harness::target::Listener>> {
        self.0.listen(addr)
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        self.0.dial(addr)
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        self.0.bind_datagram(local, peer)
    }
    // It hands out netfd's sockets, which report every call.
    fn reports_syscalls(&self) -> bool {
        true
    }
}

#[test]
fn a_target_without_unix_datagram_sockets_says_so() {
    let _alone = alone();
    let t = InetOnly(NetfdTarget::new(Variant::FdMutex));
    assert!(!t.has_unix_datagram());
    let dir = tempfile::tempdir().expect("tempdir");
    let err = match t.bind_unix_datagram(&dir.path().join("g"), &dir.path().join("p")) {
        Ok(_) => panic!("the default made a socket"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);
    assert!(err.to_string().contains("custom:inet-only"), "{err}");
    assert!(err.to_string().contains("bind_unix_datagram"), "{err}");
    // Run over a unixgram file, the file is skipped, not failed, and the
    // report says why (the target declares no Unix datagram sockets).
    let sources = unixgram_scenarios();
    harness::intercept::link();
    let cfg = RunConfig {
        mode: Mode::Controlled,
        seed: 1,
        cases: 1,
        budget: Duration::from_secs(10),
        case_dir: None,
        hang_bound: Duration::from_secs(1),
        jobs: 1,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let report = run::run(Arc::new(t), &sources[..1], &cfg, &|_, _| {}).expect("run");
    assert!(report.scenarios.is_empty(), "a unixgram case ran");
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].file, sources[0].file);
    assert!(
        report.skipped[0].reason.contains("UnixDatagram"),
        "{:?}",
        report.skipped
    );
}

#[test]
fn generated_cases_draw_unixgram_only_for_a_target_that_has_it() {
    let cfg = GenConfig::new(Mode::Controlled, 3, 400);
    let config = proptest_config(&cfg);
    let with = gen::case_strategy(Bounds::default());
    let without = gen::case_strategy_without_unixgram(Bounds::default());
    let mut drawn = 0;
    for i in 0..400 {
        let draw = |s: &BoxedStrategy<gen::GenCase>| {
            let mut runner = TestRunner::new_with_rng(config.clone(), case_rng(cfg.seed, i));
            s.new_tree(&mut runner).expect("draw").current()
        };
        let (a, b) = (draw(&with), draw(&without));
        assert_ne!(b.scenario.transport, Transport::Unixgram);
        b.scenario.validate().expect("valid");
        if a.scenario.transport == Transport::Unixgram {
            drawn += 1;
            a.scenario.validate().expect("valid");
            assert_eq!(b.scenario.transport, Transport::Udp4);
            assert_eq!(a.scenario.threads, b.scenario.threads, "case {i}");
            assert_eq!(a.schedule, b.schedule, "case {i}");
        } else {
            assert_eq!(a, b, "case {i}");
        }
    }
    assert!(drawn > 0, "no unixgram case in 400 draws");
}

#[test]
fn a_generated_run_on_a_target_without_unix_datagram_sockets_runs_unixgram_draws_on_udp4() {
    let _alone = alone();
    harness::intercept::link();
    let mut cfg = GenConfig::new(Mode::Controlled, 3, 120);
    cfg.budget = Duration::from_secs(120);
    let config = proptest_config(&cfg);
    let with = gen::case_strategy(Bounds::default());
    let unixgram_draws = (0..cfg.cases)
        .filter(|&i| {
            let mut runner = TestRunner::new_with_rng(config.clone(), case_rng(cfg.seed, i));
            let case = with.new_tree(&mut runner).expect("draw").current();
            case.scenario.transport == Transport::Unixgram
        })
        .count();
    assert!(unixgram_draws > 0, "no unixgram draw among the cases run");
    let target: Arc<dyn Target> = Arc::new(InetOnly(NetfdTarget::new(Variant::FdMutex)));
    let run = gen::run_generated(target, &cfg, &|_| {})
        .unwrap_or_else(|e| panic!("a unixgram draw reached the target: {e}"));
    assert_eq!(run.stats.cases, cfg.cases, "every case ran");
    assert!(
        run.failure.is_none(),
        "{:?}",
        run.failure.map(|f| f.minimal_outcome.found)
    );
}

/// Generated cases on the `unixgram` transport alone (the other draws
/// skipped) against fdmutex on both wait paths, in both modes: all clean.
/// `UNIXGRAM_SOAK_CASES` sets the cases per path and mode (default 100).
#[test]
fn fdmutex_is_clean_on_generated_unixgram_cases() {
    let _alone = alone();
    let per_run = transport_support::cases_from_env("UNIXGRAM_SOAK_CASES", 100);
    transport_support::fdmutex_is_clean_on_generated(Transport::Unixgram, 21, per_run);
}

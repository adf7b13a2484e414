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
        workers: None,
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

/// A soak's minimal case (seed 47, case 47059): on unixgram, a read woken
/// by the peer's datagram; before it receives, the peer closes and the
/// local end sends to it (ECONNREFUSED), and the kernel drops the datagrams
/// waiting for the reader. The read rightly parks again until teardown's
/// Close: not a late wake-up. Replays 30 of 30 under its schedule.
const DATAGRAMS_DROPPED: &str = r#"{"name": "generated-case47059", "description": "Minimal case shrunk from generated case 47059 of seed 47 against fdmutex: unixgram, 2 threads, 9 ops.", "transport": "unixgram", "listeners": 0, "connections": 2, "slots": 0, "threads": [{"name": "t0", "ops": [{"op": "write_to", "conn": 0, "bytes": 1}, {"op": "set_deadline", "conn": 1, "dir": "read", "in_ms": -1}, {"op": "read_from", "conn": 0, "bytes": 50}]}, {"name": "t1", "ops": [{"op": "close", "conn": 1}, {"op": "open", "count": 3}, {"op": "peer_write", "conn": 0, "bytes": 32}, {"op": "peer_write", "conn": 0, "bytes": 25}, {"op": "peer_close", "conn": 0}, {"op": "write_to", "conn": 0, "bytes": 20}]}], "schedule": [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 0, 0, 2], "expect": "Every op completes or returns the closed error; no syscall reaches a released or reused number."}"#;

#[test]
fn unixgram_datagrams_the_kernel_dropped_after_the_peer_closed_are_not_late() {
    let s =
        scenario::parse_str(DATAGRAMS_DROPPED, "generated-case47059.json").expect("the case loads");
    let target: Arc<dyn Target> = Arc::new(NetfdTarget::with_wait(
        Variant::FdMutex,
        Some(WaitPath::Direct),
    ));
    for i in 0..3 {
        let mut cc = CaseConfig::new(Mode::Controlled, i);
        cc.schedule = s.schedule.clone().expect("the case has its schedule");
        cc.hang_bound = Duration::from_secs(2);
        let o = exec::run_case(target.clone(), &s, &cc).expect("case set up");
        assert!(
            o.found.is_empty(),
            "case {i}: {:?}",
            o.found
                .iter()
                .map(|f| (f.kind, f.message.clone()))
                .collect::<Vec<_>>()
        );
    }
}

fn write_side() -> Vec<Source> {
    ["tcp4", "unix"]
        .iter()
        .map(|t| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scenarios")
                .join(format!("peer_read_wakes_parked_write_{t}.json"));
            Source {
                scenario: scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}")),
                file: path.display().to_string(),
            }
        })
        .collect()
}

#[test]
fn fdmutex_writes_on_when_the_peer_frees_space_on_both_wait_paths() {
    for wait in [WaitPath::Direct, WaitPath::Server] {
        for mode in [Mode::Free, Mode::Controlled] {
            let target = Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
            let dir = tempfile::tempdir().expect("tempdir");
            let cfg = RunConfig {
                mode,
                seed: 37,
                cases: 12,
                budget: Duration::from_secs(120),
                case_dir: Some(dir.path().join("cases")),
                hang_bound: Duration::from_secs(2),
                jobs: 0,
                shard: None,
                fail_fast: false,
                workers: None,
            };
            let report = run::run(target, &write_side(), &cfg, &|_, _| {}).expect("run");
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
                // The rule looked: a peer_read began while the write ran.
                assert!(
                    s.assertions.no_late_wakeup.count > 0,
                    "{wait:?} {mode:?} {}: no write was judged",
                    s.name
                );
            }
        }
    }
}

/// A target whose writes, once they have sent 1 MiB, wait 700 ms before
/// each further 1 MiB: a writer woken late after the peer freed space.
struct LateRefill(NetfdTarget);
struct LateRefillConn(Box<dyn harness::target::Conn>);

impl harness::target::Conn for LateRefillConn {
    fn owner(&self) -> netfd::probe::OwnerId {
        self.0.owner()
    }
    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> std::io::Result<usize> {
        for (i, chunk) in buf.chunks(1 << 20).enumerate() {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(700));
            }
            let mut sent = 0;
            while sent < chunk.len() {
                sent += self.0.write(&chunk[sent..])?;
            }
        }
        Ok(buf.len())
    }
    fn set_deadline(
        &self,
        dir: harness::scenario::Direction,
        at: Option<std::time::Instant>,
    ) -> std::io::Result<()> {
        self.0.set_deadline(dir, at)
    }
    fn close(&self) -> std::io::Result<()> {
        self.0.close()
    }
}

impl Target for LateRefill {
    fn name(&self) -> String {
        "custom:late-refill".into()
    }
    fn listen(
        &self,
        _addr: &harness::target::Addr,
    ) -> std::io::Result<Box<dyn harness::target::Listener>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn dial(
        &self,
        addr: &harness::target::Addr,
    ) -> std::io::Result<Box<dyn harness::target::Conn>> {
        Ok(Box::new(LateRefillConn(self.0.dial(addr)?)))
    }
    fn bind_datagram(
        &self,
        _local: std::net::SocketAddr,
        _peer: std::net::SocketAddr,
    ) -> std::io::Result<Box<dyn harness::target::Conn>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

#[test]
fn a_writer_back_700_ms_after_the_peer_freed_space_is_late() {
    let target: Arc<dyn Target> = Arc::new(LateRefill(NetfdTarget::new(Variant::FdMutex)));
    for src in write_side() {
        for mode in [Mode::Free, Mode::Controlled] {
            let mut late = 0;
            for i in 0..4 {
                let mut cc = CaseConfig::new(mode, i);
                cc.hang_bound = Duration::from_secs(3);
                let o = exec::run_case(target.clone(), &src.scenario, &cc).expect("case set up");
                let kinds: Vec<_> = o.found.iter().map(|f| f.kind).collect();
                assert!(
                    kinds.iter().all(|&k| k == ViolationKind::LateWakeup),
                    "{} {mode:?} case {i}: only late_wakeup expected, got {:?}",
                    src.scenario.name,
                    o.found
                        .iter()
                        .map(|f| (f.kind, f.message.clone()))
                        .collect::<Vec<_>>()
                );
                late += usize::from(!kinds.is_empty());
            }
            // Judged only when the peer_read begins while the write runs
            // (the controlled schedule may run the peer first).
            assert!(
                late >= 2,
                "{} {mode:?}: late_wakeup in only {late} of 4 cases",
                src.scenario.name
            );
        }
    }
}

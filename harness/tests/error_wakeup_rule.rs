//! The error side of the late-wake-up rule (`no_late_wakeup`,
//! `harness/src/exec/wakeup.rs`): a read parked on a connected UDP socket
//! whose peer's port is closed must wake when a local send draws the ICMP
//! error (POLLERR alone, no data). fdmutex keeps it on both wait paths and
//! in both modes on `scenarios/error_wakes_parked_read_{udp4,udp6}.json`; a
//! target whose read comes back 700 ms after the error was pending breaks
//! it; and a read whose error a second send took is not judged.

use harness::exec::{self, CaseConfig};
use harness::report::{Mode, ViolationKind};
use harness::scenario::{self, Direction, Scenario};
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use netfd::{Variant, WaitPath};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn shipped(transport: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../scenarios/error_wakes_parked_read_{transport}.json"
    ));
    scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn run(
    target: &Arc<dyn Target>,
    s: &Scenario,
    mode: Mode,
    case: u64,
) -> Vec<(ViolationKind, String)> {
    let mut cc = CaseConfig::new(mode, case);
    cc.hang_bound = Duration::from_secs(2);
    let o = exec::run_case(target.clone(), s, &cc).expect("case set up");
    o.found
        .iter()
        .map(|f| (f.kind, f.message.clone()))
        .collect()
}

#[test]
fn fdmutex_wakes_on_the_error_on_both_wait_paths() {
    for transport in ["udp4", "udp6"] {
        let s = shipped(transport);
        for wait in [WaitPath::Direct, WaitPath::Server] {
            let target: Arc<dyn Target> =
                Arc::new(NetfdTarget::with_wait(Variant::FdMutex, Some(wait)));
            for mode in [Mode::Free, Mode::Controlled] {
                for i in 0..10 {
                    let found = run(&target, &s, mode, i);
                    assert!(
                        found.is_empty(),
                        "{transport} {wait:?} {mode:?} case {i}: {found:?}"
                    );
                }
            }
        }
    }
}

/// A UDP target whose reads wait 700 ms before they receive: a read that
/// the pending error did not wake, taken later by chance.
struct Sluggish(NetfdTarget);
struct SluggishConn(Box<dyn Conn>);

impl Conn for SluggishConn {
    fn owner(&self) -> OwnerId {
        self.0.owner()
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        std::thread::sleep(Duration::from_millis(700));
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        self.0.set_deadline(dir, at)
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.0.local_addr()
    }
}

impl Target for Sluggish {
    fn name(&self) -> String {
        "custom:sluggish".into()
    }
    fn listen(&self, _addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn dial(&self, _addr: &Addr) -> io::Result<Box<dyn Conn>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(SluggishConn(self.0.bind_datagram(local, peer)?)))
    }
}

#[test]
fn a_read_back_700_ms_after_a_pending_error_is_late() {
    let target: Arc<dyn Target> = Arc::new(Sluggish(NetfdTarget::new(Variant::FdMutex)));
    for transport in ["udp4", "udp6"] {
        let s = shipped(transport);
        for mode in [Mode::Free, Mode::Controlled] {
            let mut late = 0;
            for i in 0..4 {
                let found = run(&target, &s, mode, i);
                assert!(
                    found.iter().all(|(k, m)| *k == ViolationKind::LateWakeup && m.contains("error")),
                    "{transport} {mode:?} case {i}: only the error side of late_wakeup expected, got {found:?}"
                );
                late += usize::from(!found.is_empty());
            }
            // The write runs 10 ms into the case and the read sleeps
            // 700 ms: unless the kernel dropped the ICMP error (its global
            // rate limit), every case has the error pending while the read
            // sleeps.
            assert!(
                late >= 3,
                "{transport} {mode:?}: late_wakeup in only {late} of 4 cases"
            );
        }
    }
}

/// As the shipped case, with a second send 100 ms after the first: it
/// takes the pending error (and returns it), so the read rightly parks on
/// until teardown's Close. Not a late wake-up, even for a read that was
/// asleep when the error came.
const SECOND_SEND: &str = r#"{
  "name": "second_send_takes_the_error_udp4",
  "description": "A read parked on a connected UDP socket whose peer closed; two sends, the second taking the error the first drew.",
  "transport": "udp4",
  "connections": 1,
  "threads": [
    { "name": "reader", "ops": [ { "op": "read", "conn": 0, "bytes": 64 } ] },
    { "name": "peer", "ops": [
      { "op": "peer_close", "conn": 0 },
      { "op": "sleep", "ms": 10 },
      { "op": "write", "conn": 0, "bytes": 8 },
      { "op": "sleep", "ms": 100 },
      { "op": "write", "conn": 0, "bytes": 8 }
    ] }
  ],
  "expect": "The read returns the error, or, if the second send took it, the closed error at teardown."
}"#;

#[test]
fn a_read_whose_error_a_later_send_took_is_not_judged() {
    let s = scenario::parse_str(SECOND_SEND, "second_send_takes_the_error_udp4.json")
        .expect("the case loads");
    let targets: [Arc<dyn Target>; 2] = [
        Arc::new(NetfdTarget::with_wait(
            Variant::FdMutex,
            Some(WaitPath::Server),
        )),
        Arc::new(Sluggish(NetfdTarget::new(Variant::FdMutex))),
    ];
    for target in &targets {
        for mode in [Mode::Free, Mode::Controlled] {
            for i in 0..3 {
                let found = run(target, &s, mode, i);
                assert!(
                    found.is_empty(),
                    "{} {mode:?} case {i}: {found:?}",
                    target.name()
                );
            }
        }
    }
}

//! One process, many cases at once: `cargo test` runs tests as threads of
//! one process that share one descriptor table, so numbers freed by one
//! case are handed to another. The ledger attributes events by owner id and
//! by the threads a case registered its probe on, so cases running side by
//! side neither see nor blame each other.
//!
//! Here four threads run cases at the same time: two against `fdmutex`, two
//! against `naive-close`. The fdmutex cases must stay clean while the
//! naive-close cases next to them find violations, and nothing a case
//! reports (violation owner, holder, or any event of its trace) may name an
//! owner that another case created.
//!
//! The naive-close scenario's only stale operations are 4-byte reads: a read
//! that lands on another case's socket takes at most a few of its bytes and
//! fails on an eventfd (which needs 8), so the fdmutex cases' verdicts stay
//! theirs to earn.

use harness::exec::{self, CaseConfig, CaseOutcome};
use harness::report::{Mode, ViolationKind};
use harness::scenario::{self, Scenario};
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use netfd::Variant;
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

/// A netfd variant that remembers the owner of every socket it made, so a
/// test knows which owners belong to which case.
struct Recording {
    inner: NetfdTarget,
    owners: Arc<Mutex<HashSet<u64>>>,
}

struct RecordingListener {
    inner: Box<dyn Listener>,
    owners: Arc<Mutex<HashSet<u64>>>,
}

fn note(owners: &Mutex<HashSet<u64>>, owner: OwnerId) {
    owners.lock().unwrap().insert(owner.0);
}

impl Listener for RecordingListener {
    fn owner(&self) -> OwnerId {
        self.inner.owner()
    }
    fn accept(&self) -> io::Result<Box<dyn Conn>> {
        let c = self.inner.accept()?;
        note(&self.owners, c.owner());
        Ok(c)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn local_addr(&self) -> io::Result<Addr> {
        self.inner.local_addr()
    }
}

impl Target for Recording {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        let l = self.inner.listen(addr)?;
        note(&self.owners, l.owner());
        Ok(Box::new(RecordingListener {
            inner: l,
            owners: self.owners.clone(),
        }))
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let c = self.inner.dial(addr)?;
        note(&self.owners, c.owner());
        Ok(c)
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        let c = self.inner.bind_datagram(local, peer)?;
        note(&self.owners, c.owner());
        Ok(c)
    }
}

/// Close races small reads while churn takes the freed number.
const NAIVE_SCENARIO: &str = r#"{
  "name": "parallel_close_vs_small_reads",
  "description": "Close races 4-byte reads while another thread opens sockets that take the freed number.",
  "transport": "tcp4",
  "connections": 1,
  "threads": [
    { "name": "reader", "ops": [
      { "op": "peer_write", "conn": 0, "bytes": 4 },
      { "op": "read", "conn": 0, "bytes": 4 },
      { "op": "read", "conn": 0, "bytes": 4 },
      { "op": "read", "conn": 0, "bytes": 4 }
    ] },
    { "name": "closer", "ops": [
      { "op": "yield" },
      { "op": "close", "conn": 0 }
    ] },
    { "name": "churner", "ops": [
      { "op": "open", "count": 4 },
      { "op": "open", "count": 4 }
    ] }
  ]
}"#;

fn shipped(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(format!("{name}.json"));
    scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// One case as run, with the owners its target created.
struct Ran {
    variant: Variant,
    scenario: String,
    seed: u64,
    owners: HashSet<u64>,
    outcome: CaseOutcome,
}

fn run_one(variant: Variant, s: &Scenario, mode: Mode, seed: u64) -> Ran {
    let owners = Arc::new(Mutex::new(HashSet::new()));
    let target = Arc::new(Recording {
        inner: NetfdTarget::new(variant),
        owners: owners.clone(),
    });
    let mut cfg = CaseConfig::new(mode, seed);
    cfg.hang_bound = Duration::from_secs(2);
    let outcome = exec::run_case(target, s, &cfg).expect("case set up");
    let owners = owners.lock().unwrap().clone();
    Ran {
        variant,
        scenario: s.name.clone(),
        seed,
        owners,
        outcome,
    }
}

#[test]
fn parallel_cases_keep_their_verdicts_and_their_owners_apart() {
    let fdmutex_set = [
        shipped("close_with_fd_churn"),
        shipped("double_close"),
        shipped("close_parked_read_from_udp4"),
        scenario::parse_str(NAIVE_SCENARIO, "naive.json").unwrap(),
    ];
    let naive = scenario::parse_str(NAIVE_SCENARIO, "naive.json").unwrap();
    const ROUNDS: u64 = 60;
    let start = Arc::new(Barrier::new(4));
    let ran: Vec<Ran> = std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for w in 0..4u64 {
            let start = start.clone();
            let (fdmutex_set, naive) = (&fdmutex_set, &naive);
            workers.push(scope.spawn(move || {
                start.wait();
                let until = Instant::now() + Duration::from_secs(15);
                let mut out = Vec::new();
                for i in 0..ROUNDS {
                    if Instant::now() > until {
                        break;
                    }
                    let seed = w * 1000 + i;
                    out.push(if w < 2 {
                        let mode = if i % 2 == 0 {
                            Mode::Controlled
                        } else {
                            Mode::Free
                        };
                        let s = &fdmutex_set[(i as usize + w as usize) % fdmutex_set.len()];
                        run_one(Variant::FdMutex, s, mode, seed)
                    } else {
                        run_one(Variant::NaiveClose, naive, Mode::Controlled, seed)
                    });
                }
                out
            }));
        }
        workers
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });

    let fdmutex: Vec<&Ran> = ran
        .iter()
        .filter(|r| r.variant == Variant::FdMutex)
        .collect();
    let naive: Vec<&Ran> = ran
        .iter()
        .filter(|r| r.variant == Variant::NaiveClose)
        .collect();
    assert!(
        fdmutex.len() >= 8 && naive.len() >= 8,
        "{} / {}",
        fdmutex.len(),
        naive.len()
    );

    // fdmutex stays clean next to the racy cases.
    for r in &fdmutex {
        assert!(
            r.outcome.found.is_empty(),
            "fdmutex {} seed {}: {:#?}",
            r.scenario,
            r.seed,
            r.outcome.found
        );
        assert!(r.outcome.syscalls_checked > 0);
    }
    // naive-close is caught in its own cases.
    let caught = naive
        .iter()
        .filter(|r| {
            r.outcome.found.iter().any(|f| {
                matches!(
                    f.kind,
                    ViolationKind::FdReuse
                        | ViolationKind::UseAfterClose
                        | ViolationKind::CloseInFlight
                )
            })
        })
        .count();
    assert!(caught > 0, "no naive-close case was caught");

    // Owners are never shared between cases.
    let mut all = HashSet::new();
    for r in &ran {
        assert!(!r.owners.is_empty());
        for o in &r.owners {
            assert!(all.insert(*o), "owner #{o} created by two cases");
        }
    }
    // Everything a case reports names its own owners only.
    let allowed =
        |r: &Ran, o: u64| o == OwnerId::NONE.0 || o == OwnerId::INTERNAL.0 || r.owners.contains(&o);
    for r in &ran {
        for f in &r.outcome.found {
            let what = format!("{} {} seed {}: {f:#?}", r.variant, r.scenario, r.seed);
            assert!(
                r.owners.contains(&f.owner),
                "owner is not this case's: {what}"
            );
            if let Some(h) = f.holder {
                assert!(allowed(r, h), "holder is another case's: {what}");
            }
            for e in &f.trace {
                assert!(
                    allowed(r, e.owner),
                    "trace event {e:?} names another case's owner: {what}"
                );
            }
        }
    }
}

#[test]
fn a_descriptor_number_freed_by_one_case_and_reused_by_another_is_not_blamed_on_either() {
    // Two fdmutex cases at once, each opening and closing sockets as fast as
    // it can, so the lowest numbers keep passing from one case to the other:
    // neither may take the other's sockets for its own released ones.
    let churn = scenario::parse_str(
        r#"{ "name": "churn_only", "description": "Two threads churn descriptors while a connection is read and closed.",
             "transport": "udp4", "connections": 2,
             "threads": [
               { "name": "a", "ops": [ { "op": "open", "count": 16 }, { "op": "open", "count": 16 }, { "op": "close", "conn": 0 } ] },
               { "name": "b", "ops": [ { "op": "peer_write", "conn": 1, "bytes": 8 }, { "op": "read_from", "conn": 1, "bytes": 8 },
                                       { "op": "open", "count": 16 }, { "op": "close", "conn": 1 } ] } ] }"#,
        "churn.json",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ran: Vec<Ran> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..2u64)
            .map(|w| {
                let churn = &churn;
                scope.spawn(move || {
                    (0..20)
                        .map(|i| run_one(Variant::FdMutex, churn, Mode::Free, w * 100 + i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    for r in &ran {
        assert!(
            r.outcome.found.is_empty(),
            "seed {}: {:#?}",
            r.seed,
            r.outcome.found
        );
        assert!(r.outcome.syscalls_checked > 0);
    }
}

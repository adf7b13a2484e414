//! Every report the harness writes validates against `reports/schema.json`:
//! clean reports, and reports carrying every violation kind with all their
//! fields (holder, kernel evidence, trace, schedule, replay command), for
//! every variant, both modes, and a custom target. The other test files
//! validate the reports they write too (`cli_exit_codes`, `custom_target`);
//! this one makes sure every kind and shape is covered, and that the check
//! can fail.

mod drowsy;
mod polling;

use drowsy::Drowsy;
use harness::report::{schema, Mode, Report, ViolationKind};
use harness::run::{self, RunConfig, Source};
use harness::scenario::{self, Direction};
use harness::target::{Addr, Conn, Listener, NetfdTarget, Target};
use netfd::probe::OwnerId;
use netfd::Variant;
use std::collections::BTreeSet;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn shipped(names: &[&str]) -> Vec<Source> {
    names
        .iter()
        .map(|n| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scenarios")
                .join(format!("{n}.json"));
            Source {
                scenario: scenario::load_file(&path).unwrap_or_else(|e| panic!("{e}")),
                file: path.display().to_string(),
            }
        })
        .collect()
}

/// Run `sources` against `target`, write the report into `dir`, validate
/// the file, and read it back.
fn run_and_write(
    target: Arc<dyn Target>,
    sources: &[Source],
    mode: Mode,
    dir: &Path,
) -> (PathBuf, Report) {
    let cfg = RunConfig {
        mode,
        seed: 77,
        cases: 12,
        budget: Duration::from_secs(4),
        case_dir: Some(dir.join(format!("cases-{}", target.name().replace(':', "_")))),
        hang_bound: Duration::from_millis(300),
        // One case at a time: the sloppy target pairs connections by dial order.
        jobs: 1,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let report = run::run(target, sources, &cfg, &|_, _| {}).expect("run");
    let path = report.write_atomic(dir).expect("write");
    schema::validate_report_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let back = Report::read(&path).expect("read back");
    assert_eq!(back, report, "the file is the report");
    (path, back)
}

fn kinds(r: &Report) -> BTreeSet<ViolationKind> {
    r.violations().map(|(_, v)| v.kind).collect()
}

/// A deliberately sloppy target: reads go to the other connection, a read
/// with a deadline times out at once, Close releases nothing.
struct Sloppy {
    inner: NetfdTarget,
    conns: Arc<Mutex<Vec<Arc<dyn Conn>>>>,
}

struct SloppyConn {
    inner: Arc<dyn Conn>,
    index: usize,
    conns: Arc<Mutex<Vec<Arc<dyn Conn>>>>,
    deadline: AtomicBool,
}

impl Conn for SloppyConn {
    fn owner(&self) -> OwnerId {
        self.inner.owner()
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.deadline.load(Ordering::SeqCst) {
            return Err(netfd::error::timed_out());
        }
        let other = self.conns.lock().unwrap()[self.index ^ 1].clone();
        other.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn set_deadline(&self, dir: Direction, at: Option<Instant>) -> io::Result<()> {
        self.deadline.store(at.is_some(), Ordering::SeqCst);
        self.inner.set_deadline(dir, at)
    }
    fn close(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Target for Sloppy {
    fn name(&self) -> String {
        "custom:sloppy".into()
    }
    fn listen(&self, _addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        let inner: Arc<dyn Conn> = Arc::from(self.inner.dial(addr)?);
        let mut all = self.conns.lock().unwrap();
        all.push(inner.clone());
        Ok(Box::new(SloppyConn {
            inner,
            index: all.len() - 1,
            conns: self.conns.clone(),
            deadline: AtomicBool::new(false),
        }))
    }
    fn bind_datagram(&self, _local: SocketAddr, _peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

const SLOPPY_SCENARIO: &str = r#"{
  "name": "sloppy",
  "description": "Reads on the wrong connection, early timeouts and closes that release nothing.",
  "transport": "tcp4",
  "connections": 2,
  "threads": [ { "name": "user", "ops": [
    { "op": "peer_write", "conn": 0, "bytes": 8 },
    { "op": "read", "conn": 1, "bytes": 8 },
    { "op": "set_deadline", "conn": 0, "dir": "read", "in_ms": 5000 },
    { "op": "read", "conn": 0, "bytes": 8 },
    { "op": "close", "conn": 0 },
    { "op": "close", "conn": 1 }
  ] } ]
}"#;

/// A target whose SetDeadline accepts a deadline and forgets it: a read
/// parked when the deadline passes returns only when teardown closes it
/// (`late_deadline`).
struct Deaf(NetfdTarget);
struct DeafConn(Box<dyn Conn>);

impl Conn for DeafConn {
    fn owner(&self) -> OwnerId {
        self.0.owner()
    }
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn set_deadline(&self, _dir: Direction, _at: Option<Instant>) -> io::Result<()> {
        Ok(())
    }
    fn close(&self) -> io::Result<()> {
        self.0.close()
    }
}

impl Target for Deaf {
    fn name(&self) -> String {
        "custom:deaf".into()
    }
    fn listen(&self, _addr: &Addr) -> io::Result<Box<dyn Listener>> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        Ok(Box::new(DeafConn(self.0.dial(addr)?)))
    }
    fn bind_datagram(&self, _local: SocketAddr, _peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The sloppy target's report, its connections closed afterwards.
fn run_sloppy(dir: &Path) -> (PathBuf, Report) {
    let sloppy = Arc::new(Sloppy {
        inner: NetfdTarget::new(Variant::FdMutex),
        conns: Arc::new(Mutex::new(Vec::new())),
    });
    let src = [Source {
        scenario: scenario::parse_str(SLOPPY_SCENARIO, "sloppy.json")
            .unwrap_or_else(|e| panic!("{e}")),
        file: "sloppy.json".into(),
    }];
    let out = run_and_write(sloppy.clone(), &src, Mode::Controlled, dir);
    for c in sloppy.conns.lock().unwrap().iter() {
        let _ = c.close();
    }
    out
}

#[test]
fn reports_of_every_variant_mode_and_violation_kind_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut all_kinds = BTreeSet::new();
    let mut written = Vec::new();
    let netfd = |v| -> Arc<dyn Target> { Arc::new(NetfdTarget::new(v)) };

    // Clean, in both modes.
    for mode in [Mode::Controlled, Mode::Free] {
        let (p, r) = run_and_write(
            netfd(Variant::FdMutex),
            &shipped(&[
                "close_parked_read_tcp4",
                "double_close",
                "close_parked_read_from_udp4",
            ]),
            mode,
            dir.path(),
        );
        assert!(r.summary.passed, "{mode}: {:?}", kinds(&r));
        written.push(p);
    }
    // Caught: fd_reuse (with holder and inode evidence), use_after_close,
    // double_close, bad_error, close_in_flight, hang.
    let dirty: [(Variant, Mode, &[&str]); 4] = [
        (
            Variant::NaiveClose,
            Mode::Controlled,
            &[
                "double_close",
                "close_with_fd_churn",
                "close_vs_write_to_udp6",
            ],
        ),
        (
            Variant::NaiveClose,
            Mode::Free,
            &[
                "close_before_op_starts",
                "stale_readiness_after_reopen",
                "double_close",
            ],
        ),
        (
            Variant::Go2009CloseAck,
            Mode::Controlled,
            &["close_parked_read_tcp4"],
        ),
        (Variant::Go2009Refcount, Mode::Controlled, &["double_close"]),
    ];
    // naive-close parked in poll(2) (the direct wait path): its Close runs
    // close(2) while the poll is in the kernel, every time.
    let direct: Arc<dyn Target> = Arc::new(NetfdTarget {
        options: netfd::Options::for_variant(Variant::NaiveClose)
            .with_wait(netfd::WaitPath::Direct),
    });
    let dirty = dirty
        .into_iter()
        .map(|(v, mode, names)| (netfd(v), mode, names))
        .chain([(direct, Mode::Controlled, &["close_parked_read_tcp4"][..])]);
    for (target, mode, names) in dirty {
        let v = target.name();
        let (p, r) = run_and_write(target, &shipped(names), mode, dir.path());
        assert!(!r.summary.passed, "{v} {mode} not caught");
        for (_, viol) in r.violations() {
            assert!(!viol.trace.is_empty() || viol.kind == ViolationKind::Hang);
            assert!(viol.replay.starts_with("harness "), "{}", viol.replay);
        }
        all_kinds.extend(kinds(&r));
        written.push(p);
    }
    // A custom target: crosstalk, early_deadline, leak.
    let (p, r) = run_sloppy(dir.path());
    assert_eq!(r.variant, "custom:sloppy");
    all_kinds.extend(kinds(&r));
    written.push(p);

    // A custom target that forgets deadlines: late_deadline (a parked read
    // nothing wakes), ignored_deadline (a read after a past deadline that
    // returns the waiting data).
    let deaf: Arc<dyn Target> = Arc::new(Deaf(NetfdTarget::new(Variant::FdMutex)));
    let (p, r) = run_and_write(
        deaf,
        &shipped(&[
            "deadline_set_past_while_parked_tcp4",
            "deadline_past_with_data_tcp4",
        ]),
        Mode::Controlled,
        dir.path(),
    );
    for kind in [ViolationKind::LateDeadline, ViolationKind::IgnoredDeadline] {
        assert!(kinds(&r).contains(&kind), "{kind}: {:?}", kinds(&r));
    }
    all_kinds.extend(kinds(&r));
    written.push(p);

    // A custom target whose reads come back 700 ms after their bytes:
    // late_wakeup.
    let drowsy: Arc<dyn Target> = Arc::new(Drowsy(NetfdTarget::new(Variant::FdMutex)));
    let (p, r) = run_and_write(
        drowsy,
        &shipped(&["peer_write_wakes_parked_read_tcp4"]),
        Mode::Free,
        dir.path(),
    );
    assert!(
        kinds(&r).contains(&ViolationKind::LateWakeup),
        "late_wakeup: {:?}",
        kinds(&r)
    );
    all_kinds.extend(kinds(&r));
    written.push(p);

    // A custom target whose reads poll, spinning on the CPU between tries:
    // busy_wait.
    let spinning: Arc<dyn Target> = Arc::new(polling::Polling(
        NetfdTarget::new(Variant::FdMutex),
        polling::Between::ParkThenSpin {
            park: Duration::from_micros(100),
            spin: Duration::from_millis(4),
        },
    ));
    let waits = Source {
        scenario: polling::waits(),
        file: "reads_that_wait.json".into(),
    };
    let (p, r) = run_and_write(spinning, &[waits], Mode::Free, dir.path());
    assert!(
        kinds(&r).contains(&ViolationKind::BusyWait),
        "busy_wait: {:?}",
        kinds(&r)
    );
    all_kinds.extend(kinds(&r));
    written.push(p);

    let want: BTreeSet<ViolationKind> = ViolationKind::ALL.into_iter().collect();
    assert_eq!(
        all_kinds,
        want,
        "every kind appears in some report (missing: {:?})",
        want.difference(&all_kinds).collect::<Vec<_>>()
    );
    let with_evidence = written
        .iter()
        .map(|p| Report::read(p).unwrap())
        .flat_map(|r| r.scenarios.into_iter().flat_map(|s| s.violations))
        .filter(|v| v.kind == ViolationKind::FdReuse && v.holder.is_some() && v.evidence.is_some())
        .count();
    assert!(
        with_evidence > 0,
        "an fd_reuse with holder and evidence was written"
    );

    // Every file in the directory, including any written along the way, is
    // one of these valid reports or a saved case; no temporary file is left.
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            assert!(p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cases-"));
            continue;
        }
        assert!(written.contains(&p), "unexpected file {}", p.display());
        schema::validate_report_file(&p).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn the_schema_check_rejects_a_broken_report() {
    // Not a racy variant: this test runs next to the clean runs above, in
    // one descriptor table.
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, _) = run_sloppy(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let good: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(schema::validate_report_value(&good).is_ok());

    let mut no_summary = good.clone();
    no_summary.as_object_mut().unwrap().remove("summary");
    assert!(schema::validate_report_value(&no_summary).is_err());

    let mut bad_kind = good.clone();
    bad_kind["scenarios"][0]["violations"][0]["kind"] = "fd_reused".into();
    let err = schema::validate_report_value(&bad_kind).expect_err("unknown kind");
    assert!(err.contains("/scenarios/0/violations/0/kind"), "{err}");

    let mut bad_variant = good;
    bad_variant["variant"] = "my target".into();
    assert!(schema::validate_report_value(&bad_variant).is_err());
}

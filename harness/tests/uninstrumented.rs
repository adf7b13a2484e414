//! Socket code that was never instrumented, checked through the
//! interposer: the link itself (a plain `std` read on a case thread reaches
//! the observer, so a linker change cannot silently blind the harness), and
//! the correct twin of the racy wrapper (`uninstrumented_racy.rs`) found
//! clean in both modes.

mod uninstrumented_wrapper;

use harness::intercept::{self, Call, Kind, Observer, OwnerId, Scope};
use harness::report::{schema, Mode, Report};
use harness::run::{self, RunConfig, Source};
use harness::scenario;
use harness::target::Target;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uninstrumented_wrapper::{RawTarget, CLOSE_VS_ACCEPT, CLOSE_VS_READ};

/// name, kind, numbers, scope, result, numbers created.
type Seen = (&'static str, Kind, Vec<RawFd>, Scope, i64, Vec<RawFd>);

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    before: Mutex<Vec<&'static str>>,
}

impl Observer for Recorder {
    fn before(&self, call: &Call, _scope: Scope) -> bool {
        self.before.lock().unwrap().push(call.name);
        true
    }
    fn parking(&self) {}
    fn after(
        &self,
        call: &Call,
        scope: Scope,
        ret: i64,
        _errno: i32,
        created: &[RawFd],
        _parked: bool,
    ) {
        self.seen.lock().unwrap().push((
            call.name,
            call.kind,
            call.fds.to_vec(),
            scope,
            ret,
            created.to_vec(),
        ));
    }
}

#[test]
fn a_plain_std_read_on_an_observed_thread_reaches_the_observer() {
    assert!(intercept::link() > 30, "the entry points are compiled in");
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut b, _) = l.accept().unwrap();
    a.write_all(b"ping").unwrap();
    let rec = Recorder::default();
    let object = OwnerId::next();
    let mut buf = [0u8; 4];
    {
        let _observer = intercept::install(&rec);
        let _scope = intercept::scope(Scope {
            object,
            creates_for: OwnerId::NONE,
        });
        b.read_exact(&mut buf).unwrap();
        // errno survives the observer: a read on a closed number fails
        // with EBADF as the caller sees it.
        // SAFETY: a read of a number that is not open touches no memory.
        let r = unsafe { libc::read(-1, buf.as_mut_ptr().cast(), 1) };
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EBADF)
        );
        // The variadic fcntl(F_DUPFD_CLOEXEC) std's try_clone makes, and a
        // poll, are seen with the numbers they name and create.
        let clone = b.try_clone().unwrap();
        let mut p = libc::pollfd {
            fd: b.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 1);
        assert!(
            p.revents & libc::POLLOUT != 0,
            "the kernel's revents reach the caller"
        );
        let seen = rec.seen.lock().unwrap().clone();
        let fd = b.as_raw_fd();
        assert!(
            seen.iter()
                .any(|(name, kind, fds, _, _, made)| *name == "fcntl"
                    && *kind == Kind::Create
                    && fds == &[fd]
                    && made == &[clone.as_raw_fd()]),
            "try_clone not seen: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|(name, _, fds, _, ret, _)| *name == "poll" && fds == &[fd] && *ret == 1),
            "poll not seen: {seen:?}"
        );
    }
    assert_eq!(&buf, b"ping");
    let seen = rec.seen.lock().unwrap().clone();
    let fd = b.as_raw_fd();
    assert!(
        seen.iter()
            .any(|(name, kind, fds, scope, ret, _)| *kind == Kind::Read
                && fds == &[fd]
                && scope.object == object
                && *ret == 4
                && (*name == "recv" || *name == "read")),
        "std's read of fd {fd} was not seen: {seen:?}"
    );
    // Uninstalled: nothing more is seen.
    let n = rec.before.lock().unwrap().len();
    a.write_all(b"pong").unwrap();
    b.read_exact(&mut buf).unwrap();
    assert_eq!(rec.before.lock().unwrap().len(), n);
}

fn run_twin(text: &str, mode: Mode, cases: u64) -> Report {
    intercept::link();
    let s = scenario::parse_str(text, "raw.json").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode,
        seed: 11,
        cases,
        budget: Duration::from_secs(300),
        case_dir: Some(dir.path().join("cases")),
        // A blocking connect whose SYN met a full accept queue retries
        // after the kernel's 1 s initial timeout: a slow dial, not a hang.
        hang_bound: Duration::from_secs(3),
        jobs: 0,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let target: Arc<dyn Target> = Arc::new(RawTarget { guarded: true });
    let sources = [Source {
        scenario: s,
        file: "raw.json".into(),
    }];
    let report = run::run(target, &sources, &cfg, &|_, _| {}).expect("run");
    let path = report.write_atomic(dir.path()).expect("write report");
    schema::validate_report_file(&path).unwrap_or_else(|e| panic!("{e}"));
    report
}

fn assert_clean(report: &Report, mode: Mode, min_cases: u64) {
    assert_eq!(report.variant, "custom:raw-guarded");
    assert!(
        report.summary.passed,
        "{mode}: {:#?}",
        report.violations().map(|(_, v)| v).collect::<Vec<_>>()
    );
    assert!(
        report.summary.cases >= min_cases,
        "{mode}: only {} cases",
        report.summary.cases
    );
    assert!(
        report.summary.syscalls_checked > report.summary.cases,
        "{mode}: the ledger checked its calls"
    );
}

#[test]
fn the_twin_with_a_lock_across_each_syscall_is_clean_controlled() {
    let r = run_twin(CLOSE_VS_READ, Mode::Controlled, 1500);
    assert_clean(&r, Mode::Controlled, 1500);
    let r = run_twin(CLOSE_VS_ACCEPT, Mode::Controlled, 500);
    assert_clean(&r, Mode::Controlled, 500);
}

#[test]
fn the_twin_with_a_lock_across_each_syscall_is_clean_free() {
    let r = run_twin(CLOSE_VS_READ, Mode::Free, 1500);
    assert_clean(&r, Mode::Free, 1500);
    let r = run_twin(CLOSE_VS_ACCEPT, Mode::Free, 500);
    assert_clean(&r, Mode::Free, 500);
}

/// The ready-made `std::net` target over the repository's scenarios: what
/// the harness says about shutdown-to-cancel (docs/check-your-own-type.md,
/// "What it finds").
#[test]
fn std_net_with_shutdown_to_cancel_never_reuses_a_number_but_leaks_it() {
    intercept::link();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    // std has no sequenced-packet sockets: the unixpacket files cannot be
    // set up on it (unixpacket_transport.rs checks that it says so).
    let sources: Vec<Source> = scenario::load_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|(_, s)| s.transport != scenario::Transport::Unixpacket)
        .map(|(path, scenario)| Source {
            scenario,
            file: path.display().to_string(),
        })
        .collect();
    let reports = tempfile::tempdir().expect("tempdir");
    let cfg = RunConfig {
        mode: Mode::Controlled,
        seed: 5,
        cases: 20,
        budget: Duration::from_secs(120),
        case_dir: Some(reports.path().join("cases")),
        hang_bound: Duration::from_secs(1),
        jobs: 0,
        shard: None,
        fail_fast: false,
        workers: None,
    };
    let target: Arc<dyn Target> = Arc::new(harness::target::StdNetTarget);
    let report = run::run(target, &sources, &cfg, &|_, _| {}).expect("run");
    let kinds = run::kinds_found(&report);
    eprintln!("std-net: {kinds:?}");
    assert!(report.summary.syscalls_checked > 0);
    // The number an op uses stays open until the value drops: never reused.
    for (sc, v) in report.violations() {
        use harness::report::ViolationKind::*;
        match v.kind {
            Leak => {}
            // std has timeouts, not absolute deadlines: the only error
            // outside its contract.
            // (A refused SetDeadline puts no deadline in force, so the
            // deadline rules judge nothing here.)
            BadError if v.op.starts_with("set_deadline") => {}
            _ => panic!("{}: {} {}: {}", sc.name, v.kind, v.op, v.message),
        }
    }
    // Close cannot release the descriptor: std closes only on drop.
    assert!(
        kinds.contains(&harness::report::ViolationKind::Leak),
        "{kinds:?}"
    );
}

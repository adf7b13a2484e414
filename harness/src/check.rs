//! The harness in a user's own tests: one call checks a target.
//!
//! ```no_run
//! # use harness::target::Target;
//! # fn my_target() -> harness::target::StdNetTarget { harness::target::StdNetTarget }
//! #[test]
//! fn my_socket_is_close_safe() {
//!     harness::check(my_target()).cases(200).run();
//! }
//! ```
//!
//! [`check`] runs, in order:
//! 1. the saved regressions of this test (`<CARGO_MANIFEST_DIR>/harness-regressions/<test>/`,
//!    each on its saved schedule, controlled mode), so a failure found once
//!    is tried first on every later check until it is fixed;
//! 2. every shipped scenario file ([`SHIPPED`], compiled into the library)
//!    the target can run ([`crate::target::Capabilities`]; the others are
//!    skipped and counted in the report), then generated cases, in
//!    controlled mode, then in free mode.
//!
//! Cases run in worker processes re-run from the test binary
//! ([`crate::worker::Workers::for_this_test`]): in the worker, the same
//! call serves cases and never returns. On a failure the minimal case is
//! saved to the regressions directory (at most [`KEEP_PER_SCENARIO`] per
//! scenario) and [`Check::run`] panics with its violations, its
//! interleaving as text lanes, and the one line that replays it:
//! `HARNESS_REPLAY=<file> cargo test <test>`. With `HARNESS_REPLAY` set,
//! the check replays that one file instead ([`replay`]).

use crate::report::lanes::Lanes;
use crate::report::{Mode, Report, ScenarioReport, Skipped, Violation, ViolationKind};
use crate::run::{self, GenPlan, RunConfig, Source};
use crate::scenario;
use crate::target::{Addr, Capabilities, Capability, Conn, Listener, Target};
use crate::worker::Workers;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Every file of `scenarios/*.json`, as (file name, text): generated from
/// the directory when the library is built.
pub const SHIPPED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/scenarios.rs"));

/// The environment variable that makes a check replay one saved case.
pub const REPLAY_ENV: &str = "HARNESS_REPLAY";

/// Saved regressions per scenario at most; further failing cases are
/// counted, not saved.
pub const KEEP_PER_SCENARIO: usize = 3;

/// Times a saved case is replayed on its schedule (a controlled replay
/// repeats its interleaving, but a race against the kernel's number
/// allocation may need a second try).
const REPLAYS: u64 = 5;

/// The shipped scenarios, parsed.
pub fn shipped() -> Vec<Source> {
    SHIPPED
        .iter()
        .map(|(file, text)| Source {
            scenario: scenario::parse_str(text, file)
                .unwrap_or_else(|e| panic!("shipped scenario {file}: {e}")),
            file: (*file).to_string(),
        })
        .collect()
}

/// A check of `target`; see the module docs. Configure, then
/// [`Check::run`] (panics on failure) or [`Check::try_run`].
pub fn check(target: impl Target + 'static) -> Check {
    Check::new(Arc::new(target))
}

/// A check being configured.
pub struct Check {
    target: Arc<dyn Target>,
    caps: Capabilities,
    cases: u64,
    generated: u64,
    seed: u64,
    budget: Duration,
    modes: Vec<Mode>,
    regressions: Option<PathBuf>,
    only: Option<Vec<String>>,
    extra: Vec<Source>,
    isolate: bool,
}

/// A check that passed.
#[derive(Debug)]
pub struct Checked {
    /// One report per mode (and one for the regressions, first, if any).
    pub reports: Vec<Report>,
    /// Scenario files skipped for what the target lacks.
    pub skipped: Vec<Skipped>,
    /// Cases run in all.
    pub cases: u64,
}

impl std::fmt::Display for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variant = self.reports.first().map_or("", |r| r.variant.as_str());
        write!(
            f,
            "harness::check: {variant} passed {} cases in {} run(s); {} scenario file(s) skipped",
            self.cases,
            self.reports.len(),
            self.skipped.len()
        )?;
        for s in &self.skipped {
            write!(f, "\n  skipped {}: {}", s.file, s.reason)?;
        }
        Ok(())
    }
}

/// A check that failed: what [`Check::run`] panics with.
#[derive(Debug)]
pub struct Failure {
    /// The kinds of violation found, sorted (the case shown and saved is
    /// the earliest of the gravest kind).
    pub kinds: Vec<ViolationKind>,
    /// The saved case (in the regressions directory), if it was saved.
    pub saved: Option<PathBuf>,
    /// The one line that replays it.
    pub replay: String,
    /// Whether it was a saved regression that failed again.
    pub regression: bool,
    /// Other failing cases found and not saved.
    pub unsaved: u64,
    /// The whole message: violations, lanes, replay line.
    pub message: String,
    pub reports: Vec<Report>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Check {
    pub fn new(target: Arc<dyn Target>) -> Check {
        Check {
            caps: target.capabilities(),
            target,
            cases: 200,
            generated: 200,
            seed: 1,
            budget: Duration::from_secs(60),
            modes: vec![Mode::Controlled, Mode::Free],
            regressions: None,
            only: None,
            extra: Vec::new(),
            isolate: true,
        }
    }

    /// Cases per scenario file at most (default 200).
    pub fn cases(mut self, n: u64) -> Check {
        self.cases = n;
        self
    }

    /// Generated cases per mode at most (default 200; 0: none).
    pub fn generated(mut self, n: u64) -> Check {
        self.generated = n;
        self
    }

    pub fn seed(mut self, seed: u64) -> Check {
        self.seed = seed;
        self
    }

    /// Wall-clock budget of the whole check, shared by the modes
    /// (default 60 s).
    pub fn budget(mut self, d: Duration) -> Check {
        self.budget = d;
        self
    }

    /// The modes to run, in order (default controlled, then free).
    pub fn modes(mut self, modes: &[Mode]) -> Check {
        self.modes = modes.to_vec();
        self
    }

    /// The target lacks `c`, whatever its [`Target::capabilities`] say.
    pub fn without(mut self, c: Capability) -> Check {
        self.caps = self.caps.without(c);
        self
    }

    /// Only the shipped scenarios with these names (file names without
    /// `.json`); `&[]`: none (with [`Check::scenario`], only your own).
    pub fn only(mut self, names: &[&str]) -> Check {
        self.only = Some(names.iter().map(|s| s.to_string()).collect());
        self
    }

    /// A scenario of your own (JSON, `scenarios/README.md`), run after the
    /// shipped ones.
    pub fn scenario(mut self, json: &str) -> Check {
        let s = scenario::parse_str(json, "check.scenario")
            .unwrap_or_else(|e| panic!("Check::scenario: {e}"));
        self.extra.push(Source {
            file: format!("{}.json", s.name),
            scenario: s,
        });
        self
    }

    /// Where this test's regressions live (default
    /// `<CARGO_MANIFEST_DIR>/harness-regressions/<test name>/`).
    pub fn regressions(mut self, dir: impl Into<PathBuf>) -> Check {
        self.regressions = Some(dir.into());
        self
    }

    /// Run the cases in this process instead of worker processes (not
    /// advised: a racy target's stray calls reach your other tests).
    pub fn in_process(mut self) -> Check {
        self.isolate = false;
        self
    }

    /// Run the check; panic with the failure's message if it fails.
    pub fn run(self) -> Checked {
        match self.try_run() {
            Ok(c) => {
                eprintln!("{c}");
                c
            }
            Err(f) => panic!("{f}"),
        }
    }

    /// Run the check; a failure is returned, not panicked with.
    pub fn try_run(self) -> Result<Checked, Box<Failure>> {
        crate::intercept::link();
        let target: Arc<dyn Target> = Arc::new(Declared {
            inner: self.target.clone(),
            caps: self.caps,
        });
        // In the worker this serves cases and never returns.
        let workers = if self.isolate {
            Workers::for_this_test(&target)
        } else {
            None
        };
        let test = test_name();
        if let Ok(path) = std::env::var(REPLAY_ENV) {
            return replay_in(&target, Path::new(&path), workers, &test);
        }
        let dir = self
            .regressions
            .clone()
            .unwrap_or_else(|| default_dir(&test));
        let mut reports = Vec::new();
        let mut total = 0;

        // 1. Saved regressions first.
        let saved = saved_cases(&dir).map_err(|e| harness_failure(&e))?;
        if !saved.is_empty() {
            let mut cfg = RunConfig::new(Mode::Controlled, self.seed);
            cfg.cases = REPLAYS;
            cfg.budget = self.budget;
            cfg.workers = workers.clone();
            let report = run::run(target.clone(), &saved, &cfg, &|_, _| {})
                .map_err(|e| harness_failure(&e.0))?;
            total += cases_of(&report);
            if run::caught(&report) {
                let sr = report.scenarios.iter().find(|s| !s.violations.is_empty());
                let file = sr.map(|s| PathBuf::from(&s.file));
                reports.push(report);
                return Err(failure(reports, file, true, 0, &test));
            }
            reports.push(report);
        }

        // 2. Shipped scenarios (and the user's), then generated cases.
        let mut sources: Vec<Source> = shipped()
            .into_iter()
            .filter(|s| {
                self.only.as_ref().is_none_or(|o| {
                    o.iter()
                        .any(|n| *n == s.scenario.name || s.file == format!("{n}.json"))
                })
            })
            .collect();
        sources.extend(self.extra.iter().cloned());
        let cases_dir = tempfile::tempdir().map_err(|e| harness_failure(&e.to_string()))?;
        let mut skipped = Vec::new();
        let share = self.budget / self.modes.len().max(1) as u32;
        for &mode in &self.modes {
            let mut cfg = RunConfig::new(mode, self.seed);
            cfg.cases = self.cases;
            cfg.budget = share;
            cfg.fail_fast = true;
            cfg.case_dir = Some(cases_dir.path().to_path_buf());
            cfg.workers = workers.clone();
            let plan = (self.generated > 0).then(|| GenPlan::new(self.generated));
            let (report, gen) =
                run::run_with_generated(target.clone(), &sources, &cfg, plan.as_ref(), &|_, _| {})
                    .map_err(|e| harness_failure(&e.0))?;
            total += cases_of(&report);
            skipped.clone_from(&report.skipped);
            if run::caught(&report) {
                let (file, unsaved) = keep_minimal(&report, gen, cases_dir.path(), &dir);
                reports.push(report);
                return Err(failure(reports, file, false, unsaved, &test));
            }
            reports.push(report);
        }
        Ok(Checked {
            reports,
            skipped,
            cases: total,
        })
    }
}

/// What a replay found.
#[derive(Debug)]
pub struct Replayed {
    pub reproduced: bool,
    pub kinds: Vec<ViolationKind>,
    pub report: Report,
}

/// Replay one saved case (a scenario file with its `schedule`, as a check
/// saves it) against `target`, on its schedule in controlled mode, in a
/// worker process; prints whether it reproduced.
pub fn replay(target: impl Target + 'static, path: impl AsRef<Path>) -> Replayed {
    crate::intercept::link();
    let target: Arc<dyn Target> = Arc::new(target);
    let workers = Workers::for_this_test(&target);
    let r = replay_report(&target, path.as_ref(), workers).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "harness replay {}: {}",
        path.as_ref().display(),
        if r.reproduced {
            format!("reproduced {:?}", r.kinds)
        } else {
            "did not reproduce".to_string()
        }
    );
    r
}

fn replay_report(
    target: &Arc<dyn Target>,
    path: &Path,
    workers: Option<Arc<Workers>>,
) -> Result<Replayed, String> {
    let scenario = scenario::load_file(path).map_err(|e| e.to_string())?;
    let src = Source {
        scenario,
        file: path.display().to_string(),
    };
    let mut cfg = RunConfig::new(Mode::Controlled, 1);
    cfg.cases = REPLAYS;
    cfg.workers = workers;
    let report = run::run(target.clone(), &[src], &cfg, &|_, _| {}).map_err(|e| e.0)?;
    Ok(Replayed {
        reproduced: run::caught(&report),
        kinds: run::kinds_found(&report),
        report,
    })
}

fn replay_in(
    target: &Arc<dyn Target>,
    path: &Path,
    workers: Option<Arc<Workers>>,
    test: &str,
) -> Result<Checked, Box<Failure>> {
    let r = replay_report(target, path, workers).map_err(|e| harness_failure(&e))?;
    if r.reproduced {
        return Err(failure(
            vec![r.report],
            Some(path.to_path_buf()),
            true,
            0,
            test,
        ));
    }
    eprintln!("{REPLAY_ENV}={}: did not reproduce", path.display());
    Ok(Checked {
        cases: cases_of(&r.report),
        reports: vec![r.report],
        skipped: Vec::new(),
    })
}

/// The calling test's name (libtest names a test's thread after it).
fn test_name() -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => "check".to_string(),
    }
}

fn default_dir(test: &str) -> PathBuf {
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    Path::new(&root)
        .join("harness-regressions")
        .join(test.replace("::", "-"))
}

/// The regressions saved in `dir` (none if it does not exist).
fn saved_cases(dir: &Path) -> Result<Vec<Source>, String> {
    let has_json = std::fs::read_dir(dir).is_ok_and(|mut d| {
        d.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json")))
    });
    if !has_json {
        return Ok(Vec::new());
    }
    let loaded = scenario::load_dir(dir).map_err(|e| e.to_string())?;
    Ok(loaded
        .into_iter()
        .map(|(p, scenario)| Source {
            scenario,
            file: p.display().to_string(),
        })
        .collect())
}

/// The case a failure shows and saves: of the first failing scenario, the
/// earliest case with the gravest kind (`fd_reuse` first).
fn chosen(report: &Report) -> Option<(&ScenarioReport, &Violation)> {
    let sr = report.scenarios.iter().find(|s| !s.violations.is_empty())?;
    let v = sr.violations.iter().min_by_key(|v| (v.kind, v.case))?;
    Some((sr, v))
}

fn cases_of(report: &Report) -> u64 {
    report.scenarios.iter().map(|s| s.cases).sum()
}

/// Copy the first failing case of `report` (the minimal one for
/// generated cases) from `cases` into the regressions directory `dir`,
/// unless [`KEEP_PER_SCENARIO`] of its scenario are there already.
/// Returns where it was saved and how many failing cases were not.
fn keep_minimal(
    report: &Report,
    gen: Option<run::GeneratedFailure>,
    cases: &Path,
    dir: &Path,
) -> (Option<PathBuf>, u64) {
    let mut failing: Vec<(&str, u64)> = report
        .violations()
        .map(|(s, v)| (s.name.as_str(), v.case))
        .collect();
    failing.sort();
    failing.dedup();
    let Some((sr, v)) = chosen(report) else {
        return (None, failing.len() as u64);
    };
    let from = if sr.file == run::GENERATED {
        gen.and_then(|g| g.file)
    } else {
        Some(cases.join(format!("{}-case{}.json", sr.name, v.case)))
    };
    let unsaved = failing.len().saturating_sub(1) as u64;
    let Some(from) = from else {
        return (None, unsaved + 1);
    };
    let Ok(mut s) = scenario::load_file(&from) else {
        return (None, unsaved + 1);
    };
    let prefix = format!("{}-r", sr.name);
    let existing = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0);
    if existing >= KEEP_PER_SCENARIO {
        return (None, unsaved + 1);
    }
    // A name of its own, so the directory loads as a scenario set.
    let name = (existing..)
        .map(|i| {
            let suffix = format!("-r{i}");
            let keep = (64 - suffix.len()).min(sr.name.len());
            format!("{}{suffix}", &sr.name[..keep])
        })
        .find(|n| !dir.join(format!("{n}.json")).exists())
        .unwrap_or_default();
    s.name = name;
    let to = dir.join(format!("{}.json", s.name));
    if std::fs::create_dir_all(dir).is_err() || s.save(&to).is_err() {
        return (None, unsaved + 1);
    }
    (Some(to), unsaved)
}

fn harness_failure(e: &str) -> Box<Failure> {
    Box::new(Failure {
        kinds: Vec::new(),
        saved: None,
        replay: String::new(),
        regression: false,
        unsaved: 0,
        message: format!("harness::check could not run: {e}"),
        reports: Vec::new(),
    })
}

/// The failure of the last report: its first failing case's violations,
/// lanes and replay line.
fn failure(
    reports: Vec<Report>,
    saved: Option<PathBuf>,
    regression: bool,
    unsaved: u64,
    test: &str,
) -> Box<Failure> {
    use std::fmt::Write;
    let report = reports.last().expect("a report");
    let mut msg = String::new();
    let _ = writeln!(
        msg,
        "harness::check: {} fails ({} mode{})",
        report.variant,
        report.mode.name(),
        if regression {
            ", a saved regression"
        } else {
            ""
        }
    );
    let kinds = run::kinds_found(report);
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    let _ = writeln!(msg, "found: {}", names.join(", "));
    if let Some((sr, first)) = chosen(report) {
        let _ = writeln!(
            msg,
            "scenario {} ({}), case {}:",
            sr.name, sr.file, first.case
        );
        for v in sr.violations.iter().filter(|v| v.case == first.case) {
            let _ = writeln!(msg, "  {}: {}", v.kind.name(), v.message);
        }
        let _ = writeln!(msg, "\n{}", Lanes::from_trace(&first.trace).render_text(30));
    }
    let replay = match &saved {
        Some(p) => {
            let p = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            format!("{REPLAY_ENV}={} cargo test {test}", p.display())
        }
        None => String::new(),
    };
    if replay.is_empty() {
        let _ = writeln!(msg, "(the case could not be saved)");
    } else {
        let _ = writeln!(msg, "replay: {replay}");
    }
    if let (Some(p), false) = (&saved, regression) {
        let _ = writeln!(msg, "saved to {} (commit it)", p.display());
    }
    if unsaved > 0 {
        let _ = writeln!(
            msg,
            "{unsaved} more failing case(s) not saved (at most {KEEP_PER_SCENARIO} per scenario)"
        );
    }
    Box::new(Failure {
        kinds,
        saved,
        replay,
        regression,
        unsaved,
        message: msg,
        reports,
    })
}

/// The user's target with the capabilities the check declares.
struct Declared {
    inner: Arc<dyn Target>,
    caps: Capabilities,
}

impl Target for Declared {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn listen(&self, addr: &Addr) -> io::Result<Box<dyn Listener>> {
        self.inner.listen(addr)
    }
    fn dial(&self, addr: &Addr) -> io::Result<Box<dyn Conn>> {
        self.inner.dial(addr)
    }
    fn bind_datagram(&self, local: SocketAddr, peer: SocketAddr) -> io::Result<Box<dyn Conn>> {
        self.inner.bind_datagram(local, peer)
    }
    fn bind_unix_datagram(&self, local: &Path, peer: &Path) -> io::Result<Box<dyn Conn>> {
        self.inner.bind_unix_datagram(local, peer)
    }
    fn has_unix_datagram(&self) -> bool {
        self.caps.unix_datagram
    }
    fn has_unix_seqpacket(&self) -> bool {
        self.caps.unix_seqpacket
    }
    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    fn reports_syscalls(&self) -> bool {
        self.inner.reports_syscalls()
    }
    fn wait_path(&self) -> Option<netfd::WaitPath> {
        self.inner.wait_path()
    }
    fn live_registrations(&self) -> Option<Vec<netfd::probe::OwnerId>> {
        self.inner.live_registrations()
    }
}

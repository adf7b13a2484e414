//! The run report: plain data, independent of the execution engine.
//!
//! One [`Report`] per run (one variant, one mode), written as JSON with
//! [`Report::write_atomic`] into `reports/<timestamp>-<variant>.json`. The
//! format is `reports/schema.json` ([`schema`] validates against it) and is
//! explained for readers in `reports/README.md`. The same data renders as a
//! terminal summary ([`summary::render`]) and as JUnit XML ([`junit::write`]).
//!
//! Building one, as the executor does:
//!
//! ```
//! use harness::report::{Mode, Report, ScenarioReport, Violation, ViolationKind};
//!
//! let mut report = Report::new("naive-close", Mode::Controlled, 42);
//! let mut s = ScenarioReport::new("double_close", "scenarios/double_close.json");
//! s.cases = 10;
//! s.syscalls_checked = 120;
//! s.record_checks(ViolationKind::DoubleClose, 10);
//! s.add_violation(Violation::new(ViolationKind::DoubleClose, 7, 3, "close", "closer-b", 4, 42));
//! report.scenarios.push(s);
//! report.finish(std::time::Duration::from_millis(1500));
//! assert!(!report.summary.passed);
//! assert_eq!(report.summary.violations, 1);
//! ```

pub mod atomic;
mod host;
pub mod html;
pub mod junit;
pub mod lanes;
pub mod schema;
pub mod summary;
pub mod time;
pub mod verdict;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The value of [`Report::schema`] this code writes.
pub const SCHEMA_VERSION: &str = "netfd-harness/1";

/// Names of the built-in variants (lifetime protocols). A report for a
/// target supplied by a library user names it `custom:<name>`.
pub const BUILTIN_VARIANTS: [&str; 4] = [
    "fdmutex",
    "go2009-refcount",
    "go2009-closeack",
    "naive-close",
];

/// Whether `name` is a variant name the report schema accepts: a built-in
/// variant, or `custom:` followed by `[A-Za-z0-9_.-]+`.
pub fn is_valid_variant(name: &str) -> bool {
    if BUILTIN_VARIANTS.contains(&name) {
        return true;
    }
    name.strip_prefix("custom:").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    })
}

/// How the cases were executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One thread at a time, switching at probe sync points per a schedule.
    Controlled,
    /// Real parallel threads with random jitter.
    Free,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Controlled => "controlled",
            Mode::Free => "free",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the target's parked operations wait (netfd's `WaitPath`): a run
/// dimension, since the two paths share the poll-descriptor protocol but
/// not the code that parks, wakes and leaves the poll server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitPath {
    /// The parked thread polls its own socket and a wake eventfd.
    Direct,
    /// The socket is registered with the process's epoll thread.
    Server,
}

impl WaitPath {
    pub const ALL: [WaitPath; 2] = [WaitPath::Direct, WaitPath::Server];

    pub fn name(self) -> &'static str {
        match self {
            WaitPath::Direct => "direct",
            WaitPath::Server => "server",
        }
    }
}

impl fmt::Display for WaitPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<netfd::WaitPath> for WaitPath {
    fn from(w: netfd::WaitPath) -> WaitPath {
        match w {
            netfd::WaitPath::Direct => WaitPath::Direct,
            netfd::WaitPath::Server => WaitPath::Server,
        }
    }
}

impl From<WaitPath> for netfd::WaitPath {
    fn from(w: WaitPath) -> netfd::WaitPath {
        match w {
            WaitPath::Direct => netfd::WaitPath::Direct,
            WaitPath::Server => netfd::WaitPath::Server,
        }
    }
}

/// Which share of a sharded run a report holds: shard `index` (1-based) of
/// `count` (`harness run --shard I/N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRef {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for ShardRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A merge made without some shards (`harness merge --allow-missing`):
/// the report covers only part of the run, and the verdict says so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MissingShards {
    /// N of the run's `--shard I/N`.
    pub count: u32,
    /// The shard numbers (1-based) that were not merged, ascending.
    pub missing: Vec<u32>,
}

impl fmt::Display for MissingShards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self
            .missing
            .iter()
            .map(|i| format!("{i}/{}", self.count))
            .collect();
        write!(
            f,
            "shard{} {} missing",
            if self.missing.len() == 1 { "" } else { "s" },
            list.join(", ")
        )
    }
}

/// One run's report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Format version: [`SCHEMA_VERSION`].
    pub schema: String,
    /// The lifetime protocol (or custom target) under test.
    pub variant: String,
    pub mode: Mode,
    /// The wait path of the target's sockets; absent for a target that has
    /// none (a custom target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<WaitPath>,
    /// The shard this report covers (`--shard I/N`); absent for an
    /// unsharded run and for the merge of every shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRef>,
    /// Set only by a merge that lacked shards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_shards: Option<MissingShards>,
    /// The run's seed; each violation also carries the seed of its case.
    pub seed: u64,
    /// RFC 3339 UTC, millisecond precision.
    pub started_at: String,
    pub duration_ms: u64,
    pub host: Host,
    pub scenarios: Vec<ScenarioReport>,
    /// Scenario files not run because the target lacks what they need
    /// ([`crate::target::Capabilities`]); absent when none was skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    pub summary: Summary,
}

/// A scenario file a run skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    pub file: String,
    /// What the target lacks (`transport unix needs UnixStream`).
    pub reason: String,
}

/// The machine the run happened on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// uname(2) sysname, e.g. `Linux`.
    pub os: String,
    /// uname(2) release, e.g. `6.1.0-18-amd64`.
    pub kernel: String,
    /// Available parallelism.
    pub cpus: u32,
    /// Soft RLIMIT_NOFILE; `null` when unlimited.
    pub fd_limit: Option<u64>,
}

/// One scenario (file or generated family) within a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioReport {
    pub name: String,
    /// The scenario file, as given on the command line; for generated cases
    /// a description such as `generated`.
    pub file: String,
    /// Cases run.
    pub cases: u64,
    /// Syscalls the ledger checked.
    pub syscalls_checked: u64,
    pub assertions: Assertions,
    pub violations: Vec<Violation>,
}

/// Outcome of one assertion over all cases of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    /// No violation of this assertion's kind was found.
    pub passed: bool,
    /// Number of checks made.
    pub count: u64,
}

impl Default for Assertion {
    fn default() -> Assertion {
        Assertion {
            passed: true,
            count: 0,
        }
    }
}

/// The assertions of the design, one per violation kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertions {
    pub no_fd_reuse: Assertion,
    pub no_use_after_close: Assertion,
    pub no_close_in_flight: Assertion,
    pub no_double_close: Assertion,
    pub no_leak: Assertion,
    pub no_hang: Assertion,
    pub closed_error: Assertion,
    pub no_crosstalk: Assertion,
    pub no_early_deadline: Assertion,
    /// Absent from reports written before the rule existed.
    #[serde(default)]
    pub no_late_deadline: Assertion,
    /// Absent from reports written before the rule existed.
    #[serde(default)]
    pub no_ignored_deadline: Assertion,
    /// Absent from reports written before the rule existed.
    #[serde(default)]
    pub no_late_wakeup: Assertion,
    /// Absent from reports written before the rule existed.
    #[serde(default)]
    pub no_busy_wait: Assertion,
}

impl Assertions {
    /// The assertion that a violation of `kind` breaks.
    pub fn get(&self, kind: ViolationKind) -> &Assertion {
        match kind {
            ViolationKind::FdReuse => &self.no_fd_reuse,
            ViolationKind::UseAfterClose => &self.no_use_after_close,
            ViolationKind::CloseInFlight => &self.no_close_in_flight,
            ViolationKind::DoubleClose => &self.no_double_close,
            ViolationKind::Leak => &self.no_leak,
            ViolationKind::Hang => &self.no_hang,
            ViolationKind::BadError => &self.closed_error,
            ViolationKind::Crosstalk => &self.no_crosstalk,
            ViolationKind::EarlyDeadline => &self.no_early_deadline,
            ViolationKind::LateDeadline => &self.no_late_deadline,
            ViolationKind::IgnoredDeadline => &self.no_ignored_deadline,
            ViolationKind::LateWakeup => &self.no_late_wakeup,
            ViolationKind::BusyWait => &self.no_busy_wait,
        }
    }

    /// Mutable access to the assertion that a violation of `kind` breaks.
    pub fn get_mut(&mut self, kind: ViolationKind) -> &mut Assertion {
        match kind {
            ViolationKind::FdReuse => &mut self.no_fd_reuse,
            ViolationKind::UseAfterClose => &mut self.no_use_after_close,
            ViolationKind::CloseInFlight => &mut self.no_close_in_flight,
            ViolationKind::DoubleClose => &mut self.no_double_close,
            ViolationKind::Leak => &mut self.no_leak,
            ViolationKind::Hang => &mut self.no_hang,
            ViolationKind::BadError => &mut self.closed_error,
            ViolationKind::Crosstalk => &mut self.no_crosstalk,
            ViolationKind::EarlyDeadline => &mut self.no_early_deadline,
            ViolationKind::LateDeadline => &mut self.no_late_deadline,
            ViolationKind::IgnoredDeadline => &mut self.no_ignored_deadline,
            ViolationKind::LateWakeup => &mut self.no_late_wakeup,
            ViolationKind::BusyWait => &mut self.no_busy_wait,
        }
    }

    /// `(assertion name, assertion)` in the documented order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Assertion)> {
        ViolationKind::ALL
            .into_iter()
            .map(move |k| (k.assertion_name(), self.get(k)))
    }

    /// Combine two scenarios' assertions: passed if both passed, counts add.
    pub fn merge(&mut self, other: &Assertions) {
        for kind in ViolationKind::ALL {
            let theirs = *other.get(kind);
            let mine = self.get_mut(kind);
            mine.passed &= theirs.passed;
            mine.count = mine.count.saturating_add(theirs.count);
        }
    }
}

/// The violation kinds of the design (the report's `kind` strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// A syscall for owner A reached a number now owned by B.
    FdReuse,
    /// A syscall for A after A's descriptor was released.
    UseAfterClose,
    /// close(2) of N while a syscall on N was in flight.
    CloseInFlight,
    /// The same descriptor was released twice.
    DoubleClose,
    /// A descriptor was still open after Close and the end of the case.
    Leak,
    /// An operation did not return within the bound after Close or its
    /// deadline.
    Hang,
    /// An operation racing or following Close returned something other than
    /// its result or the closed error.
    BadError,
    /// Bytes read belong to another connection.
    Crosstalk,
    /// A deadline fired before it was due.
    EarlyDeadline,
    /// An operation parked when its deadline passed did not return within
    /// the tolerance of it, and no Close or readiness came first.
    LateDeadline,
    /// An operation begun after its deadline had passed succeeded instead
    /// of failing with the timeout.
    IgnoredDeadline,
    /// A read running when the peer's bytes arrived did not return within
    /// the tolerance of them, and no Close came first.
    LateWakeup,
    /// An op's thread was on a CPU for most of the op: it spun instead of
    /// sleeping while it waited.
    BusyWait,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 13] = [
        ViolationKind::FdReuse,
        ViolationKind::UseAfterClose,
        ViolationKind::CloseInFlight,
        ViolationKind::DoubleClose,
        ViolationKind::Leak,
        ViolationKind::Hang,
        ViolationKind::BadError,
        ViolationKind::Crosstalk,
        ViolationKind::EarlyDeadline,
        ViolationKind::LateDeadline,
        ViolationKind::IgnoredDeadline,
        ViolationKind::LateWakeup,
        ViolationKind::BusyWait,
    ];

    /// The `kind` string.
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::FdReuse => "fd_reuse",
            ViolationKind::UseAfterClose => "use_after_close",
            ViolationKind::CloseInFlight => "close_in_flight",
            ViolationKind::DoubleClose => "double_close",
            ViolationKind::Leak => "leak",
            ViolationKind::Hang => "hang",
            ViolationKind::BadError => "bad_error",
            ViolationKind::Crosstalk => "crosstalk",
            ViolationKind::EarlyDeadline => "early_deadline",
            ViolationKind::LateDeadline => "late_deadline",
            ViolationKind::IgnoredDeadline => "ignored_deadline",
            ViolationKind::LateWakeup => "late_wakeup",
            ViolationKind::BusyWait => "busy_wait",
        }
    }

    /// The kind for a `kind` string.
    pub fn from_name(name: &str) -> Option<ViolationKind> {
        ViolationKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The name of the assertion this kind breaks.
    pub fn assertion_name(self) -> &'static str {
        match self {
            ViolationKind::FdReuse => "no_fd_reuse",
            ViolationKind::UseAfterClose => "no_use_after_close",
            ViolationKind::CloseInFlight => "no_close_in_flight",
            ViolationKind::DoubleClose => "no_double_close",
            ViolationKind::Leak => "no_leak",
            ViolationKind::Hang => "no_hang",
            ViolationKind::BadError => "closed_error",
            ViolationKind::Crosstalk => "no_crosstalk",
            ViolationKind::EarlyDeadline => "no_early_deadline",
            ViolationKind::LateDeadline => "no_late_deadline",
            ViolationKind::IgnoredDeadline => "no_ignored_deadline",
            ViolationKind::LateWakeup => "no_late_wakeup",
            ViolationKind::BusyWait => "no_busy_wait",
        }
    }
}

impl fmt::Display for ViolationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken rule, with everything needed to understand and replay it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Violation {
    pub kind: ViolationKind,
    /// The descriptor number involved.
    pub fd: i32,
    /// Never-reused id of the socket the syscall was made for.
    pub owner: u64,
    /// Never-reused id of the socket holding the number at that moment, if
    /// another one did (fd_reuse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<u64>,
    /// The operation (scenario op or syscall) that broke the rule.
    pub op: String,
    /// The scenario thread that ran it.
    pub thread: String,
    /// Index of the case within the scenario.
    pub case: u64,
    /// Seed of the case.
    pub seed: u64,
    /// Thread index at each switch: with the scenario, replays the case.
    pub schedule: Vec<usize>,
    /// The events that led to the violation, oldest first.
    pub trace: Vec<Event>,
    /// The one command that replays the case.
    pub replay: String,
    /// One line saying what happened.
    pub message: String,
    /// Kernel evidence, when there is some (for fd_reuse: the socket inode
    /// the owner had vs the one the number names now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

impl Violation {
    /// A violation with an empty schedule, trace, replay and message, to be
    /// filled in by the caller.
    pub fn new(
        kind: ViolationKind,
        fd: i32,
        owner: u64,
        op: impl Into<String>,
        thread: impl Into<String>,
        case: u64,
        seed: u64,
    ) -> Violation {
        Violation {
            kind,
            fd,
            owner,
            holder: None,
            op: op.into(),
            thread: thread.into(),
            case,
            seed,
            schedule: Vec::new(),
            trace: Vec::new(),
            replay: String::new(),
            message: String::new(),
            evidence: None,
        }
    }
}

/// One event of a trace: a syscall or a sync point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Global order within the case.
    pub seq: u64,
    /// The scenario thread (or harness thread) it happened on.
    pub thread: String,
    /// The socket it was on behalf of.
    pub owner: u64,
    /// The descriptor number; `null` for sync points that have none.
    pub fd: Option<i32>,
    /// Syscall name (`read`, `close`, ...) or sync point name
    /// (`after_incref`, ...).
    pub what: String,
    /// The result (`ok 64`, `EBADF`, ...); `null` for sync points and for a
    /// syscall still in flight.
    pub result: Option<String>,
}

/// Totals over all scenarios.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub cases: u64,
    pub syscalls_checked: u64,
    pub violations: u64,
    /// No violations at all.
    pub passed: bool,
}

impl ScenarioReport {
    /// An empty entry for `name`, every assertion passed with no checks.
    pub fn new(name: impl Into<String>, file: impl Into<String>) -> ScenarioReport {
        ScenarioReport {
            name: name.into(),
            file: file.into(),
            cases: 0,
            syscalls_checked: 0,
            assertions: Assertions::default(),
            violations: Vec::new(),
        }
    }

    /// Count `n` checks of the assertion for `kind`.
    pub fn record_checks(&mut self, kind: ViolationKind, n: u64) {
        let a = self.assertions.get_mut(kind);
        a.count = a.count.saturating_add(n);
    }

    /// Add a violation; its assertion fails (and counts the check).
    pub fn add_violation(&mut self, v: Violation) {
        let a = self.assertions.get_mut(v.kind);
        a.passed = false;
        a.count = a.count.max(1);
        self.violations.push(v);
    }

    /// Whether every assertion passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.assertions.iter().all(|(_, a)| a.passed)
    }
}

/// Why reports cannot be merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeError(pub String);

impl fmt::Display for MergeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MergeError {}

impl Report {
    /// An empty report started now on this host.
    pub fn new(variant: impl Into<String>, mode: Mode, seed: u64) -> Report {
        Report::started_at(variant, mode, seed, SystemTime::now())
    }

    /// An empty report started at `t` on this host.
    pub fn started_at(variant: impl Into<String>, mode: Mode, seed: u64, t: SystemTime) -> Report {
        Report {
            schema: SCHEMA_VERSION.to_owned(),
            variant: variant.into(),
            mode,
            wait: None,
            shard: None,
            missing_shards: None,
            seed,
            started_at: time::rfc3339(t),
            duration_ms: 0,
            host: Host::detect(),
            scenarios: Vec::new(),
            skipped: Vec::new(),
            summary: Summary {
                passed: true,
                ..Summary::default()
            },
        }
    }

    /// Set the duration and recompute the summary.
    pub fn finish(&mut self, elapsed: Duration) {
        self.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        self.recompute_summary();
    }

    /// Recompute [`Report::summary`] from the scenarios.
    pub fn recompute_summary(&mut self) {
        let mut s = Summary::default();
        let mut all_passed = true;
        for sc in &self.scenarios {
            s.cases = s.cases.saturating_add(sc.cases);
            s.syscalls_checked = s.syscalls_checked.saturating_add(sc.syscalls_checked);
            s.violations = s.violations.saturating_add(sc.violations.len() as u64);
            all_passed &= sc.passed();
        }
        s.passed = all_passed && s.violations == 0;
        self.summary = s;
    }

    /// Every violation with its scenario, in report order.
    pub fn violations(&self) -> impl Iterator<Item = (&ScenarioReport, &Violation)> {
        self.scenarios
            .iter()
            .flat_map(|s| s.violations.iter().map(move |v| (s, v)))
    }

    /// The report as pretty JSON with a trailing newline.
    pub fn to_json_pretty(&self) -> String {
        // Plain data with string keys only: serialization cannot fail.
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a Report always serializes: {e}"));
        text.push('\n');
        text
    }

    /// Read a report written by [`Report::write_atomic`].
    pub fn read(path: impl AsRef<Path>) -> io::Result<Report> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a report: {e}", path.display()),
            )
        })
    }

    /// The file name this report is written under:
    /// `<timestamp>-<variant>[-<wait>].json`, e.g.
    /// `20240501T123456.789Z-fdmutex-direct.json` (characters other than
    /// `[A-Za-z0-9._-]` in the variant become `_`; no wait path for a
    /// target without one).
    pub fn file_name(&self) -> String {
        let stamp = time::parse_rfc3339_ms(&self.started_at)
            .map(time::file_stamp_ms)
            .unwrap_or_else(|| sanitize(&self.started_at));
        let wait = self
            .wait
            .map(|w| format!("-{}", w.name()))
            .unwrap_or_default();
        format!("{stamp}-{}{wait}.json", sanitize(&self.variant))
    }

    /// `variant mode[ wait]`: what a group of mergeable reports has in
    /// common, for messages.
    pub fn dimensions(&self) -> String {
        match self.wait {
            Some(w) => format!("{} {} {w}", self.variant, self.mode),
            None => format!("{} {}", self.variant, self.mode),
        }
    }

    /// Write the report into `dir` (created if missing) as
    /// [`Report::file_name`], atomically: a temporary file in `dir`, fsync,
    /// then a rename that never replaces an existing report (a clash gets a
    /// `-1`, `-2`, ... suffix). On failure nothing is left behind. Returns
    /// the path written.
    pub fn write_atomic(&self, dir: impl AsRef<Path>) -> io::Result<PathBuf> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create report directory {}: {e}", dir.display()),
            )
        })?;
        let name = self.file_name();
        let stem = name.trim_end_matches(".json").to_owned();
        let candidates = std::iter::once(dir.join(&name))
            .chain((1..1000).map(|i| dir.join(format!("{stem}-{i}.json"))));
        atomic::write_new_file(dir, candidates, self.to_json_pretty().as_bytes())
    }

    /// Combine shard reports of one run (same schema, variant, mode and wait
    /// path) into one: scenarios with the same name and file are summed (cases,
    /// syscalls, assertion counts; an assertion passes only if it passed in
    /// every shard) and their violations concatenated; other scenarios are
    /// kept in first-seen order. `started_at` is the earliest start,
    /// `duration_ms` spans from it to the latest end, `seed` and `host` are
    /// those of the earliest shard. The summary is recomputed.
    ///
    /// Shards are checked with [`shard_coverage`]: a shard given twice, or
    /// reports of different shard counts, or sharded and unsharded reports
    /// together, are an error; missing shards are not, but the merged report
    /// names them in [`Report::missing_shards`] (the caller decides whether
    /// a partial merge is acceptable).
    pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
        let mut reports = reports;
        if reports.is_empty() {
            return Err(MergeError("no reports to merge".to_owned()));
        }
        let missing = shard_coverage(&reports)?;
        let start_of = |r: &Report| time::parse_rfc3339_ms(&r.started_at);
        reports.sort_by_key(|r| start_of(r).unwrap_or(u64::MAX));
        let mut it = reports.into_iter();
        let Some(mut merged) = it.next() else {
            return Err(MergeError("no reports to merge".to_owned()));
        };
        let first_start = start_of(&merged);
        let mut end = first_start.map(|s| s.saturating_add(merged.duration_ms));
        let mut max_duration = merged.duration_ms;
        for r in it {
            for (what, a, b) in [
                ("schema", &merged.schema, &r.schema),
                ("variant", &merged.variant, &r.variant),
            ] {
                if a != b {
                    return Err(MergeError(format!(
                        "cannot merge reports with different {what}: {a:?} and {b:?}"
                    )));
                }
            }
            if merged.mode != r.mode {
                return Err(MergeError(format!(
                    "cannot merge reports with different mode: {} and {}",
                    merged.mode, r.mode
                )));
            }
            if merged.wait != r.wait {
                let name = |w: Option<WaitPath>| w.map_or("none", WaitPath::name);
                return Err(MergeError(format!(
                    "cannot merge reports with different wait paths: {} and {}",
                    name(merged.wait),
                    name(r.wait)
                )));
            }
            max_duration = max_duration.max(r.duration_ms);
            end = match (end, start_of(&r)) {
                (Some(e), Some(s)) => Some(e.max(s.saturating_add(r.duration_ms))),
                _ => None,
            };
            for sk in r.skipped {
                if !merged.skipped.contains(&sk) {
                    merged.skipped.push(sk);
                }
            }
            for sc in r.scenarios {
                match merged
                    .scenarios
                    .iter_mut()
                    .find(|m| m.name == sc.name && m.file == sc.file)
                {
                    Some(m) => {
                        m.cases = m.cases.saturating_add(sc.cases);
                        m.syscalls_checked = m.syscalls_checked.saturating_add(sc.syscalls_checked);
                        m.assertions.merge(&sc.assertions);
                        m.violations.extend(sc.violations);
                    }
                    None => merged.scenarios.push(sc),
                }
            }
        }
        merged.duration_ms = match (first_start, end) {
            (Some(s), Some(e)) => e - s,
            _ => max_duration,
        };
        merged.shard = None;
        merged.missing_shards = missing;
        merged.recompute_summary();
        Ok(merged)
    }
}

/// Check the shards of reports about to be merged: every report names a
/// shard of the same count N, or none does (unsharded reports, or merges
/// of complete runs); no shard appears twice. Returns the shards that are
/// missing (`None` when the set is complete or unsharded). A partial merge
/// cannot be merged again.
pub fn shard_coverage(reports: &[Report]) -> Result<Option<MissingShards>, MergeError> {
    let sharded: Vec<ShardRef> = reports.iter().filter_map(|r| r.shard).collect();
    if let Some(m) = reports.iter().find_map(|r| r.missing_shards.as_ref()) {
        return Err(MergeError(format!(
            "cannot merge a partial merge of {} ({m}): merge the shard reports themselves",
            reports[0].dimensions()
        )));
    }
    if sharded.is_empty() {
        return Ok(None);
    }
    if sharded.len() != reports.len() {
        return Err(MergeError(format!(
            "cannot merge sharded and unsharded reports of {}: {} of the {} reports name no shard",
            reports[0].dimensions(),
            reports.len() - sharded.len(),
            reports.len()
        )));
    }
    let count = sharded[0].count;
    if let Some(other) = sharded.iter().find(|s| s.count != count) {
        return Err(MergeError(format!(
            "cannot merge shards of different splits of {}: shard {} and shard {other}",
            reports[0].dimensions(),
            sharded[0]
        )));
    }
    let mut seen = vec![false; count as usize];
    for s in &sharded {
        let slot = &mut seen[(s.index.max(1) - 1).min(count - 1) as usize];
        if *slot {
            return Err(MergeError(format!(
                "shard {s} of {} is given twice: each shard must be merged once",
                reports[0].dimensions()
            )));
        }
        *slot = true;
    }
    let missing: Vec<u32> = (1..=count).filter(|i| !seen[*i as usize - 1]).collect();
    Ok((!missing.is_empty()).then_some(MissingShards { count, missing }))
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Quote `arg` for a POSIX shell if it needs it.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The replay command for a saved case: `harness replay FILE --variant V`,
/// quoted for a POSIX shell.
pub fn replay_command(case_file: &Path, variant: &str) -> String {
    format!(
        "harness replay {} --variant {}",
        shell_quote(&case_file.to_string_lossy()),
        shell_quote(variant)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_assertions_agree() {
        for k in ViolationKind::ALL {
            assert_eq!(ViolationKind::from_name(k.name()), Some(k));
            let json = serde_json::to_string(&k).expect("kind");
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
        let a = serde_json::to_value(Assertions::default()).expect("assertions");
        let keys: Vec<&str> = ViolationKind::ALL
            .iter()
            .map(|k| k.assertion_name())
            .collect();
        let obj = a.as_object().expect("object");
        assert_eq!(obj.len(), keys.len());
        for k in keys {
            assert!(obj.contains_key(k), "{k}");
        }
    }

    #[test]
    fn variants() {
        for v in BUILTIN_VARIANTS {
            assert!(is_valid_variant(v));
        }
        assert!(is_valid_variant("custom:racy-wrapper.v2"));
        assert!(!is_valid_variant("custom:"));
        assert!(!is_valid_variant("custom:a b"));
        assert!(!is_valid_variant("mystery"));
    }

    #[test]
    fn file_names_are_safe() {
        let mut r = Report::started_at(
            "custom:x/y",
            Mode::Free,
            1,
            time::from_unix_ms(951_868_799_999),
        );
        assert_eq!(r.file_name(), "20000229T235959.999Z-custom_x_y.json");
        r.started_at = "garbage: /".to_owned();
        assert_eq!(r.file_name(), "garbage___-custom_x_y.json");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("reports/a.json"), "reports/a.json");
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            replay_command(Path::new("cases/x y.json"), "naive-close"),
            "harness replay 'cases/x y.json' --variant naive-close"
        );
    }

    #[test]
    fn violations_fail_their_assertion() {
        let mut s = ScenarioReport::new("a", "a.json");
        s.record_checks(ViolationKind::Leak, 5);
        assert!(s.passed());
        s.add_violation(Violation::new(
            ViolationKind::Leak,
            3,
            1,
            "close",
            "t0",
            0,
            9,
        ));
        assert!(!s.passed());
        assert!(!s.assertions.no_leak.passed);
        assert_eq!(s.assertions.no_leak.count, 5);
        assert!(s.assertions.no_hang.passed);
    }
}

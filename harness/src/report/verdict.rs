//! The CI gate's verdict over finished reports (`harness verdict`, called
//! by `ci/gate`).
//!
//! Rules, each a regression that fails the gate:
//! - a report for a variant expected clean (`fdmutex`, or a library user's
//!   `custom:` target) has a violation or a failed assertion;
//! - a matrix report for a historical variant shows none: the harness no
//!   longer catches a race it is known to have caught, so it has gone blind;
//! - the matrix lacks a report for one of the built-in variants (a variant
//!   that was not run cannot have been caught);
//! - the matrix lacks `fdmutex` on one of the two wait paths (the paths
//!   share the poll-descriptor protocol, not the code that parks and wakes);
//! - a report ran no cases (nothing was checked);
//! - a sharded run is incomplete: a shard is missing from the reports
//!   given, or a report is a partial merge (`harness merge
//!   --allow-missing`). A shard given twice is bad input (exit 2).
//!
//! Matrix reports of the same variant, mode and wait path (shards of one
//! matrix) are merged first, so a historical variant caught in any shard
//! counts as caught. Run reports that name a shard are merged with the
//! other shards of their run (same variant, mode, wait path and seed);
//! other run reports are judged one by one.
//!
//! The verdict is one line: the first regression, with the report it was
//! found in and, for a violation, the command that replays it; the other
//! regressions are counted on that line and listed in full by
//! [`Verdict::details`].

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Report, WaitPath, BUILTIN_VARIANTS};

/// What a variant's report must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No violation at all.
    Clean,
    /// At least one violation: the harness catches this variant's race.
    Caught,
}

impl Expect {
    /// `fdmutex` and custom targets must be clean; the historical variants
    /// must be caught.
    pub fn for_variant(variant: &str) -> Expect {
        match variant.parse::<netfd::Variant>() {
            Ok(v) if !v.expected_clean() => Expect::Caught,
            _ => Expect::Clean,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Expect::Clean => "clean",
            Expect::Caught => "caught",
        }
    }
}

/// Which stage a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Matrix,
    Run,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Matrix => "matrix",
            Role::Run => "run",
        }
    }
}

/// A report with the file it was read from.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub report: Report,
}

impl Input {
    /// Read and parse a report file.
    pub fn read(path: impl AsRef<Path>) -> std::io::Result<Input> {
        let path = path.as_ref();
        Ok(Input {
            path: path.to_owned(),
            report: Report::read(path)?,
        })
    }
}

/// One regression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A variant expected clean has violations.
    Violated {
        role: Role,
        variant: String,
        path: String,
        violations: u64,
        /// The first violation, as `kind in scenario (assertion)`.
        first: String,
        /// The first violation's message.
        message: String,
        /// The first violation's replay command (may be empty).
        replay: String,
    },
    /// An assertion failed without a violation kept in the report.
    FailedAssertion {
        role: Role,
        variant: String,
        path: String,
        scenario: String,
        assertion: String,
    },
    /// A historical variant was not caught.
    Escaped {
        role: Role,
        variant: String,
        path: String,
        cases: u64,
        scenarios: usize,
    },
    /// The matrix has no report for a built-in variant.
    Missing { variant: String },
    /// The matrix has no `fdmutex` report on this wait path.
    MissingWaitPath { variant: String, wait: WaitPath },
    /// Shards of a run are missing.
    Incomplete {
        role: Role,
        variant: String,
        path: String,
        /// e.g. `shard 3/4 missing`.
        what: String,
    },
    /// A report ran no cases.
    Empty {
        role: Role,
        variant: String,
        path: String,
    },
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Violated {
                role,
                variant,
                path,
                violations,
                first,
                message,
                replay,
            } => {
                write!(
                    f,
                    "{variant} is not clean in the {} report {path}: {violations} violation{}, first {first}",
                    role.name(),
                    if *violations == 1 { "" } else { "s" },
                )?;
                if !message.is_empty() {
                    write!(f, ": {}", one_line(message))?;
                }
                if !replay.is_empty() {
                    write!(f, "; replay: {}", one_line(replay))?;
                }
                Ok(())
            }
            Problem::FailedAssertion {
                role,
                variant,
                path,
                scenario,
                assertion,
            } => write!(
                f,
                "{variant} failed {assertion} in {scenario} in the {} report {path}",
                role.name()
            ),
            Problem::Escaped {
                role,
                variant,
                path,
                cases,
                scenarios,
            } => write!(
                f,
                "historical variant {variant} escaped the {}: no violation in {cases} cases over {scenarios} scenarios ({path}); the harness no longer catches it",
                role.name()
            ),
            Problem::Missing { variant } => write!(
                f,
                "the matrix has no report for {variant}: a variant that did not run was not checked"
            ),
            Problem::Empty {
                role,
                variant,
                path,
            } => write!(
                f,
                "the {} report for {variant} ran no cases ({path}): nothing was checked",
                role.name()
            ),
            Problem::MissingWaitPath { variant, wait } => write!(
                f,
                "the matrix has no report for {variant} on the {wait} wait path: that path was not checked"
            ),
            Problem::Incomplete {
                role,
                variant,
                path,
                what,
            } => write!(
                f,
                "the {} reports for {variant} are incomplete: {what} ({path}); a shard that did not run was not checked",
                role.name()
            ),
        }
    }
}

/// The verdict on one variant's report, for the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub role: Role,
    pub variant: String,
    /// The wait path, when the report names one.
    pub wait: Option<WaitPath>,
    pub expect: Expect,
    pub cases: u64,
    pub violations: u64,
    pub ok: bool,
    pub path: String,
}

/// The gate's verdict.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub rows: Vec<Row>,
    pub problems: Vec<Problem>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// One line: `ok: ...` or the first regression (`and N more`).
    pub fn reason(&self) -> String {
        match self.problems.split_first() {
            None => {
                let cases: u64 = self.rows.iter().map(|r| r.cases).sum();
                let names = |e: Expect| {
                    let mut n: Vec<&str> = Vec::new();
                    for r in self.rows.iter().filter(|r| r.expect == e) {
                        if !n.contains(&r.variant.as_str()) {
                            n.push(&r.variant);
                        }
                    }
                    n.join(", ")
                };
                let mut line = format!(
                    "ok: {} report{}, {cases} cases",
                    self.rows.len(),
                    if self.rows.len() == 1 { "" } else { "s" }
                );
                for e in [Expect::Clean, Expect::Caught] {
                    let n = names(e);
                    if !n.is_empty() {
                        line.push_str(&format!("; {} {n}", e.name()));
                    }
                }
                line
            }
            Some((first, [])) => first.to_string(),
            Some((first, rest)) => format!(
                "{first} (and {} more regression{})",
                rest.len(),
                if rest.len() == 1 { "" } else { "s" }
            ),
        }
    }

    /// The table of judged reports and every regression, one per line.
    pub fn details(&self) -> String {
        let mut out = format!(
            "{:<7} {:<18} {:<6} {:<7} {:>7} {:>10}  {:<4}  report\n",
            "stage", "variant", "wait", "expect", "cases", "violations", ""
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{:<7} {:<18} {:<6} {:<7} {:>7} {:>10}  {:<4}  {}\n",
                r.role.name(),
                r.variant,
                r.wait.map_or("-", WaitPath::name),
                r.expect.name(),
                r.cases,
                r.violations,
                if r.ok { "ok" } else { "FAIL" },
                r.path
            ));
        }
        for p in &self.problems {
            out.push_str(&format!("regression: {p}\n"));
        }
        out
    }
}

/// Judge one report (already merged for the matrix).
fn judge_one(role: Role, path: String, r: &Report, v: &mut Verdict) {
    let expect = Expect::for_variant(&r.variant);
    let before = v.problems.len();
    if let Some(m) = &r.missing_shards {
        v.problems.push(Problem::Incomplete {
            role,
            variant: r.dimensions(),
            path: path.clone(),
            what: m.to_string(),
        });
    }
    if r.summary.cases == 0 {
        v.problems.push(Problem::Empty {
            role,
            variant: r.variant.clone(),
            path: path.clone(),
        });
    } else {
        match expect {
            Expect::Clean => {
                if let Some((s, first)) = r.violations().next() {
                    v.problems.push(Problem::Violated {
                        role,
                        variant: r.variant.clone(),
                        path: path.clone(),
                        violations: r.summary.violations,
                        first: format!(
                            "{} in {} ({})",
                            first.kind,
                            s.name,
                            first.kind.assertion_name()
                        ),
                        message: first.message.clone(),
                        replay: first.replay.clone(),
                    });
                } else if let Some((s, name)) = r.scenarios.iter().find_map(|s| {
                    s.assertions
                        .iter()
                        .find(|(_, a)| !a.passed)
                        .map(|(n, _)| (s, n))
                }) {
                    v.problems.push(Problem::FailedAssertion {
                        role,
                        variant: r.variant.clone(),
                        path: path.clone(),
                        scenario: s.name.clone(),
                        assertion: name.to_owned(),
                    });
                }
            }
            Expect::Caught => {
                if r.summary.violations == 0 && r.summary.passed {
                    v.problems.push(Problem::Escaped {
                        role,
                        variant: r.variant.clone(),
                        path: path.clone(),
                        cases: r.summary.cases,
                        scenarios: r.scenarios.len(),
                    });
                }
            }
        }
    }
    v.rows.push(Row {
        role,
        variant: r.variant.clone(),
        wait: r.wait,
        expect,
        cases: r.summary.cases,
        violations: r.summary.violations,
        ok: v.problems.len() == before,
        path,
    });
}

/// `inputs` in groups of reports `same` says belong together, in
/// first-seen order.
fn group<'a>(
    inputs: impl Iterator<Item = &'a Input>,
    same: impl Fn(&Report, &Report) -> bool,
) -> Vec<Vec<&'a Input>> {
    let mut groups: Vec<Vec<&Input>> = Vec::new();
    for i in inputs {
        match groups.iter_mut().find(|g| same(&g[0].report, &i.report)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    groups
}

/// Merge one group of shards and judge the result; missing shards are a
/// problem ([`Problem::Incomplete`]), a shard given twice is bad input.
fn judge_group(role: Role, inputs: &[&Input], v: &mut Verdict) -> Result<(), String> {
    let paths: Vec<String> = inputs
        .iter()
        .map(|i| i.path.display().to_string())
        .collect();
    let merged = Report::merge(inputs.iter().map(|i| i.report.clone()).collect())
        .map_err(|e| format!("{}: {e}", paths.join(", ")))?;
    judge_one(role, paths.join(" + "), &merged, v);
    Ok(())
}

/// Judge the matrix's reports and the run reports. `Err` is bad input
/// (matrix shards that cannot be merged, no report at all).
pub fn judge(matrix: &[Input], runs: &[Input]) -> Result<Verdict, String> {
    if matrix.is_empty() && runs.is_empty() {
        return Err("no reports to judge".to_owned());
    }
    let mut v = Verdict::default();
    if !matrix.is_empty() {
        let groups = group(matrix.iter(), |a, b| {
            a.variant == b.variant && a.mode == b.mode && a.wait == b.wait
        });
        for inputs in &groups {
            judge_group(Role::Matrix, inputs, &mut v)?;
        }
        for name in BUILTIN_VARIANTS {
            if !groups.iter().any(|g| g[0].report.variant == name) {
                v.problems.push(Problem::Missing {
                    variant: name.to_owned(),
                });
            }
        }
        // The production protocol is checked on both wait paths.
        let clean = "fdmutex";
        if groups.iter().any(|g| g[0].report.variant == clean) {
            for wait in WaitPath::ALL {
                let has = |g: &&Vec<&Input>| {
                    g[0].report.variant == clean && g[0].report.wait == Some(wait)
                };
                if !groups.iter().any(|g| has(&g)) {
                    v.problems.push(Problem::MissingWaitPath {
                        variant: clean.to_owned(),
                        wait,
                    });
                }
            }
        }
    }
    let (sharded, whole): (Vec<&Input>, Vec<&Input>) =
        runs.iter().partition(|i| i.report.shard.is_some());
    for i in whole {
        judge_one(Role::Run, i.path.display().to_string(), &i.report, &mut v);
    }
    for inputs in group(sharded.into_iter(), |a, b| {
        a.variant == b.variant && a.mode == b.mode && a.wait == b.wait && a.seed == b.seed
    }) {
        judge_group(Role::Run, &inputs, &mut v)?;
    }
    Ok(v)
}

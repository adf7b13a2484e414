//! The `harness` command line: `run`, `replay`, `matrix`, `list`, and for
//! CI `merge`, `report`, `verdict` ([`ci`]); `--shard I/N` ([`shard`]).
//!
//! Exit codes: 0 clean, 1 violations found (for `matrix`: `fdmutex` not
//! clean or a historical variant not caught), 2 bad usage or bad input,
//! 3 the harness itself failed.

pub mod ci;
pub mod gen;
pub mod measure;
pub mod shard;

use crate::report::{self, Mode, Report};
use crate::run::{self, RunConfig, Source};
use crate::scenario::{self, Scenario};
use crate::target::{NetfdTarget, Target};
use crate::worker::{self, WorkerCommand, Workers};
use clap::{Args, Parser, Subcommand, ValueEnum};
use netfd::Variant;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const EXIT_CLEAN: i32 = 0;
pub const EXIT_VIOLATIONS: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_HARNESS_FAILED: i32 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "harness",
    version,
    about = "Find close races on network descriptors: fd reuse, use after close, hangs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run scenario files (and generated cases) against one variant.
    Run(RunArgs),
    /// Re-run a saved case (scenario with its schedule) and show it.
    Replay(ReplayArgs),
    /// Every variant against every scenario: fdmutex must be clean, every
    /// historical variant caught.
    Matrix(MatrixArgs),
    /// List scenarios and variants.
    List(ListArgs),
    /// Combine the reports of `--shard` runs into one per variant.
    Merge(ci::MergeArgs),
    /// Show reports: terminal summary, `--html OUT` page, `--junit FILE`.
    Report(ci::ReportArgs),
    /// The CI gate's verdict: fdmutex clean, every historical variant caught.
    Verdict(ci::VerdictArgs),
    /// Measure generated cases: throughput, cases to first violation,
    /// shrinking, soak.
    Measure(measure::MeasureArgs),
    /// Serve cases on stdin/stdout for a parent `harness` (internal).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Controlled,
    Free,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Controlled => Mode::Controlled,
            ModeArg::Free => Mode::Free,
        }
    }
}

/// `--wait`: which wait path the target's sockets use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaitArg {
    /// The parked thread polls its own socket (fdmutex's default).
    Direct,
    /// Through the poll server (the historical variants' default).
    Server,
    /// Both, one report each.
    Both,
}

impl WaitArg {
    /// The paths to run `variant` on: `None` means the variant's usual one;
    /// `matrix` (without `--wait`) runs fdmutex on both.
    pub fn paths(wait: Option<WaitArg>, variant: Variant, matrix: bool) -> Vec<netfd::WaitPath> {
        let usual = netfd::Options::for_variant(variant).wait;
        match wait {
            Some(WaitArg::Direct) => vec![netfd::WaitPath::Direct],
            Some(WaitArg::Server) => vec![netfd::WaitPath::Server],
            Some(WaitArg::Both) => vec![netfd::WaitPath::Direct, netfd::WaitPath::Server],
            None if matrix && variant.expected_clean() => {
                vec![netfd::WaitPath::Direct, netfd::WaitPath::Server]
            }
            None => vec![usual],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReplayWaitArg {
    Direct,
    Server,
}

fn parse_variant(s: &str) -> Result<Variant, String> {
    s.parse::<Variant>().map_err(|e| e.to_string())
}

/// `30s`, `2m`, `1500ms`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration '{s}' (examples: 30s, 2m, 500ms)");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Scenario files or directories (default: the workspace's scenarios/).
    #[arg(long = "scenarios", value_name = "PATH")]
    pub scenarios: Vec<PathBuf>,
    /// Execution mode.
    #[arg(long, value_enum, default_value = "controlled")]
    pub mode: ModeArg,
    /// Run seed (default: from the clock; printed in the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Directory for the JSON report and saved failing cases.
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report: PathBuf,
    /// Also write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Seconds an operation may take to return after Close or its deadline.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub hang_bound: Duration,
    /// Run only shard I of N (1-based) of the scenarios; give every shard
    /// the same --seed and combine the reports with `harness merge`.
    #[arg(long, value_name = "I/N", value_parser = shard::parse_shard)]
    pub shard: Option<shard::Shard>,
    /// Cases run at once, each in a worker process of its own (0: four per
    /// core; 1: one after another).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// Run the cases as threads of this process instead of in worker
    /// processes: one case's stray calls can then reach another's sockets
    /// (and the harness's own files). For debugging the harness.
    #[arg(long)]
    pub in_process: bool,
    /// Wait path of the sockets under test; `both` writes one report per
    /// path. Default: the variant's usual path (fdmutex direct, the
    /// historical variants server); `matrix` runs fdmutex on both.
    #[arg(long, value_enum, value_name = "PATH")]
    pub wait: Option<WaitArg>,
}

impl Common {
    pub fn shard_ref(&self) -> Option<report::ShardRef> {
        self.shard.map(|s| report::ShardRef {
            index: s.index,
            count: s.count,
        })
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Lifetime protocol under test.
    #[arg(long, value_parser = parse_variant, default_value = "fdmutex")]
    pub variant: Variant,
    /// Cases per scenario at most (the budget usually ends a run first).
    #[arg(long, default_value_t = 400)]
    pub cases: u64,
    /// Wall-clock budget for the run.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub budget: Duration,
    /// Stop at the first scenario that fails (and skip the generated cases
    /// and any further wait path): the report holds what ran up to it.
    #[arg(long)]
    pub fail_fast: bool,
    #[command(flatten)]
    pub generated: gen::GenArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A saved case (scenario JSON with its schedule).
    pub file: PathBuf,
    #[arg(long, value_parser = parse_variant, default_value = "fdmutex")]
    pub variant: Variant,
    /// How many times to replay.
    #[arg(long, default_value_t = 1)]
    pub times: u64,
    #[arg(long, value_enum, default_value = "controlled")]
    pub mode: ModeArg,
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub hang_bound: Duration,
    /// Wait path (default: the variant's usual one, as the run did unless
    /// its replay command says `--wait`).
    #[arg(long, value_enum, value_name = "PATH")]
    pub wait: Option<ReplayWaitArg>,
    /// Replay in this process instead of a worker process.
    #[arg(long)]
    pub in_process: bool,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[arg(long, value_parser = parse_variant)]
    pub variant: Variant,
    #[arg(long, value_enum)]
    pub wait: ReplayWaitArg,
}

impl From<ReplayWaitArg> for netfd::WaitPath {
    fn from(w: ReplayWaitArg) -> netfd::WaitPath {
        match w {
            ReplayWaitArg::Direct => netfd::WaitPath::Direct,
            ReplayWaitArg::Server => netfd::WaitPath::Server,
        }
    }
}

#[derive(Args, Debug)]
pub struct MatrixArgs {
    /// Wall-clock budget for the whole matrix.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub budget: Duration,
    /// Cases per scenario and variant at most.
    #[arg(long, default_value_t = 20)]
    pub cases: u64,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long = "scenarios", value_name = "PATH")]
    pub scenarios: Vec<PathBuf>,
}

/// A failure with its exit code and one-line message.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn bad_input(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_BAD_INPUT,
            message: message.into(),
        }
    }
    pub fn harness(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_HARNESS_FAILED,
            message: message.into(),
        }
    }
}

/// Parse the process arguments, run, and return the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if !e.use_stderr() {
                // --help, --version: their text is the output.
                let _ = e.print();
                return EXIT_CLEAN;
            }
            if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                // No subcommand at all: the help is the answer.
                let _ = e.print();
                return EXIT_BAD_INPUT;
            }
            // Bad usage gets one line, like every other bad input: clap's
            // first paragraph (what and where), without the usage hints.
            let text = e.render().to_string();
            let first = text.split("\n\n").next().unwrap_or_default();
            let line: Vec<&str> = first
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("{}", line.join(" "));
            return EXIT_BAD_INPUT;
        }
    };
    match dispatch(cli) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<i32, Failure> {
    match cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Replay(a) => cmd_replay(a),
        Command::Matrix(a) => cmd_matrix(a),
        Command::List(a) => cmd_list(a),
        Command::Merge(a) => ci::cmd_merge(a),
        Command::Report(a) => ci::cmd_report(a),
        Command::Verdict(a) => ci::cmd_verdict(a),
        Command::Measure(a) => measure::cmd_measure(a),
        Command::Worker(a) => {
            let target = NetfdTarget::with_wait(a.variant, Some(a.wait.into()));
            worker::serve(Arc::new(target))
        }
    }
}

/// Worker processes for `target` (`None` with `--in-process`).
pub fn workers_for(
    target: &NetfdTarget,
    in_process: bool,
) -> Result<Option<Arc<Workers>>, Failure> {
    if in_process {
        return Ok(None);
    }
    let command = WorkerCommand::harness_binary(target.options.variant, target.options.wait)
        .map_err(|e| {
            Failure::harness(format!(
                "cannot find the harness binary for its workers: {e}"
            ))
        })?;
    Ok(Some(Arc::new(Workers::new(command))))
}

/// The workspace's scenarios/ directory: ./scenarios if present, else the
/// one next to this crate.
pub fn default_scenario_dir() -> PathBuf {
    let here = PathBuf::from("scenarios");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scenarios")
}

/// `path` as reports and messages show it: relative to the working
/// directory when it lies inside it (`scenarios/x.json`, whatever mix of
/// `..` and symlinks led there), otherwise absolute; `.` and `..` resolved
/// either way. A path that cannot be resolved is shown as given.
pub fn display_path(path: &Path) -> String {
    let Ok(abs) = std::fs::canonicalize(path) else {
        return path.display().to_string();
    };
    let here = std::env::current_dir().and_then(std::fs::canonicalize);
    match here.as_deref().map(|h| abs.strip_prefix(h)) {
        Ok(Ok(rel)) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => abs.display().to_string(),
    }
}

/// Load every scenario named by `paths` (files or directories).
pub fn load_sources(paths: &[PathBuf]) -> Result<Vec<Source>, Failure> {
    let paths = if paths.is_empty() {
        vec![default_scenario_dir()]
    } else {
        paths.to_vec()
    };
    let mut out = Vec::new();
    for p in &paths {
        let loaded: Vec<(PathBuf, Scenario)> = if p.is_dir() {
            scenario::load_dir(p).map_err(|e| Failure::bad_input(e.to_string()))?
        } else {
            let s = scenario::load_file(p).map_err(|e| Failure::bad_input(e.to_string()))?;
            vec![(p.clone(), s)]
        };
        for (file, s) in loaded {
            out.push(Source {
                scenario: s,
                file: display_path(&file),
            });
        }
    }
    if out.is_empty() {
        return Err(Failure::bad_input(format!(
            "no scenario files found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for s in &out {
        if !seen.insert(s.scenario.name.clone()) {
            return Err(Failure::bad_input(format!(
                "{}: scenario name '{}' is used twice",
                s.file, s.scenario.name
            )));
        }
    }
    check_fd_limit(&out)?;
    Ok(out)
}

/// Refuse scenarios that need more descriptors than the process may open.
pub fn check_fd_limit(sources: &[Source]) -> Result<(), Failure> {
    let limit = netfd::sys::fd_limit();
    for s in sources {
        let need = s.scenario.descriptors_needed();
        // Other cases' and the harness's own descriptors need room too.
        if limit > 0 && need.saturating_mul(2) > limit {
            return Err(Failure::bad_input(format!(
                "{}: scenario '{}' needs about {need} descriptors, but the descriptor limit is {limit} (raise it with `ulimit -n`)",
                s.file, s.scenario.name
            )));
        }
    }
    Ok(())
}

/// Make sure reports can be written to `dir` before running anything.
pub fn check_report_dir(dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::bad_input(format!("report directory {}: {e}", dir.display())))?;
    tempfile::NamedTempFile::new_in(dir).map(drop).map_err(|e| {
        Failure::bad_input(format!(
            "report directory {} is not writable: {e}",
            dir.display()
        ))
    })
}

fn seed_or_clock(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        crate::exec::Rng::new(t.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64() >> 1
    })
}

fn progress_bar(total: u64, label: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_prefix(label.to_string());
    pb
}

/// Run `sources` against `variant` and write the report; returns it with its path.
pub fn run_variant(
    target: NetfdTarget,
    sources: &[Source],
    cfg: &RunConfig,
    report_dir: &Path,
) -> Result<(Report, PathBuf), Failure> {
    let variant = target.options.variant;
    let target: Arc<dyn Target> = Arc::new(target);
    let pb = progress_bar(sources.len() as u64 * cfg.cases, variant.name());
    let progress = |name: &str, _case: u64| {
        pb.inc(1);
        pb.set_message(name.to_string());
    };
    let report =
        run::run(target, sources, cfg, &progress).map_err(|e| Failure::harness(e.to_string()))?;
    pb.finish_and_clear();
    let path = report
        .write_atomic(report_dir)
        .map_err(|e| Failure::bad_input(format!("cannot write report: {e}")))?;
    Ok((report, path))
}

/// Where a run saves its failing cases: `cases-<variant>[-<wait>]-<seed>`,
/// the wait path named when it is not the variant's usual one (so the two
/// paths of one seed never overwrite each other's cases).
fn case_dir(report_dir: &Path, target: &NetfdTarget, seed: u64) -> PathBuf {
    let v = target.options.variant;
    let wait = if target.options.wait == netfd::Options::for_variant(v).wait {
        String::new()
    } else {
        format!("-{}", target.options.wait.name())
    };
    report_dir.join(format!("cases-{}{wait}-{seed}", v.name()))
}

fn cmd_run(a: RunArgs) -> Result<i32, Failure> {
    let sources = shard::apply(a.common.shard, load_sources(&a.common.scenarios)?);
    check_report_dir(&a.common.report)?;
    let seed = seed_or_clock(a.common.seed);
    let paths = WaitArg::paths(a.common.wait, a.variant, false);
    let started = std::time::Instant::now();
    let mut reports = Vec::new();
    for (i, &wait) in paths.iter().enumerate() {
        let target = NetfdTarget::with_wait(a.variant, Some(wait));
        // Each path gets an equal share of what is left of the budget.
        let left = a.budget.saturating_sub(started.elapsed());
        let cfg = RunConfig {
            mode: a.common.mode.into(),
            seed,
            cases: a.cases,
            budget: left / (paths.len() - i) as u32,
            case_dir: Some(case_dir(&a.common.report, &target, seed)),
            hang_bound: a.common.hang_bound,
            shard: a.common.shard_ref(),
            jobs: a.common.jobs,
            fail_fast: a.fail_fast,
            workers: workers_for(&target, a.common.in_process)?,
        };
        let plan = a.generated.plan(a.common.shard);
        let (report, path, generated) =
            gen::run_variant_generated(target, &sources, &cfg, plan.as_ref(), &a.common.report)?;
        print!(
            "{}",
            report::summary::render(&report, std::io::stdout().is_terminal())
        );
        println!("report: {}", path.display());
        if let Some(f) = &generated {
            print!("{}", gen::failure_lines(f));
        }
        let failed = !report.summary.passed;
        reports.push(report);
        if failed && a.fail_fast {
            println!("--fail-fast: stopped at the first failing scenario");
            break;
        }
    }
    if let Some(j) = &a.common.junit {
        report::junit::write(&reports, j).map_err(|e| {
            Failure::bad_input(format!("cannot write JUnit XML {}: {e}", j.display()))
        })?;
    }
    Ok(if reports.iter().all(|r| r.summary.passed) {
        EXIT_CLEAN
    } else {
        EXIT_VIOLATIONS
    })
}

fn cmd_replay(a: ReplayArgs) -> Result<i32, Failure> {
    let scenario = scenario::load_file(&a.file).map_err(|e| Failure::bad_input(e.to_string()))?;
    let netfd_target = NetfdTarget::with_wait(a.variant, a.wait.map(Into::into));
    let workers = workers_for(&netfd_target, a.in_process)?;
    let target: Arc<dyn Target> = Arc::new(netfd_target);
    let mut failed = 0u64;
    // Shown: the first replay, and the first that reproduced a violation
    // if that is a later one (with many replays, the one worth reading).
    let mut shown_failure = false;
    for i in 0..a.times.max(1) {
        let mut cfg = crate::exec::CaseConfig::new(a.mode.into(), i);
        cfg.hang_bound = a.hang_bound;
        cfg.schedule = scenario.schedule.clone().unwrap_or_default();
        let outcome = worker::run_case(workers.as_deref(), &target, &scenario, &cfg)
            .map_err(|e| Failure::harness(e.to_string()))?;
        if !outcome.found.is_empty() {
            failed += 1;
        }
        let first_failure = !outcome.found.is_empty() && !shown_failure;
        if i == 0 || a.times == 1 || first_failure {
            shown_failure |= !outcome.found.is_empty();
            println!(
                "replay {} of {} against {} ({} wait path): {} violation(s)",
                i + 1,
                a.file.display(),
                a.variant,
                target.wait_path().map_or("no", |w| w.name()),
                outcome.found.len()
            );
            for f in &outcome.found {
                println!(
                    "  {} fd {} owner #{} {} on thread {}: {}",
                    f.kind, f.fd, f.owner, f.op, f.thread, f.message
                );
                if let Some(e) = &f.evidence {
                    println!("    evidence: {e}");
                }
            }
            // The interleaving that led to the first violation, as lanes.
            if let Some(f) = outcome.found.iter().find(|f| !f.trace.is_empty()) {
                println!("interleaving ({} on thread {}):", f.kind, f.thread);
                print!(
                    "{}",
                    report::lanes::Lanes::from_trace(&f.trace).render_text(30)
                );
            }
        }
    }
    println!(
        "{failed} of {} replays reproduced a violation",
        a.times.max(1)
    );
    Ok(if failed > 0 {
        EXIT_VIOLATIONS
    } else {
        EXIT_CLEAN
    })
}

/// One row of the matrix verdict.
#[derive(Debug, Clone)]
pub struct MatrixRow {
    pub variant: Variant,
    pub wait: netfd::WaitPath,
    pub violations: u64,
    pub kinds: Vec<String>,
    pub ok: bool,
    pub report: PathBuf,
}

fn cmd_matrix(a: MatrixArgs) -> Result<i32, Failure> {
    let sources = shard::apply(a.common.shard, load_sources(&a.common.scenarios)?);
    check_report_dir(&a.common.report)?;
    let seed = seed_or_clock(a.common.seed);
    let runs: Vec<(Variant, netfd::WaitPath)> = Variant::ALL
        .into_iter()
        .flat_map(|v| {
            WaitArg::paths(a.common.wait, v, true)
                .into_iter()
                .map(move |w| (v, w))
        })
        .collect();
    let per_run = a.budget / runs.len() as u32;
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    for (v, wait) in runs {
        let target = NetfdTarget::with_wait(v, Some(wait));
        let cfg = RunConfig {
            mode: a.common.mode.into(),
            seed,
            cases: a.cases,
            budget: per_run,
            case_dir: Some(case_dir(&a.common.report, &target, seed)),
            hang_bound: a.common.hang_bound,
            jobs: a.common.jobs,
            shard: a.common.shard_ref(),
            fail_fast: false,
            workers: workers_for(&target, a.common.in_process)?,
        };
        let (report, path) = run_variant(target, &sources, &cfg, &a.common.report)?;
        let caught = run::caught(&report);
        let ok = if v.expected_clean() { !caught } else { caught };
        rows.push(MatrixRow {
            variant: v,
            wait,
            violations: report.summary.violations,
            kinds: run::kinds_found(&report)
                .iter()
                .map(|k| k.name().to_string())
                .collect(),
            ok,
            report: path,
        });
        reports.push(report);
    }
    if let Some(j) = &a.common.junit {
        report::junit::write(&reports, j).map_err(|e| {
            Failure::bad_input(format!("cannot write JUnit XML {}: {e}", j.display()))
        })?;
    }
    println!(
        "{:<18} {:<6} {:<9} {:>10}  kinds",
        "variant", "wait", "verdict", "violations"
    );
    for r in &rows {
        let expect = if r.variant.expected_clean() {
            "clean"
        } else {
            "caught"
        };
        let verdict = if r.ok {
            expect.to_string()
        } else {
            format!("NOT {expect}")
        };
        println!(
            "{:<18} {:<6} {:<9} {:>10}  {}",
            r.variant.name(),
            r.wait.name(),
            verdict,
            r.violations,
            r.kinds.join(",")
        );
    }
    // A variant expected clean that is not: its violations in full, each
    // with its replay command (the historical variants' are expected and
    // stay in their reports).
    for (r, rep) in rows.iter().zip(&reports) {
        if !r.ok && r.variant.expected_clean() {
            print!(
                "{}",
                report::summary::render(rep, std::io::stdout().is_terminal())
            );
        }
    }
    for r in &rows {
        println!(
            "report {} {}: {}",
            r.variant,
            r.wait.name(),
            r.report.display()
        );
    }
    let all_ok = rows.iter().all(|r| r.ok);
    println!("matrix: {}", if all_ok { "ok" } else { "FAILED" });
    Ok(if all_ok { EXIT_CLEAN } else { EXIT_VIOLATIONS })
}

fn cmd_list(a: ListArgs) -> Result<i32, Failure> {
    let sources = load_sources(&a.scenarios)?;
    println!("scenarios:");
    for s in &sources {
        let origin = s
            .scenario
            .origin
            .as_deref()
            .map(|o| format!(" [{o}]"))
            .unwrap_or_default();
        println!(
            "  {:<34} {:<5} {}{}",
            s.scenario.name,
            s.scenario.transport.name(),
            s.scenario.description,
            origin
        );
    }
    println!("variants:");
    for v in Variant::ALL {
        let expect = if v.expected_clean() {
            "expected clean"
        } else {
            "expected caught"
        };
        println!("  {:<18} {expect}", v.name());
    }
    Ok(EXIT_CLEAN)
}

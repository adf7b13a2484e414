//! A run: scenario files (and generated cases) against one target, into one
//! report. Cases of a scenario run several at once ([`RunConfig::jobs`],
//! [`parallel`]) and are reported in case order, as a sequential run would
//! report them; the run stops a scenario after its first hang (its threads
//! are left behind) and keeps the first few violations of each kind.
//!
//! Generated cases ([`GenPlan`], [`crate::gen`]) run after the scenario
//! files, as one more report entry named `generated` (file `generated`):
//! every scenario file and the generated family get an equal share of what
//! is left of the budget, in order, so the generated cases get their share
//! plus whatever the files did not use. They stop at the first failure,
//! which is shrunk (bounded by [`GenPlan::max_shrink_time`], which may run
//! past the budget) and saved as a scenario with its schedule in the case
//! directory; its violations carry the command that replays it.

use crate::exec::{self, case_seed, parallel, CaseConfig, CaseOutcome};
use crate::gen::{self, GenConfig, GenFailure};
use crate::report::{self, Mode, Report, ScenarioReport, ShardRef, Violation, ViolationKind};
use crate::scenario::Scenario;
use crate::target::Target;
use crate::worker::{self, Workers};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many violations of one kind a scenario keeps in the report.
const KEEP_PER_KIND: usize = 3;

/// A scenario to run, with where it came from.
#[derive(Clone, Debug)]
pub struct Source {
    pub scenario: Scenario,
    /// The file, or a description such as `generated`.
    pub file: String,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub mode: Mode,
    pub seed: u64,
    /// Cases per scenario at most.
    pub cases: u64,
    /// Wall-clock budget for the whole run.
    pub budget: Duration,
    /// Where failing cases are saved for replay (next to the report).
    pub case_dir: Option<PathBuf>,
    pub hang_bound: Duration,
    /// Cases run at once (0: sized to the machine, see
    /// [`parallel::jobs`]); 1 runs them one after another.
    pub jobs: usize,
    /// The share of a sharded run this is (recorded in the report).
    pub shard: Option<ShardRef>,
    /// Stop at the first scenario that fails: the scenarios after it and
    /// the generated cases do not run (`harness run --fail-fast`). A hang
    /// leaves its threads behind, and a lifetime bug that hangs one
    /// scenario usually hangs the next: continuing costs a hang bound per
    /// scenario while the left-behind threads take the CPU.
    pub fail_fast: bool,
    /// Worker processes to run the cases in, one case at a time each
    /// ([`crate::worker`]); `None`: in this process, beside each other.
    pub workers: Option<Arc<Workers>>,
}

impl RunConfig {
    /// A run of `mode` from `seed` with the defaults of `harness run`: 400
    /// cases per scenario, 30 s, hang bound 1 s, jobs sized to the machine,
    /// no case directory, in this process.
    pub fn new(mode: Mode, seed: u64) -> RunConfig {
        RunConfig {
            mode,
            seed,
            cases: 400,
            budget: Duration::from_secs(30),
            case_dir: None,
            hang_bound: Duration::from_secs(1),
            jobs: 0,
            shard: None,
            fail_fast: false,
            workers: None,
        }
    }
}

/// The flags a replay command needs beyond `--variant` to run the case the
/// way the run did: `--wait` when the target's wait path is not its
/// variant's usual one, `--mode free` in free mode.
pub fn replay_flags(target: &dyn Target, mode: Mode) -> String {
    let mut flags = String::new();
    if let (Some(w), Ok(v)) = (target.wait_path(), target.name().parse::<netfd::Variant>()) {
        if netfd::Options::for_variant(v).wait != w {
            flags.push_str(&format!(" --wait {}", w.name()));
        }
    }
    if mode == Mode::Free {
        flags.push_str(" --mode free");
    }
    flags
}

/// Called after every case (for progress display).
pub type Progress<'a> = &'a (dyn Fn(&str, u64) + Sync);

/// The harness failed (not a verdict on the target).
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Run every source against `target`; returns the finished report.
pub fn run(
    target: Arc<dyn Target>,
    sources: &[Source],
    cfg: &RunConfig,
    progress: Progress<'_>,
) -> Result<Report, RunError> {
    run_with_generated(target, sources, cfg, None, progress).map(|(report, _)| report)
}

/// Generated cases to run after the scenario files.
#[derive(Clone, Debug)]
pub struct GenPlan {
    /// Generated cases at most (within the run's budget).
    pub cases: u64,
    pub bounds: gen::Bounds,
    /// Longest time spent shrinking the first failing case.
    pub max_shrink_time: Duration,
    /// Run only the generated cases whose index is `.0` modulo `.1`
    /// (`--shard`; 0-based).
    pub shard: Option<(u64, u64)>,
}

impl GenPlan {
    pub fn new(cases: u64) -> GenPlan {
        GenPlan {
            cases,
            bounds: gen::Bounds::default(),
            max_shrink_time: Duration::from_secs(10),
            shard: None,
        }
    }
}

/// The name and file of the generated family in reports.
pub const GENERATED: &str = "generated";

/// A run's first failing generated case, shrunk and saved.
#[derive(Clone, Debug)]
pub struct GeneratedFailure {
    /// Index of the generated case that failed.
    pub case: u64,
    /// Where the minimal case was saved (with `RunConfig::case_dir`).
    pub file: Option<PathBuf>,
    /// The one command that replays it.
    pub replay: String,
    /// (threads, ops) of the case as drawn and of the minimal case.
    pub original_size: (usize, usize),
    pub minimal_size: (usize, usize),
    pub shrink_runs: u64,
    pub kinds: Vec<ViolationKind>,
}

/// Run every source, then the generated cases of `plan`, against `target`;
/// returns the finished report and the shrunk failing generated case, if
/// one failed.
pub fn run_with_generated(
    target: Arc<dyn Target>,
    sources: &[Source],
    cfg: &RunConfig,
    plan: Option<&GenPlan>,
    progress: Progress<'_>,
) -> Result<(Report, Option<GeneratedFailure>), RunError> {
    let started = Instant::now();
    let mut report = Report::new(target.name(), cfg.mode, cfg.seed);
    report.wait = target.wait_path().map(Into::into);
    report.shard = cfg.shard;
    // Files that need what the target lacks are skipped, not failed.
    let caps = target.capabilities();
    let (sources, skipped): (Vec<&Source>, Vec<&Source>) = sources
        .iter()
        .partition(|s| caps.lacks_for(&s.scenario).is_none());
    report.skipped = skipped
        .iter()
        .map(|s| report::Skipped {
            file: s.file.clone(),
            reason: caps.lacks_for(&s.scenario).unwrap_or_default(),
        })
        .collect();
    let n = (sources.len() + usize::from(plan.is_some())).max(1) as u32;
    for (i, src) in sources.into_iter().enumerate() {
        // Each scenario gets an equal share of what is left of the budget.
        let left = cfg.budget.saturating_sub(started.elapsed());
        let share = left / (n - i as u32).max(1);
        let sr = run_scenario(target.clone(), src, cfg, share, progress)?;
        let failed = !sr.violations.is_empty();
        report.scenarios.push(sr);
        if failed && cfg.fail_fast {
            report.finish(started.elapsed());
            return Ok((report, None));
        }
    }
    let mut failure = None;
    if let Some(plan) = plan {
        let left = cfg.budget.saturating_sub(started.elapsed());
        let (sr, f) = run_generated_family(target, cfg, plan, left, progress)?;
        report.scenarios.push(sr);
        failure = f;
    }
    report.finish(started.elapsed());
    Ok((report, failure))
}

/// Run the generated cases of `plan` within `budget` into one report entry.
pub fn run_generated_family(
    target: Arc<dyn Target>,
    cfg: &RunConfig,
    plan: &GenPlan,
    budget: Duration,
    progress: Progress<'_>,
) -> Result<(ScenarioReport, Option<GeneratedFailure>), RunError> {
    let variant = target.name();
    let gc = GenConfig {
        mode: cfg.mode,
        seed: cfg.seed,
        cases: plan.cases,
        budget,
        hang_bound: cfg.hang_bound,
        bounds: plan.bounds,
        shrink: true,
        max_shrink_iters: 512,
        max_shrink_time: plan.max_shrink_time,
        shard: plan.shard,
        confirm: 1,
        fail_on: Vec::new(),
        pct: false,
        jobs: cfg.jobs,
        workers: cfg.workers.clone(),
    };
    let on_case = |i: u64| progress(GENERATED, i);
    let run = gen::run_generated(target.clone(), &gc, &on_case)
        .map_err(|e| RunError(format!("{GENERATED}: {e}")))?;
    let mut sr = ScenarioReport::new(GENERATED, GENERATED);
    sr.cases = run.stats.cases;
    sr.syscalls_checked = run.stats.syscalls_checked;
    for &(kind, n) in &run.stats.checks {
        sr.record_checks(kind, n);
    }
    let Some(f) = run.failure else {
        return Ok((sr, None));
    };
    let schedule = f.replay_schedule();
    let mode_flag = replay_flags(&*target, cfg.mode);
    let (file, replay) = match &cfg.case_dir {
        Some(dir) => {
            let saved = minimal_scenario(&f, &variant, cfg.seed);
            let path = save_case(dir, &saved, f.case, &schedule)?;
            let replay = format!("{}{mode_flag}", report::replay_command(&path, &variant));
            (Some(path), replay)
        }
        None => (
            None,
            format!(
                "harness run --variant {} --seed {}{mode_flag}",
                report::shell_quote(&variant),
                cfg.seed
            ),
        ),
    };
    let mut kinds: Vec<ViolationKind> = f.minimal_outcome.found.iter().map(|x| x.kind).collect();
    kinds.sort();
    kinds.dedup();
    for found in &f.minimal_outcome.found {
        let kept = sr
            .violations
            .iter()
            .filter(|v| v.kind == found.kind)
            .count();
        if kept >= KEEP_PER_KIND {
            sr.assertions.get_mut(found.kind).passed = false;
            continue;
        }
        let mut v = Violation::new(
            found.kind,
            found.fd,
            found.owner,
            found.op.clone(),
            found.thread.clone(),
            f.case,
            f.minimal.seed,
        );
        v.holder = found.holder;
        v.schedule = schedule.clone();
        v.trace = found.trace.clone();
        v.replay = replay.clone();
        v.message = found.message.clone();
        v.evidence = found.evidence.clone();
        sr.add_violation(v);
    }
    let failure = GeneratedFailure {
        case: f.case,
        file,
        replay,
        original_size: f.original.size(),
        minimal_size: f.minimal.size(),
        shrink_runs: f.shrink_runs,
        kinds,
    };
    Ok((sr, Some(failure)))
}

/// The minimal case of `f` as it is saved: its description says where it
/// came from.
pub fn minimal_scenario(f: &GenFailure, variant: &str, run_seed: u64) -> Scenario {
    let mut s = f.minimal.scenario.clone();
    let (threads, ops) = f.minimal.size();
    s.description = format!(
        "Minimal case shrunk from generated case {} of seed {run_seed} against {variant}: {}, {threads} threads, {ops} ops.",
        f.case, s.transport
    );
    s
}

/// Run the cases of one scenario within `budget`.
pub fn run_scenario(
    target: Arc<dyn Target>,
    src: &Source,
    cfg: &RunConfig,
    budget: Duration,
    progress: Progress<'_>,
) -> Result<ScenarioReport, RunError> {
    let started = Instant::now();
    let mut sr = ScenarioReport::new(&src.scenario.name, &src.file);
    let cases = cfg.cases.max(1) as usize;
    let seed_of = |case: usize| case_seed(cfg.seed, &src.scenario.name, case as u64);
    let more = |case: usize| case == 0 || started.elapsed() < budget;
    let job = |case: usize| {
        let mut cc = CaseConfig::new(cfg.mode, seed_of(case));
        cc.hang_bound = cfg.hang_bound;
        if let Some(s) = &src.scenario.schedule {
            cc.schedule = s.clone();
        }
        let r = worker::run_case(cfg.workers.as_deref(), &target, &src.scenario, &cc);
        progress(&src.scenario.name, case as u64);
        r
    };
    // A hang leaves threads behind: stop the scenario there.
    let stop_after =
        |r: &Result<CaseOutcome, exec::SetupError>| r.as_ref().map_or(true, |o| o.hung);
    let jobs = parallel::jobs(cfg.jobs);
    let outcomes = parallel::run_ordered(jobs, cases, &more, &job, &stop_after);
    for (case, outcome) in outcomes.into_iter().enumerate() {
        // Run beside others in this process, a case that could not be set
        // up, or that failed, runs again alone: a historical variant's
        // stale call can reach a neighbour's socket, and a saved case must
        // be the case's own interleaving. A failure that does not repeat
        // alone is kept as it was found (it is still the target's). In
        // worker processes every case already ran alone.
        let beside_others = jobs > 1 && cfg.workers.is_none();
        let outcome = match outcome {
            Err(_) if beside_others => job(case),
            Ok(o) if beside_others && !o.found.is_empty() && !o.hung => match job(case) {
                Ok(alone) if !alone.found.is_empty() => Ok(alone),
                _ => Ok(o),
            },
            r => r,
        };
        let outcome = outcome.map_err(|e| RunError(format!("{}: {e}", src.file)))?;
        sr.cases += 1;
        absorb(
            &mut sr,
            src,
            cfg,
            &*target,
            case as u64,
            seed_of(case),
            outcome,
        )?;
    }
    Ok(sr)
}

/// Fold one case's outcome into the scenario's report.
fn absorb(
    sr: &mut ScenarioReport,
    src: &Source,
    cfg: &RunConfig,
    target: &dyn Target,
    case: u64,
    seed: u64,
    outcome: CaseOutcome,
) -> Result<(), RunError> {
    let variant = &target.name();
    let flags = replay_flags(target, cfg.mode);
    sr.syscalls_checked += outcome.syscalls_checked;
    for (kind, n) in &outcome.checks {
        sr.record_checks(*kind, *n);
    }
    if outcome.found.is_empty() {
        return Ok(());
    }
    let replay = match &cfg.case_dir {
        Some(dir) => {
            let path = save_case(dir, &src.scenario, case, &outcome.schedule)?;
            format!("{}{flags}", report::replay_command(&path, variant))
        }
        None => format!(
            "harness run --scenarios {} --variant {variant} --seed {}{flags}",
            report::shell_quote(&src.file),
            cfg.seed
        ),
    };
    for f in outcome.found {
        let kept = sr.violations.iter().filter(|v| v.kind == f.kind).count();
        if kept >= KEEP_PER_KIND {
            // Still fails the assertion; the first few tell the story.
            sr.assertions.get_mut(f.kind).passed = false;
            continue;
        }
        let mut v = Violation::new(f.kind, f.fd, f.owner, f.op, f.thread, case, seed);
        v.holder = f.holder;
        v.schedule = outcome.schedule.clone();
        v.trace = f.trace;
        v.replay = replay.clone();
        v.message = f.message;
        v.evidence = f.evidence;
        sr.add_violation(v);
    }
    Ok(())
}

/// Save a failing case (scenario + the schedule it followed) for replay.
pub fn save_case(
    dir: &Path,
    scenario: &Scenario,
    case: u64,
    schedule: &[usize],
) -> Result<PathBuf, RunError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| RunError(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(format!("{}-case{case}.json", scenario.name));
    let mut saved = scenario.clone().with_schedule(schedule.to_vec());
    // A distinct name, so a folder of saved cases loads as a scenario set.
    let suffix = format!("-case{case}");
    let keep = 64usize.saturating_sub(suffix.len()).min(saved.name.len());
    saved.name = format!("{}{suffix}", &saved.name[..keep]);
    saved.save(&path).map_err(|e| RunError(e.to_string()))?;
    Ok(path)
}

/// Whether the report shows a violation of any kind.
pub fn caught(report: &Report) -> bool {
    report.summary.violations > 0 || !report.summary.passed
}

/// The kinds found in a report, sorted.
pub fn kinds_found(report: &Report) -> Vec<ViolationKind> {
    let mut k: Vec<ViolationKind> = report.violations().map(|(_, v)| v.kind).collect();
    k.sort();
    k.dedup();
    k
}

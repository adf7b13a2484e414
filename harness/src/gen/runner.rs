//! Running generated cases: draw, execute, and on the first failure shrink.
//!
//! Protocol:
//! - Case `i` is drawn by a fresh proptest [`TestRunner`] whose RNG is
//!   ChaCha seeded from `(run seed, i)` ([`case_rng`]), so any case of any
//!   run can be drawn again from the run's seed and its index.
//! - The case runs through [`exec::run_case`]; it *fails* when the outcome
//!   holds a violation ([`fails`]). [`shrink`] then walks proptest's value
//!   tree: every simplification is run the same way and kept if it still
//!   fails. Shrinking is bounded by iterations and by time
//!   ([`GenConfig::max_shrink_iters`], [`GenConfig::max_shrink_time`]).
//! - While shrinking, a simpler case counts as failing only if it fails
//!   [`GenConfig::confirm`] more times in a row, so the minimal case's
//!   failure is one its schedule decides, not a lucky timing.
//! - The minimal case's violations and the schedule it actually followed
//!   (the executor's recorded decisions) come from the last run that failed
//!   with exactly that case; if shrinking ended on a case whose last run
//!   passed (a flaky race), it is run again a few times for a failing run.
//! - Generation stops at the first failure, at `cases`, or at the budget.
//!   A case the harness could not set up stops the run with the error.

use super::strategy::{case_strategy_for, Bounds, GenCase, TargetKinds};
use crate::exec::{parallel, CaseConfig, CaseOutcome, CaseTimings, Found, Rng, SetupError};
use crate::report::{Mode, ViolationKind};
use crate::target::Target;
use crate::worker::{self, Workers};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How generated cases run.
#[derive(Clone, Debug)]
pub struct GenConfig {
    pub mode: Mode,
    /// The run's seed: with a case's index, decides the case.
    pub seed: u64,
    /// Generated cases to run at most.
    pub cases: u64,
    /// Wall-clock budget for generating and running (not shrinking).
    pub budget: Duration,
    pub hang_bound: Duration,
    pub bounds: Bounds,
    /// Shrink the first failure (`false`: report it as drawn).
    pub shrink: bool,
    pub max_shrink_iters: u32,
    pub max_shrink_time: Duration,
    /// Run only the cases whose index is `index` modulo `count` (one shard
    /// of a run split over several machines; `index` is 0-based).
    pub shard: Option<(u64, u64)>,
    /// While shrinking, how many more times a simpler case that failed must
    /// fail again to count as failing.
    pub confirm: u32,
    /// A case fails when it finds a violation of one of these kinds (empty:
    /// of any kind). Measurements use it to time one race rather than
    /// whichever violation comes first.
    pub fail_on: Vec<ViolationKind>,
    /// Controlled mode: schedule cases by PCT priorities ([`exec::pct`])
    /// instead of their generated choices; each case's bug depth (2 or 3)
    /// and priorities come from its seed. Saved cases keep the decisions
    /// taken, so they replay as any other.
    pub pct: bool,
    /// Cases run at once (0: sized to the machine; 1, the default of
    /// [`GenConfig::new`]: one after another). Only the first run of each case overlaps others; shrinking runs
    /// alone.
    pub jobs: usize,
    /// Worker processes to run the cases in ([`crate::worker`]); `None`:
    /// in this process.
    pub workers: Option<Arc<Workers>>,
}

impl GenConfig {
    pub fn new(mode: Mode, seed: u64, cases: u64) -> GenConfig {
        GenConfig {
            mode,
            seed,
            cases,
            budget: Duration::from_secs(3600),
            hang_bound: Duration::from_secs(1),
            bounds: Bounds::default(),
            shrink: true,
            max_shrink_iters: 512,
            max_shrink_time: Duration::from_secs(20),
            shard: None,
            confirm: 1,
            fail_on: Vec::new(),
            pct: false,
            jobs: 1,
            workers: None,
        }
    }
}

/// Totals over the cases run (shrinking runs excluded).
#[derive(Clone, Debug, Default)]
pub struct CaseStats {
    pub cases: u64,
    pub syscalls_checked: u64,
    pub checks: Vec<(ViolationKind, u64)>,
    /// Where the cases' time went, summed.
    pub timings: CaseTimings,
}

impl CaseStats {
    fn absorb(&mut self, o: &CaseOutcome) {
        self.cases += 1;
        self.timings += o.timings;
        self.syscalls_checked += o.syscalls_checked;
        for &(kind, n) in &o.checks {
            match self.checks.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, m)) => *m += n,
                None => self.checks.push((kind, n)),
            }
        }
    }
}

/// The first failing generated case, shrunk.
#[derive(Clone, Debug)]
pub struct GenFailure {
    /// Index of the failing case within the run (0-based).
    pub case: u64,
    /// From the start of the run to the end of the failing case.
    pub elapsed: Duration,
    /// The case as drawn, and what its run found.
    pub original: GenCase,
    pub original_found: Vec<Found>,
    /// The minimal case and a failing run of it (its `schedule` is the one
    /// actually followed).
    pub minimal: GenCase,
    pub minimal_outcome: CaseOutcome,
    /// Cases run while shrinking, and how long it took.
    pub shrink_runs: u64,
    pub shrink_time: Duration,
}

impl GenFailure {
    /// The schedule to save with the minimal case: the decisions its failing
    /// run made (controlled mode), else the generated one.
    pub fn replay_schedule(&self) -> Vec<usize> {
        if self.minimal_outcome.schedule.is_empty() {
            self.minimal.schedule.clone()
        } else {
            self.minimal_outcome.schedule.clone()
        }
    }
}

/// What a run of generated cases did.
#[derive(Clone, Debug, Default)]
pub struct GenRun {
    pub stats: CaseStats,
    pub elapsed: Duration,
    pub failure: Option<GenFailure>,
}

/// The RNG that draws case `case` of the run with seed `run_seed`.
pub fn case_rng(run_seed: u64, case: u64) -> TestRng {
    let mut r = Rng::new(run_seed ^ case.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x67_656e);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// The proptest configuration the runner uses: no persistence, no caching,
/// no forking, shrinking bounded as `cfg` says. Tests that want proptest's
/// regression files set `failure_persistence` and `source_file` on it.
pub fn proptest_config(cfg: &GenConfig) -> Config {
    Config {
        cases: 1,
        max_shrink_iters: if cfg.shrink { cfg.max_shrink_iters } else { 0 },
        // The runner enforces `max_shrink_time` itself (a run past it
        // passes without running), so proptest never aborts noisily.
        max_shrink_time: 0,
        failure_persistence: None,
        source_file: None,
        max_local_rejects: 1 << 16,
        max_global_rejects: 1 << 16,
        max_flat_map_regens: 1 << 16,
        timeout: 0,
        fork: false,
        verbose: 0,
        rng_algorithm: RngAlgorithm::ChaCha,
        ..Config::default()
    }
}

fn case_config(cfg: &GenConfig, case: &GenCase) -> CaseConfig {
    let mut cc = CaseConfig::new(cfg.mode, case.seed);
    cc.hang_bound = cfg.hang_bound;
    if cfg.pct {
        cc.pct_depth = Some(2 + (case.seed % 2) as usize);
    } else {
        cc.schedule = case.schedule.clone();
    }
    cc
}

/// Run `case` once.
pub fn run_one_case(
    target: &Arc<dyn Target>,
    cfg: &GenConfig,
    case: &GenCase,
) -> Result<CaseOutcome, SetupError> {
    worker::run_case(
        cfg.workers.as_deref(),
        target,
        &case.scenario,
        &case_config(cfg, case),
    )
}

/// Per-case state shared with the test closure (proptest wants `Fn`).
#[derive(Default)]
struct CaseState {
    /// Runs of this case so far (the first is the case as drawn).
    runs: u64,
    first: Option<(CaseOutcome, Instant)>,
    last_failing: Option<(GenCase, CaseOutcome)>,
    setup_error: Option<SetupError>,
}

/// Run generated cases against `target` as `cfg` says. `progress` is called
/// after every generated case with its index.
///
/// Cases are drawn in index order on this thread, in batches; the first run
/// of every case of a batch runs on [`parallel::run_ordered`]'s workers;
/// then, in index order, each outcome is counted and the first failing case
/// is shrunk (alone). What is reported — the cases counted, the first
/// failure and its minimal case — is what a sequential run reports.
pub fn run_generated(
    target: Arc<dyn Target>,
    cfg: &GenConfig,
    progress: &dyn Fn(u64),
) -> Result<GenRun, SetupError> {
    let started = Instant::now();
    let strategy = case_strategy_for(cfg.bounds, TargetKinds::of(&*target));
    let config = proptest_config(cfg);
    let mut run = GenRun::default();
    let jobs = parallel::jobs(cfg.jobs);
    // Each batch ends in a barrier (its slowest case): large batches keep
    // the workers busy; a stop or the budget ends one early anyway.
    let batch = if jobs <= 1 { 1 } else { jobs * 32 };
    let mine = |i: u64| !matches!(cfg.shard, Some((index, count)) if i % count.max(1) != index);
    let mut indices = (0..cfg.cases).filter(|&i| mine(i)).peekable();
    while indices.peek().is_some() {
        if run.stats.cases > 0 && started.elapsed() >= cfg.budget {
            break;
        }
        let mut drawn = Vec::with_capacity(batch);
        for i in indices.by_ref().take(batch) {
            let mut runner = TestRunner::new_with_rng(config.clone(), case_rng(cfg.seed, i));
            let tree = strategy
                .new_tree(&mut runner)
                .map_err(|e| SetupError(format!("generating case {i}: {e}")))?;
            let case = tree.current();
            drawn.push((i, tree, case));
        }
        let cases: Vec<&GenCase> = drawn.iter().map(|(_, _, c)| c).collect();
        let counted = run.stats.cases;
        let more = |k: usize| (counted == 0 && k == 0) || started.elapsed() < cfg.budget;
        let job = |k: usize| run_one_case(&target, cfg, cases[k]).map(|o| (o, Instant::now()));
        let stop_after = |r: &Result<(CaseOutcome, Instant), SetupError>| {
            r.as_ref().map_or(true, |(o, _)| fails(cfg, o))
        };
        let firsts = parallel::run_ordered(jobs, drawn.len(), &more, &job, &stop_after);
        let ran = firsts.len();
        for ((i, tree, case), first) in drawn.into_iter().zip(firsts) {
            // A case that could not be set up beside others in this
            // process (a neighbour's stale close may hit its listener) gets
            // one more try alone.
            let first = match first {
                Err(_) if jobs > 1 && cfg.workers.is_none() => {
                    run_one_case(&target, cfg, &case).map(|o| (o, Instant::now()))
                }
                r => r,
            };
            let first = first.map_err(|e| SetupError(format!("generated case {i}: {}", e.0)))?;
            let (outcome, failure) = finish_case(&target, cfg, i, tree, first, started)?;
            run.stats.absorb(&outcome);
            progress(i);
            if failure.is_some() {
                run.failure = failure;
                run.elapsed = started.elapsed();
                return Ok(run);
            }
        }
        if ran < batch {
            // The budget ran out inside the batch.
            break;
        }
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

/// Case `i`, whose first run gave `first`: if it failed, shrink it (every
/// further run alone) into a [`GenFailure`]. Returns the first run's
/// outcome, which is what the run's statistics count.
fn finish_case<V: ValueTree<Value = GenCase>>(
    target: &Arc<dyn Target>,
    cfg: &GenConfig,
    i: u64,
    tree: V,
    first: (CaseOutcome, Instant),
    started: Instant,
) -> Result<(CaseOutcome, Option<GenFailure>), SetupError> {
    let drawn = tree.current();
    let state = RefCell::new(CaseState::default());
    let pre = RefCell::new(Some(first));
    // Whether `case` fails (as `cfg` counts failures); records the runs.
    let test = |case: GenCase| -> bool {
        let mut st = state.borrow_mut();
        let out_of_time = st
            .first
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() >= cfg.max_shrink_time);
        if st.setup_error.is_some() || out_of_time {
            return false;
        }
        st.runs += 1;
        let outcome = if st.runs == 1 {
            let (o, at) = pre.borrow_mut().take().expect("the first run is given");
            st.first = Some((o.clone(), at));
            o
        } else {
            match run_one_case(target, cfg, &case) {
                Ok(o) => o,
                Err(e) => {
                    st.setup_error = Some(e);
                    return false;
                }
            }
        };
        if !fails(cfg, &outcome) {
            return false;
        }
        // While shrinking, a simpler case counts as failing only if it
        // fails again: a failure that depends on timing outside the
        // schedule (the teardown's closes, the poll thread, a deadline)
        // would otherwise leave a minimal case that rarely replays.
        let mut outcome = outcome;
        if st.runs > 1 {
            for _ in 0..cfg.confirm {
                match run_one_case(target, cfg, &case) {
                    Ok(again) if fails(cfg, &again) => outcome = again,
                    Ok(_) => return false,
                    Err(e) => {
                        st.setup_error = Some(e);
                        return false;
                    }
                }
            }
        }
        st.last_failing = Some((case, outcome));
        true
    };
    let iters = if cfg.shrink { cfg.max_shrink_iters } else { 0 };
    let result = shrink(tree, &test, iters);
    let st = state.into_inner();
    if let Some(e) = st.setup_error {
        return Err(SetupError(format!("generated case {i}: {}", e.0)));
    }
    let (first, first_at) = st
        .first
        .ok_or_else(|| SetupError(format!("generated case {i} did not run")))?;
    let Some(minimal) = result else {
        return Ok((first, None));
    };
    let minimal_outcome = match st.last_failing {
        Some((c, o)) if c == minimal => o,
        _ => rerun_until_failing(target, cfg, &minimal, 5)?.unwrap_or_else(|| {
            // Shrinking ended on a case whose failure did not
            // repeat: keep the case as drawn.
            first.clone()
        }),
    };
    let (minimal, minimal_outcome) = if !fails(cfg, &minimal_outcome) {
        (drawn.clone(), first.clone())
    } else {
        (minimal, minimal_outcome)
    };
    let failure = GenFailure {
        case: i,
        elapsed: first_at.duration_since(started),
        original: drawn,
        original_found: first.found.clone(),
        minimal,
        minimal_outcome,
        shrink_runs: st.runs.saturating_sub(1),
        shrink_time: first_at.elapsed(),
    };
    Ok((first, Some(failure)))
}

/// Run `fails` on the tree's value and, if it fails, shrink it through
/// proptest's value tree: simplify while the simpler value still fails,
/// partly undo a simplification that passes. Unlike
/// `TestRunner::run_one`, a passing simplification that cannot be undone
/// does not end shrinking (with racy failures that happens early): the next
/// `simplify` moves on to another part of the case. Returns the last
/// failing value, or `None` if the first one passed.
pub fn shrink<V: ValueTree<Value = GenCase>>(
    mut tree: V,
    fails: &dyn Fn(GenCase) -> bool,
    max_iters: u32,
) -> Option<GenCase> {
    let first = tree.current();
    if !fails(first.clone()) {
        return None;
    }
    let mut minimal = first;
    let mut iters = 0u32;
    'simplify: while iters < max_iters && tree.simplify() {
        loop {
            iters += 1;
            let v = tree.current();
            if fails(v.clone()) {
                minimal = v;
                continue 'simplify;
            }
            if iters >= max_iters || !tree.complicate() {
                continue 'simplify;
            }
        }
    }
    Some(minimal)
}

/// Whether `o` is a failure as `cfg` counts them.
pub fn fails(cfg: &GenConfig, o: &CaseOutcome) -> bool {
    if cfg.fail_on.is_empty() {
        !o.found.is_empty()
    } else {
        o.found.iter().any(|f| cfg.fail_on.contains(&f.kind))
    }
}

fn rerun_until_failing(
    target: &Arc<dyn Target>,
    cfg: &GenConfig,
    case: &GenCase,
    tries: usize,
) -> Result<Option<CaseOutcome>, SetupError> {
    for _ in 0..tries {
        let o = run_one_case(target, cfg, case)?;
        if fails(cfg, &o) {
            return Ok(Some(o));
        }
    }
    Ok(None)
}

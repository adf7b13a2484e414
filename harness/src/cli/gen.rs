//! `harness run`'s generated cases: the flags, and running a variant with
//! them (see [`crate::gen`] and [`crate::run::run_with_generated`]).
//!
//! Generated cases run after the scenario files, within `--budget`, drawn
//! from `--seed` (case `i` of a run depends on the seed and `i` only, so a
//! run repeats exactly). The first failing case is shrunk, saved next to
//! the report as a scenario with its schedule, and the one command that
//! replays it is printed. With `--shard I/N`, shard I runs the generated
//! cases whose index is I-1 modulo N, so the shards together run each case
//! once.

use super::{progress_bar, shard::Shard, Failure};
use crate::report::Report;
use crate::run::{self, GenPlan, GeneratedFailure, RunConfig, Source};
use crate::target::{NetfdTarget, Target};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Generated cases `harness run` runs by default: a few seconds' worth, so
/// the default run stays well under a minute.
pub const DEFAULT_GENERATED: u64 = 4000;

#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Generated cases to run after the scenario files (within --budget).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_GENERATED)]
    pub generated: u64,
    /// Run no generated cases.
    #[arg(long)]
    pub no_generated: bool,
    /// Longest time spent shrinking a failing generated case.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration, default_value = "10s")]
    pub shrink_time: Duration,
}

impl GenArgs {
    /// The plan these flags ask for (`None`: no generated cases), for shard
    /// `shard` of a split run.
    pub fn plan(&self, shard: Option<Shard>) -> Option<GenPlan> {
        if self.no_generated || self.generated == 0 {
            return None;
        }
        let mut plan = GenPlan::new(self.generated);
        plan.max_shrink_time = self.shrink_time;
        plan.shard = shard.map(|s| (u64::from(s.index - 1), u64::from(s.count)));
        Some(plan)
    }
}

/// Run `sources` then the generated cases of `plan` against `variant`, and
/// write the report; returns it with its path and the shrunk failing
/// generated case, if any.
pub fn run_variant_generated(
    target: NetfdTarget,
    sources: &[Source],
    cfg: &RunConfig,
    plan: Option<&GenPlan>,
    report_dir: &Path,
) -> Result<(Report, PathBuf, Option<GeneratedFailure>), Failure> {
    let variant = target.options.variant;
    let target: Arc<dyn Target> = Arc::new(target);
    let generated = plan.map_or(0, |p| p.cases);
    let pb = progress_bar(sources.len() as u64 * cfg.cases + generated, variant.name());
    let progress = |name: &str, _case: u64| {
        pb.inc(1);
        pb.set_message(name.to_string());
    };
    let (report, failure) = run::run_with_generated(target, sources, cfg, plan, &progress)
        .map_err(|e| Failure::harness(e.to_string()))?;
    pb.finish_and_clear();
    let path = report
        .write_atomic(report_dir)
        .map_err(|e| Failure::bad_input(format!("cannot write report: {e}")))?;
    Ok((report, path, failure))
}

/// The lines that tell a person about the shrunk failing case.
pub fn failure_lines(f: &GeneratedFailure) -> String {
    let kinds: Vec<&str> = f.kinds.iter().map(|k| k.name()).collect();
    let (t0, o0) = f.original_size;
    let (t1, o1) = f.minimal_size;
    let mut out = format!(
        "generated case {} failed ({}); shrunk in {} runs from {t0} threads/{o0} ops to {t1} threads/{o1} ops\n",
        f.case,
        kinds.join(","),
        f.shrink_runs
    );
    if let Some(file) = &f.file {
        out.push_str(&format!("minimal case: {}\n", file.display()));
    }
    out.push_str(&format!("replay it:    {}\n", f.replay));
    out
}

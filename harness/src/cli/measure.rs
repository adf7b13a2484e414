//! `harness measure`: the numbers issue 5 asks for, measured on this
//! machine with generated cases. Not a test: nothing here asserts, and every
//! measurement is bounded by counts and time so it can run niced in the
//! background on a shared machine.
//!
//! - `throughput`: generated cases per second, controlled and free.
//! - `first`: for each historical variant and mode, cases and seconds to
//!   the first violation over many seeds (no shrinking), their medians, and
//!   the free/controlled ratio.
//! - `shrink`: find, shrink and save a minimal case per variant and seed;
//!   its size, and how many of N replays of the saved file reproduce it.
//! - `soak`: many generated cases against one variant (fdmutex: expect
//!   none to fail); stops at the first failure, shrinks and saves it.
//!
//! Output is Markdown tables on stdout (per-seed detail on stderr), ready to
//! paste into notes.

use super::{parse_duration, parse_variant, Failure, ModeArg, EXIT_CLEAN, EXIT_VIOLATIONS};
use crate::exec::{self, CaseConfig};
use crate::gen::{self, GenConfig, GenRun};
use crate::measure;
use crate::report::{Mode, ViolationKind};
use crate::run;
use crate::scenario;
use crate::target::{NetfdTarget, Target};
use clap::{Args, Subcommand, ValueEnum};
use netfd::Variant;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct MeasureArgs {
    #[command(subcommand)]
    pub what: Measure,
}

#[derive(Subcommand, Debug)]
pub enum Measure {
    /// Generated cases per second, controlled and free.
    Throughput(ThroughputArgs),
    /// Cases and seconds to the first violation per historical variant,
    /// controlled vs free, over many seeds.
    First(FirstArgs),
    /// Size of the shrunk minimal case, and how often its saved file
    /// reproduces on replay.
    Shrink(ShrinkArgs),
    /// Many generated cases against one variant (a one-off soak).
    Soak(SoakArgs),
    /// What the syscall interposer costs with no case running: a
    /// request/response loop through it vs straight to glibc, paired.
    Intercept(InterceptArgs),
}

#[derive(Args, Debug)]
pub struct InterceptArgs {
    /// Alternating rounds of each loop.
    #[arg(long, default_value_t = 101)]
    pub rounds: usize,
    /// 512-byte request/response round trips per round.
    #[arg(long, default_value_t = 2_000)]
    pub round_trips: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Modes {
    Controlled,
    Free,
    Both,
}

impl Modes {
    fn list(self) -> Vec<Mode> {
        match self {
            Modes::Controlled => vec![Mode::Controlled],
            Modes::Free => vec![Mode::Free],
            Modes::Both => vec![Mode::Controlled, Mode::Free],
        }
    }
}

#[derive(Args, Debug)]
pub struct ThroughputArgs {
    #[arg(long, value_parser = parse_variant, default_value = "fdmutex")]
    pub variant: Variant,
    /// Generated cases per mode.
    #[arg(long, default_value_t = 500)]
    pub cases: u64,
    #[arg(long, value_enum, default_value = "both")]
    pub mode: Modes,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub hang_bound: Duration,
    /// Cases run at once, a comma-separated list to compare (0: four per
    /// core; 1: one after another).
    #[arg(long, value_delimiter = ',', default_value = "1,0")]
    pub jobs: Vec<usize>,
    /// Where cases run, a comma-separated list to compare: `process`
    /// (worker processes, as `harness run` does) or `thread` (threads of
    /// this process, `--in-process`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "process,thread"
    )]
    pub isolation: Vec<Isolation>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    Process,
    Thread,
}

#[derive(Args, Debug)]
pub struct FirstArgs {
    /// Variants (default: every historical one).
    #[arg(long = "variant", value_parser = parse_variant)]
    pub variants: Vec<Variant>,
    /// Seeds per variant and mode: seed, seed+1, ...
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Give up on one seed after this many cases ...
    #[arg(long, default_value_t = 5000)]
    pub max_cases: u64,
    /// ... or this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub max_time: Duration,
    #[arg(long, value_enum, default_value = "both")]
    pub mode: Modes,
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub hang_bound: Duration,
    /// Count only violations of this kind (repeatable; default: any).
    #[arg(long = "kind", value_parser = parse_kind)]
    pub kinds: Vec<ViolationKind>,
    /// Cases run at once (0: four per core). Default 1: a historical
    /// variant's stale calls reach neighbouring cases' sockets, which would
    /// count their failures as the schedule's.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Controlled mode: PCT schedules instead of the generated ones.
    #[arg(long)]
    pub pct: bool,
}

fn parse_kind(s: &str) -> Result<ViolationKind, String> {
    ViolationKind::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = ViolationKind::ALL.iter().map(|k| k.name()).collect();
        format!(
            "unknown violation kind '{s}' (expected one of: {})",
            names.join(", ")
        )
    })
}

#[derive(Args, Debug)]
pub struct ShrinkArgs {
    /// Variants (default: every historical one).
    #[arg(long = "variant", value_parser = parse_variant)]
    pub variants: Vec<Variant>,
    /// Seeds per variant: seed, seed+1, ...
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replays of each saved minimal case.
    #[arg(long, default_value_t = 100)]
    pub replays: u64,
    /// Where the minimal cases are saved.
    #[arg(long, value_name = "DIR", default_value = "reports/measure-shrink")]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 5000)]
    pub max_cases: u64,
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub shrink_time: Duration,
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub hang_bound: Duration,
    /// Count only violations of this kind (repeatable; default: any).
    #[arg(long = "kind", value_parser = parse_kind)]
    pub kinds: Vec<ViolationKind>,
}

#[derive(Args, Debug)]
pub struct SoakArgs {
    #[arg(long, value_parser = parse_variant, default_value = "fdmutex")]
    pub variant: Variant,
    #[arg(long, default_value_t = 100_000)]
    pub cases: u64,
    #[arg(long, value_enum, default_value = "controlled")]
    pub mode: ModeArg,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this long whatever the count.
    #[arg(long, value_parser = parse_duration, default_value = "3h")]
    pub budget: Duration,
    /// Print a progress line every this many cases.
    #[arg(long, default_value_t = 5000)]
    pub every: u64,
    /// Where a failing case is saved.
    #[arg(long, value_name = "DIR", default_value = "reports/measure-soak")]
    pub dir: PathBuf,
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub hang_bound: Duration,
    /// Wait path (default: the variant's usual one).
    #[arg(long, value_enum, value_name = "PATH")]
    pub wait: Option<super::ReplayWaitArg>,
    /// Run the cases as threads of this process instead of in a worker
    /// process (as `harness run --in-process`).
    #[arg(long)]
    pub in_process: bool,
}

pub fn cmd_measure(a: MeasureArgs) -> Result<i32, Failure> {
    match a.what {
        Measure::Throughput(a) => throughput(a),
        Measure::First(a) => first(a),
        Measure::Shrink(a) => shrink(a),
        Measure::Soak(a) => soak(a),
        Measure::Intercept(a) => intercept(a),
    }
}

fn intercept(a: InterceptArgs) -> Result<i32, Failure> {
    let m = crate::intercept::measure::measure(a.rounds, a.round_trips)
        .map_err(|e| Failure::harness(format!("measure intercept: {e}")))?;
    println!(
        "| path | ns per 512-byte round trip (median of {} rounds x {}) |",
        m.rounds, m.round_trips
    );
    println!("|---|---:|");
    println!("| glibc send/recv (no interposer) | {:.0} |", m.direct_ns);
    println!("| interposer, no case running | {:.0} |", m.interposed_ns);
    let mut r = m.ratios.clone();
    r.sort_by(f64::total_cmp);
    let q = |p: usize| r.get(r.len() * p / 100).copied().unwrap_or(f64::NAN);
    println!(
        "ratio interposed/direct: {:.4} (median of per-round ratios; quartiles {:.4}..{:.4}){}",
        m.ratio(),
        q(25),
        q(75),
        if m.case_running {
            " [a case was running: not the idle path]"
        } else {
            ""
        }
    );
    Ok(EXIT_CLEAN)
}

fn target(v: Variant) -> Arc<dyn Target> {
    Arc::new(NetfdTarget::new(v))
}

fn historical(vs: &[Variant]) -> Vec<Variant> {
    if vs.is_empty() {
        Variant::ALL
            .into_iter()
            .filter(|v| !v.expected_clean())
            .collect()
    } else {
        vs.to_vec()
    }
}

fn generate(v: Variant, cfg: &GenConfig, every: u64) -> Result<GenRun, Failure> {
    generate_on(target(v), v, cfg, every)
}

fn generate_on(
    t: Arc<dyn Target>,
    v: Variant,
    cfg: &GenConfig,
    every: u64,
) -> Result<GenRun, Failure> {
    let started = Instant::now();
    let on_case = |i: u64| {
        if every > 0 && (i + 1) % every == 0 {
            let s = started.elapsed().as_secs_f64();
            eprintln!(
                "  {v} {}: {} cases, {s:.0} s, {:.1} cases/s",
                cfg.mode,
                i + 1,
                (i + 1) as f64 / s.max(1e-9)
            );
        }
    };
    gen::run_generated(t, cfg, &on_case).map_err(|e| Failure::harness(e.to_string()))
}

fn kinds_of(found: &[exec::Found]) -> String {
    let mut k: Vec<ViolationKind> = found.iter().map(|f| f.kind).collect();
    k.sort();
    k.dedup();
    k.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
}

fn throughput(a: ThroughputArgs) -> Result<i32, Failure> {
    let cores = measure::cores();
    let mut rows = Vec::new();
    // Alternate the settings round by round, so a change in the machine's
    // load hits all of them alike.
    let netfd_target = NetfdTarget::new(a.variant);
    for mode in a.mode.list() {
        for &jobs in &a.jobs {
            for &isolation in &a.isolation {
                let mut cfg = GenConfig::new(mode, a.seed, a.cases);
                cfg.hang_bound = a.hang_bound;
                cfg.jobs = jobs;
                cfg.workers = super::workers_for(&netfd_target, isolation == Isolation::Thread)?;
                let t = measure::throughput(target(a.variant), cfg)
                    .map_err(|e| Failure::harness(e.to_string()))?;
                rows.push((exec::parallel::jobs(jobs), isolation, t));
            }
        }
    }
    println!("| variant | mode | jobs | isolation | cases | seconds | cases/s | CPU % of {cores} cores | syscalls/case | failing |");
    println!("|---|---|---:|---|---:|---:|---:|---:|---:|---|");
    for (jobs, isolation, t) in &rows {
        let failing = match &t.failing {
            Some((case, kinds)) => {
                let k: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                format!("case {case} ({})", k.join(","))
            }
            None => "none".to_owned(),
        };
        println!(
            "| {} | {} | {jobs} | {isolation:?} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {failing} |",
            a.variant,
            t.mode,
            t.cases,
            t.elapsed.as_secs_f64(),
            t.cases_per_sec(),
            100.0 * t.cpu_share(cores),
            t.syscalls_checked as f64 / t.cases.max(1) as f64,
        );
    }
    println!();
    println!("Per case, milliseconds (↳: inside the phase above it):");
    println!();
    println!("{}", measure::BREAKDOWN_HEADER);
    for (jobs, _, t) in &rows {
        println!("{}", measure::breakdown_row(*jobs, t));
    }
    let failed = rows.iter().any(|(_, _, t)| t.failing.is_some());
    Ok(if failed { EXIT_VIOLATIONS } else { EXIT_CLEAN })
}

/// Median of `v` where `None` (not found within the limit) counts as larger
/// than every value; `None` if the median itself is not found.
fn median(v: &[Option<f64>]) -> Option<f64> {
    let mut found: Vec<f64> = v.iter().flatten().copied().collect();
    found.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return None;
    }
    // Lower median of the full list, censored values last.
    let k = (n - 1) / 2;
    found.get(k).copied()
}

fn fmt_median(m: Option<f64>, limit: &str, digits: usize) -> String {
    match m {
        Some(x) => format!("{x:.digits$}"),
        None => format!("> {limit}"),
    }
}

struct FirstRow {
    variant: Variant,
    mode: Mode,
    cases: Vec<Option<f64>>,
    secs: Vec<Option<f64>>,
    kinds: Vec<String>,
}

fn first(a: FirstArgs) -> Result<i32, Failure> {
    let mut rows: Vec<FirstRow> = Vec::new();
    for v in historical(&a.variants) {
        for mode in a.mode.list() {
            let mut row = FirstRow {
                variant: v,
                mode,
                cases: Vec::new(),
                secs: Vec::new(),
                kinds: Vec::new(),
            };
            for k in 0..a.seeds {
                let mut cfg = GenConfig::new(mode, a.seed + k, a.max_cases);
                cfg.budget = a.max_time;
                cfg.hang_bound = a.hang_bound;
                cfg.shrink = false;
                cfg.fail_on = a.kinds.clone();
                cfg.jobs = a.jobs;
                cfg.pct = a.pct;
                let r = generate(v, &cfg, 0)?;
                match &r.failure {
                    Some(f) => {
                        let kinds = kinds_of(&f.original_found);
                        eprintln!(
                            "{v} {mode} seed {}: first violation at case {} after {:.2} s ({kinds})",
                            a.seed + k,
                            f.case + 1,
                            f.elapsed.as_secs_f64()
                        );
                        if let Some(x) = f.original_found.first() {
                            eprintln!("    {}: {}", x.kind, x.message);
                        }
                        row.cases.push(Some((f.case + 1) as f64));
                        row.secs.push(Some(f.elapsed.as_secs_f64()));
                        row.kinds.push(kinds);
                    }
                    None => {
                        eprintln!(
                            "{v} {mode} seed {}: none in {} cases, {:.1} s",
                            a.seed + k,
                            r.stats.cases,
                            r.elapsed.as_secs_f64()
                        );
                        row.cases.push(None);
                        row.secs.push(None);
                    }
                }
            }
            rows.push(row);
        }
    }
    let limit_cases = a.max_cases.to_string();
    let limit_secs = format!("{:.0}", a.max_time.as_secs_f64());
    println!(
        "| variant | mode | seeds | found | median cases | median s | kinds at first violation |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for r in &rows {
        let mut kinds: Vec<&str> = r.kinds.iter().flat_map(|k| k.split(',')).collect();
        kinds.sort_unstable();
        kinds.dedup();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.variant,
            r.mode,
            r.cases.len(),
            r.cases.iter().flatten().count(),
            fmt_median(median(&r.cases), &limit_cases, 0),
            fmt_median(median(&r.secs), &limit_secs, 3),
            kinds.join(",")
        );
    }
    let both = a.mode == Modes::Both;
    if both {
        println!();
        println!("| variant | free/controlled (cases) | free/controlled (seconds) |");
        println!("|---|---:|---:|");
        for v in historical(&a.variants) {
            let get = |m: Mode| rows.iter().find(|r| r.variant == v && r.mode == m);
            let (Some(c), Some(f)) = (get(Mode::Controlled), get(Mode::Free)) else {
                continue;
            };
            let ratio = |num: Option<f64>, den: Option<f64>, limit: f64| match (num, den) {
                (Some(n), Some(d)) if d > 0.0 => format!("{:.1}x", n / d),
                (None, Some(d)) if d > 0.0 => format!("> {:.1}x", limit / d),
                _ => "n/a".to_owned(),
            };
            println!(
                "| {v} | {} | {} |",
                ratio(median(&f.cases), median(&c.cases), a.max_cases as f64),
                ratio(median(&f.secs), median(&c.secs), a.max_time.as_secs_f64()),
            );
        }
    }
    Ok(EXIT_CLEAN)
}

fn shrink(a: ShrinkArgs) -> Result<i32, Failure> {
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| Failure::bad_input(format!("{}: {e}", a.dir.display())))?;
    println!("| variant | seed | found at case | drawn (threads/ops) | minimal (threads/ops) | schedule | shrink runs | shrink s | reproduced | kinds |");
    println!("|---|---:|---:|---|---|---:|---:|---:|---:|---|");
    let mut summary = Vec::new();
    for v in historical(&a.variants) {
        let mut sizes = Vec::new();
        let (mut reproduced, mut replays) = (0u64, 0u64);
        for k in 0..a.seeds {
            let seed = a.seed + k;
            let mut cfg = GenConfig::new(Mode::Controlled, seed, a.max_cases);
            cfg.hang_bound = a.hang_bound;
            cfg.max_shrink_time = a.shrink_time;
            cfg.fail_on = a.kinds.clone();
            let r = generate(v, &cfg, 0)?;
            let Some(f) = r.failure else {
                println!("| {v} | {seed} | none in {} | | | | | | | |", r.stats.cases);
                continue;
            };
            let dir = a.dir.join(format!("{}-{seed}", v.name()));
            let saved = run::minimal_scenario(&f, v.name(), seed);
            let path = run::save_case(&dir, &saved, f.case, &f.replay_schedule())
                .map_err(|e| Failure::harness(e.to_string()))?;
            let (hits, _) = replay_file(v, &path, a.replays, a.hang_bound)?;
            reproduced += hits;
            replays += a.replays;
            let (t0, o0) = f.original.size();
            let (t1, o1) = f.minimal.size();
            sizes.push((t1, o1));
            println!(
                "| {v} | {seed} | {} | {t0}/{o0} | {t1}/{o1} | {} | {} | {:.1} | {hits}/{} | {} |",
                f.case + 1,
                f.replay_schedule().len(),
                f.shrink_runs,
                f.shrink_time.as_secs_f64(),
                a.replays,
                kinds_of(&f.minimal_outcome.found)
            );
            eprintln!("  saved {}", path.display());
        }
        summary.push((v, sizes, reproduced, replays));
    }
    println!();
    println!("| variant | minimal cases | median threads | median ops | largest (threads/ops) | replays reproduced |");
    println!("|---|---:|---:|---:|---|---:|");
    for (v, sizes, hits, total) in summary {
        let med = |f: &dyn Fn(&(usize, usize)) -> usize| {
            let mut x: Vec<usize> = sizes.iter().map(f).collect();
            x.sort_unstable();
            x.get(x.len().saturating_sub(1) / 2).copied()
        };
        let largest = sizes.iter().max_by_key(|s| (s.1, s.0));
        println!(
            "| {v} | {} | {} | {} | {} | {hits}/{total} ({:.1}%) |",
            sizes.len(),
            med(&|s| s.0).map_or("-".into(), |x| x.to_string()),
            med(&|s| s.1).map_or("-".into(), |x| x.to_string()),
            largest.map_or("-".into(), |s| format!("{}/{}", s.0, s.1)),
            100.0 * hits as f64 / total.max(1) as f64
        );
    }
    Ok(EXIT_CLEAN)
}

/// Replay a saved case `times` times as `harness replay` does; returns how
/// many runs found a violation, and the kinds of the first one that did.
pub fn replay_file(
    v: Variant,
    path: &std::path::Path,
    times: u64,
    hang_bound: Duration,
) -> Result<(u64, String), Failure> {
    let s = scenario::load_file(path).map_err(|e| Failure::harness(e.to_string()))?;
    let t = target(v);
    let mut hits = 0;
    let mut kinds = String::new();
    for i in 0..times {
        let mut cc = CaseConfig::new(Mode::Controlled, i);
        cc.hang_bound = hang_bound;
        cc.schedule = s.schedule.clone().unwrap_or_default();
        let o = exec::run_case(t.clone(), &s, &cc).map_err(|e| Failure::harness(e.to_string()))?;
        if !o.found.is_empty() {
            if hits == 0 {
                kinds = kinds_of(&o.found);
            }
            hits += 1;
        }
    }
    Ok((hits, kinds))
}

fn soak(a: SoakArgs) -> Result<i32, Failure> {
    let mode: Mode = a.mode.into();
    let mut cfg = GenConfig::new(mode, a.seed, a.cases);
    cfg.budget = a.budget;
    cfg.hang_bound = a.hang_bound;
    let netfd_target = NetfdTarget::with_wait(a.variant, a.wait.map(Into::into));
    cfg.workers = super::workers_for(&netfd_target, a.in_process)?;
    let t: Arc<dyn Target> = Arc::new(netfd_target);
    eprintln!(
        "soak: {} generated cases against {} ({mode}, {} wait path), seed {}, budget {:?}",
        a.cases,
        a.variant,
        t.wait_path().map_or("no", |w| w.name()),
        a.seed,
        a.budget
    );
    let r = generate_on(t, a.variant, &cfg, a.every)?;
    let secs = r.elapsed.as_secs_f64();
    let t = &r.stats.timings;
    eprintln!(
        "soak: slowest TCP dial {:?}; {} case(s) with a dial over the hang bound ({:?}) that returned within the kernel's SYN retransmissions",
        t.slowest_dial, t.slow_dials, a.hang_bound
    );
    eprintln!(
        "soak: the most times one op parked: {} (the busy-wait rule's laps floor is {})",
        t.most_parks,
        exec::busy::PARKS_FLOOR
    );
    println!(
        "| variant | mode | seed | cases | seconds | cases/s | syscalls checked | violations |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    let verdict = match &r.failure {
        Some(f) => {
            let saved = run::minimal_scenario(f, a.variant.name(), a.seed);
            let path = run::save_case(&a.dir, &saved, f.case, &f.replay_schedule())
                .map_err(|e| Failure::harness(e.to_string()))?;
            for v in &f.minimal_outcome.found {
                eprintln!("soak: {} on {} ({}): {}", v.kind, v.op, v.thread, v.message);
            }
            format!(
                "case {} failed ({}); minimal case {}",
                f.case,
                kinds_of(&f.minimal_outcome.found),
                path.display()
            )
        }
        None => "0".to_owned(),
    };
    println!(
        "| {} | {mode} | {} | {} | {secs:.0} | {:.1} | {} | {verdict} |",
        a.variant,
        a.seed,
        r.stats.cases,
        r.stats.cases as f64 / secs.max(1e-9),
        r.stats.syscalls_checked
    );
    Ok(if r.failure.is_some() {
        EXIT_VIOLATIONS
    } else {
        EXIT_CLEAN
    })
}

//! Shared by the criterion benches: one short configuration, and the ratio
//! lines printed after criterion has run.
//!
//! Every bench measures our figure and its baseline in the same group of the
//! same run, so machine noise hits both; the ratio is the figure to read. The
//! ratios come from criterion's own saved estimates
//! (`<target>/criterion/<group>/<function>/new/estimates.json`, the "typical"
//! value criterion prints: the slope when it has one, else the mean), and
//! only from files this process wrote, so a stale or filtered-out result is
//! never compared.
//!
//! On a shared machine the load changes from one second to the next, and
//! criterion measures one function after the other, seconds apart. So each
//! bench also runs a paired measurement ([`paired`]): many short rounds in
//! which every case runs once, in rotating order. Wall time includes the
//! time another process held the CPU; a short round often escapes that, so
//! the least disturbed rounds (10th percentile of each case's per-round time)
//! give the headline ratio. The median of the per-round ratios and its
//! interquartile range are printed beside it, and, where a case used enough
//! CPU to read it from `/proc/self/stat`, the process CPU time per
//! iteration: for the thread-heavy TCP benches that is the figure load
//! barely moves. When the machine is busy the paired figures are the ones to
//! trust.
//!
//! A filter argument (`cargo bench --bench tcp -- tcp_persistent`) skips
//! whole groups, fixtures and paired rounds included ([`selected`]).

#![allow(dead_code)] // each bench uses a different subset

use criterion::Criterion;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

/// Short runs: `cargo bench -p netfd` must fit in a few minutes on 2 cores.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
        .configure_from_args()
}

/// Whether the binary runs as a benchmark (`cargo bench`) rather than as a
/// smoke test (`cargo test --benches`, which passes no `--bench`).
pub fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Whether `group` runs: with a filter argument (`cargo bench --bench tcp --
/// persistent`) only groups whose name contains one of the filters run, so
/// their fixtures and paired rounds are skipped too, not only criterion's
/// part.
pub fn selected(group: &str) -> bool {
    // Criterion's options that take a value, which is not a filter.
    const WITH_VALUE: &[&str] = &[
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--profile-time",
        "--color",
        "--format",
        "--output-format",
        "--plotting-backend",
        "-s",
        "-b",
        "-c",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            filters.push(a);
        }
    }
    filters.is_empty() || filters.iter().any(|f| group.contains(f.as_str()))
}

/// Where criterion keeps its results, found the way criterion finds it.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench binary is <target>/<profile>/deps/<name>-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// `"<key>":{ ... "point_estimate":<number>` in criterion's estimates.json.
fn point_estimate(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":{{"))?;
    let rest = &json[at..];
    let p = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let num: String = rest[p..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    num.parse().ok()
}

/// Criterion's typical and median estimates (ns) for `group/function`, if
/// this run (started at `since`) wrote them.
pub fn estimate(group: &str, function: &str, since: SystemTime) -> Option<(f64, f64)> {
    let path = criterion_home()
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let json = std::fs::read_to_string(&path).ok()?;
    let typical = point_estimate(&json, "slope").or_else(|| point_estimate(&json, "mean"))?;
    let median = point_estimate(&json, "median")?;
    Some((typical, median))
}

/// One comparison to print: `ours` against `baseline` in `group`.
pub struct Ratio {
    pub group: &'static str,
    pub ours: &'static str,
    pub baseline: &'static str,
    /// Target for ours/baseline, if the issue sets one.
    pub target: Option<f64>,
}

pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Print one line per comparison to stderr, after criterion's own output.
pub fn print_ratios(since: SystemTime, ratios: &[Ratio]) {
    if !bench_mode() {
        return;
    }
    eprintln!();
    eprintln!("== paired ratios (ours / baseline, median of interleaved rounds) ==");
    for line in PAIRED.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        eprintln!("{line}");
    }
    eprintln!("== ratios (ours / baseline, criterion's typical estimate; median in brackets) ==");
    for r in ratios {
        let (Some(ours), Some(base)) = (
            estimate(r.group, r.ours, since),
            estimate(r.group, r.baseline, since),
        ) else {
            eprintln!(
                "ratio {}: {} / {} = n/a (not measured in this run)",
                r.group, r.ours, r.baseline
            );
            continue;
        };
        let ratio = ours.0 / base.0;
        let verdict = match r.target {
            Some(t) if ratio <= t => format!("; target <= {t:.2}: met"),
            Some(t) => format!("; target <= {t:.2}: MISSED"),
            None => String::new(),
        };
        eprintln!(
            "ratio {}: {} / {} = {:.3} [{:.3}] ({} vs {}{})",
            r.group,
            r.ours,
            r.baseline,
            ratio,
            ours.1 / base.1,
            fmt_ns(ours.0),
            fmt_ns(base.0),
            verdict
        );
    }
}

/// Print an absolute target check (for figures whose target is a time).
pub fn print_absolute(since: SystemTime, group: &str, function: &str, target_ns: f64) {
    if !bench_mode() {
        return;
    }
    match estimate(group, function, since) {
        Some((typical, median)) => eprintln!(
            "absolute {group}/{function} = {} [median {}]; target < {}: {}",
            fmt_ns(typical),
            fmt_ns(median),
            fmt_ns(target_ns),
            if typical < target_ns { "met" } else { "MISSED" }
        ),
        None => eprintln!("absolute {group}/{function} = n/a (not measured in this run)"),
    }
}

/// A case of a paired measurement: runs `iters` iterations, returns the time.
pub type Case<'a> = (&'static str, &'a (dyn Fn(u64) -> Duration + Sync));

/// Iterations for `f` to take about `target` (at least 1).
pub fn calibrate(f: &dyn Fn(u64) -> Duration, target: Duration) -> u64 {
    let mut iters = 1u64;
    loop {
        let t = f(iters);
        if t >= target / 8 || iters >= 1 << 40 {
            let scaled = iters as f64 * target.as_secs_f64() / t.as_secs_f64().max(1e-9);
            return (scaled as u64).max(1);
        }
        iters *= 2;
    }
}

/// The `p` quantile (0..=1) of `v`, nearest rank.
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// What [`paired`] measured.
pub struct Paired {
    /// Wall ns per iteration, `[case][round]`.
    pub wall: Vec<Vec<f64>>,
    /// Process CPU ns per iteration over all rounds of a case (all threads,
    /// from `/proc/self/stat`), if it was readable.
    pub cpu: Vec<Option<f64>>,
    /// Process CPU ns over all rounds of a case.
    pub cpu_total: Vec<Option<f64>>,
}

/// CPU time the whole process has used (user + system, every thread,
/// exited ones included). `/proc/self/stat` counts in USER_HZ (100/s on
/// Linux), so a single reading is only good to 10 ms: sum many rounds.
fn process_cpu_ns() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may contain spaces: state is
    // field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1e7)
}

/// Run every case `rounds` times, interleaved (the order rotates each
/// round), `iters` iterations each time, calibrated on the first case to
/// `round_time`. In test mode one tiny round runs, as a smoke test.
pub fn paired(cases: &[Case<'_>], rounds: usize, round_time: Duration) -> Paired {
    let (rounds, iters) = if bench_mode() {
        (rounds, calibrate(cases[0].1, round_time))
    } else {
        (1, 1)
    };
    let mut wall = vec![Vec::with_capacity(rounds); cases.len()];
    let mut cpu = vec![Some(0.0); cases.len()];
    for r in 0..rounds {
        for k in 0..cases.len() {
            let i = (r + k) % cases.len();
            let c0 = process_cpu_ns();
            let t = (cases[i].1)(iters);
            let c1 = process_cpu_ns();
            wall[i].push(t.as_nanos() as f64 / iters as f64);
            cpu[i] = match (cpu[i], c0, c1) {
                (Some(sum), Some(a), Some(b)) => Some(sum + (b - a)),
                _ => None,
            };
        }
    }
    let total_iters = (rounds as u64 * iters) as f64;
    Paired {
        wall,
        cpu: cpu.iter().map(|c| c.map(|c| c / total_iters)).collect(),
        cpu_total: cpu,
    }
}

/// Paired result lines, printed at the end with the criterion ratios.
static PAIRED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Record the paired comparisons `(ours, baseline, target)`, by case index.
/// The CPU ratio is printed only where each case used at least 0.3 s of CPU
/// (the clock it comes from ticks at 10 ms).
pub fn record_paired(
    group: &str,
    cases: &[Case<'_>],
    paired: &Paired,
    comparisons: &[(usize, usize, Option<f64>)],
) {
    if !bench_mode() {
        return;
    }
    let times = &paired.wall;
    for &(o, b, target) in comparisons {
        let (po, pb) = (percentile(&times[o], 0.1), percentile(&times[b], 0.1));
        let ratio = po / pb;
        let ratios: Vec<f64> = times[o].iter().zip(&times[b]).map(|(x, y)| x / y).collect();
        let verdict = match target {
            Some(t) if ratio <= t => format!("; target <= {t:.2}: met"),
            Some(t) => format!("; target <= {t:.2}: MISSED"),
            None => String::new(),
        };
        let enough = |i: usize| paired.cpu_total[i].is_some_and(|c| c >= 3e8);
        let cpu = match (paired.cpu[o], paired.cpu[b]) {
            (Some(co), Some(cb)) if enough(o) && enough(b) => format!(
                "; CPU per iteration {} vs {} = {:.3}",
                fmt_ns(co),
                fmt_ns(cb),
                co / cb
            ),
            _ => String::new(),
        };
        let line = format!(
            "paired {group}: {} / {} = {ratio:.3} (p10 {} vs {}{verdict}); \
             median of {} round ratios {:.3}, IQR {:.2}..{:.2}{cpu}",
            cases[o].0,
            cases[b].0,
            fmt_ns(po),
            fmt_ns(pb),
            ratios.len(),
            percentile(&ratios, 0.5),
            percentile(&ratios, 0.25),
            percentile(&ratios, 0.75),
        );
        PAIRED.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

/// Time `iters` calls of `f`.
pub fn time_loop(iters: u64, mut f: impl FnMut()) -> Duration {
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
    }
    t0.elapsed()
}

/// Run `f(i)` on `n` fresh threads released together by a barrier; the wall
/// time from the first thread's start to the last one's finish. Thread
/// creation is outside the timed span (under load it can take milliseconds,
/// which a short round would otherwise charge to the case).
pub fn run_parallel(n: usize, f: impl Fn(usize) + Sync) -> Duration {
    let start = std::sync::Barrier::new(n);
    let (f, start) = (&f, &start);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    f(i);
                    (t0, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench thread panicked"))
            .collect()
    });
    let first = spans.iter().map(|s| s.0).min().expect("n > 0");
    let last = spans.iter().map(|s| s.1).max().expect("n > 0");
    last.saturating_duration_since(first)
}

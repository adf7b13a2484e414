//! Measurements of the harness itself (`harness measure`): how many cases
//! a second it runs, where a case's time goes, how much of the machine it
//! uses. Not tests: nothing here asserts; the CLI prints what it returns.
//!
//! Throughput is measured on generated cases (the default generator), the
//! same cases `harness run` runs after the scenario files; CPU is the
//! process's user + system time over the run (`/proc/self/stat`), so
//! `cpu / (wall × cores)` says how much of the machine the run kept busy.

use crate::exec::{CaseTimings, SetupError};
use crate::gen::{self, GenConfig};
use crate::report::{Mode, ViolationKind};
use crate::target::Target;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One mode's throughput figures.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub mode: Mode,
    pub cases: u64,
    pub elapsed: Duration,
    /// Process CPU (user + system) spent over the run.
    pub cpu: Duration,
    pub syscalls_checked: u64,
    /// Summed over the cases.
    pub timings: CaseTimings,
    /// The first failing case and its kinds (none expected for fdmutex).
    pub failing: Option<(u64, Vec<ViolationKind>)>,
}

impl Throughput {
    pub fn cases_per_sec(&self) -> f64 {
        self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// CPU used as a share of `cores` cores over the run's wall time.
    pub fn cpu_share(&self, cores: usize) -> f64 {
        self.cpu.as_secs_f64() / (self.elapsed.as_secs_f64() * cores.max(1) as f64).max(1e-9)
    }
}

/// Run `cfg`'s generated cases against `target` (no shrinking) and measure.
/// With worker processes, their CPU counts too: the workers are reaped
/// (once `cfg` held their last handle) before the CPU is read.
pub fn throughput(target: Arc<dyn Target>, mut cfg: GenConfig) -> Result<Throughput, SetupError> {
    cfg.shrink = false;
    let cpu0 = process_cpu();
    let started = Instant::now();
    let r = gen::run_generated(target, &cfg, &|_| {})?;
    drop(cfg.workers.take());
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu0);
    let failing = r.failure.as_ref().map(|f| {
        let mut k: Vec<ViolationKind> = f.original_found.iter().map(|x| x.kind).collect();
        k.sort();
        k.dedup();
        (f.case, k)
    });
    Ok(Throughput {
        mode: cfg.mode,
        cases: r.stats.cases,
        elapsed,
        cpu,
        syscalls_checked: r.stats.syscalls_checked,
        timings: r.stats.timings,
        failing,
    })
}

/// Cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// User + system CPU of this process and of its children it has reaped
/// (worker processes) so far (zero if `/proc` is missing).
pub fn process_cpu() -> Duration {
    // Fields 14 and 15 of /proc/self/stat, in USER_HZ (100 on Linux) ticks;
    // the command name (field 2) may hold spaces, so count after its ')'.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    // After ')': field 3 is index 0, so utime (14) is 11, stime (15) 12,
    // and the reaped children's cutime (16) and cstime (17) 13 and 14.
    Duration::from_millis((ticks(11) + ticks(12) + ticks(13) + ticks(14)) * 10)
}

/// Milliseconds per case of `d` summed over `cases`.
pub fn per_case_ms(d: Duration, cases: u64) -> f64 {
    d.as_secs_f64() * 1e3 / cases.max(1) as f64
}

/// The breakdown table's row for `t`: per-case milliseconds of each phase
/// and wait, and how often each fallback fired.
pub fn breakdown_row(jobs: usize, t: &Throughput) -> String {
    let n = t.cases;
    let ms = |d: Duration| format!("{:.2}", per_case_ms(d, n));
    let x = &t.timings;
    format!(
        "| {} | {jobs} | {} | {} | {} | {} | {} | {} | {} | {} ({}) | {} ({}) | {} | {} |",
        t.mode,
        ms(x.total()),
        ms(x.setup),
        ms(x.run),
        ms(x.deadline_wait),
        ms(x.settle_wait),
        ms(x.teardown),
        ms(x.finish),
        ms(x.stall_wait),
        x.stall_fallbacks,
        ms(x.blocked_wait),
        x.blocked_takeovers,
        x.stuck_seen,
        x.stuck_fallbacks,
    )
}

/// The header of [`breakdown_row`]'s table.
pub const BREAKDOWN_HEADER: &str = "| mode | jobs | ms/case | setup | run | ↳ deadline wait | ↳ settle wait | teardown | finish | ↳ stall take-over (count) | ↳ blocked take-over (count) | stuck seen by the kernel | stuck fallbacks |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

//! The terminal summary: readable in five seconds.
//!
//! ```text
//! netfd-harness  naive-close  controlled  seed 42  1.234s  Linux 6.1.0 (2 cpus)
//!   PASS  close_parked_read_tcp4  100 cases  2400 syscalls
//!   FAIL  double_close             50 cases   900 syscalls  2 violations: fd_reuse, hang
//! violations:
//!   1. fd_reuse  double_close  fd 7  owner #12  holder #15  op read conn=0 bytes=64  thread reader  case 17  seed 42
//!      read(7) for #12 reached #15's socket
//!      evidence: inode 1001 (owner #12) vs inode 1002 (now #15)
//!      replay: harness replay reports/cases/x.json --variant naive-close
//!   2. hang  double_close  fd -  owner #12  op read conn=0 bytes=64  thread reader  case 18  seed 7
//!      read did not return within 2s after Close
//!      replay: harness replay reports/cases/y.json --variant naive-close
//! FAIL  150 cases  3300 syscalls  2 violations in 1 of 2 scenarios
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Report, ScenarioReport, Violation};

/// Violations listed in full; the rest are counted (the JSON has them all).
pub const MAX_LISTED: usize = 20;

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn pass(&self) -> String {
        self.paint("1;32", "PASS")
    }
    fn fail(&self) -> String {
        self.paint("1;31", "FAIL")
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn kind(&self, s: &str) -> String {
        self.paint("1;33", s)
    }
}

/// Control characters in recorded text (messages can quote payloads) are
/// shown escaped, so they cannot ring bells or recolour the terminal.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

fn fd_text(fd: i32) -> String {
    if fd < 0 {
        "-".to_owned()
    } else {
        fd.to_string()
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn kinds_line(s: &ScenarioReport) -> String {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for v in &s.violations {
        *counts.entry(v.kind.name()).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(k, n)| {
            if n == 1 {
                k.to_owned()
            } else {
                format!("{k} x{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn violation_lines(out: &mut String, st: &Style, n: usize, s: &ScenarioReport, v: &Violation) {
    let mut head = format!(
        "  {n}. {}  {}  fd {}  owner #{}",
        st.kind(v.kind.name()),
        clean(&s.name),
        fd_text(v.fd),
        v.owner
    );
    if let Some(h) = v.holder {
        let _ = write!(head, "  holder #{h}");
    }
    let _ = write!(
        head,
        "  op {}  thread {}  case {}  seed {}",
        clean(&v.op),
        clean(&v.thread),
        v.case,
        v.seed
    );
    let _ = writeln!(out, "{head}");
    if !v.message.is_empty() {
        let _ = writeln!(out, "     {}", clean(&v.message));
    }
    if let Some(e) = &v.evidence {
        let _ = writeln!(out, "     {}", st.dim(&format!("evidence: {}", clean(e))));
    }
    let replay = if v.replay.is_empty() {
        "(no replay command recorded)".to_owned()
    } else {
        clean(&v.replay)
    };
    let _ = writeln!(out, "     replay: {}", st.bold(&replay));
}

/// Render `report` for a terminal; `color` adds ANSI colours.
pub fn render(report: &Report, color: bool) -> String {
    let st = Style { color };
    let mut out = String::new();
    // The run's dimensions: mode, wait path, shard (when there are some).
    let mut dims = report.mode.to_string();
    if let Some(w) = report.wait {
        dims.push_str(&format!("  {w}"));
    }
    if let Some(s) = report.shard {
        dims.push_str(&format!("  shard {s}"));
    }
    if let Some(m) = &report.missing_shards {
        dims.push_str(&format!("  PARTIAL ({m})"));
    }
    let _ = writeln!(
        out,
        "netfd-harness  {}  {dims}  seed {}  {}.{:03}s  {} {} ({} cpus)",
        st.bold(&clean(&report.variant)),
        report.seed,
        report.duration_ms / 1000,
        report.duration_ms % 1000,
        report.host.os,
        report.host.kernel,
        report.host.cpus
    );
    let rows: Vec<(&ScenarioReport, String, String)> = report
        .scenarios
        .iter()
        .map(|s| {
            (
                s,
                plural(s.cases, "case", "cases"),
                plural(s.syscalls_checked, "syscall", "syscalls"),
            )
        })
        .collect();
    let width = |f: &dyn Fn(&(&ScenarioReport, String, String)) -> usize| {
        rows.iter().map(f).max().unwrap_or(0)
    };
    let (wn, wc, ws) = (
        width(&|r| r.0.name.chars().count()),
        width(&|r| r.1.len()),
        width(&|r| r.2.len()),
    );
    for (s, cases, syscalls) in &rows {
        let verdict = if s.passed() { st.pass() } else { st.fail() };
        let mut line = format!(
            "  {verdict}  {:<wn$}  {cases:>wc$}  {syscalls:>ws$}",
            clean(&s.name)
        );
        if !s.violations.is_empty() {
            let _ = write!(
                line,
                "  {}: {}",
                plural(s.violations.len() as u64, "violation", "violations"),
                kinds_line(s)
            );
        }
        let _ = writeln!(out, "{line}");
    }
    let total = report.violations().count();
    if total > 0 {
        let _ = writeln!(out, "violations:");
        for (i, (s, v)) in report.violations().take(MAX_LISTED).enumerate() {
            violation_lines(&mut out, &st, i + 1, s, v);
        }
        if total > MAX_LISTED {
            let _ = writeln!(
                out,
                "  ... and {} more in the JSON report",
                total - MAX_LISTED
            );
        }
    }
    let failing = report.scenarios.iter().filter(|s| !s.passed()).count();
    let verdict = if report.summary.passed {
        st.pass()
    } else {
        st.fail()
    };
    let _ = writeln!(
        out,
        "{verdict}  {}  {}  {} in {failing} of {} scenarios",
        plural(report.summary.cases, "case", "cases"),
        plural(report.summary.syscalls_checked, "syscall", "syscalls"),
        plural(report.summary.violations, "violation", "violations"),
        report.scenarios.len()
    );
    out
}

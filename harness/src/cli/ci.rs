//! The commands that work on finished reports, for CI: `merge` (combine the
//! reports of `--shard` runs), `report` (terminal summary, HTML page, JUnit
//! XML) and `verdict` (the gate's pass/fail decision, see
//! [`crate::report::verdict`]).
//!
//! Each takes report files or directories (a directory means the `*.json`
//! files directly in it, in name order). Every input is checked against
//! `reports/schema.json` before anything is written, so a truncated or
//! foreign file is a one-line error (exit 2), never half a merge.

use super::{Failure, EXIT_CLEAN, EXIT_VIOLATIONS};
use crate::report::{self, schema, verdict, Report};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Shard reports (files or directories). Reports of different variants
    /// or modes are merged separately, one output report each.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// Directory for the merged report(s).
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub out: PathBuf,
    /// Also write JUnit XML for the merged report(s) here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Merge even when shards are missing: the merged report names them
    /// (`missing_shards`) and `harness verdict` fails it. Without this, a
    /// missing shard is an error (exit 2) and nothing is written.
    #[arg(long)]
    pub allow_missing: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Report files or directories.
    #[arg(required = true, value_name = "FILE")]
    pub reports: Vec<PathBuf>,
    /// Write a self-contained HTML page here (one section per report).
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerdictArgs {
    /// Reports of one `harness matrix` (files or directories; shards of the
    /// same variant are merged): fdmutex must be clean and every historical
    /// variant present and caught.
    #[arg(long = "matrix", value_name = "PATH")]
    pub matrix: Vec<PathBuf>,
    /// Reports of `harness run`: each must be clean if its variant is
    /// expected clean, caught otherwise.
    #[arg(long = "run", value_name = "PATH")]
    pub runs: Vec<PathBuf>,
}

/// The report files named by `paths`: files as given, directories expanded
/// to the `*.json` files directly in them, sorted by name.
pub fn report_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Failure> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p)
                .map_err(|e| Failure::bad_input(format!("{}: {e}", p.display())))?;
            let mut found: Vec<PathBuf> = Vec::new();
            for e in entries {
                let e = e.map_err(|e| Failure::bad_input(format!("{}: {e}", p.display())))?;
                let path = e.path();
                if path.is_file() && path.extension().is_some_and(|x| x == "json") {
                    found.push(path);
                }
            }
            if found.is_empty() {
                return Err(Failure::bad_input(format!(
                    "{}: no report (*.json) in this directory",
                    p.display()
                )));
            }
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(Failure::bad_input(format!(
                "{}: no such file or directory",
                p.display()
            )));
        }
    }
    Ok(out)
}

/// Read and schema-check every report named by `paths`.
pub fn read_reports(paths: &[PathBuf]) -> Result<Vec<verdict::Input>, Failure> {
    let files = report_files(paths)?;
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        schema::validate_report_file(&f)
            .map_err(|e| Failure::bad_input(format!("not a harness report: {e}")))?;
        let input = verdict::Input::read(&f).map_err(|e| Failure::bad_input(e.to_string()))?;
        out.push(input);
    }
    Ok(out)
}

pub fn cmd_merge(a: MergeArgs) -> Result<i32, Failure> {
    let inputs = read_reports(&a.reports)?;
    super::check_report_dir(&a.out)?;
    // A shard given twice would count its cases twice.
    for (i, x) in inputs.iter().enumerate() {
        if let Some(y) = inputs[..i].iter().find(|y| y.report == x.report) {
            return Err(Failure::bad_input(format!(
                "{} and {} are the same report: each shard must be given once",
                y.path.display(),
                x.path.display()
            )));
        }
    }
    let mut groups: Vec<Vec<&verdict::Input>> = Vec::new();
    for i in &inputs {
        match groups.iter_mut().find(|g| {
            g[0].report.variant == i.report.variant
                && g[0].report.mode == i.report.mode
                && g[0].report.wait == i.report.wait
        }) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    // Merge everything before writing anything: bad input writes nothing.
    let mut merged = Vec::with_capacity(groups.len());
    for g in &groups {
        if let Some(other) = g.iter().find(|i| i.report.seed != g[0].report.seed) {
            return Err(Failure::bad_input(format!(
                "cannot merge {} shards with different seeds ({} in {}, {} in {}): give every shard the same --seed",
                g[0].report.variant,
                g[0].report.seed,
                g[0].path.display(),
                other.report.seed,
                other.path.display()
            )));
        }
        let paths = || {
            g.iter()
                .map(|i| i.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let r = Report::merge(g.iter().map(|i| i.report.clone()).collect())
            .map_err(|e| Failure::bad_input(format!("{e} (in {})", paths())))?;
        if let Some(m) = &r.missing_shards {
            if !a.allow_missing {
                return Err(Failure::bad_input(format!(
                    "cannot merge {}: {m} (merged: {}); run them, or pass --allow-missing to write a partial report",
                    r.dimensions(),
                    paths()
                )));
            }
        }
        merged.push((g.len(), r));
    }
    if let Some(j) = &a.junit {
        let reports: Vec<Report> = merged.iter().map(|(_, r)| r.clone()).collect();
        report::junit::write(&reports, j).map_err(|e| {
            Failure::bad_input(format!("cannot write JUnit XML {}: {e}", j.display()))
        })?;
    }
    for (n, r) in &merged {
        let path = r
            .write_atomic(&a.out)
            .map_err(|e| Failure::bad_input(format!("cannot write report: {e}")))?;
        let partial = r
            .missing_shards
            .as_ref()
            .map(|m| format!(" (PARTIAL: {m})"))
            .unwrap_or_default();
        println!(
            "merged {n} report{} of {}: {} {} cases, {} violations{partial} -> {}",
            if *n == 1 { "" } else { "s" },
            r.dimensions(),
            if r.summary.passed { "PASS" } else { "FAIL" },
            r.summary.cases,
            r.summary.violations,
            path.display()
        );
    }
    Ok(EXIT_CLEAN)
}

pub fn cmd_report(a: ReportArgs) -> Result<i32, Failure> {
    let inputs = read_reports(&a.reports)?;
    let reports: Vec<Report> = inputs.iter().map(|i| i.report.clone()).collect();
    if let Some(out) = &a.html {
        report::html::write(&reports, out)
            .map_err(|e| Failure::bad_input(format!("cannot write HTML {}: {e}", out.display())))?;
        println!("html: {}", out.display());
    }
    if let Some(j) = &a.junit {
        report::junit::write(&reports, j).map_err(|e| {
            Failure::bad_input(format!("cannot write JUnit XML {}: {e}", j.display()))
        })?;
        println!("junit: {}", j.display());
    }
    if a.html.is_none() && a.junit.is_none() {
        let color = std::io::stdout().is_terminal();
        for i in &inputs {
            println!("{}:", i.path.display());
            print!("{}", report::summary::render(&i.report, color));
        }
    }
    Ok(EXIT_CLEAN)
}

pub fn cmd_verdict(a: VerdictArgs) -> Result<i32, Failure> {
    if a.matrix.is_empty() && a.runs.is_empty() {
        return Err(Failure::bad_input(
            "verdict needs reports: --matrix PATH and/or --run PATH",
        ));
    }
    let matrix = read_reports(&a.matrix)?;
    let runs = read_reports(&a.runs)?;
    let v = verdict::judge(&matrix, &runs).map_err(Failure::bad_input)?;
    print!("{}", v.details());
    if v.passed() {
        println!("verdict: {}", v.reason());
        Ok(EXIT_CLEAN)
    } else {
        // The one line CI shows, on stderr; stdout has the table above.
        eprintln!("verdict: FAIL: {}", v.reason());
        Ok(EXIT_VIOLATIONS)
    }
}

//! The HTML report: one self-contained page for one or more run reports.
//!
//! Invariants the page keeps (the browser test in `tests/html_report.rs`
//! checks them in Chromium):
//! - Self-contained: inline CSS, no scripts, no fonts, images or links to
//!   anything outside the page; a Content-Security-Policy of
//!   `default-src 'none'` makes the browser refuse any fetch, so the page
//!   opens the same offline, from a CI artifact or from a mail attachment.
//! - Every recorded string (scenario names, messages, thread names, payload
//!   quotes) is escaped: a report cannot inject markup.
//! - Per report, a summary table (`table.summary`) with exactly one body row
//!   (`tr.scenario`) per scenario and one column per assertion; a failed
//!   cell links to the first violation of its kind in that scenario.
//! - Per violation, a `section.violation` with its one-line message, the
//!   replay command (`code.replay`) and the interleaving as lanes
//!   (`table.lanes`): one column per thread, events in order down the page,
//!   the violating event's row `tr.marked` (the last event of the trace,
//!   as in [`Lanes`]).

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use super::lanes::Lanes;
use super::verdict::Expect;
use super::{Report, ScenarioReport, Violation, ViolationKind};

/// Escape text for HTML content and double- or single-quoted attributes.
/// Control characters other than newline and tab are shown as `\u{..}`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #cf222e; --fail-bg: #ffebe9;
        --line: #d0d7de; --dim: #57606a; --mark: #fff8c5; --code: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       padding: 1.5rem; max-width: 1600px; color: #1f2328; background: #fff; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; display: flex; gap: .6rem; align-items: center; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
code, pre, .lanes td, .lanes th { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
.badge { border-radius: 1rem; padding: .05rem .6rem; font-size: .85rem; font-weight: 600; }
.badge.pass { background: var(--pass-bg); color: var(--pass); }
.badge.fail { background: var(--fail-bg); color: var(--fail); }
.meta { color: var(--dim); margin: 0 0 .8rem; }
table { border-collapse: collapse; }
.summary th, .summary td { border: 1px solid var(--line); padding: .2rem .4rem; }
.summary thead th { background: var(--code); font-weight: 600; font-size: 12px; }
.summary tbody th { text-align: left; font-weight: 500; white-space: nowrap; }
.summary tbody th small { display: block; color: var(--dim); font-weight: 400; }
.summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary td.cell { text-align: center; font-weight: 600; white-space: nowrap; }
.summary td.cell small { font-weight: 400; color: var(--dim); margin-left: .3rem; }
.summary td.pass { color: var(--pass); background: var(--pass-bg); }
.summary td.fail { color: var(--fail); background: var(--fail-bg); }
.summary td.fail a { color: inherit; }
.violation { border: 1px solid var(--line); border-left: 4px solid var(--fail); border-radius: 6px;
             padding: .2rem 1rem 1rem; margin: 1rem 0; }
.violation .message { margin: .2rem 0 .6rem; }
.violation dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; margin: 0 0 .6rem; }
.violation dt { color: var(--dim); }
.violation dd { margin: 0; }
.replay-box { display: flex; gap: .6rem; align-items: baseline; background: var(--code);
          border: 1px solid var(--line); border-radius: 6px; padding: .4rem .6rem; margin: .4rem 0 .8rem; }
.replay-box span { color: var(--dim); font-weight: 600; }
.replay-box code { user-select: all; word-break: break-all; }
.scroll { overflow-x: auto; }
.lanes th, .lanes td { border: 1px solid var(--line); padding: .15rem .5rem; vertical-align: top; }
.lanes thead th { background: var(--code); position: sticky; top: 0; }
.lanes td.seq { color: var(--dim); text-align: right; }
.lanes td.ev { background: #f0f6ff; }
.lanes tr.marked td { background: var(--mark); }
.lanes tr.marked td.ev { background: var(--fail-bg); color: var(--fail); font-weight: 700;
                         outline: 2px solid var(--fail); outline-offset: -2px; }
.lanes tr.marked td.ev::after { content: "  \25C0 violation"; font-weight: 400; }
details { margin: .4rem 0; }
.none { color: var(--dim); }
"#;

/// A report's badge: (css class, text, as expected). A historical
/// variant's violations are what the matrix expects, so they are not shown
/// as a failure; a historical variant without any is.
fn badge(r: &Report) -> (&'static str, &'static str, bool) {
    match (Expect::for_variant(&r.variant), r.summary.passed) {
        (Expect::Clean, true) => ("pass", "PASS", true),
        (Expect::Clean, false) => ("fail", "FAIL", false),
        (Expect::Caught, false) => ("pass", "CAUGHT (expected)", true),
        (Expect::Caught, true) => ("fail", "ESCAPED (not caught)", false),
    }
}

/// The page for `reports`.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let failing = reports.iter().filter(|r| !badge(r).2).count();
    let title = match reports {
        [r] => format!("netfd-harness: {}", r.dimensions()),
        _ => format!("netfd-harness: {} reports", reports.len()),
    };
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // No fetch of any kind: the page must work offline and cannot leak.
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(out, "<title>{}</title>", escape(&title));
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(
        out,
        "<h1>netfd-harness report <span class=\"badge {}\">{}</span></h1>",
        if failing == 0 { "pass" } else { "fail" },
        if failing == 0 {
            "PASS".to_owned()
        } else {
            format!("{failing} of {} not as expected", reports.len())
        }
    );
    out.push_str("<p class=\"meta\">One table per run: a row per scenario, a column per assertion (pass or FAIL, with the number of checks or of violations kept). fdmutex must pass; a historical variant must be caught. Below it, each violation with the command that replays it (run it from the directory the run was started in) and the interleaving that led to it: one column per thread, events in order, the violating event highlighted.</p>\n");
    for (ri, r) in reports.iter().enumerate() {
        report_section(&mut out, ri, r);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn report_section(out: &mut String, ri: usize, r: &Report) {
    let _ = writeln!(out, "<section class=\"report\" id=\"r{ri}\">");
    let (cls, word, _) = badge(r);
    let _ = writeln!(
        out,
        "<h2>{} <small>{}</small> <span class=\"badge {cls}\">{word}</span></h2>",
        escape(&r.variant),
        escape(r.dimensions().trim_start_matches(r.variant.as_str()).trim())
    );
    let _ = writeln!(
        out,
        "<p class=\"meta\">seed {} · started {} · {}.{:03} s · {} cases · {} syscalls checked · {} violation{} · {} {} ({} cpus)</p>",
        r.seed,
        escape(&r.started_at),
        r.duration_ms / 1000,
        r.duration_ms % 1000,
        r.summary.cases,
        r.summary.syscalls_checked,
        r.summary.violations,
        if r.summary.violations == 1 { "" } else { "s" },
        escape(&r.host.os),
        escape(&r.host.kernel),
        r.host.cpus
    );
    summary_table(out, ri, r);
    let total = r.violations().count();
    if total == 0 {
        out.push_str("<p class=\"none\">No violations.</p>\n");
    } else {
        let _ = writeln!(out, "<h3>Violations ({total})</h3>");
        for (vi, (s, v)) in r.violations().enumerate() {
            violation_section(out, ri, vi, s, v);
        }
    }
    out.push_str("</section>\n");
}

fn summary_table(out: &mut String, ri: usize, r: &Report) {
    let _ = writeln!(
        out,
        "<div class=\"scroll\"><table class=\"summary\" id=\"summary-r{ri}\">"
    );
    out.push_str("<thead><tr><th scope=\"col\">scenario</th><th scope=\"col\">cases</th><th scope=\"col\">syscalls</th>");
    for k in ViolationKind::ALL {
        // Break long assertion names at underscores to keep columns narrow.
        let _ = write!(
            out,
            "<th scope=\"col\">{}</th>",
            k.assertion_name().replace('_', "_<wbr>")
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    // Violation numbers in report order, for linking failed cells.
    let mut first_index = 0usize;
    for s in &r.scenarios {
        let _ = write!(
            out,
            "<tr class=\"scenario {}\" data-scenario=\"{}\"><th scope=\"row\">{}<small>{}</small></th><td class=\"num\">{}</td><td class=\"num\">{}</td>",
            if s.passed() { "pass" } else { "fail" },
            escape(&s.name),
            escape(&s.name),
            escape(&s.file),
            s.cases,
            s.syscalls_checked
        );
        for k in ViolationKind::ALL {
            let a = s.assertions.get(k);
            let link = s
                .violations
                .iter()
                .position(|v| v.kind == k)
                .map(|p| first_index + p);
            if a.passed {
                let _ = write!(
                    out,
                    "<td class=\"cell pass\" title=\"{}: passed, {} checks\">pass<small>{}</small></td>",
                    k.assertion_name(),
                    a.count,
                    a.count
                );
            } else {
                let n = s.violations.iter().filter(|v| v.kind == k).count();
                let text = match link {
                    Some(vi) => format!("<a href=\"#v{ri}-{vi}\">FAIL</a>"),
                    None => "FAIL".to_owned(),
                };
                let _ = write!(
                    out,
                    "<td class=\"cell fail\" title=\"{}: failed, {n} violation(s) kept of {} checks\">{text}<small>{n}</small></td>",
                    k.assertion_name(),
                    a.count
                );
            }
        }
        out.push_str("</tr>\n");
        first_index += s.violations.len();
    }
    out.push_str("</tbody></table></div>\n");
}

fn violation_section(out: &mut String, ri: usize, vi: usize, s: &ScenarioReport, v: &Violation) {
    let _ = writeln!(
        out,
        "<section class=\"violation\" id=\"v{ri}-{vi}\" data-kind=\"{}\" data-scenario=\"{}\">",
        v.kind,
        escape(&s.name)
    );
    let _ = writeln!(
        out,
        "<h3>{}. {} in {}</h3>",
        vi + 1,
        v.kind,
        escape(&s.name)
    );
    if !v.message.is_empty() {
        let _ = writeln!(out, "<p class=\"message\">{}</p>", escape(&v.message));
    }
    let replay = if v.replay.is_empty() {
        "(no replay command recorded)"
    } else {
        v.replay.as_str()
    };
    let _ = writeln!(
        out,
        "<div class=\"replay-box\"><span>replay</span><code class=\"replay\">{}</code></div>",
        escape(replay)
    );
    out.push_str("<dl>");
    let fd = if v.fd < 0 {
        "-".to_owned()
    } else {
        v.fd.to_string()
    };
    let mut field = |k: &str, val: String| {
        let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", escape(&val));
    };
    field("fd", fd);
    field("owner", format!("#{}", v.owner));
    if let Some(h) = v.holder {
        field("holder", format!("#{h}"));
    }
    field("op", v.op.clone());
    field("thread", v.thread.clone());
    field("case", format!("{} (seed {})", v.case, v.seed));
    field("scenario file", s.file.clone());
    if let Some(e) = &v.evidence {
        field("evidence", e.clone());
    }
    out.push_str("</dl>\n");
    if !v.schedule.is_empty() {
        let sched: Vec<String> = v.schedule.iter().map(usize::to_string).collect();
        let _ = writeln!(
            out,
            "<details><summary>schedule ({} decisions)</summary><code>[{}]</code></details>",
            v.schedule.len(),
            sched.join(", ")
        );
    }
    lanes_table(out, &Lanes::from_violation(v));
    out.push_str("</section>\n");
}

fn lanes_table(out: &mut String, lanes: &Lanes) {
    if lanes.rows.is_empty() {
        out.push_str("<p class=\"none\">No event trace recorded.</p>\n");
        return;
    }
    let _ = writeln!(
        out,
        "<div class=\"scroll\"><table class=\"lanes\" data-threads=\"{}\"><thead><tr><th scope=\"col\">seq</th>",
        lanes.threads.len()
    );
    for t in &lanes.threads {
        let _ = write!(out, "<th scope=\"col\">{}</th>", escape(t));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &lanes.rows {
        let _ = write!(
            out,
            "<tr class=\"{}\"><td class=\"seq\">{}</td>",
            if row.marked { "event marked" } else { "event" },
            row.seq
        );
        for lane in 0..lanes.threads.len() {
            if lane == row.lane {
                let _ = write!(out, "<td class=\"ev\">{}</td>", escape(&row.text));
            } else {
                out.push_str("<td></td>");
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table></div>\n");
}

/// Write the page for `reports` to `path` atomically.
pub fn write(reports: &[Report], path: impl AsRef<Path>) -> io::Result<()> {
    super::atomic::write_file(path.as_ref(), render(reports).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<script>alert('x&y\")</script>"),
            "&lt;script&gt;alert(&#39;x&amp;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape("bell\u{7}\nok"), "bell\\u{7}\nok");
    }
}

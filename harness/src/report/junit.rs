//! JUnit XML for CI systems: one `<testsuite>` per report (variant × mode ×
//! wait path, named `netfd-harness.<variant>.<mode>[.<wait>]`),
//! one `<testcase>` per scenario, one `<failure>` per violation carrying its
//! message and the replay command.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use super::{Report, ScenarioReport, Violation};

/// Escape text for XML content or a double-quoted attribute. Characters that
/// XML 1.0 cannot carry at all (most C0 controls, U+FFFE, U+FFFF) are shown
/// as `\u{..}` instead. Line breaks and tabs in attributes are kept as
/// character references so parsers do not normalise them away.
pub fn escape(s: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            _ => out.push(c),
        }
    }
    out
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn failure_message(v: &Violation) -> String {
    let mut m = format!("{}: {}", v.kind, v.message);
    if !v.replay.is_empty() {
        let _ = write!(m, " | replay: {}", v.replay);
    }
    m
}

fn failure_body(v: &Violation) -> String {
    let mut b = String::new();
    let _ = writeln!(b, "kind: {}", v.kind);
    let _ = writeln!(b, "message: {}", v.message);
    let _ = writeln!(b, "fd: {}", v.fd);
    let _ = writeln!(b, "owner: #{}", v.owner);
    if let Some(h) = v.holder {
        let _ = writeln!(b, "holder: #{h}");
    }
    let _ = writeln!(b, "op: {}", v.op);
    let _ = writeln!(b, "thread: {}", v.thread);
    let _ = writeln!(b, "case: {}  seed: {}", v.case, v.seed);
    let schedule: Vec<String> = v.schedule.iter().map(usize::to_string).collect();
    let _ = writeln!(b, "schedule: [{}]", schedule.join(","));
    if let Some(e) = &v.evidence {
        let _ = writeln!(b, "evidence: {e}");
    }
    if !v.trace.is_empty() {
        let _ = writeln!(b, "trace:");
        for e in &v.trace {
            let fd = e.fd.map_or_else(|| "-".to_owned(), |f| f.to_string());
            let result = e.result.as_deref().unwrap_or("");
            let _ = writeln!(
                b,
                "  {:>5} {:<12} #{:<6} fd {:<4} {:<22} {}",
                e.seq, e.thread, e.owner, fd, e.what, result
            );
        }
    }
    let _ = writeln!(b, "replay: {}", v.replay);
    b
}

/// `netfd-harness.<variant>.<mode>[.<wait>]`: the suite name and the
/// test cases' class name, so two wait paths of one variant stay apart.
fn suite_name(r: &Report) -> String {
    let mut name = format!("netfd-harness.{}.{}", r.variant, r.mode);
    if let Some(w) = r.wait {
        name.push('.');
        name.push_str(w.name());
    }
    if let Some(s) = r.shard {
        name.push_str(&format!(".shard{}of{}", s.index, s.count));
    }
    name
}

fn testcase(out: &mut String, report: &Report, s: &ScenarioReport) {
    let class = suite_name(report);
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" assertions=\"{}\"",
        escape(&class, true),
        escape(&s.name, true),
        escape(&s.file, true),
        s.assertions.iter().map(|(_, a)| a.count).sum::<u64>()
    );
    if s.violations.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    for v in &s.violations {
        let _ = writeln!(
            out,
            "      <failure type=\"{}\" message=\"{}\">{}</failure>",
            escape(v.kind.name(), true),
            escape(&failure_message(v), true),
            escape(&failure_body(v), false)
        );
    }
    out.push_str("    </testcase>\n");
}

/// The JUnit XML document for `reports`.
pub fn render(reports: &[Report]) -> String {
    let tests: usize = reports.iter().map(|r| r.scenarios.len()).sum();
    let failures: usize = reports
        .iter()
        .flat_map(|r| &r.scenarios)
        .filter(|s| !s.violations.is_empty())
        .count();
    let time: u64 = reports.iter().map(|r| r.duration_ms).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"netfd-harness\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{}\">",
        seconds(time)
    );
    for r in reports {
        let failing = r
            .scenarios
            .iter()
            .filter(|s| !s.violations.is_empty())
            .count();
        let name = suite_name(r);
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failing}\" errors=\"0\" skipped=\"0\" time=\"{}\" hostname=\"{}\">",
            escape(&name, true),
            r.scenarios.len(),
            seconds(r.duration_ms),
            escape(&format!("{} {}", r.host.os, r.host.kernel), true),
        );
        out.push_str("    <properties>\n");
        for (k, v) in [
            ("variant", r.variant.clone()),
            ("mode", r.mode.to_string()),
            ("wait", r.wait.map_or("none", |w| w.name()).to_owned()),
            (
                "shard",
                r.shard.map_or_else(|| "all".to_owned(), |s| s.to_string()),
            ),
            ("seed", r.seed.to_string()),
            ("started_at", r.started_at.clone()),
            ("cases", r.summary.cases.to_string()),
            ("syscalls_checked", r.summary.syscalls_checked.to_string()),
            ("schema", r.schema.clone()),
        ] {
            let _ = writeln!(
                out,
                "      <property name=\"{}\" value=\"{}\"/>",
                escape(k, true),
                escape(&v, true)
            );
        }
        out.push_str("    </properties>\n");
        for s in &r.scenarios {
            testcase(&mut out, r, s);
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Write the JUnit XML for `reports` to `path` atomically (replacing an
/// existing file; on failure nothing is left behind).
pub fn write(reports: &[Report], path: impl AsRef<Path>) -> io::Result<()> {
    super::atomic::write_file(path.as_ref(), render(reports).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b>&\"c'", false), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert_eq!(escape("x\ny\tz", true), "x&#10;y&#9;z");
        assert_eq!(escape("x\ny\tz", false), "x\ny\tz");
        assert_eq!(escape("bell\u{7}", false), "bell\\u{7}");
        assert_eq!(escape("\u{ffff}é", false), "\\u{ffff}é");
    }
}

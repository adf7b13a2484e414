//! `harness report FILE --html OUT`: the page is self-contained, escapes
//! what reports carry, has one summary row per scenario and, per violation,
//! the replay command and the interleaving as lanes with the violating event
//! marked.
//!
//! The last test opens the page in a real headless browser (Debian's
//! `chromium`). It runs only with `HARNESS_BROWSER_TEST=1` (`.ci/run` sets
//! it and installs chromium with `ci/install-chromium`), so `cargo test`
//! works on a machine without a browser; with the variable set, a missing
//! or failing browser fails the test, loudly. `HARNESS_CHROMIUM` overrides
//! the browser binary.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::report::{html, time, Event, Mode, Report, ScenarioReport, Violation, ViolationKind};

const HARNESS: &str = env!("CARGO_BIN_EXE_harness");

/// The name of a scenario that tries to inject markup.
const NASTY: &str = "close<script>alert(1)</script>&co";

fn ev(
    seq: u64,
    thread: &str,
    owner: u64,
    fd: Option<i32>,
    what: &str,
    result: Option<&str>,
) -> Event {
    Event {
        seq,
        thread: thread.into(),
        owner,
        fd,
        what: what.into(),
        result: result.map(Into::into),
    }
}

/// Three scenarios; the second has one fd_reuse violation whose trace runs
/// over three threads and ends with the read that reached the wrong socket.
fn crafted() -> Report {
    let mut r = Report::started_at(
        "naive-close",
        Mode::Controlled,
        4242,
        time::from_unix_ms(1_714_567_890_123),
    );
    let names = ["close_parked_read_tcp4", "close_with_fd_churn", NASTY];
    for name in names {
        let mut s = ScenarioReport::new(name, format!("scenarios/{name}.json"));
        s.cases = 25;
        s.syscalls_checked = 600;
        for k in ViolationKind::ALL {
            s.record_checks(k, 25);
        }
        if name == "close_with_fd_churn" {
            let mut v = Violation::new(
                ViolationKind::FdReuse,
                7,
                12,
                "read conn=0 bytes=64",
                "reader",
                17,
                0xdead,
            );
            v.holder = Some(15);
            v.schedule = vec![0, 1, 2, 0];
            v.message = "read(7) for #12 reached #15's socket".into();
            v.evidence = Some("inode 1001 (owner #12) vs inode 1002 (now #15)".into());
            v.replay = "harness replay reports/cases-naive-close-4242/close_with_fd_churn-case17.json --variant naive-close".into();
            v.trace = vec![
                ev(1, "reader", 12, None, "after_closed_check", None),
                ev(2, "closer", 12, Some(7), "close", None),
                ev(3, "closer", 12, Some(7), "close returned", Some("ok 0")),
                ev(4, "churner", 15, Some(7), "socket returned", Some("ok 7")),
                ev(5, "reader", 12, Some(7), "read", Some("ok 64")),
            ];
            s.add_violation(v);
        }
        r.scenarios.push(s);
    }
    r.finish(Duration::from_millis(2345));
    r
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn page_is_self_contained_and_escapes_report_text() {
    let page = html::render(&[crafted()]);
    for forbidden in [
        "http://",
        "https://",
        "<script",
        "<link",
        "src=",
        "url(",
        "@import",
        "@font-face",
    ] {
        assert!(!page.contains(forbidden), "page contains {forbidden:?}");
    }
    assert!(page.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    assert!(page.contains("close&lt;script&gt;alert(1)&lt;/script&gt;&amp;co"));
    assert!(page.contains("read(7) for #12 reached #15&#39;s socket"));
}

#[test]
fn page_has_a_row_per_scenario_and_lanes_per_violation() {
    let page = html::render(&[crafted()]);
    assert_eq!(count(&page, "<table class=\"summary\""), 1);
    assert_eq!(count(&page, "<tr class=\"scenario "), 3);
    assert_eq!(count(&page, "<tr class=\"scenario fail\""), 1);
    // One column per assertion, the failed one linking to the violation.
    assert_eq!(
        count(&page, "<td class=\"cell "),
        3 * ViolationKind::ALL.len()
    );
    assert!(page.contains("<a href=\"#v0-0\">FAIL</a>"));
    assert_eq!(count(&page, "<section class=\"violation\" id=\"v0-0\""), 1);
    assert!(page.contains(
        "<code class=\"replay\">harness replay reports/cases-naive-close-4242/close_with_fd_churn-case17.json --variant naive-close</code>"
    ));
    // Lanes: reader, closer, churner; five events; the last one marked.
    assert!(page.contains("<table class=\"lanes\" data-threads=\"3\">"));
    assert!(page.contains(
        "<th scope=\"col\">reader</th><th scope=\"col\">closer</th><th scope=\"col\">churner</th>"
    ));
    assert_eq!(count(&page, "<tr class=\"event"), 5);
    assert_eq!(count(&page, "<tr class=\"event marked\""), 1);
    assert!(page.contains(
        "<tr class=\"event marked\"><td class=\"seq\">5</td><td class=\"ev\">read(7) #12 -&gt; ok 64</td><td></td><td></td></tr>"
    ));
}

#[test]
fn badges_follow_the_variant_expectation() {
    // naive-close with a violation is what the matrix expects.
    let caught = crafted();
    let page = html::render(std::slice::from_ref(&caught));
    assert!(page.contains("<span class=\"badge pass\">CAUGHT (expected)</span>"));
    assert!(page.contains("<span class=\"badge pass\">PASS</span></h1>"));
    // The same violations against fdmutex are a failure.
    let mut dirty = caught.clone();
    dirty.variant = "fdmutex".into();
    let page = html::render(&[caught, dirty.clone()]);
    assert!(page.contains("<span class=\"badge fail\">FAIL</span></h2>"));
    assert!(page.contains("<span class=\"badge fail\">1 of 2 not as expected</span></h1>"));
    // A historical variant without violations escaped.
    let mut blind = dirty;
    blind.variant = "go2009-closeack".into();
    for s in &mut blind.scenarios {
        *s = ScenarioReport::new(s.name.clone(), s.file.clone());
        s.cases = 25;
    }
    blind.recompute_summary();
    assert!(html::render(&[blind]).contains("ESCAPED (not caught)"));
}

#[test]
fn report_command_writes_the_page_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = crafted().write_atomic(dir.path()).expect("write report");
    let out = dir.path().join("page.html");
    let o = Command::new(HARNESS)
        .arg("report")
        .arg(&path)
        .arg("--html")
        .arg(&out)
        .output()
        .expect("run harness report");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let page = std::fs::read_to_string(&out).expect("page");
    assert_eq!(page, html::render(&[Report::read(&path).expect("read")]));
    // No temporary file left beside it.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // An unwritable destination: exit 2, one line.
    let o = Command::new(HARNESS)
        .arg("report")
        .arg(&path)
        .arg("--html")
        .arg(dir.path().join("no/such/dir/page.html"))
        .output()
        .expect("run harness report");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot write HTML"), "{err}");
}

// ---- the real browser ---------------------------------------------------

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("HARNESS_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "HARNESS_BROWSER_TEST=1 but no chromium on PATH: install it with `ci/install-chromium` \
         (apt-get install -y chromium), point HARNESS_CHROMIUM at a Chromium binary, \
         or unset HARNESS_BROWSER_TEST"
    );
}

/// Run headless Chromium on `page` with `extra` flags; returns stdout.
/// Fails the test if the browser does not finish within a minute.
fn browse(page: &Path, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait chromium") {
            break st;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().expect("stdout reader");
    let err = err_reader.join().expect("stderr reader");
    assert!(status.success(), "chromium failed ({status}):\n{err}");
    out
}

/// Measures the page as laid out by the browser and writes the numbers into
/// the DOM, where `--dump-dom` shows them. Appended only to the test's copy
/// of the page (whose CSP is lifted for it): the real page has no script.
const PROBE: &str = r#"<script>
(function () {
  var rows = document.querySelectorAll('table.summary tbody tr.scenario');
  var visibleRows = 0;
  rows.forEach(function (r) { if (r.getBoundingClientRect().height > 0) visibleRows++; });
  var lanes = document.querySelector('table.lanes');
  var heads = lanes ? lanes.querySelectorAll('thead th') : [];
  var widths = [];
  heads.forEach(function (h) { widths.push(Math.round(h.getBoundingClientRect().width)); });
  var marked = document.querySelectorAll('table.lanes tr.marked');
  var mark = marked.length ? marked[0].querySelector('td.ev') : null;
  var plain = document.querySelector('table.lanes tr.event:not(.marked) td.ev');
  var box = mark ? mark.getBoundingClientRect() : { width: 0, height: 0 };
  var cells = mark ? Array.prototype.indexOf.call(mark.parentNode.children, mark) : -1;
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = [
    'rows=' + rows.length,
    'visible_rows=' + visibleRows,
    'lane_columns=' + widths.length,
    'min_lane_width=' + Math.min.apply(null, widths.length ? widths : [0]),
    'marked=' + marked.length,
    'marked_w=' + Math.round(box.width),
    'marked_h=' + Math.round(box.height),
    'marked_column=' + cells,
    'marked_bg=' + (mark ? getComputedStyle(mark).backgroundColor : 'none'),
    'plain_bg=' + (plain ? getComputedStyle(plain).backgroundColor : 'none'),
    'replay=' + document.querySelectorAll('code.replay').length
  ].join(';');
  document.body.appendChild(pre);
})();
</script>
"#;

fn probe_value<'a>(probe: &'a str, key: &str) -> &'a str {
    probe
        .split(';')
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in probe {probe:?}"))
}

#[test]
fn page_renders_in_headless_chromium() {
    if std::env::var("HARNESS_BROWSER_TEST").as_deref() != Ok("1") {
        eprintln!(
            "browser test not run: set HARNESS_BROWSER_TEST=1 (needs chromium; .ci/run sets it)"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let report_path = crafted().write_atomic(dir.path()).expect("write report");
    let page = dir.path().join("report.html");
    let o = Command::new(HARNESS)
        .arg("report")
        .arg(&report_path)
        .arg("--html")
        .arg(&page)
        .output()
        .expect("run harness report");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // 1. The page as the browser parsed it: the structure survived parsing
    //    (an unescaped name or a broken table would be re-nested).
    let dom = browse(&page, &["--dump-dom"]);
    assert!(
        dom.contains("<table class=\"summary\""),
        "no summary table in the DOM:\n{dom}"
    );
    assert_eq!(count(&dom, "<tr class=\"scenario "), 3, "{dom}");
    assert_eq!(count(&dom, "<tr class=\"event"), 5, "{dom}");
    assert_eq!(count(&dom, "<tr class=\"event marked\""), 1, "{dom}");
    assert!(
        !dom.contains("<script>alert(1)"),
        "markup injected through a scenario name"
    );
    assert!(dom.contains("harness replay reports/cases-naive-close-4242/close_with_fd_churn-case17.json --variant naive-close"));

    // 2. The page as the browser laid it out: a row per scenario, three
    //    lanes of real width, the violating event in its thread's lane,
    //    visible and highlighted.
    let text = std::fs::read_to_string(&page).expect("page");
    let csp_start = text
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .expect("csp");
    let csp_end = csp_start + text[csp_start..].find('>').expect("csp end") + 1;
    let probed = format!("{}{}", &text[..csp_start], &text[csp_end..])
        .replace("</body>", &format!("{PROBE}</body>"));
    let probe_page = dir.path().join("probe.html");
    std::fs::write(&probe_page, probed).expect("write probe page");
    let dom = browse(&probe_page, &["--dump-dom", "--window-size=1280,2000"]);
    let start = dom
        .find("<pre id=\"probe\">")
        .unwrap_or_else(|| panic!("probe did not run:\n{dom}"))
        + "<pre id=\"probe\">".len();
    let probe = &dom[start..start + dom[start..].find("</pre>").expect("probe end")];
    assert_eq!(probe_value(probe, "rows"), "3", "{probe}");
    assert_eq!(probe_value(probe, "visible_rows"), "3", "{probe}");
    // seq + reader + closer + churner.
    assert_eq!(probe_value(probe, "lane_columns"), "4", "{probe}");
    assert!(
        probe_value(probe, "min_lane_width")
            .parse::<u32>()
            .expect("width")
            > 10,
        "{probe}"
    );
    assert_eq!(probe_value(probe, "marked"), "1", "{probe}");
    assert!(
        probe_value(probe, "marked_w").parse::<u32>().expect("w") > 50,
        "{probe}"
    );
    assert!(
        probe_value(probe, "marked_h").parse::<u32>().expect("h") > 5,
        "{probe}"
    );
    // The read happened on `reader`, the first lane (cell 1 after seq).
    assert_eq!(probe_value(probe, "marked_column"), "1", "{probe}");
    assert_ne!(
        probe_value(probe, "marked_bg"),
        probe_value(probe, "plain_bg"),
        "{probe}"
    );
    assert_eq!(probe_value(probe, "replay"), "1", "{probe}");

    // 3. A screenshot: a real PNG of the requested size.
    let shot = dir.path().join("report.png");
    browse(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.len() > 10_000,
        "screenshot suspiciously small: {} bytes",
        png.len()
    );
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), (1280, 900));
}

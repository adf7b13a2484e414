//! `harness run --shard I/N` and `harness merge`, on real runs: the shards
//! split the scenario files and the generated cases deterministically and
//! without overlap, and merging their reports gives one report, valid
//! against the schema, that covers exactly what the unsharded run covers.
//! Bad merges (different seeds, a shard given twice) write nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use harness::report::{schema, Report};

const HARNESS: &str = env!("CARGO_BIN_EXE_harness");

/// Quick scenarios (no hangs against naive-close).
const FILES: [&str; 5] = [
    "close_before_op_starts.json",
    "close_parked_read_tcp4.json",
    "close_with_fd_churn.json",
    "double_close.json",
    "peer_close_vs_local_close.json",
];

fn scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    FILES.iter().map(|f| dir.join(f)).collect()
}

fn harness(args: &[String]) -> Output {
    Command::new(HARNESS)
        .args(args)
        .output()
        .expect("run harness")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `harness run` with a fixed seed into `dir`: against naive-close over
/// [`FILES`] without generated cases, or (`generated > 0`) against fdmutex
/// over one file plus `generated` generated cases. Returns the report.
fn run(dir: &Path, shard: Option<&str>, generated: u64) -> Report {
    let variant = if generated > 0 {
        "fdmutex"
    } else {
        "naive-close"
    };
    let mut args: Vec<String> = vec![
        "run".into(),
        "--variant".into(),
        variant.into(),
        "--seed".into(),
        "31337".into(),
        "--cases".into(),
        "3".into(),
        "--budget".into(),
        "60s".into(),
        "--report".into(),
        dir.display().to_string(),
    ];
    if generated > 0 {
        args.extend(["--generated".into(), generated.to_string()]);
        args.extend(["--scenarios".into(), scenarios()[0].display().to_string()]);
    } else {
        args.push("--no-generated".into());
        for s in scenarios() {
            args.push("--scenarios".into());
            args.push(s.display().to_string());
        }
    }
    if let Some(s) = shard {
        args.push("--shard".into());
        args.push(s.into());
    }
    let out = harness(&args);
    // naive-close is caught: exit 1 is the expected verdict; 0 is possible
    // for a shard that happens to catch nothing.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let files = json_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    schema::validate_report_file(&files[0]).unwrap_or_else(|e| panic!("{e}"));
    Report::read(&files[0]).expect("read report")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn file_scenarios(r: &Report) -> BTreeSet<String> {
    r.scenarios
        .iter()
        .filter(|s| s.name != "generated")
        .map(|s| s.name.clone())
        .collect()
}

fn generated(r: &Report) -> (u64, u64) {
    r.scenarios
        .iter()
        .filter(|s| s.name == "generated")
        .fold((0, 0), |(c, v), s| {
            (c + s.cases, v + s.violations.len() as u64)
        })
}

#[test]
fn shards_partition_the_run_and_merge_back_into_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let whole = run(&tmp.path().join("whole"), None, 0);
    let shards: Vec<Report> = (1..=3)
        .map(|i| {
            run(
                &tmp.path().join(format!("shard{i}")),
                Some(&format!("{i}/3")),
                0,
            )
        })
        .collect();

    // Scenario files: disjoint, together all of them, 5 = 2 + 2 + 1.
    let mut union = BTreeSet::new();
    let mut sizes = Vec::new();
    for s in &shards {
        let mine = file_scenarios(s);
        sizes.push(mine.len());
        assert!(
            union.is_disjoint(&mine),
            "shards overlap: {union:?} and {mine:?}"
        );
        union.extend(mine);
    }
    assert_eq!(union, file_scenarios(&whole));
    sizes.sort();
    assert_eq!(sizes, vec![1, 2, 2]);
    // Deterministic: the same shard again runs the same scenarios.
    let again = run(&tmp.path().join("again"), Some("2/3"), 0);
    assert_eq!(file_scenarios(&again), file_scenarios(&shards[1]));

    // Merge: one report, same schema, same coverage as the whole run.
    let out_dir = tmp.path().join("merged");
    let mut args: Vec<String> = vec!["merge".into()];
    for i in 1..=3 {
        args.push(tmp.path().join(format!("shard{i}")).display().to_string());
    }
    args.extend(["--out".into(), out_dir.display().to_string()]);
    args.extend([
        "--junit".into(),
        tmp.path().join("merged.xml").display().to_string(),
    ]);
    let out = harness(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("merged 3 reports of naive-close controlled server:"),
        "{}",
        text(&out.stdout)
    );
    let files = json_files(&out_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    schema::validate_report_file(&files[0]).unwrap_or_else(|e| panic!("{e}"));
    let merged = Report::read(&files[0]).expect("read merged");
    assert_eq!(merged.variant, "naive-close");
    assert_eq!(merged.seed, 31337);
    assert_eq!(file_scenarios(&merged), file_scenarios(&whole));
    assert_eq!(merged.summary.cases, whole.summary.cases);
    assert_eq!(
        merged.summary.cases,
        shards.iter().map(|s| s.summary.cases).sum::<u64>()
    );
    assert_eq!(
        merged.summary.violations,
        shards.iter().map(|s| s.summary.violations).sum::<u64>()
    );
    // naive-close is caught by the merged run as by the whole one.
    assert!(!merged.summary.passed && !whole.summary.passed);
    let junit = std::fs::read_to_string(tmp.path().join("merged.xml")).expect("junit");
    assert!(junit.contains("netfd-harness.naive-close.controlled.server"));
}

#[test]
fn shards_split_generated_cases_by_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let whole = run(&tmp.path().join("whole"), None, 8);
    let reports: Vec<Report> = (1..=3)
        .map(|i| {
            run(
                &tmp.path().join(format!("g{i}")),
                Some(&format!("{i}/3")),
                8,
            )
        })
        .collect();
    // The one scenario file runs in exactly one shard; every shard has a
    // `generated` entry.
    assert_eq!(
        reports
            .iter()
            .filter(|r| !file_scenarios(r).is_empty())
            .count(),
        1
    );
    assert!(reports
        .iter()
        .all(|r| r.scenarios.iter().any(|s| s.name == "generated")));
    let shards: Vec<(u64, u64)> = reports.iter().map(generated).collect();
    // Indices 0..8 modulo 3: shard 1 gets 0,3,6; shard 2 1,4,7; shard 3 2,5.
    // A generated family stops at its first failure, so exact counts hold
    // only when nothing failed (fdmutex should be clean); never more.
    let shares = [3, 3, 2];
    for ((cases, _), share) in shards.iter().zip(shares) {
        assert!(*cases <= share && *cases >= 1, "{shards:?}");
    }
    let (whole_cases, whole_violations) = generated(&whole);
    if whole_violations == 0 && shards.iter().all(|&(_, v)| v == 0) {
        assert_eq!(shards.iter().map(|&(c, _)| c).collect::<Vec<_>>(), shares);
        assert_eq!(whole_cases, 8);
    }
}

#[test]
fn bad_merges_are_refused_and_write_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = run(&tmp.path().join("a"), Some("1/2"), 0);
    let a_file = json_files(&tmp.path().join("a")).remove(0);
    // The other shard, from another seed.
    let mut b = a.clone();
    b.seed = 1;
    b.scenarios.clear();
    b.recompute_summary();
    let b_file = b.write_atomic(tmp.path().join("b")).expect("write");
    let out_dir = tmp.path().join("out");

    let merge = |files: &[&Path]| {
        let mut args: Vec<String> = vec!["merge".into()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        args.extend(["--out".into(), out_dir.display().to_string()]);
        harness(&args)
    };
    let out = merge(&[&a_file, &b_file]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("different seeds") && err.contains("same --seed"),
        "{err}"
    );

    let out = merge(&[&a_file, &a_file]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("are the same report"),
        "{}",
        text(&out.stderr)
    );

    assert!(
        json_files(&out_dir).is_empty(),
        "a refused merge wrote a report"
    );
}

/// `harness merge` of `files` into `out`.
fn merge(files: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["merge".into()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    harness(&args)
}

#[test]
fn shards_record_themselves_and_a_missing_or_repeated_shard_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports: Vec<Report> = (1..=3)
        .map(|i| {
            run(
                &tmp.path().join(format!("s{i}")),
                Some(&format!("{i}/3")),
                0,
            )
        })
        .collect();
    for (i, r) in reports.iter().enumerate() {
        let s = r.shard.expect("a shard report names its shard");
        assert_eq!((s.index, s.count), (i as u32 + 1, 3));
        assert_eq!(
            r.wait.map(|w| w.name()),
            Some("server"),
            "naive-close's usual path"
        );
    }
    let files: Vec<PathBuf> = (1..=3)
        .map(|i| json_files(&tmp.path().join(format!("s{i}"))).remove(0))
        .collect();
    let out_dir = tmp.path().join("out");

    // Shard 2 of 3 missing: refused, one line, nothing written.
    let out = merge(&[&files[0], &files[2]], &out_dir, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot merge naive-close controlled server: shard 2/3 missing"),
        "{err}"
    );
    assert!(
        json_files(&out_dir).is_empty(),
        "a refused merge wrote a report"
    );

    // The same shard from a second run (another file, same seed): refused.
    let again = run(&tmp.path().join("again"), Some("2/3"), 0);
    assert_eq!(again.shard, reports[1].shard);
    let again_file = json_files(&tmp.path().join("again")).remove(0);
    let out = merge(
        &[&files[0], &files[1], &again_file, &files[2]],
        &out_dir,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("shard 2/3 of naive-close controlled server is given twice"),
        "{err}"
    );
    assert!(json_files(&out_dir).is_empty());

    // --allow-missing: a partial report that says so, and fails the verdict.
    let out = merge(&[&files[0], &files[2]], &out_dir, &["--allow-missing"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(PARTIAL: shard 2/3 missing)"),
        "{}",
        text(&out.stdout)
    );
    let partial = json_files(&out_dir);
    assert_eq!(partial.len(), 1);
    schema::validate_report_file(&partial[0]).unwrap_or_else(|e| panic!("{e}"));
    let merged = Report::read(&partial[0]).expect("read");
    let m = merged.missing_shards.clone().expect("missing_shards");
    assert_eq!((m.count, m.missing), (3, vec![2]));
    assert_eq!(merged.shard, None);
    let out = harness(&[
        "verdict".into(),
        "--run".into(),
        partial[0].display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("incomplete: shard 2/3 missing"),
        "{}",
        text(&out.stderr)
    );

    // All three: complete, no shard and nothing missing in the result.
    let full_dir = tmp.path().join("full");
    let out = merge(&[&files[0], &files[1], &files[2]], &full_dir, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let full = Report::read(json_files(&full_dir).remove(0)).expect("read");
    assert_eq!((full.shard, full.missing_shards), (None, None));
}

#[test]
fn reports_are_readable_and_name_scenarios_relative_to_the_working_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tmp.path().join("r");
    // From the workspace root, naming the file the roundabout way the
    // default scenario directory used to show up.
    let out = Command::new(HARNESS)
        .current_dir(&root)
        .args([
            "run",
            "--scenarios",
            "harness/../scenarios/double_close.json",
            "--no-generated",
            "--cases",
            "2",
            "--seed",
            "5",
            "--report",
        ])
        .arg(&dir)
        .output()
        .expect("run harness");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let files = json_files(&dir);
    assert_eq!(files.len(), 1);
    let r = Report::read(&files[0]).expect("read");
    assert_eq!(r.scenarios[0].file, "scenarios/double_close.json");
    assert_eq!(r.wait.map(|w| w.name()), Some("direct"));
    assert!(
        files[0].to_string_lossy().ends_with("-fdmutex-direct.json"),
        "{}",
        files[0].display()
    );
    // Readable by group and others under the usual umask: what any new
    // file gets (compared with one created the ordinary way, so another
    // umask does not fail the test).
    let plain = tmp.path().join("plain");
    std::fs::File::create(&plain).expect("create");
    let expect = std::fs::metadata(&plain)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    let mode = std::fs::metadata(&files[0])
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, expect, "report mode {mode:o}");
}

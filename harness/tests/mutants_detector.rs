//! The harness as a mutation-testing detector (`ci/mutants --detector
//! harness`): `harness run` against `fdmutex`, on both wait paths and in
//! both modes (as the gate runs it), over every scenario file and a fixed
//! set of generated cases, must be clean. Free mode is not redundant: a
//! lock waiter that spins instead of parking (a semaphore hand-off that
//! leaves a permit behind) overflows its waiter count only when it really
//! runs beside the lock holder, and the controlled schedule runs one thread
//! at a time.
//! A mutant of netfd's lifetime code that the harness notices makes it exit
//! 1 (violations) or 3 (the harness failed), and this test fails.
//!
//! Ignored in the ordinary test run (it is 15-30 s of harness time, and
//! `ci/gate` runs the same command with more cases): `ci/mutants` runs it
//! with `--include-ignored`, which is what makes it the harness detector.
//! Run it by hand with
//! `cargo test --release -p harness --test mutants_detector -- --include-ignored`.
//!
//! The seed is fixed so that every mutant meets the same cases, and the
//! budget bounds the run on a loaded machine; cargo-mutants' own timeout
//! catches a mutant that makes an operation hang past it.

use std::path::Path;
use std::process::Command;

const HARNESS: &str = env!("CARGO_BIN_EXE_harness");

#[test]
#[ignore = "mutation-testing detector, run by ci/mutants (15-30 s)"]
fn fdmutex_is_clean_on_both_wait_paths_in_both_modes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let reports = tempfile::tempdir().expect("tempdir");
    let cases = std::env::var("NETFD_MUTANTS_CASES").unwrap_or_else(|_| "20".into());
    let generated = std::env::var("NETFD_MUTANTS_GENERATED").unwrap_or_else(|_| "100".into());
    for mode in ["controlled", "free"] {
        let out = Command::new(HARNESS)
            .current_dir(&root)
            .args([
                "run",
                "--variant",
                "fdmutex",
                "--mode",
                mode,
                "--wait",
                "both",
                "--seed",
                "20090412",
                "--cases",
                &cases,
                "--generated",
                &generated,
                "--budget",
                "90s",
                "--hang-bound",
                "1s",
                // The first failing scenario decides: a mutant that hangs an
                // operation leaves its threads behind, and running on past it
                // only turned a catch into cargo-mutants' timeout.
                "--fail-fast",
                "--report",
            ])
            .arg(reports.path())
            .output()
            .expect("run harness");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "harness run against fdmutex ({mode} mode) was not clean:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

//! Running independent cases at once.
//!
//! Cases of one run share nothing but the process: each installs its own
//! probe on each of its threads, so its ledger sees only its own calls, and
//! the ledger tells a number another case now holds from one of its own by
//! the kernel's identity of the file behind it. So cases can overlap, and a
//! case's verdict does not depend on what runs beside it (for a target that
//! never touches a number it does not own: a historical variant's stale
//! call may land on a neighbour's socket, which is the bug it is caught
//! for, and is seen by the case that made the call).
//!
//! Protocol of [`run_ordered`]: case indices are handed out in increasing
//! order to `jobs` worker threads; a worker that takes an index always
//! runs it; `more(i)` is asked before index `i` starts (a time budget) and
//! `stop_after(result)` after it ends (a hang, a failure) stops the hand-out
//! past `i`. The caller gets the results of the longest prefix `0..k` that
//! ran, in order, so what a run reports — which cases, in which order, where
//! it stopped — is what a sequential run of the same cases would report;
//! results past the stop are dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many cases to run at once for `requested` (0: sized to the
/// machine). A case's threads mostly wait on each other (one runs at a time
/// in controlled mode) and on the kernel, so a core takes several cases:
/// on the 2-core machine, 4 cases at once used 53–64% of the two cores and
/// 8 used 71–89% (`harness measure throughput --jobs 1,4,8`,
/// docs/performance.md, "Harness throughput"); more than 8 gained nothing
/// there.
pub fn jobs(requested: usize) -> usize {
    if requested > 0 {
        return requested;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores * CASES_PER_CORE).clamp(1, 32)
}

/// Cases run at once per core by default (see [`jobs`]).
pub const CASES_PER_CORE: usize = 4;

/// Run `job(i)` for `i` in `0..limit` on `jobs` threads; see the module
/// docs.
pub fn run_ordered<T: Send>(
    jobs: usize,
    limit: usize,
    more: &(dyn Fn(usize) -> bool + Sync),
    job: &(dyn Fn(usize) -> T + Sync),
    stop_after: &(dyn Fn(&T) -> bool + Sync),
) -> Vec<T> {
    if jobs <= 1 {
        let mut out = Vec::new();
        for i in 0..limit {
            if !more(i) {
                break;
            }
            let r = job(i);
            let stop = stop_after(&r);
            out.push(r);
            if stop {
                break;
            }
        }
        return out;
    }
    let next = AtomicUsize::new(0);
    let stop_at = AtomicUsize::new(limit);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..limit).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.min(limit) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= stop_at.load(Ordering::SeqCst) {
                    return;
                }
                if !more(i) {
                    stop_at.fetch_min(i, Ordering::SeqCst);
                    return;
                }
                let r = job(i);
                if stop_after(&r) {
                    stop_at.fetch_min(i + 1, Ordering::SeqCst);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
            });
        }
    });
    let stop = stop_at.into_inner();
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .take(stop)
        .map_while(|r| r)
        .collect()
}

//! The lifetime state word against the limit: one atomic RMW pair.
//!
//! Every netfd operation pays one `incref`+`decref` (or `rwlock`+`rwunlock`)
//! on top of its syscall. The floor for any reference count is a bare
//! `fetch_add`+`fetch_sub` on one word, measured here beside it.
//!
//! - `fdmutex_uncontended`: one thread, a word nobody else touches.
//! - `fdmutex_contended`: two threads hammer the same word at once (a reader
//!   and a writer on one socket). The time is per pair per thread: the wall
//!   time for each of the two threads to do one pair while the other does
//!   the same (Go's `RunParallel` divides by both threads' pairs instead,
//!   i.e. half this figure).
//!
//! Each word sits alone on its cache line, so no false sharing skews either.

mod common;

use common::Ratio;
use criterion::{black_box, Criterion};
use netfd::fdmutex::{FdMutex, Side};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The reference count step of the state word (bits 3..).
const REF: u64 = 1 << 3;

#[repr(align(128))]
struct Padded<T>(T);

/// The limit: what any atomic reference count costs at least.
#[inline]
fn atomic_pair(a: &AtomicU64) {
    black_box(a.fetch_add(REF, Ordering::Acquire));
    black_box(a.fetch_sub(REF, Ordering::AcqRel));
}

#[inline]
fn fdmutex_pair(m: &FdMutex) {
    black_box(m.incref());
    black_box(m.decref());
}

#[inline]
fn rwlock_pair(m: &FdMutex, side: Side) {
    black_box(m.rwlock(side));
    black_box(m.rwunlock(side));
}

fn uncontended(c: &mut Criterion) {
    if !common::selected("fdmutex_uncontended") {
        return;
    }
    let mut g = c.benchmark_group("fdmutex_uncontended");
    let m = Box::new(Padded(FdMutex::new()));
    let a = Box::new(Padded(AtomicU64::new(0)));
    g.bench_function("ours_incref_decref", |b| b.iter(|| fdmutex_pair(&m.0)));
    g.bench_function("baseline_atomic_pair", |b| b.iter(|| atomic_pair(&a.0)));
    g.bench_function("ours_rwlock_rwunlock", |b| {
        b.iter(|| rwlock_pair(&m.0, Side::Read))
    });
    g.finish();

    let ours = |n| common::time_loop(n, || fdmutex_pair(&m.0));
    let base = |n| common::time_loop(n, || atomic_pair(&a.0));
    let rw = |n| common::time_loop(n, || rwlock_pair(&m.0, Side::Read));
    let cases: [common::Case; 3] = [
        ("ours_incref_decref", &ours),
        ("baseline_atomic_pair", &base),
        ("ours_rwlock_rwunlock", &rw),
    ];
    let paired = common::paired(&cases, 201, Duration::from_millis(1));
    common::record_paired(
        "fdmutex_uncontended",
        &cases,
        &paired,
        &[(0, 1, Some(1.1)), (2, 1, None)],
    );
}

/// Two threads run `f(thread index)` `iters` times each, released together.
fn two_threads(iters: u64, f: impl Fn(usize) + Sync) -> Duration {
    common::run_parallel(2, |i| {
        for _ in 0..iters {
            f(i);
        }
    })
}

fn contended(c: &mut Criterion) {
    if !common::selected("fdmutex_contended") {
        return;
    }
    let mut g = c.benchmark_group("fdmutex_contended");
    let m = Box::new(Padded(FdMutex::new()));
    let a = Box::new(Padded(AtomicU64::new(0)));
    g.bench_function("ours_incref_decref", |b| {
        b.iter_custom(|iters| two_threads(iters, |_| fdmutex_pair(&m.0)))
    });
    g.bench_function("baseline_atomic_pair", |b| {
        b.iter_custom(|iters| two_threads(iters, |_| atomic_pair(&a.0)))
    });
    // A reader and a writer on one socket: different locks, same word.
    let rw = |i: usize| rwlock_pair(&m.0, if i == 0 { Side::Read } else { Side::Write });
    g.bench_function("ours_rwlock_read_and_write", |b| {
        b.iter_custom(|iters| two_threads(iters, rw))
    });
    g.finish();

    let ours = |n| two_threads(n, |_| fdmutex_pair(&m.0));
    let base = |n| two_threads(n, |_| atomic_pair(&a.0));
    let rw2 = |n| two_threads(n, rw);
    let cases: [common::Case; 3] = [
        ("ours_incref_decref", &ours),
        ("baseline_atomic_pair", &base),
        ("ours_rwlock_read_and_write", &rw2),
    ];
    let paired = common::paired(&cases, 101, Duration::from_millis(3));
    common::record_paired(
        "fdmutex_contended",
        &cases,
        &paired,
        &[(0, 1, Some(1.1)), (2, 1, None)],
    );
}

fn main() {
    let since = SystemTime::now();
    let mut c = common::criterion();
    uncontended(&mut c);
    contended(&mut c);
    c.final_summary();
    common::print_ratios(
        since,
        &[
            Ratio {
                group: "fdmutex_uncontended",
                ours: "ours_incref_decref",
                baseline: "baseline_atomic_pair",
                target: Some(1.1),
            },
            Ratio {
                group: "fdmutex_uncontended",
                ours: "ours_rwlock_rwunlock",
                baseline: "baseline_atomic_pair",
                target: None,
            },
            Ratio {
                group: "fdmutex_contended",
                ours: "ours_incref_decref",
                baseline: "baseline_atomic_pair",
                target: Some(1.1),
            },
            Ratio {
                group: "fdmutex_contended",
                ours: "ours_rwlock_read_and_write",
                baseline: "baseline_atomic_pair",
                target: None,
            },
        ],
    );
}

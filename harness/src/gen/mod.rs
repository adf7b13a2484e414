//! Generated cases: proptest strategies over the scenario vocabulary and over
//! controlled-mode schedules, and the runner that executes them, shrinks the
//! first failure and hands back a minimal, replayable case.
//!
//! Invariants:
//! - **Well-formed by construction.** A strategy draws a *raw* case (ops with
//!   small index fields, a transport, a connection count, a schedule), and a
//!   total, deterministic normalisation turns it into a [`Scenario`]: every
//!   `conn` and `listener` index is taken modulo what exists, slots and
//!   listeners are exactly those that `dial`/`accept`/`close_listener` use,
//!   a `rebind` is always preceded by its `close_listener`, ops a transport
//!   does not support are mapped to ones it does. Shrinking acts on the raw
//!   case, so every shrunk value is normalised again and is well formed too:
//!   `Scenario::validate()` accepts every value the strategies produce
//!   (`tests/gen_strategies.rs` checks it on thousands of draws).
//! - **Bounded.** At most [`Bounds::max_threads`] (≤ 4) threads, each with at
//!   most [`Bounds::max_ops_per_thread`] raw ops (a raw op expands to at most
//!   two scenario ops), at most [`Bounds::max_connections`] pre-established
//!   connections, [`Bounds::max_slots`] slots, two listeners, churn batches
//!   of at most [`Bounds::max_open`], schedules of at most
//!   [`MAX_SCHEDULE_LEN`] decisions. A case needs a few dozen descriptors.
//! - **Biased toward close races.** Connection indices favour connection 0,
//!   so most ops of different threads meet on one socket; `close` is as
//!   likely as `read` or `write`; two compound ops stand for the shapes that
//!   find races: *close then churn* (a `close` followed at once by `open`, so
//!   the released number is handed out while a racing op may still hold it)
//!   and *deadline then read* (a deadline of a few milliseconds, often
//!   already past, then a read: expiry near a close). Schedules are runs of
//!   one to five switch points of one thread (a random walk that leaves a
//!   thread paused inside an op while others take a few steps), sometimes a
//!   uniformly random choice at every switch point.
//! - **Shrinks toward the simple.** Op alternatives are ordered simplest
//!   first (`yield`, `sleep`, then socket ops), connection indices shrink
//!   toward 0, counts toward 1, schedules toward fewer and shorter runs of
//!   thread 0 — so a minimal case has few threads, few ops and few switches.
//!   A schedule shorter than the case's decisions ends with "the running
//!   thread keeps the turn" (see `exec::sched`).
//! - **Reproducible.** Case `i` of a run is drawn from a ChaCha RNG seeded
//!   from the run's seed and `i` alone ([`case_rng`]), and each case carries
//!   its own execution seed; the same `--seed` draws the same cases.

mod runner;
mod strategy;

pub use runner::{
    case_rng, fails, proptest_config, run_generated, run_one_case, shrink, CaseStats, GenConfig,
    GenFailure, GenRun,
};
pub use strategy::{
    case_strategy, case_strategy_for, case_strategy_without_unixgram, normalize, raw_case_strategy,
    scenario_strategy, schedule_strategy, Bounds, GenCase, RawCase, RawOp, RawSchedule,
    TargetKinds, MAX_SCHEDULE_LEN,
};

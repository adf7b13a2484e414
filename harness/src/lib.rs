//! netfd-harness: drives interleavings of Close, Read, Write, Accept and
//! deadline expiry against real sockets, checks every syscall against an
//! ownership ledger, and reports fd reuse and use-after-close.
//!
//! Modules:
//! - [`scenario`]: the JSON scenario format (`scenarios/README.md`), strict
//!   loading with file:line:column errors, semantic validation, saving.
//! - [`target`]: the trait a socket implementation plugs in through, and its
//!   implementation for every netfd variant.
//! - [`ledger`]: the oracle that checks every syscall against descriptor
//!   ownership.
//! - [`intercept`]: the libc entry points that let the ledger see socket
//!   code that was never instrumented.
//! - [`exec`]: runs one case on real threads and sockets, controlled or free.
//! - [`gen`]: proptest strategies for generated cases and schedules, and
//!   the runner that shrinks a failing one to a minimal, replayable case.
//! - [`measure`]: measurements of the harness itself (throughput, where
//!   a case's time goes).
//! - [`run`]: runs scenario files and generated cases into a report.
//! - [`worker`]: cases in worker processes, each in a descriptor table of
//!   its own, so a case's stray calls reach only that case.
//! - [`check`]: the one call a user's test makes ([`check()`], [`replay()`]).
//! - [`report`]: the run report (`reports/schema.json`, `reports/README.md`),
//!   atomic writing, shard merging, JUnit XML, the terminal summary.

pub mod check;
pub mod cli;
pub mod exec;
pub mod gen;
pub mod intercept;
pub mod ledger;
pub mod measure;
pub mod report;
pub mod run;
pub mod scenario;
pub mod target;
pub mod worker;

pub use check::{check, replay};

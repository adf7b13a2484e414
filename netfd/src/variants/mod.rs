//! Lifetime protocols, selectable at run time.
//!
//! `fdmutex` is the production protocol (`crate::fd`); the others are the
//! historical protocols kept, races intact, so the harness can prove it
//! catches them. They are real working socket code: a single-threaded user
//! sees correct behaviour. What each one's race is, and which sync points
//! open it, is in the crate docs.
//!
//! Every protocol exposes the same inherent methods (`new`, `read`, `write`,
//! `recv_from`, `send_to`, `accept`, `connect`, `control`, `set_deadline`,
//! `close`, `is_closed`), and `NetFd` dispatches to them with one `match` on
//! a plain enum. What they do alike lives in `shared`, so they differ only
//! in how an operation gets and keeps the number.

pub(crate) mod go2009_closeack;
pub(crate) mod go2009_refcount;
pub(crate) mod naive_close;
pub(crate) mod optimistic;
pub(crate) mod shared;

use std::fmt;
use std::str::FromStr;

/// A lifetime protocol. See the crate docs for what each one's race is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Variant {
    /// Production: one atomic state word, evict on close, close waits for
    /// the number to be released.
    #[default]
    FdMutex,
    /// Go commit eb16346 (2009): mutex + sysref, `closing` set outside the
    /// lock, wake-up by shutdown(2) only.
    Go2009Refcount,
    /// The code before that commit: Close acks through the poll server then
    /// closes; Read/Write use the number optimistically.
    Go2009CloseAck,
    /// close(2) at once, the number read without synchronisation.
    NaiveClose,
}

impl Variant {
    pub const ALL: [Variant; 4] = [
        Variant::FdMutex,
        Variant::Go2009Refcount,
        Variant::Go2009CloseAck,
        Variant::NaiveClose,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Variant::FdMutex => "fdmutex",
            Variant::Go2009Refcount => "go2009-refcount",
            Variant::Go2009CloseAck => "go2009-closeack",
            Variant::NaiveClose => "naive-close",
        }
    }

    /// Whether the harness must find this variant clean (only `fdmutex`).
    pub fn expected_clean(self) -> bool {
        self == Variant::FdMutex
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of [`Variant::from_str`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownVariant(pub String);

impl fmt::Display for UnknownVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
        write!(
            f,
            "unknown variant '{}' (expected one of: {})",
            self.0,
            names.join(", ")
        )
    }
}

impl std::error::Error for UnknownVariant {}

impl FromStr for Variant {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Variant, UnknownVariant> {
        Variant::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVariant(s.to_string()))
    }
}

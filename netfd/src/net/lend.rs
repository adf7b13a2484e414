//! `AsFd` for sockets that `close(&self)`: lending a descriptor that stays
//! open for as long as the borrow.
//!
//! A `BorrowedFd<'a>` promises that its number is open for all of `'a`.
//! netfd's own number cannot keep that promise: another thread's `close`
//! releases it while `&self` is still borrowed, and the kernel hands it to
//! the next socket. So `as_fd` lends a *duplicate*.
//!
//! Protocol:
//! - The first `as_fd` duplicates the number under a reference (the lifetime
//!   protocol's `control`, so the number is ours while it is copied) and
//!   keeps the duplicate in the socket value until the value drops. Every
//!   later `as_fd` lends the same duplicate. The borrow is of `&self`, and
//!   the duplicate outlives every `&self`: the promise holds.
//! - netfd never passes the duplicate to a syscall of its own except the
//!   shutdown below, so it cannot be a number netfd uses after release.
//! - `close` releases netfd's own number as always, then shuts the kernel
//!   socket down through the duplicate (waiting for an `as_fd` that is
//!   copying the number to finish first), so peers see the end and the
//!   borrower's calls fail. The kernel socket itself lives on through the
//!   duplicate until the value drops: a listener's port stays bound until
//!   then. That is the hazard `as_fd` trades for soundness; `with_fd` has
//!   none (it lends netfd's own number under a reference, for the length
//!   of a closure).
//! - On a socket closed before any `as_fd`, there is nothing to duplicate:
//!   `as_fd` lends a placeholder, one never-connected Unix socket per
//!   process that stays open forever (its calls fail with `ENOTCONN`).

use crate::probe::OwnerId;
use crate::sys;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

/// What `as_fd` lends; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Lent(OnceLock<Option<OwnedFd>>);

impl Lent {
    /// The descriptor to lend: the duplicate made by `dup` on first use, or
    /// the placeholder if the socket is closed.
    ///
    /// # Panics
    /// If the duplicate cannot be made on an open socket (the process is
    /// out of descriptors): `AsFd` has no error to return.
    pub(crate) fn get_or_dup(
        &self,
        dup: impl FnOnce() -> std::io::Result<OwnedFd>,
    ) -> BorrowedFd<'_> {
        let first = || match dup() {
            Ok(owned) => Some(owned),
            Err(e) if crate::error::is_closed(&e) => None,
            Err(e) => panic!("netfd: as_fd: cannot duplicate the descriptor: {e}"),
        };
        match self.0.get_or_init(first) {
            Some(owned) => owned.as_fd(),
            None => placeholder(),
        }
    }

    /// After Close: shut the kernel socket down through the duplicate, if
    /// one was lent. Settles the slot first, so an `as_fd` that is copying
    /// the number finishes, and one that comes later lends the placeholder.
    pub(crate) fn shut_down(&self) {
        if let Some(owned) = self.0.get_or_init(|| None) {
            use std::os::fd::AsRawFd;
            let _ = sys::shutdown(owned.as_raw_fd(), OwnerId::NONE, std::net::Shutdown::Both);
        }
    }
}

/// The process's placeholder descriptor (see the module docs).
fn placeholder() -> BorrowedFd<'static> {
    static PLACEHOLDER: OnceLock<OwnedFd> = OnceLock::new();
    PLACEHOLDER
        .get_or_init(|| {
            sys::placeholder_socket()
                .unwrap_or_else(|e| panic!("netfd: as_fd: cannot create a placeholder socket: {e}"))
        })
        .as_fd()
}

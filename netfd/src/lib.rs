//! A network file descriptor that is safe to close while other threads read,
//! write, accept or wait on deadlines.
//!
//! The bug this crate exists to prevent: thread A closes descriptor N while
//! thread B is about to read N; the kernel hands N to the next socket; B's
//! read lands on somebody else's connection. Here every use of the number
//! happens under a reference counted in one atomic word ([`fdmutex`]), Close
//! wakes every parked operation explicitly, and the number is released only
//! when the last reference is gone — before Close returns.
//!
//! ```
//! use netfd::TcpListener;
//! let listener = TcpListener::bind("127.0.0.1:0")?;
//! std::thread::scope(|s| {
//!     let parked = s.spawn(|| listener.accept().map(drop)); // parked in accept...
//!     listener.close().unwrap(); // ...woken with the closed error
//!     assert!(netfd::is_closed(&parked.join().unwrap().unwrap_err()));
//! });
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The socket types have std's signatures (see [`net`]): code written for
//! `std::net` compiles against netfd after `use netfd as net;` (and
//! `use netfd::unix;` for `std::os::unix::net`).
//!
//! Layers (each one file or folder): [`sys`] owns every syscall and reports
//! each to the [`probe`]; [`fdmutex`] is the lifetime state word; [`poll`] is
//! the poll descriptor and the poll server; `fd` is the production protocol;
//! [`variants`] selects a protocol at run time; [`net`] has the public socket
//! types.
//!
//! # Lifetime protocols
//!
//! A socket is opened with a [`Variant`] (in [`Options`]): `fdmutex`, the
//! production protocol and the default, or one of three historical protocols
//! kept, races intact, so a race detector can prove it catches them. All four
//! are working socket code — a user who never races Close against another
//! operation sees correct behaviour from each — and all four are written with
//! atomics and ordinary syscalls: their races reach the kernel, never the
//! process's memory. The historical ones wait through the poll server by
//! default ([`Options::for_variant`]), as they were built on it.
//!
//! In the historical protocols the unlocked "is it closed?" check fails with
//! the closed error (Go's `os.EINVAL` of 2009 meant exactly that), so a raw
//! errno reaching a caller is always the race, never a plain use after Close.
//!
//! ## Sync points
//!
//! Where a close race can open, every protocol calls
//! [`probe::sync_point`]. A name means the same place in every protocol that
//! reaches it:
//!
//! | sync point | place | fdmutex | go2009-refcount | go2009-closeack | naive-close |
//! |---|---|---|---|---|---|
//! | `after_closed_check` | an operation saw the socket open and has no reference yet | every op | every op but SetDeadline; Close | every op but SetDeadline; Close | every op; Close |
//! | `after_incref` | the operation holds its reference (with its direction lock, if any) | every op | every op; Close | — | — |
//! | `before_syscall` | the number is loaded, the read/write/recvfrom/sendto/accept/connect syscall comes next | yes | yes | yes | yes |
//! | `before_park` | about to wait for readiness, deadline or Close | yes | yes | yes | yes |
//! | `after_wake` | woken, about to re-evaluate | yes | yes | yes | yes |
//! | `before_evict` | Close marked the socket closed, parked ops not yet woken | Close | — (wakes nobody) | — (wakes nobody) | Close, after clearing the field |
//! | `after_shutdown` | Close called shutdown(2) | — | Close | — | — |
//! | `after_close_syscall` | close(2) released the number; the field still holds it | — | final decref (sysmu held) | — | Close |
//! | `before_final_close` | close(2) of the number comes next | last decref | final decref (sysmu held) | Close, after the ack cleared the field | Close |
//! | `after_set_deadline` | a deadline was stored, waiters not yet told | yes | yes | yes | yes |
//! | `before_close_return` | Close is about to return | yes | yes | yes | yes |
//!
//! In `go2009-refcount` the final close runs with `sysmu` held, as in Go: a
//! thread held at `before_final_close` or `after_close_syscall` blocks every
//! incref and decref of that socket.
//!
//! ## The races, per protocol
//!
//! **`fdmutex`** — none. Every syscall happens under a reference, Close
//! evicts parked operations (they fail with the closed error), and Close
//! returns only after the last reference released the number.
//!
//! **`go2009-refcount`** (Go eb16346: `sysmu` + `sysref`, `closing` written
//! outside the lock, `incref` that never refuses, unlocked nil checks,
//! wake-up by shutdown(2) only, Close that does not wait):
//! - *Check, then incref.* Opened at `after_closed_check`: Close runs to
//!   `before_close_return` (its own decref does the final close), then the
//!   operation increfs anyway, loads -1 and passes it to the kernel at
//!   `before_syscall`: raw EBADF reaches the caller (a syscall on a released
//!   descriptor). In Go, Read and Write got EINVAL from the nil `*os.File`
//!   instead; ReadFrom, WriteTo and accept got EBADF as here.
//! - *Close does not wait.* Opened at `after_incref`, `before_syscall` or
//!   `before_park`: Close returns while the operation's reference keeps the
//!   number open (the kernel still has the socket's file behind it); the
//!   number is closed later by the last operation's decref
//!   (`before_final_close` on its thread). A second Close in that window
//!   passes the check and succeeds too.
//! - *Wake-up by shutdown only.* A parked operation (`before_park`) wakes,
//!   at `after_wake`, only through the readiness shutdown(2) produces, and
//!   returns what the shut-down socket says instead of the closed error: a
//!   TCP read gets end of file (`Ok(0)`), a TCP write raw EPIPE, a TCP accept
//!   raw EINVAL. An unconnected UDP socket and a Unix listener become ready
//!   once, the retried syscall says EAGAIN, and the operation parks again
//!   (`before_park` twice) on a closed socket until its deadline — with
//!   netfd's edge-triggered poll server it waits; Go's level-triggered one
//!   (and the direct wait path here) spins instead.
//! - `closing` written outside `sysmu` is benign: Close holds its own
//!   reference while it writes it, and its decref, under `sysmu`, sees it.
//! - What it cannot do: reach a reused number. Every syscall loads the
//!   number after incref, and the number is closed only at zero references.
//!
//! **`go2009-closeack`** (Go before eb16346: Close has the poll server forget
//! the fd, then closes the saved number; Read and Write use the number
//! optimistically):
//! - *Optimistic use.* Opened at `before_syscall`: the operation has loaded
//!   the number; Close runs (`after_closed_check`, the ack clears the field,
//!   `before_final_close`, close(2), `before_close_return`); the kernel gives
//!   the number to a new socket; the operation's syscall then reads the new
//!   socket's bytes or writes into its connection (EBADF if nobody took the
//!   number yet). An operation that starts after the ack sees the socket
//!   closed: this protocol leaves no released number in the field.
//! - *Close wakes nobody* (Go #271): an operation parked at `before_park`
//!   stays parked after Close returned, on a released number, until its
//!   deadline (SetDeadline still works on the closed socket, as in Go).
//! - Two concurrent Closes both pass the unlocked check and both close(2)
//!   the saved number: the second can close a new socket's descriptor.
//!
//! **`naive-close`** (the number in a field read without synchronisation,
//! close(2) at once, then the field cleared):
//! - *In flight*, as closeack's: opened at `before_syscall`, the operation's
//!   syscall lands on whatever socket got the number after Close.
//! - *Late start.* Opened at `after_close_syscall`: Close has released the
//!   number and not yet cleared the field; an operation that starts now loads
//!   the released number and, if a new socket took it, reads its bytes or
//!   writes into its connection.
//! - Concurrent Closes can close the number twice, as closeack's.
//!
//! `netfd/tests/variants_races.rs` forces each of these with the sync points
//! against real sockets and checks the kernel's evidence (which file was
//! behind the number when the syscall reached it); the same schedules
//! against `fdmutex` end in the closed error with every byte where it
//! belongs.

pub mod error;
pub(crate) mod fd;
pub mod fdmutex;
pub mod net;
pub(crate) mod netfd;
pub mod poll;
pub mod probe;
pub(crate) mod sync;
pub mod sys;
pub mod variants;

pub use error::{is_closed, is_timeout, CLOSED_MESSAGE};
pub use net::unix;
pub use net::{
    Incoming, Options, TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream,
};
pub use poll::WaitPath;
pub use probe::OwnerId;
/// std's address types, so `use netfd as net;` stands in for `use std::net;`.
pub use std::net::{
    AddrParseError, IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6,
    ToSocketAddrs,
};
pub use variants::Variant;

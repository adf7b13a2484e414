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
//! ```no_run
//! use netfd::TcpListener;
//! use std::io::{Read, Write};
//! let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
//! let addr = listener.local_addr()?;
//! std::thread::scope(|s| {
//!     s.spawn(|| listener.accept()); // parked in accept...
//!     listener.close().unwrap(); // ...woken with the closed error
//! });
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Layers (each one file or folder): [`sys`] owns every syscall and reports
//! each to the [`probe`]; [`fdmutex`] is the lifetime state word; [`poll`] is
//! the poll descriptor and the poll server; `fd` is the production protocol;
//! [`variants`] selects a protocol at run time; [`net`] has the public socket
//! types.

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
pub use net::{Options, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
pub use poll::WaitPath;
pub use probe::OwnerId;
pub use variants::Variant;

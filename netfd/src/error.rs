//! The errors netfd hands to callers.
//!
//! Every operation that races with or follows `close` fails with one error,
//! [`closed`]: kind [`io::ErrorKind::NotConnected`], message
//! [`CLOSED_MESSAGE`], matchable with [`is_closed`]. A deadline that passed
//! fails with [`timed_out`]: kind [`io::ErrorKind::TimedOut`].

use std::error::Error;
use std::fmt;
use std::io;

/// The message of the closed error, as Go spells it.
pub const CLOSED_MESSAGE: &str = "use of closed network connection";

/// The message of the deadline error, as Go spells it.
pub const TIMEOUT_MESSAGE: &str = "i/o timeout";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NetClosed;

impl fmt::Display for NetClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CLOSED_MESSAGE)
    }
}
impl Error for NetClosed {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DeadlineExceeded;

impl fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(TIMEOUT_MESSAGE)
    }
}
impl Error for DeadlineExceeded {}

/// The error of an operation on a closed socket.
#[cold]
pub fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, NetClosed)
}

/// The error of an operation whose deadline passed.
#[cold]
pub fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, DeadlineExceeded)
}

/// Whether `err` is netfd's closed error.
pub fn is_closed(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<NetClosed>())
}

/// Whether `err` is netfd's deadline error.
pub fn is_timeout(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<DeadlineExceeded>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_error_is_matchable_by_kind_message_and_helper() {
        let e = closed();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        assert_eq!(e.to_string(), CLOSED_MESSAGE);
        assert!(is_closed(&e));
        assert!(!is_timeout(&e));
        assert!(!is_closed(&io::Error::from_raw_os_error(libc::EBADF)));
    }

    #[test]
    fn timeout_error_is_matchable() {
        let e = timed_out();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(is_timeout(&e));
        assert!(!is_closed(&e));
    }
}

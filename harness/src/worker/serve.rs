//! The worker's side: run the cases the parent sends, one at a time.
//!
//! The channel (stdin and stdout as the parent made them) is moved to
//! numbers near the top of the descriptor table before any case runs, and
//! stdin and stdout are pointed elsewhere (`/dev/null`, stderr), so that
//! nothing a target prints and no number a case's socket takes is the
//! channel. Before each read and each write the channel's identity (device
//! and inode) is compared with what it was: a case that closed or replaced
//! it ends the worker, which the parent sees and judges ([`super::lost`]).

use super::{Reply, Request, MARK};
use crate::exec;
use crate::target::Target;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// The exit status of a worker whose channel was lost.
const EXIT_CHANNEL_LOST: i32 = 86;

/// Serve cases for `target` on this process's stdin/stdout until the
/// parent closes the channel; then exit. Never returns.
pub fn serve(target: Arc<dyn Target>) -> ! {
    let _ = netfd::sys::raise_fd_limit();
    let Ok(chan) = Channel::take_stdio() else {
        eprintln!("harness worker: cannot set up the channel to the parent");
        std::process::exit(EXIT_CHANNEL_LOST);
    };
    let mut input = BufReader::new(&chan.input);
    let mut line = String::new();
    loop {
        line.clear();
        if !chan.intact() {
            std::process::exit(EXIT_CHANNEL_LOST);
        }
        match input.read_line(&mut line) {
            Ok(0) => std::process::exit(0),
            Ok(_) => {}
            Err(_) => std::process::exit(EXIT_CHANNEL_LOST),
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) => run(&target, &req),
            Err(e) => Reply::SetupError(format!("worker: a request that does not parse: {e}")),
        };
        let Ok(text) = serde_json::to_string(&reply) else {
            std::process::exit(EXIT_CHANNEL_LOST);
        };
        if !chan.intact()
            || (&chan.output)
                .write_all(format!("{MARK}{text}\n").as_bytes())
                .is_err()
        {
            std::process::exit(EXIT_CHANNEL_LOST);
        }
    }
}

fn run(target: &Arc<dyn Target>, req: &Request) -> Reply {
    match catch_unwind(AssertUnwindSafe(|| {
        exec::run_case(target.clone(), &req.scenario, &req.config)
    })) {
        Ok(Ok(outcome)) => Reply::Outcome(Box::new(outcome)),
        Ok(Err(e)) => Reply::SetupError(e.0),
        Err(payload) => Reply::Panic(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into()),
        ),
    }
}

/// The worker's two ends of the channel, and who they were.
struct Channel {
    input: File,
    output: File,
    identity: [Option<(u64, u64)>; 2],
}

impl Channel {
    fn take_stdio() -> io::Result<Channel> {
        let floor = high_floor();
        let input = File::from(lift(0, floor)?);
        let output = File::from(lift(1, floor)?);
        let null = File::open("/dev/null")?;
        replace(null.as_raw_fd(), 0)?;
        replace(2, 1)?;
        let identity = [
            netfd::sys::file_identity(input.as_raw_fd()),
            netfd::sys::file_identity(output.as_raw_fd()),
        ];
        Ok(Channel {
            input,
            output,
            identity,
        })
    }

    fn intact(&self) -> bool {
        self.identity[0].is_some()
            && netfd::sys::file_identity(self.input.as_raw_fd()) == self.identity[0]
            && netfd::sys::file_identity(self.output.as_raw_fd()) == self.identity[1]
    }
}

/// The lowest number the channel may take: near the top of the table, far
/// above anything a case opens (a case needing that many descriptors is
/// refused before it runs: `cli::check_fd_limit`), and not so high that
/// the kernel grows every worker's table to a huge size.
fn high_floor() -> i32 {
    let limit = netfd::sys::fd_limit().clamp(64, 4096);
    (limit - 32) as i32
}

/// A close-on-exec duplicate of `fd` at `floor` or above.
fn lift(fd: RawFd, floor: i32) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) only reads `fd` and creates a new
    // descriptor; it touches no memory of ours.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just returned by fcntl, is open, and nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Make `to` a duplicate of `from` (closing what `to` was).
fn replace(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on two numbers touches no memory of ours; `to` is one of
    // stdin/stdout, whose previous files the channel already holds through
    // its own duplicates.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

//! Cases in worker processes: a case's stray syscalls reach only that case.
//!
//! A case's threads share the process's descriptor table with everything
//! else in the process. A target with a lifetime bug makes calls on numbers
//! it no longer owns — that is the bug — and in a shared table such a call
//! lands on whatever holds the number then: another case's socket, another
//! test's, a directory the harness is reading, the report it is writing.
//! So cases run in worker processes, one case at a time per worker, each in
//! a descriptor table of its own.
//!
//! Protocol:
//! - The parent (the CLI, or a user's test) keeps a [`Workers`] pool of
//!   children started on first use from a [`WorkerCommand`]: the harness
//!   binary's hidden `worker` subcommand for netfd's variants, or the
//!   user's own test binary re-run with only the current test for a custom
//!   target ([`Workers::for_this_test`], rusty-fork's way). At most one
//!   worker per thread that asks, so `jobs` threads use `jobs` workers.
//! - A request is one line on the child's stdin: the scenario and its
//!   [`CaseConfig`], JSON. The reply is the rest of the line after
//!   [`MARK`] on the child's stdout; anything else the child prints
//!   (libtest's `running 1 test`, `test NAME ... `) is passed over. A reply is the case's outcome, the
//!   harness's setup error, or the message of a panic.
//! - A worker is retired (killed, and replaced on the next request) after
//!   a case that hung (its threads are left behind and may still make
//!   calls), after a panic, and when it dies or does not answer within
//!   [`answer_bound`]. What the parent saw is then the case's verdict (see
//!   [`lost`]): a case that cannot answer is not clean.
//! - In the child ([`serve`]) the channel lives at numbers near the top of
//!   the table (the kernel hands out the lowest free number, so the case's
//!   sockets do not take them), and its identity is checked before every
//!   use: a stray close or dup2 that reached it ends the worker, so a reply
//!   is never written into a case's socket.
//!
//! Invariant: the same request gives the same reply whichever worker runs
//! it and whatever ran before in that worker, as far as the case itself is
//! deterministic: a worker carries nothing from one case to the next but
//! netfd's poll server (whose registrations a case's teardown releases).

mod serve;

pub use serve::serve;

use crate::exec::{CaseConfig, CaseOutcome, Found, SetupError};
use crate::report::ViolationKind;
use crate::scenario::Scenario;
use crate::target::Target;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The start of every reply line.
pub const MARK: &str = "@@harness-worker@@ ";

/// The environment variable that makes a user's test binary a worker: the
/// test's name and the target's, joined by [`TOKEN_SEPARATOR`].
pub const WORKER_ENV: &str = "HARNESS_WORKER_FOR";
const TOKEN_SEPARATOR: char = '\u{1f}';

/// One case to run.
#[derive(Serialize, Deserialize)]
struct Request {
    scenario: Scenario,
    config: CaseConfig,
}

/// What a worker says about a case.
#[derive(Serialize, Deserialize)]
enum Reply {
    Outcome(Box<CaseOutcome>),
    SetupError(String),
    Panic(String),
}

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

impl WorkerCommand {
    /// This harness binary's `worker` subcommand for a netfd variant.
    pub fn harness_binary(
        variant: netfd::Variant,
        wait: netfd::WaitPath,
    ) -> io::Result<WorkerCommand> {
        Ok(WorkerCommand {
            program: std::env::current_exe()?,
            args: ["worker", "--variant", variant.name(), "--wait", wait.name()]
                .map(OsString::from)
                .into(),
            env: Vec::new(),
        })
    }

    /// The running test binary, asked to run only the calling test, which
    /// then serves `target_name` (libtest names a test's thread after the
    /// test; nextest and `cargo test` both run the binary that way).
    /// `None` when the calling thread has no test's name.
    pub fn this_test(target_name: &str) -> Option<WorkerCommand> {
        let test = std::thread::current().name()?.to_string();
        if test == "main" {
            return None;
        }
        let program = std::env::current_exe().ok()?;
        Some(WorkerCommand {
            program,
            args: [
                test.as_str(),
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ]
            .map(OsString::from)
            .into(),
            env: vec![(
                WORKER_ENV.into(),
                format!("{test}{TOKEN_SEPARATOR}{target_name}").into(),
            )],
        })
    }

    fn spawn(&self) -> io::Result<Worker> {
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start worker {}: {e}", self.program.display()),
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("worker started without pipes"));
        };
        Ok(Worker {
            child,
            stdin,
            stdout,
            pending: Vec::new(),
        })
    }
}

/// The longest a worker may take to answer one case before it is killed
/// and the case judged a hang: far past what the case's own supervisor
/// allows (it ends every case within a few hang bounds), so only a worker
/// stuck where no supervisor can see reaches it.
pub fn answer_bound(cfg: &CaseConfig) -> Duration {
    (cfg.hang_bound * 30).max(Duration::from_secs(60))
}

/// Run one case: in a worker of `workers`, or in this process without.
pub fn run_case(
    workers: Option<&Workers>,
    target: &Arc<dyn Target>,
    scenario: &Scenario,
    cfg: &CaseConfig,
) -> Result<CaseOutcome, SetupError> {
    match workers {
        Some(w) => w.run_case(scenario, cfg),
        None => crate::exec::run_case(target.clone(), scenario, cfg),
    }
}

/// A pool of worker processes for one target.
pub struct Workers {
    command: WorkerCommand,
    idle: Mutex<Vec<Worker>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl Workers {
    pub fn new(command: WorkerCommand) -> Workers {
        Workers {
            command,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Workers for `target` from the running test binary. In the worker
    /// itself (the same test, re-run with [`WORKER_ENV`] naming it and this
    /// target), this call serves cases and never returns. `None` outside a
    /// test's thread: the caller runs cases in its own process.
    pub fn for_this_test(target: &Arc<dyn Target>) -> Option<Arc<Workers>> {
        let name = target.name();
        if let (Ok(token), Some(test)) = (std::env::var(WORKER_ENV), std::thread::current().name())
        {
            if token == format!("{test}{TOKEN_SEPARATOR}{name}") {
                serve(target.clone());
            }
        }
        WorkerCommand::this_test(&name).map(|c| Arc::new(Workers::new(c)))
    }

    /// Run one case in a worker; see the module docs.
    pub fn run_case(
        &self,
        scenario: &Scenario,
        cfg: &CaseConfig,
    ) -> Result<CaseOutcome, SetupError> {
        let mut line = serde_json::to_string(&Request {
            scenario: scenario.clone(),
            config: cfg.clone(),
        })
        .map_err(|e| SetupError(format!("cannot encode the case for a worker: {e}")))?;
        line.push('\n');
        let mut worker = self.checkout()?;
        if worker.send(&line).is_err() {
            // It died while idle (nothing of this case ran there): one
            // fresh worker gets the case.
            worker.retire();
            worker = self.spawn()?;
            if let Err(e) = worker.send(&line) {
                let status = worker.retire();
                return Ok(lost(&format!("could not be sent the case ({e}); {status}")));
            }
        }
        let reply = match worker.receive(answer_bound(cfg)) {
            Ok(Some(text)) => text,
            Ok(None) => {
                let status = worker.retire();
                return Ok(unanswered(answer_bound(cfg), &status));
            }
            Err(e) => {
                let status = worker.retire();
                return Ok(lost(&format!("{e}; {status}")));
            }
        };
        match serde_json::from_str::<Reply>(&reply) {
            Ok(Reply::Outcome(o)) => {
                if o.hung {
                    worker.retire();
                } else {
                    self.checkin(worker);
                }
                Ok(*o)
            }
            Ok(Reply::SetupError(e)) => {
                self.checkin(worker);
                Err(SetupError(e))
            }
            Ok(Reply::Panic(message)) => {
                worker.retire();
                Ok(panicked(&message))
            }
            Err(e) => {
                let status = worker.retire();
                Ok(lost(&format!(
                    "sent a reply that does not parse ({e}); {status}"
                )))
            }
        }
    }

    fn checkout(&self) -> Result<Worker, SetupError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(w) => Ok(w),
            None => self.spawn(),
        }
    }

    fn spawn(&self) -> Result<Worker, SetupError> {
        self.command.spawn().map_err(|e| SetupError(e.to_string()))
    }

    fn checkin(&self, w: Worker) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(w);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|e| e.into_inner()));
        for w in idle {
            w.retire();
        }
    }
}

/// One child process and its pipes.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    /// Bytes read past the last full line.
    pending: Vec<u8>,
}

impl Worker {
    fn send(&mut self, line: &str) -> io::Result<()> {
        self.stdin.write_all(line.as_bytes())?;
        self.stdin.flush()
    }

    /// The next reply line (without [`MARK`]); `Ok(None)` when `bound`
    /// passed first, `Err` when the worker closed its end.
    fn receive(&mut self, bound: Duration) -> io::Result<Option<String>> {
        let until = Instant::now() + bound;
        loop {
            while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line[..end]).into_owned();
                // What the child printed before it served may precede the
                // mark on its line (libtest's `test NAME ... `).
                if let Some(at) = text.find(MARK) {
                    return Ok(Some(text[at + MARK.len()..].to_string()));
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || !readable_within(&self.stdout, left)? {
                return Ok(None);
            }
            let mut buf = [0u8; 64 * 1024];
            match self.stdout.read(&mut buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed its channel without a reply",
                    ))
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Kill the worker and reap it; returns how it ended, for messages.
    fn retire(mut self) -> String {
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) => format!("worker {status}"),
            Err(e) => format!("worker not reaped: {e}"),
        }
    }
}

/// Whether `pipe` has something to read (or is closed) within `wait`.
fn readable_within(pipe: &ChildStdout, wait: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as i32;
    loop {
        // SAFETY: `pfd` is one valid pollfd for the length of the call, and
        // the descriptor is the pipe `pipe` owns and keeps open.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The verdict on a case whose worker died or broke its channel: a call
/// made during the case reached a descriptor the case never owned (the
/// worker's channel to the harness, or something the harness held), or
/// the target ended the process. Either way the case is not clean, and
/// the parent cannot say more than what it saw.
fn lost(what: &str) -> CaseOutcome {
    verdict(
        ViolationKind::FdReuse,
        format!(
            "the worker process running this case {what}: a call made during the case reached a descriptor the case never owned (the harness's own), or ended the process"
        ),
        false,
    )
}

/// The verdict on a case whose worker did not answer within `bound`.
fn unanswered(bound: Duration, status: &str) -> CaseOutcome {
    verdict(
        ViolationKind::Hang,
        format!("the case did not end within {bound:?} (its worker was killed: {status})"),
        true,
    )
}

/// The verdict on a case that panicked in its worker. A panic on a bad
/// descriptor is the harness's own file closed under it (std panics when
/// closedir fails with EBADF): a stray call of the case.
fn panicked(message: &str) -> CaseOutcome {
    let kind = if message.contains("Bad file descriptor") {
        ViolationKind::FdReuse
    } else {
        ViolationKind::BadError
    };
    verdict(kind, format!("the case panicked: {message}"), false)
}

fn verdict(kind: ViolationKind, message: String, hung: bool) -> CaseOutcome {
    CaseOutcome {
        found: vec![Found {
            kind,
            fd: -1,
            owner: 0,
            holder: None,
            op: "case".into(),
            thread: "worker".into(),
            message,
            evidence: None,
            trace: Vec::new(),
        }],
        hung,
        ..CaseOutcome::default()
    }
}

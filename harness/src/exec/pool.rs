//! The threads cases run on, reused from one case to the next.
//!
//! A case's threads are plain OS threads; starting three or four per case
//! is a measurable share of a short case, so a finished worker waits for
//! the next job instead of exiting. Invariants:
//! - A worker takes one job at a time and offers itself again only after
//!   the job returned, so a thread that hangs in a case (the harness reports
//!   it and leaves it behind) is never handed another job.
//! - Nothing a job leaves in thread-local state changes the next case: the
//!   probe is installed per job by a guard; netfd's per-thread wake eventfd
//!   is reused, which is what it is for.
//! - At most [`MAX_IDLE`] workers wait; the rest exit.

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

/// Idle workers kept for reuse.
pub const MAX_IDLE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;
type Work = (Job, Sender<()>);

static IDLE: Mutex<Vec<Sender<Work>>> = Mutex::new(Vec::new());

/// A running job.
pub struct Handle {
    done: Receiver<()>,
}

impl Handle {
    /// Wait for the job to return (or to have panicked).
    pub fn join(self) {
        let _ = self.done.recv();
    }
}

/// Run `job` on an idle worker, or on a new one.
pub fn spawn(job: impl FnOnce() + Send + 'static) -> io::Result<Handle> {
    let (done_tx, done_rx) = channel();
    let mut work: Work = (Box::new(job), done_tx);
    loop {
        let idle = IDLE.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some(worker) = idle else { break };
        match worker.send(work) {
            Ok(()) => return Ok(Handle { done: done_rx }),
            // That worker exited; try the next.
            Err(returned) => work = returned.0,
        }
    }
    start_worker(work)?;
    Ok(Handle { done: done_rx })
}

fn start_worker(first: Work) -> io::Result<()> {
    let (tx, rx) = channel::<Work>();
    std::thread::Builder::new()
        .name("harness-case".into())
        .stack_size(256 << 10)
        .spawn(move || {
            let mut next = Some(first);
            while let Some((job, done)) = next.take() {
                job();
                {
                    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
                    if idle.len() >= MAX_IDLE {
                        let _ = done.send(());
                        return;
                    }
                    idle.push(tx.clone());
                }
                // Offered again before reporting done, so the next case finds it.
                let _ = done.send(());
                next = rx.recv().ok();
            }
        })?;
    Ok(())
}

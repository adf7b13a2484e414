//! Per-thread `/proc` files kept open at high numbers, shared by the
//! kernel-state sampling (`events`) and the run-queue clock (`runqueue`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per-thread `/proc/self/task/TID/<name>` files, each opened once and
/// kept at a high number. Opening one anew at every look took the lowest
/// free number: the one a case's Close had just released and its churner
/// was about to get, so the harness itself became the socket a stale call
/// "reached", and whether it did depended on when it looked (saved cases
/// did not replay).
pub(super) struct TaskFiles {
    name: &'static str,
    files: Mutex<Option<HashMap<i32, Arc<std::fs::File>>>>,
}

impl TaskFiles {
    /// Above the numbers a case's sockets get (the kernel hands out the
    /// lowest free one), below any sane descriptor limit.
    const FD_MIN: i32 = 512;

    pub(super) const fn new(name: &'static str) -> TaskFiles {
        TaskFiles {
            name,
            files: Mutex::new(None),
        }
    }

    /// Thread `tid`'s file, opened on first use.
    pub(super) fn get(&self, tid: i32) -> Option<Arc<std::fs::File>> {
        use std::os::fd::AsRawFd;
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let files = files.get_or_insert_with(HashMap::new);
        if let Some(f) = files.get(&tid) {
            return Some(f.clone());
        }
        let low = std::fs::File::open(format!("/proc/self/task/{tid}/{}", self.name)).ok()?;
        let file = match crate::intercept::raw::dup_above(low.as_raw_fd(), Self::FD_MIN) {
            Ok(high) => std::fs::File::from(high),
            Err(_) => low,
        };
        let file = Arc::new(file);
        files.insert(tid, file.clone());
        Some(file)
    }

    /// Close thread `tid`'s file (the thread is gone).
    pub(super) fn forget(&self, tid: i32) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(files) = files.as_mut() {
            files.remove(&tid);
        }
    }
}

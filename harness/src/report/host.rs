//! The machine a run happened on.

use super::Host;

/// What uname(2) and getrlimit(2) say.
struct SysInfo {
    sysname: String,
    release: String,
    /// Soft RLIMIT_NOFILE; `None` when unlimited or unknown.
    nofile: Option<u64>,
}

fn field(chars: &[libc::c_char]) -> String {
    // The kernel NUL-terminates each field; be defensive if it did not.
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn sys_info() -> SysInfo {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `utsname` is plain data (arrays of c_char), for which all-zero
    // bytes are a valid value. uname(2) and getrlimit(2) only write into the
    // out-parameters, which are valid, aligned, exclusively borrowed locals of
    // the types the calls expect, and keep no pointer after returning.
    let (uts, uname_rc, rlimit_rc) = unsafe {
        let mut uts: libc::utsname = std::mem::zeroed();
        let uname_rc = libc::uname(&mut uts);
        let rlimit_rc = libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        (uts, uname_rc, rlimit_rc)
    };
    let (sysname, release) = if uname_rc == 0 {
        (field(&uts.sysname), field(&uts.release))
    } else {
        (std::env::consts::OS.to_owned(), "unknown".to_owned())
    };
    // rlim_t is u64 on 64-bit Linux but narrower on some 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let nofile =
        (rlimit_rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(u64::from(lim.rlim_cur));
    SysInfo {
        sysname,
        release,
        nofile,
    }
}

impl Host {
    /// Describe the machine this process runs on.
    pub fn detect() -> Host {
        let info = sys_info();
        Host {
            os: info.sysname,
            kernel: info.release,
            cpus: std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
            fd_limit: info.nofile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machine() {
        let h = Host::detect();
        assert_eq!(h.os, "Linux");
        assert!(!h.kernel.is_empty() && h.kernel != "unknown");
        assert!(h.cpus >= 1);
        if let Some(n) = h.fd_limit {
            assert!(n > 0);
        }
    }
}

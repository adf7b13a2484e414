//! What the interposer costs when no case is running, measured as a ratio
//! in one run: the same 512-byte request/response loop over a loopback TCP
//! pair, once through the libc names this library defines (so through the
//! interposer's fast path) and once through glibc's own definitions, found
//! with `dlsym(RTLD_NEXT)` (so exactly the calls a binary without the
//! interposer makes). The two loops alternate in short rounds on two
//! connections, and the figure is the median of the per-round ratios.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Bytes per request and per response.
pub const MESSAGE: usize = 512;

type SendFn = unsafe extern "C" fn(
    libc::c_int,
    *const libc::c_void,
    libc::size_t,
    libc::c_int,
) -> libc::ssize_t;
type RecvFn = unsafe extern "C" fn(
    libc::c_int,
    *mut libc::c_void,
    libc::size_t,
    libc::c_int,
) -> libc::ssize_t;

/// One way of making the calls.
#[derive(Clone, Copy)]
struct Calls {
    send: SendFn,
    recv: RecvFn,
}

impl Calls {
    /// Through the names this binary links: the interposer's.
    fn interposed() -> Calls {
        Calls {
            send: libc::send,
            recv: libc::recv,
        }
    }

    /// glibc's definitions, past this binary's.
    fn direct() -> io::Result<Calls> {
        // SAFETY: dlsym with RTLD_NEXT and NUL-terminated names; a non-null
        // result is glibc's `send`/`recv`, whose C prototypes these
        // function pointer types are.
        unsafe {
            let send = libc::dlsym(libc::RTLD_NEXT, c"send".as_ptr());
            let recv = libc::dlsym(libc::RTLD_NEXT, c"recv".as_ptr());
            if send.is_null() || recv.is_null() {
                return Err(io::Error::other("dlsym(RTLD_NEXT) found no libc send/recv"));
            }
            Ok(Calls {
                send: std::mem::transmute::<*mut libc::c_void, SendFn>(send),
                recv: std::mem::transmute::<*mut libc::c_void, RecvFn>(recv),
            })
        }
    }

    fn send_all(self, fd: i32, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: `rest` is valid for reads of its length.
            let n =
                unsafe { (self.send)(fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
            if n <= 0 {
                return Err(io::Error::last_os_error());
            }
            done += n as usize;
        }
        Ok(())
    }

    fn recv_all(self, fd: i32, buf: &mut [u8]) -> io::Result<bool> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: `rest` is valid for writes of its length.
            let n = unsafe { (self.recv)(fd, rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n == 0 {
                return Ok(false);
            }
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            done += n as usize;
        }
        Ok(true)
    }
}

/// Both ends of a loopback TCP connection, driven by one thread: a
/// request one way, the response back, four calls per round trip and no
/// thread hand-off, so the figure is the calls' cost and not the
/// scheduler's (these machines are shared and heavily loaded).
struct Pair {
    client: std::net::TcpStream,
    server: std::net::TcpStream,
    calls: Calls,
}

impl Pair {
    fn new(calls: Calls) -> io::Result<Pair> {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let client = std::net::TcpStream::connect(l.local_addr()?)?;
        client.set_nodelay(true)?;
        let (server, _) = l.accept()?;
        server.set_nodelay(true)?;
        Ok(Pair {
            client,
            server,
            calls,
        })
    }

    fn round(&self, round_trips: u64) -> io::Result<Duration> {
        let (c, s) = (self.client.as_raw_fd(), self.server.as_raw_fd());
        let mut buf = [7u8; MESSAGE];
        let start = Instant::now();
        for _ in 0..round_trips {
            self.calls.send_all(c, &buf)?;
            if !self.calls.recv_all(s, &mut buf)? {
                return Err(io::Error::other("connection closed"));
            }
            self.calls.send_all(s, &buf)?;
            if !self.calls.recv_all(c, &mut buf)? {
                return Err(io::Error::other("connection closed"));
            }
        }
        Ok(start.elapsed())
    }
}

/// The measurement.
#[derive(Clone, Debug)]
pub struct Overhead {
    pub rounds: usize,
    pub round_trips: u64,
    /// Median nanoseconds per round trip through the interposer.
    pub interposed_ns: f64,
    /// Median nanoseconds per round trip straight to glibc.
    pub direct_ns: f64,
    /// Per round: interposed / direct (the pairs alternate).
    pub ratios: Vec<f64>,
    /// Whether a case was observing some thread (the fast path not taken).
    pub case_running: bool,
}

impl Overhead {
    /// Median of the per-round ratios.
    pub fn ratio(&self) -> f64 {
        median(&self.ratios)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[s.len() / 2]
}

/// `rounds` alternating rounds of `round_trips` request/responses each.
pub fn measure(rounds: usize, round_trips: u64) -> io::Result<Overhead> {
    let interposed = Pair::new(Calls::interposed())?;
    let direct = Pair::new(Calls::direct()?)?;
    // Warm both paths up.
    interposed.round(round_trips / 10 + 1)?;
    direct.round(round_trips / 10 + 1)?;
    let per = |d: Duration| d.as_nanos() as f64 / round_trips.max(1) as f64;
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds {
        // Alternate which goes first, so drift does not favour one.
        let (x, y) = if i % 2 == 0 {
            let x = per(interposed.round(round_trips)?);
            (x, per(direct.round(round_trips)?))
        } else {
            let y = per(direct.round(round_trips)?);
            (per(interposed.round(round_trips)?), y)
        };
        a.push(x);
        b.push(y);
        ratios.push(x / y);
    }
    Ok(Overhead {
        rounds,
        round_trips,
        interposed_ns: median(&a),
        direct_ns: median(&b),
        ratios,
        case_running: super::ACTIVE.load(std::sync::atomic::Ordering::Relaxed) != 0,
    })
}

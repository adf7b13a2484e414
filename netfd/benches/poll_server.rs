//! N parked reads with deadlines: how late each wakes, and what each expiry
//! costs as N grows, through the poll server against the direct wait path.
//!
//! The bench first raises its own soft descriptor limit to the hard limit
//! (and prints both). One round: N UDP sockets (one descriptor each), N
//! reader threads with 64 KiB stacks, released together. Reader i sets its read deadline to its own
//! start + a lead (500 ms + N × 150 µs, so all N park before the first
//! expires) + i/N of a window (`max(100 ms, N × spacing)`), and parks in
//! `recv_from`; nothing is ever sent, so every read ends by its deadline.
//! Rows keep the expiry rate at 10,000/s as N grows (100 to 20,000), then
//! push N = 10,000 to 50,000/s to show where the poll server saturates.
//!
//! `moves` rows: each reader first sets its deadline 10 × 10 ms before its
//! final one and, once all N are parked, the main thread moves every
//! deadline 10 ms later, 10 times, each move waking the parked reader, which
//! re-arms (on the server path: a new timer; the old one stays in the heap
//! and fires stale, waking nobody). The expiry phase then pays for 10 stale
//! timers per real expiry; `move_us` is the main thread's time per move.
//!
//! Per reader: lateness = wake time − deadline (p50, p99, max; an early
//! wake fails the run). Per round, from "all parked" to "all returned": the
//! CPU time of every thread but the main one (readers, poll server) per
//! expiry; on the server path also the poll server thread's own CPU per
//! expiry, the time it spent runnable without a CPU (starved by the threads
//! it wakes and by other processes), and how many timers fired. These come
//! from `/proc/self/task/*/schedstat`; without it they print n/a, as they
//! do when the snapshot could not be read before the first deadline.
//!
//! - `server`: `WaitPath::Server`, the poll server's timer heap fires each
//!   deadline and unparks the reader.
//! - `direct` (baseline): `WaitPath::Direct`, each reader's own ppoll
//!   timeout. It needs a wake eventfd per parked thread, so N readers hold
//!   2N descriptors; a row that needs more than the limit is skipped (with a
//!   hard limit of 20,000, N = 10,000 needs 20,000 + the process's own).
//!
//! A filter argument selects rows by `path/n=N/rate=R/moves=M/`, e.g.
//! `cargo bench -p netfd --bench poll_server -- server/n=10000/rate=10000/`.
//!
//! Not criterion: what matters is a distribution over concurrent waiters,
//! not the time of a repeated call. `cargo bench` runs every row twice and
//! pools the rounds; `cargo test --benches` runs one tiny round as a smoke
//! test.

mod common;

use netfd::{Options, UdpSocket, WaitPath};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const STACK: usize = 64 * 1024;

struct Round {
    /// Wake time − deadline per reader, ns (negative would be an early wake).
    lateness_ns: Vec<i64>,
    /// Over the expiry phase ("all parked" to "all returned"), if the
    /// snapshots bracket it.
    cpu: Option<Cpu>,
    /// Readers that returned something other than the timeout.
    wrong: usize,
    /// Main thread's wall time per deadline move, ns (moves rows).
    move_ns: Option<u64>,
    /// The moves ended after the earliest deadline they were to move: on
    /// a starved machine some readers then rightly time out at a deadline
    /// before their final one, and their lateness says nothing.
    moves_late: bool,
}

/// Deadline moves per reader in a `moves` row, and the step of each.
const MOVES: u32 = 10;
const MOVE_STEP: Duration = Duration::from_millis(10);

/// Scheduler accounting, ns, from `/proc/self/task/*/schedstat`.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// Run time of every thread but the main one (readers, poll server).
    all_run: u64,
    /// Run time of the poll server thread.
    poll_run: u64,
    /// Time the poll server thread was runnable but waiting for a CPU.
    poll_wait: u64,
}

impl Cpu {
    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            all_run: self.all_run.saturating_sub(earlier.all_run),
            poll_run: self.poll_run.saturating_sub(earlier.poll_run),
            poll_wait: self.poll_wait.saturating_sub(earlier.poll_wait),
        }
    }
    fn add(self, other: Cpu) -> Cpu {
        Cpu {
            all_run: self.all_run + other.all_run,
            poll_run: self.poll_run + other.poll_run,
            poll_wait: self.poll_wait + other.poll_wait,
        }
    }
}

fn main_tid() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// The poll server thread's id, if it is running.
fn poll_tid() -> Option<String> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "netfd-poll")
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// Run and runqueue-wait time of every thread of this process but `skip`.
fn snapshot(skip: &str, poll: Option<&str>) -> Option<Cpu> {
    let mut cpu = Cpu::default();
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let entry = entry.ok()?;
        let tid = entry.file_name().to_string_lossy().into_owned();
        if tid == skip {
            continue;
        }
        // A thread that exits between the listing and the read is skipped.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
        let run = fields.next()??;
        let wait = fields.next()??;
        cpu.all_run += run;
        if poll == Some(tid.as_str()) {
            cpu.poll_run = run;
            cpu.poll_wait = wait;
        }
    }
    Some(cpu)
}

fn wait_for(counter: &AtomicUsize, n: usize) {
    while counter.load(Ordering::Acquire) < n {
        thread::sleep(Duration::from_millis(1));
    }
}

fn round(path: WaitPath, n: usize, spacing_us: u64, moves: u32) -> Round {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("loopback");
    let opts = Options::default().with_wait(path);
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind_with(addr, opts).expect("udp bind"))
        .collect();
    let window = Duration::from_micros((spacing_us * n as u64).max(100_000));
    // Each reader's deadline counts from its own start, so it is always
    // armed before its deadline; the lead is long enough for all N to
    // park (and the CPU snapshot to be read) before the first one expires.
    // Moves cost a wake-up and a re-arm each; budget 150 µs per move, and
    // the first (earliest) deadline sits `moves` steps before the final one.
    // (On a loaded machine parking 10,000 threads takes seconds; a shorter
    // lead makes the CPU columns n/a.)
    let lead = Duration::from_micros(500_000 + 150 * n as u64)
        + Duration::from_micros(150 * u64::from(moves) * n as u64)
        + MOVE_STEP * moves;
    // Each reader's final deadline, ns after `epoch`, for the mover.
    let epoch = Instant::now();
    let finals: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let start = Barrier::new(n + 1);
    let done = Barrier::new(n + 1);
    let parked = AtomicUsize::new(0);
    let returned = AtomicUsize::new(0);
    let first_deadline: Mutex<Option<Instant>> = Mutex::new(None);
    let skip = main_tid().unwrap_or_default();
    let poll = if path == WaitPath::Server {
        poll_tid()
    } else {
        None
    };

    thread::scope(|s| {
        let readers: Vec<_> = socks
            .iter()
            .enumerate()
            .map(|(i, sock)| {
                let (start, done, first_deadline) = (&start, &done, &first_deadline);
                let final_at = &finals[i];
                let (parked, returned) = (&parked, &returned);
                thread::Builder::new()
                    .stack_size(STACK)
                    .spawn_scoped(s, move || {
                        start.wait();
                        let at = Instant::now() + lead + window * i as u32 / n as u32;
                        final_at.store((at - epoch).as_nanos() as u64, Ordering::Relaxed);
                        let initial = at - MOVE_STEP * moves;
                        {
                            let mut first = first_deadline.lock().expect("bench mutex");
                            *first = Some(first.map_or(initial, |f: Instant| f.min(initial)));
                        }
                        sock.set_read_deadline(Some(initial))
                            .expect("set_read_deadline");
                        parked.fetch_add(1, Ordering::Release);
                        let mut buf = [0u8; 16];
                        let r = sock.recv_from(&mut buf);
                        let woke = Instant::now();
                        let late = if woke >= at {
                            (woke - at).as_nanos() as i64
                        } else {
                            -((at - woke).as_nanos() as i64)
                        };
                        let timed_out = matches!(&r, Err(e) if netfd::is_timeout(e));
                        returned.fetch_add(1, Ordering::Release);
                        // Stay alive until the CPU snapshot has been read.
                        done.wait();
                        (late, timed_out)
                    })
                    .expect("spawn reader")
            })
            .collect();
        start.wait();
        wait_for(&parked, n);
        // `parked` counts readers about to park; give the last ones time.
        thread::sleep(Duration::from_millis(10));
        let mut move_ns = None;
        let mut moves_late = false;
        if moves > 0 {
            let t0 = Instant::now();
            for k in (0..moves).rev() {
                for (sock, at) in socks.iter().zip(&finals) {
                    let at = epoch + Duration::from_nanos(at.load(Ordering::Relaxed));
                    sock.set_read_deadline(Some(at - MOVE_STEP * k))
                        .expect("set_read_deadline");
                }
            }
            move_ns = Some(t0.elapsed().as_nanos() as u64 / (u64::from(moves) * n as u64));
            let first = first_deadline.lock().expect("bench mutex").expect("n > 0");
            moves_late = Instant::now() > first;
        }
        let cpu0 = snapshot(&skip, poll.as_deref());
        // With moves, the earliest timer (stale by now) is due at the
        // earliest initial deadline; the snapshot must come before it.
        let first = first_deadline.lock().expect("bench mutex").expect("n > 0");
        let snapshot_late = Instant::now() > first;
        wait_for(&returned, n);
        let cpu1 = snapshot(&skip, poll.as_deref());
        done.wait();
        let mut lateness_ns = Vec::with_capacity(n);
        let mut wrong = 0;
        for r in readers {
            let (late, timed_out) = r.join().expect("reader panicked");
            lateness_ns.push(late);
            wrong += usize::from(!timed_out);
        }
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) if !snapshot_late => Some(b.since(a)),
            _ => None,
        };
        Round {
            lateness_ns,
            cpu,
            wrong,
            move_ns,
            moves_late,
        }
    })
}

/// Expiries per second of a row: N deadlines over the round's window.
fn rate(n: usize, spacing_us: u64) -> u64 {
    let window_us = (spacing_us * n as u64).max(100_000);
    n as u64 * 1_000_000 / window_us
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(ns: i64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

fn main() {
    let bench = common::bench_mode();
    // (N, µs between deadlines, moves per deadline): a steady 10,000
    // expiries/s as N grows, N = 10,000 at 50,000/s to find where the poll
    // server saturates, then the deadline-moving workload.
    let (rows, rounds): (&[(usize, u64, u32)], usize) = if bench {
        (
            &[
                (100, 100, 0),
                (1000, 100, 0),
                (5000, 100, 0),
                (10000, 100, 0),
                (20000, 100, 0),
                (10000, 20, 0),
                (1000, 100, MOVES),
                (10000, 100, MOVES),
            ],
            2,
        )
    } else {
        (&[(10, 100, 0), (10, 100, 2)], 1)
    };
    match netfd::sys::raise_fd_limit() {
        Ok((old, new)) if old == new => {
            println!("this process's soft descriptor limit is already its hard limit, {new}")
        }
        Ok((old, new)) => println!(
            "raised this process's soft descriptor limit from {old} to its hard limit {new}"
        ),
        Err(e) => println!("could not raise the soft descriptor limit: {e}"),
    }
    let limit = netfd::sys::fd_limit() as usize;
    println!("poll_server: N parked UDP reads, deadlines spread over max(100 ms, N x spacing)");
    println!(
        "descriptor limit {limit}; futex hash for server-path parking: {:?}; {rounds} round(s) per row, pooled; times in us",
        netfd::sys::futex_hash()
    );
    println!("cpu/exp: CPU of all threads but main per expiry; poll/exp: the poll server");
    println!("thread's CPU per expiry; poll_rq_ms: time per round the poll server thread");
    println!("was runnable but had no CPU; fired: timers that woke a reader; stale: timers");
    println!("that fired for a moved deadline; move_us: main thread's time per deadline move");
    println!(
        "{:<7} {:>6} {:>7} {:>5} {:>9} {:>9} {:>9} {:>8} {:>6} {:>9} {:>9} {:>11} {:>7} {:>7} {:>8}",
        "path",
        "N",
        "exp/s",
        "moves",
        "p50_late",
        "p99_late",
        "max_late",
        "min_late",
        "early",
        "cpu/exp",
        "poll/exp",
        "poll_rq_ms",
        "fired",
        "stale",
        "move_us"
    );
    let mut p99 = std::collections::HashMap::new();
    let mut cpu_per_exp = std::collections::HashMap::new();
    for &(n, spacing, moves) in rows {
        for path in [WaitPath::Server, WaitPath::Direct] {
            // `cargo bench --bench poll_server -- server/n=10000/` runs one row.
            let name = format!(
                "{}/n={n}/rate={}/moves={moves}/",
                path.name(),
                rate(n, spacing)
            );
            if !common::selected(&name) {
                continue;
            }
            // Sockets, plus one wake eventfd per parked thread on the direct
            // path, plus the process's own (stdio, epoll, eventfds): 64.
            let need = n * if path == WaitPath::Direct { 2 } else { 1 } + 64;
            if need > limit {
                println!(
                    "{:<7} {:>6} {:>7} {:>5} skipped: needs ~{need} descriptors, limit {limit}",
                    path.name(),
                    n,
                    rate(n, spacing),
                    moves
                );
                continue;
            }
            let mut late = Vec::new();
            let mut cpu = Some(Cpu::default());
            let mut wrong = 0;
            let mut move_ns = 0;
            let mut moves_late = false;
            let stats0 = netfd::poll::stats();
            for _ in 0..rounds {
                let r = round(path, n, spacing, moves);
                late.extend(r.lateness_ns);
                cpu = cpu.zip(r.cpu).map(|(a, b)| a.add(b));
                wrong += r.wrong;
                move_ns += r.move_ns.unwrap_or(0) / rounds as u64;
                moves_late |= r.moves_late;
            }
            let stats1 = netfd::poll::stats();
            late.sort_unstable();
            let early = late.iter().filter(|&&l| l < 0).count();
            let expiries = (n * rounds) as u64;
            let (cpu_per, poll_per, poll_rq) = match cpu {
                Some(c) if path == WaitPath::Server => (
                    us((c.all_run / expiries) as i64),
                    us((c.poll_run / expiries) as i64),
                    format!("{:.1}", c.poll_wait as f64 / 1e6 / rounds as f64),
                ),
                Some(c) => (us((c.all_run / expiries) as i64), "-".into(), "-".into()),
                None => ("n/a".into(), "n/a".into(), "n/a".into()),
            };
            let (fired, stale) = if path == WaitPath::Server {
                (
                    (stats1.timers_fired - stats0.timers_fired).to_string(),
                    (stats1.timers_stale - stats0.timers_stale).to_string(),
                )
            } else {
                ("-".into(), "-".into())
            };
            let move_us = if moves > 0 {
                us(move_ns as i64)
            } else {
                "-".into()
            };
            println!(
                "{:<7} {:>6} {:>7} {:>5} {:>9} {:>9} {:>9} {:>8} {:>6} {:>9} {:>9} {:>11} {:>7} {:>7} {:>8}",
                path.name(),
                n,
                rate(n, spacing),
                moves,
                us(pct(&late, 0.5)),
                us(pct(&late, 0.99)),
                us(*late.last().expect("n > 0")),
                us(late[0]),
                early,
                cpu_per,
                poll_per,
                poll_rq,
                fired,
                stale,
                move_us
            );
            assert_eq!(wrong, 0, "{wrong} readers did not time out");
            if moves_late {
                println!(
                    "  (row void: the moves ended after the first deadline they were to move, \
                     so {early} readers timed out at an earlier one; machine starved)"
                );
                continue;
            }
            p99.insert((path, n, spacing, moves), pct(&late, 0.99));
            if let Some(c) = cpu {
                cpu_per_exp.insert((path, n, spacing, moves), c.all_run / expiries);
            }
            assert_eq!(early, 0, "{early} readers woke before their deadline");
        }
    }
    for &(n, spacing, moves) in rows {
        if let (Some(s), Some(d)) = (
            p99.get(&(WaitPath::Server, n, spacing, moves)),
            p99.get(&(WaitPath::Direct, n, spacing, moves)),
        ) {
            eprintln!(
                "ratio poll_server p99 lateness N={n} at {}/s moves={moves}: server / direct = {:.2} ({} us vs {} us)",
                rate(n, spacing),
                *s as f64 / (*d).max(1) as f64,
                us(*s),
                us(*d)
            );
        }
    }
    // The target's other half: CPU per expiry against the same path's N = 100.
    for path in [WaitPath::Server, WaitPath::Direct] {
        let Some(&base) = cpu_per_exp.get(&(path, 100, 100, 0)) else {
            continue;
        };
        for &(n, spacing, moves) in rows {
            if let Some(&c) = cpu_per_exp.get(&(path, n, spacing, moves)) {
                eprintln!(
                    "ratio poll_server cpu/expiry {} N={n} at {}/s moves={moves} / N=100: {:.2} ({} us vs {} us)",
                    path.name(),
                    rate(n, spacing),
                    c as f64 / base.max(1) as f64,
                    us(c as i64),
                    us(base as i64)
                );
            }
        }
    }
}

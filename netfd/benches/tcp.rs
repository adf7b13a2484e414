//! TCP over loopback: netfd (both wait paths) against blocking `std::net`
//! with a thread per connection, in the same run.
//!
//! - `tcp_persistent`: Go's `BenchmarkTCP4Persistent` shape. 2×cpus
//!   persistent connections; each client thread writes 512 bytes, the server
//!   thread of that connection echoes them, the client reads 512 back. Time
//!   per message = wall time / messages over all connections.
//! - `tcp_oneshot`: Go's `BenchmarkTCP4OneShot` shape. 2×cpus client threads
//!   each loop connect, write 512, read 512, close; 2×cpus server threads
//!   each loop accept, read 512, write 512, close. Time per connection.
//! - `tcp_concurrent_rw`: one connection, one thread writing 512-byte
//!   messages while another reads the echoes on the same socket (`&stream`
//!   from two threads, as std allows too). Time per message.
//! - `set_read_deadline`: Go's `BenchmarkSetReadDeadline` shape (a connected
//!   socket, a precomputed deadline moved by 1 ns each call), against a plain
//!   `Mutex<Option<Instant>>` store and std's `set_read_timeout` (setsockopt).
//!
//! Every netfd socket is opened with the production variant; `direct` and
//! `server` name its wait path (`WaitPath`). All fixtures of a group exist
//! before its criterion run and its paired rounds (see `common`), so each
//! case runs against the same machine state; threads are created outside
//! the timed span (`common::run_parallel`).

mod common;

use common::Ratio;
use criterion::{black_box, Criterion, SamplingMode};
use netfd::{Options, WaitPath};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

const MSG: usize = 512;

/// A connected stream, whichever library made it.
trait Conn: Send + Sync + 'static {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_some(&self, buf: &[u8]) -> io::Result<usize>;
}

impl Conn for netfd::TcpStream {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self;
        s.read(buf)
    }
    fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self;
        s.write(buf)
    }
}

impl Conn for std::net::TcpStream {
    fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self;
        s.read(buf)
    }
    fn write_some(&self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self;
        s.write(buf)
    }
}

/// Fill `buf`; `Ok(false)` on a clean EOF before the first byte.
fn read_full(c: &impl Conn, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match c.read_some(&mut buf[done..])? {
            0 if done == 0 => return Ok(false),
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => done += n,
        }
    }
    Ok(true)
}

fn write_full(c: &impl Conn, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match c.write_some(buf)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// One library: how to listen, accept and dial.
trait Net: Sync {
    type L: Send + Sync + 'static;
    type C: Conn;
    fn listen(&self) -> Self::L;
    fn addr(l: &Self::L) -> SocketAddr;
    fn accept(l: &Self::L) -> io::Result<Self::C>;
    fn connect(&self, addr: SocketAddr) -> io::Result<Self::C>;
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("loopback address")
}

struct Netfd(WaitPath);

impl Net for Netfd {
    type L = netfd::TcpListener;
    type C = netfd::TcpStream;
    fn listen(&self) -> Self::L {
        let opts = Options::default().with_wait(self.0);
        netfd::TcpListener::bind_with(loopback(), opts).expect("netfd listen")
    }
    fn addr(l: &Self::L) -> SocketAddr {
        l.local_addr().expect("netfd local_addr")
    }
    fn accept(l: &Self::L) -> io::Result<Self::C> {
        l.accept().map(|(c, _)| c)
    }
    fn connect(&self, addr: SocketAddr) -> io::Result<Self::C> {
        netfd::TcpStream::connect_with(addr, Options::default().with_wait(self.0))
    }
}

struct Std;

impl Net for Std {
    type L = std::net::TcpListener;
    type C = std::net::TcpStream;
    fn listen(&self) -> Self::L {
        std::net::TcpListener::bind(loopback()).expect("std listen")
    }
    fn addr(l: &Self::L) -> SocketAddr {
        l.local_addr().expect("std local_addr")
    }
    fn accept(l: &Self::L) -> io::Result<Self::C> {
        let (c, _) = l.accept()?;
        // As netfd (and Go) do for every TCP connection.
        c.set_nodelay(true)?;
        Ok(c)
    }
    fn connect(&self, addr: SocketAddr) -> io::Result<Self::C> {
        let c = std::net::TcpStream::connect(addr)?;
        c.set_nodelay(true)?;
        Ok(c)
    }
}

/// 2×cpus, as Go's benchmarks.
fn concurrency() -> usize {
    2 * thread::available_parallelism().map_or(1, |n| n.get())
}

/// Echo 512-byte messages until the peer closes.
fn echo(c: impl Conn) {
    let mut buf = [0u8; MSG];
    while let Ok(true) = read_full(&c, &mut buf) {
        if write_full(&c, &buf).is_err() {
            break;
        }
    }
}

/// Established connections, each with its server-side echo thread.
struct Persistent<C> {
    clients: Vec<C>,
    servers: Vec<JoinHandle<()>>,
}

impl<C: Conn> Persistent<C> {
    fn new<N: Net<C = C>>(net: &N, conns: usize) -> Persistent<C> {
        let ln = net.listen();
        let addr = N::addr(&ln);
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..conns {
            clients.push(net.connect(addr).expect("connect"));
            let s = N::accept(&ln).expect("accept");
            servers.push(thread::spawn(move || echo(s)));
        }
        Persistent { clients, servers }
    }

    /// `msgs` request/response round trips spread over all connections,
    /// one client thread per connection; returns the wall time.
    fn run(&self, msgs: u64) -> Duration {
        let n = self.clients.len() as u64;
        common::run_parallel(self.clients.len(), |i| {
            let c = &self.clients[i];
            let share = msgs / n + u64::from((i as u64) < msgs % n);
            let mut buf = [0u8; MSG];
            for _ in 0..share {
                write_full(c, &buf).expect("client write");
                assert!(read_full(c, &mut buf).expect("client read"));
            }
        })
    }

    fn shutdown(self) {
        // Closing the clients sends EOF to each echo thread.
        drop(self.clients);
        for s in self.servers {
            s.join().expect("echo thread panicked");
        }
    }
}

fn persistent(c: &mut Criterion) {
    if !common::selected("tcp_persistent") {
        return;
    }
    let conns = concurrency();
    let direct = Persistent::new(&Netfd(WaitPath::Direct), conns);
    let server = Persistent::new(&Netfd(WaitPath::Server), conns);
    let std = Persistent::new(&Std, conns);
    let run_direct = |n| direct.run(n);
    let run_server = |n| server.run(n);
    let run_std = |n| std.run(n);
    let cases: [common::Case; 3] = [
        ("netfd_direct", &run_direct),
        ("netfd_server", &run_server),
        ("std_blocking", &run_std),
    ];
    let mut g = c.benchmark_group("tcp_persistent");
    g.sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(3));
    for (name, run) in cases {
        g.bench_function(name, |b| b.iter_custom(run));
    }
    g.finish();
    let paired = common::paired(&cases, 41, Duration::from_millis(25));
    common::record_paired(
        "tcp_persistent",
        &cases,
        &paired,
        &[(0, 2, Some(1.25)), (1, 2, None)],
    );
    direct.shutdown();
    server.shutdown();
    std.shutdown();
}

/// Server threads that each loop accept, echo one message, close.
struct OneShotServer<N: Net> {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    _net: std::marker::PhantomData<N>,
}

impl<N: Net + 'static> OneShotServer<N> {
    fn new(net: &N, threads: usize) -> OneShotServer<N> {
        let ln = Arc::new(net.listen());
        let addr = N::addr(&ln);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..threads)
            .map(|_| {
                let (ln, stop) = (ln.clone(), stop.clone());
                thread::spawn(move || {
                    let mut buf = [0u8; MSG];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(c) = N::accept(&ln) else { continue };
                        if let Ok(true) = read_full(&c, &mut buf) {
                            let _ = write_full(&c, &buf);
                        }
                    }
                })
            })
            .collect();
        OneShotServer {
            addr,
            stop,
            workers,
            _net: std::marker::PhantomData,
        }
    }

    /// `conns` one-shot connections from 2×cpus client threads.
    fn run(&self, net: &N, conns: u64) -> Duration {
        let n = concurrency();
        common::run_parallel(n, |i| {
            let share = conns / n as u64 + u64::from((i as u64) < conns % n as u64);
            let mut buf = [0u8; MSG];
            for _ in 0..share {
                let c = net.connect(self.addr).expect("one-shot connect");
                write_full(&c, &buf).expect("one-shot write");
                assert!(read_full(&c, &mut buf).expect("one-shot read"));
            }
        })
    }

    fn shutdown(self, net: &N) {
        self.stop.store(true, Ordering::Relaxed);
        // One connection per worker gets each out of accept to see `stop`.
        for _ in &self.workers {
            let _ = net.connect(self.addr);
        }
        for w in self.workers {
            w.join().expect("one-shot server thread panicked");
        }
    }
}

fn oneshot(c: &mut Criterion) {
    if !common::selected("tcp_oneshot") {
        return;
    }
    let threads = concurrency();
    let (net_direct, net_server) = (Netfd(WaitPath::Direct), Netfd(WaitPath::Server));
    let direct = OneShotServer::new(&net_direct, threads);
    let server = OneShotServer::new(&net_server, threads);
    let std = OneShotServer::new(&Std, threads);
    let run_direct = |n| direct.run(&net_direct, n);
    let run_server = |n| server.run(&net_server, n);
    let run_std = |n| std.run(&Std, n);
    let cases: [common::Case; 3] = [
        ("netfd_direct", &run_direct),
        ("netfd_server", &run_server),
        ("std_blocking", &run_std),
    ];
    let mut g = c.benchmark_group("tcp_oneshot");
    g.sampling_mode(SamplingMode::Flat);
    for (name, run) in cases {
        g.bench_function(name, |b| b.iter_custom(run));
    }
    g.finish();
    let paired = common::paired(&cases, 31, Duration::from_millis(30));
    common::record_paired(
        "tcp_oneshot",
        &cases,
        &paired,
        &[(0, 2, None), (1, 2, None)],
    );
    direct.shutdown(&net_direct);
    server.shutdown(&net_server);
    std.shutdown(&Std);
}

/// One connection: a writer thread and a reader thread on the same socket,
/// the peer echoing. Returns the wall time for `msgs` messages each way.
fn concurrent_rw(c: &impl Conn, msgs: u64) -> Duration {
    common::run_parallel(2, |i| {
        let mut buf = [0u8; MSG];
        for _ in 0..msgs {
            if i == 0 {
                write_full(c, &buf).expect("rw write");
            } else {
                assert!(read_full(c, &mut buf).expect("rw read"));
            }
        }
    })
}

fn concurrent(c: &mut Criterion) {
    if !common::selected("tcp_concurrent_rw") {
        return;
    }
    let direct = Persistent::new(&Netfd(WaitPath::Direct), 1);
    let server = Persistent::new(&Netfd(WaitPath::Server), 1);
    let std = Persistent::new(&Std, 1);
    let run_direct = |n| concurrent_rw(&direct.clients[0], n);
    let run_server = |n| concurrent_rw(&server.clients[0], n);
    let run_std = |n| concurrent_rw(&std.clients[0], n);
    let cases: [common::Case; 3] = [
        ("netfd_direct", &run_direct),
        ("netfd_server", &run_server),
        ("std_blocking", &run_std),
    ];
    let mut g = c.benchmark_group("tcp_concurrent_rw");
    g.sampling_mode(SamplingMode::Flat);
    for (name, run) in cases {
        g.bench_function(name, |b| b.iter_custom(run));
    }
    g.finish();
    let paired = common::paired(&cases, 41, Duration::from_millis(25));
    common::record_paired(
        "tcp_concurrent_rw",
        &cases,
        &paired,
        &[(0, 2, None), (1, 2, None)],
    );
    direct.shutdown();
    server.shutdown();
    std.shutdown();
}

fn set_read_deadline(c: &mut Criterion) {
    if !common::selected("set_read_deadline") {
        return;
    }
    let ours = Persistent::new(&Netfd(WaitPath::Direct), 1);
    let std = Persistent::new(&Std, 1);
    let far = Instant::now() + Duration::from_secs(3600);
    // As Go's benchmark, the deadline moves by 1 ns every call.
    let run_ours = |n: u64| {
        let stream = &ours.clients[0];
        let mut deadline = far;
        common::time_loop(n, || {
            stream
                .set_read_deadline(Some(deadline))
                .expect("set_read_deadline");
            deadline += Duration::from_nanos(1);
        })
    };
    let slot: Mutex<Option<Instant>> = Mutex::new(None);
    let run_mutex = |n: u64| {
        let mut deadline = far;
        common::time_loop(n, || {
            *black_box(&slot).lock().expect("bench mutex") = Some(deadline);
            deadline += Duration::from_nanos(1);
        })
    };
    let run_std = |n: u64| {
        let stream = &std.clients[0];
        let mut timeout = Duration::from_secs(3600);
        common::time_loop(n, || {
            stream
                .set_read_timeout(Some(timeout))
                .expect("set_read_timeout");
            timeout += Duration::from_micros(1);
        })
    };
    let cases: [common::Case; 3] = [
        ("netfd", &run_ours),
        ("baseline_mutex_store", &run_mutex),
        ("std_set_read_timeout", &run_std),
    ];
    let mut g = c.benchmark_group("set_read_deadline");
    for (name, run) in cases {
        g.bench_function(name, |b| b.iter_custom(run));
    }
    g.finish();
    let paired = common::paired(&cases, 201, Duration::from_millis(1));
    common::record_paired(
        "set_read_deadline",
        &cases,
        &paired,
        &[(0, 1, None), (0, 2, None)],
    );
    ours.shutdown();
    std.shutdown();
}

fn main() {
    let since = SystemTime::now();
    let mut c = common::criterion();
    persistent(&mut c);
    oneshot(&mut c);
    concurrent(&mut c);
    set_read_deadline(&mut c);
    c.final_summary();
    let r = |group, ours, baseline, target| Ratio {
        group,
        ours,
        baseline,
        target,
    };
    common::print_ratios(
        since,
        &[
            r("tcp_persistent", "netfd_direct", "std_blocking", Some(1.25)),
            r("tcp_persistent", "netfd_server", "std_blocking", None),
            r("tcp_oneshot", "netfd_direct", "std_blocking", None),
            r("tcp_oneshot", "netfd_server", "std_blocking", None),
            r("tcp_concurrent_rw", "netfd_direct", "std_blocking", None),
            r("tcp_concurrent_rw", "netfd_server", "std_blocking", None),
            r("set_read_deadline", "netfd", "baseline_mutex_store", None),
            r("set_read_deadline", "netfd", "std_set_read_timeout", None),
        ],
    );
    // Go 1.19 on this machine: one-shot 78 µs, SetReadDeadline 195 ns.
    common::print_absolute(since, "tcp_oneshot", "netfd_direct", 78_000.0);
    common::print_absolute(since, "set_read_deadline", "netfd", 200.0);
}

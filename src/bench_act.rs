//! `axon bench act`: `POST /v1/act` with the echo driver and the durable journal against a
//! hello-world actix-web route in the same run, on this machine.
//!
//! - throughput: `connections` keep-alive clients, each sending its next request as soon
//!   as the last is answered, for `seconds`, first to the hello-world route, then to the
//!   one door;
//! - latency at a fixed rate: requests sent on a schedule (open loop, spread over the
//!   connections), each one's latency counted from when it was due, so a stall is not
//!   hidden (no coordinated omission); p50, p99 and the largest;
//! - the floor that latency stands on: two back-to-back `fdatasync`s of a small append on
//!   the same file system (an action's dispatch and its result are each one group
//!   commit), p50 and p99;
//! - what a request costs the server in processor time in each throughput run: the
//!   process's CPU time (user and system) over the run less the clients' own threads',
//!   per answered request. Both servers run in this process, one at a time, so this is
//!   the hello-world server's cost in its run and the node's in the other; it varies far
//!   less from run to run than requests per second on a shared machine.
//!
//! It measures and prints; it asserts nothing.

use anyhow::{bail, Context};
use axon_actors::act::Stage;
use hdrhistogram::Histogram;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How one benchmark run is shaped.
pub struct ActBench {
    pub seconds: u64,
    pub connections: usize,
    /// Requests per second of the fixed-rate run.
    pub rate: u64,
}

/// Reads one HTTP/1.1 response (with a Content-Length) from `r`; answers its status.
fn read_response(r: &mut BufReader<TcpStream>) -> anyhow::Result<u16> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        bail!("the server closed the connection");
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("a response without a status")?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(status)
}

/// What one connection sends: its `n`th request's bytes.
pub(crate) type MakeRequest = Arc<dyn Fn(usize, u64) -> Vec<u8> + Send + Sync>;

/// What the kernel counted so far for the calling thread (`RUSAGE_THREAD`) or the whole
/// process (`RUSAGE_SELF`): processor time (user and system) and context switches
/// (voluntary and not), each switch being a thread that stopped to wait or was made to.
#[derive(Clone, Copy, Default)]
struct Usage {
    cpu: Duration,
    switches: u64,
}

impl Usage {
    fn of(who: libc::c_int) -> Usage {
        // SAFETY: getrusage writes into the struct it is given and nothing else.
        let u = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut u);
            u
        };
        let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
        Usage {
            cpu: t(u.ru_utime) + t(u.ru_stime),
            switches: (u.ru_nvcsw + u.ru_nivcsw) as u64,
        }
    }

    fn less(self, other: Usage) -> Usage {
        Usage {
            cpu: self.cpu.saturating_sub(other.cpu),
            switches: self.switches.saturating_sub(other.switches),
        }
    }

    fn plus(self, other: Usage) -> Usage {
        Usage {
            cpu: self.cpu + other.cpu,
            switches: self.switches + other.switches,
        }
    }
}

/// What one load run measured.
pub(crate) struct Load {
    /// Requests answered with 2xx, and with anything else.
    pub ok: u64,
    pub other: u64,
    /// Latencies in µs.
    pub latency: Histogram<u64>,
    pub elapsed: Duration,
    /// The process's processor time and context switches over the run less the client
    /// threads' own: what the server (and anything else running meanwhile in this
    /// process) used.
    server: Usage,
}

impl Load {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The server's processor time per answered request, in µs.
    pub fn cpu_us_per_request(&self) -> f64 {
        self.server.cpu.as_secs_f64() * 1e6 / self.answered() as f64
    }

    /// The server's context switches per answered request: how often its threads
    /// stopped to wait for one another, the network or the disk.
    pub fn switches_per_request(&self) -> f64 {
        self.server.switches as f64 / self.answered() as f64
    }

    fn answered(&self) -> u64 {
        (self.ok + self.other).max(1)
    }
}

/// Runs `connections` clients against `addr`. With `rate`, each sends on a schedule and
/// latencies count from when a request was due; without, each sends back to back.
pub(crate) fn load(
    addr: SocketAddr,
    connections: usize,
    seconds: u64,
    rate: Option<u64>,
    make: MakeRequest,
) -> anyhow::Result<Load> {
    let before = Usage::of(libc::RUSAGE_SELF);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..connections)
        .map(|c| {
            let (stop, ok, other, make) = (stop.clone(), ok.clone(), other.clone(), make.clone());
            std::thread::spawn(move || -> anyhow::Result<(Histogram<u64>, Usage)> {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let stream = TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                let mut w = stream.try_clone()?;
                let mut r = BufReader::new(stream);
                let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r as f64));
                let first = Instant::now()
                    + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / connections as f64));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let due = match interval {
                        Some(i) => {
                            let due = first + i.mul_f64(n as f64);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                            due
                        }
                        None => Instant::now(),
                    };
                    w.write_all(&make(c, n))?;
                    let status = read_response(&mut r)?;
                    hist.saturating_record(due.elapsed().as_micros() as u64);
                    if (200..300).contains(&status) {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
                Ok((hist, Usage::of(libc::RUSAGE_THREAD)))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut clients = Usage::default();
    for h in handles {
        let (h, usage) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        all.add(&h)?;
        clients = clients.plus(usage);
    }
    Ok(Load {
        ok: ok.load(Ordering::Relaxed),
        other: other.load(Ordering::Relaxed),
        latency: all,
        elapsed,
        server: Usage::of(libc::RUSAGE_SELF).less(before).less(clients),
    })
}

/// A hello-world actix-web server on loopback, on a thread of its own.
fn hello_world(workers: usize) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(|| {
                actix_web::App::new().route(
                    "/hello",
                    actix_web::web::get().to(|| async { "hello world" }),
                )
            })
            .workers(workers)
            .disable_signals()
            .bind("127.0.0.1:0");
            match server {
                Ok(s) => {
                    let _ = tx.send(Ok(s.addrs()[0]));
                    let _ = s.run().await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        });
    });
    rx.recv()?
        .map_err(|e| anyhow::anyhow!("hello-world server: {e}"))
}

/// An Axon node with the embedded defaults, its data in `dir`, on a thread of its own.
fn node(dir: &Path) -> anyhow::Result<(SocketAddr, String)> {
    node_with(dir, crate::Config::defaults())
}

/// An Axon node with `cfg`, its data in `dir`, on loopback, on a thread of its own: its
/// address and admin token.
pub(crate) fn node_with(
    dir: &Path,
    mut cfg: crate::Config,
) -> anyhow::Result<(SocketAddr, String)> {
    cfg.data_dir = dir.to_owned();
    cfg.http.listen = "127.0.0.1:0".into();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            match crate::start(&cfg, Default::default()).await {
                Ok(mut node) => {
                    let _ = tx.send(Ok((node.http_addr, node.admin_token.clone())));
                    let _ = (&mut node.root.exit).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("{e:#}")));
                }
            }
        });
    });
    rx.recv()?
        .map_err(|e| anyhow::anyhow!("the node did not start: {e}"))
}

/// Two appends of 256 bytes, each made durable with `fdatasync`, back to back, `pairs`
/// times: the p50 and p99 of one pair, in µs.
fn fsync_pairs(dir: &Path, pairs: usize) -> anyhow::Result<Histogram<u64>> {
    let path = dir.join("fsync-pairs.bin");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let record = [0x5au8; 256];
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..pairs {
        let t = Instant::now();
        for _ in 0..2 {
            f.write_all(&record)?;
            f.sync_data()?;
        }
        hist.saturating_record(t.elapsed().as_micros() as u64);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(hist)
}

/// One histogram's sum, count and cumulative buckets (`le`, count), as `/metrics` shows it.
#[derive(Clone, Default)]
struct Totals {
    sum: f64,
    count: f64,
    buckets: Vec<(f64, f64)>,
}

impl Totals {
    /// What was observed between `self` (taken first) and `later`: the mean, and the
    /// bound of the bucket the 99th percentile falls in, or why there is none.
    fn since(&self, later: &Totals) -> (f64, Result<f64, &'static str>) {
        let count = later.count - self.count;
        if count <= 0.0 {
            return (0.0, Err("none observed"));
        }
        let mean = (later.sum - self.sum) / count.max(1.0);
        let p99 = later
            .buckets
            .iter()
            .zip(
                self.buckets
                    .iter()
                    .map(|b| b.1)
                    .chain(std::iter::repeat(0.0)),
            )
            .find(|((_, n1), n0)| n1 - n0 >= 0.99 * count)
            .map(|((le, _), _)| *le)
            .filter(|le| le.is_finite())
            .ok_or("beyond the last bucket");
        (mean, p99)
    }
}

/// The totals of each act stage (`axon_act_stage_seconds{stage}`), then of the journal's
/// commits (`axon_journal_commit_seconds`, `axon_journal_commit_entries`), read from the
/// node's `/metrics`.
fn stage_totals(addr: SocketAddr, token: &str) -> anyhow::Result<Vec<Totals>> {
    let text = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(token)
        .send()?
        .error_for_status()?
        .text()?;
    let value = |key: &str| -> f64 {
        let key = format!("{key} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    // `<name>_bucket{<labels>le="<bound>"} <count>`, in the order the lines come.
    let buckets = |name: &str, labels: &str| -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{{labels}le=\"");
        text.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, n) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, n.trim().parse().ok()?))
            })
            .collect()
    };
    let totals = |name: &str, labels: &str, with_buckets: bool| Totals {
        sum: value(&format!("{name}_sum{}", braced(labels))),
        count: value(&format!("{name}_count{}", braced(labels))),
        buckets: if with_buckets {
            buckets(name, &labels_then_comma(labels))
        } else {
            vec![]
        },
    };
    let mut out: Vec<Totals> = Stage::ALL
        .map(Stage::as_str)
        .into_iter()
        .map(|s| totals("axon_act_stage_seconds", &format!("stage=\"{s}\""), true))
        .collect();
    out.push(totals("axon_journal_commit_seconds", "", true));
    out.push(totals("axon_journal_commit_entries", "", false));
    Ok(out)
}

/// `{labels}`, or nothing without labels.
fn braced(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// The labels before a bucket's `le`.
fn labels_then_comma(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{labels},")
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Runs the benchmark with its data in `base` and prints the figures.
pub fn act(base: &Path, b: &ActBench) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("axon-bench-act-")
        .tempdir_in(base)
        .with_context(|| format!("creating a directory in {}", base.display()))?;
    let workers = crate::Config::defaults().http.workers;
    println!(
        "bench act: {} connections, {} s per run, {workers} HTTP workers each, data in {}",
        b.connections,
        b.seconds,
        dir.path().display()
    );
    let hello = hello_world(workers)?;
    let hello = load(
        hello,
        b.connections,
        b.seconds,
        None,
        Arc::new(|_, _| b"GET /hello HTTP/1.1\r\nhost: bench\r\n\r\n".to_vec()),
    )?;
    let hello_rps = hello.per_second();
    println!(
        "  hello-world GET:        {hello_rps:>9.0} req/s  (p99 {:.2} ms, {} non-2xx)  server CPU {:.1} us/request, {:.2} context switches/request",
        ms(hello.latency.value_at_quantile(0.99)),
        hello.other,
        hello.cpu_us_per_request(),
        hello.switches_per_request()
    );

    let (addr, token) = node(&dir.path().join("node"))?;
    let act_request = |prefix: &'static str| -> MakeRequest {
        let token = token.clone();
        Arc::new(move |c, n| {
            let body = format!(
                r#"{{"capability":"urn:axon:cap:echo","intent_id":"{prefix}-{c}-{n}","args":{{"n":{n}}}}}"#
            );
            format!(
                "POST /v1/act HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
    };
    let act = load(addr, b.connections, b.seconds, None, act_request("max"))?;
    let act_rps = act.per_second();
    println!(
        "  POST /v1/act (echo):    {act_rps:>9.0} req/s  (p99 {:.2} ms, {} non-2xx)  = {:.3}x hello-world (goal >= 0.3x)",
        ms(act.latency.value_at_quantile(0.99)),
        act.other,
        act_rps / hello_rps
    );
    println!(
        "  node CPU {:.1} us/action = {:.1}x the hello-world server's per request; {:.2} context switches/action",
        act.cpu_us_per_request(),
        act.cpu_us_per_request() / hello.cpu_us_per_request().max(f64::MIN_POSITIVE),
        act.switches_per_request()
    );

    let before = stage_totals(addr, &token)?;
    let paced = load(
        addr,
        b.connections,
        b.seconds,
        Some(b.rate),
        act_request("paced"),
    )?;
    let after = stage_totals(addr, &token)?;
    let pairs = fsync_pairs(dir.path(), 2000)?;
    let floor = ms(pairs.value_at_quantile(0.99));
    println!(
        "  POST /v1/act at {} req/s: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} answered, {} non-2xx; {:.2} context switches/action)",
        b.rate,
        ms(paced.latency.value_at_quantile(0.5)),
        ms(paced.latency.value_at_quantile(0.99)),
        ms(paced.latency.max()),
        paced.ok,
        paced.other,
        paced.switches_per_request()
    );
    println!(
        "  two back-to-back fdatasyncs: p50 {:.2} ms  p99 {floor:.2} ms  -> goal for the p99 above: <= {:.2} ms",
        ms(pairs.value_at_quantile(0.5)),
        floor + 0.5
    );
    // Over the fixed-rate run alone: the counts before it are taken off.
    let seen: Vec<(f64, Result<f64, &str>)> =
        before.iter().zip(&after).map(|(b, a)| b.since(a)).collect();
    let bound = |p99: Result<f64, &str>| match p99 {
        Ok(le) => format!("<= {:.3} ms", le * 1000.0),
        Err(why) => why.to_owned(),
    };
    let stages: Vec<String> = Stage::ALL
        .iter()
        .zip(&seen)
        .map(|(stage, (mean, p99))| {
            format!(
                "{} {:.3} (p99 {})",
                stage.as_str(),
                mean * 1000.0,
                bound(*p99)
            )
        })
        .collect();
    println!(
        "  ms per stage at {} req/s, mean (p99 as the bound of its bucket) from axon_act_stage_seconds: {}",
        b.rate,
        stages.join(", ")
    );
    let (commit, commit_p99) = seen[Stage::ALL.len()];
    println!(
        "  journal group commits at {} req/s: mean {:.3} ms to write and fdatasync (p99 {}), {:.1} entries each",
        b.rate,
        commit * 1000.0,
        bound(commit_p99),
        seen[Stage::ALL.len() + 1].0
    );
    Ok(())
}

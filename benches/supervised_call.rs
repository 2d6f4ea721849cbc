//! Request round trip through a supervised worker vs a raw actix actor `send`, and one
//! worker at saturation with immediate rejection. Run: `cargo bench --bench supervised_call`.

use actix::prelude::*;
use axon_supervisors::*;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::Value;
use std::time::{Duration, Instant};

struct RawEcho;
impl Actor for RawEcho {
    type Context = Context<Self>;
}

struct Ping(Value);
impl Message for Ping {
    type Result = Value;
}
impl Handler<Ping> for RawEcho {
    type Result = MessageResult<Ping>;
    fn handle(&mut self, msg: Ping, _: &mut Self::Context) -> MessageResult<Ping> {
        MessageResult(msg.0)
    }
}

/// A worker that answers each request with itself: the least a supervised call can do.
#[derive(Default)]
struct Echo;

impl Worker for Echo {
    type Request = Value;
    type Response = Value;

    fn handle(&mut self, request: Value, _cx: &mut WorkerContext) -> Result<Value, WorkerError> {
        Ok(request)
    }
}

fn tree(sys: &SystemRunner, capacity: u64) -> (Root, WorkerRef<Echo>) {
    sys.block_on(async move {
        let env = Env::new(&prometheus::Registry::new(), SystemClock::shared(), 1).unwrap();
        let (child, echo) = worker(
            &env,
            WorkerSpec {
                id: "echo".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: capacity,
                factory: || Ok(Echo),
            },
        );
        let root = start_root(
            &env,
            SupervisorSpec {
                id: "root".into(),
                strategy: Strategy::OneForOne,
                intensity: Intensity {
                    max_restarts: 3,
                    period: Duration::from_secs(5),
                },
                backoff: BackoffPolicy::none(),
                command_capacity: 4,
                children: vec![child],
            },
        )
        .await
        .unwrap();
        (root, echo)
    })
}

fn round_trip(c: &mut Criterion) {
    let sys = System::new();
    let raw = sys.block_on(async { RawEcho.start() });
    let (_root, echo) = tree(&sys, 1024);
    let opts = CallOptions {
        deadline: Duration::from_secs(5),
        correlation_id: None,
    };
    let mut g = c.benchmark_group("round_trip");
    g.bench_function("raw_actix_send", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let v = raw.send(Ping(Value::from(i))).await.unwrap();
                    std::hint::black_box(v);
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("supervised_call", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let v = echo.call(Value::from(i), &opts).await.unwrap();
                    std::hint::black_box(v);
                }
                start.elapsed()
            })
        })
    });
    g.finish();

    // The ratio the goal is stated in, measured so that load from elsewhere on the
    // machine weighs on both sides alike: rounds of raw sends and supervised calls
    // alternate, and the median of the rounds' ratios is reported.
    const ROUNDS: usize = 21;
    const CALLS: u64 = 50_000;
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            sys.block_on(async {
                let start = Instant::now();
                for i in 0..CALLS {
                    std::hint::black_box(raw.send(Ping(Value::from(i))).await.unwrap());
                }
                let raw_time = start.elapsed();
                let start = Instant::now();
                for i in 0..CALLS {
                    std::hint::black_box(echo.call(Value::from(i), &opts).await.unwrap());
                }
                start.elapsed().as_secs_f64() / raw_time.as_secs_f64()
            })
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "round trip, supervised / raw, {ROUNDS} alternating rounds of {CALLS} calls: median {:.3}, min {:.3}, max {:.3}",
        ratios[ROUNDS / 2],
        ratios[0],
        ratios[ROUNDS - 1]
    );
}

/// Offers `burst` calls at once to a worker whose mailbox holds `capacity`: the first
/// `capacity` are handled, the rest are refused with `Overloaded` without queueing.
fn saturation(c: &mut Criterion) {
    const CAPACITY: u64 = 64;
    const BURST: usize = 1024;
    let sys = System::new();
    let (_root, echo) = tree(&sys, CAPACITY);
    let opts = CallOptions {
        deadline: Duration::from_secs(5),
        correlation_id: None,
    };
    let mut handled = 0u64;
    let mut rejected = 0u64;
    let mut busy = Duration::ZERO;
    let mut g = c.benchmark_group("saturation");
    g.throughput(criterion::Throughput::Elements(BURST as u64));
    g.bench_function("burst_1024_into_capacity_64", |b| {
        b.iter_custom(|iters| {
            sys.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let calls = (0..BURST).map(|i| echo.call(Value::from(i), &opts));
                    for r in futures::future::join_all(calls).await {
                        match r {
                            Ok(_) => handled += 1,
                            Err(CallError::Overloaded { .. }) => rejected += 1,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                let d = start.elapsed();
                busy += d;
                d
            })
        })
    });
    g.finish();
    let secs = busy.as_secs_f64();
    println!(
        "saturation: handled {:.0}/s, rejected {:.0}/s ({handled} handled, {rejected} rejected in {secs:.2}s)",
        handled as f64 / secs,
        rejected as f64 / secs,
    );
}

criterion_group!(benches, round_trip, saturation);
criterion_main!(benches);

//! One `wasm` driver call, instantiation included (a fresh store, in-memory pipes, the
//! module's `_start`), against the native `echo` driver, through `act_checked` both; and
//! the same call made from inside an async runtime, and through the driver's supervised
//! worker, as the act pipeline makes it.
//! Run: `cargo bench -p axon-drivers --bench wasm_call`.

use axon_drivers::driver::{act_checked, Call, Driver};
use axon_drivers::host::{Action, DriverAnswer, DriverCall, Prepared, Ticket};
use axon_drivers::manifest::Manifest;
use axon_supervisors::{
    start_root, BackoffPolicy, CallOptions, Env, Intensity, RestartType, Shutdown, Strategy,
    SupervisorSpec, SystemClock, WorkerSpec,
};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn wasm_call(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let wat = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/echo.wat");
    let bytes = wat::parse_file(&wat).unwrap();
    let hash = blake3::hash(&bytes).to_hex().to_string();
    std::fs::write(dir.path().join("echo.wasm"), &bytes).unwrap();
    let text = format!(
        "name = \"wecho\"\nversion = \"1\"\nkind = \"wasm\"\ncapability = \"urn:axon:cap:wecho\"\neffect = \"write\"\nrisk = \"low\"\nmax_blast_radius = 0\nidempotent = true\n[cost]\nexpected_ms = 1\nunits = 0.0\n[limits]\ndeadline_ms = 1000\nconcurrency = 1\nrate_per_second = 1000\nmax_payload_bytes = 65536\nmailbox_capacity = 16\n[wasm]\nmodule = \"echo.wasm\"\nblake3 = \"{hash}\"\nfuel = 10000000\nmemory_bytes = 1048576\ntimeout_ms = 400\n"
    );
    let wasm = Manifest::parse(&text, &dir.path().join("wecho.toml")).unwrap();
    let echo = axon_drivers::builtin_manifest("echo").unwrap();
    let intent = serde_json::from_value(
        json!({"capability": "urn:axon:cap:wecho", "args": {"order": 17, "sku": "w-1"}}),
    )
    .unwrap();
    let call = Call {
        action_id: "0123456789abcdef0123456789abcdef",
        intent: &intent,
    };
    let mut g = c.benchmark_group("driver_call");
    for (name, m) in [("native_echo", echo), ("wasm_echo", &wasm)] {
        let mut d: Box<dyn Driver> = axon_drivers::host::build(m).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| std::hint::black_box(act_checked(&mut *d, &m.obligations, &call).unwrap()))
        });
    }
    // From inside an async runtime, as a driver's actor calls it: on the same thread, as
    // anywhere else.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut d: Box<dyn Driver> = axon_drivers::host::build(&wasm).unwrap();
    g.bench_function("wasm_echo_from_an_actor", |b| {
        rt.block_on(async {
            b.iter(|| std::hint::black_box(act_checked(&mut *d, &wasm.obligations, &call).unwrap()))
        })
    });
    // Through the driver's supervised worker, as the act pipeline calls it (here on the
    // caller's own thread; a node gives each driver a thread of its own).
    let sys = actix::System::new();
    let (_root, worker) = sys.block_on(async {
        let env = Env::new(&prometheus::Registry::new(), SystemClock::shared(), 1).unwrap();
        let prepared = Arc::new(Prepared::new(Arc::new(wasm.clone()), 1).unwrap());
        let (child, worker) = axon_supervisors::worker(
            &env,
            WorkerSpec {
                id: "wecho".into(),
                restart: RestartType::Permanent,
                shutdown: Shutdown::Timeout(Duration::from_secs(1)),
                mailbox_capacity: 16,
                factory: move || prepared.host(),
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
        (root, worker)
    });
    let action = Arc::new(Action {
        action_id: call.action_id.to_owned(),
        intent: intent.clone(),
    });
    let opts = CallOptions {
        deadline: Duration::from_secs(5),
        correlation_id: None,
    };
    g.bench_function("wasm_echo_through_its_worker", |b| {
        b.iter(|| {
            let answer =
                sys.block_on(worker.call(DriverCall::Act(action.clone(), Ticket::new()), &opts));
            match answer.unwrap() {
                DriverAnswer::Outcome(o) => std::hint::black_box(o),
                other => panic!("{other:?}"),
            }
        })
    });
    g.finish();
}

criterion_group!(benches, wasm_call);
criterion_main!(benches);

//! One `wasm` driver call, instantiation included (a fresh store, in-memory pipes, the
//! module's `_start`), against the native `echo` driver, through `act_checked` both; and
//! the same call made from inside an async runtime, as a driver's actor makes it.
//! Run: `cargo bench -p axon-drivers --bench wasm_call`.

use axon_drivers::driver::{act_checked, Call, Driver};
use axon_drivers::manifest::Manifest;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use std::path::Path;

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
    // From inside an async runtime, as a driver's actor calls it: the module runs on the
    // driver's own thread, one hand-over there and back.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut d: Box<dyn Driver> = axon_drivers::host::build(&wasm).unwrap();
    g.bench_function("wasm_echo_from_an_actor", |b| {
        rt.block_on(async {
            b.iter(|| std::hint::black_box(act_checked(&mut *d, &wasm.obligations, &call).unwrap()))
        })
    });
    g.finish();
}

criterion_group!(benches, wasm_call);
criterion_main!(benches);

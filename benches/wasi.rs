//! A WASI-heavy guest (fixtures/wasi/many_writes.wasm: 10,000 lines, one `fd_write` each)
//! under ri-sandbox's deterministic WASI and under plain wasmtime-wasi with output captured in
//! memory, side by side in one run; both start from a compiled module. Criterion ids:
//! `wasi/many_writes/{ri_sandbox,wasmtime_wasi}`.

#[allow(dead_code)] // the tests use more of it than the bench
#[path = "../tests/all/plain_wasi.rs"]
mod plain_wasi;

use criterion::{criterion_group, criterion_main, Criterion};
use ri_sandbox::{Config, Runtime, Sandbox, WasiConfig};
use std::hint::black_box;
use std::time::Duration;

const MANY_WRITES: &[u8] = include_bytes!("../fixtures/wasi/many_writes.wasm");

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let config = Config::default()
        .with_max_gas(1_000_000_000)
        .with_max_execution_ms(0)
        .with_wasi(WasiConfig::default().with_args(["many_writes"]));
    let compiled = runtime.compile(MANY_WRITES, &config).unwrap();
    let plain = plain_wasi::PlainWasi::new();
    let module = wasmtime::Module::new(&plain.engine, MANY_WRITES).unwrap();

    let mut group = c.benchmark_group("wasi/many_writes");
    group.bench_function("ri_sandbox", |b| {
        b.iter(|| {
            let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
            sandbox.load_compiled(&compiled).unwrap();
            let outcome = sandbox.run_command().unwrap();
            assert_eq!(outcome.exit_code, 0);
            black_box(sandbox.take_stdout())
        })
    });
    group.bench_function("wasmtime_wasi", |b| {
        b.iter(|| {
            let run = plain.run(&module, &["many_writes"], b"");
            assert_eq!(run.exit_code, 0);
            black_box(run.stdout)
        })
    });
    group.finish();
}

criterion_group! {
    name = wasi;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(wasi);

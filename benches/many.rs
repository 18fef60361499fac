//! Create + call + destroy of a small sandbox, with wasmtime's default and pooling allocators,
//! against the same loop on raw wasmtime with the same allocator, side by side. Criterion ids:
//! `many/<allocator>/{ri_sandbox,wasmtime}`. Memory per idle sandbox is measured by
//! `examples/many_sandboxes.rs` (it needs a process of its own).

use criterion::{criterion_group, criterion_main, Criterion};
use ri_sandbox::{Config, PoolingLimits, Runtime, RuntimeConfig, Sandbox, Value};
use std::hint::black_box;
use std::time::Duration;

const ADD: &[u8] = include_bytes!("../fixtures/add.wasm");

fn raw_engine(pooling: bool) -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    if pooling {
        let mut p = wasmtime::PoolingAllocationConfig::default();
        p.total_core_instances(64)
            .total_memories(64)
            .total_tables(64)
            .max_memory_size(16 << 20);
        config
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(p))
            .memory_reservation(16 << 20)
            .memory_guard_size(64 * 1024)
            .memory_reservation_for_growth(0);
    }
    wasmtime::Engine::new(&config).unwrap()
}

fn benches(c: &mut Criterion) {
    for (name, pooling) in [("on_demand", false), ("pooling", true)] {
        let mut runtime_config = RuntimeConfig::default();
        if pooling {
            runtime_config.pooling = Some(PoolingLimits::new(64));
        }
        let runtime = Runtime::with_config(runtime_config).unwrap();
        let config = Config::default();
        let compiled = runtime.compile(ADD, &config).unwrap();
        let engine = raw_engine(pooling);
        let module = wasmtime::Module::new(&engine, ADD).unwrap();

        let mut group = c.benchmark_group(format!("many/{name}"));
        group.bench_function("ri_sandbox", |b| {
            b.iter(|| {
                let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
                sandbox.load_compiled(&compiled).unwrap();
                let run = sandbox
                    .call("add", &[Value::I32(1), Value::I32(2)])
                    .unwrap();
                sandbox.destroy();
                black_box(run)
            })
        });
        group.bench_function("wasmtime", |b| {
            b.iter(|| {
                let mut store = wasmtime::Store::new(&engine, ());
                let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
                let add = instance
                    .get_typed_func::<(i32, i32), i32>(&mut store, "add")
                    .unwrap();
                black_box(add.call(&mut store, (1, 2)).unwrap())
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = many;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(many);

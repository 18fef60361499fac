//! The runtime's costs against raw wasmtime, side by side in one run: creating a sandbox from
//! a compiled module, loading (instrument + compile) a 10 KB module, calling `add`, `fib(20)`,
//! and the whole create + load + call + destroy. Criterion ids:
//! `runtime/<case>/{ri_sandbox,wasmtime}`.

use criterion::{criterion_group, criterion_main, Criterion};
use ri_sandbox::{Config, Runtime, Sandbox, Value};
use std::hint::black_box;
use std::time::Duration;

const ADD: &str = include_str!("../fixtures/add.wat");
const FIB: &str = include_str!("../fixtures/fibonacci.wat");
const MODULE_10KB: &[u8] = include_bytes!("../fixtures/bench/prog_small.wasm");

fn raw_engine() -> wasmtime::Engine {
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    wasmtime::Engine::new(&config).unwrap()
}

fn raw_instance(
    engine: &wasmtime::Engine,
    module: &wasmtime::Module,
) -> (wasmtime::Store<()>, wasmtime::Instance) {
    let mut store = wasmtime::Store::new(engine, ());
    store.set_epoch_deadline(1 << 40);
    let instance = wasmtime::Linker::new(engine)
        .instantiate(&mut store, module)
        .unwrap();
    (store, instance)
}

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let config = Config::default();
    let engine = raw_engine();

    let mut group = c.benchmark_group("runtime/create");
    let compiled = runtime.compile(ADD.as_bytes(), &config).unwrap();
    group.bench_function("ri_sandbox", |b| {
        b.iter(|| {
            let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
            sandbox.load_compiled(&compiled).unwrap();
            black_box(sandbox)
        })
    });
    let add_wasm = wat::parse_str(ADD).unwrap();
    let raw_add = wasmtime::Module::new(&engine, &add_wasm).unwrap();
    group.bench_function("wasmtime", |b| {
        b.iter(|| black_box(raw_instance(&engine, &raw_add)))
    });
    group.finish();

    let mut group = c.benchmark_group("runtime/load_10kb");
    group.sample_size(10);
    group.bench_function("ri_sandbox", |b| {
        b.iter(|| black_box(runtime.compile(MODULE_10KB, &config).unwrap()))
    });
    group.bench_function("wasmtime", |b| {
        b.iter(|| black_box(wasmtime::Module::new(&engine, MODULE_10KB).unwrap()))
    });
    group.finish();

    let mut group = c.benchmark_group("runtime/call_add");
    let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
    sandbox.load_compiled(&compiled).unwrap();
    let args = [Value::I32(3), Value::I32(7)];
    group.bench_function("ri_sandbox", |b| {
        b.iter(|| black_box(sandbox.call("add", &args).unwrap()))
    });
    let typed = sandbox.typed::<(i32, i32), i32>("add").unwrap();
    group.bench_function("ri_sandbox_typed", |b| {
        b.iter(|| black_box(typed.call(&mut sandbox, (3, 7)).unwrap()))
    });
    let mut untimed = Sandbox::new(&runtime, config.clone().with_wall_time(false)).unwrap();
    untimed.load_compiled(&compiled).unwrap();
    let typed = untimed.typed::<(i32, i32), i32>("add").unwrap();
    group.bench_function("ri_sandbox_typed_untimed", |b| {
        b.iter(|| black_box(typed.call(&mut untimed, (3, 7)).unwrap()))
    });
    let (mut store, instance) = raw_instance(&engine, &raw_add);
    let add = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "add")
        .unwrap();
    group.bench_function("wasmtime", |b| {
        b.iter(|| black_box(add.call(&mut store, (3, 7)).unwrap()))
    });
    group.finish();

    let mut group = c.benchmark_group("runtime/fib20");
    let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
    sandbox.load(FIB.as_bytes()).unwrap();
    group.bench_function("ri_sandbox", |b| {
        b.iter(|| black_box(sandbox.call("fib", &[Value::I32(20)]).unwrap()))
    });
    let raw_fib = wasmtime::Module::new(&engine, wat::parse_str(FIB).unwrap()).unwrap();
    let (mut store, instance) = raw_instance(&engine, &raw_fib);
    let fib = instance
        .get_typed_func::<i32, i32>(&mut store, "fib")
        .unwrap();
    group.bench_function("wasmtime", |b| {
        b.iter(|| black_box(fib.call(&mut store, 20).unwrap()))
    });
    group.finish();

    let mut group = c.benchmark_group("runtime/end_to_end");
    group.sample_size(20);
    group.bench_function("ri_sandbox", |b| {
        b.iter(|| {
            let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
            sandbox.load(ADD.as_bytes()).unwrap();
            let run = sandbox.call("add", &args).unwrap();
            sandbox.destroy();
            black_box(run)
        })
    });
    group.bench_function("wasmtime", |b| {
        b.iter(|| {
            let module = wasmtime::Module::new(&engine, wat::parse_str(ADD).unwrap()).unwrap();
            let (mut store, instance) = raw_instance(&engine, &module);
            let add = instance
                .get_typed_func::<(i32, i32), i32>(&mut store, "add")
                .unwrap();
            black_box(add.call(&mut store, (3, 7)).unwrap())
        })
    });
    group.finish();
}

criterion_group! {
    name = runtime;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(runtime);

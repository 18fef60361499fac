//! The seed's end-to-end target: the whole lifecycle of a small module, from nothing. ri-sandbox:
//! runtime (engine and ticker), sandbox, load (instrument + compile + instantiate), call,
//! snapshot, call, restore, call, destroy. Raw wasmtime, the same steps by hand: engine, compile,
//! instantiate, call, copy memory and global out, call, copy them back, call. Criterion ids:
//! `lifecycle/counter/{ri_sandbox,wasmtime}`.

use criterion::{criterion_group, criterion_main, Criterion};
use ri_sandbox::{Config, Runtime, Sandbox, Value};
use std::hint::black_box;
use std::time::Duration;

/// The seed's counter fixture with a page of memory, so that there is memory to snapshot.
const COUNTER: &str = r#"(module
  (memory (export "memory") 1)
  (global $count (export "count") (mut i32) (i32.const 0))
  (func (export "increment") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store (i32.const 0) (global.get $count))
    (global.get $count)))"#;

fn ri_sandbox_lifecycle() -> i32 {
    let runtime = Runtime::new().unwrap();
    let mut sandbox = Sandbox::new(&runtime, Config::default()).unwrap();
    sandbox.load(COUNTER.as_bytes()).unwrap();
    sandbox.call("increment", &[]).unwrap();
    let snapshot = sandbox.snapshot().unwrap();
    sandbox.call("increment", &[]).unwrap();
    sandbox.restore(&snapshot).unwrap();
    let run = sandbox.call("increment", &[]).unwrap();
    sandbox.destroy();
    match run.values() {
        [Value::I32(v)] => *v,
        other => panic!("{other:?}"),
    }
}

fn wasmtime_lifecycle() -> i32 {
    let engine = wasmtime::Engine::default();
    // Text in both: ri-sandbox's `load` takes text too.
    let module = wasmtime::Module::new(&engine, wat::parse_str(COUNTER).unwrap()).unwrap();
    let mut store = wasmtime::Store::new(&engine, ());
    let instance = wasmtime::Linker::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let increment = instance
        .get_typed_func::<(), i32>(&mut store, "increment")
        .unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();
    let count = instance.get_global(&mut store, "count").unwrap();
    increment.call(&mut store, ()).unwrap();
    let saved_memory = memory.data(&store).to_vec();
    let saved_count = count.get(&mut store);
    increment.call(&mut store, ()).unwrap();
    memory.data_mut(&mut store).copy_from_slice(&saved_memory);
    count.set(&mut store, saved_count).unwrap();
    increment.call(&mut store, ()).unwrap()
}

fn benches(c: &mut Criterion) {
    assert_eq!(ri_sandbox_lifecycle(), 2);
    assert_eq!(wasmtime_lifecycle(), 2);
    let mut group = c.benchmark_group("lifecycle/counter");
    group.bench_function("ri_sandbox", |b| {
        b.iter(|| black_box(ri_sandbox_lifecycle()))
    });
    group.bench_function("wasmtime", |b| b.iter(|| black_box(wasmtime_lifecycle())));
    group.finish();
}

criterion_group! {
    name = lifecycle;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(lifecycle);

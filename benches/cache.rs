//! Loading a large module (1.6 MB of wasm, `fixtures/bench/prog_large.wasm`) cold (instrument
//! and compile), from a warm disk cache, and from the in-memory cache, against a raw wasmtime
//! instantiation of an already compiled module; from memory both by bytes (which hashes the
//! 1.6 MB) and by a kept `CacheKey` (which hashes nothing). Criterion ids: `cache/large/<case>`.

use criterion::{criterion_group, criterion_main, Criterion};
use ri_sandbox::{Config, ModuleCache, Runtime, Sandbox};
use std::hint::black_box;
use std::time::Duration;

const LARGE: &[u8] = include_bytes!("../fixtures/bench/prog_large.wasm");

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let config = Config::default();
    let dir = std::env::temp_dir().join(format!("ri-sandbox-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let warmup = ModuleCache::on_disk(&dir, 1 << 30, 1).unwrap();
        runtime.compile_cached(LARGE, &config, &warmup).unwrap();
    }
    let memory = ModuleCache::in_memory(4);
    runtime.compile_cached(LARGE, &config, &memory).unwrap();
    let raw_engine = wasmtime::Engine::default();
    let raw_module = wasmtime::Module::new(&raw_engine, LARGE).unwrap();

    let mut group = c.benchmark_group("cache/large");
    group.sample_size(10);
    group.bench_function("cold_instrument_compile_load", |b| {
        b.iter(|| {
            let compiled = runtime.compile(LARGE, &config).unwrap();
            let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
            sandbox.load_compiled(&compiled).unwrap();
            black_box(sandbox)
        })
    });
    group.bench_function("warm_disk_load", |b| {
        b.iter(|| {
            let cache = ModuleCache::on_disk(&dir, 1 << 30, 1).unwrap();
            let compiled = runtime.compile_cached(LARGE, &config, &cache).unwrap();
            let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
            sandbox.load_compiled(&compiled).unwrap();
            black_box(sandbox)
        })
    });
    group.sample_size(50);
    group.bench_function("warm_memory_load", |b| {
        b.iter(|| {
            let compiled = runtime.compile_cached(LARGE, &config, &memory).unwrap();
            let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
            sandbox.load_compiled(&compiled).unwrap();
            black_box(sandbox)
        })
    });
    let key = runtime.cache_key(LARGE, &config).unwrap();
    group.bench_function("warm_memory_load_by_key", |b| {
        b.iter(|| {
            let compiled = memory.get(&key).unwrap();
            let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
            sandbox.load_compiled(&compiled).unwrap();
            black_box(sandbox)
        })
    });
    group.bench_function("raw_wasmtime_instantiate", |b| {
        b.iter(|| {
            let mut store = wasmtime::Store::new(&raw_engine, ());
            black_box(
                wasmtime::Linker::new(&raw_engine)
                    .instantiate(&mut store, &raw_module)
                    .unwrap(),
            )
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = cache;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(cache);

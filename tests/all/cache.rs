//! The module cache and ready files: hits after misses, keys that change with the cost model
//! and stack limit, corrupt and truncated entries rebuilt, concurrent processes, eviction,
//! and forged or foreign modules refused.

use crate::common::{fixture, fixture_path, runtime, TempDir};
use ri_sandbox::{Config, ErrorKind, ModuleCache, Runtime, Sandbox, Value};
use std::path::{Path, PathBuf};

fn fib20(runtime: &Runtime, compiled: &ri_sandbox::CompiledModule, config: &Config) -> Value {
    let mut sandbox = Sandbox::new(runtime, config.clone()).unwrap();
    sandbox.load_compiled(compiled).unwrap();
    sandbox.call("fib", &[Value::I32(20)]).unwrap().values()[0]
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rsm"))
        .collect()
}

#[test]
fn memory_cache_hits_after_a_miss() {
    let cache = ModuleCache::in_memory(4);
    let config = Config::default();
    let a = runtime()
        .compile_cached(&fixture("fibonacci.wasm"), &config, &cache)
        .unwrap();
    let b = runtime()
        .compile_cached(&fixture("fibonacci.wat"), &config, &cache)
        .unwrap();
    let m = cache.metrics();
    assert_eq!((m.misses, m.memory_hits), (1, 1), "{m:?}");
    assert_eq!(fib20(runtime(), &a, &config), Value::I32(6765));
    assert_eq!(fib20(runtime(), &b, &config), Value::I32(6765));
}

#[test]
fn a_kept_key_finds_the_module_without_hashing_it_again() {
    let cache = ModuleCache::in_memory(4);
    let config = Config::default();
    let bytes = fixture("fibonacci.wasm");
    let key = runtime().cache_key(&bytes, &config).unwrap();
    // Text and binary of one module share a key; another cost model does not.
    assert_eq!(
        key,
        runtime()
            .cache_key(&fixture("fibonacci.wat"), &config)
            .unwrap()
    );
    let other = config.clone().with_stack_limit(1000);
    assert_ne!(key, runtime().cache_key(&bytes, &other).unwrap());
    // Nothing there yet, and that is not counted as a miss.
    assert!(cache.get(&key).is_none());
    assert_eq!(cache.metrics().misses, 0);
    runtime().compile_cached(&bytes, &config, &cache).unwrap();
    let hit = cache.get(&key).expect("filed under the same key");
    assert_eq!(cache.metrics().memory_hits, 1);
    assert_eq!(fib20(runtime(), &hit, &config), Value::I32(6765));
    assert!(runtime().cache_key(b"(module", &config).is_err());
}

#[test]
fn disk_cache_survives_the_process_and_keys_on_costs_and_stack_limit() {
    let dir = TempDir::new("cache-disk");
    let config = Config::default();
    let module = fixture("fibonacci.wasm");
    {
        let cache = ModuleCache::on_disk(&dir.0, 1 << 30, 4).unwrap();
        runtime().compile_cached(&module, &config, &cache).unwrap();
        assert_eq!(cache.metrics().misses, 1);
        assert!(cache.metrics().bytes_on_disk > 0);
    }
    // A new cache on the same directory (as a new process would have) hits on disk.
    let cache = ModuleCache::on_disk(&dir.0, 1 << 30, 4).unwrap();
    let hit = runtime().compile_cached(&module, &config, &cache).unwrap();
    assert_eq!(cache.metrics().disk_hits, 1);
    assert_eq!(fib20(runtime(), &hit, &config), Value::I32(6765));

    let mut costs = ri_sandbox::instrument::CostModel::default();
    costs.set("call", 7).unwrap();
    let other_costs = config.clone().with_costs(costs);
    runtime()
        .compile_cached(&module, &other_costs, &cache)
        .unwrap();
    let other_stack = config.clone().with_stack_limit(1 << 20);
    runtime()
        .compile_cached(&module, &other_stack, &cache)
        .unwrap();
    assert_eq!(cache.metrics().misses, 2);
    assert_eq!(entries(&dir.0).len(), 3);
}

#[test]
fn corrupt_and_truncated_entries_are_rebuilt_not_loaded() {
    let dir = TempDir::new("cache-corrupt");
    let config = Config::default();
    let module = fixture("fibonacci.wasm");
    runtime()
        .compile_cached(
            &module,
            &config,
            &ModuleCache::on_disk(&dir.0, 1 << 30, 4).unwrap(),
        )
        .unwrap();
    let entry = entries(&dir.0).pop().unwrap();
    let good = std::fs::read(&entry).unwrap();

    let mut corrupt = good.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    for damaged in [corrupt, good[..good.len() / 3].to_vec(), Vec::new()] {
        std::fs::write(&entry, &damaged).unwrap();
        let cache = ModuleCache::on_disk(&dir.0, 1 << 30, 4).unwrap();
        let rebuilt = runtime().compile_cached(&module, &config, &cache).unwrap();
        let m = cache.metrics();
        assert_eq!((m.rebuilds, m.misses, m.disk_hits), (1, 1, 0), "{m:?}");
        assert_eq!(fib20(runtime(), &rebuilt, &config), Value::I32(6765));
        assert_eq!(
            std::fs::read(&entry).unwrap(),
            good,
            "the entry was written anew"
        );
    }
}

#[test]
fn eviction_keeps_the_directory_under_its_limit() {
    let dir = TempDir::new("cache-evict");
    let config = Config::default();
    let one = {
        let cache = ModuleCache::on_disk(&dir.0, 1 << 30, 1).unwrap();
        runtime()
            .compile_cached(&fixture("add.wasm"), &config, &cache)
            .unwrap();
        cache.metrics().bytes_on_disk
    };
    let limit = one * 2 + one / 2;
    let cache = ModuleCache::on_disk(&dir.0, limit, 1).unwrap();
    for name in [
        "counter.wasm",
        "fibonacci.wasm",
        "memory-hog.wasm",
        "infinite-loop.wasm",
    ] {
        runtime()
            .compile_cached(&fixture(name), &config, &cache)
            .unwrap();
        assert!(
            cache.metrics().bytes_on_disk <= limit,
            "{:?}",
            cache.metrics()
        );
    }
    assert!(cache.metrics().evictions >= 2, "{:?}", cache.metrics());
}

#[test]
fn two_processes_filling_one_cache_both_succeed() {
    let dir = TempDir::new("cache-processes");
    let bin = env!("CARGO_BIN_EXE_ri-sandbox");
    let module = fixture_path("fibonacci.wat");
    let spawn = || {
        std::process::Command::new(bin)
            .args(["run", module.to_str().unwrap(), "--invoke", "fib", "15"])
            .args(["--cache-dir", dir.0.to_str().unwrap()])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    for out in [a, b] {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("result: 610\n"));
    }
    assert_eq!(entries(&dir.0).len(), 1);
    let cache = ModuleCache::on_disk(&dir.0, 1 << 30, 1).unwrap();
    runtime()
        .compile_cached(&fixture("fibonacci.wasm"), &Config::default(), &cache)
        .unwrap();
    assert_eq!(
        cache.metrics().disk_hits,
        1,
        "the entry both wrote is whole"
    );
}

#[test]
fn forged_and_foreign_modules_are_refused() {
    // An unmetered module that claims to be instrumented: the section proves nothing, and the
    // runtime never loads a module on its word.
    let forged = wat::parse_str(
        r#"(module (func (export "spin") (loop $l (br $l)))
           (@custom "ri_sandbox" "\01\00\00\00"))"#,
    )
    .unwrap();
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    let err = sandbox.load(&forged).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidModule { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("already instrumented"), "{err}");

    // Ready files: accepted with the key they were made with, for the same configuration.
    let config = Config::default();
    let ready = runtime()
        .precompile(&fixture("fibonacci.wasm"), &config, b"host key")
        .unwrap();
    let compiled = runtime()
        .load_precompiled(&ready, &config, b"host key")
        .unwrap();
    assert_eq!(fib20(runtime(), &compiled, &config), Value::I32(6765));
    for (bytes, key, cfg) in [
        (ready.clone(), &b"other key"[..], config.clone()),
        (
            ready[..ready.len() - 1].to_vec(),
            &b"host key"[..],
            config.clone(),
        ),
        (
            ready.clone(),
            &b"host key"[..],
            config.clone().with_stack_limit(1000),
        ),
    ] {
        let err = runtime().load_precompiled(&bytes, &cfg, key).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidModule { .. }),
            "{err}"
        );
    }
    // An unmetered module in a ready-file frame, signed by someone without the key.
    let mut tampered = ready.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 1;
    assert!(runtime()
        .load_precompiled(&tampered, &config, b"host key")
        .is_err());
}

#[test]
fn a_different_engine_configuration_misses() {
    let dir = TempDir::new("cache-engine");
    let config = Config::default();
    let module = fixture("fibonacci.wasm");
    let cache = ModuleCache::on_disk(&dir.0, 1 << 30, 4).unwrap();
    runtime().compile_cached(&module, &config, &cache).unwrap();
    // Pooling with small memory reservations compiles different bounds checks: another
    // engine configuration, so another key.
    let pooled = Runtime::with_config({
        let mut c = ri_sandbox::RuntimeConfig::default();
        c.pooling = Some(ri_sandbox::PoolingLimits::new(4));
        c
    })
    .unwrap();
    let compiled = pooled.compile_cached(&module, &config, &cache).unwrap();
    let m = cache.metrics();
    assert_eq!((m.misses, m.memory_hits, m.disk_hits), (2, 0, 0), "{m:?}");
    assert_eq!(fib20(&pooled, &compiled, &config), Value::I32(6765));
    assert_eq!(entries(&dir.0).len(), 2);
}

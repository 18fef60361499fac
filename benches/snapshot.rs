//! Snapshot plus restore of a 16 MiB memory, fully used and sparse (1 MiB touched), against
//! two plain 16 MiB memcpy's, side by side. Criterion ids: `snapshot/<case>/<strategy>`. The
//! snapshot sizes are printed once.

use criterion::{criterion_group, criterion_main, Criterion};
use ri_sandbox::{Config, Runtime, Sandbox, Value};
use std::hint::black_box;
use std::time::Duration;

const MIB16: usize = 16 * 1024 * 1024;

/// 256 pages; `fill(n)` writes a non-zero byte every 4 KiB of the first n bytes and
/// `fill_all` fills the whole memory with a non-zero pattern.
const MODULE: &str = r#"(module (memory (export "memory") 256)
  (func (export "touch") (param i32) (local $i i32)
    loop $l
      local.get $i
      i32.const 1
      i32.store8
      local.get $i
      i32.const 4096
      i32.add
      local.tee $i
      local.get 0
      i32.lt_u
      br_if $l
    end)
  (func (export "fill_all")
    i32.const 0
    i32.const 0xab
    i32.const 16777216
    memory.fill))"#;

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let config = Config::default().with_max_gas(100_000_000);
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(20);
    for (case, prepare) in [
        ("full_16mib", "fill_all"),
        ("sparse_1mib_of_16mib", "touch"),
    ] {
        let mut sandbox = Sandbox::new(&runtime, config.clone()).unwrap();
        sandbox.load(MODULE.as_bytes()).unwrap();
        if prepare == "touch" {
            sandbox.call("touch", &[Value::I32(1 << 20)]).unwrap();
        } else {
            sandbox.call("fill_all", &[]).unwrap();
        }
        let size = sandbox.snapshot().unwrap().to_bytes().len();
        eprintln!("snapshot/{case}: {size} bytes serialized");
        group.bench_function(format!("{case}/snapshot_restore"), |b| {
            b.iter(|| {
                let snapshot = sandbox.snapshot().unwrap();
                sandbox.restore(&snapshot).unwrap();
                black_box(snapshot.memory_bytes())
            })
        });
        group.bench_function(
            format!("{case}/snapshot_to_bytes_from_bytes_restore"),
            |b| {
                b.iter(|| {
                    let bytes = sandbox.snapshot().unwrap().to_bytes();
                    let snapshot = ri_sandbox::Snapshot::from_bytes(&bytes).unwrap();
                    sandbox.restore(&snapshot).unwrap();
                    black_box(bytes.len())
                })
            },
        );
    }
    let source = vec![0xabu8; MIB16];
    let mut copy = vec![0u8; MIB16];
    let mut back = vec![0u8; MIB16];
    group.bench_function("memcpy_16mib_twice", |b| {
        b.iter(|| {
            copy.copy_from_slice(black_box(&source));
            back.copy_from_slice(black_box(&copy));
            black_box(back[12345])
        })
    });
    group.finish();
}

criterion_group! {
    name = snapshot;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(snapshot);

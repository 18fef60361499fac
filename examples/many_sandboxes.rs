//! Many sandboxes in one host: what one costs in memory and how fast they come and go,
//! against plain wasmtime in the same run.
//!
//! ```sh
//! cargo run --release --example many_sandboxes -- --count 1000 [--pooling]
//! ```
//!
//! With `--pooling`, both sides use wasmtime's pooling allocator with room for the count
//! (ri-sandbox through `RuntimeConfig::pooling`).
//!
//! Compiles `fixtures/add.wasm` once, keeps `--count` sandboxes of it alive at once, calls
//! each, and measures the resident memory they add (from `/proc/self/statm`, so Linux only)
//! divided by their number. Then it creates, calls and destroys sandboxes in a loop for the
//! throughput. The raw wasmtime figures are the same steps with a default `wasmtime::Engine`:
//! instantiate the uninstrumented module in a store of its own, call it, drop it. Both use
//! wasmtime's default (on-demand) instance allocator.
//!
//! Each memory measurement runs in a child process of its own (this example, re-run with
//! `--memory-of`), so neither side reuses heap the other freed. The last line is
//! `many_sandboxes: N live, K KiB per sandbox (raw wasmtime R KiB), X create+call+destroy/s
//! (raw wasmtime Y/s)`.

use ri_sandbox::{CompiledModule, Config, PoolingLimits, Runtime, RuntimeConfig, Sandbox, Value};
use std::error::Error;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const ADD: &[u8] = include_bytes!("../fixtures/add.wasm");
/// The page size `/proc/self/statm` counts in.
const PAGE_SIZE: u64 = 4096;
/// Create+call+destroy rounds timed for the throughput, per side.
const ROUNDS: u32 = 20_000;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// Whether both sides use the pooling allocator (`--pooling`).
static POOLING: AtomicBool = AtomicBool::new(false);

/// Slots for `count` live sandboxes and the rounds around them.
fn slots(count: usize) -> u32 {
    u32::try_from(count + 16).unwrap_or(u32::MAX)
}

fn make_runtime(count: usize) -> Result<Runtime> {
    let mut config = RuntimeConfig::default();
    if POOLING.load(Ordering::Relaxed) {
        config.pooling = Some(PoolingLimits::new(slots(count)));
    }
    Ok(Runtime::with_config(config)?)
}

fn make_engine(count: usize) -> Result<wasmtime::Engine> {
    let mut config = wasmtime::Config::new();
    if POOLING.load(Ordering::Relaxed) {
        let mut pooling = wasmtime::PoolingAllocationConfig::default();
        pooling
            .total_core_instances(slots(count))
            .total_memories(slots(count))
            .total_tables(slots(count))
            .max_memory_size(16 << 20);
        config
            .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling))
            .memory_reservation(16 << 20)
            .memory_guard_size(64 * 1024)
            .memory_reservation_for_growth(0);
    }
    Ok(wasmtime::Engine::new(&config)?)
}

fn main() -> Result<()> {
    let mut count = 1000usize;
    let mut memory_of = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--count" => {
                count = args
                    .next()
                    .ok_or("--count needs a number")?
                    .parse()
                    .map_err(|e| format!("--count: {e}"))?;
            }
            "--memory-of" => memory_of = Some(args.next().ok_or("--memory-of needs a side")?),
            "--pooling" => POOLING.store(true, Ordering::Relaxed),
            other => return Err(format!("unknown argument {other}; usage: --count N").into()),
        }
    }
    if count == 0 {
        return Err("--count must be at least 1".into());
    }
    match memory_of.as_deref() {
        Some("ri-sandbox") => println!("{}", ri_sandbox_memory(count)?),
        Some("wasmtime") => println!("{}", wasmtime_memory(count)?),
        Some(other) => return Err(format!("--memory-of: unknown side {other}").into()),
        None => report(count)?,
    }
    Ok(())
}

/// The parent: memory in two children, throughput here, then the summary line.
fn report(count: usize) -> Result<()> {
    let ri_kib = child_memory("ri-sandbox", count)?;
    let raw_kib = child_memory("wasmtime", count)?;
    println!(
        "memory: {count} live sandboxes add {:.1} MiB resident; {count} raw instances {:.1} MiB",
        ri_kib * count as f64 / 1024.0,
        raw_kib * count as f64 / 1024.0
    );

    let runtime = make_runtime(count)?;
    let config = Config::default();
    let compiled = runtime.compile(ADD, &config)?;
    ri_sandbox_rounds(&runtime, &config, &compiled, ROUNDS / 10)?; // warm up
    let started = Instant::now();
    ri_sandbox_rounds(&runtime, &config, &compiled, ROUNDS)?;
    let ri_rate = f64::from(ROUNDS) / started.elapsed().as_secs_f64();

    let engine = make_engine(count)?;
    let module = wasmtime::Module::new(&engine, ADD)?;
    wasmtime_rounds(&engine, &module, ROUNDS / 10)?;
    let started = Instant::now();
    wasmtime_rounds(&engine, &module, ROUNDS)?;
    let raw_rate = f64::from(ROUNDS) / started.elapsed().as_secs_f64();

    println!(
        "ratios: {:.2}x the memory, {:.2}x the time per create+call+destroy of raw wasmtime",
        ri_kib / raw_kib,
        raw_rate / ri_rate
    );
    println!(
        "many_sandboxes: {count} live, {ri_kib:.1} KiB per sandbox (raw wasmtime {raw_kib:.1} KiB), \
         {ri_rate:.0} create+call+destroy/s (raw wasmtime {raw_rate:.0}/s)"
    );
    Ok(())
}

/// Runs this example again to measure one side's memory in a fresh process.
fn child_memory(side: &str, count: usize) -> Result<f64> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["--memory-of", side, "--count", &count.to_string()]);
    if POOLING.load(Ordering::Relaxed) {
        command.arg("--pooling");
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "measuring {side}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let text = String::from_utf8(output.stdout)?;
    Ok(text.trim().parse()?)
}

/// Resident memory of this process in bytes (Linux).
fn resident_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("/proc/self/statm has no resident field")?
        .parse()?;
    Ok(pages * PAGE_SIZE)
}

fn kib_per(before: u64, after: u64, count: usize) -> f64 {
    after.saturating_sub(before) as f64 / 1024.0 / count as f64
}

fn expect_sum(got: i32, a: i32, b: i32) -> Result<()> {
    if got != a.wrapping_add(b) {
        return Err(format!("add({a}, {b}) returned {got}").into());
    }
    Ok(())
}

/// KiB of resident memory per live sandbox, `count` of them, each called once.
fn ri_sandbox_memory(count: usize) -> Result<f64> {
    let runtime = make_runtime(count)?;
    let config = Config::default();
    let compiled = runtime.compile(ADD, &config)?;
    ri_sandbox_rounds(&runtime, &config, &compiled, 10)?; // first-use costs out of the way
    let mut sandboxes = Vec::with_capacity(count);
    let before = resident_bytes()?;
    for _ in 0..count {
        let mut sandbox = Sandbox::new(&runtime, config.clone())?;
        sandbox.load_compiled(&compiled)?;
        sandboxes.push(sandbox);
    }
    for (i, sandbox) in sandboxes.iter_mut().enumerate() {
        let run = sandbox.call("add", &[Value::I32(i as i32), Value::I32(1)])?;
        match run.values() {
            [Value::I32(sum)] => expect_sum(*sum, i as i32, 1)?,
            other => return Err(format!("add returned {other:?}").into()),
        }
    }
    let after = resident_bytes()?;
    Ok(kib_per(before, after, sandboxes.len()))
}

/// The same with plain wasmtime.
fn wasmtime_memory(count: usize) -> Result<f64> {
    let engine = make_engine(count)?;
    let module = wasmtime::Module::new(&engine, ADD)?;
    wasmtime_rounds(&engine, &module, 10)?;
    let mut instances = Vec::with_capacity(count);
    let before = resident_bytes()?;
    for _ in 0..count {
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
        let add = instance.get_typed_func::<(i32, i32), i32>(&mut store, "add")?;
        instances.push((store, add));
    }
    for (i, (store, add)) in instances.iter_mut().enumerate() {
        expect_sum(add.call(&mut *store, (i as i32, 1))?, i as i32, 1)?;
    }
    let after = resident_bytes()?;
    Ok(kib_per(before, after, instances.len()))
}

fn ri_sandbox_rounds(
    runtime: &Runtime,
    config: &Config,
    compiled: &CompiledModule,
    rounds: u32,
) -> Result<()> {
    for i in 0..rounds as i32 {
        let mut sandbox = Sandbox::new(runtime, config.clone())?;
        sandbox.load_compiled(compiled)?;
        let run = sandbox.call("add", &[Value::I32(i), Value::I32(2)])?;
        match run.values() {
            [Value::I32(sum)] => expect_sum(*sum, i, 2)?,
            other => return Err(format!("add returned {other:?}").into()),
        }
        sandbox.destroy();
    }
    Ok(())
}

fn wasmtime_rounds(
    engine: &wasmtime::Engine,
    module: &wasmtime::Module,
    rounds: u32,
) -> Result<()> {
    for i in 0..rounds as i32 {
        let mut store = wasmtime::Store::new(engine, ());
        let instance = wasmtime::Instance::new(&mut store, module, &[])?;
        let add = instance.get_typed_func::<(i32, i32), i32>(&mut store, "add")?;
        expect_sum(add.call(&mut store, (i, 2))?, i, 2)?;
    }
    Ok(())
}

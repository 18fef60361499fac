//! Execution overhead of metering on wasmtime. Each WAT kernel (`fixtures/bench/*.wat`) runs
//!
//! - `plain`: un-metered;
//! - `wasmtime_fuel`: wasmtime's own fuel metering (`Config::consume_fuel`);
//! - `wasm_instrument`: wasm-instrument's mutable-global gas metering (a call to an injected
//!   gas function per metered block), constant cost 1 per instruction;
//! - `ri_sandbox_gas`: ri-sandbox's gas metering alone (an inline check-and-subtract per
//!   metered block, size charges for bulk operations), default cost model;
//! - `ri_sandbox_gas_stack`: plus the deterministic stack limit;
//! - `ri_sandbox`: the default, plus NaN canonicalization too.
//!
//! Instantiation is outside the timed loop; every timed call first refills the budget (fuel
//! or gas global), as a host would. Criterion ids: `execute/<kernel>/<strategy>`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use wasm_instrument::gas_metering::{self, mutable_global, ConstantCostRules};
use wasm_instrument::parity_wasm;
use wasmtime::{Config, Engine, Global, Instance, Module, Store, TypedFunc, Val};

/// Budget given before every call: large enough never to run out.
const BUDGET: u64 = 1 << 62;

/// Export name of wasm-instrument's gas global (our choice, passed to its injector).
const WASM_INSTRUMENT_GAS: &str = "gas_left";

struct Kernel {
    name: &'static str,
    wat: &'static str,
    /// Argument passed to the kernel's `run` export.
    arg: i32,
    /// Whether the kernel is MVP WebAssembly, which wasm-instrument can parse.
    mvp: bool,
}

const KERNELS: &[Kernel] = &[
    Kernel {
        name: "fib",
        wat: include_str!("../fixtures/bench/fib.wat"),
        arg: 25,
        mvp: true,
    },
    Kernel {
        name: "branchy",
        wat: include_str!("../fixtures/bench/branchy.wat"),
        arg: 1_000_000,
        mvp: true,
    },
    Kernel {
        name: "matmul",
        wat: include_str!("../fixtures/bench/matmul.wat"),
        arg: 64,
        mvp: true,
    },
    Kernel {
        name: "checksum",
        wat: include_str!("../fixtures/bench/checksum.wat"),
        arg: 1 << 20,
        mvp: true,
    },
    Kernel {
        name: "calls",
        wat: include_str!("../fixtures/bench/calls.wat"),
        arg: 1_000_000,
        mvp: true,
    },
    Kernel {
        name: "interp",
        wat: include_str!("../fixtures/bench/interp.wat"),
        arg: 100_000,
        mvp: true,
    },
    // memory.fill/memory.copy are bulk-memory instructions, which wasm-instrument's parser
    // (parity-wasm) does not support, so this kernel has no `wasm_instrument` strategy.
    Kernel {
        name: "bulk",
        wat: include_str!("../fixtures/bench/bulk.wat"),
        arg: 200,
        mvp: false,
    },
];

#[derive(Clone, Copy)]
enum Meter {
    None,
    Fuel,
    Global(&'static str),
}

/// An instantiated kernel, ready to call.
struct Prepared {
    store: Store<()>,
    run: TypedFunc<i32, i64>,
    meter: Meter,
    gas: Option<Global>,
}

impl Prepared {
    fn new(engine: &Engine, wasm: &[u8], meter: Meter) -> Prepared {
        let module = Module::new(engine, wasm).expect("wasmtime compiles the kernel");
        let mut store = Store::new(engine, ());
        if let Meter::Fuel = meter {
            store.set_fuel(BUDGET).unwrap();
        }
        let instance = Instance::new(&mut store, &module, &[]).expect("instantiates");
        let gas = match meter {
            Meter::Global(name) => Some(
                instance
                    .get_global(&mut store, name)
                    .unwrap_or_else(|| panic!("the metered module exports {name}")),
            ),
            _ => None,
        };
        let run = instance
            .get_typed_func::<i32, i64>(&mut store, "run")
            .expect("the kernel exports run: [i32] -> [i64]");
        let mut prepared = Prepared {
            store,
            run,
            meter,
            gas,
        };
        if let Ok(setup) = instance.get_typed_func::<(), ()>(&mut prepared.store, "setup") {
            prepared.refill();
            setup.call(&mut prepared.store, ()).expect("setup runs");
        }
        prepared
    }

    fn refill(&mut self) {
        match self.meter {
            Meter::None => {}
            Meter::Fuel => self.store.set_fuel(BUDGET).unwrap(),
            Meter::Global(_) => {
                let gas = self.gas.expect("gas global");
                gas.set(&mut self.store, Val::I64(BUDGET as i64)).unwrap();
            }
        }
    }

    /// Refills the budget and calls `run(arg)`.
    fn call(&mut self, arg: i32) -> i64 {
        self.refill();
        self.run
            .call(&mut self.store, arg)
            .expect("the kernel runs")
    }

    /// Units consumed by the last call (fuel or gas), if metered.
    fn used(&mut self) -> Option<u64> {
        let left = match self.meter {
            Meter::None => return None,
            Meter::Fuel => self.store.get_fuel().unwrap(),
            Meter::Global(_) => {
                let gas = self.gas.expect("gas global");
                gas.get(&mut self.store).unwrap_i64() as u64
            }
        };
        Some(BUDGET - left)
    }
}

/// wasm-instrument's mutable-global metering with constant cost 1.
fn wasm_instrument(wasm: &[u8]) -> Vec<u8> {
    let module: parity_wasm::elements::Module =
        parity_wasm::deserialize_buffer(wasm).expect("parity-wasm parses the kernel");
    let module = gas_metering::inject(
        module,
        mutable_global::Injector::new(WASM_INSTRUMENT_GAS),
        &ConstantCostRules::default(),
    )
    .unwrap_or_else(|_| panic!("wasm-instrument instruments the kernel"));
    parity_wasm::serialize(module).expect("parity-wasm serialises the kernel")
}

/// ri-sandbox's instrumentation; `stack` and `nan` switch the stack limit and NaN
/// canonicalization (both on by default), so their costs can be read apart.
fn ri_sandbox(wasm: &[u8], stack: bool, nan: bool) -> Vec<u8> {
    let mut options = ri_sandbox::instrument::Options::default();
    if !stack {
        options.stack_limit = None;
    }
    options.canonicalize_nans = nan;
    ri_sandbox::instrument::instrument(wasm, &options)
        .expect("ri-sandbox instruments the kernel")
        .module
}

fn bench_execute(c: &mut Criterion) {
    let plain_engine = Engine::default();
    let fuel_engine = Engine::new(Config::new().consume_fuel(true)).expect("fuel engine");
    let gas_export = ri_sandbox::instrument::abi::GAS_LEFT_EXPORT;

    for kernel in KERNELS {
        let wasm = wat::parse_str(kernel.wat).expect("kernel WAT parses");
        let mut strategies: Vec<(&str, Prepared)> = vec![
            ("plain", Prepared::new(&plain_engine, &wasm, Meter::None)),
            (
                "wasmtime_fuel",
                Prepared::new(&fuel_engine, &wasm, Meter::Fuel),
            ),
        ];
        if kernel.mvp {
            strategies.push((
                "wasm_instrument",
                Prepared::new(
                    &plain_engine,
                    &wasm_instrument(&wasm),
                    Meter::Global(WASM_INSTRUMENT_GAS),
                ),
            ));
        }
        for (name, stack, nan) in [
            ("ri_sandbox_gas", false, false),
            ("ri_sandbox_gas_stack", true, false),
            ("ri_sandbox", true, true),
        ] {
            strategies.push((
                name,
                Prepared::new(
                    &plain_engine,
                    &ri_sandbox(&wasm, stack, nan),
                    Meter::Global(gas_export),
                ),
            ));
        }

        // Every strategy must compute the same result; show what each metered one counted.
        let mut expected = None;
        let mut counted = Vec::new();
        for (name, prepared) in &mut strategies {
            let result = prepared.call(kernel.arg);
            assert_eq!(
                *expected.get_or_insert(result),
                result,
                "{}: {name} disagrees",
                kernel.name
            );
            if let Some(used) = prepared.used() {
                counted.push(format!("{name} {used}"));
            }
        }
        eprintln!(
            "execute/{}: run({}) = {}; units per call: {}",
            kernel.name,
            kernel.arg,
            expected.unwrap_or_default(),
            counted.join(", ")
        );

        let mut group = c.benchmark_group(format!("execute/{}", kernel.name));
        for (name, prepared) in &mut strategies {
            group.bench_function(*name, |b| b.iter(|| prepared.call(black_box(kernel.arg))));
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_execute
}
criterion_main!(benches);

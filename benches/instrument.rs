//! Instrumentation throughput: ri-sandbox's metering pass against wasm-instrument's gas
//! metering and a plain wasmparser -> wasm-encoder round trip (the cost of merely decoding and
//! re-encoding every section), on three modules of growing size so linear scaling is visible.
//!
//! The modules are real clang output (`fixtures/bench/build.sh`): MVP WebAssembly, because
//! wasm-instrument only parses MVP modules.
//!
//! First, paired ratios (`paired_ratios`: every strategy in turn, round after round, the
//! median of per-round ratios; `PAIRED=0` skips them), which a machine whose speed drifts
//! during the run does not skew; then criterion's timings.
//!
//! Criterion ids: `instrument/<module>/{ri_sandbox, ri_sandbox_1_thread,
//! ri_sandbox_gas_only_1_thread, wasm_instrument, reencode, validate}`, with throughput in
//! input bytes. `ri_sandbox` uses the default thread count (one per core, one per 16 KiB of
//! code); `ri_sandbox_1_thread` the same pass on the calling thread only, the fair comparison
//! with the single-threaded others; `ri_sandbox_gas_only_1_thread` that with only what
//! wasm-instrument does too (gas metering: no stack limit, NaN canonicalization or state
//! exports).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use ri_sandbox::instrument::{instrument, Options};
use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_instrument::gas_metering::{self, mutable_global, ConstantCostRules};
use wasm_instrument::parity_wasm;

/// ~10 KB: hashing, checksums, LZ77 and a bytecode VM.
const SMALL: &[u8] = include_bytes!("../fixtures/bench/prog_small.wasm");
/// ~270 KB: the same plus generated serialisation code for 30 record types.
const MEDIUM: &[u8] = include_bytes!("../fixtures/bench/prog_medium.wasm");
/// ~1.6 MB: the same with 200 record types.
const LARGE: &[u8] = include_bytes!("../fixtures/bench/prog_large.wasm");

const MODULES: [(&str, &[u8]); 3] = [("small", SMALL), ("medium", MEDIUM), ("large", LARGE)];

fn ri_sandbox(wasm: &[u8], options: &Options) -> Vec<u8> {
    instrument(wasm, options)
        .expect("ri-sandbox instruments the module")
        .module
}

/// What a wasm-instrument user pays: parse into parity-wasm's tree, inject, serialise.
fn wasm_instrument(wasm: &[u8]) -> Vec<u8> {
    let module: parity_wasm::elements::Module =
        parity_wasm::deserialize_buffer(wasm).expect("parity-wasm parses the module");
    let module = gas_metering::inject(
        module,
        mutable_global::Injector::new("gas_left"),
        &ConstantCostRules::default(),
    )
    .unwrap_or_else(|_| panic!("wasm-instrument instruments the module"));
    parity_wasm::serialize(module).expect("parity-wasm serialises the module")
}

/// Decode every section and operator with wasmparser and encode it again with wasm-encoder.
fn reencode(wasm: &[u8]) -> Vec<u8> {
    let mut module = wasm_encoder::Module::new();
    RoundtripReencoder
        .parse_core_module(&mut module, wasmparser::Parser::new(0), wasm)
        .expect("the module round-trips");
    module.finish()
}

/// ri-sandbox's three configurations: the defaults, the defaults on the calling thread only,
/// and on one thread what wasm-instrument's `inject` does, and only that (gas metering: no
/// stack limit, no NaN canonicalization, no state exports).
fn configurations() -> [Options; 3] {
    let options = Options::default();
    let mut one_thread = Options::default();
    one_thread.threads = std::num::NonZeroUsize::new(1);
    let mut gas_only = one_thread.clone();
    gas_only.stack_limit = None;
    gas_only.canonicalize_nans = false;
    gas_only.export_state = false;
    [options, one_thread, gas_only]
}

fn bench_instrument(c: &mut Criterion) {
    let [options, one_thread, gas_only] = configurations();
    for (name, wasm) in MODULES {
        // Check once, outside the timings, that every strategy accepts the module, and show
        // the output sizes for context.
        eprintln!(
            "instrument/{name}: input {} bytes; output ri_sandbox {} / wasm_instrument {} / \
             reencode {} bytes",
            wasm.len(),
            ri_sandbox(wasm, &options).len(),
            wasm_instrument(wasm).len(),
            reencode(wasm).len(),
        );

        let mut group = c.benchmark_group(format!("instrument/{name}"));
        group.throughput(Throughput::Bytes(wasm.len() as u64));
        group.bench_function("ri_sandbox", |b| {
            b.iter(|| ri_sandbox(black_box(wasm), &options))
        });
        group.bench_function("ri_sandbox_1_thread", |b| {
            b.iter(|| ri_sandbox(black_box(wasm), &one_thread))
        });
        group.bench_function("ri_sandbox_gas_only_1_thread", |b| {
            b.iter(|| ri_sandbox(black_box(wasm), &gas_only))
        });
        group.bench_function("wasm_instrument", |b| {
            b.iter(|| wasm_instrument(black_box(wasm)))
        });
        group.bench_function("reencode", |b| b.iter(|| reencode(black_box(wasm))));
        // For context: what validation alone costs, which the instrumenter also does.
        group.bench_function("validate", |b| {
            b.iter(|| {
                wasmparser::Validator::new_with_features(
                    ri_sandbox::instrument::supported_features(),
                )
                .validate_all(black_box(wasm))
                .expect("valid")
            })
        });
        group.finish();
    }
}

/// How many strategies [`paired_ratios`] compares.
const STRATEGIES: usize = 5;

/// One way of instrumenting (or re-encoding) a module.
type Strategy<'a> = dyn Fn(&[u8]) -> Vec<u8> + 'a;

/// Paired ratios: the strategies run one after another, in a shuffled order, round after
/// round, and each round gives every ratio from times taken within a few milliseconds of each
/// other. Criterion measures one strategy after the other, a few seconds each, so a virtual
/// machine whose speed drifts during the run (this project's does, by up to 2x) skews the
/// ratios between its columns; the median of per-round ratios does not drift with it.
fn paired_ratios() {
    let [options, one_thread, gas_only] = configurations();
    let strategies: [(&str, &Strategy); STRATEGIES] = [
        ("ri_sandbox", &|wasm| ri_sandbox(wasm, &options)),
        ("ri_sandbox_1_thread", &|wasm| ri_sandbox(wasm, &one_thread)),
        ("ri_sandbox_gas_only_1_thread", &|wasm| {
            ri_sandbox(wasm, &gas_only)
        }),
        ("wasm_instrument", &wasm_instrument),
        ("reencode", &reencode),
    ];
    let run = |strategy: usize, wasm: &[u8]| -> f64 {
        let start = Instant::now();
        black_box(strategies[strategy].1(black_box(wasm)));
        start.elapsed().as_secs_f64()
    };
    // (a, b): how many times faster `a` is than `b`, per round.
    let pairs = [(0, 3), (0, 4), (1, 3), (1, 4), (2, 3), (2, 4)];
    println!("paired ratios (median of rounds, quartiles in brackets; > 1: the first is faster)");
    for ((name, wasm), rounds) in MODULES.into_iter().zip([1000, 100, 30]) {
        let mut ratios = vec![Vec::with_capacity(rounds); pairs.len()];
        // A shuffled order each round (xorshift, fixed seed): each strategy runs after each
        // other one about as often, so none always finds the caches warmed by its own code.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..=rounds {
            let mut order: [usize; STRATEGIES] = std::array::from_fn(|i| i);
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let mut times = [0.0; STRATEGIES];
            for strategy in order {
                times[strategy] = run(strategy, wasm);
            }
            // The first round only warms up.
            if round > 0 {
                for (ratio, &(a, b)) in ratios.iter_mut().zip(&pairs) {
                    ratio.push(times[b] / times[a]);
                }
            }
        }
        for (ratio, &(a, b)) in ratios.iter_mut().zip(&pairs) {
            ratio.sort_by(f64::total_cmp);
            let at = |q: usize| ratio[(ratio.len() - 1) * q / 4];
            println!(
                "instrument/{name}: {} vs {}: {:.2}x [{:.2}-{:.2}]",
                strategies[a].0,
                strategies[b].0,
                at(2),
                at(1),
                at(3)
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_instrument
}

fn main() {
    // About 15 seconds; `PAIRED=0` skips them.
    if std::env::var_os("PAIRED").is_none_or(|paired| paired != "0") {
        paired_ratios();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}

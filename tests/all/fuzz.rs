//! Fuzz bodies over arbitrary input, each a plain function. `cargo fuzz` targets in
//! `instrument/fuzz/` call them for long runs (nightly); the tests below run each a few hundred
//! seeded iterations on stable, so `cargo test` and CI exercise them too. A crash input found
//! by a long run becomes a fixture under `fixtures/regressions/`.

use crate::engines::{self, Instance, Outcome, Value};
use ri_sandbox::instrument::{instrument, max_output_len, ErrorKind, Options};
use wasmparser::Validator;

/// The instrumenter never panics on arbitrary bytes; whatever it accepts comes out valid and
/// within the size bound, and instrumenting its output again is refused.
pub fn instrument_arbitrary_bytes(data: &[u8]) {
    let Ok(out) = instrument(data, &Options::default()) else {
        return;
    };
    assert!(
        out.module.len() <= max_output_len(data.len()),
        "output over the size bound"
    );
    Validator::new_with_features(ri_sandbox::instrument::supported_features())
        .validate_all(&out.module)
        .expect("instrumented output validates");
    let again = instrument(&out.module, &Options::default()).expect_err("instrumented twice");
    assert!(
        matches!(again.kind(), ErrorKind::AlreadyInstrumented),
        "{again}"
    );
}

/// A wasm-smith module inside what ri-sandbox meters, made to terminate.
pub fn smith_module(data: &[u8], simd: bool) -> Option<Vec<u8>> {
    let config = wasm_smith::Config {
        gc_enabled: false,
        threads_enabled: false,
        shared_everything_threads_enabled: false,
        relaxed_simd_enabled: false,
        exceptions_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        custom_descriptors_enabled: false,
        simd_enabled: simd,
        reference_types_enabled: simd,
        max_imports: 0,
        memory_max_size_required: true,
        max_memory32_bytes: 4 << 16,
        max_memory64_bytes: 4 << 16,
        table_max_size_required: true,
        max_table_elements: 100,
        canonicalize_nans: true,
        export_everything: true,
        min_funcs: 1,
        ..wasm_smith::Config::default()
    };
    let mut u = arbitrary::Unstructured::new(data);
    let mut module = wasm_smith::Module::new(config, &mut u).ok()?;
    module.ensure_termination(200).ok()?;
    Some(module.to_bytes())
}

/// Every wasm-smith module instruments, and its output validates.
pub fn instrument_smith_module(data: &[u8]) {
    let Some(wasm) = smith_module(data, true) else {
        return;
    };
    let out = instrument(&wasm, &Options::default())
        .unwrap_or_else(|e| panic!("a metered-feature module was refused: {e}"));
    Validator::new_with_features(ri_sandbox::instrument::supported_features())
        .validate_all(&out.module)
        .expect("instrumented output validates");
    // With entry points (one per exported function, any signature) too.
    let mut options = Options::default();
    options.entry_points = true;
    let out = instrument(&wasm, &options).expect("instruments with entry points");
    assert!(
        out.module.len() <= max_output_len(wasm.len()),
        "output over the size bound"
    );
    Validator::new_with_features(ri_sandbox::instrument::supported_features())
        .validate_all(&out.module)
        .expect("output with entry points validates");
}

/// Arguments of zero for a signature of plain numbers.
fn zeros(ty: &wasmtime::FuncType) -> Option<Vec<Value>> {
    ty.params()
        .map(|t| match t {
            wasmtime::ValType::I32 => Some(Value::I32(0)),
            wasmtime::ValType::I64 => Some(Value::I64(0)),
            wasmtime::ValType::F32 => Some(Value::F32(0)),
            wasmtime::ValType::F64 => Some(Value::F64(0)),
            _ => None,
        })
        .collect()
}

/// A metered run with enough gas gives what the unmetered run gives: the same results, or a
/// trap where it traps. (Hitting the deterministic stack limit, where the unmetered engine
/// would recurse deeper, is the one allowed difference.)
pub fn metered_matches_unmetered(data: &[u8]) -> usize {
    let Some(wasm) = smith_module(data, false) else {
        return 0;
    };
    let Ok(out) = instrument(&wasm, &Options::default()) else {
        panic!("a metered-feature module was refused");
    };
    let engine = engines::wasmtime_engine();
    let plain = {
        let module = wasmtime::Module::new(&engine, &wasm).expect("compiles");
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(50);
        match wasmtime::Instance::new(&mut store, &module, &[]) {
            Ok(instance) => (store, instance),
            Err(_) => return 0, // e.g. an out-of-bounds data segment: nothing to compare
        }
    };
    let (mut store, instance) = plain;
    let Ok(mut metered) = engines::Wasmtime::new(&engine, &out.module) else {
        panic!("the metered module does not instantiate where the original does");
    };
    let exports: Vec<(String, wasmtime::Func)> = instance
        .exports(&mut store)
        .filter_map(|e| {
            let name = e.name().to_string();
            e.into_func().map(|f| (name, f))
        })
        .collect();
    let mut compared = 0;
    for (name, func) in exports {
        let ty = func.ty(&store);
        let Some(args) = zeros(&ty) else { continue };
        let params: Vec<wasmtime::Val> = args
            .iter()
            .map(|a| match *a {
                Value::I32(v) => wasmtime::Val::I32(v),
                Value::I64(v) => wasmtime::Val::I64(v),
                Value::F32(v) => wasmtime::Val::F32(v),
                Value::F64(v) => wasmtime::Val::F64(v),
            })
            .collect();
        let mut results: Vec<wasmtime::Val> = ty
            .results()
            .map(|t| wasmtime::Val::default_for_ty(&t).unwrap_or(wasmtime::Val::I32(0)))
            .collect();
        store.set_epoch_deadline(50);
        let plain = func.call(&mut store, &params, &mut results);
        let got = metered.call(&name, &args, 1 << 40).expect("call runs");
        match (&plain, &got.outcome) {
            (_, Outcome::StackLimit) | (_, Outcome::Watchdog) => continue,
            (Ok(()), Outcome::Returned(values)) => {
                let expected: Vec<Value> = results
                    .iter()
                    .filter_map(|v| match v {
                        wasmtime::Val::I32(x) => Some(Value::I32(*x)),
                        wasmtime::Val::I64(x) => Some(Value::I64(*x)),
                        wasmtime::Val::F32(x) => Some(Value::F32(*x)),
                        wasmtime::Val::F64(x) => Some(Value::F64(*x)),
                        _ => None,
                    })
                    .collect();
                assert_eq!(&expected, values, "`{name}`: results differ once metered");
            }
            (Err(_), Outcome::Trapped) => {}
            (plain, metered) => panic!("`{name}`: unmetered {plain:?}, metered {metered:?}"),
        }
        compared += 1;
    }
    compared
}

/// Canonicalizing scalar NaNs where they could first be observed (the default) gives exactly
/// what canonicalizing after every float operation gives: the same results, gas, memory and
/// globals, bit for bit, on float-heavy wasm-smith modules that do not canonicalize NaNs
/// themselves, called with zeros and with NaNs that carry payloads (which must pass through
/// untouched). Returns how many calls were compared and whether the two strategies placed
/// their canonicalizations differently (so that the comparison was not vacuous).
pub fn nan_strategies_agree(data: &[u8]) -> (usize, bool) {
    let config = wasm_smith::Config {
        canonicalize_nans: false,
        simd_enabled: false,
        reference_types_enabled: false,
        exceptions_enabled: false,
        gc_enabled: false,
        threads_enabled: false,
        relaxed_simd_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        custom_descriptors_enabled: false,
        shared_everything_threads_enabled: false,
        max_imports: 0,
        memory_max_size_required: true,
        max_memory32_bytes: 1 << 16,
        max_memory64_bytes: 1 << 16,
        export_everything: true,
        min_funcs: 1,
        ..wasm_smith::Config::default()
    };
    let mut u = arbitrary::Unstructured::new(data);
    let Ok(mut module) = wasm_smith::Module::new(config, &mut u) else {
        return (0, false);
    };
    if module.ensure_termination(200).is_err() {
        return (0, false);
    }
    let wasm = module.to_bytes();
    let observed = instrument(&wasm, &Options::default()).expect("instruments");
    let mut eager_options = Options::default();
    eager_options.eager_nan_canonicalization = true;
    let eager = instrument(&wasm, &eager_options).expect("instruments");
    let differ = observed.module != eager.module;

    for out in [&observed.module, &eager.module] {
        Validator::new_with_features(ri_sandbox::instrument::supported_features())
            .validate_all(out)
            .expect("instrumented output validates");
    }
    let engine = engines::wasmtime_engine();
    let (a, b) = (
        engines::Wasmtime::new(&engine, &observed.module),
        engines::Wasmtime::new(&engine, &eager.module),
    );
    let (mut a, mut b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        // Both fail alike (a data segment out of bounds, say): nothing to compare.
        (Err(a), Err(b)) if a == b => return (0, differ),
        (a, b) => panic!("instantiation differs: {:?} vs {:?}", a.err(), b.err()),
    };
    assert_eq!(a.state(), b.state(), "state after instantiation");
    let probe = wasmtime::Module::new(&engine, &wasm).expect("compiles");
    let mut compared = 0;
    for export in probe.exports() {
        let Some(ty) = export.ty().func().cloned() else {
            continue;
        };
        let Some(zero) = zeros(&ty) else { continue };
        // A quiet NaN with a payload and a signalling one: bits the program may move.
        let payload: Vec<Value> = zero
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::I32(_) => Value::I32(-(i as i32)),
                Value::I64(_) => Value::I64(i as i64),
                Value::F32(_) => Value::F32(0x7fc0_0123 | (i as u32 & 1) << 31),
                Value::F64(_) => Value::F64(0x7ff4_0000_0000_0abc),
            })
            .collect();
        // Infinities and negatives, whose sums, products and square roots are NaNs with the
        // CPU's own bits.
        let extremes: Vec<Value> = zero
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::I32(_) => Value::I32(i as i32 + 1),
                Value::I64(_) => Value::I64(-1),
                Value::F32(_) if i % 2 == 0 => Value::F32(f32::INFINITY.to_bits()),
                Value::F32(_) => Value::F32((-1.5f32).to_bits()),
                Value::F64(_) if i % 2 == 0 => Value::F64(f64::NEG_INFINITY.to_bits()),
                Value::F64(_) => Value::F64((-0.5f64).to_bits()),
            })
            .collect();
        for args in [&zero, &payload, &extremes] {
            let left = a.call(export.name(), args, 1 << 40).expect("call runs");
            let right = b.call(export.name(), args, 1 << 40).expect("call runs");
            assert_eq!(left, right, "`{}`({args:?})", export.name());
            assert_eq!(a.state(), b.state(), "state after `{}`", export.name());
            compared += 1;
        }
    }
    (compared, differ)
}

/// Decoding a snapshot never panics on any input, and whatever decodes re-encodes to the same
/// bytes (the format has one encoding of each state).
pub fn snapshot_from_bytes(data: &[u8]) {
    if let Ok(snapshot) = ri_sandbox::Snapshot::from_bytes(data) {
        assert_eq!(snapshot.to_bytes(), data);
    }
}

/// A deterministic byte stream for seeded runs.
pub fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[test]
fn fuzz_instrument_arbitrary_bytes_seeded() {
    for seed in 0..300 {
        let bytes = seeded_bytes(seed, (seed as usize * 7) % 300);
        instrument_arbitrary_bytes(&bytes);
        // Also a valid header followed by noise, which reaches the section parsers.
        let mut framed = b"\0asm\x01\0\0\0".to_vec();
        framed.extend_from_slice(&bytes);
        instrument_arbitrary_bytes(&framed);
    }
    // And mutations of real modules, which reach the function bodies.
    let module = wat::parse_str(include_str!("../../fixtures/json-echo.wat")).unwrap();
    for seed in 0..300 {
        let mut bytes = module.clone();
        let noise = seeded_bytes(seed, 4);
        let at = (u32::from_le_bytes(noise[..4].try_into().unwrap()) as usize) % bytes.len();
        bytes[at] = noise[0] ^ noise[1];
        instrument_arbitrary_bytes(&bytes);
    }
}

#[test]
fn fuzz_instrument_smith_module_seeded() {
    for seed in seeds(0..200) {
        instrument_smith_module(&seeded_bytes(seed, 2048));
    }
}

/// `range`, or the seeds `FUZZ_SEEDS=first..end` names (to search longer).
fn seeds(range: std::ops::Range<u64>) -> std::ops::Range<u64> {
    std::env::var("FUZZ_SEEDS")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once("..")?;
            Some(a.parse().ok()?..b.parse().ok()?)
        })
        .unwrap_or(range)
}

#[test]
fn fuzz_nan_strategies_agree_seeded() {
    let mut compared = 0;
    let mut differing = 0;
    for seed in seeds(0..500) {
        let (calls, differ) = nan_strategies_agree(&seeded_bytes(seed + 10_000, 4096));
        compared += calls;
        differing += usize::from(differ);
    }
    eprintln!("calls compared {compared}, modules placed differently {differing}");
    assert!(compared > 100, "only {compared} calls compared");
    assert!(
        differing > 10,
        "only {differing} modules placed NaN checks differently"
    );
}

#[test]
fn fuzz_metered_matches_unmetered_seeded() {
    let mut made = 0;
    let compared: usize = (0..200)
        .map(|seed| {
            let data = seeded_bytes(seed, 4096);
            if smith_module(&data, false).is_some() {
                made += 1;
            }
            metered_matches_unmetered(&data)
        })
        .sum();
    eprintln!("modules {made}, calls compared {compared}");
    assert!(compared > 100, "only {compared} calls compared");
}

/// Random loops over a few `f64` (or, for a third of the seeds, `f32`) locals, built to stress where the NaN analysis places its
/// points: arithmetic that makes NaNs (`z / z` with `z = 0`), locals read before or after
/// their assignment in program order, copies between locals, values carried on the stack
/// across assignments, stores, `select`, sign operations and returns. Run with both
/// canonicalization strategies on wasmtime: on a CPU whose NaNs are not the canonical one
/// (x86: negative), a point the default strategy misses shows as different bits in the
/// results or memory. Returns the module's text (for a failure message).
pub fn nan_loop_shapes_agree(seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    const LOCALS: u64 = 4;
    // One float type per module: f32 for a third of the seeds.
    let f32 = next(3) == 0;
    let t = if f32 { "f32" } else { "f64" };
    let round_trip = if f32 {
        "demote_f64 (f64.promote_f32"
    } else {
        "promote_f32 (f32.demote_f64"
    };
    let mut body = String::new();
    let mut carried = 0;
    for _ in 0..2 + next(8) {
        let (a, b, c) = (next(LOCALS), next(LOCALS), next(LOCALS));
        let value = match next(14) {
            0 => format!("({t}.div (local.get $z) (local.get $z))"),
            1 => format!("({t}.add (local.get $l{a}) (local.get $l{b}))"),
            2 => format!("(local.get $l{a})"),
            3 => format!("({t}.neg (local.get $l{a}))"),
            4 => format!(
                "(select (local.get $l{a}) (local.get $l{b}) (i32.and (local.get $n) (i32.const 1)))"
            ),
            5 => format!("({t}.load (i32.const {}))", 8 * a),
            6 => format!("(local.tee $l{b} ({t}.sqrt (local.get $l{a})))"),
            7 => format!("(block (result {t}) ({t}.sub (local.get $l{a}) (local.get $l{b})))"),
            8 => format!("(call $id ({t}.div (local.get $l{a}) (local.get $z)))"),
            9 => format!("({t}.copysign (local.get $l{a}) (local.get $l{b}))"),
            10 => format!(
                "(if (result {t}) (i32.and (local.get $n) (i32.const 2))
                   (then ({t}.div (local.get $l{a}) (local.get $z))) (else (local.get $l{b})))"
            ),
            11 => format!(
                "(block $b (result {t})
                   (drop (br_if $b (local.get $l{a}) (i32.and (local.get $n) (i32.const 1))))
                   ({t}.div (local.get $z) (local.get $z)))"
            ),
            12 => format!("({t}.{round_trip} (local.get $l{a})))"),
            _ => format!("({t}.mul (local.get $l{a}) ({t}.const 2))"),
        };
        match next(7) {
            0 => body.push_str(&format!("({t}.store (i32.const {}) {value})\n", 8 * c)),
            2 => body.push_str(&format!("(global.set $g {value})\n")),
            3 => body.push_str(&format!(
                "(if (i32.and (local.get $n) (i32.const 1)) (then (local.set $l{c} {value})))\n"
            )),
            1 if carried < 3 => {
                // Left on the stack, stored after the loop body's other statements.
                body.push_str(&format!("(i32.const {}) {value}\n", 64 + 8 * carried));
                carried += 1;
            }
            _ => body.push_str(&format!("(local.set $l{c} {value})\n")),
        }
    }
    for _ in 0..carried {
        body.push_str(&format!("({t}.store)\n"));
    }
    let result = next(LOCALS);
    let observe = if f32 {
        format!("(i64.extend_i32_u (i32.reinterpret_f32 (local.get $l{result})))")
    } else {
        format!("(i64.reinterpret_f64 (local.get $l{result}))")
    };
    let wat = format!(
        "(module (memory (export \"memory\") 1) (global $g (export \"g\") (mut {t}) ({t}.const 0))
          (func $id (param {t}) (result {t}) (local.get 0))
          (func (export \"f\") (param $z {t}) (param $n i32) (result i64)
            (local $l0 {t}) (local $l1 {t}) (local $l2 {t}) (local $l3 {t})
            (loop $top
              {body}
              (br_if $top (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
            {observe}))"
    );
    let wasm = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"));
    let observed = instrument(&wasm, &Options::default()).expect("instruments");
    let mut eager = Options::default();
    eager.eager_nan_canonicalization = true;
    let eager = instrument(&wasm, &eager).expect("instruments");
    let float = |x: f64| {
        if f32 {
            Value::F32((x as f32).to_bits())
        } else {
            Value::F64(x.to_bits())
        }
    };
    let engine = engines::wasmtime_engine();
    let mut a = engines::Wasmtime::new(&engine, &observed.module).expect("instantiates");
    let mut b = engines::Wasmtime::new(&engine, &eager.module).expect("instantiates");
    for args in [
        [float(0.0), Value::I32(3)],
        [float(f64::INFINITY), Value::I32(4)],
    ] {
        let left = a.call("f", &args, 1 << 40).expect("call runs");
        let right = b.call("f", &args, 1 << 40).expect("call runs");
        assert_eq!(left, right, "{args:?}\n{wat}");
        assert!(
            a.state() == b.state(),
            "memory differs after {args:?}\n{wat}"
        );
    }
    wat
}

#[test]
fn fuzz_nan_loop_shapes_agree_seeded() {
    for seed in seeds(0..300) {
        nan_loop_shapes_agree(seed);
    }
}

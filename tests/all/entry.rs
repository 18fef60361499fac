//! Entry points (ABI section 11) on two engines: calling `ri_sandbox_call_{name}` with a
//! budget gives the results, the outcome and the gas left that setting the counter global
//! and calling `{name}` gives, on wasmtime and on wasmi.

use crate::common::fixture_path;
use crate::engines::{self, Instance, Outcome, Value};
use ri_sandbox::instrument::{abi, instrument, Options};

/// The call through the counter globals (on one instance) and through the entry point (on
/// another, in the same state), compared. The entry call is made with the engine-side budget
/// 0, so it only succeeds if the entry point sets the budget itself.
fn compare(
    plain: &mut dyn Instance,
    engine: &mut dyn Instance,
    export: &str,
    args: &[Value],
    budget: i64,
) {
    let global = plain.call(export, args, budget).expect("call runs");
    let mut entry_args = vec![Value::I64(budget)];
    entry_args.extend_from_slice(args);
    let entry_name = format!("{}{export}", abi::ENTRY_EXPORT_PREFIX);
    let entry = engine
        .call(&entry_name, &entry_args, 0)
        .expect("entry runs");
    assert_eq!(global.gas_left, entry.gas_left, "{export}({args:?})");
    match (global.outcome, entry.outcome) {
        (Outcome::Returned(values), Outcome::Returned(mut with_gas)) => {
            assert_eq!(with_gas.pop(), Some(Value::I64(global.gas_left)));
            assert_eq!(values, with_gas, "{export}({args:?})");
        }
        (a, b) => assert_eq!(a, b, "{export}({args:?})"),
    }
}

#[test]
fn entry_points_agree_with_the_counter_globals_on_wasmtime_and_wasmi() {
    let mut options = Options::default();
    options.entry_points = true;
    let cases: &[(&str, &str, &[Value])] = &[
        ("fibonacci.wat", "fib", &[Value::I32(15)]),
        ("recursion.wat", "down", &[Value::I32(100)]),
        ("recursion.wat", "down", &[Value::I32(1_000_000)]),
        ("counter.wat", "increment", &[]),
        ("add.wat", "add", &[Value::I32(-3), Value::I32(7)]),
    ];
    let wasmtime = engines::wasmtime_engine();
    let wasmi = engines::wasmi_engine();
    for (file, export, args) in cases {
        let wasm = wat::parse_file(fixture_path(file)).expect("fixture parses");
        let out = instrument(&wasm, &options).expect("instruments").module;
        let info = abi::AbiInfo::read(&out).expect("custom section");
        assert_ne!(info.flags & abi::FLAG_ENTRY_POINTS, 0);
        let mut on_wasmtime = engines::Wasmtime::new(&wasmtime, &out).expect("instantiates");
        let mut on_wasmtime_too = engines::Wasmtime::new(&wasmtime, &out).unwrap();
        let mut on_wasmi = engines::Wasmi::new(&wasmi, &out).expect("instantiates");
        let mut on_wasmi_too = engines::Wasmi::new(&wasmi, &out).unwrap();
        // Enough gas, and too little (out of gas at the same point both ways).
        for budget in [1 << 40, 40] {
            compare(&mut on_wasmtime, &mut on_wasmtime_too, export, args, budget);
            compare(&mut on_wasmi, &mut on_wasmi_too, export, args, budget);
        }
    }
    // Without the option there are none (the output needs no multi-value).
    let wasm = wat::parse_file(fixture_path("add.wat")).unwrap();
    let plain = instrument(&wasm, &Options::default()).unwrap().module;
    let mut on_wasmtime = engines::Wasmtime::new(&wasmtime, &plain).unwrap();
    assert!(on_wasmtime
        .call(
            "ri_sandbox_call_add",
            &[Value::I64(100), Value::I32(1), Value::I32(2)],
            100
        )
        .is_err());
}

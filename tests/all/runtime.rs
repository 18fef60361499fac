//! The runtime through its public API: lifecycle, limits, host functions, determinism, JSON.
//! The seed roadmap's test lists are the floor.

use crate::common::{fixture, runtime};
use ri_sandbox::{
    Config, ErrorKind, HostError, HostFunction, Manager, Payload, Runtime, Sandbox, Status,
    TrapCode, ValType, Value,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

fn loaded(name: &str, config: Config) -> Sandbox {
    let mut sandbox = Sandbox::new(runtime(), config).unwrap();
    sandbox.load(&fixture(name)).unwrap();
    sandbox
}

#[test]
fn add_returns_the_sum_and_exact_gas() {
    let mut sandbox = loaded("add.wasm", Config::default());
    assert_eq!(sandbox.status(), Status::Loaded);
    let run = sandbox
        .call("add", &[Value::I32(3), Value::I32(7)])
        .unwrap();
    assert_eq!(run.values(), &[Value::I32(10)]);
    assert_eq!(run.metrics.gas_used, 3);
    assert_eq!(run.metrics.gas_limit, 1_000_000);
    let run = sandbox
        .call("add", &[Value::I32(-5), Value::I32(-7)])
        .unwrap();
    assert_eq!(run.values(), &[Value::I32(-12)]);
    for _ in 0..10 {
        let again = sandbox
            .call("add", &[Value::I32(3), Value::I32(7)])
            .unwrap();
        assert_eq!(again.values(), &[Value::I32(10)]);
        assert_eq!(again.metrics.gas_used, 3);
    }
    assert_eq!(sandbox.metrics().calls, 12);
    assert_eq!(sandbox.metrics().gas_used, 36);
}

#[test]
fn text_modules_load_too() {
    let mut sandbox = loaded("add.wat", Config::default());
    let run = sandbox
        .call("add", &[Value::I32(1), Value::I32(2)])
        .unwrap();
    assert_eq!(run.values(), &[Value::I32(3)]);
}

/// `(func (export "sumN") (param i32 x N) (result i32))` adding its parameters up, for N = 16
/// (the most an entry point is made for, ABI section 11) and 17 (called through the counter
/// globals instead).
fn sums() -> String {
    let mut wat = String::from("(module");
    for n in [16, 17] {
        wat.push_str(&format!("(func (export \"sum{n}\") (param"));
        wat.push_str(&" i32".repeat(n));
        wat.push_str(") (result i32) local.get 0");
        for i in 1..n {
            wat.push_str(&format!(" local.get {i} i32.add"));
        }
        wat.push(')');
    }
    wat.push(')');
    wat
}

#[test]
fn exports_with_or_without_an_entry_point_give_the_same_results_and_gas() {
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    sandbox.load(sums().as_bytes()).unwrap();
    for n in [16, 17] {
        let args: Vec<Value> = (1..=n).map(Value::I32).collect();
        let run = sandbox.call(&format!("sum{n}"), &args).unwrap();
        assert_eq!(run.values(), &[Value::I32(n * (n + 1) / 2)]);
        // n local.get and n - 1 i32.add, one gas each.
        assert_eq!(run.metrics.gas_used, 2 * n as u64 - 1, "sum{n}");
    }
    let mut config = Config::default();
    config.max_gas = 30;
    let mut sandbox = Sandbox::new(runtime(), config).unwrap();
    sandbox.load(sums().as_bytes()).unwrap();
    for n in [16, 17] {
        let args: Vec<Value> = (1..=n).map(Value::I32).collect();
        let err = sandbox.call(&format!("sum{n}"), &args).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::GasExhausted {
                    used: 30,
                    limit: 30
                }
            ),
            "sum{n}: {err}"
        );
    }
}

#[test]
fn modules_over_the_limit_on_locals_are_refused_before_compiling() {
    // Two functions of one parameter and 49,990 locals each, declared in a few bytes.
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, Module,
        TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], []);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..2 {
        functions.function(0);
        let mut f = Function::new([(49_990, ValType::I32)]);
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut exports = ExportSection::new();
    exports.export("f", ExportKind::Func, 0);
    let mut module = Module::new();
    module
        .section(&types)
        .section(&functions)
        .section(&exports)
        .section(&code);
    let wasm = module.finish();

    let runtime = runtime();
    let compiled = runtime.compile(&wasm, &Config::default()).unwrap();
    let config = Config::default().with_max_locals(2 * 49_991 - 1);
    let err = runtime.compile(&wasm, &config).err().unwrap();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidModule { reason, .. } if reason.contains("locals")),
        "{err}"
    );
    assert!(runtime
        .compile(&wasm, &Config::default().with_max_locals(2 * 49_991))
        .is_ok());
    // A module compiled under another limit is not loaded under this one.
    let mut sandbox = Sandbox::new(runtime, config).unwrap();
    let err = sandbox.load_compiled(&compiled).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err}");
}

#[test]
fn state_persists_across_calls() {
    let mut sandbox = loaded("counter.wasm", Config::default());
    for expected in 1..=5 {
        let run = sandbox.call("increment", &[]).unwrap();
        assert_eq!(run.values(), &[Value::I32(expected)]);
    }
    assert_eq!(sandbox.call("get", &[]).unwrap().values(), &[Value::I32(5)]);
}

#[test]
fn ids_count_up_per_runtime() {
    let runtime = Runtime::new().unwrap();
    let a = Sandbox::new(&runtime, Config::default()).unwrap();
    let b = Sandbox::new(&runtime, Config::default()).unwrap();
    assert_eq!(a.id(), "sandbox-0");
    assert_eq!(b.id(), "sandbox-1");
    assert_eq!(a.status(), Status::Created);
}

#[test]
fn wrong_status_is_a_typed_error() {
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    let err = sandbox.call("add", &[]).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::WrongStatus {
                status: Status::Created,
                ..
            }
        ),
        "{err}"
    );
    sandbox.load(&fixture("add.wasm")).unwrap();
    let err = sandbox.load(&fixture("add.wasm")).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::WrongStatus {
                status: Status::Loaded,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn destroyed_sandboxes_refuse_everything() {
    let mut sandbox = loaded("add.wasm", Config::default());
    sandbox.destroy();
    sandbox.destroy();
    assert_eq!(sandbox.status(), Status::Destroyed);
    let err = sandbox
        .call("add", &[Value::I32(1), Value::I32(2)])
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InstanceDestroyed { id } if id == sandbox.id()));
    let err = sandbox.load(&fixture("add.wasm")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InstanceDestroyed { .. }));
}

#[test]
fn manager_runs_the_seven_operations_by_id() {
    let mut manager = Manager::new(runtime().clone());
    let id = manager.create(Config::default()).unwrap();
    assert!(id.starts_with("sandbox-"));
    manager.load(&id, &fixture("add.wasm")).unwrap();
    let run = manager
        .execute(
            &id,
            "add",
            Payload::Args(vec![Value::I32(3), Value::I32(7)]),
        )
        .unwrap();
    assert_eq!(run.values(), &[Value::I32(10)]);
    assert_eq!(manager.metrics(&id).unwrap().calls, 1);
    manager.destroy(&id).unwrap();
    manager.destroy(&id).unwrap();
    for err in [
        manager
            .execute(&id, "add", Payload::Args(vec![]))
            .unwrap_err(),
        manager.load(&id, &fixture("add.wasm")).unwrap_err(),
        manager.metrics(&id).unwrap_err(),
    ] {
        assert!(
            matches!(err.kind(), ErrorKind::InstanceDestroyed { .. }),
            "{err}"
        );
    }
    let err = manager
        .load("sandbox-999999", &fixture("add.wasm"))
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::UnknownSandbox { .. }));
    assert_eq!(manager.live().count(), 0);
}

#[test]
fn unknown_exports_and_bad_arguments_are_typed_errors() {
    let mut sandbox = loaded("add.wasm", Config::default());
    let err = sandbox.call("nope", &[]).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::UnknownExport { name } if name == "nope"));
    let err = sandbox.call("add", &[Value::I32(1)]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ArgumentMismatch { .. }),
        "{err}"
    );
    let err = sandbox
        .call("add", &[Value::I64(1), Value::I32(1)])
        .unwrap_err();
    assert!(err.to_string().contains("(i32, i32)"), "{err}");
    // Still usable.
    assert!(sandbox.call("add", &[Value::I32(1), Value::I32(1)]).is_ok());
}

#[test]
fn invalid_modules_are_refused_with_the_reason() {
    for (bytes, needle) in [
        (&b""[..], "empty"),
        (&b"\x00asm\x01\x00\x00\x00\x01"[..], "byte offset"),
        (&b"\xff\xfe\xfd"[..], "magic"),
        (&b"(module (func (result i32)))"[..], "type mismatch"),
    ] {
        let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
        let err = sandbox.load(bytes).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidModule { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{needle}: {err}");
        assert_eq!(sandbox.status(), Status::Created);
    }
}

#[test]
fn infinite_loop_runs_out_of_gas_and_with_huge_gas_times_out() {
    let mut sandbox = loaded("infinite-loop.wasm", Config::default());
    let err = sandbox.call("spin", &[]).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::GasExhausted {
                used: 1_000_000,
                limit: 1_000_000
            }
        ),
        "{err}"
    );
    assert!(err.is_deterministic());
    let mut sandbox = loaded(
        "infinite-loop.wasm",
        Config::default()
            .with_max_gas(u64::MAX)
            .with_max_execution_ms(20),
    );
    let err = sandbox.call("spin", &[]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Timeout { limit_ms: 20, .. }),
        "{err}"
    );
    assert!(!err.is_deterministic());
    // Usable after either.
    assert_eq!(sandbox.status(), Status::Loaded);
}

#[test]
fn memory_hog_past_the_limit_is_memory_exceeded() {
    let config = Config::default().with_max_memory_bytes(4 * 65536);
    let mut sandbox = loaded("memory-hog.wasm", config);
    let run = sandbox.call("allocate", &[Value::I32(2 * 65536)]).unwrap();
    assert_eq!(run.values(), &[Value::I32(1)]);
    assert_eq!(run.metrics.peak_memory_bytes, 3 * 65536);
    let err = sandbox
        .call("allocate", &[Value::I32(2 * 65536)])
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::MemoryExceeded { requested, limit }
            if *requested == 5 * 65536 && *limit == 4 * 65536),
        "{err}"
    );
    // A smaller request still fits.
    let run = sandbox.call("allocate", &[Value::I32(65536)]).unwrap();
    assert_eq!(run.values(), &[Value::I32(3)]);
}

#[test]
fn initial_memory_over_the_limit_is_refused_at_load() {
    let mut sandbox =
        Sandbox::new(runtime(), Config::default().with_max_memory_bytes(65536)).unwrap();
    let err = sandbox.load(b"(module (memory 2))").unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::MemoryExceeded { .. }),
        "{err}"
    );
    assert_eq!(sandbox.status(), Status::Created);
    sandbox.load(b"(module (memory 1))").unwrap();
}

#[test]
fn deep_recursion_hits_the_stack_limit() {
    let mut sandbox = loaded("recursion.wasm", Config::default());
    let err = sandbox.call("down", &[Value::I32(0)]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::StackLimit { limit: 262_144 }),
        "{err}"
    );
    // The counter is reset for the next call, which hits the limit at the same point.
    let first = sandbox.metrics().last_call.unwrap().gas_used;
    sandbox.call("down", &[Value::I32(0)]).unwrap_err();
    assert_eq!(sandbox.metrics().last_call.unwrap().gas_used, first);
}

#[test]
fn guest_traps_carry_their_code() {
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    sandbox
        .load(b"(module (func (export \"div\") (param i32) (result i32) i32.const 1 local.get 0 i32.div_u))")
        .unwrap();
    let err = sandbox.call("div", &[Value::I32(0)]).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Trap {
                code: TrapCode::IntegerDivisionByZero,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        sandbox.call("div", &[Value::I32(1)]).unwrap().values(),
        &[Value::I32(1)]
    );
}

fn host_add(calls: Arc<AtomicU64>) -> HostFunction {
    HostFunction::new(
        "host_add",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
        move |_, args| {
            calls.fetch_add(1, Ordering::Relaxed);
            match args {
                [Value::I32(a), Value::I32(b)] => Ok(vec![Value::I32(a + b)]),
                _ => Err(HostError::new("bad arguments")),
            }
        },
    )
}

#[test]
fn host_functions_get_the_arguments() {
    let calls = Arc::new(AtomicU64::new(0));
    let config = Config::default().with_host_function(host_add(calls.clone()));
    let mut sandbox = loaded("host-caller.wasm", config);
    let run = sandbox.call("compute", &[Value::I32(5)]).unwrap();
    assert_eq!(run.values(), &[Value::I32(30)]);
    assert_eq!(run.metrics.host_calls, 1);
    assert_eq!(calls.load(Ordering::Relaxed), 1);
}

#[test]
fn failing_and_panicking_host_functions_are_host_function_errors() {
    let failing = HostFunction::new(
        "host_add",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
        |_, _| Err(HostError::new("database unavailable")),
    );
    let mut sandbox = loaded(
        "host-caller.wasm",
        Config::default().with_host_function(failing),
    );
    let err = sandbox.call("compute", &[Value::I32(1)]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::HostFunction { name, message }
            if name == "env.host_add" && message == "database unavailable"),
        "{err}"
    );

    let panicking = HostFunction::new(
        "host_add",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
        |_, args| {
            if args[0] == Value::I32(13) {
                panic!("unlucky number");
            }
            Ok(vec![Value::I32(0)])
        },
    );
    let mut sandbox = loaded(
        "host-caller.wasm",
        Config::default().with_host_function(panicking),
    );
    let err = sandbox.call("compute", &[Value::I32(13)]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::HostFunction { message, .. } if message.contains("unlucky number")),
        "{err}"
    );
    // The sandbox stays usable.
    assert_eq!(
        sandbox.call("compute", &[Value::I32(1)]).unwrap().values(),
        &[Value::I32(0)]
    );

    let lying = HostFunction::new(
        "host_add",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
        |_, _| Ok(vec![Value::I64(1)]),
    );
    let mut sandbox = loaded(
        "host-caller.wasm",
        Config::default().with_host_function(lying),
    );
    let err = sandbox.call("compute", &[Value::I32(1)]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::HostFunction { .. }),
        "{err}"
    );
}

#[test]
fn host_functions_can_charge_gas_and_use_memory() {
    let greedy = HostFunction::new(
        "host_add",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
        |cx, args| {
            cx.charge_gas(1000)?;
            cx.write_memory(0, b"hi")
                .map_err(|e| HostError::new(e.to_string()))?;
            let back = cx.read_memory(0, 2)?;
            assert_eq!(back, b"hi");
            let Value::I32(a) = args[0] else {
                return Err("bad".into());
            };
            Ok(vec![Value::I32(a)])
        },
    );
    let module = br#"(module
        (import "env" "host_add" (func $h (param i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "f") (param i32) (result i32) local.get 0 i32.const 0 call $h))"#;
    let mut sandbox = Sandbox::new(
        runtime(),
        Config::default().with_host_function(greedy.clone()),
    )
    .unwrap();
    sandbox.load(module).unwrap();
    let run = sandbox.call("f", &[Value::I32(7)]).unwrap();
    assert_eq!(run.values(), &[Value::I32(7)]);
    // 1 + 1 + 2 for the guest's block, 1000 for the host's work.
    assert_eq!(run.metrics.gas_used, 1004);

    let mut poor = Sandbox::new(
        runtime(),
        Config::default()
            .with_host_function(greedy)
            .with_max_gas(500),
    )
    .unwrap();
    poor.load(module).unwrap();
    let err = poor.call("f", &[Value::I32(7)]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::GasExhausted { used: 500, .. }),
        "{err}"
    );
}

#[test]
fn wasi_and_undeclared_imports_are_refused_listing_both_sides() {
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    let err = sandbox.load(&fixture("wasi-hello.wasm")).unwrap_err();
    let ErrorKind::RejectedImport { rejected, provided } = err.kind() else {
        panic!("{err}")
    };
    assert_eq!(rejected, &["wasi_snapshot_preview1.fd_write"]);
    assert!(provided.contains(&"env.__get_time".to_string()));
    assert!(
        err.to_string()
            .contains("WASI is refused unless the sandbox enables it"),
        "{err}"
    );

    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    let err = sandbox.load(&fixture("host-caller.wasm")).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::RejectedImport { rejected, .. } if rejected == &["env.host_add"])
    );

    // A declared name with the wrong signature is refused too.
    let wrong = HostFunction::new("host_add", &[ValType::I64], &[], |_, _| Ok(vec![]));
    let mut sandbox = Sandbox::new(runtime(), Config::default().with_host_function(wrong)).unwrap();
    assert!(sandbox.load(&fixture("host-caller.wasm")).is_err());
}

fn randoms(seed: u64) -> Vec<Value> {
    let mut sandbox = loaded("time-random.wasm", Config::default().with_seed(seed));
    (0..100)
        .map(|_| sandbox.call("random", &[]).unwrap().values()[0])
        .collect()
}

#[test]
fn randomness_is_seeded_and_time_is_fixed() {
    let a = randoms(42);
    assert_eq!(a, randoms(42));
    assert_ne!(a, randoms(43));
    let distinct: std::collections::HashSet<String> = a.iter().map(|v| v.to_string()).collect();
    assert_eq!(distinct.len(), 100);
    let mut sandbox = loaded(
        "time-random.wasm",
        Config::default().with_event_timestamp(1_700_000_000_000),
    );
    for _ in 0..3 {
        assert_eq!(
            sandbox.call("now", &[]).unwrap().values(),
            &[Value::I64(1_700_000_000_000)]
        );
    }
}

#[test]
fn json_mode_round_trips_and_checks_everything() {
    let mut sandbox = loaded("json-echo.wasm", Config::default());
    let payload = serde_json::json!({"name": "ri", "n": [1, 2, 3], "ünï": "cödé"});
    let run = sandbox.call_json("echo", &payload).unwrap();
    assert_eq!(run.json(), Some(&payload));
    let run = sandbox.call_json("wrap", &payload).unwrap();
    assert_eq!(run.json(), Some(&serde_json::json!({ "echo": payload })));
    assert!(run.metrics.gas_used > 0);

    let err = sandbox.call_json("bad_pointer", &payload).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::OutOfBounds { .. }), "{err}");
    let err = sandbox.call_json("not_json", &payload).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InvalidJson { .. }), "{err}");
    let err = sandbox.call_json("missing", &payload).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnknownExport { .. }),
        "{err}"
    );

    let mut no_alloc = loaded("add.wasm", Config::default());
    let err = no_alloc.call_json("add", &payload).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::MissingAlloc), "{err}");
}

#[test]
fn the_start_function_runs_under_the_budget() {
    let spin = b"(module (func $s (loop $l (br $l))) (start $s))";
    let mut sandbox = Sandbox::new(runtime(), Config::default().with_max_gas(1000)).unwrap();
    let err = sandbox.load(spin).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::GasExhausted { used: 1000, .. }),
        "{err}"
    );
    assert_eq!(sandbox.status(), Status::Created);

    let init = br#"(module (global $g (mut i32) (i32.const 0))
        (func $s i32.const 42 global.set $g) (start $s)
        (func (export "get") (result i32) global.get $g))"#;
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    sandbox.load(init).unwrap();
    assert_eq!(
        sandbox.call("get", &[]).unwrap().values(),
        &[Value::I32(42)]
    );
}

#[test]
fn compiled_modules_load_into_many_sandboxes() {
    let config = Config::default();
    let compiled = runtime()
        .compile(&fixture("fibonacci.wasm"), &config)
        .unwrap();
    for _ in 0..3 {
        let mut sandbox = Sandbox::new(runtime(), config.clone()).unwrap();
        sandbox.load_compiled(&compiled).unwrap();
        let run = sandbox.call("fib", &[Value::I32(20)]).unwrap();
        assert_eq!(run.values(), &[Value::I32(6765)]);
        assert_eq!(run.metrics.gas_used, 218_905);
    }
    let mut other = Sandbox::new(runtime(), Config::default().with_stack_limit(1000)).unwrap();
    let err = other.load_compiled(&compiled).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err}");
}

#[test]
fn nan_results_are_canonical_through_the_sandbox() {
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    sandbox
        .load(
            br#"(module
            (func (export "div") (result f32) f32.const 0 f32.const 0 f32.div)
            (func (export "sqrt") (result f64) f64.const -1 f64.sqrt))"#,
        )
        .unwrap();
    let Value::F32(x) = sandbox.call("div", &[]).unwrap().values()[0] else {
        panic!()
    };
    assert_eq!(x.to_bits(), 0x7fc0_0000);
    let Value::F64(y) = sandbox.call("sqrt", &[]).unwrap().values()[0] else {
        panic!()
    };
    assert_eq!(y.to_bits(), 0x7ff8_0000_0000_0000);
}

#[test]
fn typed_exports_call_fast_and_refuse_to_outlive_their_instance() {
    let mut sandbox = loaded("add.wasm", Config::default());
    let add = sandbox.typed::<(i32, i32), i32>("add").unwrap();
    let sum = add.call(&mut sandbox, (3, 7)).unwrap();
    assert_eq!(sum, 10);
    assert_eq!(sandbox.last_call().unwrap().gas_used, 3);
    assert_eq!(sandbox.metrics().calls, 1);
    let err = sandbox.typed::<i64, i32>("add").unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ArgumentMismatch { .. }),
        "{err}"
    );

    // Out of gas through the fast path is the same typed error.
    let mut spin = loaded("infinite-loop.wasm", Config::default().with_max_gas(1000));
    let looping = spin.typed::<(), ()>("spin").unwrap();
    let err = looping.call(&mut spin, ()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::GasExhausted { used: 1000, .. }),
        "{err}"
    );
    // A failed call's metrics are recorded too.
    assert_eq!(spin.last_call().unwrap().gas_used, 1000);
    assert_eq!(spin.metrics().calls, 1);

    // A handle from another sandbox is refused, not misused.
    let mut other = loaded("add.wasm", Config::default());
    let err = add.call(&mut other, (1, 2)).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Config { .. }), "{err}");
    sandbox.destroy();
    assert!(matches!(
        add.call(&mut sandbox, (1, 2)).unwrap_err().kind(),
        ErrorKind::InstanceDestroyed { .. }
    ));
}

#[test]
fn a_pooling_runtime_runs_sandboxes_and_refuses_past_its_slots() {
    let runtime = ri_sandbox::Runtime::with_config({
        let mut config = ri_sandbox::RuntimeConfig::default();
        config.pooling = Some(ri_sandbox::PoolingLimits::new(8));
        config
    })
    .unwrap();
    let compiled = runtime
        .compile(&fixture("counter.wasm"), &Config::default())
        .unwrap();
    let mut live = Vec::new();
    for _ in 0..8 {
        let mut sandbox = Sandbox::new(&runtime, Config::default()).unwrap();
        sandbox.load_compiled(&compiled).unwrap();
        assert_eq!(
            sandbox.call("increment", &[]).unwrap().values(),
            &[Value::I32(1)]
        );
        live.push(sandbox);
    }
    let mut ninth = Sandbox::new(&runtime, Config::default()).unwrap();
    let err = ninth.load_compiled(&compiled).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Engine { .. }), "{err}");
    assert!(
        err.to_string().contains("pooling allocator is full"),
        "{err}"
    );
    // Destroying one frees its slot.
    live[0].destroy();
    ninth.load_compiled(&compiled).unwrap();
    assert_eq!(
        ninth.call("increment", &[]).unwrap().values(),
        &[Value::I32(1)]
    );
}

#[test]
fn host_functions_take_and_return_floats() {
    let scale = HostFunction::new(
        "scale",
        &[ValType::F64, ValType::F32],
        &[ValType::F64],
        |_, args| match args {
            [Value::F64(x), Value::F32(k)] => Ok(vec![Value::F64(x * f64::from(*k))]),
            other => Err(HostError::new(format!("unexpected {other:?}"))),
        },
    );
    let module = br#"(module
        (import "env" "scale" (func $scale (param f64 f32) (result f64)))
        (func (export "f") (param f64) (result f64) local.get 0 f32.const 2.5 call $scale))"#;
    let mut sandbox = Sandbox::new(runtime(), Config::default().with_host_function(scale)).unwrap();
    sandbox.load(module).unwrap();
    let run = sandbox.call("f", &[Value::F64(4.0)]).unwrap();
    assert_eq!(run.values(), &[Value::F64(10.0)]);
    assert_eq!(Value::parse("f64", "1.5"), Some(Value::F64(1.5)));
    assert_eq!(Value::parse("i32", "x"), None);
    assert_eq!(Value::F64(10.0).to_string(), "10");
}

#[test]
fn host_memory_access_is_bounds_checked() {
    let reader = |ptr: u64, len: u64| {
        HostFunction::new("peek", &[], &[ValType::I32], move |cx, _| {
            let bytes = cx.read_memory(ptr, len)?;
            Ok(vec![Value::I32(bytes.len() as i32)])
        })
    };
    let with_memory = br#"(module
        (import "env" "peek" (func $peek (result i32)))
        (memory (export "memory") 1)
        (func (export "f") (result i32) call $peek))"#;
    let mut sandbox = Sandbox::new(
        runtime(),
        Config::default().with_host_function(reader(65530, 6)),
    )
    .unwrap();
    sandbox.load(with_memory).unwrap();
    assert_eq!(sandbox.call("f", &[]).unwrap().values(), &[Value::I32(6)]);

    let mut sandbox = Sandbox::new(
        runtime(),
        Config::default().with_host_function(reader(65530, 7)),
    )
    .unwrap();
    sandbox.load(with_memory).unwrap();
    let err = sandbox.call("f", &[]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::HostFunction { message, .. } if message.contains("outside guest memory")),
        "{err}"
    );

    let without_memory = br#"(module
        (import "env" "peek" (func $peek (result i32)))
        (func (export "f") (result i32) call $peek))"#;
    let mut sandbox = Sandbox::new(
        runtime(),
        Config::default().with_host_function(reader(0, 1)),
    )
    .unwrap();
    sandbox.load(without_memory).unwrap();
    let err = sandbox.call("f", &[]).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::HostFunction { message, .. } if message.contains("exports no memory")),
        "{err}"
    );
}

/// Typed exports call through the module's entry points (ABI section 11), which set the
/// counters themselves: results, gas and every kind of failure must be what `Sandbox::call`
/// gives, and a failure must not leave the next call a wrong budget or stack level.
#[test]
fn typed_exports_through_entry_points_agree_with_calls_by_name() {
    // Results and gas.
    let mut by_name = loaded("fibonacci.wasm", Config::default());
    let mut typed = loaded("fibonacci.wasm", Config::default());
    let fib = typed.typed::<i32, i32>("fib").unwrap();
    for n in [0, 1, 10, 20] {
        let named = by_name.call("fib", &[Value::I32(n)]).unwrap();
        let value = fib.call(&mut typed, n).unwrap();
        let metrics = typed.last_call().unwrap();
        assert_eq!(named.values(), &[Value::I32(value)]);
        assert_eq!(named.metrics.gas_used, metrics.gas_used, "fib({n})");
        assert!(metrics.gas_used > 0);
    }
    assert_eq!(by_name.metrics().gas_used, typed.metrics().gas_used);

    // Out of gas, then a call that fits: the budget is the configured one again.
    let config = Config::default().with_max_gas(5_000);
    let mut small = loaded("fibonacci.wasm", config.clone());
    let fib = small.typed::<i32, i32>("fib").unwrap();
    let err = fib.call(&mut small, 25).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::GasExhausted { used: 5_000, .. }),
        "{err}"
    );
    let value = fib.call(&mut small, 10).unwrap();
    let metrics = small.last_call().unwrap();
    assert_eq!(value, 55);
    let mut reference = loaded("fibonacci.wasm", config);
    let named = reference.call("fib", &[Value::I32(10)]).unwrap();
    assert_eq!(metrics.gas_used, named.metrics.gas_used);

    // The stack limit, then a shallow call: the entry point puts the stack counter back.
    let depth_wat = r#"(module
        (func $depth (export "depth") (param i32) (result i32)
          (if (result i32) (i32.eqz (local.get 0))
            (then (i32.const 0))
            (else (i32.add (i32.const 1)
                           (call $depth (i32.sub (local.get 0) (i32.const 1))))))))"#;
    let mut deep = Sandbox::new(runtime(), Config::default().with_max_gas(u64::MAX / 4)).unwrap();
    deep.load(depth_wat.as_bytes()).unwrap();
    let depth = deep.typed::<i32, i32>("depth").unwrap();
    let err = depth.call(&mut deep, 1_000_000).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::StackLimit { .. }), "{err}");
    let value = depth.call(&mut deep, 1_000).unwrap();
    let metrics = deep.last_call().unwrap();
    assert_eq!(value, 1_000);
    let named = deep.call("depth", &[Value::I32(1_000)]).unwrap();
    assert_eq!(named.metrics.gas_used, metrics.gas_used);

    // Memory past the limit, then a call that fits.
    let mut hog = loaded("memory-hog.wasm", Config::default());
    let allocate = hog.typed::<i32, i32>("allocate").unwrap();
    let err = allocate.call(&mut hog, 64 << 20).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::MemoryExceeded { .. }),
        "{err}"
    );
    assert!(allocate.call(&mut hog, 1024).is_ok());

    // Gas a host function charges is counted the same way.
    let calls = Arc::new(AtomicU64::new(0));
    let config = Config::default().with_host_function(host_add(calls.clone()));
    let mut host = loaded("host-caller.wasm", config.clone());
    let compute = host.typed::<i32, i32>("compute").unwrap();
    let value = compute.call(&mut host, 5).unwrap();
    let metrics = host.last_call().unwrap();
    let mut reference = loaded("host-caller.wasm", config);
    let named = reference.call("compute", &[Value::I32(5)]).unwrap();
    assert_eq!(named.values(), &[Value::I32(value)]);
    assert_eq!(named.metrics.gas_used, metrics.gas_used);
    assert_eq!(named.metrics.host_calls, metrics.host_calls);
}

/// Calls by name of all-numeric exports go through raw values (`Sandbox::call`'s fast path):
/// every numeric type, multiple results, no parameters or results at all, NaN payloads and
/// vectors come through bit for bit, with the same gas as a typed call.
#[test]
fn calls_by_name_carry_every_numeric_type_bit_for_bit() {
    let wat = r#"(module
        (func (export "mix") (param i32 i64 f32 f64) (result f64 i32 i64 f32)
          local.get 3
          local.get 0 i32.const 1 i32.add
          local.get 1 i64.const -1 i64.xor
          local.get 2)
        (func (export "vec") (param v128 i32) (result v128)
          local.get 0 local.get 1 i32x4.splat i32x4.add)
        (func (export "nothing"))
        (func (export "five") (result i32 i32 i32 i32 i32)
          i32.const 1 i32.const 2 i32.const 3 i32.const 4 i32.const 5))"#;
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    sandbox.load(wat.as_bytes()).unwrap();

    let nan = f32::from_bits(0x7fa0_0001);
    let run = sandbox
        .call(
            "mix",
            &[
                Value::I32(i32::MAX),
                Value::I64(5),
                Value::F32(nan),
                Value::F64(-0.0),
            ],
        )
        .unwrap();
    let [Value::F64(a), Value::I32(b), Value::I64(c), Value::F32(d)] = run.values() else {
        panic!("{:?}", run.values());
    };
    assert_eq!(a.to_bits(), (-0.0f64).to_bits());
    assert_eq!(*b, i32::MIN);
    assert_eq!(*c, !5);
    assert_eq!(d.to_bits(), 0x7fa0_0001, "NaN payload moved unchanged");
    let mix = sandbox
        .typed::<(i32, i64, f32, f64), (f64, i32, i64, f32)>("mix")
        .unwrap();
    mix.call(&mut sandbox, (i32::MAX, 5, nan, -0.0)).unwrap();
    assert_eq!(sandbox.last_call().unwrap().gas_used, run.metrics.gas_used);

    let lanes = |l: [u32; 4]| {
        l.iter()
            .rev()
            .fold(0u128, |acc, &x| (acc << 32) | u128::from(x))
    };
    let run = sandbox
        .call(
            "vec",
            &[Value::V128(lanes([1, 2, 3, u32::MAX])), Value::I32(1)],
        )
        .unwrap();
    assert_eq!(run.values(), &[Value::V128(lanes([2, 3, 4, 0]))]);

    assert_eq!(sandbox.call("nothing", &[]).unwrap().values(), &[]);
    let five: Vec<Value> = (1..=5).map(Value::I32).collect();
    assert_eq!(sandbox.call("five", &[]).unwrap().values(), &five[..]);

    // Arguments of the wrong type never reach the raw path.
    let err = sandbox
        .call("vec", &[Value::I32(0), Value::I32(1)])
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ArgumentMismatch { .. }),
        "{err}"
    );
}

//! End-to-end lifecycles through the public API only (seed milestone M9): every fixture goes
//! create -> load -> execute -> snapshot -> execute -> restore -> execute -> destroy, with
//! results, gas, memory and metrics checked at each step; sandboxes of different fixtures run
//! on several threads at once; every limit is hit inside a lifecycle and the sandbox stays
//! usable; the determinism validator passes on every fixture.

use crate::common::{fixture, runtime};
use ri_sandbox::{
    validate_determinism, Config, ErrorKind, HostFunction, Manager, Payload, Status, ValType, Value,
};

fn host_add() -> HostFunction {
    HostFunction::new(
        "host_add",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
        |_, args| match args {
            [Value::I32(a), Value::I32(b)] => Ok(vec![Value::I32(a.wrapping_add(*b))]),
            _ => Err("bad arguments".into()),
        },
    )
}

/// One fixture's lifecycle: its module, a config, and the call to make at each step.
struct Case {
    module: &'static str,
    config: Config,
    export: &'static str,
    args: Vec<Value>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            module: "add.wasm",
            config: Config::default(),
            export: "add",
            args: vec![Value::I32(3), Value::I32(7)],
        },
        Case {
            module: "counter.wasm",
            config: Config::default(),
            export: "increment",
            args: vec![],
        },
        Case {
            module: "fibonacci.wasm",
            config: Config::default(),
            export: "fib",
            args: vec![Value::I32(15)],
        },
        Case {
            module: "memory-hog.wasm",
            config: Config::default(),
            export: "allocate",
            args: vec![Value::I32(65536)],
        },
        Case {
            module: "host-caller.wasm",
            config: Config::default().with_host_function(host_add()),
            export: "compute",
            args: vec![Value::I32(5)],
        },
        Case {
            module: "infinite-loop.wasm",
            config: Config::default().with_max_gas(10_000),
            export: "spin",
            args: vec![],
        },
    ]
}

/// The outcome of a call, comparable across runs: results and gas, or the error's kind.
fn outcome(manager: &mut Manager, id: &str, case: &Case) -> (String, u64) {
    match manager.execute(id, case.export, Payload::Args(case.args.clone())) {
        Ok(run) => (format!("{:?}", run.output), run.metrics.gas_used),
        Err(e) => {
            let gas = manager.metrics(id).unwrap().last_call.unwrap().gas_used;
            (format!("{:?}", std::mem::discriminant(e.kind())), gas)
        }
    }
}

#[test]
fn every_fixture_through_the_whole_lifecycle() {
    for case in cases() {
        let mut manager = Manager::new(runtime().clone());
        let id = manager.create(case.config.clone()).unwrap();
        assert_eq!(manager.get(&id).unwrap().status(), Status::Created);
        manager.load(&id, &fixture(case.module)).unwrap();
        assert_eq!(manager.get(&id).unwrap().status(), Status::Loaded);

        let first = outcome(&mut manager, &id, &case);
        let snapshot = manager.snapshot(&id).unwrap();
        let memory_at_snapshot = manager.metrics(&id).unwrap().memory_bytes;
        let second = outcome(&mut manager, &id, &case);
        let calls_before_restore = manager.metrics(&id).unwrap().calls;
        manager.restore(&id, &snapshot).unwrap();
        let metrics = manager.metrics(&id).unwrap();
        assert_eq!(metrics.calls, calls_before_restore - 1, "{}", case.module);
        assert_eq!(metrics.memory_bytes, memory_at_snapshot, "{}", case.module);
        // After restore the sandbox is where it was before the second call: same outcome.
        let replay = outcome(&mut manager, &id, &case);
        assert_eq!(replay, second, "{}: replay after restore", case.module);
        assert!(
            first.1 > 0 && second.1 > 0,
            "{}: gas is charged",
            case.module
        );

        manager.destroy(&id).unwrap();
        let err = manager
            .execute(&id, case.export, Payload::Args(case.args.clone()))
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::InstanceDestroyed { .. }));
    }
}

#[test]
fn ten_sandboxes_on_several_threads_do_not_interfere() {
    let expected: Vec<(String, u64)> = cases()
        .iter()
        .map(|case| {
            let mut manager = Manager::new(runtime().clone());
            let id = manager.create(case.config.clone()).unwrap();
            manager.load(&id, &fixture(case.module)).unwrap();
            (0..3)
                .map(|_| outcome(&mut manager, &id, case))
                .last()
                .unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|n| {
                let expected = &expected;
                scope.spawn(move || {
                    let all = cases();
                    let index = n % all.len();
                    let case = &all[index];
                    let mut manager = Manager::new(runtime().clone());
                    let id = manager.create(case.config.clone()).unwrap();
                    manager.load(&id, &fixture(case.module)).unwrap();
                    let last = (0..3)
                        .map(|_| outcome(&mut manager, &id, case))
                        .last()
                        .unwrap();
                    assert_eq!(last, expected[index], "{} on thread {n}", case.module);
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("no thread panicked");
        }
    });
}

#[test]
fn every_limit_inside_a_lifecycle_leaves_the_sandbox_usable() {
    let mut manager = Manager::new(runtime().clone());
    let module = br#"(module
        (memory (export "memory") 1 100)
        (func $down (export "down") (param i32) (result i32)
          local.get 0 i32.const 1 i32.add call $down)
        (func (export "spin") (loop $l (br $l)))
        (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
        (func (export "ok") (result i32) i32.const 42))"#;
    let config = Config::default()
        .with_max_gas(200_000)
        .with_max_memory_bytes(4 * 65536)
        .with_max_execution_ms(20);
    let id = manager.create(config).unwrap();
    manager.load(&id, module).unwrap();
    let snapshot = manager.snapshot(&id).unwrap();
    type Check = (&'static str, Vec<Value>, fn(&ErrorKind) -> bool);
    let checks: [Check; 3] = [
        ("spin", vec![], |k| {
            matches!(k, ErrorKind::GasExhausted { .. })
        }),
        ("down", vec![Value::I32(0)], |k| {
            matches!(k, ErrorKind::StackLimit { .. })
        }),
        ("grow", vec![Value::I32(10)], |k| {
            matches!(k, ErrorKind::MemoryExceeded { .. })
        }),
    ];
    for (export, args, expected) in checks {
        let err = manager
            .execute(&id, export, Payload::Args(args))
            .unwrap_err();
        assert!(expected(err.kind()), "{export}: {err}");
        let ok = manager.execute(&id, "ok", Payload::Args(vec![])).unwrap();
        assert_eq!(ok.values(), &[Value::I32(42)], "usable after {export}");
        manager.restore(&id, &snapshot).unwrap();
    }
    // The wall-clock limit, with gas to spare.
    let mut generous = Manager::new(runtime().clone());
    let id = generous
        .create(
            Config::default()
                .with_max_gas(u64::MAX)
                .with_max_execution_ms(20),
        )
        .unwrap();
    generous.load(&id, module).unwrap();
    let err = generous
        .execute(&id, "spin", Payload::Args(vec![]))
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Timeout { .. }), "{err}");
    let ok = generous.execute(&id, "ok", Payload::Args(vec![])).unwrap();
    assert_eq!(ok.values(), &[Value::I32(42)]);
}

#[test]
fn the_validator_passes_every_fixture() {
    for case in cases() {
        let mut manager = Manager::new(runtime().clone());
        let id = manager.create(case.config.clone()).unwrap();
        manager.load(&id, &fixture(case.module)).unwrap();
        let sandbox = manager.get_mut(&id).unwrap();
        let report =
            validate_determinism(sandbox, case.export, &Payload::Args(case.args.clone())).unwrap();
        assert!(report.is_deterministic(), "{}: {report:?}", case.module);
    }
}

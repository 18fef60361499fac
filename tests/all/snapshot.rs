//! Snapshot and restore through the public API and the CLI, the wire format's checks, the
//! stored snapshots in `fixtures/snapshots/`, and the determinism validator.

use crate::common::{fixture, fixture_path, runtime, TempDir};
use ri_sandbox::{
    validate_determinism, Config, ErrorKind, HostFunction, Payload, Sandbox, Snapshot,
    SnapshotError, ValType, Value,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

fn loaded(module: &[u8], config: Config) -> Sandbox {
    let mut sandbox = Sandbox::new(runtime(), config).unwrap();
    sandbox.load(module).unwrap();
    sandbox
}

fn snapshot_kind(err: &ri_sandbox::Error) -> &SnapshotError {
    match err.kind() {
        ErrorKind::Snapshot(kind) => kind,
        other => panic!("expected a snapshot error, got {other}"),
    }
}

#[test]
fn restore_rewinds_state_and_replays_identically() {
    let mut sandbox = loaded(&fixture("counter.wasm"), Config::default());
    for _ in 0..3 {
        sandbox.call("increment", &[]).unwrap();
    }
    let snapshot = sandbox.snapshot().unwrap();
    let after: Vec<_> = (0..2)
        .map(|_| sandbox.call("increment", &[]).unwrap())
        .collect();
    assert_eq!(after[1].values(), &[Value::I32(5)]);
    sandbox.restore(&snapshot).unwrap();
    assert_eq!(sandbox.status(), ri_sandbox::Status::Loaded);
    assert_eq!(sandbox.metrics().calls, 3);
    let again: Vec<_> = (0..2)
        .map(|_| sandbox.call("increment", &[]).unwrap())
        .collect();
    for (a, b) in after.iter().zip(&again) {
        assert_eq!(a.output, b.output);
        assert_eq!(a.metrics.gas_used, b.metrics.gas_used);
    }
}

#[test]
fn restore_after_memory_grew_and_into_another_sandbox() {
    let hog = fixture("memory-hog.wasm");
    let mut sandbox = loaded(&hog, Config::default());
    let module = br#"(module (memory (export "memory") 1)
        (func (export "poke") (param i32 i32) local.get 0 local.get 1 i32.store8)
        (func (export "peek") (param i32) (result i32) local.get 0 i32.load8_u)
        (func (export "grow") (param i32) (result i32) local.get 0 memory.grow)
        (func (export "size") (result i32) memory.size))"#;
    let mut sandbox2 = loaded(module, Config::default());
    sandbox2
        .call("poke", &[Value::I32(100), Value::I32(42)])
        .unwrap();
    let snapshot = sandbox2.snapshot().unwrap();
    sandbox2.call("grow", &[Value::I32(5)]).unwrap();
    sandbox2
        .call("poke", &[Value::I32(100), Value::I32(7)])
        .unwrap();
    sandbox2
        .call("poke", &[Value::I32(6 * 65536 - 1), Value::I32(9)])
        .unwrap();
    sandbox2.restore(&snapshot).unwrap();
    assert_eq!(
        sandbox2.call("size", &[]).unwrap().values(),
        &[Value::I32(1)]
    );
    assert_eq!(
        sandbox2.call("peek", &[Value::I32(100)]).unwrap().values(),
        &[Value::I32(42)]
    );

    // Another sandbox of the same module takes the same state.
    let mut other = loaded(module, Config::default());
    other.restore(&snapshot).unwrap();
    assert_eq!(
        other.call("peek", &[Value::I32(100)]).unwrap().values(),
        &[Value::I32(42)]
    );

    // A sandbox of another module refuses it, and is left as it was (restore is atomic).
    sandbox.call("allocate", &[Value::I32(65536)]).unwrap();
    let err = sandbox.restore(&snapshot).unwrap_err();
    assert_eq!(snapshot_kind(&err), &SnapshotError::WrongModule);
    let run = sandbox.call("allocate", &[Value::I32(0)]).unwrap();
    assert_eq!(run.values(), &[Value::I32(2)]);
}

#[test]
fn snapshots_keep_globals_tables_and_the_random_stream() {
    let module = br#"(module
        (import "env" "__get_random" (func $random (result i64)))
        (type $t (func (result i32)))
        (table $tab 2 funcref)
        (global $g (mut i64) (i64.const 0))
        (func $one (result i32) i32.const 1)
        (func $two (result i32) i32.const 2)
        (elem declare func $one $two)
        (func (export "set") (param i32)
          local.get 0
          if
            (table.set $tab (i32.const 0) (ref.func $two))
          else
            (table.set $tab (i32.const 0) (ref.func $one))
          end
          global.get $g
          call $random
          i64.add
          global.set $g)
        (func (export "call0") (result i32) (call_indirect (type $t) (i32.const 0)))
        (func (export "g") (result i64) global.get $g)
        (func (export "random") (result i64) call $random))"#;
    let mut sandbox = loaded(module, Config::default().with_seed(7));
    sandbox.call("set", &[Value::I32(1)]).unwrap();
    let snapshot = sandbox.snapshot().unwrap();
    let g = sandbox.call("g", &[]).unwrap().values()[0];
    let randoms: Vec<Value> = (0..5)
        .map(|_| sandbox.call("random", &[]).unwrap().values()[0])
        .collect();
    sandbox.call("set", &[Value::I32(0)]).unwrap();
    assert_eq!(
        sandbox.call("call0", &[]).unwrap().values(),
        &[Value::I32(1)]
    );

    let mut fresh = loaded(module, Config::default().with_seed(7));
    fresh.restore(&snapshot).unwrap();
    assert_eq!(fresh.call("call0", &[]).unwrap().values(), &[Value::I32(2)]);
    assert_eq!(fresh.call("g", &[]).unwrap().values(), &[g]);
    let replay: Vec<Value> = (0..5)
        .map(|_| fresh.call("random", &[]).unwrap().values()[0])
        .collect();
    assert_eq!(randoms, replay);

    // And through bytes.
    let bytes = snapshot.to_bytes();
    assert_eq!(Snapshot::from_bytes(&bytes).unwrap(), snapshot);
}

#[test]
fn zero_pages_take_no_space() {
    let module = br#"(module (memory (export "memory") 256)
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
          end))"#;
    let mut sandbox = loaded(module, Config::default());
    let empty = sandbox.snapshot().unwrap().to_bytes().len();
    assert!(
        empty < 1024,
        "an untouched 16 MiB memory gave {empty} bytes"
    );
    // Touch 1 MiB worth of pages (16 of 256).
    sandbox.call("touch", &[Value::I32(16 * 65536)]).unwrap();
    let sparse = sandbox.snapshot().unwrap();
    assert_eq!(sparse.memory_bytes(), 16 * 1024 * 1024);
    let len = sparse.to_bytes().len();
    assert!(
        (16 * 65536..16 * 65536 + 4096).contains(&len),
        "{len} bytes"
    );
}

#[test]
fn corrupt_snapshots_are_refused_with_the_reason() {
    let mut sandbox = loaded(&fixture("counter.wasm"), Config::default());
    sandbox.call("increment", &[]).unwrap();
    let good = sandbox.snapshot().unwrap().to_bytes();

    let mut flipped = good.clone();
    flipped[60] ^= 1;
    assert_eq!(
        snapshot_kind(&Snapshot::from_bytes(&flipped).unwrap_err()),
        &SnapshotError::ChecksumMismatch
    );

    let mut magic = good.clone();
    magic[0] = b'X';
    assert_eq!(
        snapshot_kind(&Snapshot::from_bytes(&magic).unwrap_err()),
        &SnapshotError::WrongMagic
    );

    let mut version = good.clone();
    version[8] = 2;
    assert!(matches!(
        snapshot_kind(&Snapshot::from_bytes(&version).unwrap_err()),
        SnapshotError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    ));

    for cut in [0, 7, 20, 59, good.len() - 1] {
        let err = Snapshot::from_bytes(&good[..cut]).unwrap_err();
        assert!(
            matches!(
                snapshot_kind(&err),
                SnapshotError::Truncated { .. } | SnapshotError::WrongMagic
            ),
            "cut at {cut}: {err}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(matches!(
        snapshot_kind(&Snapshot::from_bytes(&longer).unwrap_err()),
        SnapshotError::Truncated { .. }
    ));

    // Memory over the restoring sandbox's limit.
    let big = br#"(module (memory (export "memory") 4))"#;
    let snapshot = loaded(big, Config::default()).snapshot().unwrap();
    let mut small = loaded(big, Config::default());
    small.restore(&snapshot).unwrap();
    let mut tight = Sandbox::new(
        runtime(),
        Config::default().with_max_memory_bytes(4 * 65536),
    )
    .unwrap();
    tight.load(big).unwrap();
    tight.restore(&snapshot).unwrap();
    let mut tighter = Sandbox::new(
        runtime(),
        Config::default().with_max_memory_bytes(4 * 65536),
    )
    .unwrap();
    tighter
        .load(br#"(module (memory (export "memory") 1))"#)
        .unwrap();
    assert_eq!(
        snapshot_kind(&tighter.restore(&snapshot).unwrap_err()),
        &SnapshotError::WrongModule
    );
}

/// A tiny deterministic generator for the mutation test.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

use crate::fuzz::snapshot_from_bytes as fuzz_snapshot_from_bytes;

#[test]
fn from_bytes_never_panics_on_mutations() {
    let module = br#"(module (memory (export "memory") 1) (global (mut i32) (i32.const 5))
        (table 2 funcref) (func $f) (elem (i32.const 0) $f)
        (func (export "w") (i32.store (i32.const 8) (i32.const 0x01020304))))"#;
    let mut sandbox = loaded(module, Config::default());
    sandbox.call("w", &[]).unwrap();
    let good = sandbox.snapshot().unwrap().to_bytes();
    let mut state = 0x9e3779b97f4a7c15;
    for _ in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..(1 + xorshift(&mut state) % 4) {
            let i = (xorshift(&mut state) as usize) % bytes.len();
            bytes[i] = xorshift(&mut state) as u8;
        }
        if xorshift(&mut state).is_multiple_of(4) {
            let len = (xorshift(&mut state) as usize) % bytes.len();
            bytes.truncate(len);
        }
        fuzz_snapshot_from_bytes(&bytes);
        // With the checksum fixed up, the body's own checks are exercised too.
        if bytes.len() > 60 && bytes.starts_with(b"RISBSNAP") {
            let end = bytes.len() - 8;
            let sum = xxhash_checksum(&bytes[..end]);
            bytes[end..].copy_from_slice(&sum.to_le_bytes());
            fuzz_snapshot_from_bytes(&bytes);
        }
    }
    for len in 0..200 {
        let random: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
        fuzz_snapshot_from_bytes(&random);
    }
}

/// The format's checksum (XXH3-64), recomputed the way `fixtures` documents it.
fn xxhash_checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

fn snapshot_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/snapshots")
        .join(name)
}

/// Snapshots made by this format version stay readable: `BLESS=1` writes them anew.
#[test]
fn stored_snapshots_still_load() {
    let cases: [(&str, &str, i32); 2] = [
        ("counter-3.snap", "counter.wasm", 3),
        ("json-echo.snap", "json-echo.wasm", 0),
    ];
    for (name, module, increments) in cases {
        let path = snapshot_fixture(name);
        if std::env::var_os("BLESS").is_some() {
            let mut sandbox = loaded(&fixture(module), Config::default().with_seed(11));
            for _ in 0..increments {
                sandbox.call("increment", &[]).unwrap();
            }
            if module == "json-echo.wasm" {
                sandbox
                    .call_json("echo", &serde_json::json!({"stored": true}))
                    .unwrap();
            }
            std::fs::write(&path, sandbox.snapshot().unwrap().to_bytes()).unwrap();
        }
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (BLESS=1)", path.display()));
        let snapshot = Snapshot::from_bytes(&bytes).unwrap();
        let mut sandbox = loaded(&fixture(module), Config::default());
        sandbox.restore(&snapshot).unwrap();
        if module == "counter.wasm" {
            assert_eq!(sandbox.call("get", &[]).unwrap().values(), &[Value::I32(3)]);
        } else {
            let run = sandbox.call_json("echo", &serde_json::json!([1])).unwrap();
            assert_eq!(run.json(), Some(&serde_json::json!([1])));
        }
    }
}

#[test]
fn snapshots_cross_processes_through_the_cli() {
    let bin = env!("CARGO_BIN_EXE_ri-sandbox");
    let dir = TempDir::new("cli-snap");
    let snap = dir.0.join("counter.snap");
    let counter = fixture_path("counter.wat");
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(["run", counter.to_str().unwrap(), "--invoke", "increment"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let snap_arg = snap.to_str().unwrap();
    assert!(run(&["--snapshot-out", snap_arg]).starts_with("result: 1\n"));
    assert!(run(&["--restore", snap_arg, "--snapshot-out", snap_arg]).starts_with("result: 2\n"));
    assert!(run(&["--restore", snap_arg]).starts_with("result: 3\n"));

    std::fs::write(&snap, b"RISBSNAP garbage").unwrap();
    let out = std::process::Command::new(bin)
        .args([
            "run",
            counter.to_str().unwrap(),
            "--invoke",
            "increment",
            "--restore",
            snap_arg,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("snapshot"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn the_validator_passes_deterministic_calls_and_catches_a_nondeterministic_host() {
    let mut sandbox = loaded(&fixture("fibonacci.wasm"), Config::default());
    let report =
        validate_determinism(&mut sandbox, "fib", &Payload::Args(vec![Value::I32(15)])).unwrap();
    assert!(report.is_deterministic(), "{report:?}");

    let mut sandbox = loaded(
        &fixture("time-random.wasm"),
        Config::default().with_seed(3).with_event_timestamp(99),
    );
    for export in ["random", "now"] {
        let report = validate_determinism(&mut sandbox, export, &Payload::Args(vec![])).unwrap();
        assert!(report.is_deterministic(), "{export}: {report:?}");
    }

    let counter = Arc::new(AtomicI64::new(0));
    let drifting = {
        let counter = counter.clone();
        HostFunction::new(
            "host_add",
            &[ValType::I32, ValType::I32],
            &[ValType::I32],
            move |_, _| {
                Ok(vec![Value::I32(
                    counter.fetch_add(1, Ordering::Relaxed) as i32
                )])
            },
        )
    };
    let mut sandbox = loaded(
        &fixture("host-caller.wasm"),
        Config::default().with_host_function(drifting),
    );
    let report =
        validate_determinism(&mut sandbox, "compute", &Payload::Args(vec![Value::I32(1)])).unwrap();
    assert!(!report.is_deterministic());
    assert!(
        report
            .differences
            .iter()
            .any(|d| d.contains("results differ")),
        "{report:?}"
    );
}

/// A host function whose answer steers the guest's work, its memory and whether it fails:
/// the validator names each kind of difference.
#[test]
fn the_validator_reports_gas_memory_and_outcome_differences() {
    let module = r#"(module
      (import "env" "host_n" (func $n (result i32)))
      (memory (export "memory") 1)
      (func (export "work") (result i32) (local $i i32) (local $k i32)
        (local.set $k (call $n))
        (if (i32.eq (local.get $k) (i32.const 99)) (then unreachable))
        (i32.store (i32.const 0) (local.get $k))
        (loop $l
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (local.get $k))))
        (local.get $i)))"#;
    let with_answers = |answers: Vec<i32>| {
        let calls = Arc::new(AtomicI64::new(0));
        let host = HostFunction::new("host_n", &[], &[ValType::I32], move |_, _| {
            let i = calls.fetch_add(1, Ordering::Relaxed) as usize;
            Ok(vec![Value::I32(answers[i.min(answers.len() - 1)])])
        });
        let mut sandbox =
            Sandbox::new(runtime(), Config::default().with_host_function(host)).unwrap();
        sandbox.load(module.as_bytes()).unwrap();
        validate_determinism(&mut sandbox, "work", &Payload::Args(vec![])).unwrap()
    };
    let steady = with_answers(vec![10]);
    assert!(steady.is_deterministic(), "{steady:?}");

    let drifting = with_answers(vec![10, 20]);
    let said = drifting.differences.join("; ");
    assert!(said.contains("results differ"), "{said}");
    assert!(said.contains("gas differs"), "{said}");
    assert!(said.contains("memory differs"), "{said}");

    let failing = with_answers(vec![10, 99]);
    let said = failing.differences.join("; ");
    assert!(said.contains("outcomes differ"), "{said}");
    assert!(failing.second.contains("trap"), "{failing:?}");
}

//! Deterministic WASI: the C programs in `fixtures/wasi/` (built by its `build.sh`) and
//! hand-written modules for the edges, against the semantics `ri_sandbox::wasi` documents and
//! against plain wasmtime-wasi.

use crate::common::{fixture, runtime};
use crate::plain_wasi::PlainWasi;
use ri_sandbox::wasi::Stream;
use ri_sandbox::{Config, ErrorKind, Sandbox, Snapshot, Status, Value, WasiConfig};

fn program(name: &str) -> Vec<u8> {
    fixture(&format!("wasi/{name}.wasm"))
}

fn wasi_config(wasi: WasiConfig) -> Config {
    Config::default()
        .with_max_gas(1_000_000_000)
        .with_max_execution_ms(0)
        .with_seed(7)
        .with_event_timestamp(1_700_000_000_123)
        .with_wasi(wasi)
}

fn loaded(name: &str, wasi: WasiConfig) -> Sandbox {
    let mut sandbox = Sandbox::new(runtime(), wasi_config(wasi)).unwrap();
    sandbox.load(&program(name)).unwrap();
    sandbox
}

/// Runs a program: its exit code, stdout, stderr and gas.
fn run(name: &str, wasi: WasiConfig) -> (i32, Vec<u8>, Vec<u8>, u64) {
    let mut sandbox = loaded(name, wasi);
    let outcome = sandbox.run_command().unwrap();
    (
        outcome.exit_code,
        sandbox.take_stdout(),
        sandbox.take_stderr(),
        outcome.metrics.gas_used,
    )
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap()
}

#[test]
fn wasi_is_refused_by_name_unless_enabled() {
    let mut sandbox = Sandbox::new(runtime(), Config::default()).unwrap();
    let error = sandbox.load(&program("hello")).unwrap_err();
    match error.kind() {
        ErrorKind::RejectedImport { rejected, .. } => {
            assert!(rejected.contains(&"wasi_snapshot_preview1.fd_write".to_string()));
            assert!(rejected.contains(&"wasi_snapshot_preview1.args_get".to_string()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sandbox.status(), Status::Created);
}

#[test]
fn hello_gets_exactly_its_arguments_and_environment() {
    let wasi = WasiConfig::default()
        .with_args(["hello", "a b", ""])
        .with_env("RI_GREETING", "hi there");
    let (code, stdout, stderr, _) = run("hello", wasi);
    assert_eq!(code, 0);
    assert_eq!(
        text(&stdout),
        "hello, world\nargv[0]=hello\nargv[1]=a b\nargv[2]=\nRI_GREETING=hi there\n"
    );
    assert_eq!(text(&stderr), "to stderr\n");
    // Nothing ambient: no environment unless given.
    let (_, stdout, _, _) = run("hello", WasiConfig::default().with_args(["hello"]));
    assert_eq!(text(&stdout), "hello, world\nargv[0]=hello\n");
}

#[test]
fn cat_reads_stdin_to_its_end() {
    let input: Vec<u8> = (0..9000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (code, stdout, stderr, _) = run("cat", WasiConfig::default().with_stdin(input.clone()));
    assert_eq!(code, 0);
    assert_eq!(stdout, input);
    assert_eq!(text(&stderr), "read 9000 bytes\n");
    let (_, stdout, stderr, _) = run("cat", WasiConfig::default());
    assert!(stdout.is_empty());
    assert_eq!(text(&stderr), "read 0 bytes\n");
}

#[test]
fn clocks_and_randomness_are_the_configured_ones() {
    let (code, stdout, _, gas) = run("clock_random", WasiConfig::default());
    assert_eq!(code, 0);
    let out = text(&stdout).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    // The realtime clock is the event timestamp (milliseconds) in both rounds.
    for line in [lines[0], lines[2]] {
        assert!(
            line.starts_with("realtime=1700000000.123000000 monotonic="),
            "{line}"
        );
    }
    // The monotonic clock advances with gas, so the second read is later.
    let monotonic = |line: &str| -> f64 { line.rsplit('=').next().unwrap().parse().unwrap() };
    assert!(monotonic(lines[2]) > monotonic(lines[0]), "{out}");
    assert!(monotonic(lines[0]) * 1e9 < gas as f64, "{out}");
    // Two draws from the stream differ.
    assert!(lines[1].starts_with("random=") && lines[3].starts_with("random="));
    assert_ne!(lines[1], lines[3]);

    // Same seed and timestamp: byte-identical output and gas, every run.
    for _ in 0..3 {
        let (_, again, _, again_gas) = run("clock_random", WasiConfig::default());
        assert_eq!(again, stdout);
        assert_eq!(again_gas, gas);
    }
    // Another seed: other random bytes, same clocks.
    let mut sandbox =
        Sandbox::new(runtime(), wasi_config(WasiConfig::default()).with_seed(8)).unwrap();
    sandbox.load(&program("clock_random")).unwrap();
    sandbox.run_command().unwrap();
    let other = text(sandbox.stdout()).to_string();
    let other_lines: Vec<&str> = other.lines().collect();
    assert_eq!(other_lines[0], lines[0]);
    assert_ne!(other_lines[1], lines[1]);
}

#[test]
fn proc_exit_is_an_outcome_not_a_trap() {
    let (code, stdout, _, _) = run("exit", WasiConfig::default().with_args(["exit"]));
    assert_eq!(code, 3);
    assert_eq!(text(&stdout), "exiting with 3\n");
    let (code, stdout, _, _) = run("exit", WasiConfig::default().with_args(["exit", "42"]));
    assert_eq!(code, 42);
    assert_eq!(text(&stdout), "exiting with 42\n");
    // Through `call`, the exit is the typed `Exit` outcome; the sandbox stays usable.
    let mut sandbox = loaded("exit", WasiConfig::default().with_args(["exit", "5"]));
    let error = sandbox.call("_start", &[]).unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::Exit { code: 5 }),
        "{error}"
    );
    assert!(error.is_deterministic());
    assert_eq!(sandbox.status(), Status::Loaded);
}

#[test]
fn output_past_the_limit_is_a_typed_error() {
    let wasi = WasiConfig::default()
        .with_args(["hello"])
        .with_max_output_bytes(10);
    let mut sandbox = loaded("hello", wasi);
    let error = sandbox.run_command().unwrap_err();
    assert!(
        matches!(
            error.kind(),
            ErrorKind::OutputLimit {
                stream: Stream::Stdout,
                limit: 10
            }
        ),
        "{error}"
    );
    assert!(sandbox.stdout().len() <= 10);
}

#[test]
fn an_endless_write_loop_is_stopped_by_gas() {
    let config = wasi_config(WasiConfig::default()).with_max_gas(1_000_000);
    let mut sandbox = Sandbox::new(runtime(), config.clone()).unwrap();
    sandbox.load(&program("write_loop")).unwrap();
    let error = sandbox.run_command().unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::GasExhausted { .. }),
        "{error}"
    );
    let written = sandbox.stdout().len();
    // Each one-byte write costs at least the call price, 100, plus 9 bytes moved.
    assert!(written > 0 && written <= 1_000_000 / 109, "{written}");
    // Deterministically: the same number of bytes every time.
    let mut again = Sandbox::new(runtime(), config).unwrap();
    again.load(&program("write_loop")).unwrap();
    again.run_command().unwrap_err();
    assert_eq!(again.stdout().len(), written);
}

#[test]
fn gas_is_identical_on_every_run_of_every_program() {
    for name in ["hello", "cat", "clock_random", "exit", "many_writes"] {
        let wasi = || {
            WasiConfig::default()
                .with_args([name, "100"])
                .with_stdin(b"some input\n".to_vec())
        };
        let first = run(name, wasi());
        let second = run(name, wasi());
        assert_eq!(first, second, "{name}");
        assert!(first.3 > 0, "{name}");
    }
}

#[test]
fn output_and_state_survive_snapshot_restore_and_suspension() {
    let wasi = WasiConfig::default()
        .with_args(["clock_random"])
        .with_stdin(b"unused".to_vec());
    let mut sandbox = loaded("clock_random", wasi.clone());
    let fresh = sandbox.snapshot().unwrap();
    let first = sandbox.run_command().unwrap();
    let out = sandbox.stdout().to_vec();
    let after = sandbox.snapshot().unwrap();

    // Restoring the fresh state and running again gives the same bytes and gas.
    sandbox.restore(&fresh).unwrap();
    assert!(sandbox.stdout().is_empty());
    let second = sandbox.run_command().unwrap();
    assert_eq!(sandbox.stdout(), &out[..]);
    assert_eq!(second.metrics.gas_used, first.metrics.gas_used);

    // The captured output is state: it comes back in another sandbox, through bytes.
    let mut other = loaded("clock_random", wasi);
    let decoded = Snapshot::from_bytes(&after.to_bytes()).unwrap();
    other.restore(&decoded).unwrap();
    assert_eq!(other.stdout(), &out[..]);

    // Suspension keeps it too, readable while suspended.
    other.suspend().unwrap();
    assert_eq!(other.status(), Status::Suspended);
    assert_eq!(other.stdout(), &out[..]);
    assert_eq!(other.take_stdout(), out);
    assert_eq!(other.status(), Status::Loaded);

    // A WASI snapshot does not go into a sandbox without WASI, nor the other way.
    let mut plain = Sandbox::new(runtime(), Config::default()).unwrap();
    plain
        .load(br#"(module (memory (export "memory") 1))"#)
        .unwrap();
    let error = plain.restore(&after).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Snapshot(_)), "{error}");
}

/// A module that imports every WASI function with its documented type: it links.
#[test]
fn every_preview1_function_links() {
    let imports = [
        ("args_get", "(param i32 i32) (result i32)"),
        ("args_sizes_get", "(param i32 i32) (result i32)"),
        ("environ_get", "(param i32 i32) (result i32)"),
        ("environ_sizes_get", "(param i32 i32) (result i32)"),
        ("clock_res_get", "(param i32 i32) (result i32)"),
        ("clock_time_get", "(param i32 i64 i32) (result i32)"),
        ("fd_advise", "(param i32 i64 i64 i32) (result i32)"),
        ("fd_allocate", "(param i32 i64 i64) (result i32)"),
        ("fd_close", "(param i32) (result i32)"),
        ("fd_datasync", "(param i32) (result i32)"),
        ("fd_fdstat_get", "(param i32 i32) (result i32)"),
        ("fd_fdstat_set_flags", "(param i32 i32) (result i32)"),
        ("fd_fdstat_set_rights", "(param i32 i64 i64) (result i32)"),
        ("fd_filestat_get", "(param i32 i32) (result i32)"),
        ("fd_filestat_set_size", "(param i32 i64) (result i32)"),
        (
            "fd_filestat_set_times",
            "(param i32 i64 i64 i32) (result i32)",
        ),
        ("fd_pread", "(param i32 i32 i32 i64 i32) (result i32)"),
        ("fd_prestat_get", "(param i32 i32) (result i32)"),
        ("fd_prestat_dir_name", "(param i32 i32 i32) (result i32)"),
        ("fd_pwrite", "(param i32 i32 i32 i64 i32) (result i32)"),
        ("fd_read", "(param i32 i32 i32 i32) (result i32)"),
        ("fd_readdir", "(param i32 i32 i32 i64 i32) (result i32)"),
        ("fd_renumber", "(param i32 i32) (result i32)"),
        ("fd_seek", "(param i32 i64 i32 i32) (result i32)"),
        ("fd_sync", "(param i32) (result i32)"),
        ("fd_tell", "(param i32 i32) (result i32)"),
        ("fd_write", "(param i32 i32 i32 i32) (result i32)"),
        ("path_create_directory", "(param i32 i32 i32) (result i32)"),
        (
            "path_filestat_get",
            "(param i32 i32 i32 i32 i32) (result i32)",
        ),
        (
            "path_filestat_set_times",
            "(param i32 i32 i32 i32 i64 i64 i32) (result i32)",
        ),
        (
            "path_link",
            "(param i32 i32 i32 i32 i32 i32 i32) (result i32)",
        ),
        (
            "path_open",
            "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
        ),
        (
            "path_readlink",
            "(param i32 i32 i32 i32 i32 i32) (result i32)",
        ),
        ("path_remove_directory", "(param i32 i32 i32) (result i32)"),
        (
            "path_rename",
            "(param i32 i32 i32 i32 i32 i32) (result i32)",
        ),
        ("path_symlink", "(param i32 i32 i32 i32 i32) (result i32)"),
        ("path_unlink_file", "(param i32 i32 i32) (result i32)"),
        ("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
        ("proc_exit", "(param i32)"),
        ("proc_raise", "(param i32) (result i32)"),
        ("random_get", "(param i32 i32) (result i32)"),
        ("sched_yield", "(result i32)"),
        ("sock_accept", "(param i32 i32 i32) (result i32)"),
        ("sock_recv", "(param i32 i32 i32 i32 i32 i32) (result i32)"),
        ("sock_send", "(param i32 i32 i32 i32 i32) (result i32)"),
        ("sock_shutdown", "(param i32 i32) (result i32)"),
    ];
    let mut wat = String::from("(module\n");
    for (name, ty) in imports {
        wat += &format!("  (import \"wasi_snapshot_preview1\" \"{name}\" (func {ty}))\n");
    }
    wat += "  (memory (export \"memory\") 1))";
    let mut sandbox = Sandbox::new(runtime(), wasi_config(WasiConfig::default())).unwrap();
    sandbox.load(wat.as_bytes()).unwrap();

    // A WASI name with the wrong type is refused.
    let mut sandbox = Sandbox::new(runtime(), wasi_config(WasiConfig::default())).unwrap();
    let error = sandbox
        .load(br#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32))))"#)
        .unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::RejectedImport { .. }),
        "{error}"
    );
}

/// Edge cases driven by hand: errno values, bounds, closed streams, sleeping, prices.
const EDGES: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  ;; iovec at 0: (ptr 100, len $len); the text at 100.
  (data (i32.const 100) "0123456789abcdefghij")
  (func (export "write") (param $fd i32) (param $len i32) (result i32)
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (local.get $len))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func (export "write_iovs_at") (param $iovs i32) (result i32)
    (call $fd_write (i32.const 1) (local.get $iovs) (i32.const 1) (i32.const 8)))
  (func (export "close") (param $fd i32) (result i32) (call $fd_close (local.get $fd)))
  (func (export "random_at") (param $ptr i32) (param $len i32) (result i32)
    (call $random_get (local.get $ptr) (local.get $len)))
  (func (export "monotonic") (result i64)
    (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 16)))
    (i64.load (i32.const 16)))
  (func (export "clock_bad_id") (result i32) (call $clock (i32.const 9) (i64.const 0) (i32.const 16)))
  ;; One relative clock subscription at 200 for $ns nanoseconds; the event at 300.
  (func (export "sleep") (param $ns i64) (result i32)
    (i64.store (i32.const 200) (i64.const 77))
    (i32.store8 (i32.const 208) (i32.const 0))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (local.get $ns))
    (i32.store16 (i32.const 240) (i32.const 0))
    (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 24)))
  (func (export "event_userdata") (result i64) (i64.load (i32.const 300)))
  (func (export "prestat") (result i32) (call $prestat (i32.const 3) (i32.const 16)))
  (func (export "open") (result i32)
    (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 4) (i32.const 0)
      (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 16)))
  (func (export "exit") (param i32) (call $exit (local.get 0))))"#;

fn edges(wasi: WasiConfig) -> Sandbox {
    let mut sandbox = Sandbox::new(runtime(), wasi_config(wasi)).unwrap();
    sandbox.load(EDGES.as_bytes()).unwrap();
    sandbox
}

fn call_i32(sandbox: &mut Sandbox, export: &str, args: &[Value]) -> i32 {
    match sandbox.call(export, args).unwrap().values() {
        [Value::I32(v)] => *v,
        other => panic!("{export}: {other:?}"),
    }
}

#[test]
fn errno_values_bounds_and_closed_streams() {
    let mut s = edges(WasiConfig::default());
    assert_eq!(
        call_i32(&mut s, "write", &[Value::I32(1), Value::I32(5)]),
        0
    );
    assert_eq!(
        call_i32(&mut s, "write", &[Value::I32(2), Value::I32(3)]),
        0
    );
    assert_eq!(s.stdout(), b"01234");
    assert_eq!(s.stderr(), b"012");
    // stdin is not writable, fd 3 does not exist: EBADF.
    assert_eq!(
        call_i32(&mut s, "write", &[Value::I32(0), Value::I32(1)]),
        8
    );
    assert_eq!(
        call_i32(&mut s, "write", &[Value::I32(3), Value::I32(1)]),
        8
    );
    // An iovec array or buffer outside memory: EFAULT, nothing written.
    assert_eq!(call_i32(&mut s, "write_iovs_at", &[Value::I32(65_534)]), 21);
    assert_eq!(
        call_i32(&mut s, "write", &[Value::I32(1), Value::I32(70_000)]),
        21
    );
    assert_eq!(
        call_i32(&mut s, "random_at", &[Value::I32(65_530), Value::I32(7)]),
        21
    );
    assert_eq!(s.stdout(), b"01234");
    // No preopened directories, no files.
    assert_eq!(call_i32(&mut s, "prestat", &[]), 8);
    assert_eq!(call_i32(&mut s, "open", &[]), 8);
    assert_eq!(call_i32(&mut s, "clock_bad_id", &[]), 28);
    // A closed stream stays closed.
    assert_eq!(call_i32(&mut s, "close", &[Value::I32(1)]), 0);
    assert_eq!(call_i32(&mut s, "close", &[Value::I32(1)]), 8);
    assert_eq!(
        call_i32(&mut s, "write", &[Value::I32(1), Value::I32(1)]),
        8
    );
    // proc_exit from any export.
    let error = s.call("exit", &[Value::I32(9)]).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Exit { code: 9 }));
}

#[test]
fn calls_cost_their_price_plus_bytes_moved() {
    let mut s = edges(WasiConfig::default().with_prices(1000, 3));
    let gas = |s: &mut Sandbox, len: i32| {
        s.call("write", &[Value::I32(1), Value::I32(len)])
            .unwrap()
            .metrics
            .gas_used
    };
    let (g5, g15) = (gas(&mut s, 5), gas(&mut s, 15));
    // Ten bytes more cost exactly ten byte prices more.
    assert_eq!(g15 - g5, 30);
    let mut cheap = edges(WasiConfig::default().with_prices(0, 3));
    assert_eq!(g5 - gas(&mut cheap, 5), 1000);
    // A call the budget cannot pay does nothing.
    let mut poor = Sandbox::new(
        runtime(),
        wasi_config(WasiConfig::default().with_prices(1000, 1)).with_max_gas(500),
    )
    .unwrap();
    poor.load(EDGES.as_bytes()).unwrap();
    let error = poor
        .call("write", &[Value::I32(1), Value::I32(5)])
        .unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::GasExhausted { .. }));
    assert!(poor.stdout().is_empty());
}

#[test]
fn sleeping_moves_the_monotonic_clock_deterministically() {
    let mut s = edges(WasiConfig::default());
    let read = |s: &mut Sandbox| match s.call("monotonic", &[]).unwrap().values() {
        [Value::I64(v)] => *v,
        other => panic!("{other:?}"),
    };
    let before = read(&mut s);
    let after = read(&mut s);
    assert!(after > before);
    assert_eq!(call_i32(&mut s, "sleep", &[Value::I64(5_000_000_000)]), 0);
    assert_eq!(
        s.call("event_userdata", &[]).unwrap().values(),
        &[Value::I64(77)]
    );
    let slept = read(&mut s);
    assert!(slept - after >= 5_000_000_000, "{after} -> {slept}");
    assert!(slept - after < 5_000_100_000, "{after} -> {slept}");
    // The same sequence in a fresh sandbox reads the same clock values.
    let mut twin = edges(WasiConfig::default());
    assert_eq!(read(&mut twin), before);
    assert_eq!(read(&mut twin), after);
    call_i32(&mut twin, "sleep", &[Value::I64(5_000_000_000)]);
    twin.call("event_userdata", &[]).unwrap();
    assert_eq!(read(&mut twin), slept);
}

/// zlib's minigzip (built from upstream sources by fixtures/wasi/build.sh) compresses the same
/// bytes under ri-sandbox as under plain wasmtime-wasi, and decompresses them back.
#[test]
fn minigzip_matches_plain_wasmtime() {
    let input: Vec<u8> = (0..200_000u32)
        .map(|i| {
            b"the quick brown fox jumps over the lazy dog "[(i % 44) as usize] ^ (i / 997) as u8
        })
        .collect();
    let wasm = program("minigzip");
    let plain = PlainWasi::new();
    let module = wasmtime::Module::new(&plain.engine, &wasm).unwrap();
    let expected = plain.run(&module, &["minigzip"], &input);
    assert_eq!(expected.exit_code, 0);
    assert!(expected.stdout.len() < input.len() / 2);

    let wasi = WasiConfig::default()
        .with_args(["minigzip"])
        .with_stdin(input.clone())
        .with_max_output_bytes(64 << 20);
    let mut sandbox =
        Sandbox::new(runtime(), wasi_config(wasi).with_max_memory_bytes(64 << 20)).unwrap();
    sandbox.load(&wasm).unwrap();
    let outcome = sandbox.run_command().unwrap();
    assert_eq!(outcome.exit_code, expected.exit_code);
    let compressed = sandbox.take_stdout();
    assert_eq!(compressed, expected.stdout);
    assert_eq!(sandbox.take_stderr(), expected.stderr);

    let wasi = WasiConfig::default()
        .with_args(["minigzip", "-d"])
        .with_stdin(compressed);
    let mut sandbox =
        Sandbox::new(runtime(), wasi_config(wasi).with_max_memory_bytes(64 << 20)).unwrap();
    sandbox.load(&wasm).unwrap();
    assert_eq!(sandbox.run_command().unwrap().exit_code, 0);
    assert_eq!(sandbox.stdout(), &input[..]);
}

/// The small programs print the same under plain wasmtime-wasi (clocks and randomness aside).
#[test]
fn programs_print_what_plain_wasmtime_prints() {
    let plain = PlainWasi::new();
    for (name, args, stdin) in [
        ("hello", vec!["hello", "x"], &b""[..]),
        ("cat", vec!["cat"], &b"line one\nline two\n"[..]),
        ("exit", vec!["exit", "12"], &b""[..]),
        ("many_writes", vec!["many_writes", "50"], &b""[..]),
    ] {
        let module = wasmtime::Module::new(&plain.engine, program(name)).unwrap();
        let expected = plain.run(&module, &args, stdin);
        let (code, stdout, stderr, _) = run(
            name,
            WasiConfig::default()
                .with_args(args.clone())
                .with_stdin(stdin.to_vec()),
        );
        assert_eq!(code, expected.exit_code, "{name}");
        assert_eq!(stdout, expected.stdout, "{name}");
        assert_eq!(stderr, expected.stderr, "{name}");
    }
}

fn files_run(dir: &std::path::Path, writable: bool) -> (i32, String, u64) {
    let wasi = WasiConfig::default()
        .with_args(["files", "/data"])
        .with_dir(dir, "/data", writable);
    let (code, stdout, stderr, gas) = run("files", wasi);
    assert!(stderr.is_empty(), "{}", text(&stderr));
    (code, text(&stdout).to_string(), gas)
}

#[test]
fn a_granted_directory_is_usable_and_confined() {
    let dir = crate::common::TempDir::new("wasi-files");
    std::fs::write(dir.0.join("input.txt"), "hello from the host\n").unwrap();
    std::fs::write(dir.0.join("b.txt"), "").unwrap();
    std::fs::create_dir(dir.0.join("a-dir")).unwrap();
    let (code, out, gas) = files_run(&dir.0, true);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "input: hello from the host\n\
         size=20 mtime=0\n\
         mkdir: 0\n\
         from offset 10:  the guest\nappended\n\
         rename: 0\n\
         entry .\nentry ..\nentry a-dir\nentry b.txt\nentry input.txt\nentry out\n\
         escape: Capabilities insufficient\n\
         absolute: Capabilities insufficient\n\
         unlink: 0\n\
         rmdir: 0\n"
    );
    // The program cleaned up after itself on the host; the host's files are untouched.
    let mut names: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a-dir", "b.txt", "input.txt"]);
    // Same files, same output and gas.
    assert_eq!(files_run(&dir.0, true), (0, out, gas));

    // Read-only: reading works, every change is refused (ENOTCAPABLE, 76).
    let (code, out, _) = files_run(&dir.0, false);
    assert_eq!(code, 0);
    assert!(out.starts_with("input: hello from the host\nsize=20 mtime=0\nmkdir: 76\ncreate: Capabilities insufficient\n"), "{out}");
    assert!(out.contains("unlink: 76\nrmdir: 76\n"), "{out}");
}

#[test]
fn a_missing_granted_directory_is_a_config_error() {
    let wasi = WasiConfig::default().with_dir("/nonexistent/ri-sandbox", "/data", false);
    let error = Sandbox::new(runtime(), wasi_config(wasi)).unwrap_err();
    assert!(matches!(error.kind(), ErrorKind::Config { .. }), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/ri-sandbox"),
        "{error}"
    );
}

/// Opens `/data/f.txt` (descriptor 3 is the granted directory) and closes it on request.
const OPEN_FILE: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "f.txt")
  (func (export "open") (result i32)
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 0)
      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
    (i32.load (i32.const 16)))
  (func (export "close") (param i32) (result i32) (call $close (local.get 0))))"#;

#[test]
fn snapshots_refuse_open_files_and_restores_close_them() {
    let dir = crate::common::TempDir::new("wasi-open-files");
    std::fs::write(dir.0.join("f.txt"), "x").unwrap();
    let wasi = WasiConfig::default().with_dir(&dir.0, "/data", false);
    let mut sandbox = Sandbox::new(runtime(), wasi_config(wasi)).unwrap();
    sandbox.load(OPEN_FILE.as_bytes()).unwrap();
    let clean = sandbox.snapshot().unwrap();
    assert_eq!(call_i32(&mut sandbox, "open", &[]), 4);
    let error = sandbox.snapshot().unwrap_err();
    assert!(
        matches!(
            error.kind(),
            ErrorKind::Snapshot(ri_sandbox::SnapshotError::Unsaveable { .. })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("descriptor 4"), "{error}");
    // Closing it makes the state saveable again; a restore closes what was open.
    assert_eq!(call_i32(&mut sandbox, "close", &[Value::I32(4)]), 0);
    sandbox.snapshot().unwrap();
    assert_eq!(call_i32(&mut sandbox, "open", &[]), 4);
    sandbox.restore(&clean).unwrap();
    assert_eq!(call_i32(&mut sandbox, "close", &[Value::I32(4)]), 8);
    assert_eq!(call_i32(&mut sandbox, "open", &[]), 4);
}

#[test]
fn symlinks_out_of_a_granted_directory_are_refused() {
    let dir = crate::common::TempDir::new("wasi-symlink");
    std::os::unix::fs::symlink("/etc", dir.0.join("link")).unwrap();
    std::fs::write(dir.0.join("inside.txt"), "x").unwrap();
    std::os::unix::fs::symlink("inside.txt", dir.0.join("ok")).unwrap();
    let module = r#"(module
      (import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "link/hostname")
      (data (i32.const 200) "ok")
      (func (export "open") (param i32 i32) (result i32)
        (call $open (i32.const 3) (i32.const 1) (local.get 0) (local.get 1) (i32.const 0)
          (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16))))"#;
    let wasi = WasiConfig::default().with_dir(&dir.0, ".", false);
    let mut sandbox = Sandbox::new(runtime(), wasi_config(wasi)).unwrap();
    sandbox.load(module.as_bytes()).unwrap();
    // Out through a symlink: ENOTCAPABLE; a symlink that stays inside: fine.
    assert_eq!(
        call_i32(&mut sandbox, "open", &[Value::I32(100), Value::I32(13)]),
        76
    );
    assert_eq!(
        call_i32(&mut sandbox, "open", &[Value::I32(200), Value::I32(2)]),
        0
    );
}

#[test]
fn every_readdir_pays_for_the_whole_listing() {
    let dir = crate::common::TempDir::new("wasi-readdir");
    for i in 0..50 {
        std::fs::write(dir.0.join(format!("file-{i:02}")), "").unwrap();
    }
    let module = r#"(module
      (import "wasi_snapshot_preview1" "fd_readdir"
        (func $readdir (param i32 i32 i32 i64 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "list") (param $len i32) (param $cookie i64) (result i32)
        (drop (call $readdir (i32.const 3) (i32.const 1024) (local.get $len)
          (local.get $cookie) (i32.const 16)))
        (i32.load (i32.const 16))))"#;
    let wasi = WasiConfig::default().with_dir(&dir.0, ".", false);
    let mut sandbox = Sandbox::new(runtime(), wasi_config(wasi)).unwrap();
    sandbox.load(module.as_bytes()).unwrap();
    let list = |s: &mut Sandbox, len: i32, cookie: i64| {
        let run = s
            .call("list", &[Value::I32(len), Value::I64(cookie)])
            .unwrap();
        (run.values()[0], run.metrics.gas_used)
    };
    // 52 entries (with . and ..), 24 bytes of header each plus the names.
    let whole = 52 * 24 + 1 + 2 + 50 * 7;
    let (all, gas_all) = list(&mut sandbox, 60_000, 0);
    assert_eq!(all, Value::I32(whole));
    // A one-entry buffer, or the last entries only: the same price, the whole listing.
    let (one, gas_one) = list(&mut sandbox, 24, 0);
    assert_eq!(one, Value::I32(24));
    let (_, gas_tail) = list(&mut sandbox, 60_000, 51);
    assert_eq!(gas_one, gas_all);
    assert_eq!(gas_tail, gas_all);
}

/// Every WASI function called 300 times with hostile arguments (small and huge pointers and
/// lengths, random flags, negative descriptors) in a sandbox with a writable granted
/// directory: each call returns an errno or a typed error, never a panic, and the whole run
/// is deterministic.
#[test]
fn hostile_arguments_to_every_wasi_function_never_panic() {
    let signatures = ri_sandbox::wasi::signatures();
    let ty = |letters: &str| -> String {
        letters
            .chars()
            .map(|c| if c == 'I' { " i64" } else { " i32" })
            .collect()
    };
    let mut wat = String::from("(module\n");
    for (name, params, results) in signatures {
        wat += &format!(
            "  (import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} (param{}) (result{})))\n",
            ty(params),
            ty(results)
        );
    }
    for (name, params, results) in signatures {
        let gets: String = (0..params.len())
            .map(|i| format!(" local.get {i}"))
            .collect();
        wat += &format!(
            "  (func (export \"{name}\") (param{}) (result{}){gets} call ${name})\n",
            ty(params),
            ty(results)
        );
    }
    wat += "  (memory (export \"memory\") 1)\n  (data (i32.const 0) \"f.txt\\00dir\\00../x\\00/etc\"))";

    let run = || {
        let dir = crate::common::TempDir::new("wasi-hostile");
        std::fs::write(dir.0.join("f.txt"), "contents").unwrap();
        let wasi = WasiConfig::default()
            .with_args(["a", "b"])
            .with_env("K", "V")
            .with_stdin(b"input".to_vec())
            .with_dir(&dir.0, "/d", true);
        let mut sandbox = Sandbox::new(runtime(), wasi_config(wasi)).unwrap();
        sandbox.load(wat.as_bytes()).unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut outcomes = Vec::new();
        for round in 0..300 {
            for (name, params, _) in signatures {
                let args: Vec<Value> = params
                    .chars()
                    .map(|c| {
                        let r = next();
                        let small = [0, 1, 3, 4, 5, 16, 24, 100, 4096, 65_530, 65_536];
                        let v = match (r >> 8) % 4 {
                            0 => small[r as usize % small.len()],
                            1 => (r >> 16) as i64 % 70_000,
                            2 => -((r >> 20) as i64 % 5),
                            _ => (r >> 4) as i64,
                        };
                        if c == 'I' {
                            Value::I64(v)
                        } else {
                            Value::I32(v as i32)
                        }
                    })
                    .collect();
                let outcome = match sandbox.call(name, &args) {
                    Ok(run) => format!("{:?} {}", run.values(), run.metrics.gas_used),
                    Err(e) => format!("{:?}", std::mem::discriminant(e.kind())),
                };
                outcomes.push((round, *name, outcome));
            }
        }
        outcomes
    };
    let first = run();
    assert_eq!(first.len(), 300 * signatures.len());
    // Some calls succeeded and some were refused: the arguments reached real code paths.
    assert!(first.iter().any(|(_, _, o)| o.starts_with("[I32(0)]")));
    assert!(first.iter().any(|(_, _, o)| o.starts_with("[I32(8)]")));
    assert!(first.iter().any(|(_, _, o)| o.starts_with("[I32(21)]")));
    assert_eq!(first, run());
}

#[test]
fn positional_reads_and_writes_leave_the_position_alone() {
    let dir = crate::common::TempDir::new("wasi-positional");
    let module = r#"(module
      (import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_pwrite" (func $pwrite (param i32 i32 i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_pread" (func $pread (param i32 i32 i32 i64 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "p.txt")
      (data (i32.const 200) "abcdef")
      ;; iovecs: at 0 the 6 bytes at 200; at 16 three bytes at 300; at 24 three bytes at 310
      (func (export "run")
        (i32.store (i32.const 0) (i32.const 200)) (i32.store (i32.const 4) (i32.const 6))
        (i32.store (i32.const 16) (i32.const 300)) (i32.store (i32.const 20) (i32.const 3))
        (i32.store (i32.const 24) (i32.const 310)) (i32.store (i32.const 28) (i32.const 3))
        ;; create p.txt with read and write rights
        (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 5) (i32.const 1)
          (i64.const 66) (i64.const 0) (i32.const 0) (i32.const 40)))
        (drop (call $pwrite (i32.load (i32.const 40)) (i32.const 0) (i32.const 1) (i64.const 2) (i32.const 44)))
        (drop (call $pread (i32.load (i32.const 40)) (i32.const 16) (i32.const 1) (i64.const 4) (i32.const 48)))
        (drop (call $read (i32.load (i32.const 40)) (i32.const 24) (i32.const 1) (i32.const 52))))
      (func (export "at") (param i32) (result i32) (i32.load (local.get 0))))"#;
    let wasi = WasiConfig::default().with_dir(&dir.0, ".", true);
    let mut sandbox = Sandbox::new(runtime(), wasi_config(wasi)).unwrap();
    sandbox.load(module.as_bytes()).unwrap();
    sandbox.call("run", &[]).unwrap();
    assert_eq!(std::fs::read(dir.0.join("p.txt")).unwrap(), b"\0\0abcdef");
    let word = |s: &mut Sandbox, at: i32| call_i32(s, "at", &[Value::I32(at)]).to_le_bytes();
    // pread at 4 read "cde"; the plain read that followed still started at 0.
    assert_eq!(&word(&mut sandbox, 300)[..3], b"cde");
    assert_eq!(&word(&mut sandbox, 310)[..3], b"\0\0a");
    // Six bytes written, three read by each.
    assert_eq!(call_i32(&mut sandbox, "at", &[Value::I32(44)]), 6);
    assert_eq!(call_i32(&mut sandbox, "at", &[Value::I32(48)]), 3);
}

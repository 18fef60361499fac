//! The `ri-sandbox` command as a user types it: every `run` flag, `precompile`, and the exit
//! codes (0, 1 for a failed run with one error line, 2 for a usage error).

use crate::common::{fixture_path, TempDir};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ri-sandbox"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `ri-sandbox run fixtures/<fixture> --invoke <export> <rest...>`.
fn run_export(fixture: &str, export: &str, rest: &[&str]) -> Output {
    let path = fixture_path(fixture);
    let mut args = vec!["run", path.to_str().unwrap(), "--invoke", export];
    args.extend_from_slice(rest);
    run(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_prints_result_gas_memory_and_time() {
    let out = run_export("fibonacci.wat", "fib", &["20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("result: 6765\ngas used: 218905 of 1000000\n"),
        "{text}"
    );
    assert!(
        text.contains("peak memory: 0 bytes (limit 16777216)"),
        "{text}"
    );
    assert!(text.contains("time: "), "{text}");
}

#[test]
fn limits_and_determinism_flags_take_effect() {
    let out = run_export("infinite-loop.wat", "spin", &["--gas", "500"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(stderr(&out).contains("out of gas: the call used its whole budget of 500 gas"));

    let out = run_export(
        "memory-hog.wat",
        "allocate",
        &["200000", "--memory", "131072"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("memory limit exceeded"),
        "{}",
        stderr(&out)
    );

    let out = run_export(
        "infinite-loop.wat",
        "spin",
        &["--gas", "999999999999", "--timeout-ms", "10"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));

    let now = run_export("time-random.wat", "now", &["--timestamp", "1700000000000"]);
    assert!(
        stdout(&now).starts_with("result: 1700000000000\n"),
        "{}",
        stdout(&now)
    );
    let random_with_seed = |seed: &str| {
        let out = run_export("time-random.wat", "random", &["--seed", seed]);
        stdout(&out).lines().next().unwrap_or_default().to_string()
    };
    let nine = random_with_seed("9");
    assert_eq!(nine, random_with_seed("9"));
    assert_ne!(nine, random_with_seed("10"));
}

#[test]
fn json_mode_from_the_command_line() {
    let out = run_export("json-echo.wat", "wrap", &["--json", r#"{"a":[1,2]}"#]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(r#"result: {"echo":{"a":[1,2]}}"#),
        "{}",
        stdout(&out)
    );
    let out = run_export("json-echo.wat", "wrap", &["--json", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn precompiled_ready_files_need_the_right_key() {
    let dir = TempDir::new("cli-ready");
    let (key, other, ready) = (
        dir.0.join("key"),
        dir.0.join("other"),
        dir.0.join("fib.ready"),
    );
    std::fs::write(&key, b"a host secret").unwrap();
    std::fs::write(&other, b"someone else").unwrap();
    let fib = fixture_path("fibonacci.wat");
    let out = run(&[
        "precompile",
        fib.to_str().unwrap(),
        "-o",
        ready.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run_ready_with_key = |key: &std::path::Path| {
        run(&[
            "run",
            ready.to_str().unwrap(),
            "--precompiled",
            "--key-file",
            key.to_str().unwrap(),
            "--invoke",
            "fib",
            "10",
        ])
    };
    let ok = run_ready_with_key(&key);
    assert!(
        stdout(&ok).starts_with("result: 55\n"),
        "{}{}",
        stdout(&ok),
        stderr(&ok)
    );
    let bad = run_ready_with_key(&other);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("MAC does not match"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn usage_errors_exit_with_2() {
    let add = fixture_path("add.wat");
    let add = add.to_str().unwrap();
    let invoke_add = ["run", add, "--invoke", "add"];
    let with = |rest: &[&'static str]| [&invoke_add[..], rest].concat();
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["run"],
        vec!["run", add],
        with(&["1"]),
        with(&["x", "2"]),
        with(&["1", "2", "--gas", "lots"]),
        with(&["1", "2", "--bogus"]),
        with(&["--precompiled"]),
        vec!["precompile", add],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    let out = run(&["run", "/no/such/file.wasm", "--invoke", "f"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

#[test]
fn wasi_programs_run_as_commands() {
    let hello = fixture_path("wasi/hello.wasm");
    let hello = hello.to_str().unwrap();
    let out = run(&[
        "run",
        "--wasi",
        hello,
        "--env",
        "RI_GREETING=hey",
        "--",
        "one",
        "two words",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("hello, world\nargv[0]={hello}\nargv[1]=one\nargv[2]=two words\nRI_GREETING=hey\n")
    );
    // The program's stderr, then the summary, on stderr.
    let err = stderr(&out);
    assert!(
        err.starts_with("to stderr\nexit code: 0\ngas used: "),
        "{err}"
    );

    // proc_exit's code becomes the exit status.
    let exit = fixture_path("wasi/exit.wasm");
    let out = run(&["run", "--wasi", exit.to_str().unwrap(), "--", "7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stdout(&out), "exiting with 7\n");

    // --stdin feeds the program; the same run twice prints the same gas.
    let dir = TempDir::new("cli-wasi");
    let input = dir.0.join("input.txt");
    std::fs::write(&input, "abc\ndef\n").unwrap();
    let cat = fixture_path("wasi/cat.wasm");
    let args = [
        "run",
        "--wasi",
        cat.to_str().unwrap(),
        "--stdin",
        input.to_str().unwrap(),
    ];
    let first = run(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(stdout(&first), "abc\ndef\n");
    let gas_line = |out: &Output| {
        stderr(out)
            .lines()
            .find(|l| l.starts_with("gas used: "))
            .map(str::to_string)
    };
    assert!(gas_line(&first).is_some());
    assert_eq!(gas_line(&first), gas_line(&run(&args)));

    // --dir grants a directory read-only, --dir-rw writable.
    std::fs::write(dir.0.join("input.txt"), "from the host\n").unwrap();
    let files = fixture_path("wasi/files.wasm");
    let grant = format!("{}::/data", dir.0.display());
    let out = run(&["run", "--wasi", files.to_str().unwrap(), "--dir", &grant]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("input: from the host\n"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("mkdir: 76\n"), "{}", stdout(&out));
    let out = run(&["run", "--wasi", files.to_str().unwrap(), "--dir-rw", &grant]);
    assert!(stdout(&out).contains("mkdir: 0\n"), "{}", stdout(&out));
}

#[test]
fn wasi_failures_and_refusals() {
    // Without --wasi, a WASI program is refused by name.
    let hello = fixture_path("wasi/hello.wasm");
    let out = run(&["run", hello.to_str().unwrap(), "--invoke", "_start"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wasi_snapshot_preview1.fd_write"),
        "{}",
        stderr(&out)
    );
    // An endless writer is stopped by gas, its output so far still shown.
    let writer = fixture_path("wasi/write_loop.wasm");
    let out = run(&["run", "--wasi", writer.to_str().unwrap(), "--gas", "100000"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stdout.is_empty() && out.stdout.iter().all(|b| *b == b'x'));
    assert!(stderr(&out).contains("out of gas"), "{}", stderr(&out));
    // ... or by the output limit.
    let out = run(&[
        "run",
        "--wasi",
        writer.to_str().unwrap(),
        "--max-output",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout.len(), 100);
    assert!(
        stderr(&out).contains("output limit exceeded: stdout"),
        "{}",
        stderr(&out)
    );
    // Program arguments without --wasi are a usage error.
    let out = run(&[
        "run",
        hello.to_str().unwrap(),
        "--invoke",
        "_start",
        "--",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

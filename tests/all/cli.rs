//! The `ri-sandbox` command as a user types it: every `run` flag, `precompile`, and the exit
//! codes (0, 1 for a failed run with one error line, 2 for a usage error).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ri-sandbox"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_prints_result_gas_memory_and_time() {
    let fib = fixture("fibonacci.wat");
    let out = run(&["run", fib.to_str().unwrap(), "--invoke", "fib", "20"]);
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
    let spin = fixture("infinite-loop.wat");
    let out = run(&[
        "run",
        spin.to_str().unwrap(),
        "--invoke",
        "spin",
        "--gas",
        "500",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(stderr(&out).contains("out of gas: the call used its whole budget of 500 gas"));

    let hog = fixture("memory-hog.wat");
    let out = run(&[
        "run",
        hog.to_str().unwrap(),
        "--invoke",
        "allocate",
        "200000",
        "--memory",
        "131072",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("memory limit exceeded"),
        "{}",
        stderr(&out)
    );

    let out = run(&[
        "run",
        spin.to_str().unwrap(),
        "--invoke",
        "spin",
        "--gas",
        "999999999999",
        "--timeout-ms",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("timeout"), "{}", stderr(&out));

    let tr = fixture("time-random.wat");
    let now = run(&[
        "run",
        tr.to_str().unwrap(),
        "--invoke",
        "now",
        "--timestamp",
        "1700000000000",
    ]);
    assert!(
        stdout(&now).starts_with("result: 1700000000000\n"),
        "{}",
        stdout(&now)
    );
    let random_with_seed = |seed: &str| {
        run(&[
            "run",
            tr.to_str().unwrap(),
            "--invoke",
            "random",
            "--seed",
            seed,
        ])
    };
    let (a, b, c) = (
        random_with_seed("9"),
        random_with_seed("9"),
        random_with_seed("10"),
    );
    let first = |o: &Output| stdout(o).lines().next().unwrap_or_default().to_string();
    assert_eq!(first(&a), first(&b));
    assert_ne!(first(&a), first(&c));
}

#[test]
fn json_mode_from_the_command_line() {
    let echo = fixture("json-echo.wat");
    let out = run(&[
        "run",
        echo.to_str().unwrap(),
        "--invoke",
        "wrap",
        "--json",
        r#"{"a":[1,2]}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(r#"result: {"echo":{"a":[1,2]}}"#),
        "{}",
        stdout(&out)
    );
    let out = run(&[
        "run",
        echo.to_str().unwrap(),
        "--invoke",
        "wrap",
        "--json",
        "{not json",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn precompiled_ready_files_need_the_right_key() {
    let dir = std::env::temp_dir().join(format!("ri-sandbox-cli-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (key, other, ready) = (dir.join("key"), dir.join("other"), dir.join("fib.ready"));
    std::fs::write(&key, b"a host secret").unwrap();
    std::fs::write(&other, b"someone else").unwrap();
    let fib = fixture("fibonacci.wat");
    let out = run(&[
        "precompile",
        fib.to_str().unwrap(),
        "-o",
        ready.to_str().unwrap(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = run(&[
        "run",
        ready.to_str().unwrap(),
        "--precompiled",
        "--key-file",
        key.to_str().unwrap(),
        "--invoke",
        "fib",
        "10",
    ]);
    assert!(
        stdout(&ok).starts_with("result: 55\n"),
        "{}{}",
        stdout(&ok),
        stderr(&ok)
    );
    let bad = run(&[
        "run",
        ready.to_str().unwrap(),
        "--precompiled",
        "--key-file",
        other.to_str().unwrap(),
        "--invoke",
        "fib",
        "10",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stderr(&bad).contains("MAC does not match"),
        "{}",
        stderr(&bad)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_errors_exit_with_2() {
    let add = fixture("add.wat");
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["run"],
        vec!["run", add.to_str().unwrap()],
        vec!["run", add.to_str().unwrap(), "--invoke", "add", "1"],
        vec!["run", add.to_str().unwrap(), "--invoke", "add", "x", "2"],
        vec![
            "run",
            add.to_str().unwrap(),
            "--invoke",
            "add",
            "1",
            "2",
            "--gas",
            "lots",
        ],
        vec![
            "run",
            add.to_str().unwrap(),
            "--invoke",
            "add",
            "1",
            "2",
            "--bogus",
        ],
        vec![
            "run",
            add.to_str().unwrap(),
            "--invoke",
            "add",
            "--precompiled",
        ],
        vec!["precompile", add.to_str().unwrap()],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(!stderr(&out).is_empty(), "{args:?}");
    }
    let out = run(&["run", "/no/such/file.wasm", "--invoke", "f"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

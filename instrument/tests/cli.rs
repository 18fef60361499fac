//! The `instrument` binary, end to end: what it writes, what it prints, how it fails.
//!
//! The CLI promises (see `src/main.rs`): a one-line summary on success; on any error one line
//! on stderr, exit status 1, and no output file left behind.

use ri_sandbox_instrument::abi::{self, AbiInfo};
use ri_sandbox_instrument::{instrument, supported_features, CostModel, Options};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "ri-sandbox-cli-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }

    /// The names of the files in the directory, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .expect("read temp dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

fn run(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_instrument"))
        .args(args)
        .output()
        .expect("run the instrument binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

/// `instrument IN -o OUT [more]`, which must succeed; returns the summary line.
fn instrument_ok(input: &Path, output: &Path, more: &[&Path]) -> String {
    let mut args = vec![input, Path::new("-o"), output];
    args.extend_from_slice(more);
    let out = run(&args);
    assert!(
        out.status.success(),
        "instrument {args:?} failed: {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "", "nothing on stderr on success");
    stdout(&out)
}

/// Runs a command that must fail in the documented way: status 1, exactly one line on
/// stderr, nothing on stdout, and the directory holds only `before` afterwards (no output, no
/// temporary file). Returns the error line.
fn assert_fails(dir: &TempDir, args: &[&Path], before: &[&str]) -> String {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "instrument {args:?} should fail with status 1; stderr: {err}"
    );
    assert_eq!(stdout(&out), "", "instrument {args:?}: nothing on stdout");
    assert_eq!(
        err.lines().count(),
        1,
        "instrument {args:?}: one error line expected, got:\n{err}"
    );
    assert!(
        err.starts_with("instrument: error: "),
        "instrument {args:?}: {err}"
    );
    assert_eq!(
        dir.files(),
        before,
        "instrument {args:?} left files behind (stderr: {err})"
    );
    err
}

/// The gas charged at each metered block, in order: the `i64.const` of each
/// `local.get $gas; i64.const N; i64.lt_s` (the first half of every charge).
fn charges(wasm: &[u8]) -> Vec<i64> {
    let mut gas_global = None;
    let mut charges = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.expect("output parses") {
            wasmparser::Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.unwrap();
                    if export.name == abi::GAS_LEFT_EXPORT {
                        gas_global = Some(export.index);
                    }
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                let gas = gas_global.expect("gas global exported before the code");
                let ops: Vec<wasmparser::Operator<'_>> = body
                    .get_operators_reader()
                    .unwrap()
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .unwrap();
                // The function's gas local is the one the counter is loaded into.
                let gas_local = ops.windows(2).find_map(|w| match w {
                    [wasmparser::Operator::GlobalGet { global_index }, wasmparser::Operator::LocalSet { local_index }]
                        if *global_index == gas =>
                    {
                        Some(*local_index)
                    }
                    _ => None,
                });
                for window in ops.windows(3) {
                    if let [wasmparser::Operator::LocalGet { local_index }, wasmparser::Operator::I64Const { value }, wasmparser::Operator::I64LtS] =
                        window
                    {
                        if Some(*local_index) == gas_local {
                            charges.push(*value);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    charges
}

fn validate(wasm: &[u8]) {
    wasmparser::Validator::new_with_features(supported_features())
        .validate_all(wasm)
        .expect("the output is a valid module");
}

#[test]
fn instruments_a_binary_module() {
    let dir = TempDir::new("binary");
    let output = dir.join("add.metered.wasm");
    let summary = instrument_ok(&fixture("add.wasm"), &output, &[]);
    assert_eq!(summary.lines().count(), 1, "one summary line: {summary}");
    assert!(summary.contains("function"), "{summary}");
    assert!(summary.contains("blocks metered"), "{summary}");
    assert!(summary.contains("1 function,"), "{summary}");

    let wasm = std::fs::read(&output).expect("output written");
    validate(&wasm);
    let info = AbiInfo::read(&wasm).expect("the output has an ri_sandbox section");
    assert_eq!(info.version, abi::ABI_VERSION);
    assert_eq!(info.cost_fingerprint, CostModel::default().fingerprint());
    // local.get, local.get, i32.add (and a free `end`): one block of 3.
    assert_eq!(charges(&wasm), [3]);
    // Same bytes as the library, and nothing else left in the directory.
    let input = std::fs::read(fixture("add.wasm")).unwrap();
    assert_eq!(
        wasm,
        instrument(&input, &Options::default()).unwrap().module
    );
    assert_eq!(dir.files(), ["add.metered.wasm"]);
}

#[test]
fn instruments_a_text_module() {
    let dir = TempDir::new("text");
    let output = dir.join("counter.wasm");
    let summary = instrument_ok(&fixture("counter.wat"), &output, &[]);
    assert!(summary.contains("2 functions"), "{summary}");
    let wasm = std::fs::read(&output).unwrap();
    validate(&wasm);
    let binary = wat::parse_file(fixture("counter.wat")).unwrap();
    assert_eq!(
        wasm,
        instrument(&binary, &Options::default()).unwrap().module,
        "a .wat input gives the same output as its binary"
    );
}

#[test]
fn overwrites_an_existing_output() {
    let dir = TempDir::new("overwrite");
    let output = dir.write("out.wasm", b"old contents");
    instrument_ok(&fixture("add.wasm"), &output, &[]);
    validate(&std::fs::read(&output).unwrap());
    assert_eq!(dir.files(), ["out.wasm"]);
}

#[test]
fn garbage_input_fails_cleanly() {
    let dir = TempDir::new("garbage");
    let binary = dir.write(
        "garbage.wasm",
        [0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37],
    );
    let output = dir.join("out.wasm");
    let err = assert_fails(
        &dir,
        &[&binary, Path::new("-o"), &output],
        &["garbage.wasm"],
    );
    assert!(err.contains("garbage.wasm"), "{err}");

    let text = dir.write("garbage.wat", "this is not a module\n");
    let err = assert_fails(
        &dir,
        &[&text, Path::new("-o"), &output],
        &["garbage.wasm", "garbage.wat"],
    );
    assert!(err.contains("garbage.wat"), "{err}");
}

#[test]
fn truncated_module_fails_with_an_offset() {
    let dir = TempDir::new("truncated");
    let full = std::fs::read(fixture("add.wasm")).unwrap();
    let input = dir.write("truncated.wasm", &full[..full.len() - 3]);
    let output = dir.join("out.wasm");
    let err = assert_fails(
        &dir,
        &[&input, Path::new("-o"), &output],
        &["truncated.wasm"],
    );
    assert!(err.contains("truncated.wasm"), "{err}");
    assert!(err.contains("byte offset"), "{err}");
}

#[test]
fn invalid_module_fails_with_an_offset() {
    let dir = TempDir::new("invalid");
    // Well-formed but ill-typed: the body leaves an i64 where an i32 is the result.
    let wasm = wat::parse_str("(module (func (result i32) i64.const 0))").unwrap();
    let input = dir.write("invalid.wasm", wasm);
    let output = dir.join("out.wasm");
    let err = assert_fails(&dir, &[&input, Path::new("-o"), &output], &["invalid.wasm"]);
    assert!(err.contains("invalid.wasm"), "{err}");
    assert!(err.contains("byte offset"), "{err}");
    assert!(err.contains("type mismatch"), "{err}");
}

#[test]
fn already_instrumented_module_is_refused() {
    let dir = TempDir::new("twice");
    let once = dir.join("once.wasm");
    instrument_ok(&fixture("add.wasm"), &once, &[]);
    let twice = dir.join("twice.wasm");
    let err = assert_fails(&dir, &[&once, Path::new("-o"), &twice], &["once.wasm"]);
    assert!(err.contains("once.wasm"), "{err}");
    assert!(err.contains("already instrumented"), "{err}");
}

#[test]
fn cost_files_change_the_charges() {
    let dir = TempDir::new("costs");
    let default_out = dir.join("default.wasm");
    instrument_ok(&fixture("add.wasm"), &default_out, &[]);
    let default = std::fs::read(&default_out).unwrap();
    assert_eq!(charges(&default), [3]);

    let toml = "[operators]\n\"i32.add\" = 100\n";
    let json = r#"{"operators": {"i32_add": 100}}"#;
    let expected_model = CostModel::from_toml(toml).unwrap();
    let toml_file = dir.write("costs.toml", toml);
    let json_file = dir.write("costs.json", json);
    let mut outputs = Vec::new();
    for costs in [&toml_file, &json_file] {
        let output = dir.join("metered.wasm");
        instrument_ok(
            &fixture("add.wasm"),
            &output,
            &[Path::new("--costs"), costs],
        );
        let wasm = std::fs::read(&output).unwrap();
        validate(&wasm);
        assert_ne!(
            wasm,
            default,
            "{}: the output did not change",
            costs.display()
        );
        assert_eq!(
            charges(&wasm),
            [102],
            "{}: local.get + local.get + 100 for i32.add",
            costs.display()
        );
        assert_eq!(
            AbiInfo::read(&wasm).unwrap().cost_fingerprint,
            expected_model.fingerprint(),
            "{}: the custom section records the cost model",
            costs.display()
        );
        outputs.push(wasm);
    }
    assert_eq!(outputs[0], outputs[1], "TOML and JSON give the same module");

    // A flat default applies to every operator not listed, structure markers included.
    let flat = dir.write("flat.toml", "default = 7\n");
    let output = dir.join("flat.wasm");
    instrument_ok(
        &fixture("add.wasm"),
        &output,
        &[Path::new("--costs"), &flat],
    );
    assert_eq!(charges(&std::fs::read(&output).unwrap()), [4 * 7]);
}

#[test]
fn unknown_operator_in_a_cost_file_is_an_error() {
    let dir = TempDir::new("bad-costs");
    let toml = dir.write("costs.toml", "[operators]\n\"i32.frobnicate\" = 1\n");
    let json = dir.write("costs.json", r#"{"operators": {"i32_frobnicate": 1}}"#);
    let output = dir.join("out.wasm");
    for costs in [&toml, &json] {
        let err = assert_fails(
            &dir,
            &[
                &fixture("add.wasm"),
                Path::new("-o"),
                &output,
                Path::new("--costs"),
                costs,
            ],
            &["costs.json", "costs.toml"],
        );
        assert!(err.contains("unknown operator"), "{err}");
        assert!(err.contains("frobnicate"), "{err}");
        assert!(err.contains(&*costs.to_string_lossy()), "{err}");
    }
}

#[test]
fn missing_output_prints_usage() {
    let dir = TempDir::new("usage");
    let input = dir.write("add.wasm", std::fs::read(fixture("add.wasm")).unwrap());
    let out = run(&[&input]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("usage: instrument"), "{err}");
    assert!(err.contains("-o"), "{err}");
    assert_eq!(stdout(&out), "");
    assert_eq!(dir.files(), ["add.wasm"]);

    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("usage: instrument"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_input_and_unwritable_output_fail_cleanly() {
    let dir = TempDir::new("io");
    let missing = dir.join("missing.wasm");
    let output = dir.join("out.wasm");
    let err = assert_fails(&dir, &[&missing, Path::new("-o"), &output], &[]);
    assert!(err.contains("missing.wasm"), "{err}");

    let nowhere = dir.join("no/such/dir/out.wasm");
    let err = assert_fails(
        &dir,
        &[&fixture("add.wasm"), Path::new("-o"), &nowhere],
        &[],
    );
    assert!(err.contains("cannot write"), "{err}");
}

#[test]
fn entry_points_are_added_on_request() {
    let dir = TempDir::new("entry");
    let plain = dir.join("plain.wasm");
    let with_entries = dir.join("entries.wasm");
    instrument_ok(&fixture("add.wasm"), &plain, &[]);
    instrument_ok(
        &fixture("add.wasm"),
        &with_entries,
        &[Path::new("--entry-points")],
    );
    let exports = |path: &Path| -> Vec<String> {
        let wasm = std::fs::read(path).unwrap();
        validate(&wasm);
        let mut names = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(&wasm) {
            if let wasmparser::Payload::ExportSection(reader) = payload.unwrap() {
                for export in reader {
                    names.push(export.unwrap().name.to_string());
                }
            }
        }
        names
    };
    let entry = format!("{}add", abi::ENTRY_EXPORT_PREFIX);
    assert!(!exports(&plain).contains(&entry));
    assert!(exports(&with_entries).contains(&entry));
    let flags = AbiInfo::read(&std::fs::read(&with_entries).unwrap())
        .unwrap()
        .flags;
    assert_ne!(flags & abi::FLAG_ENTRY_POINTS, 0);
}

#[test]
fn the_thread_count_changes_nothing_in_the_output() {
    let dir = TempDir::new("threads");
    let program = fixture("bench/prog_medium.wasm");
    let one = dir.join("one.wasm");
    let two = dir.join("two.wasm");
    instrument_ok(&program, &one, &[Path::new("--threads"), Path::new("1")]);
    instrument_ok(&program, &two, &[Path::new("--threads"), Path::new("2")]);
    assert!(std::fs::read(&one).unwrap() == std::fs::read(&two).unwrap());

    for bad in ["0", "two", "-1"] {
        let output = dir.join("bad.wasm");
        let err = assert_fails(
            &dir,
            &[
                &program,
                Path::new("-o"),
                &output,
                Path::new("--threads"),
                Path::new(bad),
            ],
            &["one.wasm", "two.wasm"],
        );
        assert!(err.contains("--threads"), "{err}");
    }
}

#[test]
fn a_module_over_max_locals_is_refused_and_leaves_nothing() {
    let dir = TempDir::new("max-locals");
    // add.wat: one function of two parameters and no other locals.
    let program = fixture("add.wasm");
    let ok = dir.join("ok.wasm");
    instrument_ok(&program, &ok, &[Path::new("--max-locals"), Path::new("2")]);
    let output = dir.join("over.wasm");
    let err = assert_fails(
        &dir,
        &[
            &program,
            Path::new("-o"),
            &output,
            Path::new("--max-locals"),
            Path::new("1"),
        ],
        &["ok.wasm"],
    );
    assert!(err.contains("locals"), "{err}");
}

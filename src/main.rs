//! The `ri-sandbox` command: run a module in a sandbox from the shell.
//!
//! ```text
//! ri-sandbox run MODULE --invoke EXPORT [ARGS...] [--gas N] [--memory BYTES]
//!                [--timeout-ms N] [--seed N] [--timestamp N] [--json VALUE]
//!                [--restore SNAPSHOT] [--snapshot-out SNAPSHOT]
//!                [--cache-dir DIR] [--precompiled --key-file KEY]
//! ri-sandbox run --wasi MODULE [--invoke EXPORT] [--stdin FILE] [--env KEY=VALUE]...
//!                [--dir HOST[::GUEST]]... [--dir-rw HOST[::GUEST]]...
//!                [--max-output BYTES] [limits as above] [-- PROGRAM_ARGS...]
//! ri-sandbox precompile MODULE -o READY_FILE --key-file KEY
//! ```
//!
//! `--wasi` runs a program compiled for `wasm32-wasip1` under deterministic WASI
//! (`ri_sandbox::wasi`): without `--invoke` its `_start` runs with the arguments after `--`
//! (`argv[0]` is MODULE as given) and the stdin bytes of FILE (none without it), with the
//! directories `--dir` grants read-only and `--dir-rw` writable (none by default). Its stdout
//! and stderr go to the command's own, the summary (gas, memory, time) to stderr, and its
//! `proc_exit` code becomes the command's exit status. In this mode the limits default to
//! what whole programs need: 10^10 gas, 256 MiB of memory, 10 s, 64 MiB of output per stream.
//!
//! `--cache-dir` keeps instrumented and compiled modules in DIR, so the second run of a large
//! module starts at once. `precompile` writes a *ready file* (instrumented module and compiled
//! artifact, authenticated with HMAC-SHA256 under the key in KEY) that `run --precompiled`
//! loads without instrumenting or compiling.
//!
//! Prints the result, gas used, peak memory and time. Any error prints one line to stderr and
//! exits with status 1 (2 for a usage error). This file does I/O only.

use ri_sandbox::{Config, ModuleCache, Runtime, Sandbox, Snapshot, Value};
use std::process::ExitCode;

const USAGE: &str = "usage: ri-sandbox run MODULE.wasm|MODULE.wat --invoke EXPORT [ARGS...]
    [--gas N] [--memory BYTES] [--timeout-ms N] [--seed N] [--timestamp N] [--json VALUE]
    [--restore SNAPSHOT] [--snapshot-out SNAPSHOT] [--cache-dir DIR]
    [--precompiled --key-file KEY]
       ri-sandbox run --wasi MODULE [--invoke EXPORT] [--stdin FILE] [--env KEY=VALUE]...
    [--dir HOST[::GUEST]]... [--dir-rw HOST[::GUEST]]... [--max-output BYTES]
    [other run options] [-- PROGRAM_ARGS...]
       ri-sandbox precompile MODULE -o READY_FILE --key-file KEY";

/// `--wasi`'s defaults, for whole programs rather than single calls.
const WASI_GAS: u64 = 10_000_000_000;
const WASI_MEMORY: u64 = 256 << 20;
const WASI_TIMEOUT_MS: u64 = 10_000;
const WASI_MAX_OUTPUT: u64 = 64 << 20;

struct Run {
    module: String,
    export: String,
    args: Vec<String>,
    json: Option<String>,
    config: Config,
    restore: Option<String>,
    snapshot_out: Option<String>,
    cache_dir: Option<String>,
    precompiled: bool,
    key_file: Option<String>,
    /// `--wasi` (the program's arguments and environment are in `config.wasi`).
    wasi: bool,
    /// `--stdin FILE`.
    stdin: Option<String>,
}

/// What a run prints: the summary, and a WASI program's output and exit code.
struct Report {
    summary: String,
    wasi: Option<WasiReport>,
}

struct WasiReport {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit_code: i32,
}

enum Command {
    Run(Box<Run>),
    Precompile {
        module: String,
        output: String,
        key_file: String,
    },
}

enum Failure {
    Usage(String),
    Run(String),
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Result<T, Failure> {
    let value = value.ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
    value
        .parse()
        .map_err(|_| Failure::Usage(format!("{flag}: `{value}` is not a number")))
}

fn parse_precompile(mut args: impl Iterator<Item = String>) -> Result<Command, Failure> {
    let (mut module, mut output, mut key_file) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-o" => output = args.next(),
            "--key-file" => key_file = args.next(),
            flag if flag.starts_with('-') => {
                return Err(Failure::Usage(format!("unknown option `{flag}`\n{USAGE}")))
            }
            _ => module = Some(arg),
        }
    }
    match (module, output, key_file) {
        (Some(module), Some(output), Some(key_file)) => Ok(Command::Precompile {
            module,
            output,
            key_file,
        }),
        _ => Err(Failure::Usage(format!(
            "precompile needs MODULE, -o READY_FILE and --key-file KEY\n{USAGE}"
        ))),
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Command, Failure> {
    match args.next().as_deref() {
        Some("run") => {}
        Some("precompile") => return parse_precompile(args),
        Some("-h") | Some("--help") | None => return Err(Failure::Usage(USAGE.into())),
        Some(other) => {
            return Err(Failure::Usage(format!(
                "unknown command `{other}`\n{USAGE}"
            )))
        }
    }
    let mut module = None;
    let mut export = None;
    let mut rest = Vec::new();
    let mut json = None;
    let mut config = Config::default();
    let mut restore = None;
    let mut snapshot_out = None;
    let mut cache_dir = None;
    let mut precompiled = false;
    let mut key_file = None;
    let mut wasi = false;
    let mut wasi_config = ri_sandbox::WasiConfig::default().with_max_output_bytes(WASI_MAX_OUTPUT);
    let mut program_args = Vec::new();
    let mut stdin = None;
    let (mut gas, mut memory, mut timeout) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--wasi" => wasi = true,
            "--" => program_args.extend(args.by_ref()),
            "--stdin" => {
                stdin = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--stdin needs a file".into()))?,
                )
            }
            "--env" => {
                let pair = args
                    .next()
                    .ok_or_else(|| Failure::Usage("--env needs KEY=VALUE".into()))?;
                let (key, value) = pair
                    .split_once('=')
                    .ok_or_else(|| Failure::Usage(format!("--env: `{pair}` is not KEY=VALUE")))?;
                wasi_config = wasi_config.with_env(key, value);
            }
            flag @ ("--dir" | "--dir-rw") => {
                let spec = args
                    .next()
                    .ok_or_else(|| Failure::Usage(format!("{flag} needs HOST[::GUEST]")))?;
                let (host, guest) = match spec.split_once("::") {
                    Some((host, guest)) => (host.to_string(), guest.to_string()),
                    None => (spec.clone(), spec.clone()),
                };
                wasi_config = wasi_config.with_dir(host, guest, flag == "--dir-rw");
            }
            "--max-output" => {
                wasi_config.max_output_bytes = number("--max-output", args.next())?;
            }
            "--invoke" => {
                export = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--invoke needs an export name".into()))?,
                )
            }
            "--gas" => gas = Some(number("--gas", args.next())?),
            "--memory" => memory = Some(number("--memory", args.next())?),
            "--timeout-ms" => timeout = Some(number("--timeout-ms", args.next())?),
            "--seed" => config.seed = number("--seed", args.next())?,
            "--timestamp" => config.event_timestamp = number("--timestamp", args.next())?,
            "--json" => {
                json = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--json needs a value".into()))?,
                )
            }
            "--restore" => {
                restore = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--restore needs a file".into()))?,
                )
            }
            "--snapshot-out" => {
                snapshot_out = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--snapshot-out needs a file".into()))?,
                )
            }
            "--cache-dir" => {
                cache_dir = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--cache-dir needs a directory".into()))?,
                )
            }
            "--precompiled" => precompiled = true,
            "--key-file" => {
                key_file = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--key-file needs a file".into()))?,
                )
            }
            flag if flag.starts_with("--") => {
                return Err(Failure::Usage(format!("unknown option `{flag}`\n{USAGE}")))
            }
            _ if module.is_none() => module = Some(arg),
            _ => rest.push(arg),
        }
    }
    if precompiled && key_file.is_none() {
        return Err(Failure::Usage("--precompiled needs --key-file KEY".into()));
    }
    let module = module.ok_or_else(|| Failure::Usage(format!("no module given\n{USAGE}")))?;
    config.max_gas = gas.unwrap_or(if wasi { WASI_GAS } else { config.max_gas });
    config.max_memory_bytes = memory.unwrap_or(if wasi {
        WASI_MEMORY
    } else {
        config.max_memory_bytes
    });
    config.max_execution_ms = timeout.unwrap_or(if wasi {
        WASI_TIMEOUT_MS
    } else {
        config.max_execution_ms
    });
    if wasi {
        wasi_config.args = std::iter::once(module.clone())
            .chain(program_args)
            .collect();
        config.wasi = Some(wasi_config);
    } else if !program_args.is_empty() || stdin.is_some() {
        return Err(Failure::Usage(
            "program arguments and --stdin need --wasi".into(),
        ));
    }
    let export = match export {
        Some(export) => export,
        None if wasi => "_start".to_string(),
        None => return Err(Failure::Usage(format!("no --invoke EXPORT\n{USAGE}"))),
    };
    Ok(Command::Run(Box::new(Run {
        module,
        export,
        args: rest,
        json,
        config,
        restore,
        snapshot_out,
        cache_dir,
        precompiled,
        key_file,
        wasi,
        stdin,
    })))
}

fn read(path: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Run(format!("cannot read {path}: {e}")))
}

fn precompile(module: &str, output: &str, key_file: &str) -> Result<String, Failure> {
    let fail = |e: ri_sandbox::Error| Failure::Run(e.to_string());
    let key = read(key_file)?;
    let runtime = Runtime::new().map_err(fail)?;
    let ready = runtime
        .precompile(&read(module)?, &Config::default(), &key)
        .map_err(fail)?;
    write_atomically(output, &ready)?;
    Ok(format!(
        "precompiled {module} -> {output}: {} bytes",
        ready.len()
    ))
}

fn run(mut run: Run) -> Result<Report, Failure> {
    let fail = |e: ri_sandbox::Error| Failure::Run(e.to_string());
    if let (Some(path), Some(wasi)) = (&run.stdin, run.config.wasi.as_mut()) {
        wasi.stdin = read(path)?.into();
    }
    let bytes = std::fs::read(&run.module)
        .map_err(|e| Failure::Run(format!("cannot read {}: {e}", run.module)))?;
    let runtime = Runtime::new().map_err(fail)?;
    let loading = std::time::Instant::now();
    let compiled = if run.precompiled {
        let key = read(run.key_file.as_deref().unwrap_or_default())?;
        runtime
            .load_precompiled(&bytes, &run.config, &key)
            .map_err(fail)?
    } else if let Some(dir) = &run.cache_dir {
        let cache = ModuleCache::on_disk(dir, 1 << 30, 16).map_err(fail)?;
        runtime
            .compile_cached(&bytes, &run.config, &cache)
            .map_err(fail)?
    } else {
        runtime.compile(&bytes, &run.config).map_err(fail)?
    };
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let mut sandbox = Sandbox::new(&runtime, run.config).map_err(fail)?;
    let loaded = sandbox.load_compiled(&compiled);
    if run.wasi {
        if let Err(e) = loaded {
            return Err(wasi_failure(&mut sandbox, e));
        }
    } else {
        loaded.map_err(fail)?;
    }
    if let Some(path) = &run.restore {
        let saved =
            std::fs::read(path).map_err(|e| Failure::Run(format!("cannot read {path}: {e}")))?;
        let snapshot = Snapshot::from_bytes(&saved).map_err(fail)?;
        sandbox.restore(&snapshot).map_err(fail)?;
    }
    if run.wasi && run.export == "_start" && run.json.is_none() && run.args.is_empty() {
        let outcome = match sandbox.run_command() {
            Ok(outcome) => outcome,
            Err(e) => return Err(wasi_failure(&mut sandbox, e)),
        };
        let saved = save_snapshot(&mut sandbox, run.snapshot_out.as_deref())?;
        let m = outcome.metrics;
        return Ok(Report {
            summary: format!(
                "exit code: {}\ngas used: {} of {}\npeak memory: {} bytes (limit {})\ntime: {:.3} ms (load {load_ms:.1} ms){saved}",
                outcome.exit_code,
                m.gas_used,
                m.gas_limit,
                m.peak_memory_bytes,
                m.memory_limit_bytes,
                m.wall_time.as_secs_f64() * 1e3
            ),
            wasi: Some(WasiReport {
                stdout: sandbox.take_stdout(),
                stderr: sandbox.take_stderr(),
                exit_code: outcome.exit_code,
            }),
        });
    }
    let execution = match &run.json {
        Some(text) => {
            let payload: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| Failure::Usage(format!("--json: not JSON: {e}")))?;
            sandbox.call_json(&run.export, &payload).map_err(fail)?
        }
        None => {
            let (params, _) = sandbox.export_signature(&run.export).ok_or_else(|| {
                Failure::Run(format!("the module exports no function `{}`", run.export))
            })?;
            if params.len() != run.args.len() {
                return Err(Failure::Usage(format!(
                    "`{}` takes {} argument(s) ({}), got {}",
                    run.export,
                    params.len(),
                    params.join(", "),
                    run.args.len()
                )));
            }
            let args = params
                .iter()
                .zip(&run.args)
                .map(|(ty, text)| {
                    Value::parse(ty, text).ok_or_else(|| {
                        Failure::Usage(format!("argument `{text}` is not a valid {ty}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            sandbox.call(&run.export, &args).map_err(fail)?
        }
    };
    let result = match execution.json() {
        Some(value) => value.to_string(),
        None => execution
            .values()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    };
    let saved = save_snapshot(&mut sandbox, run.snapshot_out.as_deref())?;
    let m = execution.metrics;
    let summary = format!(
        "result: {result}\ngas used: {} of {}\npeak memory: {} bytes (limit {})\ntime: {:.3} ms (load {load_ms:.1} ms){saved}",
        m.gas_used,
        m.gas_limit,
        m.peak_memory_bytes,
        m.memory_limit_bytes,
        m.wall_time.as_secs_f64() * 1e3
    );
    let wasi = run.wasi.then(|| WasiReport {
        stdout: sandbox.take_stdout(),
        stderr: sandbox.take_stderr(),
        exit_code: 0,
    });
    Ok(Report { summary, wasi })
}

/// Writes a snapshot of `sandbox` to `path`, when asked, through a temporary file.
fn save_snapshot(sandbox: &mut Sandbox, path: Option<&str>) -> Result<String, Failure> {
    let Some(path) = path else {
        return Ok(String::new());
    };
    let bytes = sandbox
        .snapshot()
        .map_err(|e| Failure::Run(e.to_string()))?
        .to_bytes();
    write_atomically(path, &bytes)?;
    Ok(format!("\nsnapshot: {} bytes to {path}", bytes.len()))
}

/// Writes `bytes` to `path` through a temporary file renamed into place, so a failure leaves
/// nothing half written.
fn write_atomically(path: &str, bytes: &[u8]) -> Result<(), Failure> {
    let temp = format!("{path}.tmp");
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Failure::Run(format!("cannot write {path}: {e}"))
        })
}

/// A WASI program that failed still shows what it wrote before the failure.
fn wasi_failure(sandbox: &mut Sandbox, error: ri_sandbox::Error) -> Failure {
    use std::io::Write;
    let _ = std::io::stdout().write_all(&sandbox.take_stdout());
    let _ = std::io::stderr().write_all(&sandbox.take_stderr());
    Failure::Run(error.to_string())
}

fn main() -> ExitCode {
    let outcome = parse(std::env::args().skip(1)).and_then(|command| match command {
        Command::Run(r) => run(*r),
        Command::Precompile {
            module,
            output,
            key_file,
        } => precompile(&module, &output, &key_file).map(|summary| Report {
            summary,
            wasi: None,
        }),
    });
    match outcome {
        Ok(Report {
            summary,
            wasi: Some(wasi),
        }) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&wasi.stdout);
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().write_all(&wasi.stderr);
            eprintln!("{summary}");
            // A code outside 0..=255 is reported modulo 256, as a shell would see it.
            ExitCode::from(wasi.exit_code as u8)
        }
        Ok(Report {
            summary,
            wasi: None,
        }) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("ri-sandbox: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("ri-sandbox: error: {message}");
            ExitCode::FAILURE
        }
    }
}

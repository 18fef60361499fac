//! The `ri-sandbox` command: run a module in a sandbox from the shell.
//!
//! ```text
//! ri-sandbox run MODULE --invoke EXPORT [ARGS...] [--gas N] [--memory BYTES]
//!                [--timeout-ms N] [--seed N] [--timestamp N] [--json VALUE]
//!                [--restore SNAPSHOT] [--snapshot-out SNAPSHOT]
//!                [--cache-dir DIR] [--precompiled --key-file KEY]
//! ri-sandbox precompile MODULE -o READY_FILE --key-file KEY
//! ```
//!
//! `--cache-dir` keeps instrumented and compiled modules in DIR, so the second run of a large
//! module starts at once. `precompile` writes a *ready file* (instrumented module and compiled
//! artifact, authenticated with HMAC-SHA256 under the key in KEY) that `run --precompiled`
//! loads without instrumenting or compiling.
//!
//! ```text
//! ```
//!
//! Prints the result, gas used, peak memory and time. Any error prints one line to stderr and
//! exits with status 1 (2 for a usage error). This file does I/O only.

use ri_sandbox::{Config, ModuleCache, Runtime, Sandbox, Snapshot, Value};
use std::process::ExitCode;

const USAGE: &str = "usage: ri-sandbox run MODULE.wasm|MODULE.wat --invoke EXPORT [ARGS...]
    [--gas N] [--memory BYTES] [--timeout-ms N] [--seed N] [--timestamp N] [--json VALUE]
    [--restore SNAPSHOT] [--snapshot-out SNAPSHOT] [--cache-dir DIR]
    [--precompiled --key-file KEY]
       ri-sandbox precompile MODULE -o READY_FILE --key-file KEY";

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
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--invoke" => {
                export = Some(
                    args.next()
                        .ok_or_else(|| Failure::Usage("--invoke needs an export name".into()))?,
                )
            }
            "--gas" => config.max_gas = number("--gas", args.next())?,
            "--memory" => config.max_memory_bytes = number("--memory", args.next())?,
            "--timeout-ms" => config.max_execution_ms = number("--timeout-ms", args.next())?,
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
    Ok(Command::Run(Box::new(Run {
        module: module.ok_or_else(|| Failure::Usage(format!("no module given\n{USAGE}")))?,
        export: export.ok_or_else(|| Failure::Usage(format!("no --invoke EXPORT\n{USAGE}")))?,
        args: rest,
        json,
        config,
        restore,
        snapshot_out,
        cache_dir,
        precompiled,
        key_file,
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
    let temp = format!("{output}.tmp");
    std::fs::write(&temp, &ready)
        .and_then(|()| std::fs::rename(&temp, output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            Failure::Run(format!("cannot write {output}: {e}"))
        })?;
    Ok(format!(
        "precompiled {module} -> {output}: {} bytes",
        ready.len()
    ))
}

fn run(run: Run) -> Result<String, Failure> {
    let fail = |e: ri_sandbox::Error| Failure::Run(e.to_string());
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
    sandbox.load_compiled(&compiled).map_err(fail)?;
    if let Some(path) = &run.restore {
        let saved =
            std::fs::read(path).map_err(|e| Failure::Run(format!("cannot read {path}: {e}")))?;
        let snapshot = Snapshot::from_bytes(&saved).map_err(fail)?;
        sandbox.restore(&snapshot).map_err(fail)?;
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
    let mut saved = String::new();
    if let Some(path) = &run.snapshot_out {
        let bytes = sandbox.snapshot().map_err(fail)?.to_bytes();
        let temp = format!("{path}.tmp");
        std::fs::write(&temp, &bytes)
            .and_then(|()| std::fs::rename(&temp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&temp);
                Failure::Run(format!("cannot write {path}: {e}"))
            })?;
        saved = format!("\nsnapshot: {} bytes to {path}", bytes.len());
    }
    let m = execution.metrics;
    Ok(format!(
        "result: {result}\ngas used: {} of {}\npeak memory: {} bytes (limit {})\ntime: {:.3} ms (load {load_ms:.1} ms){saved}",
        m.gas_used,
        m.gas_limit,
        m.peak_memory_bytes,
        m.memory_limit_bytes,
        m.wall_time.as_secs_f64() * 1e3
    ))
}

fn main() -> ExitCode {
    let outcome = parse(std::env::args().skip(1)).and_then(|command| match command {
        Command::Run(r) => run(*r),
        Command::Precompile {
            module,
            output,
            key_file,
        } => precompile(&module, &output, &key_file),
    });
    match outcome {
        Ok(report) => {
            println!("{report}");
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

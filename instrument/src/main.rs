//! The `instrument` command: meter a module ahead of time.
//!
//! ```text
//! instrument IN.wasm -o OUT.wasm [--costs COSTS.toml|COSTS.json] [--entry-points] [--threads N]
//! ```
//!
//! `--entry-points` adds the ABI's entry points (section 11), which need multi-value.
//! `--threads N` caps the threads that plan and write function bodies (default: one per core;
//! the output is the same for every N).
//!
//! Prints a one-line summary. On any error it prints one line to stderr, exits with status 1
//! and leaves no output file behind. This file does I/O only; the work is in the library.

use ri_sandbox_instrument::{instrument, CostModel, Options};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: instrument IN.wasm|IN.wat -o OUT.wasm [--costs FILE.toml|FILE.json] \
                     [--entry-points] [--threads N] [--max-locals N]";

struct Args {
    input: PathBuf,
    output: PathBuf,
    costs: Option<PathBuf>,
    entry_points: bool,
    threads: Option<NonZeroUsize>,
    max_locals: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut input = None;
    let mut output = None;
    let mut costs = None;
    let mut entry_points = false;
    let mut threads = None;
    let mut max_locals = None;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-o") | Some("--output") => {
                output = Some(PathBuf::from(args.next().ok_or("-o needs a file name")?))
            }
            Some("--costs") => {
                costs = Some(PathBuf::from(
                    args.next().ok_or("--costs needs a file name")?,
                ))
            }
            Some("--entry-points") => entry_points = true,
            Some("--threads") => threads = Some(number(args.next(), "--threads", "from 1 up")?),
            Some("--max-locals") => max_locals = Some(number(args.next(), "--max-locals", "")?),
            Some("-h") | Some("--help") => return Err(USAGE.to_string()),
            Some(flag) if flag.starts_with('-') && flag.len() > 1 => {
                return Err(format!("unknown option `{flag}`\n{USAGE}"))
            }
            _ if input.is_none() => input = Some(PathBuf::from(arg)),
            _ => return Err(format!("more than one input file\n{USAGE}")),
        }
    }
    Ok(Args {
        input: input.ok_or(USAGE)?,
        output: output.ok_or(format!("no output file (-o)\n{USAGE}"))?,
        costs,
        entry_points,
        threads,
        max_locals,
    })
}

/// The number after `flag` (`what` says which numbers it takes, when not all).
fn number<T: std::str::FromStr>(
    arg: Option<std::ffi::OsString>,
    flag: &str,
    what: &str,
) -> Result<T, String> {
    let what = if what.is_empty() {
        String::new()
    } else {
        format!(" {what}")
    };
    let arg = arg.ok_or(format!("{flag} needs a number{what}"))?;
    arg.to_str()
        .and_then(|n| n.parse().ok())
        .ok_or(format!("{flag} needs a number{what}, not {arg:?}"))
}

fn read_costs(path: &Path) -> Result<CostModel, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let model = if path.extension().is_some_and(|e| e == "json") {
        CostModel::from_json(&text)
    } else {
        CostModel::from_toml(&text)
    };
    model.map_err(|e| format!("{}: {e}", path.display()))
}

/// A text-format error on one line: the message and its `line:column`.
fn one_line(message: &str) -> String {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default().trim();
    let location = lines
        .find_map(|l| l.trim().strip_prefix("--> "))
        .and_then(|l| l.rsplit_once(':').map(|_| l))
        .map(|l| l.trim_start_matches("<anon>:"));
    match location {
        Some(at) => format!("{first} (text format, line:column {at})"),
        None => first.to_string(),
    }
}

fn run() -> Result<String, String> {
    let args = parse_args()?;
    let mut options = match &args.costs {
        Some(path) => Options::with_costs(read_costs(path)?),
        None => Options::default(),
    };
    options.entry_points = args.entry_points;
    options.threads = args.threads;
    options.max_locals = args.max_locals;
    let bytes = std::fs::read(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let is_text = !bytes.starts_with(b"\0asm") && std::str::from_utf8(&bytes).is_ok();
    let wasm = if is_text {
        wat::parse_bytes(&bytes)
            .map_err(|e| format!("{}: {}", args.input.display(), one_line(&e.to_string())))?
            .into_owned()
    } else {
        bytes
    };
    let started = Instant::now();
    let out = instrument(&wasm, &options).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let elapsed = started.elapsed();

    // Write beside the destination, then rename: a failed write leaves nothing behind.
    let mut temp = args.output.clone().into_os_string();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    std::fs::write(&temp, &out.module)
        .and_then(|()| std::fs::rename(&temp, &args.output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            format!("cannot write {}: {e}", args.output.display())
        })?;

    let s = out.stats;
    let growth = 100.0 * (s.bytes_out as f64 - s.bytes_in as f64) / s.bytes_in.max(1) as f64;
    Ok(format!(
        "instrumented {} -> {}: {} function{}, {} blocks metered, {} -> {} bytes ({growth:+.1}%), {:.2} ms",
        args.input.display(),
        args.output.display(),
        s.functions,
        if s.functions == 1 { "" } else { "s" },
        s.blocks_metered,
        s.bytes_in,
        s.bytes_out,
        elapsed.as_secs_f64() * 1e3,
    ))
}

fn main() -> ExitCode {
    match run() {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("instrument: error: {message}");
            ExitCode::FAILURE
        }
    }
}

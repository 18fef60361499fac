//! Exact gas, as data. Every `fixtures/gas/*.wast` file is a list of forms:
//!
//! - `(module ...)`: the module the following directives call, instrumented with the default
//!   cost model;
//! - `(assert_gas N (invoke "f" ARG*) RESULT*)`: the call returns RESULT* and uses exactly N;
//! - `(assert_gas_trap N (invoke "f" ARG*))`: the call traps on its own and uses exactly N;
//! - `(assert_stack_limit N (invoke "f" ARG*))`: the call stops at the deterministic stack
//!   limit, having used exactly N;
//! - `(assert_out_of_gas BUDGET (invoke "f" ARG*))`: with BUDGET, the call runs out of gas;
//! - `(assert_rejected "MESSAGE" (module ...))`: the instrumenter refuses the module.
//!
//! Each directive runs on wasmtime and on wasmi; both must give the stated outcome and the
//! same gas. A mismatch is reported as `file:line`.

use crate::engines::{self, Call, Instance, Outcome, Value};
use crate::sexpr::{parse_forms, Sexpr};
use ri_sandbox::instrument::{instrument, Options};
use std::path::{Path, PathBuf};

const LARGE_BUDGET: i64 = 1 << 40;

pub fn wast_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wast"))
        .collect();
    files.sort();
    files
}

struct Invoke {
    name: String,
    args: Vec<Value>,
}

fn invoke(expr: &Sexpr) -> Result<Invoke, String> {
    if expr.head() != Some("invoke") {
        return Err(format!("expected (invoke ...), found {expr:?}"));
    }
    let items = expr.items();
    let Some(Sexpr::Str(name)) = items.get(1) else {
        return Err("invoke needs an export name".into());
    };
    let args = items[2..]
        .iter()
        .map(Sexpr::value)
        .collect::<Result<_, _>>()?;
    Ok(Invoke {
        name: name.clone(),
        args,
    })
}

fn number(expr: Option<&Sexpr>) -> Result<i64, String> {
    let text = expr.and_then(Sexpr::atom).ok_or("expected a number")?;
    text.replace('_', "")
        .parse()
        .map_err(|e| format!("bad number `{text}`: {e}"))
}

/// Runs one call on both engines and checks they agree exactly.
fn both(
    instances: &mut [(&'static str, Box<dyn Instance>)],
    call: &Invoke,
    budget: i64,
) -> Result<Call, String> {
    let mut first: Option<(&str, Call)> = None;
    for (engine, instance) in instances.iter_mut() {
        let result = instance
            .call(&call.name, &call.args, budget)
            .map_err(|e| format!("{engine}: {e}"))?;
        match &first {
            None => first = Some((engine, result)),
            Some((other, expected)) if *expected != result => {
                return Err(format!(
                    "engines disagree: {other} gave {expected:?}, {engine} gave {result:?}"
                ))
            }
            Some(_) => {}
        }
    }
    first
        .map(|(_, call)| call)
        .ok_or_else(|| "no module to call".to_string())
}

fn run_file(path: &Path) -> Vec<String> {
    let source = std::fs::read_to_string(path).unwrap();
    let forms = match parse_forms(&source) {
        Ok(forms) => forms,
        Err(e) => return vec![format!("{}: {e}", path.display())],
    };
    let wasmtime = engines::wasmtime_engine();
    let wasmi = engines::wasmi_engine();
    let mut instances: Vec<(&'static str, Box<dyn Instance>)> = Vec::new();
    let mut failures = Vec::new();
    let mut directives = 0;
    let mut wasmtime_only = 0;
    for form in forms {
        let at = format!("{}:{}", path.display(), form.line);
        let result = (|| -> Result<(), String> {
            let items = form.expr.items();
            match form.expr.head() {
                Some("module") => {
                    let wasm = wat::parse_str(&form.text).map_err(|e| e.to_string())?;
                    let out = instrument(&wasm, &Options::default()).map_err(|e| e.to_string())?;
                    instances = vec![(
                        "wasmtime",
                        Box::new(engines::Wasmtime::new(&wasmtime, &out.module)?),
                    )];
                    match engines::Wasmi::new(&wasmi, &out.module) {
                        Ok(instance) => instances.push(("wasmi", Box::new(instance))),
                        // wasmi 2 does not implement exception handling: such fixtures run
                        // on wasmtime alone.
                        Err(_) if form.text.contains("try_table") => wasmtime_only += 1,
                        Err(e) => return Err(format!("wasmi: {e}")),
                    }
                    Ok(())
                }
                Some("assert_rejected") => {
                    directives += 1;
                    let Some(Sexpr::Str(expected)) = items.get(1) else {
                        return Err("assert_rejected needs a message".into());
                    };
                    let module = items.get(2).ok_or("assert_rejected needs a module")?;
                    if module.head() != Some("module") {
                        return Err("assert_rejected needs a (module ...)".into());
                    }
                    // The module's text is the form's text from its `(module` on.
                    let start = form.text.find("(module").ok_or("no module text")?;
                    let end = form.text.rfind(')').unwrap_or(form.text.len());
                    let wasm = wat::parse_str(&form.text[start..end]).map_err(|e| e.to_string())?;
                    match instrument(&wasm, &Options::default()) {
                        Ok(_) => Err("instrumented a module that must be refused".into()),
                        Err(e) if e.to_string().contains(expected.as_str()) => Ok(()),
                        Err(e) => Err(format!("refused, but not with \"{expected}\": {e}")),
                    }
                }
                Some("assert_gas") => {
                    directives += 1;
                    let gas = number(items.get(1))?;
                    let call = invoke(items.get(2).ok_or("missing invoke")?)?;
                    let expected: Vec<Value> = items[3..]
                        .iter()
                        .map(Sexpr::value)
                        .collect::<Result<_, _>>()?;
                    let got = both(&mut instances, &call, LARGE_BUDGET)?;
                    let used = LARGE_BUDGET - got.gas_left;
                    if got.outcome != Outcome::Returned(expected.clone()) || used != gas {
                        return Err(format!(
                            "expected {expected:?} using {gas} gas, got {:?} using {used}",
                            got.outcome
                        ));
                    }
                    Ok(())
                }
                Some("assert_gas_trap") => {
                    directives += 1;
                    let gas = number(items.get(1))?;
                    let call = invoke(items.get(2).ok_or("missing invoke")?)?;
                    let got = both(&mut instances, &call, LARGE_BUDGET)?;
                    let used = LARGE_BUDGET - got.gas_left;
                    if got.outcome != Outcome::Trapped || used != gas {
                        return Err(format!(
                            "expected a trap using {gas} gas, got {:?} using {used}",
                            got.outcome
                        ));
                    }
                    Ok(())
                }
                Some("assert_stack_limit") => {
                    directives += 1;
                    let gas = number(items.get(1))?;
                    let call = invoke(items.get(2).ok_or("missing invoke")?)?;
                    let got = both(&mut instances, &call, LARGE_BUDGET)?;
                    let used = LARGE_BUDGET - got.gas_left;
                    if got.outcome != Outcome::StackLimit || used != gas {
                        return Err(format!(
                            "expected the stack limit using {gas} gas, got {:?} using {used}",
                            got.outcome
                        ));
                    }
                    Ok(())
                }
                Some("assert_out_of_gas") => {
                    directives += 1;
                    let budget = number(items.get(1))?;
                    let call = invoke(items.get(2).ok_or("missing invoke")?)?;
                    let got = both(&mut instances, &call, budget)?;
                    if got.outcome != Outcome::OutOfGas || got.gas_left != -1 {
                        return Err(format!(
                            "expected out of gas with budget {budget}, got {got:?}"
                        ));
                    }
                    Ok(())
                }
                other => Err(format!("unknown directive {other:?}")),
            }
        })();
        if let Err(e) = result {
            failures.push(format!("{at}: {e}"));
        }
    }
    if directives == 0 {
        failures.push(format!("{}: no directives", path.display()));
    }
    if wasmtime_only > 0 {
        eprintln!(
            "{}: {wasmtime_only} module(s) ran on wasmtime only (exception handling)",
            path.display()
        );
    }
    failures
}

/// `fixtures/hostile/`: one attack per file, each with its expected outcome as data. A real
/// escape shows up as a watchdog outcome (or a wrong gas figure) and fails the test quickly.
#[test]
fn hostile_fixtures_are_contained_on_wasmtime_and_wasmi() {
    let files = wast_files("fixtures/hostile");
    assert!(
        files.len() >= 10,
        "expected the hostile corpus, found {files:?}"
    );
    let failures: Vec<String> = files.iter().flat_map(|f| run_file(f)).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn gas_fixtures_exact_on_wasmtime_and_wasmi() {
    let files = wast_files("fixtures/gas");
    assert!(!files.is_empty(), "no fixtures/gas/*.wast");
    let failures: Vec<String> = files.iter().flat_map(|f| run_file(f)).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// Functions whose call chains are bounded skip stack accounting (ABI section 4), but only up
/// to `LEAF_FRAME_LIMIT` units of chain: a long chain of distinct, non-recursive functions is
/// still stopped by the limit, at the same call on both engines. (Without accounting these
/// frames, whose locals Cranelift never spills, would fit the native stack and return.)
#[test]
fn deep_non_recursive_chains_hit_the_stack_limit() {
    // Each frame weighs 64 + 8 * (1 parameter + 80 locals) + 8 * 2 operand slots = 728
    // units, so 400 of them (291,200) exceed the default limit (262,144) and 300 fit.
    const FUNCTIONS: usize = 400;
    let locals = vec!["i64"; 80].join(" ");
    let mut wat = String::from("(module\n");
    for i in 0..FUNCTIONS {
        let body = if i + 1 < FUNCTIONS {
            format!("local.get 0 i32.const 1 i32.add call $f{}", i + 1)
        } else {
            "local.get 0".to_string()
        };
        wat.push_str(&format!(
            "  (func $f{i} (param i32) (result i32) (local {locals}) {body})\n"
        ));
    }
    wat.push_str("  (export \"deep\" (func $f0))\n  (export \"shallow\" (func $f100)))\n");
    let wasm = wat::parse_str(&wat).unwrap();
    let out = instrument(&wasm, &Options::default()).unwrap();
    let (wasmtime, wasmi) = (engines::wasmtime_engine(), engines::wasmi_engine());
    let mut instances: Vec<(&'static str, Box<dyn Instance>)> = vec![
        (
            "wasmtime",
            Box::new(engines::Wasmtime::new(&wasmtime, &out.module).unwrap()),
        ),
        (
            "wasmi",
            Box::new(engines::Wasmi::new(&wasmi, &out.module).unwrap()),
        ),
    ];
    let invoke = |name: &str| Invoke {
        name: name.to_string(),
        args: vec![Value::I32(0)],
    };
    let deep = both(&mut instances, &invoke("deep"), LARGE_BUDGET).unwrap();
    assert_eq!(deep.outcome, Outcome::StackLimit, "{deep:?}");
    let shallow = both(&mut instances, &invoke("shallow"), LARGE_BUDGET).unwrap();
    assert_eq!(
        shallow.outcome,
        Outcome::Returned(vec![Value::I32(299)]),
        "{shallow:?}"
    );
}

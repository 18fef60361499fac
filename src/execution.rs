//! Calls into a sandbox: direct mode (typed numeric arguments and results) and JSON mode, each
//! under the gas budget, the stack limit, the memory limit and the wall-clock limit, and the
//! translation of whatever stopped a call into one [`ErrorKind`].
//!
//! # JSON mode
//! The guest exports `memory`, `__alloc(len: i32) -> i32` and the function to call, with the
//! signature `(ptr: i32, len: i32) -> i64`. The host encodes the payload as UTF-8 JSON, asks
//! `__alloc` for `len` bytes, writes the JSON there and calls the function with `(ptr, len)`.
//! The function returns where its JSON result is, packed as `(ptr << 32) | len`; the host
//! reads and parses it. `__alloc` and the call share one gas budget.

use crate::entry::{EntryParams, EntryResults};
use crate::error::{Error, ErrorKind, TrapCode};
use crate::host::{HostFailure, HostOutOfGas};
use crate::limits::MemoryLimitHit;
use crate::metrics::CallMetrics;
use crate::sandbox::{no_store, CachedExport, Sandbox, Status};
use crate::value::Value;
use std::time::{Duration, Instant};
use wasmtime::{Func, Val, ValRaw};

/// What a call returned.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Direct mode: the export's results.
    Values(Vec<Value>),
    /// JSON mode: the parsed result.
    Json(serde_json::Value),
}

/// A successful call: its output and what it used.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Execution {
    /// What the call returned.
    pub output: Output,
    /// What it used.
    pub metrics: CallMetrics,
}

impl Execution {
    /// The results of a direct-mode call (empty for a JSON-mode call).
    pub fn values(&self) -> &[Value] {
        match &self.output {
            Output::Values(values) => values,
            Output::Json(_) => &[],
        }
    }

    /// The result of a JSON-mode call.
    pub fn json(&self) -> Option<&serde_json::Value> {
        match &self.output {
            Output::Json(value) => Some(value),
            Output::Values(_) => None,
        }
    }
}

/// A function export with a fixed signature, looked up once: the fast path for hot calls. It
/// skips the name lookup, the type check and the value conversions of [`Sandbox::call`], and
/// runs under the same limits with the same metrics.
///
/// It belongs to the sandbox (and the instance) it was made from: after that sandbox is
/// restored into a new instance, destroyed, or given another module, `call` refuses it with
/// [`ErrorKind::Config`].
pub struct TypedExport<Params: EntryParams, Results: EntryResults> {
    func: wasmtime::TypedFunc<Params, Results>,
    /// The export's entry point (ABI section 11), when the module has one: the budget goes
    /// in and the gas left comes out with the results, so no global is touched.
    entry: Option<wasmtime::TypedFunc<Params::WithBudget, Results::WithGas>>,
    store_token: u64,
}

impl<Params: EntryParams, Results: EntryResults> std::fmt::Debug for TypedExport<Params, Results> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedExport").finish_non_exhaustive()
    }
}

impl<Params: EntryParams, Results: EntryResults> TypedExport<Params, Results> {
    /// Calls the export under the sandbox's limits and returns its results. The call's
    /// metrics (gas used, memory, time) are recorded as for any call:
    /// [`Sandbox::last_call`] has them, [`Sandbox::metrics`] the totals. (Returning them too
    /// would copy them on every call, which measurably slows the hot path this is for.)
    ///
    /// # Errors
    /// As [`Sandbox::call`]; [`ErrorKind::Config`] when `sandbox` is not the one (or no longer
    /// the instance) this handle was made from.
    pub fn call(&self, sandbox: &mut Sandbox, params: Params) -> Result<Results, Error> {
        if sandbox.status != Status::Loaded {
            sandbox.expect_status(Status::Loaded, "call")?;
        }
        if sandbox.store_token != self.store_token {
            return Err(Error::new(ErrorKind::Config {
                reason: "this typed export belongs to another sandbox or instance".into(),
            }));
        }
        let mut out = None;
        match &self.entry {
            Some(entry) => sandbox.run_core(false, |s, budget| {
                let (results, gas_left) = Results::split(entry.call(
                    s.store.as_mut().ok_or_else(no_store)?,
                    params.with_budget(budget),
                )?);
                out = Some(results);
                Ok(Some(gas_left))
            })?,
            None => sandbox.run_with(|s| {
                out = Some(
                    self.func
                        .call(s.store.as_mut().ok_or_else(no_store)?, params)?,
                );
                Ok(())
            })?,
        };
        match out {
            Some(results) => Ok(results),
            None => Err(Error::engine("the call returned no results")),
        }
    }
}

/// What to pass to [`Manager::execute`](crate::Manager::execute).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Payload {
    /// Direct mode: numeric arguments.
    Args(Vec<Value>),
    /// JSON mode.
    Json(serde_json::Value),
}

impl Sandbox {
    /// Calls an export with numeric arguments under the sandbox's limits.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownExport`], [`ErrorKind::ArgumentMismatch`], a wrong status, or what
    /// stopped the call: [`ErrorKind::GasExhausted`], [`ErrorKind::StackLimit`],
    /// [`ErrorKind::MemoryExceeded`], [`ErrorKind::Timeout`], [`ErrorKind::Trap`],
    /// [`ErrorKind::HostFunction`]. After any of them the sandbox is loaded again and usable.
    pub fn call(&mut self, export: &str, args: &[Value]) -> Result<Execution, Error> {
        self.expect_status(Status::Loaded, "call")?;
        let (cached, info) = self.cached_export(export)?;
        let (func, entry) = (cached.func, cached.entry);
        let matches = info.params.len() == args.len()
            && info.params.iter().zip(args).all(|(t, v)| v.has_type(t));
        if !matches {
            return Err(Error::new(ErrorKind::ArgumentMismatch {
                name: export.to_string(),
                expected: format!(
                    "({})",
                    info.params
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                got: format!(
                    "({})",
                    args.iter()
                        .map(Value::type_name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }));
        }
        if let (true, Some(entry)) = (info.numeric, entry) {
            let (index, results) = (info.index, info.results.len());
            return self.call_numeric(entry, args, index, results);
        }
        let mut results: Vec<Val> = Vec::with_capacity(info.results.len() + 1);
        results.extend(
            info.results
                .iter()
                .map(|t| Val::default_for_ty(t).unwrap_or(Val::I32(0))),
        );
        // With an entry point the budget goes first (set below); the gas left comes last.
        let mut params: Vec<Val> = Vec::with_capacity(args.len() + 1);
        if entry.is_some() {
            params.push(Val::I64(0));
        }
        params.extend(args.iter().map(|a| a.to_wasmtime()));
        let metrics = match entry {
            Some(entry) => {
                results.push(Val::I64(0));
                self.run_core(false, |s, budget| {
                    params[0] = Val::I64(budget);
                    entry.call(
                        s.store.as_mut().ok_or_else(no_store)?,
                        &params,
                        &mut results,
                    )?;
                    Ok(results.pop().and_then(|gas| gas.i64()))
                })?
            }
            None => self.run(func, &params, &mut results)?,
        };
        let values = results
            .iter()
            .map(|v| {
                Value::from_wasmtime(v).ok_or_else(|| {
                    Error::new(ErrorKind::ArgumentMismatch {
                        name: export.to_string(),
                        expected: "numeric results".into(),
                        got: format!("{v:?}"),
                    })
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Execution {
            output: Output::Values(values),
            metrics,
        })
    }

    /// [`Sandbox::call`] of an export whose parameters and results are all numbers, through
    /// its entry point, with raw values: wasmtime's checked `Func::call` looks the function's
    /// type up in the engine's type registry and converts every value, which made a call by
    /// name ten times a typed call.
    fn call_numeric(
        &mut self,
        entry: Func,
        args: &[Value],
        export: usize,
        results: usize,
    ) -> Result<Execution, Error> {
        // Room for the budget and the arguments going in, the results and the gas left
        // coming out.
        let slots = (args.len() + 1).max(results + 1);
        let mut raw = vec![ValRaw::i64(0); slots];
        for (slot, arg) in raw[1..].iter_mut().zip(args) {
            *slot = match *arg {
                Value::I32(v) => ValRaw::i32(v),
                Value::I64(v) => ValRaw::i64(v),
                Value::F32(v) => ValRaw::f32(v.to_bits()),
                Value::F64(v) => ValRaw::f64(v.to_bits()),
                Value::V128(v) => ValRaw::v128(v),
            };
        }
        let gas_slot = results;
        let metrics = self.run_core(false, |s, budget| {
            raw[0] = ValRaw::i64(budget);
            let store = s.store.as_mut().ok_or_else(no_store)?;
            // SAFETY: `entry` is this instance's entry point for the export (the per-instance
            // cache is rebuilt with every instance), and `ExportTable` checked that its type is
            // `(i64, params...) -> (results..., i64)` with every type a number or a vector;
            // `Sandbox::call` checked that every argument has its parameter's type. `raw`
            // holds the budget and the arguments in that order and has room for every result.
            // No reference is passed or returned, and this is not an async call.
            unsafe { entry.call_unchecked(store, &mut raw[..] as *mut [ValRaw])? };
            Ok(Some(raw[gas_slot].get_i64()))
        })?;
        let Some(loaded) = self.loaded.as_ref() else {
            return Err(Error::engine("no module is loaded"));
        };
        let values = (loaded.module.export_table().exports[export].results.iter())
            .zip(&raw)
            .map(|(ty, raw)| match ty {
                wasmtime::ValType::I32 => Value::I32(raw.get_i32()),
                wasmtime::ValType::I64 => Value::I64(raw.get_i64()),
                wasmtime::ValType::F32 => Value::F32(f32::from_bits(raw.get_f32())),
                wasmtime::ValType::F64 => Value::F64(f64::from_bits(raw.get_f64())),
                _ => Value::V128(raw.get_v128()),
            })
            .collect();
        Ok(Execution {
            output: Output::Values(values),
            metrics,
        })
    }

    /// Calls an export in JSON mode (see the [module docs](crate::execution)).
    ///
    /// # Errors
    /// As [`Sandbox::call`], plus [`ErrorKind::MissingAlloc`], [`ErrorKind::OutOfBounds`] and
    /// [`ErrorKind::InvalidJson`].
    pub fn call_json(
        &mut self,
        export: &str,
        payload: &serde_json::Value,
    ) -> Result<Execution, Error> {
        self.expect_status(Status::Loaded, "call")?;
        let bytes = serde_json::to_vec(payload).map_err(|e| {
            Error::new(ErrorKind::InvalidJson {
                reason: e.to_string(),
            })
        })?;
        let instance = self.instance()?;
        let alloc = instance
            .get_typed_func::<i32, i32>(self.store.as_mut().ok_or_else(no_store)?, "__alloc")
            .map_err(|_| Error::new(ErrorKind::MissingAlloc))?;
        let (CachedExport { func, .. }, _) = self.cached_export(export)?;
        let store = self.store.as_ref().ok_or_else(no_store)?;
        let typed = func.typed::<(i32, i32), i64>(store).map_err(|_| {
            Error::new(ErrorKind::ArgumentMismatch {
                name: export.to_string(),
                expected: "(i32, i32) -> i64 in JSON mode".into(),
                got: format!("{}", func.ty(store)),
            })
        })?;
        let len = i32::try_from(bytes.len()).map_err(|_| {
            Error::new(ErrorKind::InvalidJson {
                reason: "the payload is larger than 2 GiB".into(),
            })
        })?;
        let mut ptr = 0i32;
        let mut packed = 0i64;
        let metrics = self.run_with(|sandbox| {
            ptr = alloc.call(sandbox.store.as_mut().ok_or_else(no_store)?, len)?;
            sandbox.write_guest(ptr as u32 as u64, &bytes)?;
            packed = typed.call(sandbox.store.as_mut().ok_or_else(no_store)?, (ptr, len))?;
            Ok(())
        })?;
        let result_ptr = (packed as u64) >> 32;
        let result_len = (packed as u64) & 0xffff_ffff;
        let raw = self.read_guest(result_ptr, result_len)?;
        let text = String::from_utf8(raw).map_err(|e| {
            Error::new(ErrorKind::InvalidJson {
                reason: format!("not UTF-8: {e}"),
            })
        })?;
        let value = serde_json::from_str(&text).map_err(|e| {
            Error::new(ErrorKind::InvalidJson {
                reason: e.to_string(),
            })
        })?;
        Ok(Execution {
            output: Output::Json(value),
            metrics,
        })
    }

    /// A typed handle on a function export, for calls without lookups or conversions.
    ///
    /// # Errors
    /// [`ErrorKind::UnknownExport`], or [`ErrorKind::ArgumentMismatch`] when the export's
    /// signature is not `Params -> Results`.
    pub fn typed<Params: EntryParams, Results: EntryResults>(
        &mut self,
        export: &str,
    ) -> Result<TypedExport<Params, Results>, Error> {
        self.expect_status(Status::Loaded, "look up an export of")?;
        // The export and its entry point, when the module has one (ABI section 11).
        let (CachedExport { func, entry }, _) = self.cached_export(export)?;
        let store = self.store.as_ref().ok_or_else(no_store)?;
        let typed = func.typed::<Params, Results>(store).map_err(|e| {
            Error::new(ErrorKind::ArgumentMismatch {
                name: export.to_string(),
                expected: format!("{}", func.ty(store)),
                got: e.to_string(),
            })
        })?;
        let entry = entry.and_then(|f| f.typed::<Params::WithBudget, Results::WithGas>(store).ok());
        Ok(TypedExport {
            func: typed,
            entry,
            store_token: self.store_token,
        })
    }

    /// The parameter and result types of a function export, if there is one.
    pub fn export_signature(&mut self, export: &str) -> Option<(Vec<String>, Vec<String>)> {
        let (_, info) = self.cached_export(export).ok()?;
        Some((
            info.params.iter().map(|t| t.to_string()).collect(),
            info.results.iter().map(|t| t.to_string()).collect(),
        ))
    }

    fn instance(&self) -> Result<wasmtime::Instance, Error> {
        self.loaded
            .as_ref()
            .map(|l| l.instance)
            .ok_or_else(|| Error::engine("no module is loaded"))
    }

    /// A function export, its entry point (ABI section 11) when the module has one, and
    /// what the module's export table says about it; the `Func`s come from the
    /// per-instance cache, looked up once.
    fn cached_export(
        &mut self,
        export: &str,
    ) -> Result<(CachedExport, &crate::runtime::ExportInfo), Error> {
        let Some(loaded) = self.loaded.as_mut() else {
            return Err(Error::engine("no module is loaded"));
        };
        let table = loaded.module.export_table();
        let unknown = || {
            Error::new(ErrorKind::UnknownExport {
                name: export.to_string(),
            })
        };
        let index = table.index(export).ok_or_else(unknown)? as usize;
        let info = &table.exports[index];
        if loaded.exports.len() <= index {
            loaded.exports.resize_with(table.exports.len(), || None);
        }
        let cached = match loaded.exports[index] {
            Some(cached) => cached,
            None => {
                let instance = loaded.instance;
                let store = self.store.as_mut().ok_or_else(no_store)?;
                let func = instance
                    .get_module_export(&mut *store, &info.func)
                    .and_then(wasmtime::Extern::into_func)
                    .ok_or_else(unknown)?;
                let entry = info.entry.as_ref().and_then(|entry| {
                    instance
                        .get_module_export(&mut *store, entry)
                        .and_then(wasmtime::Extern::into_func)
                });
                let cached = CachedExport { func, entry };
                loaded.exports[index] = Some(cached);
                cached
            }
        };
        Ok((cached, info))
    }

    fn memory(&mut self) -> Result<wasmtime::Memory, Error> {
        let instance = self.instance()?;
        instance
            .get_memory(self.store.as_mut().ok_or_else(no_store)?, "memory")
            .ok_or_else(|| {
                Error::new(ErrorKind::OutOfBounds {
                    ptr: 0,
                    len: 0,
                    memory_size: 0,
                })
            })
    }

    fn write_guest(&mut self, ptr: u64, bytes: &[u8]) -> wasmtime::Result<()> {
        let memory = self.memory().map_err(wasmtime::Error::new)?;
        let data = memory.data_mut(self.store.as_mut().ok_or_else(no_store)?);
        let size = data.len() as u64;
        match ptr
            .checked_add(bytes.len() as u64)
            .filter(|end| *end <= size)
        {
            Some(end) => {
                data[ptr as usize..end as usize].copy_from_slice(bytes);
                Ok(())
            }
            None => Err(wasmtime::Error::new(Error::new(ErrorKind::OutOfBounds {
                ptr,
                len: bytes.len() as u64,
                memory_size: size,
            }))),
        }
    }

    fn read_guest(&mut self, ptr: u64, len: u64) -> Result<Vec<u8>, Error> {
        let memory = self.memory()?;
        let data = memory.data(self.store.as_ref().ok_or_else(no_store)?);
        let size = data.len() as u64;
        match ptr.checked_add(len).filter(|end| *end <= size) {
            Some(end) => Ok(data[ptr as usize..end as usize].to_vec()),
            None => Err(Error::new(ErrorKind::OutOfBounds {
                ptr,
                len,
                memory_size: size,
            })),
        }
    }

    /// Runs one function under the limits.
    pub(crate) fn run(
        &mut self,
        func: Func,
        params: &[Val],
        results: &mut [Val],
    ) -> Result<CallMetrics, Error> {
        self.run_with(|sandbox| {
            func.call(
                sandbox.store.as_mut().ok_or_else(no_store)?,
                params,
                results,
            )
        })
    }

    /// Sets the budget, the stack counter and the deadline, runs `body`, and accounts for it.
    fn run_with(
        &mut self,
        body: impl FnOnce(&mut Sandbox) -> wasmtime::Result<()>,
    ) -> Result<CallMetrics, Error> {
        self.run_core(true, |s, _| body(s).map(|()| None))
    }

    /// Runs `body` under the limits. With `set_counters` the budget and the stack limit are
    /// written to the counter globals first; without, `body` passes the budget it is given
    /// to an entry point, which does that itself. `body` returns the gas left when it knows
    /// it (an entry point's last result); otherwise it is read from the global.
    ///
    /// Inlined into each caller, so that `body`'s captures (a typed call's arguments) stay in
    /// registers instead of being written to memory and read straight back.
    #[inline(always)]
    pub(crate) fn run_core(
        &mut self,
        set_counters: bool,
        body: impl FnOnce(&mut Sandbox, i64) -> wasmtime::Result<Option<i64>>,
    ) -> Result<CallMetrics, Error> {
        let (gas, stack) = match &self.loaded {
            Some(loaded) => (loaded.gas, loaded.stack),
            None => return Err(Error::engine("no module is loaded")),
        };
        let budget = self.config.gas_budget();
        let Some(store) = self.store.as_mut() else {
            return Err(no_store());
        };
        if set_counters {
            let stack_limit = i64::try_from(self.config.stack_limit).unwrap_or(i64::MAX);
            gas.set(&mut *store, Val::I64(budget))
                .map_err(Error::engine)?;
            if let Some(stack) = stack {
                stack
                    .set(&mut *store, Val::I64(stack_limit))
                    .map_err(Error::engine)?;
            }
        }
        let ticks = match self.config.max_execution_ms {
            // "No limit": far in the future, with room for wasmtime to add the current
            // epoch (u64::MAX would overflow there and, wrapped, fire at once).
            0 => u64::MAX / 2,
            ms => ms.div_ceil(crate::runtime::EPOCH_TICK.as_millis() as u64),
        };
        store.set_epoch_deadline(ticks);
        {
            let state = store.data_mut();
            state.limiter.exceeded = None;
            state.limiter.peak_bytes = state.limiter.memory_bytes;
            state.host_calls = 0;
            if let Some(wasi) = state.wasi.as_mut() {
                wasi.gas_before_call = self.metrics.gas_used;
                wasi.budget = budget;
            }
        }
        self.status = Status::Running;
        let started = self.config.measure_wall_time.then(Instant::now);
        let result = body(self, budget);
        let wall_time = started.map(|s| s.elapsed()).unwrap_or_default();
        self.status = Status::Loaded;

        let Some(store) = self.store.as_mut() else {
            return Err(no_store());
        };
        let gas_left = match result {
            Ok(Some(gas_left)) => gas_left,
            _ => gas.get(&mut *store).i64().unwrap_or(0),
        };
        let result = result.map(|_| ());
        let state = store.data();
        let used = if gas_left < 0 {
            self.config.max_gas
        } else {
            (budget - gas_left) as u64
        };
        let metrics = CallMetrics {
            gas_used: used,
            gas_limit: self.config.max_gas,
            memory_bytes: state.limiter.memory_bytes,
            peak_memory_bytes: state.limiter.peak_bytes,
            memory_limit_bytes: self.config.max_memory_bytes,
            wall_time,
            time_limit: Duration::from_millis(self.config.max_execution_ms),
            host_calls: state.host_calls,
        };
        self.metrics.record(metrics);
        match result {
            Ok(()) => Ok(metrics),
            Err(e) => {
                // Only a failed call needs the stack counter, to tell the stack limit apart.
                let stack_left = match (stack, self.store.as_mut()) {
                    (Some(stack), Some(store)) => stack.get(store).i64().unwrap_or(0),
                    _ => 0,
                };
                Err(self.classify(e, gas_left, stack_left, wall_time))
            }
        }
    }

    /// What stopped a call, in the order that makes the answer right: gas first (an
    /// out-of-gas trap is an `unreachable`), then the host, memory, time, stack, and finally
    /// the module's own trap.
    fn classify(
        &self,
        error: wasmtime::Error,
        gas_left: i64,
        stack_left: i64,
        elapsed: Duration,
    ) -> Error {
        let config = &self.config;
        if gas_left < 0 || error.is::<HostOutOfGas>() {
            return Error::new(ErrorKind::GasExhausted {
                used: config.max_gas,
                limit: config.max_gas,
            });
        }
        if let Some(exit) = error.downcast_ref::<crate::wasi::ProcExit>() {
            return Error::new(ErrorKind::Exit { code: exit.0 });
        }
        if let Some(hit) = error.downcast_ref::<crate::wasi::OutputLimitHit>() {
            return Error::new(ErrorKind::OutputLimit {
                stream: hit.stream,
                limit: hit.limit,
            });
        }
        if let Some(failure) = error.downcast_ref::<HostFailure>() {
            return Error::new(ErrorKind::HostFunction {
                name: failure.name.clone(),
                message: failure.message.clone(),
            });
        }
        if error.is::<MemoryLimitHit>() {
            return Error::new(ErrorKind::MemoryExceeded {
                requested: (self.store.as_ref())
                    .and_then(|store| store.data().limiter.exceeded)
                    .unwrap_or(0),
                limit: config.max_memory_bytes,
            });
        }
        if let Some(inner) = error.downcast_ref::<Error>() {
            return Error::new(clone_kind(inner.kind()));
        }
        let trap = error.downcast_ref::<wasmtime::Trap>().copied();
        if trap == Some(wasmtime::Trap::Interrupt) {
            return Error::new(ErrorKind::Timeout {
                elapsed_ms: elapsed.as_millis() as u64,
                limit_ms: config.max_execution_ms,
            });
        }
        if stack_left < 0 {
            return Error::new(ErrorKind::StackLimit {
                limit: config.stack_limit,
            });
        }
        let code = match trap {
            Some(wasmtime::Trap::UnreachableCodeReached) => TrapCode::Unreachable,
            Some(wasmtime::Trap::MemoryOutOfBounds) => TrapCode::MemoryOutOfBounds,
            Some(wasmtime::Trap::TableOutOfBounds) => TrapCode::TableOutOfBounds,
            Some(wasmtime::Trap::IndirectCallToNull) => TrapCode::IndirectCallToNull,
            Some(wasmtime::Trap::BadSignature) => TrapCode::BadSignature,
            Some(wasmtime::Trap::IntegerOverflow) => TrapCode::IntegerOverflow,
            Some(wasmtime::Trap::IntegerDivisionByZero) => TrapCode::IntegerDivisionByZero,
            Some(wasmtime::Trap::BadConversionToInteger) => TrapCode::BadConversionToInteger,
            Some(wasmtime::Trap::NullReference) => TrapCode::NullReference,
            Some(wasmtime::Trap::StackOverflow) => TrapCode::StackOverflow,
            Some(_) => TrapCode::Other,
            None if error.to_string().contains("exception") => TrapCode::UncaughtException,
            None => TrapCode::Other,
        };
        Error::new(ErrorKind::Trap {
            code,
            message: format!("{error:#}"),
        })
    }
}

/// Errors raised inside a call by the sandbox itself (JSON mode's bounds checks) travel
/// through wasmtime as a boxed `Error`; this takes their kind back out.
fn clone_kind(kind: &ErrorKind) -> ErrorKind {
    match kind {
        ErrorKind::OutOfBounds {
            ptr,
            len,
            memory_size,
        } => ErrorKind::OutOfBounds {
            ptr: *ptr,
            len: *len,
            memory_size: *memory_size,
        },
        other => ErrorKind::Engine {
            message: other.to_string(),
        },
    }
}

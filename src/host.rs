//! Host functions: closures a host registers under an import name, which the guest calls.
//!
//! A host function gets a [`HostContext`] (bounds-checked access to the guest's memory, and
//! the gas counter so it can charge for its own work) and the call's arguments. Whatever it
//! does wrong (returns an error, returns values of the wrong types, panics) aborts the guest
//! call with [`ErrorKind::HostFunction`](crate::ErrorKind::HostFunction) naming it; the
//! sandbox stays usable.

use crate::sandbox::StoreState;
use crate::value::Value;
use ri_sandbox_instrument::abi;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use wasmtime::{Caller, Extern, Val};

/// A numeric WebAssembly type, for host function signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValType {
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `f32`
    F32,
    /// `f64`
    F64,
}

impl ValType {
    pub(crate) fn to_wasmtime(self) -> wasmtime::ValType {
        match self {
            ValType::I32 => wasmtime::ValType::I32,
            ValType::I64 => wasmtime::ValType::I64,
            ValType::F32 => wasmtime::ValType::F32,
            ValType::F64 => wasmtime::ValType::F64,
        }
    }

    fn matches(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (ValType::I32, Value::I32(_))
                | (ValType::I64, Value::I64(_))
                | (ValType::F32, Value::F32(_))
                | (ValType::F64, Value::F64(_))
        )
    }
}

/// What a host function returns when it fails; the message reaches the host that called
/// into the sandbox, in [`ErrorKind::HostFunction`](crate::ErrorKind::HostFunction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostError {
    message: String,
}

impl HostError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> HostError {
        HostError {
            message: message.into(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostError {}

impl From<&str> for HostError {
    fn from(message: &str) -> HostError {
        HostError::new(message)
    }
}

impl From<String> for HostError {
    fn from(message: String) -> HostError {
        HostError::new(message)
    }
}

type Callback =
    dyn Fn(&mut HostContext<'_>, &[Value]) -> Result<Vec<Value>, HostError> + Send + Sync;

/// A function the host offers the guest under an import name.
#[derive(Clone)]
pub struct HostFunction {
    pub(crate) module: String,
    pub(crate) name: String,
    pub(crate) params: Vec<ValType>,
    pub(crate) results: Vec<ValType>,
    pub(crate) callback: Arc<Callback>,
}

impl std::fmt::Debug for HostFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostFunction")
            .field("module", &self.module)
            .field("name", &self.name)
            .field("params", &self.params)
            .field("results", &self.results)
            .finish_non_exhaustive()
    }
}

impl HostFunction {
    /// A host function imported as `env.<name>`.
    pub fn new(
        name: impl Into<String>,
        params: &[ValType],
        results: &[ValType],
        callback: impl Fn(&mut HostContext<'_>, &[Value]) -> Result<Vec<Value>, HostError>
            + Send
            + Sync
            + 'static,
    ) -> HostFunction {
        HostFunction::in_module("env", name, params, results, callback)
    }

    /// A host function imported as `<module>.<name>`.
    pub fn in_module(
        module: impl Into<String>,
        name: impl Into<String>,
        params: &[ValType],
        results: &[ValType],
        callback: impl Fn(&mut HostContext<'_>, &[Value]) -> Result<Vec<Value>, HostError>
            + Send
            + Sync
            + 'static,
    ) -> HostFunction {
        HostFunction {
            module: module.into(),
            name: name.into(),
            params: params.to_vec(),
            results: results.to_vec(),
            callback: Arc::new(callback),
        }
    }

    /// The import's module name.
    pub fn module(&self) -> &str {
        &self.module
    }

    /// The import's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn func_type(&self, engine: &wasmtime::Engine) -> wasmtime::FuncType {
        wasmtime::FuncType::new(
            engine,
            self.params.iter().map(|t| t.to_wasmtime()),
            self.results.iter().map(|t| t.to_wasmtime()),
        )
    }

    /// Links this function into `linker`, wrapped so that errors, wrong results and panics
    /// become [`HostFailure`] traps.
    pub(crate) fn define(&self, linker: &mut wasmtime::Linker<StoreState>) -> wasmtime::Result<()> {
        let engine = linker.engine().clone();
        let this = self.clone();
        linker.func_new(
            &self.module,
            &self.name,
            self.func_type(&engine),
            move |caller, params, results| this.invoke(caller, params, results),
        )?;
        Ok(())
    }

    fn invoke(
        &self,
        caller: Caller<'_, StoreState>,
        params: &[Val],
        results: &mut [Val],
    ) -> wasmtime::Result<()> {
        let fail = |message: String| {
            wasmtime::Error::new(HostFailure {
                name: format!("{}.{}", self.module, self.name),
                message,
            })
        };
        let args: Vec<Value> = params.iter().filter_map(Value::from_wasmtime).collect();
        let mut context = HostContext { caller };
        context.caller.data_mut().host_calls += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| (self.callback)(&mut context, &args)));
        let values = match outcome {
            Ok(Ok(values)) => values,
            Ok(Err(error)) if error.message == OUT_OF_GAS => {
                return Err(wasmtime::Error::new(HostOutOfGas))
            }
            Ok(Err(error)) => return Err(fail(error.message)),
            Err(panic) => return Err(fail(format!("panicked: {}", panic_message(&panic)))),
        };
        if values.len() != self.results.len()
            || !self.results.iter().zip(&values).all(|(t, v)| t.matches(v))
        {
            return Err(fail(format!(
                "returned {values:?}, but its signature promises {:?}",
                self.results
            )));
        }
        for (slot, value) in results.iter_mut().zip(values) {
            *slot = value.to_wasmtime();
        }
        Ok(())
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

/// The trap a failing host function raises; the sandbox turns it into
/// `ErrorKind::HostFunction`.
#[derive(Debug)]
pub(crate) struct HostFailure {
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for HostFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host function `{}` failed: {}", self.name, self.message)
    }
}

impl std::error::Error for HostFailure {}

/// The trap raised when a host function's own gas charge cannot be paid.
#[derive(Debug)]
pub(crate) struct HostOutOfGas;

impl std::fmt::Display for HostOutOfGas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("out of gas in a host function")
    }
}

impl std::error::Error for HostOutOfGas {}

const OUT_OF_GAS: &str = "out of gas";

/// What a host function can reach while it runs: the guest's memory and the gas counter.
pub struct HostContext<'a> {
    caller: Caller<'a, StoreState>,
}

impl HostContext<'_> {
    fn memory(&mut self) -> Result<wasmtime::Memory, HostError> {
        match self.caller.get_export("memory") {
            Some(Extern::Memory(memory)) => Ok(memory),
            _ => Err(HostError::new("the guest exports no memory named `memory`")),
        }
    }

    /// Copies `len` bytes of guest memory starting at `ptr`.
    ///
    /// # Errors
    /// When the guest exports no `memory` or the range is outside it.
    pub fn read_memory(&mut self, ptr: u64, len: u64) -> Result<Vec<u8>, HostError> {
        let memory = self.memory()?;
        let data = memory.data(&self.caller);
        let range = checked_range(ptr, len, data.len())?;
        Ok(data[range].to_vec())
    }

    /// Writes `bytes` into guest memory at `ptr`.
    ///
    /// # Errors
    /// When the guest exports no `memory` or the range is outside it.
    pub fn write_memory(&mut self, ptr: u64, bytes: &[u8]) -> Result<(), HostError> {
        let memory = self.memory()?;
        let data = memory.data_mut(&mut self.caller);
        let range = checked_range(ptr, bytes.len() as u64, data.len())?;
        data[range].copy_from_slice(bytes);
        Ok(())
    }

    /// Gas left in the current call.
    pub fn gas_left(&mut self) -> i64 {
        match self.caller.get_export(abi::GAS_LEFT_EXPORT) {
            Some(Extern::Global(g)) => g.get(&mut self.caller).i64().unwrap_or(0),
            _ => 0,
        }
    }

    /// Charges `gas` for the host function's own work, exactly as the guest's metering
    /// would. When the call cannot pay, the gas counter is set to -1 and this returns an
    /// error; return it (with `?`) and the call ends with
    /// [`ErrorKind::GasExhausted`](crate::ErrorKind::GasExhausted).
    ///
    /// # Errors
    /// When the gas left is less than `gas`.
    pub fn charge_gas(&mut self, gas: u64) -> Result<(), HostError> {
        let Some(Extern::Global(global)) = self.caller.get_export(abi::GAS_LEFT_EXPORT) else {
            return Err(HostError::new("the guest has no gas counter"));
        };
        let left = global.get(&mut self.caller).i64().unwrap_or(0);
        let cost = i64::try_from(gas).unwrap_or(i64::MAX);
        let new = if left < cost { -1 } else { left - cost };
        global
            .set(&mut self.caller, Val::I64(new))
            .map_err(|e| HostError::new(e.to_string()))?;
        if new < 0 {
            return Err(HostError::new(OUT_OF_GAS));
        }
        Ok(())
    }
}

fn checked_range(ptr: u64, len: u64, size: usize) -> Result<std::ops::Range<usize>, HostError> {
    let end = ptr.checked_add(len).filter(|end| *end <= size as u64);
    match end {
        Some(end) => Ok(ptr as usize..end as usize),
        None => Err(HostError::new(format!(
            "range {ptr:#x}+{len} is outside guest memory ({size} bytes)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked_without_overflow() {
        assert_eq!(checked_range(0, 4, 4).unwrap(), 0..4);
        assert!(checked_range(1, 4, 4).is_err());
        assert!(checked_range(u64::MAX, 2, 4).is_err());
        assert_eq!(checked_range(4, 0, 4).unwrap(), 4..4);
    }
}

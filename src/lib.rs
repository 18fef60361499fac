//! ri-sandbox runs untrusted WebAssembly deterministically, under hard resource limits.
//!
//! A module is instrumented ahead of time by [`instrument`] (gas metering, a deterministic
//! stack limit, canonical NaNs; see the [instrumented-module ABI](instrument::abi)) and run
//! on wasmtime by a [`Sandbox`]: memory limits, a wall-clock timeout, host functions, and
//! time and randomness only through deterministic imports.
//!
//! ```
//! use ri_sandbox::{Config, Runtime, Sandbox, Value};
//!
//! let runtime = Runtime::new()?;
//! let mut sandbox = Sandbox::new(&runtime, Config::default())?;
//! sandbox.load(br#"(module (func (export "add") (param i32 i32) (result i32)
//!     local.get 0 local.get 1 i32.add))"#)?;
//! let run = sandbox.call("add", &[Value::I32(3), Value::I32(7)])?;
//! assert_eq!(run.values(), &[Value::I32(10)]);
//! assert_eq!(run.metrics.gas_used, 3);
//! # Ok::<(), ri_sandbox::Error>(())
//! ```

#![warn(missing_docs)]

mod cache;
mod config;
pub mod determinism;
pub mod entry;
mod error;
pub mod execution;
mod host;
pub mod limits;
mod manager;
mod metrics;
pub mod pressure;
pub mod runtime;
mod sandbox;
pub mod snapshot;
mod validate;
mod value;
pub mod wasi;

pub use cache::{CacheKey, CacheMetrics, ModuleCache};
pub use config::Config;
pub use error::{Error, ErrorKind, TrapCode};
pub use execution::{Execution, Output, Payload, TypedExport};
pub use host::{HostContext, HostError, HostFunction, ValType};
pub use manager::Manager;
pub use metrics::{CallMetrics, SandboxMetrics};
pub use pressure::{PressureEvent, PressureLevel, PressureMonitor};
pub use ri_sandbox_instrument as instrument;
pub use runtime::{CompiledModule, PoolingLimits, Runtime, RuntimeConfig};
pub use sandbox::{Sandbox, Status};
pub use snapshot::{Snapshot, SnapshotError};
pub use validate::{validate_determinism, DeterminismReport};
pub use value::Value;
pub use wasi::{CommandOutcome, WasiConfig};
pub use wasmtime::{WasmParams, WasmResults};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Send + Sync>() {}

    #[test]
    fn handles_can_cross_threads() {
        assert_send::<Sandbox>();
        assert_send::<Manager>();
        assert_sync::<Runtime>();
        assert_sync::<CompiledModule>();
    }
}

//! Everything that keeps a sandbox deterministic besides metering: the engine settings, the
//! import policy, and the two deterministic imports (a fixed clock and a seeded PRNG).
//!
//! # Sources of non-determinism and how each is handled
//! - **Time**: no clock reaches the guest except `env.__get_time() -> i64`, which returns the
//!   configured event timestamp, the same on every call.
//! - **Randomness**: only `env.__get_random() -> i64`, the next value of a ChaCha20 stream
//!   seeded from the configured seed; its position is sandbox state (snapshots keep it).
//! - **Ambient imports** (WASI, environment, file system): refused at load; every import must
//!   be a declared host function or one of the two above. Each accepted import is logged with
//!   `tracing` for audit. The one exception is opt-in: [`Config::wasi`](crate::Config::wasi)
//!   links a WASI preview1 in which every answer is deterministic ([`crate::wasi`]).
//! - **NaN bits**: canonicalized by the instrumenter, which the runtime always asks for. The
//!   engine's own NaN canonicalization is off: it would canonicalize every result a second time,
//!   and it costs more than the instrumenter's (f64 matrix multiply: 3.7x plain with it,
//!   2.1x with the instrumenter's alone; `benches/execute.rs`).
//! - **Relaxed SIMD**: refused by the instrumenter; wasmtime's deterministic relaxed-SIMD mode
//!   is on anyway.
//! - **Threads**: off (shared memory and atomics are refused).
//! - **Stack depth**: the instrumenter's deterministic stack limit, below wasmtime's guard.
//! - **Memory growth**: refusals depend only on the configured limit.
//! - **Host functions**: the host's responsibility; a host function that reads a clock makes
//!   the sandbox non-deterministic.
//! - **Wall-clock timeout**: the one non-deterministic outcome, labelled so
//!   ([`Error::is_deterministic`](crate::Error::is_deterministic)).

use crate::error::{Error, ErrorKind};
use crate::host::HostFunction;
use crate::sandbox::StoreState;
use rand_core::Rng;

/// Import module of the deterministic imports.
pub const DETERMINISTIC_MODULE: &str = "env";
/// `env.__get_time() -> i64`: the configured event timestamp.
pub const TIME_IMPORT: &str = "__get_time";
/// `env.__get_random() -> i64`: the next value of the seeded ChaCha20 stream.
pub const RANDOM_IMPORT: &str = "__get_random";

/// Engine settings that make execution deterministic.
pub(crate) fn configure(config: &mut wasmtime::Config) {
    config
        .cranelift_nan_canonicalization(false)
        .relaxed_simd_deterministic(true)
        .wasm_relaxed_simd(false);
    // Threads need wasmtime's `threads` cargo feature, which ri-sandbox does not enable: shared
    // memories and atomics cannot even be compiled.
}

/// Links the two deterministic imports.
pub(crate) fn define_imports(linker: &mut wasmtime::Linker<StoreState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        DETERMINISTIC_MODULE,
        TIME_IMPORT,
        |caller: wasmtime::Caller<'_, StoreState>| -> i64 { caller.data().timestamp },
    )?;
    linker.func_wrap(
        DETERMINISTIC_MODULE,
        RANDOM_IMPORT,
        |mut caller: wasmtime::Caller<'_, StoreState>| -> i64 {
            caller.data_mut().rng.next_u64() as i64
        },
    )?;
    Ok(())
}

/// Checks every import of `module` against what the sandbox provides, and logs each one.
///
/// # Errors
/// [`ErrorKind::RejectedImport`] listing every import that is not provided (with matching
/// type), and everything that is.
pub(crate) fn check_imports(
    module: &wasmtime::Module,
    host_functions: &[HostFunction],
    wasi: bool,
    engine: &wasmtime::Engine,
) -> Result<(), Error> {
    let mut rejected = Vec::new();
    for import in module.imports() {
        let name = format!("{}.{}", import.module(), import.name());
        let ok = match import.ty() {
            wasmtime::ExternType::Func(ty) => {
                let deterministic = import.module() == DETERMINISTIC_MODULE
                    && matches!(import.name(), TIME_IMPORT | RANDOM_IMPORT)
                    && ty.params().len() == 0
                    && ty.results().len() == 1
                    && matches!(ty.results().next(), Some(wasmtime::ValType::I64));
                let wasi_function = wasi
                    && import.module() == crate::wasi::MODULE
                    && crate::wasi::is_wasi_function(import.name(), &ty);
                deterministic
                    || wasi_function
                    || host_functions.iter().any(|f| {
                        f.module == import.module()
                            && f.name == import.name()
                            && wasmtime::FuncType::eq(&f.func_type(engine), &ty)
                    })
            }
            _ => false,
        };
        if ok {
            tracing::info!(import = %name, "ri-sandbox: import linked");
        } else {
            tracing::warn!(import = %name, "ri-sandbox: import rejected");
            rejected.push(name);
        }
    }
    if rejected.is_empty() {
        return Ok(());
    }
    let mut provided: Vec<String> = vec![
        format!("{DETERMINISTIC_MODULE}.{TIME_IMPORT}"),
        format!("{DETERMINISTIC_MODULE}.{RANDOM_IMPORT}"),
    ];
    if wasi {
        provided.push(format!("{}.*", crate::wasi::MODULE));
    }
    provided.extend(
        host_functions
            .iter()
            .map(|f| format!("{}.{}", f.module, f.name)),
    );
    Err(Error::new(ErrorKind::RejectedImport { rejected, provided }))
}

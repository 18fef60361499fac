//! The shared engine: one wasmtime `Engine` for many sandboxes, its epoch ticker (the
//! wall-clock timeout's clock, one thread per engine), and compilation of modules.

use crate::config::Config;
use crate::determinism;
use crate::error::{Error, ErrorKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the epoch ticker advances the engine's epoch: the timeout's resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// A wasmtime engine configured for deterministic, metered execution, shared by every sandbox
/// made from it. Cloning is cheap (a reference count).
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    next_id: AtomicU64,
    /// The deterministic imports, defined once: sandboxes without host functions instantiate
    /// through it directly, the others through a clone with their functions added.
    linker: wasmtime::Linker<crate::sandbox::StoreState>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// The wasmtime settings every ri-sandbox engine uses.
pub(crate) fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config
        .wasm_tail_call(true)
        .wasm_multi_memory(true)
        .wasm_memory64(true)
        .wasm_function_references(true)
        .wasm_exceptions(true)
        .wasm_gc(true)
        .wasm_extended_const(true)
        .epoch_interruption(true);
    determinism::configure(&mut config);
    config
}

impl Runtime {
    /// A runtime with its own engine and epoch ticker thread.
    ///
    /// # Errors
    /// [`ErrorKind::Engine`] when wasmtime cannot create the engine on this machine.
    pub fn new() -> Result<Runtime, Error> {
        let engine = wasmtime::Engine::new(&engine_config()).map_err(Error::engine)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("ri-sandbox-epoch".into())
            .spawn(move || {
                // Ends when the last handle to the engine is dropped.
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(Error::engine)?;
        let mut linker = wasmtime::Linker::new(&engine);
        determinism::define_imports(&mut linker).map_err(Error::engine)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                next_id: AtomicU64::new(0),
                linker,
            }),
        })
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &wasmtime::Linker<crate::sandbox::StoreState> {
        &self.inner.linker
    }

    pub(crate) fn next_id(&self) -> String {
        format!(
            "sandbox-{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Instruments and compiles a module (binary or text) for sandboxes with this
    /// configuration's cost model and stack limit. Compile once, load into many sandboxes.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidModule`] when the bytes are not a valid module, use a proposal
    /// ri-sandbox does not meter, or are already instrumented.
    pub fn compile(&self, module: &[u8], config: &Config) -> Result<CompiledModule, Error> {
        let binary = to_binary(module)?;
        let options = config.instrument_options();
        let instrumented = ri_sandbox_instrument::instrument(&binary, &options)?;
        let compiled = wasmtime::Module::new(self.engine(), &instrumented.module).map_err(|e| {
            Error::new(ErrorKind::InvalidModule {
                reason: format!("wasmtime refused the instrumented module: {e}"),
                offset: None,
            })
        })?;
        Ok(CompiledModule {
            module: compiled,
            costs: Arc::new(options.costs.clone()),
            stack_limit: config.stack_limit,
            module_hash: module_fingerprint(&binary),
            instrumented: Arc::from(instrumented.module),
        })
    }
}

/// SHA-256 over a domain tag, the ABI version and the original module.
fn module_fingerprint(original: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"ri-sandbox module\n");
    hasher.update(ri_sandbox_instrument::abi::ABI_VERSION.to_le_bytes());
    hasher.update(original);
    hasher.finalize().into()
}

/// Checks the magic bytes, and turns text into binary.
pub(crate) fn to_binary(module: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
    if module.starts_with(b"\0asm") {
        return Ok(module.into());
    }
    if module.is_empty() || std::str::from_utf8(module).is_err() {
        return Err(Error::new(ErrorKind::InvalidModule {
            reason: if module.is_empty() {
                "the module is empty".into()
            } else {
                "not a WebAssembly module: the magic bytes \\0asm are missing".into()
            },
            offset: Some(0),
        }));
    }
    wat::parse_bytes(module).map_err(|e| {
        Error::new(ErrorKind::InvalidModule {
            reason: e.to_string().lines().next().unwrap_or_default().to_string(),
            offset: None,
        })
    })
}

/// A module instrumented and compiled for one cost model and stack limit, ready to load into
/// any number of sandboxes of the runtime that compiled it.
#[derive(Clone)]
pub struct CompiledModule {
    pub(crate) module: wasmtime::Module,
    /// The cost model it was metered with (compared by value: cheaper than a fingerprint).
    pub(crate) costs: Arc<ri_sandbox_instrument::CostModel>,
    pub(crate) stack_limit: u64,
    /// What snapshots name as their module: see [`CompiledModule::fingerprint`].
    pub(crate) module_hash: [u8; 32],
    /// The instrumented module's bytes (what the cache and ready files store beside the
    /// compiled artifact).
    pub(crate) instrumented: Arc<[u8]>,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("stack_limit", &self.stack_limit)
            .finish_non_exhaustive()
    }
}

impl CompiledModule {
    /// SHA-256 of the original module's bytes and the ABI version: what snapshots carry to name
    /// their module. A snapshot's state is expressed in the original module's index spaces,
    /// so it stays valid across instrumenter changes that keep the ABI version, and across
    /// cost models.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.module_hash
    }

    /// The compiled module's function exports and their signatures.
    pub fn exports(&self) -> impl Iterator<Item = (&str, wasmtime::FuncType)> {
        self.module.exports().filter_map(|e| match e.ty() {
            wasmtime::ExternType::Func(f) => Some((e.name(), f)),
            _ => None,
        })
    }
}

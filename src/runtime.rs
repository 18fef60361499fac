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

/// How a runtime's engine allocates instances.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Use wasmtime's pooling allocator, sized by these limits: instances come from
    /// preallocated slots, which makes creating and destroying sandboxes cheaper and bounds
    /// the memory they can take. `None` allocates on demand. Default: `None`.
    pub pooling: Option<PoolingLimits>,
}

/// The sizes of a pooling allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolingLimits {
    /// Sandboxes that can be live at once (each holds one instance, one memory and one
    /// table slot; a module with more memories or tables than one does not fit).
    pub max_sandboxes: u32,
    /// Largest linear memory of one sandbox, in bytes; a sandbox's `max_memory_bytes` above it
    /// cannot be reached.
    pub max_memory_bytes: u64,
    /// Largest table of one sandbox, in elements.
    pub max_table_elements: u64,
}

impl PoolingLimits {
    /// Limits for `max_sandboxes` live sandboxes of up to 16 MiB of memory and 10,000 table
    /// elements each.
    pub fn new(max_sandboxes: u32) -> PoolingLimits {
        PoolingLimits {
            max_sandboxes,
            max_memory_bytes: crate::limits::DEFAULT_MAX_MEMORY_BYTES,
            max_table_elements: 10_000,
        }
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
        Runtime::with_config(RuntimeConfig::default())
    }

    /// A runtime whose engine allocates instances as `config` says.
    ///
    /// # Errors
    /// [`ErrorKind::Engine`] when wasmtime cannot create the engine (for example, when the
    /// pooling allocator cannot reserve the address space its limits ask for).
    pub fn with_config(config: RuntimeConfig) -> Result<Runtime, Error> {
        let mut engine_config = engine_config();
        if let Some(limits) = config.pooling {
            let bytes = usize::try_from(limits.max_memory_bytes).unwrap_or(usize::MAX);
            let mut pooling = wasmtime::PoolingAllocationConfig::default();
            pooling
                .total_core_instances(limits.max_sandboxes)
                .total_memories(limits.max_sandboxes)
                .total_tables(limits.max_sandboxes)
                .max_memory_size(bytes)
                .table_elements(usize::try_from(limits.max_table_elements).unwrap_or(usize::MAX));
            engine_config
                .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pooling))
                // Small slots: reserve only what a memory may reach, with a small guard (bounds
                // checks become explicit), so many slots fit in the address space.
                .memory_reservation(limits.max_memory_bytes)
                .memory_guard_size(64 * 1024)
                .memory_reservation_for_growth(0);
        }
        let engine = wasmtime::Engine::new(&engine_config).map_err(Error::engine)?;
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
        crate::wasi::define(&mut linker).map_err(Error::engine)?;
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
            max_locals: config.max_locals,
            module_hash: module_fingerprint(&binary),
            instrumented: Arc::from(instrumented.module),
            export_table: Arc::default(),
            pre: Arc::default(),
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
    /// The limit on locals it was compiled under.
    pub(crate) max_locals: u64,
    /// What snapshots name as their module: see [`CompiledModule::fingerprint`].
    pub(crate) module_hash: [u8; 32],
    /// The instrumented module's bytes (what the cache and ready files store beside the
    /// compiled artifact).
    pub(crate) instrumented: Arc<[u8]>,
    /// Its function exports, made on first use and shared by every sandbox that loads it.
    pub(crate) export_table: Arc<std::sync::OnceLock<ExportTable>>,
    /// The module with its imports resolved against the runtime's own linker (the
    /// deterministic imports, WASI), made on first use: instantiating from it skips the
    /// per-instance import resolution. Sandboxes with host functions of their own link
    /// every time.
    pub(crate) pre:
        Arc<std::sync::OnceLock<Option<wasmtime::InstancePre<crate::sandbox::StoreState>>>>,
}

/// What a call by name needs to know about a module's function exports, worked out once per
/// compiled module: looking a function up by its precomputed index, and reading its type from
/// the module, is much cheaper per instance than by name and through wasmtime's type registry.
#[derive(Default)]
pub(crate) struct ExportTable {
    by_name: std::collections::HashMap<Box<str>, u32>,
    pub exports: Vec<ExportInfo>,
    /// The gas and stack counters (ABI sections 2 and 4).
    pub gas: Option<wasmtime::ModuleExport>,
    pub stack: Option<wasmtime::ModuleExport>,
}

/// One function export.
pub(crate) struct ExportInfo {
    /// Its index in the table.
    pub index: usize,
    pub func: wasmtime::ModuleExport,
    /// Its entry point (ABI section 11), when the module has one whose type is exactly the
    /// export's with an `i64` parameter put first and an `i64` result put last.
    pub entry: Option<wasmtime::ModuleExport>,
    pub params: Box<[wasmtime::ValType]>,
    pub results: Box<[wasmtime::ValType]>,
    /// Whether every parameter and result is a number or a vector (no reference): such a
    /// function can be called through raw values (see `Sandbox::call`).
    pub numeric: bool,
}

/// Whether a value of this type is a plain number or vector.
fn is_numeric(ty: &wasmtime::ValType) -> bool {
    use wasmtime::ValType as T;
    matches!(ty, T::I32 | T::I64 | T::F32 | T::F64 | T::V128)
}

/// Whether `entry` is the entry point ABI section 11 describes for a function of type
/// `params -> results`.
fn is_entry_for(
    entry: &wasmtime::FuncType,
    params: &[wasmtime::ValType],
    results: &[wasmtime::ValType],
) -> bool {
    use wasmtime::ValType as T;
    let same = |a: &T, b: &T| T::eq(a, b);
    let entry_params: Vec<T> = entry.params().collect();
    let entry_results: Vec<T> = entry.results().collect();
    entry_params.len() == params.len() + 1
        && entry_results.len() == results.len() + 1
        && matches!(entry_params.first(), Some(T::I64))
        && matches!(entry_results.last(), Some(T::I64))
        && entry_params[1..]
            .iter()
            .zip(params)
            .all(|(a, b)| same(a, b))
        && entry_results.iter().zip(results).all(|(a, b)| same(a, b))
}

impl ExportTable {
    fn new(module: &wasmtime::Module) -> ExportTable {
        let mut table = ExportTable {
            gas: module.get_export_index(ri_sandbox_instrument::abi::GAS_LEFT_EXPORT),
            stack: module.get_export_index(ri_sandbox_instrument::abi::STACK_LEFT_EXPORT),
            ..ExportTable::default()
        };
        for export in module.exports() {
            let wasmtime::ExternType::Func(ty) = export.ty() else {
                continue;
            };
            let Some(func) = module.get_export_index(export.name()) else {
                continue;
            };
            let entry_name = format!(
                "{}{}",
                ri_sandbox_instrument::abi::ENTRY_EXPORT_PREFIX,
                export.name()
            );
            let params: Box<[wasmtime::ValType]> = ty.params().collect();
            let results: Box<[wasmtime::ValType]> = ty.results().collect();
            let entry = match module.get_export(&entry_name) {
                Some(wasmtime::ExternType::Func(entry_ty))
                    if is_entry_for(&entry_ty, &params, &results) =>
                {
                    module.get_export_index(&entry_name)
                }
                _ => None,
            };
            table
                .by_name
                .insert(export.name().into(), table.exports.len() as u32);
            table.exports.push(ExportInfo {
                index: table.exports.len(),
                func,
                entry,
                numeric: params.iter().chain(results.iter()).all(is_numeric),
                params,
                results,
            });
        }
        table
    }

    /// The index of the function export `name`.
    pub fn index(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).copied()
    }
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule")
            .field("stack_limit", &self.stack_limit)
            .finish_non_exhaustive()
    }
}

impl CompiledModule {
    /// Its function exports (see [`ExportTable`]).
    pub(crate) fn export_table(&self) -> &ExportTable {
        self.export_table
            .get_or_init(|| ExportTable::new(&self.module))
    }

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

#[cfg(test)]
mod tests {
    use super::is_entry_for;
    use wasmtime::{Engine, FuncType, ValType as T};

    /// The raw call path trusts this check (its `unsafe` block's precondition): only the
    /// exact ABI section 11 shape passes.
    #[test]
    fn only_the_exact_entry_point_type_is_accepted() {
        let engine = Engine::default();
        let ty = |p: &[T], r: &[T]| FuncType::new(&engine, p.iter().cloned(), r.iter().cloned());
        let (params, results) = ([T::I32, T::F64], [T::F32]);
        let exact = ty(&[T::I64, T::I32, T::F64], &[T::F32, T::I64]);
        assert!(is_entry_for(&exact, &params, &results));
        for wrong in [
            ty(&[T::I32, T::F64], &[T::F32, T::I64]), // no budget
            ty(&[T::I64, T::I32, T::F64], &[T::F32]), // no gas left
            ty(&[T::I32, T::I64, T::F64], &[T::F32, T::I64]), // budget not first
            ty(&[T::I64, T::I32, T::F32], &[T::F32, T::I64]), // a parameter differs
            ty(&[T::I64, T::I32, T::F64], &[T::F64, T::I64]), // a result differs
            ty(&[T::I64, T::I32, T::F64], &[T::F32, T::I32]), // gas left not i64
            ty(&[T::I64, T::I32, T::F64, T::I32], &[T::F32, T::I64]), // one parameter too many
        ] {
            assert!(!is_entry_for(&wrong, &params, &results), "{wrong}");
        }
    }
}

//! A sandbox: one instance of one module, with its store, limits and deterministic state, and
//! a status that says which operations it accepts.
//!
//! ```text
//! created --load--> loaded --call--> running --> loaded
//!    \                 |  ^
//!     \         suspend|  |resume (explicit, or by any operation that needs the instance)
//!      \               v  |
//!       \             suspended
//!        `---destroy-----`--(from any status)--> destroyed
//! ```
//!
//! Suspension (a snapshot kept inside the sandbox, its memory freed, resumed transparently) is
//! documented on [`Sandbox::suspend`].

use crate::config::Config;
use crate::determinism;
use crate::error::{Error, ErrorKind};
use crate::limits::{Limiter, MemoryLimitHit};
use crate::metrics::{CallMetrics, SandboxMetrics};
use crate::runtime::{CompiledModule, Runtime};
use crate::snapshot::Snapshot;
use crate::wasi::WasiState;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ri_sandbox_instrument::abi;
use std::sync::Arc;
use wasmtime::{Global, Instance, Store};

/// Where a sandbox is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Created, no module loaded yet.
    Created,
    /// A module is loaded and its start function has run; calls are accepted.
    Loaded,
    /// A call is in progress.
    Running,
    /// Suspended: its state is kept as a snapshot and its memory is freed. Any operation that
    /// needs the instance resumes it first (see [`Sandbox::suspend`]).
    Suspended,
    /// Destroyed: every operation fails with
    /// [`ErrorKind::InstanceDestroyed`].
    Destroyed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Loaded => "loaded",
            Status::Running => "running",
            Status::Suspended => "suspended",
            Status::Destroyed => "destroyed",
        })
    }
}

/// What the store carries for the sandbox: limits, the deterministic clock and PRNG, counts.
pub(crate) struct StoreState {
    pub limiter: Limiter,
    pub rng: ChaCha20Rng,
    pub timestamp: i64,
    pub host_calls: u64,
    /// WASI state, when the sandbox has WASI.
    pub wasi: Option<Box<WasiState>>,
}

/// The loaded module's instance and the ABI's counters.
/// A function export looked up once per instance: the function, its signature, and its entry
/// point (ABI section 11) when the module has one.
#[derive(Clone, Copy)]
pub(crate) struct CachedExport {
    pub func: wasmtime::Func,
    pub entry: Option<wasmtime::Func>,
}

pub(crate) struct Loaded {
    pub instance: Instance,
    pub gas: Global,
    pub stack: Option<Global>,
    pub module: CompiledModule,
    /// This instance's function exports looked up so far, by index in the module's
    /// [`ExportTable`](crate::runtime::ExportTable): calls by name look here first.
    pub exports: Vec<Option<CachedExport>>,
}

/// What a suspended sandbox keeps to come back: its state, its module and its metrics.
pub(crate) struct Suspension {
    pub snapshot: Snapshot,
    pub module: CompiledModule,
    pub metrics: SandboxMetrics,
}

/// An isolated instance of one module, run under the limits of its [`Config`].
///
/// A sandbox owns its wasmtime store: it is `Send`, and a call takes `&mut self`, so it runs
/// on one thread at a time. Dropping it frees everything; [`Sandbox::destroy`] does the same
/// while keeping the handle, so later operations fail with a typed error.
pub struct Sandbox {
    pub(crate) id: String,
    pub(crate) runtime: Runtime,
    pub(crate) config: Arc<Config>,
    pub(crate) status: Status,
    /// `None` while suspended or destroyed: dropping the store is what frees the instance and
    /// its memory. Every operation that reaches the store has checked the status first.
    pub(crate) store: Option<Store<StoreState>>,
    pub(crate) loaded: Option<Loaded>,
    pub(crate) metrics: SandboxMetrics,
    /// Unique among all stores ever installed in any sandbox; handles into the store
    /// ([`TypedExport`](crate::TypedExport)) carry it, so a stale one is refused, not misused.
    pub(crate) store_token: u64,
    /// Set while the sandbox is [`Status::Suspended`].
    pub(crate) suspended: Option<Box<Suspension>>,
}

/// A fresh store token.
pub(crate) fn next_token() -> u64 {
    static TOKENS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    TOKENS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("id", &self.id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

pub(crate) fn new_store(runtime: &Runtime, config: &Config) -> Store<StoreState> {
    let mut store = Store::new(
        runtime.engine(),
        StoreState {
            limiter: Limiter::new(config.max_memory_bytes, config.max_table_elements),
            rng: ChaCha20Rng::seed_from_u64(config.seed),
            timestamp: config.event_timestamp,
            host_calls: 0,
            wasi: config
                .wasi
                .as_ref()
                .map(|w| Box::new(WasiState::new(Arc::new(w.clone())))),
        },
    );
    store.limiter(|state| &mut state.limiter);
    store
}

/// The error of an operation that needs the store of a sandbox without one (suspended or
/// destroyed). Statuses are checked before the store is touched, so it is not expected.
pub(crate) fn no_store() -> Error {
    Error::engine("the sandbox has no instance")
}

/// Instantiates `module` in `store` (which should hold nothing else), its start function not
/// run. On error the store may hold a partly made instance: drop it.
fn instantiate_in(
    runtime: &Runtime,
    config: &Config,
    store: &mut Store<StoreState>,
    module: &CompiledModule,
) -> Result<Loaded, Error> {
    determinism::check_imports(
        &module.module,
        &config.host_functions,
        config.wasi.is_some(),
        runtime.engine(),
    )?;
    let pre = match config.host_functions.is_empty() {
        true => module
            .pre
            .get_or_init(|| runtime.linker().instantiate_pre(&module.module).ok())
            .as_ref(),
        false => None,
    };
    let instantiated = match pre {
        Some(pre) => pre.instantiate(&mut *store),
        None => {
            let mut linker = runtime.linker().clone();
            for function in &config.host_functions {
                function.define(&mut linker).map_err(Error::engine)?;
            }
            linker.instantiate(&mut *store, &module.module)
        }
    };
    let instance = match instantiated {
        Ok(instance) => instance,
        Err(e) if e.is::<MemoryLimitHit>() => {
            return Err(Error::new(ErrorKind::MemoryExceeded {
                requested: store.data().limiter.exceeded.unwrap_or(0),
                limit: config.max_memory_bytes,
            }));
        }
        Err(e) if e.is::<wasmtime::PoolConcurrencyLimitError>() => {
            return Err(Error::new(ErrorKind::Engine {
                message: format!(
                    "no free instance slot: the runtime's pooling allocator is full ({e})"
                ),
            }));
        }
        Err(e) => {
            return Err(Error::new(ErrorKind::InvalidModule {
                reason: format!("instantiation failed: {e}"),
                offset: None,
            }));
        }
    };
    let table = module.export_table();
    let mut global = |export: Option<&wasmtime::ModuleExport>| {
        export
            .and_then(|export| instance.get_module_export(&mut *store, export))
            .and_then(wasmtime::Extern::into_global)
    };
    let gas = global(table.gas.as_ref())
        .ok_or_else(|| Error::engine("the instrumented module has no gas counter"))?;
    let stack = global(table.stack.as_ref());
    if let Some(wasi) = store.data_mut().wasi.as_mut() {
        wasi.gas = Some(gas);
    }
    Ok(Loaded {
        instance,
        gas,
        stack,
        module: module.clone(),
        exports: Vec::new(),
    })
}

impl Sandbox {
    /// A new sandbox, status [`Status::Created`], with the next id of its runtime
    /// (`sandbox-0`, `sandbox-1`, ...).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a configuration that cannot work (a zero memory limit is
    /// fine; a cost model whose per-unit prices could wrap is not, nor a granted WASI
    /// directory that cannot be opened).
    pub fn new(runtime: &Runtime, config: Config) -> Result<Sandbox, Error> {
        config.costs.check().map_err(|e| {
            Error::new(ErrorKind::Config {
                reason: e.to_string(),
            })
        })?;
        if let Some(wasi) = &config.wasi {
            wasi.check_dirs()
                .map_err(|reason| Error::new(ErrorKind::Config { reason }))?;
        }
        let store = new_store(runtime, &config);
        let metrics = SandboxMetrics {
            gas_limit: config.max_gas,
            memory_limit_bytes: config.max_memory_bytes,
            ..SandboxMetrics::default()
        };
        Ok(Sandbox {
            id: runtime.next_id(),
            runtime: runtime.clone(),
            config: Arc::new(config),
            status: Status::Created,
            store: Some(store),
            loaded: None,
            metrics,
            store_token: next_token(),
            suspended: None,
        })
    }

    /// The sandbox's id, `sandbox-N`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics of the last call, whether it returned or failed (`None` before the first).
    /// [`TypedExport::call`](crate::TypedExport::call) returns only the results; this is
    /// where its gas and time are.
    pub fn last_call(&self) -> Option<CallMetrics> {
        self.metrics.last_call
    }

    /// What it has used so far.
    pub fn metrics(&self) -> SandboxMetrics {
        let mut metrics = self.metrics;
        metrics.memory_bytes = (self.store.as_ref()).map_or(0, |s| s.data().limiter.memory_bytes);
        metrics
    }

    /// Fails unless the sandbox is in `wanted`. A suspended sandbox is resumed first when the
    /// operation wants it loaded: this is what makes resumption transparent.
    pub(crate) fn expect_status(
        &mut self,
        wanted: Status,
        operation: &'static str,
    ) -> Result<(), Error> {
        if self.status == Status::Suspended && wanted == Status::Loaded {
            self.resume()?;
        }
        match self.status {
            s if s == wanted => Ok(()),
            Status::Destroyed => Err(Error::new(ErrorKind::InstanceDestroyed {
                id: self.id.clone(),
            })),
            status => Err(Error::new(ErrorKind::WrongStatus {
                id: self.id.clone(),
                status,
                operation,
            })),
        }
    }

    /// Instruments, compiles and loads a module (binary or text), then runs its start
    /// function, if any, under the gas budget. Status becomes [`Status::Loaded`].
    ///
    /// # Errors
    /// - [`ErrorKind::InvalidModule`] for bytes that are not a valid module (with the byte
    ///   offset), or that use a proposal ri-sandbox does not meter;
    /// - [`ErrorKind::RejectedImport`] when the module imports anything the sandbox does not
    ///   provide (WASI included);
    /// - [`ErrorKind::MemoryExceeded`] when its initial memory is over the limit;
    /// - any outcome of a call, from the start function.
    ///
    /// On error the sandbox stays [`Status::Created`].
    pub fn load(&mut self, module: &[u8]) -> Result<(), Error> {
        self.expect_status(Status::Created, "load a module into")?;
        let compiled = self.runtime.compile(module, &self.config)?;
        self.load_compiled(&compiled)
    }

    /// Loads a module compiled with [`Runtime::compile`] (for the same cost model and stack
    /// limit), then runs its start function. Loading a compiled module skips instrumentation
    /// and compilation.
    ///
    /// # Errors
    /// As [`Sandbox::load`], plus [`ErrorKind::Config`] when the module was compiled for a
    /// different cost model, stack limit or limit on locals.
    pub fn load_compiled(&mut self, module: &CompiledModule) -> Result<(), Error> {
        self.expect_status(Status::Created, "load a module into")?;
        if *module.costs != self.config.costs
            || module.stack_limit != self.config.stack_limit
            || module.max_locals != self.config.max_locals
        {
            return Err(Error::new(ErrorKind::Config {
                reason: "the module was compiled for another cost model, stack limit or limit \
                         on locals"
                    .into(),
            }));
        }
        if !wasmtime::Engine::same(module.module.engine(), self.runtime.engine()) {
            return Err(Error::new(ErrorKind::Config {
                reason: "the module was compiled by another runtime".into(),
            }));
        }
        // A created sandbox's store is fresh (nothing was ever instantiated in it, or a failed
        // load replaced it): instantiate there rather than build another store.
        let Some(store) = self.store.as_mut() else {
            return Err(no_store());
        };
        let loaded = match instantiate_in(&self.runtime, &self.config, store, module) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.store = Some(new_store(&self.runtime, &self.config));
                return Err(e);
            }
        };
        let instance = loaded.instance;
        self.store_token = next_token();
        self.loaded = Some(loaded);
        self.status = Status::Loaded;
        // The start function, then a WASI reactor's `_initialize`, both under the budget.
        let Some(store) = self.store.as_mut() else {
            return Err(no_store());
        };
        let start = instance.get_func(&mut *store, abi::START_EXPORT);
        let initialize = match self.config.wasi {
            Some(_) => instance.get_func(&mut *store, crate::wasi::INITIALIZE_EXPORT),
            None => None,
        };
        for init in [start, initialize].into_iter().flatten() {
            if let Err(e) = self.run(init, &[], &mut []) {
                self.loaded = None;
                self.status = Status::Created;
                self.store = Some(new_store(&self.runtime, &self.config));
                return Err(e);
            }
        }
        Ok(())
    }

    /// A fresh store with a fresh instance of `module`, its start function not run: what
    /// loading and restoring both start from. The sandbox is not touched.
    pub(crate) fn instantiate(
        &self,
        module: &CompiledModule,
    ) -> Result<(Store<StoreState>, Loaded), Error> {
        let mut store = new_store(&self.runtime, &self.config);
        let loaded = instantiate_in(&self.runtime, &self.config, &mut store, module)?;
        Ok((store, loaded))
    }

    /// Suspends a loaded sandbox: takes a [`Snapshot`], keeps it and the compiled module, and
    /// drops the instance and its store, which frees the sandbox's linear memory (the snapshot
    /// keeps only the non-zero 64 KiB pages, on the heap). Status becomes
    /// [`Status::Suspended`]. Suspending a suspended sandbox does nothing.
    ///
    /// [`Sandbox::resume`] makes a fresh instance of the kept module (its start function does
    /// not run again), restores the snapshot into it and puts the sandbox's metrics back as
    /// they were. Resumption is transparent: every operation that needs the instance
    /// ([`Sandbox::call`], [`Sandbox::call_json`], [`Sandbox::typed`], [`Sandbox::snapshot`],
    /// [`Sandbox::restore`]) resumes a suspended sandbox first, so a host need not know that a
    /// sandbox was suspended, and nothing is lost: the call gives exactly the results, gas and
    /// memory it would have given without the suspension. Two things do not survive a
    /// suspension, as they do not survive a restore into a fresh instance:
    /// [`TypedExport`](crate::TypedExport) handles made before it are refused afterwards (make
    /// new ones), and the wall time of the next call includes the resume. A resume that fails
    /// (the engine out of host memory) leaves the sandbox suspended, with its snapshot.
    ///
    /// # Errors
    /// [`ErrorKind::WrongStatus`] when no module is loaded; [`ErrorKind::InstanceDestroyed`];
    /// [`ErrorKind::Snapshot`] when the state cannot be saved (a non-null externref, say), in
    /// which case the sandbox stays loaded and unchanged.
    pub fn suspend(&mut self) -> Result<(), Error> {
        if self.status == Status::Suspended {
            return Ok(());
        }
        self.expect_status(Status::Loaded, "suspend")?;
        let snapshot = self.snapshot()?;
        let module = match self.loaded.take() {
            Some(loaded) => loaded.module,
            None => return Err(Error::engine("no module is loaded")),
        };
        self.metrics.suspensions += 1;
        self.suspended = Some(Box::new(Suspension {
            snapshot,
            module,
            metrics: self.metrics,
        }));
        self.store = None;
        self.store_token = next_token();
        self.status = Status::Suspended;
        tracing::debug!(sandbox = %self.id, "ri-sandbox: sandbox suspended");
        Ok(())
    }

    /// Resumes a suspended sandbox: a fresh instance of its module, its snapshot restored
    /// into it, its metrics as they were. Status becomes [`Status::Loaded`]. Resuming a loaded
    /// sandbox does nothing. Operations that need the instance do this by themselves.
    ///
    /// # Errors
    /// [`ErrorKind::WrongStatus`] for a sandbox with no module; [`ErrorKind::InstanceDestroyed`];
    /// [`ErrorKind::Engine`] when wasmtime cannot instantiate (out of host memory). On error
    /// the sandbox stays suspended, its snapshot kept.
    pub fn resume(&mut self) -> Result<(), Error> {
        if self.status != Status::Suspended {
            return self.expect_status(Status::Loaded, "resume");
        }
        let Some(suspension) = self.suspended.take() else {
            return Err(Error::engine("a suspended sandbox without its snapshot"));
        };
        let (store, loaded) = match self.instantiate(&suspension.module) {
            Ok(fresh) => fresh,
            Err(e) => {
                self.suspended = Some(suspension);
                return Err(e);
            }
        };
        self.store = Some(store);
        self.store_token = next_token();
        self.loaded = Some(loaded);
        self.status = Status::Loaded;
        if let Err(e) = self.restore(&suspension.snapshot) {
            self.loaded = None;
            self.store = None;
            self.store_token = next_token();
            self.status = Status::Suspended;
            self.suspended = Some(suspension);
            return Err(e);
        }
        // `restore` rebuilt the metrics from the snapshot's counters; the sandbox's own are
        // the same plus the non-deterministic ones (wall time, the last call).
        self.metrics = suspension.metrics;
        tracing::debug!(sandbox = %self.id, "ri-sandbox: sandbox resumed");
        Ok(())
    }

    /// The state a suspended sandbox will resume from (`None` unless it is suspended): what
    /// [`Sandbox::snapshot`] would return after resuming, without resuming.
    pub fn suspended_snapshot(&self) -> Option<&Snapshot> {
        self.suspended.as_ref().map(|s| &s.snapshot)
    }

    /// Frees the instance and its memory (and a suspended sandbox's snapshot). Every later
    /// operation fails with [`ErrorKind::InstanceDestroyed`]. Destroying twice does nothing.
    pub fn destroy(&mut self) {
        if self.status == Status::Destroyed {
            return;
        }
        self.loaded = None;
        self.suspended = None;
        self.store = None;
        self.store_token = next_token();
        self.status = Status::Destroyed;
    }
}

//! A sandbox: one instance of one module, with its store, limits and deterministic state, and
//! a status that says which operations it accepts.
//!
//! ```text
//! created --load--> loaded --call--> running --> loaded
//!    \                 \                                  (snapshot/suspend: later issues)
//!     `---destroy-------`--destroy--> destroyed
//! ```

use crate::config::Config;
use crate::determinism;
use crate::error::{Error, ErrorKind};
use crate::limits::{Limiter, MemoryLimitHit};
use crate::metrics::SandboxMetrics;
use crate::runtime::{CompiledModule, Runtime};
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
    /// Destroyed: every operation fails with
    /// [`ErrorKind::InstanceDestroyed`](crate::ErrorKind::InstanceDestroyed).
    Destroyed,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Loaded => "loaded",
            Status::Running => "running",
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
}

/// The loaded module's instance and the ABI's counters.
pub(crate) struct Loaded {
    pub instance: Instance,
    pub gas: Global,
    pub stack: Option<Global>,
    pub module: CompiledModule,
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
    pub(crate) store: Store<StoreState>,
    pub(crate) loaded: Option<Loaded>,
    pub(crate) metrics: SandboxMetrics,
    /// Unique among all stores ever installed in any sandbox; handles into the store
    /// ([`TypedExport`](crate::TypedExport)) carry it, so a stale one is refused, not misused.
    pub(crate) store_token: u64,
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
        },
    );
    store.limiter(|state| &mut state.limiter);
    store
}

impl Sandbox {
    /// A new sandbox, status [`Status::Created`], with the next id of its runtime
    /// (`sandbox-0`, `sandbox-1`, ...).
    ///
    /// # Errors
    /// [`ErrorKind::Config`] for a configuration that cannot work (a zero memory limit is
    /// fine; a cost model whose per-unit prices could wrap is not).
    pub fn new(runtime: &Runtime, config: Config) -> Result<Sandbox, Error> {
        config.costs.check().map_err(|e| {
            Error::new(ErrorKind::Config {
                reason: e.to_string(),
            })
        })?;
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
            store,
            loaded: None,
            metrics,
            store_token: next_token(),
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

    /// What it has used so far.
    pub fn metrics(&self) -> SandboxMetrics {
        let mut metrics = self.metrics;
        metrics.memory_bytes = self.store.data().limiter.memory_bytes;
        metrics
    }

    /// Fails unless the sandbox is in `wanted`.
    pub(crate) fn expect_status(
        &self,
        wanted: Status,
        operation: &'static str,
    ) -> Result<(), Error> {
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
    /// different cost model or stack limit.
    pub fn load_compiled(&mut self, module: &CompiledModule) -> Result<(), Error> {
        self.expect_status(Status::Created, "load a module into")?;
        if *module.costs != self.config.costs || module.stack_limit != self.config.stack_limit {
            return Err(Error::new(ErrorKind::Config {
                reason: "the module was compiled for another cost model or stack limit".into(),
            }));
        }
        if !wasmtime::Engine::same(module.module.engine(), self.runtime.engine()) {
            return Err(Error::new(ErrorKind::Config {
                reason: "the module was compiled by another runtime".into(),
            }));
        }
        let (store, loaded) = self.instantiate(module)?;
        let instance = loaded.instance;
        self.store = store;
        self.store_token = next_token();
        self.loaded = Some(loaded);
        self.status = Status::Loaded;
        if let Some(start) = instance.get_func(&mut self.store, abi::START_EXPORT) {
            if let Err(e) = self.run(start, &[], &mut []) {
                self.loaded = None;
                self.status = Status::Created;
                self.store = new_store(&self.runtime, &self.config);
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
        let engine = self.runtime.engine().clone();
        determinism::check_imports(&module.module, &self.config.host_functions, &engine)?;
        let custom;
        let linker = if self.config.host_functions.is_empty() {
            self.runtime.linker()
        } else {
            let mut linker = self.runtime.linker().clone();
            for function in &self.config.host_functions {
                function.define(&mut linker).map_err(Error::engine)?;
            }
            custom = linker;
            &custom
        };
        let mut store = new_store(&self.runtime, &self.config);
        let instance = match linker.instantiate(&mut store, &module.module) {
            Ok(instance) => instance,
            Err(e) if e.is::<MemoryLimitHit>() => {
                return Err(Error::new(ErrorKind::MemoryExceeded {
                    requested: store.data().limiter.exceeded.unwrap_or(0),
                    limit: self.config.max_memory_bytes,
                }));
            }
            Err(e) => {
                return Err(Error::new(ErrorKind::InvalidModule {
                    reason: format!("instantiation failed: {e}"),
                    offset: None,
                }));
            }
        };
        let gas = instance
            .get_global(&mut store, abi::GAS_LEFT_EXPORT)
            .ok_or_else(|| Error::engine("the instrumented module has no gas counter"))?;
        let stack = instance.get_global(&mut store, abi::STACK_LEFT_EXPORT);
        Ok((
            store,
            Loaded {
                instance,
                gas,
                stack,
                module: module.clone(),
            },
        ))
    }

    /// Frees the instance and its memory. Every later operation fails with
    /// [`ErrorKind::InstanceDestroyed`]. Destroying twice does nothing.
    pub fn destroy(&mut self) {
        if self.status == Status::Destroyed {
            return;
        }
        self.loaded = None;
        // A fresh, empty store releases the old one's memories and instances.
        self.store = new_store(&self.runtime, &Config::default().with_max_memory_bytes(0));
        self.store_token = next_token();
        self.status = Status::Destroyed;
    }
}
